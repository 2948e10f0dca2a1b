//! UDP log throughput from one worker: lines through the real shipper, a real loopback UDP
//! socket and the real sink, against a raw UDP baseline measured in the same run.
//!
//! Run: `cargo bench --bench logs -- [--lines N] [--rounds R] [--datagram 1400,8192]
//!       [--rate LINES_PER_S] [--only raw|burst|paced|process|files] [--workspace DIR]`
//!
//! Variants, each round, for each datagram size:
//! - `raw` (baseline): the same datagrams, encoded beforehand, sent with plain non-blocking
//!   `send` calls to a thread that only counts them: the cost of UDP itself;
//! - `burst`: N synthetic lines ("line 1" …, 64 KiB at a time as a drain reads them) through
//!   the line splitter and the shipper as fast as they come, to a `LogSink` on another
//!   executor: the most the pipeline takes, and how much it loses when the sink falls behind;
//! - `paced`: the same at `--rate` lines per second (default 100,000), in 1 ms steps;
//! - `process`: a real job (`perm_files/lines.py N`) in capture mode, drained to its files and
//!   shipped; its baseline `files` runs the same job with output straight to files;
//! - `seal`: the cost of the seals per datagram (ChaCha20-Poly1305, issue 14), CPU only: packing
//!   the lines into sealed datagrams, sealing a datagram's sections again on their own, and
//!   opening them as the sink does (keys cached), in nanoseconds per datagram.
//!
//! Lines per second are measured from the first line to the moment the sink has accounted for
//! every datagram (received or counted lost), so a sink that lags is not flattered. Loss is the
//! sink's own count. Numbers on a shared 2-core host are noisy; medians over the rounds.

use futures_lite::future;
use glommio::{LocalExecutorBuilder, Placement};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use titan::auth::{MasterSecret, SealKey, Secret};
use titan::core::{JobId, WorkerId};
use titan::logs::{
    AttemptKey, AttemptShipper, Datagram, LineSplitter, LogShipper, LogSink, Packer, ShipperConfig,
    SinkConfig, SinkKeys, SinkStats, Stream,
};
use titan::worker::drain::drain_output;
use titan::worker::exec::{EngineConfig, JobSpec, OutputMode, ProcessEngine, Program};

struct Options {
    lines: usize,
    rounds: usize,
    datagrams: Vec<usize>,
    rate: u64,
    only: Option<String>,
    workspace: PathBuf,
}

fn parse_options() -> Options {
    let mut options = Options {
        lines: 1_000_000,
        rounds: 3,
        datagrams: vec![1400, 8192],
        rate: 100_000,
        only: None,
        workspace: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("logs-bench"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--lines" => options.lines = value().parse().expect("--lines N"),
            "--rounds" => options.rounds = value().parse().expect("--rounds R"),
            "--rate" => options.rate = value().parse().expect("--rate LINES_PER_S"),
            "--only" => options.only = Some(value()),
            "--workspace" => options.workspace = PathBuf::from(value()),
            "--datagram" => {
                options.datagrams = value()
                    .split(',')
                    .map(|d| d.parse().expect("--datagram 1400,8192"))
                    .collect()
            }
            // `cargo bench` passes `--bench`; other harness flags are ignored too.
            _ => {}
        }
    }
    options
}

/// One run's figures.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    /// Lines offered per second, first line to full accounting at the sink.
    lines_per_s: f64,
    /// Lines that reached the sink per second over the same time.
    delivered_per_s: f64,
    loss_pct: f64,
}

fn executor(name: &str) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .name(name)
}

/// The master secret the bench's sink derives its keys from (and hands the shipper keys from).
fn master() -> MasterSecret {
    MasterSecret::new(&Secret::from_bytes([3; 32]))
}

/// A shipper config for worker 1, with its key.
fn shipper_config(addr: SocketAddr, datagram: usize) -> ShipperConfig {
    let mut config = ShipperConfig::new(addr, WorkerId(1), master().worker_log_key(1));
    config.datagram_bytes = datagram;
    config
}

/// The attempt every bench job's lines belong to, and its shipper.
fn attempt() -> AttemptKey {
    AttemptKey::new(JobId(1), 0)
}

fn attempt_shipper(shipper: &LogShipper) -> AttemptShipper {
    shipper.for_attempt(&master().attempt_log_key(attempt().job.0, attempt().attempt))
}

/// "line 1\n" … "line N\n" in chunks of about 64 KiB, as a drain would read them.
fn chunks(lines: usize) -> Vec<Vec<u8>> {
    let mut chunks = vec![Vec::new()];
    for n in 1..=lines {
        let chunk = chunks.last_mut().expect("one chunk at least");
        chunk.extend_from_slice(format!("line {n}\n").as_bytes());
        if chunk.len() >= 64 * 1024 - 16 {
            chunks.push(Vec::new());
        }
    }
    chunks
}

