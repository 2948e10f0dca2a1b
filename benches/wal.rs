//! WAL benchmarks on real files with real synchronous (`O_DSYNC`) writes:
//!
//! - `wal_commit/group` vs `wal_commit/per_record_fsync`: many producers on one executor, each
//!   appending a 100–200 byte record and awaiting its durability, then the next. Same run, same
//!   disk, so the baseline is measured beside the thing it is a baseline for. Commit latency
//!   percentiles (append to durable) are printed after each.
//! - `wal_recovery/records_1m`: `Journal::open` of a shard holding 1,000,000 records.
//! - `wal_recovery/snapshot_20mb`: `Journal::open` of a shard whose state is a 20 MB snapshot.
//! - `wal_snapshot/write_20mb`: writing that snapshot (temp file, sync, rename, directory sync).
//! - `wal_record/encode_decode_150b`: the pure record codec.
//!
//! Run: `cargo bench --bench wal -- --warm-up-time 1 --measurement-time 3`.

use std::cell::RefCell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use titan::wal::{decode, encode_into, CommitMode, Journal, Lsn, Replayed, WalConfig};

thread_local! {
    /// Segment rolls seen by the commit benchmarks, for the printed summary.
    static ROLLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Concurrent producers in the commit benchmarks.
const PRODUCERS: usize = 256;
/// Records in the recovery benchmark.
const RECOVERY_RECORDS: usize = 1_000_000;
/// Size of the snapshot in the snapshot benchmarks (~100,000 live jobs at ~200 bytes each).
const SNAPSHOT_BYTES: usize = 20 << 20;

fn executor() -> LocalExecutor {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("glommio executor")
}

/// A scratch directory under the target dir, removed on drop.
struct BenchDir(PathBuf);

impl BenchDir {
    fn new(name: &str) -> BenchDir {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("wal-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("bench dir");
        BenchDir(path)
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Payloads of 100–200 random bytes, reused round-robin.
fn payloads(n: usize) -> Rc<Vec<Vec<u8>>> {
    let mut rng = SmallRng::seed_from_u64(0x0717_7a11);
    Rc::new(
        (0..n)
            .map(|_| {
                let mut p = vec![0u8; rng.gen_range(100..=200)];
                rng.fill(&mut p[..]);
                p
            })
            .collect(),
    )
}

/// `records` appends spread over `PRODUCERS` tasks, each awaiting durability before its next
/// append. Returns the elapsed time and each record's commit latency in microseconds.
async fn commit_run(
    dir: &Path,
    config: WalConfig,
    records: u64,
    payloads: Rc<Vec<Vec<u8>>>,
) -> (Duration, Vec<u32>, f64) {
    let (journal, _) = Journal::open(dir, config, |_| {}).await.expect("open");
    let journal = Rc::new(journal);
    let latencies = Rc::new(RefCell::new(Vec::with_capacity(records as usize)));
    let start = Instant::now();
    let tasks: Vec<_> = (0..PRODUCERS as u64)
        .map(|p| {
            let n = records / PRODUCERS as u64 + u64::from(p < records % PRODUCERS as u64);
            let (journal, latencies, payloads) =
                (journal.clone(), latencies.clone(), payloads.clone());
            glommio::spawn_local(async move {
                for i in 0..n {
                    let payload = &payloads[((p * 7919 + i) as usize) % payloads.len()];
                    let t = Instant::now();
                    let lsn = journal.append(1, payload).expect("append");
                    journal.wait_durable(lsn).await.expect("durable");
                    latencies.borrow_mut().push(t.elapsed().as_micros() as u32);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await;
    }
    let elapsed = start.elapsed();
    let stats = journal.stats();
    let per_batch = stats.durable_records as f64 / stats.batches.max(1) as f64;
    ROLLS.with(|r| r.set(r.get() + stats.segments_rolled));
    Rc::try_unwrap(journal)
        .ok()
        .expect("producers done")
        .close()
        .await
        .expect("close");
    let latencies = latencies.take();
    (elapsed, latencies, per_batch)
}

fn print_latencies(name: &str, mut micros: Vec<u32>, records: u64, busy: Duration, batch: f64) {
    if micros.is_empty() {
        return;
    }
    micros.sort_unstable();
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    println!(
        "{name}: {records} durable records in {:.2?} = {:.0} records/s; {batch:.1} records per write; \
         commit latency p50 {} us, p99 {} us, p99.9 {} us, max {} us",
        busy,
        records as f64 / busy.as_secs_f64(),
        at(0.5),
        at(0.99),
        at(0.999),
        micros[micros.len() - 1],
    );
}

fn commit(c: &mut Criterion) {
    let ex = executor();
    let payloads = payloads(4096);
    let mut group = c.benchmark_group("wal_commit");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    for (name, mode) in [
        ("group", CommitMode::Group),
        ("per_record_fsync", CommitMode::PerRecord),
    ] {
        // 16 MiB segments (about 90,000 records) so that runs include rolling into segments the
        // flusher prepared in the background.
        let config = WalConfig {
            commit_mode: mode,
            segment_bytes: 16 << 20,
            ..WalConfig::default()
        };
        let seen = RefCell::new((Vec::new(), 0u64, Duration::ZERO, 0.0f64));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let dir = BenchDir::new(name);
                let (elapsed, lat, batch) =
                    ex.run(commit_run(&dir.0, config.clone(), iters, payloads.clone()));
                let mut seen = seen.borrow_mut();
                seen.0.extend(lat);
                seen.1 += iters;
                seen.2 += elapsed;
                seen.3 = batch;
                elapsed
            })
        });
        let (lat, records, busy, batch) = seen.into_inner();
        print_latencies(name, lat, records, busy, batch);
        println!("{name}: {} segment rolls", ROLLS.with(|r| r.replace(0)));
    }
    group.finish();
}

/// Fills `dir` with `n` records of 100–200 bytes.
async fn fill(dir: &Path, n: usize, payloads: &[Vec<u8>]) {
    let (journal, _) = Journal::open(dir, WalConfig::default(), |_| {})
        .await
        .expect("open");
    let mut last = Lsn::ZERO;
    for i in 0..n {
        last = journal
            .append(1, &payloads[i % payloads.len()])
            .expect("append");
        if i % 20_000 == 19_999 {
            journal.wait_durable(last).await.expect("durable");
        }
    }
    journal.wait_durable(last).await.expect("durable");
    journal.close().await.expect("close");
}

/// Opens `dir` and consumes the replay; returns the open time and the bytes seen.
async fn open_timed(dir: &Path) -> (Duration, u64) {
    let start = Instant::now();
    let mut seen = 0u64;
    let (journal, report) = Journal::open(dir, WalConfig::default(), |item| match item {
        Replayed::Snapshot { bytes, .. } => seen += bytes.len() as u64,
        Replayed::Record(r) => seen += r.payload.len() as u64 + u64::from(r.kind),
    })
    .await
    .expect("open");
    let elapsed = start.elapsed();
    black_box(report);
    journal.close().await.expect("close");
    (elapsed, seen)
}

fn recovery(c: &mut Criterion) {
    let ex = executor();
    let payloads = payloads(4096);
    let records = BenchDir::new("recovery-records");
    ex.run(fill(&records.0, RECOVERY_RECORDS, &payloads));
    let snapshot = BenchDir::new("recovery-snapshot");
    let state: Vec<u8> = (0..SNAPSHOT_BYTES).map(|i| (i * 31 / 7) as u8).collect();
    ex.run(async {
        let (journal, _) = Journal::open(&snapshot.0, WalConfig::default(), |_| {})
            .await
            .expect("open");
        let lsn = journal.append(1, b"state").expect("append");
        journal.write_snapshot(lsn, &state).await.expect("snapshot");
        journal.close().await.expect("close");
    });

    let mut group = c.benchmark_group("wal_recovery");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECOVERY_RECORDS as u64));
    group.bench_function("records_1m", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (elapsed, seen) = ex.run(open_timed(&records.0));
                    assert!(seen >= 100 * RECOVERY_RECORDS as u64);
                    elapsed
                })
                .sum()
        })
    });
    group.throughput(Throughput::Bytes(SNAPSHOT_BYTES as u64));
    group.bench_function("snapshot_20mb", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (elapsed, seen) = ex.run(open_timed(&snapshot.0));
                    assert_eq!(seen, SNAPSHOT_BYTES as u64);
                    elapsed
                })
                .sum()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("wal_snapshot");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(SNAPSHOT_BYTES as u64));
    group.bench_function("write_20mb", |b| {
        b.iter_custom(|iters| {
            let dir = BenchDir::new("snapshot-write");
            ex.run(async {
                let (journal, _) = Journal::open(&dir.0, WalConfig::default(), |_| {})
                    .await
                    .expect("open");
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let lsn = journal.append(1, b"x").expect("append");
                    let start = Instant::now();
                    journal.write_snapshot(lsn, &state).await.expect("snapshot");
                    total += start.elapsed();
                }
                journal.close().await.expect("close");
                total
            })
        })
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    let payload = vec![0xabu8; 150];
    let mut buf = Vec::with_capacity(256);
    let mut group = c.benchmark_group("wal_record");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_decode_150b", |b| {
        b.iter(|| {
            buf.clear();
            encode_into(&mut buf, Lsn(42), 1, black_box(&payload));
            let decoded = decode(black_box(&buf), 1 << 20).expect("valid");
            black_box(decoded.record.payload.len())
        })
    });
    group.finish();
}

criterion_group!(benches, commit, recovery, codec);
criterion_main!(benches);
