//! Log streaming end to end on loopback: real job processes drained by the engine's capture
//! mode on one glommio executor, shipped over a real UDP socket to a sink on another executor.
//! The files must be byte-identical to the job's output, the sink must hold the last lines,
//! and every line and datagram the sink did not get must be counted as lost.

mod exec_support;

use exec_support::log_keys::{attempt_shipper, master, shipper_config};

use exec_support::{config, TestDir, TEST_DEADLINE};
use futures_lite::future;
use glommio::channels::shared_channel::{self, ConnectedReceiver, ConnectedSender};
use glommio::{LocalExecutorBuilder, Placement};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use titan::core::JobId;
use titan::logs::{
    AttemptKey, JobLogSummary, LinesPage, LogShipper, LogSink, ShipperCounters, SinkConfig,
    SinkKeys, SinkLimits, SinkStats, Stream,
};
use titan::worker::drain::{drain_output, DrainError, DrainReport};
use titan::worker::exec::{JobSpec, OutputMode, ProcessEngine, Program, STDERR_FILE, STDOUT_FILE};

/// What the worker side asks of the sink's executor.
enum Request {
    Serve,
    Stats,
    Summary(AttemptKey),
    Page(AttemptKey, u64),
    End(AttemptKey, Stream, u64),
    /// Waits (up to a deadline) for lines after the cursor, then returns them.
    Follow(AttemptKey, u64),
}

enum Reply {
    Done,
    Stats(SinkStats),
    Summary(Option<JobLogSummary>),
    Page(Option<LinesPage>),
}

/// The worker side's handle on the sink executor.
struct SinkClient {
    requests: ConnectedSender<Request>,
    replies: ConnectedReceiver<Reply>,
}

impl SinkClient {
    async fn ask(&self, request: Request) -> Reply {
        assert!(
            self.requests.send(request).await.is_ok(),
            "sink executor gone"
        );
        self.replies.recv().await.expect("sink executor replies")
    }

    async fn stats(&self) -> SinkStats {
        match self.ask(Request::Stats).await {
            Reply::Stats(stats) => stats,
            _ => unreachable!("stats are answered with stats"),
        }
    }

    async fn summary(&self, key: AttemptKey) -> Option<JobLogSummary> {
        match self.ask(Request::Summary(key)).await {
            Reply::Summary(summary) => summary,
            _ => unreachable!("a summary request is answered with a summary"),
        }
    }

    async fn page(&self, request: Request) -> Option<LinesPage> {
        match self.ask(request).await {
            Reply::Page(page) => page,
            _ => unreachable!("a page request is answered with a page"),
        }
    }

    /// Follows the attempt until the sink knows both its streams ended (each follow request
    /// gives up after 5 s; the test deadline bounds the whole wait).
    async fn wait_ended(&self, key: AttemptKey) {
        loop {
            let page = self.page(Request::Follow(key, u64::MAX)).await;
            if page.is_some_and(|p| p.ended.is_some()) {
                return;
            }
        }
    }

    /// Tells the sink both streams' totals, as the worker's TCP report of the job's end will.
    async fn report_end(&self, key: AttemptKey, report: &DrainReport) {
        self.ask(Request::End(key, Stream::Stdout, report.stdout.records))
            .await;
        self.ask(Request::End(key, Stream::Stderr, report.stderr.records))
            .await;
    }

    /// Sends empty datagrams until the sink has accounted for every datagram the shipper
    /// sealed (received or counted lost), so losses at the very tail are counted too.
    async fn settle(&self, shipper: &LogShipper) -> SinkStats {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            shipper.sync();
            let sealed = shipper.counters().datagrams;
            let settle_by = Instant::now() + Duration::from_millis(500);
            loop {
                let stats = self.stats().await;
                if stats.datagrams + stats.datagrams_lost - stats.datagrams_late == sealed {
                    return stats;
                }
                if Instant::now() >= settle_by {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(2)).await;
            }
            assert!(Instant::now() < deadline, "the sink never caught up");
        }
    }
}