/// A sink on its own executor thread that publishes its stats every millisecond.
struct SinkThread {
    addr: SocketAddr,
    stats: Arc<Mutex<SinkStats>>,
    stop: Arc<AtomicBool>,
    thread: glommio::ExecutorJoinHandle<()>,
}

impl SinkThread {
    fn start() -> Self {
        let stats = Arc::new(Mutex::new(SinkStats::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (published, stopping) = (stats.clone(), stop.clone());
        let thread = executor("sink")
            .spawn(move || async move {
                let keys = SinkKeys::new(master());
                let sink =
                    LogSink::bind("127.0.0.1:0".parse().unwrap(), SinkConfig::default(), keys)
                        .expect("bind sink");
                addr_tx.send(sink.local_addr()).unwrap();
                let serve = async {
                    sink.serve().await.expect("sink serves");
                };
                let publish = async {
                    while !stopping.load(Ordering::Acquire) {
                        *published.lock().unwrap() = sink.stats();
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                    }
                };
                future::or(serve, publish).await;
            })
            .expect("start sink executor");
        let addr = addr_rx.recv().expect("sink address");
        Self {
            addr,
            stats,
            stop,
            thread,
        }
    }

    fn stats(&self) -> SinkStats {
        *self.stats.lock().unwrap()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.join().expect("sink executor");
    }
}

/// Syncs until the sink has accounted for every datagram the shipper sealed.
async fn settle(sink: &SinkThread, shipper: &LogShipper) -> SinkStats {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        shipper.sync();
        let sealed = shipper.counters().datagrams;
        let retry_at = Instant::now() + Duration::from_millis(200);
        while Instant::now() < retry_at {
            let stats = sink.stats();
            if stats.datagrams + stats.datagrams_lost - stats.datagrams_late == sealed {
                return stats;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        assert!(Instant::now() < deadline, "the sink never caught up");
    }
}

fn figures(lines: u64, stats: &SinkStats, elapsed: Duration) -> Run {
    let seconds = elapsed.as_secs_f64();
    Run {
        lines_per_s: lines as f64 / seconds,
        delivered_per_s: stats.lines as f64 / seconds,
        loss_pct: 100.0 * stats.lines_lost as f64 / lines.max(1) as f64,
    }
}

/// Synthetic lines through the splitter and the shipper; `rate` paces them (lines per second).
fn synthetic(chunks: Arc<Vec<Vec<u8>>>, lines: usize, datagram: usize, rate: Option<u64>) -> Run {
    let sink = SinkThread::start();
    let addr = sink.addr;
    let run = executor("worker")
        .spawn(move || async move {
            let base = LogShipper::new(shipper_config(addr, datagram)).expect("shipper");
            let shipper = attempt_shipper(&base);
            let key = attempt().stream(Stream::Stdout);
            let mut splitter = LineSplitter::new();
            let began = Instant::now();
            match rate {
                None => {
                    for chunk in chunks.iter() {
                        splitter.feed(chunk, |record| shipper.ship_line(key, record));
                    }
                }
                Some(rate) => pace(&chunks, rate, &mut splitter, &shipper, key).await,
            }
            let total = splitter.finish(|record| shipper.ship_line(key, record));
            shipper.ship_end(key, total);
            assert_eq!(total, lines as u64);
            let stats = settle(&sink, &base).await;
            let run = figures(total, &stats, began.elapsed());
            (run, sink)
        })
        .expect("start worker executor")
        .join()
        .expect("worker executor");
    let (run, sink) = run;
    sink.stop();
    run
}

/// Feeds lines at `rate` per second: each millisecond, the lines due by then.
async fn pace(
    chunks: &[Vec<u8>],
    rate: u64,
    splitter: &mut LineSplitter,
    shipper: &AttemptShipper,
    key: titan::logs::StreamKey,
) {
    let began = Instant::now();
    let mut fed = 0u64;
    for chunk in chunks {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let due = (began.elapsed().as_secs_f64() * rate as f64) as u64;
            if due <= fed {
                glommio::timer::sleep(Duration::from_millis(1)).await;
                continue;
            }
            // Feed whole lines up to the number due.
            let mut take = 0;
            let mut lines = 0;
            while take < rest.len() && fed + lines < due {
                let end = rest[take..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| take + i + 1);
                take = end;
                lines += 1;
            }
            splitter.feed(&rest[..take], |record| shipper.ship_line(key, record));
            fed += lines;
            rest = &rest[take..];
        }
    }
}

/// The baseline: the same datagrams, encoded beforehand, sent raw to a counting thread.
fn raw(chunks: &[Vec<u8>], lines: usize, datagram: usize) -> Run {
    let encoded = pack(chunks, datagram);
    let per_datagram: Arc<Vec<u32>> = Arc::new(encoded.iter().map(|(_, n)| *n).collect());

    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = receiver.set_read_timeout(Some(Duration::from_millis(100)));
    let addr = receiver.local_addr().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let received_lines = Arc::new(AtomicU64::new(0));
    let (thread_done, thread_lines, counts) =
        (done.clone(), received_lines.clone(), per_datagram.clone());
    // The same receive buffer the sink asks for.
    let receiver = set_rcvbuf(receiver, titan::logs::DEFAULT_RECV_BUFFER_BYTES);
    let thread = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = receiver.recv(&mut buf) {
            if n == 1 {
                break;
            }
            let seq = u64::from_be_bytes(buf[16..24].try_into().unwrap()) as usize;
            thread_lines.fetch_add(u64::from(counts[seq]), Ordering::Relaxed);
        }
        thread_done.store(true, Ordering::Release);
    });
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.connect(addr).unwrap();
    sender.set_nonblocking(true).unwrap();
    let began = Instant::now();
    for (bytes, _) in &encoded {
        let _ = sender.send(bytes);
    }
    // The end marker may be dropped like any datagram: repeat it until the receiver stops.
    while !done.load(Ordering::Acquire) {
        let _ = sender.send(&[0]);
        std::thread::yield_now();
    }
    let elapsed = began.elapsed();
    thread.join().unwrap();
    let delivered = received_lines.load(Ordering::Relaxed);
    let seconds = elapsed.as_secs_f64();
    Run {
        lines_per_s: lines as f64 / seconds,
        delivered_per_s: delivered as f64 / seconds,
        loss_pct: 100.0 * (lines as u64 - delivered) as f64 / lines as f64,
    }
}

