//! Job modes: `submit` (acknowledged submits), `e2e` (submit → completed through real workers),
//! `dag` (a chain of jobs: the hand-off from a parent to its child) and `spawn` (the bare
//! spawn-and-wait loop that `/bin/true` jobs are compared with).

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde::Serialize;
use titan_client::{decode_reply, Client};
use titan_core::{DagJobSpec, JobKind, JobSpec, Submission};
use titan_proto::message::client::{SubmitRequest, Submitted};
use titan_proto::OpCode;

use crate::report::{self, Latency};

#[derive(Clone, Copy, Debug, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Completes inside the worker without a process: measures the scheduler.
    Noop,
    /// `RUN|true`: a real process (needs an executable `true` in the worker's perm_files).
    True,
}

impl Kind {
    fn spec(self) -> JobSpec {
        match self {
            Kind::Noop => JobSpec::new(JobKind::Noop),
            Kind::True => JobSpec::new(JobKind::Run {
                file: "true".into(),
                args: Box::new([]),
            }),
        }
    }
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[arg(long)]
    pub addr: String,
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Submits in flight per connection.
    #[arg(long, default_value_t = 64)]
    pub depth: usize,
    /// Total submits.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    #[arg(long, value_enum, default_value_t = Kind::Noop)]
    pub kind: Kind,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct E2eArgs {
    #[arg(long)]
    pub addr: String,
    /// Jobs to run.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: u64,
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    #[arg(long, default_value_t = 256)]
    pub depth: usize,
    #[arg(long, value_enum, default_value_t = Kind::Noop)]
    pub kind: Kind,
    /// The master's pid, to report its CPU time per job (from /proc).
    #[arg(long)]
    pub master_pid: Option<u32>,
    /// Instead of throughput: this many single jobs, one at a time, submit → completed latency.
    #[arg(long)]
    pub latency: Option<u64>,
    /// Give up after this long.
    #[arg(long, value_parser = report::parse_duration, default_value = "300s")]
    pub timeout: Duration,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DagArgs {
    #[arg(long)]
    pub addr: String,
    /// Length of the chain of NOOP jobs (A0 → A1 → ...).
    #[arg(long, default_value_t = 1000)]
    pub chain: usize,
    #[arg(long, value_parser = report::parse_duration, default_value = "300s")]
    pub timeout: Duration,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SpawnArgs {
    /// Processes to spawn and wait for.
    #[arg(long, default_value_t = 2000)]
    pub count: u64,
    /// Threads running the loop.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long, default_value = "/bin/true")]
    pub program: String,
    /// Also do the per-job work every Titan job gets, and nothing else: a directory of its own
    /// under this one as its cwd, its stdout and stderr in files there, stdin from /dev/null, a
    /// process group of its own. The ceiling for any orchestrator that keeps those promises.
    #[arg(long)]
    pub workspace: Option<std::path::PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Throughput {
    mode: &'static str,
    kind: Option<Kind>,
    jobs: u64,
    seconds: f64,
    jobs_per_sec: f64,
    latency: Option<Latency>,
    master_cpu_us_per_job: Option<f64>,
}

fn print(report: &Throughput, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!(
            "{}: {} jobs in {:.3} s: {:.0} jobs/s",
            report.mode, report.jobs, report.seconds, report.jobs_per_sec
        );
        if let Some(cpu) = report.master_cpu_us_per_job {
            println!("master CPU: {cpu:.2} µs per job");
        }
        if let Some(l) = &report.latency {
            report::print_latency(l);
        }
    }
    Ok(())
}

/// Pipelined submits: returns the acknowledged labels (when asked) and the ack latencies.
///
/// Every reply already read is taken before the next write, so one write refills the pipeline
/// after a whole batch of acks (one submit written per ack cost a system call and a TCP segment
/// per job, on both sides of the connection).
fn submit_pipelined(
    addr: &str,
    spec: &JobSpec,
    depth: usize,
    budget: &AtomicI64,
    keep_labels: bool,
) -> SubmitterResult {
    let mut client = connect(addr)?;
    let request = SubmitRequest {
        submission: Submission::OneOff(spec.clone()),
    };
    let mut hist = report::histogram();
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(depth);
    let mut acked = 0;
    let mut labels = Vec::new();
    loop {
        let now = Instant::now();
        while in_flight.len() < depth && budget.fetch_sub(1, Ordering::Relaxed) > 0 {
            client.send(OpCode::SubmitJob, &request)?;
            in_flight.push_back(now);
        }
        client.flush()?;
        let Some(sent) = in_flight.pop_front() else {
            return Ok((hist, acked, labels));
        };
        let mut reply = client.recv()?;
        let mut sent = sent;
        loop {
            report::record(&mut hist, sent.elapsed());
            let submitted: Submitted = decode_reply(&reply, OpCode::Ack)?;
            acked += 1;
            if keep_labels {
                labels.push(submitted.label);
            }
            let Some(next) = client.recv_buffered()? else {
                break;
            };
            sent = in_flight
                .pop_front()
                .ok_or_else(|| anyhow::anyhow!("the master sent a reply nobody asked for"))?;
            reply = next;
        }
    }
}

/// What one submitting connection returns: its ack latencies, its ack count, the labels it kept.
type SubmitterResult = anyhow::Result<(hdrhistogram::Histogram<u64>, u64, Vec<String>)>;

/// One thread per connection, each keeping `depth` submits of `kind` in flight until `budget`
/// is spent.
fn spawn_submitters(
    addr: &str,
    kind: Kind,
    connections: usize,
    depth: usize,
    budget: &Arc<AtomicI64>,
) -> Vec<thread::JoinHandle<SubmitterResult>> {
    (0..connections.max(1))
        .map(|_| {
            let (addr, budget, spec) = (addr.to_string(), budget.clone(), kind.spec());
            thread::spawn(move || submit_pipelined(&addr, &spec, depth.max(1), &budget, false))
        })
        .collect()
}

pub fn submit(args: SubmitArgs) -> anyhow::Result<bool> {
    let budget = Arc::new(AtomicI64::new(args.count as i64));
    let started = Instant::now();
    let threads = spawn_submitters(&args.addr, args.kind, args.connections, args.depth, &budget);
    let mut hist = report::histogram();
    let mut acked = 0;
    for t in threads {
        let (h, n, _) = t
            .join()
            .map_err(|_| anyhow::anyhow!("a submit thread panicked"))??;
        hist.add(&h)?;
        acked += n;
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = Throughput {
        mode: "submit",
        kind: Some(args.kind),
        jobs: acked,
        seconds,
        jobs_per_sec: acked as f64 / seconds,
        latency: Some(report::latency(&hist)),
        master_cpu_us_per_job: None,
    };
    print(&report, args.json)?;
    Ok(acked == args.count)
}

/// CPU time (user + system) of a process in microseconds, from /proc/PID/stat.
fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = 100; // USER_HZ is 100 on every Linux this runs on.
    Some(ticks * 1_000_000 / hz)
}

fn completed_count(client: &mut Client) -> anyhow::Result<u64> {
    Ok(client.stats()?.completed)
}

pub fn e2e(args: E2eArgs) -> anyhow::Result<bool> {
    if let Some(n) = args.latency {
        return e2e_latency(&args, n);
    }
    let mut probe = connect(&args.addr)?;
    let base = completed_count(&mut probe)?;
    let cpu_before = args.master_pid.and_then(cpu_us);
    let budget = Arc::new(AtomicI64::new(args.jobs as i64));
    let started = Instant::now();
    let threads = spawn_submitters(&args.addr, args.kind, args.connections, args.depth, &budget);
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a submit thread panicked"))??;
    }
    let deadline = started + args.timeout;
    loop {
        let done = completed_count(&mut probe)? - base;
        if done >= args.jobs {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {done} of {} jobs completed within {:?}",
                args.jobs,
                args.timeout
            );
        }
        thread::sleep(Duration::from_millis(2));
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, args.master_pid.and_then(cpu_us)) {
        (Some(a), Some(b)) => Some((b - a) as f64 / args.jobs as f64),
        _ => None,
    };
    let report = Throughput {
        mode: "e2e",
        kind: Some(args.kind),
        jobs: args.jobs,
        seconds,
        jobs_per_sec: args.jobs as f64 / seconds,
        latency: None,
        master_cpu_us_per_job: cpu,
    };
    print(&report, args.json)?;
    Ok(true)
}

/// One job at a time: submit, then wait for it on the master; latency of both round trips.
fn e2e_latency(args: &E2eArgs, n: u64) -> anyhow::Result<bool> {
    let mut client = connect(&args.addr)?;
    let mut hist = report::histogram();
    let started = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        let submitted = client.submit(Submission::OneOff(args.kind.spec()))?;
        let reply = client.wait(&[submitted.label], args.timeout)?;
        report::record(&mut hist, t0.elapsed());
        if reply.timed_out
            || reply.jobs.first().map(|j| j.state) != Some(titan_core::JobState::Completed)
        {
            bail!("a job did not complete: {reply:?}");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = Throughput {
        mode: "e2e-latency",
        kind: Some(args.kind),
        jobs: n,
        seconds,
        jobs_per_sec: n as f64 / seconds,
        latency: Some(report::latency(&hist)),
        master_cpu_us_per_job: None,
    };
    print(&report, args.json)?;
    Ok(true)
}

#[derive(Debug, Serialize)]
struct ChainReport {
    mode: &'static str,
    chain: usize,
    seconds: f64,
    /// Per hop: from a parent's dispatch to its child's dispatch (the parent ran a NOOP, reported,
    /// and the master released and dispatched the child), in the master's clock.
    hop: Latency,
    /// Master-side part of a hop: parent reported completed → child dispatched.
    release: Latency,
}

pub fn dag(args: DagArgs) -> anyhow::Result<bool> {
    if args.chain < 2 {
        bail!("--chain must be at least 2");
    }
    let jobs: Vec<DagJobSpec> = (0..args.chain)
        .map(|i| DagJobSpec {
            name: format!("A{i}").into(),
            spec: JobSpec::new(JobKind::Noop),
            deps: if i == 0 {
                Vec::new()
            } else {
                vec![format!("A{}", i - 1).into()]
            },
        })
        .collect();
    let mut client = connect(&args.addr)?;
    let started = Instant::now();
    let submitted = client
        .submit(Submission::Dag(jobs))
        .context("submitting the chain")?;
    let last = submitted
        .jobs
        .last()
        .map(|j| j.label.clone())
        .context("empty reply")?;
    let reply = client.wait(&[last], args.timeout)?;
    let seconds = started.elapsed().as_secs_f64();
    if reply.timed_out {
        bail!("the chain did not finish within {:?}", args.timeout);
    }
    let mut hop = report::histogram();
    let mut release = report::histogram();
    let mut prev: Option<titan_proto::message::client::JobStatus> = None;
    for job in &submitted.jobs {
        let status = client.status(&job.label)?;
        if let Some(p) = &prev {
            let (Some(child), Some(parent), Some(done)) =
                (status.started_at_us, p.started_at_us, p.finished_at_us)
            else {
                bail!("missing timestamps on {} or its parent", job.label);
            };
            report::record(
                &mut hop,
                Duration::from_micros(child.saturating_sub(parent)),
            );
            report::record(
                &mut release,
                Duration::from_micros(child.saturating_sub(done)),
            );
        }
        prev = Some(status);
    }
    let report = ChainReport {
        mode: "dag",
        chain: args.chain,
        seconds,
        hop: report::latency(&hop),
        release: report::latency(&release),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "dag: chain of {} NOOP jobs in {:.3} s",
            report.chain, report.seconds
        );
        print!("hop (parent dispatched → child dispatched) ");
        report::print_latency(&report.hop);
        print!("release (parent completed → child dispatched) ");
        report::print_latency(&report.release);
    }
    Ok(true)
}

pub fn spawn(args: SpawnArgs) -> anyhow::Result<bool> {
    let budget = Arc::new(AtomicI64::new(args.count as i64));
    let started = Instant::now();
    let threads: Vec<_> = (0..args.threads.max(1))
        .map(|thread| {
            let (budget, program) = (budget.clone(), args.program.clone());
            let workspace = args.workspace.clone();
            thread::spawn(move || -> std::io::Result<u64> {
                let mut n = 0;
                while budget.fetch_sub(1, Ordering::Relaxed) > 0 {
                    let mut command = Command::new(&program);
                    if let Some(workspace) = &workspace {
                        let dir = workspace.join(format!("job-{thread}-{n}"));
                        std::fs::create_dir_all(&dir)?;
                        command
                            .current_dir(&dir)
                            .process_group(0)
                            .stdin(Stdio::null())
                            .stdout(File::create(dir.join("stdout.log"))?)
                            .stderr(File::create(dir.join("stderr.log"))?);
                    }
                    command.status()?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut done = 0;
    for t in threads {
        done += t
            .join()
            .map_err(|_| anyhow::anyhow!("a spawn thread panicked"))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = Throughput {
        mode: "spawn",
        kind: None,
        jobs: done,
        seconds,
        jobs_per_sec: done as f64 / seconds,
        latency: None,
        master_cpu_us_per_job: None,
    };
    print(&report, args.json)?;
    Ok(done == args.count)
}

/// A client of the master at `addr`, proving the load generator's key.
fn connect(addr: &str) -> anyhow::Result<Client> {
    let credential = crate::wire::credential()
        .ok_or_else(|| anyhow::anyhow!("no key to prove to the master"))?;
    Ok(Client::connect(addr, credential)?)
}