/// Runs a sink on its own executor thread and `body` on another, connected by channels.
fn with_sink<F, T>(
    config: SinkConfig,
    body: impl FnOnce(SocketAddr, SinkClient) -> F + Send + 'static,
) -> T
where
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let (request_tx, request_rx) = shared_channel::new_bounded::<Request>(4);
    let (reply_tx, reply_rx) = shared_channel::new_bounded::<Reply>(4);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let sink_thread = executor()
        .name("sink")
        .spawn(move || async move {
            let sink = LogSink::bind(
                "127.0.0.1:0".parse().unwrap(),
                config,
                SinkKeys::new(master()),
            )
            .expect("bind sink");
            addr_tx.send(sink.local_addr()).unwrap();
            let requests = request_rx.connect().await;
            let replies = reply_tx.connect().await;
            let mut serving = None;
            while let Some(request) = requests.recv().await {
                let reply = match request {
                    Request::Serve => {
                        let serve_sink = sink.clone();
                        serving = Some(glommio::spawn_local(async move {
                            serve_sink.serve().await.expect("sink serves");
                        }));
                        Reply::Done
                    }
                    Request::Stats => Reply::Stats(sink.stats()),
                    Request::Summary(key) => Reply::Summary(sink.summary(key)),
                    Request::Page(key, cursor) => {
                        Reply::Page(sink.lines_since(key, cursor, 100_000))
                    }
                    Request::End(key, stream, total) => {
                        sink.on_stream_end(key, stream, total);
                        Reply::Done
                    }
                    Request::Follow(key, cursor) => {
                        let timeout = glommio::timer::sleep(Duration::from_secs(5));
                        future::or(sink.wait_for_lines(key, cursor), async {
                            timeout.await;
                        })
                        .await;
                        Reply::Page(sink.lines_since(key, cursor, 100_000))
                    }
                };
                if replies.send(reply).await.is_err() {
                    break;
                }
            }
            drop(serving);
        })
        .expect("start sink executor");
    let addr = addr_rx.recv().expect("sink address");
    let result = executor()
        .name("worker")
        .spawn(move || async move {
            let client = SinkClient {
                requests: request_tx.connect().await,
                replies: reply_rx.connect().await,
            };
            let guard = async {
                glommio::timer::sleep(TEST_DEADLINE).await;
                panic!("test exceeded {TEST_DEADLINE:?}");
            };
            future::or(body(addr, client), guard).await
        })
        .expect("start worker executor")
        .join()
        .expect("worker executor");
    sink_thread.join().expect("sink executor");
    result
}

fn executor() -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(Placement::Unbound).io_memory(1 << 20)
}

fn perm(name: &str, args: &[&str]) -> Program {
    Program::perm_file(name, args.iter().map(|s| s.to_string()).collect())
}

/// Runs one job in capture mode and drains it through `shipper`; returns the drain report and
/// the job's directory.
async fn run_job(
    engine: &ProcessEngine,
    shipper: &LogShipper,
    name: &str,
    key: AttemptKey,
    program: Program,
) -> DrainReport {
    let job = engine
        .launch(JobSpec::new(name, name, program).with_output(OutputMode::Capture))
        .expect("launch");
    job.started().await.expect("job starts");
    let output = job.take_output().expect("captured output");
    let job_dir = engine.job_dir(name);
    let (report, outcome) = future::zip(
        drain_output(output, &job_dir, key, Some(&attempt_shipper(shipper, key))),
        job.outcome(),
    )
    .await;
    assert!(outcome.succeeded(), "{outcome:?}");
    assert!(report.stdout.error.is_none(), "{report:?}");
    assert!(report.stderr.error.is_none(), "{report:?}");
    report
}

fn numbered_lines(count: usize) -> Vec<u8> {
    (1..=count)
        .flat_map(|n| format!("line {n}\n").into_bytes())
        .collect()
}

fn read_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Lines shipped = lines received in order + lines counted lost, in the sink's totals and for
/// the attempt; datagrams sealed = received + lost − late.
fn assert_loss_accounted(
    stats: &SinkStats,
    summary: &JobLogSummary,
    counters: &ShipperCounters,
    report: &DrainReport,
) {
    assert_eq!(
        counters.lines,
        report.stdout.records + report.stderr.records
    );
    assert_eq!(
        stats.lines + stats.lines_lost,
        counters.lines,
        "{stats:?} {counters:?}"
    );
    for (progress, records) in [
        (summary.stdout, report.stdout.records),
        (summary.stderr, report.stderr.records),
    ] {
        assert_eq!(progress.total, Some(records));
        assert_eq!(progress.received + progress.lost, records, "{summary:?}");
    }
    assert_eq!(
        stats.datagrams + stats.datagrams_lost - stats.datagrams_late,
        counters.datagrams,
        "{stats:?} {counters:?}"
    );
}

