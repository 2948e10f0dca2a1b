//! Shared helpers for the process-engine tests: a small glommio executor, private temporary
//! directories, deadline-bounded waiting and /proc inspection.
#![allow(dead_code)] // each test binary uses a different subset

use glommio::{LocalExecutorBuilder, Placement};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use titan::worker::exec::EngineConfig;

/// Upper bound for any single test; a hang fails instead of blocking the suite.
pub const TEST_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `body` on a fresh glommio executor with a small io_uring memory budget.
pub fn run<F, T>(body: impl FnOnce() -> F + Send + 'static) -> T
where
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let guard = async {
                glommio::timer::sleep(TEST_DEADLINE).await;
                panic!("test exceeded {TEST_DEADLINE:?}");
            };
            futures_lite::future::or(body(), guard).await
        })
        .expect("start executor")
        .join()
        .expect("executor thread")
}

/// A private directory tree for one test, removed on drop.
pub struct TestDir {
    pub root: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root =
            std::env::temp_dir().join(format!("titan-exec-{}-{}-{n}", name, std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create test dir");
        Self { root }
    }

    pub fn workspace(&self) -> PathBuf {
        self.root.join("titan_workspace")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The repository's `perm_files/`.
pub fn perm_files() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("perm_files")
}

/// An engine configuration for tests: the repository's scripts, a private workspace, the
/// system interpreters (not shims, which start slowly), a short kill grace.
pub fn config(dir: &TestDir) -> EngineConfig {
    let mut config = EngineConfig::new(perm_files(), dir.workspace());
    config.search_path = "/usr/bin:/bin".into();
    config.kill_grace = Duration::from_millis(500);
    config
}

/// Polls `condition` every few milliseconds (a glommio timer, not a thread sleep) until it holds
/// or `within` has passed, which fails the test with `what`.
pub async fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// The state letter from /proc/PID/stat, or `None` when the process is gone.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// True while the process exists and is not a zombie.
pub fn is_running(pid: u32) -> bool {
    matches!(proc_state(pid), Some(state) if state != 'Z' && state != 'X')
}

/// Pids of this process's children that are zombies (exited, not reaped).
pub fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z")
            && fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(me)
        {
            zombies.push(pid);
        }
    }
    zombies
}

/// Reads a file in a job's workspace directory, or an empty string when it does not exist.
pub fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The keys of log streaming tests: one fixed master secret, and what a master would derive
/// from it for a worker and for an attempt.
pub mod log_keys {
    use std::net::SocketAddr;
    use titan::auth::{MasterSecret, Secret};
    use titan::core::WorkerId;
    use titan::logs::{AttemptKey, AttemptShipper, LogShipper, ShipperConfig};

    pub fn master() -> MasterSecret {
        MasterSecret::new(&Secret::from_bytes([7; 32]))
    }

    /// A shipper for worker `worker`, with the key the master would give it.
    pub fn shipper_config(addr: SocketAddr, worker: u32) -> ShipperConfig {
        ShipperConfig::new(addr, WorkerId(worker), master().worker_log_key(worker))
    }

    /// `shipper` with `key`'s attempt key, as the worker gets it with the attempt's `RunJob`.
    pub fn attempt_shipper(shipper: &LogShipper, key: AttemptKey) -> AttemptShipper {
        shipper.for_attempt(&master().attempt_log_key(key.job.0, key.attempt))
    }
}