/// The lines packed into sealed datagrams, each with its line count.
fn pack(chunks: &[Vec<u8>], datagram: usize) -> Vec<(Vec<u8>, u32)> {
    let key = attempt().stream(Stream::Stdout);
    let worker_key = SealKey::new(&master().worker_log_key(1));
    let seal = SealKey::new(&master().attempt_log_key(attempt().job.0, attempt().attempt));
    let mut packer = Packer::new(WorkerId(1), worker_key, 1, datagram);
    let mut splitter = LineSplitter::new();
    let mut encoded: Vec<(Vec<u8>, u32)> = Vec::new();
    for chunk in chunks {
        splitter.feed(chunk, |record| {
            packer.push_line(&seal, key, record, |d| {
                encoded.push((d.bytes.to_vec(), d.lines))
            })
        });
    }
    packer.flush(|d| encoded.push((d.bytes.to_vec(), d.lines)));
    encoded
}

/// What the seals cost per datagram (nanoseconds): packing (with sealing), sealing the
/// datagram's bytes again on their own, and opening as the sink does.
fn seal_cost(chunks: &[Vec<u8>], datagram: usize) -> (usize, f64, f64, f64, f64) {
    let began = Instant::now();
    let encoded = pack(chunks, datagram);
    let pack_ns = began.elapsed().as_nanos() as f64 / encoded.len() as f64;
    let key = SealKey::new(&master().attempt_log_key(1, 0));
    let mut copies: Vec<Vec<u8>> = encoded.iter().map(|(bytes, _)| bytes.clone()).collect();
    let began = Instant::now();
    for bytes in &mut copies {
        let (aad, body) = bytes.split_at_mut(50);
        std::hint::black_box(key.seal([0; 12], aad, body));
    }
    let seal_ns = began.elapsed().as_nanos() as f64 / copies.len() as f64;
    let mut copies: Vec<Vec<u8>> = encoded.iter().map(|(bytes, _)| bytes.clone()).collect();
    let mut keys = SinkKeys::new(master());
    let began = Instant::now();
    for bytes in &mut copies {
        let datagram = Datagram::open(bytes, &mut keys).expect("a sealed datagram opens");
        std::hint::black_box(datagram.header.sections);
    }
    let open_ns = began.elapsed().as_nanos() as f64 / copies.len() as f64;
    let lines = encoded.iter().map(|(_, n)| f64::from(*n)).sum::<f64>() / encoded.len() as f64;
    (encoded.len(), lines, pack_ns, seal_ns, open_ns)
}

fn set_rcvbuf(socket: UdpSocket, bytes: usize) -> UdpSocket {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let value = bytes as libc::c_int;
    // SAFETY: a live socket and a live c_int whose size is passed along.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(ret, 0, "SO_RCVBUF");
    socket
}