#[test]
fn a_job_printing_a_million_lines_reaches_the_sink_its_file_is_exact_and_memory_bounded() {
    const LINES: usize = 1_000_000;
    let dir = TestDir::new("logs-many");
    let engine_config = config(&dir);
    let limits = SinkLimits::default();
    let sink_config = SinkConfig {
        limits,
        ..SinkConfig::default()
    };
    with_sink(sink_config, move |addr, sink| async move {
        sink.ask(Request::Serve).await;
        let engine = ProcessEngine::start(engine_config).unwrap();
        let shipper = LogShipper::new(shipper_config(addr, 1)).unwrap();
        let key = AttemptKey::new(JobId(42), 1);
        let count = LINES.to_string();
        let report = run_job(&engine, &shipper, "many", key, perm("lines.py", &[&count])).await;

        let job_dir = engine.job_dir("many");
        let expected = numbered_lines(LINES);
        assert_eq!(read_bytes(&job_dir.join(STDOUT_FILE)), expected);
        assert_eq!(report.stdout.bytes, expected.len() as u64);
        assert_eq!(report.stdout.records, LINES as u64);
        let stderr = format!("lines.py: wrote {LINES} lines\n");
        assert_eq!(read_bytes(&job_dir.join(STDERR_FILE)), stderr.as_bytes());

        sink.report_end(key, &report).await;
        let stats = sink.settle(&shipper).await;
        let summary = sink.summary(key).await.expect("the sink tracks the job");
        assert_loss_accounted(&stats, &summary, &shipper.counters(), &report);
        assert!(summary.ended.is_some());

        // The ring is bounded and holds the most recent lines.
        assert!(summary.lines_held <= limits.max_lines_per_job);
        assert!(stats.bytes_held <= limits.max_bytes_per_job);
        assert!(!summary.holds_everything, "{LINES} lines exceed the ring");
        let page = sink.page(Request::Page(key, 0)).await.expect("page");
        assert!(page.skipped > 0);
        let last_stdout = page
            .lines
            .iter()
            .rev()
            .find(|line| line.stream == Stream::Stdout)
            .expect("stdout lines held");
        if summary.stdout.lost == 0 {
            assert_eq!(last_stdout.bytes, format!("line {LINES}").into_bytes());
        }
        println!(
            "{LINES} lines: {} received, {} lost; datagrams {} sent, {} lost",
            stats.lines, stats.lines_lost, stats.datagrams, stats.datagrams_lost
        );
    });
}

#[test]
fn with_a_tiny_receive_buffer_every_lost_line_and_datagram_is_counted() {
    const LINES: usize = 50_000;
    let dir = TestDir::new("logs-tiny");
    let engine_config = config(&dir);
    let sink_config = SinkConfig {
        recv_buffer_bytes: 4096,
        ..SinkConfig::default()
    };
    with_sink(sink_config, move |addr, sink| async move {
        let engine = ProcessEngine::start(engine_config).unwrap();
        let shipper = LogShipper::new(shipper_config(addr, 2)).unwrap();
        let key = AttemptKey::new(JobId(7), 0);
        // The sink does not read until the job is done: its few kilobytes of buffer take the
        // first datagrams and the kernel drops the rest.
        let count = LINES.to_string();
        let report = run_job(&engine, &shipper, "tiny", key, perm("lines.py", &[&count])).await;
        assert_eq!(
            read_bytes(&engine.job_dir("tiny").join(STDOUT_FILE)),
            numbered_lines(LINES),
            "the file is complete whatever UDP loses"
        );
        sink.ask(Request::Serve).await;
        sink.report_end(key, &report).await;
        let stats = sink.settle(&shipper).await;
        let summary = sink.summary(key).await.expect("the sink tracks the job");
        let counters = shipper.counters();
        assert_loss_accounted(&stats, &summary, &counters, &report);
        assert!(stats.lines_lost > 0, "{stats:?}");
        assert!(stats.datagrams_lost > 0, "{stats:?}");
        assert_eq!(summary.stdout.lost + summary.stderr.lost, stats.lines_lost);
        println!(
            "tiny buffer: {} of {} lines lost, {} of {} datagrams lost (shipper dropped {})",
            stats.lines_lost,
            counters.lines,
            stats.datagrams_lost,
            counters.datagrams,
            counters.datagrams_dropped
        );
    });
}

