//! `ping`: round trips of `Ping`/`Pong`, closed loop (a fixed number in flight per connection) or
//! open loop (`--rate`, latency counted from the scheduled send time, so a slow server cannot hide
//! its queueing delay by slowing the sender down).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::report::{self, Latency};
use crate::wire::{self, FrameReader};

#[derive(Debug, Args)]
pub struct PingArgs {
    /// Server address, HOST:PORT.
    #[arg(long)]
    pub addr: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Requests in flight per connection (closed loop).
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
    /// How long to run (e.g. 5s, 500ms).
    #[arg(long, value_parser = report::parse_duration, conflicts_with = "count")]
    pub duration: Option<Duration>,
    /// Total round trips to make instead of a duration.
    #[arg(long)]
    pub count: Option<u64>,
    /// Open loop: frames per second over all connections.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Payload bytes per ping.
    #[arg(long, default_value_t = 16)]
    pub size: usize,
    /// Seed for payload bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// No handshake: for the `echo` baseline server, which takes no key.
    #[arg(long)]
    pub no_auth: bool,
}

#[derive(Debug, Serialize)]
struct PingReport {
    mode: &'static str,
    addr: String,
    connections: usize,
    depth: usize,
    rate: Option<f64>,
    payload_bytes: usize,
    frames: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    frames_per_sec: f64,
    latency: Latency,
}

/// When to stop sending: after a deadline or once a shared budget of frames is spent.
#[derive(Clone)]
enum Budget {
    Until(Instant),
    Frames(Arc<AtomicI64>),
}

impl Budget {
    fn take(&self) -> bool {
        match self {
            Budget::Until(deadline) => Instant::now() < *deadline,
            Budget::Frames(left) => left.fetch_sub(1, Ordering::Relaxed) > 0,
        }
    }
}

struct ConnOutcome {
    hist: Histogram<u64>,
    frames: u64,
    error: Option<String>,
}