/// A real job printing `lines` lines: captured, drained to files and shipped (`ship`), or with
/// its output straight to files (the baseline).
fn process(lines: usize, datagram: usize, ship: bool, workspace: PathBuf) -> Run {
    let sink = SinkThread::start();
    let addr = sink.addr;
    let run = executor("worker")
        .spawn(move || async move {
            let perm_files = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("perm_files");
            let mut config = EngineConfig::new(perm_files, &workspace);
            config.search_path = "/usr/bin:/bin".into();
            let engine = ProcessEngine::start(config).expect("engine");
            let shipper = LogShipper::new(shipper_config(addr, datagram)).expect("shipper");
            let program = Program::perm_file("lines.py", vec![lines.to_string()]);
            let mode = if ship {
                OutputMode::Capture
            } else {
                OutputMode::Files
            };
            let began = Instant::now();
            let job = engine
                .launch(JobSpec::new("bench", "bench", program).with_output(mode))
                .expect("launch");
            job.started().await.expect("started");
            if ship {
                let output = job.take_output().expect("captured");
                let lines_shipper = attempt_shipper(&shipper);
                let dir = engine.job_dir("bench");
                let report = drain_output(output, &dir, attempt(), Some(&lines_shipper)).await;
                assert_eq!(report.stdout.records, lines as u64);
            }
            assert!(job.outcome().await.succeeded());
            let stats = if ship {
                settle(&sink, &shipper).await
            } else {
                SinkStats {
                    lines: lines as u64,
                    ..SinkStats::default()
                }
            };
            // stdout lines plus the summary line on stderr.
            let total = if ship { lines as u64 + 1 } else { lines as u64 };
            (figures(total, &stats, began.elapsed()), sink)
        })
        .expect("start worker executor")
        .join()
        .expect("worker executor");
    let (run, sink) = run;
    sink.stop();
    run
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let options = parse_options();
    let wanted = |name: &str| options.only.as_deref().is_none_or(|only| only == name);
    let chunks = Arc::new(chunks(options.lines));
    std::fs::create_dir_all(&options.workspace).expect("workspace");
    let mut results: Vec<(String, Vec<Run>)> = Vec::new();
    let mut record = |name: String, run: Run| {
        println!(
            "  {name:<16} {:>12.0} lines/s offered {:>12.0} delivered  loss {:>6.2}%",
            run.lines_per_s, run.delivered_per_s, run.loss_pct
        );
        match results.iter_mut().find(|(n, _)| *n == name) {
            Some((_, runs)) => runs.push(run),
            None => results.push((name, vec![run])),
        }
    };
    for round in 1..=options.rounds {
        println!("round {round}");
        for &datagram in &options.datagrams {
            if wanted("raw") {
                record(
                    format!("raw/{datagram}"),
                    raw(&chunks, options.lines, datagram),
                );
            }
            if wanted("burst") {
                record(
                    format!("burst/{datagram}"),
                    synthetic(chunks.clone(), options.lines, datagram, None),
                );
            }
            if wanted("paced") {
                record(
                    format!("paced/{datagram}"),
                    synthetic(chunks.clone(), options.lines, datagram, Some(options.rate)),
                );
            }
            if wanted("seal") {
                let (count, lines, pack_ns, seal_ns, open_ns) = seal_cost(&chunks, datagram);
                println!(
                    "  seal/{datagram:<11} {count} datagrams of {lines:.0} lines: pack+seal \
                     {pack_ns:.0} ns, seal alone {seal_ns:.0} ns, open {open_ns:.0} ns per datagram"
                );
            }
            if wanted("process") {
                let workspace = options.workspace.clone();
                record(
                    format!("process/{datagram}"),
                    process(options.lines, datagram, true, workspace),
                );
            }
        }
        if wanted("files") {
            let workspace = options.workspace.clone();
            record(
                "files".into(),
                process(options.lines, 1400, false, workspace),
            );
        }
    }
    println!(
        "medians over {} rounds of {} lines (paced at {} lines/s):",
        options.rounds, options.lines, options.rate
    );
    for (name, runs) in &mut results {
        let mut offered: Vec<f64> = runs.iter().map(|r| r.lines_per_s).collect();
        let mut delivered: Vec<f64> = runs.iter().map(|r| r.delivered_per_s).collect();
        let mut loss: Vec<f64> = runs.iter().map(|r| r.loss_pct).collect();
        println!(
            "  {name:<16} {:>12.0} lines/s offered {:>12.0} delivered  loss {:>6.2}%",
            median(&mut offered),
            median(&mut delivered),
            median(&mut loss)
        );
    }
}