#[test]
fn a_follower_sees_a_slow_job_line_by_line_and_then_its_end() {
    let dir = TestDir::new("logs-follow");
    let engine_config = config(&dir);
    with_sink(SinkConfig::default(), move |addr, sink| async move {
        sink.ask(Request::Serve).await;
        let engine = ProcessEngine::start(engine_config).unwrap();
        let shipper = LogShipper::new(shipper_config(addr, 3)).unwrap();
        let key = AttemptKey::new(JobId(5), 0);
        let job = run_job(
            &engine,
            &shipper,
            "slow",
            key,
            perm("lines.py", &["5", "100"]),
        );
        let follower = async {
            let mut cursor = 0;
            let mut seen = Vec::new();
            loop {
                let page = sink.page(Request::Follow(key, cursor)).await;
                let Some(page) = page else { continue };
                seen.push(page.lines.len());
                cursor = page.next_cursor;
                if page.ended.is_some() && page.lines.is_empty() {
                    return (seen, page);
                }
            }
        };
        let (report, (seen, last)) = future::zip(job, follower).await;
        assert_eq!(report.stdout.records, 5);
        // One line every 100 ms: the follower is woken for each rather than at the end.
        let pages_with_lines = seen.iter().filter(|&&n| n > 0).count();
        assert!(pages_with_lines >= 3, "pages: {seen:?}");
        assert_eq!(last.lost, 0);
        assert_eq!(last.next_cursor, 6, "5 stdout lines and the summary line");
        let summary = sink.summary(key).await.unwrap();
        assert!(summary.holds_everything, "{summary:?}");
    });
}

#[test]
fn odd_output_is_stored_exactly_and_rebuilt_from_the_ring() {
    let dir = TestDir::new("logs-odd");
    let engine_config = config(&dir);
    with_sink(SinkConfig::default(), move |addr, sink| async move {
        sink.ask(Request::Serve).await;
        let engine = ProcessEngine::start(engine_config).unwrap();
        let shipper = LogShipper::new(shipper_config(addr, 4)).unwrap();
        let key = AttemptKey::new(JobId(6), 2);
        let script = concat!(
            "import sys\n",
            "out = sys.stdout.buffer\n",
            "out.write(b'crlf\\r\\n' + b'x' * 5000 + b'\\n\\n\\xff\\xfe binary\\n')\n",
            "out.flush()\n",
            "out.write(b'no newline at the end')\n",
            "sys.stderr.write('err\\r\\n')\n",
        );
        let program = Program::Inline {
            name: "odd.py".into(),
            bytes: script.as_bytes().to_vec(),
            args: Vec::new(),
        };
        let report = run_job(&engine, &shipper, "odd", key, program).await;
        let job_dir = engine.job_dir("odd");
        let mut expected = b"crlf\r\n".to_vec();
        expected.extend_from_slice(&[b'x'; 5000]);
        expected.extend_from_slice(b"\n\n\xff\xfe binary\nno newline at the end");
        assert_eq!(read_bytes(&job_dir.join(STDOUT_FILE)), expected);
        assert_eq!(read_bytes(&job_dir.join(STDERR_FILE)), b"err\r\n");

        sink.wait_ended(key).await;
        let summary = sink.summary(key).await.unwrap();
        assert!(summary.holds_everything, "{summary:?}");
        let page = sink.page(Request::Page(key, 0)).await.unwrap();
        let mut rebuilt = [Vec::new(), Vec::new()];
        for line in &page.lines {
            let out = &mut rebuilt[line.stream.index()];
            out.extend_from_slice(&line.bytes);
            out.extend_from_slice(line.flags.terminator());
        }
        assert_eq!(rebuilt[0], expected, "stdout rebuilt from the ring");
        assert_eq!(rebuilt[1], b"err\r\n");
        // 5000 bytes make five records of at most 1024 bytes.
        assert_eq!(report.stdout.records, 1 + 5 + 1 + 1 + 1);
    });
}

