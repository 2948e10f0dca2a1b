//! Shared helpers for the WAL integration tests: temporary directories that clean up, a small
//! glommio executor, seeded randomness, and replaying a shard directory into plain vectors.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use glommio::{LocalExecutorBuilder, Placement};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use titan::wal::{Journal, Lsn, OpenError, ReplayReport, Replayed, WalConfig};

/// A directory under the target dir's tmp area, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let path = base.join(format!("wal-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `f` on a fresh glommio executor with a small IO memory (RLIMIT_MEMLOCK is 8 MiB here).
pub fn run<T, F>(f: impl FnOnce() -> F) -> T
where
    F: Future<Output = T>,
{
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("glommio executor");
    executor.run(f())
}

/// Sends the journal's `tracing` output to the test's captured output (shown on failure).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::INFO)
        .try_init();
}

/// A seeded RNG; the seed comes from `WAL_TEST_SEED` or the clock and is printed for replay.
pub fn rng(test: &str) -> SmallRng {
    let seed = std::env::var("WAL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("{test}: seed {seed} (set WAL_TEST_SEED={seed} to replay)");
    SmallRng::seed_from_u64(seed)
}

/// A record as the tests remember it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub lsn: u64,
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// Everything a replay delivered.
#[derive(Debug, Default)]
pub struct Replay {
    pub snapshot: Option<(Lsn, Vec<u8>)>,
    pub records: Vec<Rec>,
}

pub fn collector(out: &mut Replay) -> impl FnMut(Replayed<'_>) + '_ {
    move |item| match item {
        Replayed::Snapshot { covered, bytes } => out.snapshot = Some((covered, bytes.to_vec())),
        Replayed::Record(r) => out.records.push(Rec {
            lsn: r.lsn.0,
            kind: r.kind,
            payload: r.payload.to_vec(),
        }),
    }
}

/// Opens `dir`, collecting the replay.
pub async fn open(
    dir: &Path,
    config: WalConfig,
) -> Result<(Journal, Replay, ReplayReport), OpenError> {
    let mut replay = Replay::default();
    let (journal, report) = Journal::open(dir, config, collector(&mut replay)).await?;
    Ok((journal, replay, report))
}

/// Appends each record and waits until all are durable; returns them with their sequence numbers.
pub async fn append_all(journal: &Journal, items: &[(u8, Vec<u8>)]) -> Vec<Rec> {
    let mut out = Vec::with_capacity(items.len());
    for (kind, payload) in items {
        let lsn = journal.append(*kind, payload).expect("append");
        out.push(Rec {
            lsn: lsn.0,
            kind: *kind,
            payload: payload.clone(),
        });
    }
    if let Some(last) = out.last() {
        journal
            .wait_durable(Lsn(last.lsn))
            .await
            .expect("records durable");
    }
    out
}

/// `n` records with random kinds and payload sizes in `0..max_len`.
pub fn random_records(rng: &mut SmallRng, n: usize, max_len: usize) -> Vec<(u8, Vec<u8>)> {
    use rand::Rng;
    (0..n)
        .map(|_| {
            let len = rng.gen_range(0..max_len);
            let mut payload = vec![0u8; len];
            rng.fill(&mut payload[..]);
            (rng.gen(), payload)
        })
        .collect()
}

/// Segment files in a shard directory, sorted.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    files_with_suffix(dir, ".wal")
}

pub fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    files_with_suffix(dir, ".snap")
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(suffix)))
        .collect();
    files.sort();
    files
}

/// A small config that rolls segments often.
pub fn small_config() -> WalConfig {
    WalConfig {
        segment_bytes: 64 << 10,
        max_record_bytes: 8 << 10,
        max_batch_bytes: 16 << 10,
        max_pending_bytes: 1 << 20,
        ..WalConfig::default()
    }
}

/// A test that cannot set up what it needs (a loop mount, a FUSE mount): under `CI=true` that is
/// a failure, since CI runs as root with everything installed and must not pass by skipping;
/// elsewhere the test is skipped with the reason printed.
pub fn cannot_set_up(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("cannot set up {what}; under CI=true a test that cannot run fails");
    }
    eprintln!("SKIPPED: cannot set up {what}");
}