pub fn run(args: PingArgs) -> anyhow::Result<bool> {
    if args.connections == 0 || args.depth == 0 {
        bail!("--connections and --depth must be at least 1");
    }
    let budget = match (args.duration, args.count) {
        (_, Some(n)) => Budget::Frames(Arc::new(AtomicI64::new(n as i64))),
        (Some(d), None) => Budget::Until(Instant::now() + d),
        (None, None) => Budget::Until(Instant::now() + Duration::from_secs(5)),
    };
    let data: Vec<u8> = (0..args.size)
        .map(|i| (args.seed as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect();
    let started = Instant::now();
    let threads: Vec<_> = (0..args.connections)
        .map(|_| {
            let (addr, budget, data) = (args.addr.clone(), budget.clone(), data.clone());
            let (depth, rate) = (args.depth, args.rate.map(|r| r / args.connections as f64));
            thread::spawn(move || match rate {
                Some(rate) => open_loop(&addr, rate, depth, &budget, &data),
                None => closed_loop(&addr, depth, &budget, &data),
            })
        })
        .collect();
    let mut hist = report::histogram();
    let (mut frames, mut errors, mut first_error) = (0, 0, None);
    for t in threads {
        let outcome = t
            .join()
            .map_err(|_| anyhow::anyhow!("a connection thread panicked"))??;
        hist.add(&outcome.hist).context("merging histograms")?;
        frames += outcome.frames;
        if let Some(e) = outcome.error {
            errors += 1;
            first_error.get_or_insert(e);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = PingReport {
        mode: "ping",
        addr: args.addr,
        connections: args.connections,
        depth: args.depth,
        rate: args.rate,
        payload_bytes: args.size,
        frames,
        errors,
        first_error,
        seconds,
        frames_per_sec: frames as f64 / seconds,
        latency: report::latency(&hist),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "ping: {} frames in {:.2} s over {} connections x depth {}: {:.0} frames/s, {} errors",
            report.frames,
            report.seconds,
            report.connections,
            report.depth,
            report.frames_per_sec,
            report.errors
        );
        report::print_latency(&report.latency);
        if let Some(e) = &report.first_error {
            println!("first error: {e}");
        }
    }
    Ok(report.errors == 0)
}

/// Keeps `depth` pings in flight; every batch of replies read is answered by one write.
fn closed_loop(
    addr: &str,
    depth: usize,
    budget: &Budget,
    data: &[u8],
) -> anyhow::Result<ConnOutcome> {
    let stream = wire::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    let mut writer = stream.try_clone()?;
    let mut reader = FrameReader::new(stream);
    let mut outcome = ConnOutcome {
        hist: report::histogram(),
        frames: 0,
        error: None,
    };
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(depth);
    let mut out = Vec::with_capacity(depth * (data.len() + 32));
    let mut next_nonce = 0u64;
    let mut refill = depth;
    loop {
        let now = Instant::now();
        for _ in 0..refill {
            if !budget.take() {
                break;
            }
            wire::push_ping(&mut out, next_nonce, data);
            in_flight.push_back((next_nonce, now));
            next_nonce += 1;
        }
        if !out.is_empty() {
            wire::write_all(&mut writer, &out)?;
            out.clear();
        }
        if in_flight.is_empty() {
            return Ok(outcome);
        }
        refill = 0;
        let mut failure = None;
        let read = reader.drain_with(|header, payload| {
            let arrived = Instant::now();
            let Some((nonce, sent)) = in_flight.pop_front() else {
                failure.get_or_insert_with(|| "a reply nobody asked for".to_string());
                return;
            };
            match wire::check_pong(header, payload, nonce, data) {
                Ok(()) => {
                    report::record(&mut outcome.hist, arrived - sent);
                    outcome.frames += 1;
                    refill += 1;
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        });
        if let Err(e) = read {
            failure.get_or_insert(e.to_string());
        }
        if let Some(e) = failure {
            outcome.error = Some(e);
            return Ok(outcome);
        }
    }
}

/// Sends on a fixed schedule from one thread and reads replies on another; latency runs from the
/// scheduled instant. At most `depth` frames are sent per catch-up batch.
fn open_loop(
    addr: &str,
    rate: f64,
    depth: usize,
    budget: &Budget,
    data: &[u8],
) -> anyhow::Result<ConnOutcome> {
    if rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let stream = wire::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    let mut writer = stream.try_clone()?;
    let (sched_tx, sched_rx) = std::sync::mpsc::channel::<(u64, Instant)>();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let (budget, data_w) = (budget.clone(), data.to_vec());
    let sender = thread::spawn(move || -> std::io::Result<()> {
        let start = Instant::now();
        let mut out = Vec::new();
        let mut nonce = 0u64;
        loop {
            let due = start + interval.mul_f64(nonce as f64);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            let now = Instant::now();
            let mut batch = 0;
            while batch < depth && start + interval.mul_f64(nonce as f64) <= now {
                if !budget.take() {
                    wire::write_all(&mut writer, &out)?;
                    return Ok(());
                }
                wire::push_ping(&mut out, nonce, &data_w);
                let _ = sched_tx.send((nonce, start + interval.mul_f64(nonce as f64)));
                nonce += 1;
                batch += 1;
            }
            wire::write_all(&mut writer, &out)?;
            out.clear();
        }
    });
    let mut reader = FrameReader::new(stream);
    let mut outcome = ConnOutcome {
        hist: report::histogram(),
        frames: 0,
        error: None,
    };
    while let Ok((nonce, due)) = sched_rx.recv() {
        match reader.next() {
            Ok(Some(frame)) => {
                let arrived = Instant::now();
                if let Err(e) = wire::check_pong(frame.header, &frame.payload, nonce, data) {
                    outcome.error = Some(e);
                    break;
                }
                report::record(&mut outcome.hist, arrived.saturating_duration_since(due));
                outcome.frames += 1;
            }
            Ok(None) => {
                outcome.error = Some("server closed the connection".into());
                break;
            }
            Err(e) => {
                outcome.error = Some(e.to_string());
                break;
            }
        }
    }
    let _ = reader.stream().shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    Ok(outcome)
}