#[test]
fn a_quiet_stream_still_gets_its_empty_file_and_both_ends_travel_in_one_datagram() {
    let dir = TestDir::new("logs-quiet");
    let engine_config = config(&dir);
    with_sink(SinkConfig::default(), move |addr, sink| async move {
        sink.ask(Request::Serve).await;
        let engine = ProcessEngine::start(engine_config).unwrap();
        let shipper = LogShipper::new(shipper_config(addr, 6)).unwrap();
        // A job silent on both streams, then one that writes only to stderr: every file exists,
        // the silent streams' empty. The silent job's two end markers travel in one datagram.
        let cases: [(u64, &str, &[u8], Option<u64>); 2] =
            [(9, "silent", b"", Some(1)), (10, "stderr", b"oops\n", None)];
        for (job, name, stderr, datagrams) in cases {
            let key = AttemptKey::new(JobId(job), 0);
            let script = if stderr.is_empty() {
                "exit 0\n"
            } else {
                "echo oops >&2\n"
            };
            let program = Program::Inline {
                name: format!("{name}.sh"),
                bytes: script.as_bytes().to_vec(),
                args: Vec::new(),
            };
            let report = run_job(&engine, &shipper, name, key, program).await;
            let lines = stderr.iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!((report.stdout.records, report.stderr.records), (0, lines));
            let job_dir = engine.job_dir(name);
            assert_eq!(read_bytes(&job_dir.join(STDOUT_FILE)), b"");
            assert_eq!(read_bytes(&job_dir.join(STDERR_FILE)), stderr);
            sink.wait_ended(key).await;
            assert!(sink.summary(key).await.unwrap().holds_everything);
            if let Some(datagrams) = datagrams {
                assert_eq!(sink.stats().await.datagrams, datagrams);
            }
        }
    });
}

#[test]
fn a_log_file_that_cannot_be_created_is_reported_and_the_job_still_runs() {
    let dir = TestDir::new("logs-nofile");
    let engine_config = config(&dir);
    exec_support::run(move || async move {
        let engine = ProcessEngine::start(engine_config).unwrap();
        // A directory where each log file should be: neither can be created.
        let job_dir = engine.job_dir("blocked");
        for file in [STDOUT_FILE, STDERR_FILE] {
            std::fs::create_dir_all(job_dir.join(file)).unwrap();
        }
        let program = Program::Inline {
            name: "half.sh".into(),
            bytes: b"echo out\n".to_vec(),
            args: Vec::new(),
        };
        let spec = JobSpec::new("blocked", "blocked", program).with_output(OutputMode::Capture);
        let job = engine.launch(spec).expect("launch");
        job.started()
            .await
            .expect("the job starts without its files");
        let output = job.take_output().expect("captured output");
        let key = AttemptKey::new(JobId(11), 0);
        let (report, outcome) =
            future::zip(drain_output(output, &job_dir, key, None), job.outcome()).await;
        assert!(outcome.succeeded(), "{outcome:?}");
        // stdout had bytes, so the drain tried again and failed; stderr stayed silent, so the
        // engine's own failure is what its report carries.
        assert_eq!((report.stdout.bytes, report.stdout.file_bytes), (4, 0));
        for stream in [&report.stdout, &report.stderr] {
            assert!(
                matches!(stream.error, Some(DrainError::CreateFile { .. })),
                "{report:?}"
            );
        }
    });
}

#[test]
fn with_nothing_listening_the_job_runs_at_full_speed_and_the_drops_are_counted() {
    let dir = TestDir::new("logs-nobody");
    let engine_config = config(&dir);
    // A port that was free a moment ago: nothing listens there.
    let nobody = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    exec_support::run(move || async move {
        let engine = ProcessEngine::start(engine_config).unwrap();
        let shipper = LogShipper::new(shipper_config(nobody, 5)).unwrap();
        let key = AttemptKey::new(JobId(8), 0);
        let report = run_job(
            &engine,
            &shipper,
            "nobody",
            key,
            perm("lines.py", &["20000"]),
        )
        .await;
        assert_eq!(
            read_bytes(&engine.job_dir("nobody").join(STDOUT_FILE)),
            numbered_lines(20_000)
        );
        let counters = shipper.counters();
        assert_eq!(
            counters.lines,
            report.stdout.records + report.stderr.records
        );
        assert_eq!(
            counters.datagrams,
            counters.datagrams_sent + counters.datagrams_dropped
        );
        // Each refused send reports the port unreachable, so some datagrams are refused.
        assert!(counters.send_errors > 0, "{counters:?}");

        // Without a shipper the drain still writes the files.
        let job = engine
            .launch(
                JobSpec::new("alone", "alone", perm("lines.py", &["300"]))
                    .with_output(OutputMode::Capture),
            )
            .unwrap();
        job.started().await.unwrap();
        let output = job.take_output().unwrap();
        let report = drain_output(output, &engine.job_dir("alone"), key, None).await;
        assert!(job.outcome().await.succeeded());
        assert_eq!(report.stdout.records, 300);
        assert_eq!(
            read_bytes(&engine.job_dir("alone").join(STDOUT_FILE)),
            numbered_lines(300)
        );
    });
}
