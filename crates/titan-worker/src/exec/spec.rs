//! The engine's configuration ([`EngineConfig`]) and what a caller asks of one job ([`JobSpec`]),
//! with the engine's named limits and defaults.

use super::resolve::Program;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// How long a job's process group has between SIGTERM and SIGKILL, unless configured.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);
/// Process threads per engine, unless configured (see `benches/exec.rs` for the choice).
pub const DEFAULT_PROCESS_THREADS: usize = 2;
/// The most process threads an engine will start.
pub const MAX_PROCESS_THREADS: usize = 64;
/// How long the news that a process started may wait before the executor is woken for it,
/// unless configured: it usually rides along with an exit notice well before that.
pub const DEFAULT_LAUNCH_NOTICE_DELAY: Duration = Duration::from_millis(2);
/// The longest launch-notice delay accepted.
pub const MAX_LAUNCH_NOTICE_DELAY: Duration = Duration::from_millis(100);
/// Jobs in flight (launching or running) per engine, unless configured. It bounds the job
/// table, the launch queue and the completion queue.
pub const DEFAULT_MAX_JOBS: usize = 4096;
/// The PATH used to find interpreters when the worker's environment has none.
pub const FALLBACK_SEARCH_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The file the job's standard output goes to, in its workspace directory.
pub const STDOUT_FILE: &str = "stdout.log";
/// The file the job's standard error goes to, in its workspace directory.
pub const STDERR_FILE: &str = "stderr.log";

/// Where job processes may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildAffinity {
    /// On every CPU the worker may use, even when the worker's executor is pinned to one: the
    /// process threads reset their affinity, and children inherit it. The default.
    AllCpus,
    /// On whatever CPUs the thread that started the engine may use.
    Inherit,
}

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The `perm_files/` directory `RUN` files are taken from.
    pub perm_files: PathBuf,
    /// The `titan_workspace/` directory; each job gets a subdirectory.
    pub workspace: PathBuf,
    /// Where `python3`, `sh` and `java` are looked up (a `PATH`-style list).
    pub search_path: OsString,
    /// Threads that fork/exec and watch for exits (see [`DEFAULT_PROCESS_THREADS`]).
    pub process_threads: usize,
    /// Processes running at once; launches beyond it wait in the engine's FIFO queue, and a
    /// process thread starts the next one as soon as a running one exits, without a round trip
    /// through the executor. `usize::MAX` (the default) means no limit: the caller's own slots
    /// decide. A worker with capacity C that is handed more than C jobs sets it to C.
    pub max_running: usize,
    /// SIGTERM → SIGKILL grace, unless a job sets its own.
    pub kill_grace: Duration,
    /// How long [`Job::started`](super::Job::started) may lag behind the real start when
    /// nothing else wakes the executor. Waking a parked glommio executor costs tens of
    /// microseconds of CPU, so launch notices wait for the next exit notice (or this delay)
    /// instead of waking it on their own; zero wakes it for every launch. A cancel never waits
    /// for it, and timeouts count from the real start.
    pub launch_notice_delay: Duration,
    /// Jobs in flight at most; further launches get [`LaunchError::TooManyJobs`](super::LaunchError).
    pub max_jobs: usize,
    pub child_affinity: ChildAffinity,
    /// Records every job's process group so they die with the worker (see [`super::sentinel`]).
    pub sentinel: Option<std::sync::Arc<super::sentinel::Sentinel>>,
    /// Niceness job processes start with (0: the worker's own). A positive value lets the
    /// master and worker keep the CPU they need when jobs saturate a small host.
    pub job_nice: i32,
}

impl EngineConfig {
    /// Defaults, with interpreters found on the worker's own `PATH`.
    pub fn new(perm_files: impl Into<PathBuf>, workspace: impl Into<PathBuf>) -> Self {
        Self {
            perm_files: perm_files.into(),
            workspace: workspace.into(),
            search_path: std::env::var_os("PATH")
                .unwrap_or_else(|| OsString::from(FALLBACK_SEARCH_PATH)),
            process_threads: DEFAULT_PROCESS_THREADS,
            max_running: usize::MAX,
            kill_grace: DEFAULT_KILL_GRACE,
            launch_notice_delay: DEFAULT_LAUNCH_NOTICE_DELAY,
            max_jobs: DEFAULT_MAX_JOBS,
            child_affinity: ChildAffinity::AllCpus,
            sentinel: None,
            job_nice: 0,
        }
    }
}

/// Where a job's standard output and error go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputMode {
    /// Straight into `stdout.log` / `stderr.log` in the job's workspace directory (the files are
    /// the descriptors of the process; the worker never touches the bytes). The default.
    #[default]
    Files,
    /// Into two Unix sockets whose read ends the caller takes with
    /// [`Job::take_output`](super::Job::take_output) and must drain (a child blocks once a
    /// socket buffer is full). Use it to read output line by line (log streaming) and write the
    /// workspace files yourself: the engine creates both files, empty, before the job starts
    /// (on a process thread, so a caller need not open a file for a stream that stays empty),
    /// and never writes them.
    Capture,
}

/// What happens to the rest of a job's process group once its main process has exited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Leftovers {
    /// SIGKILL whatever is left of the group (a backgrounded `sleep`, a stray child), so a
    /// finished job leaves nothing running. The default.
    #[default]
    Kill,
    /// Leave them running (they are reparented to init and are no longer tracked).
    Leave,
}

/// One job to run.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// Passed to the process as `TITAN_JOB_ID`.
    pub job_id: String,
    /// The job's directory under the workspace: a plain file name (e.g. the job id, or the job
    /// id plus the attempt number to keep each attempt's logs). Created if missing; the log
    /// files in it are truncated.
    pub workspace_dir: String,
    pub program: Program,
    /// Extra environment variables, on top of the worker's own and the `TITAN_*` ones.
    pub env: Vec<(String, String)>,
    /// Kill the process group after this long (measured from spawn) and report `TimedOut`.
    /// `None` for services and anything else that may run for ever.
    pub timeout: Option<Duration>,
    /// SIGTERM → SIGKILL grace for this job; `None` uses the engine's.
    pub kill_grace: Option<Duration>,
    pub output: OutputMode,
    pub leftovers: Leftovers,
}

impl JobSpec {
    /// A job with no timeout, the engine's grace, output to files, leftovers killed.
    pub fn new(
        job_id: impl Into<String>,
        workspace_dir: impl Into<String>,
        program: Program,
    ) -> Self {
        Self {
            job_id: job_id.into(),
            workspace_dir: workspace_dir.into(),
            program,
            env: Vec::new(),
            timeout: None,
            kill_grace: None,
            output: OutputMode::Files,
            leftovers: Leftovers::Kill,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = Some(grace);
        self
    }

    pub fn with_output(mut self, output: OutputMode) -> Self {
        self.output = output;
        self
    }

    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn with_leftovers(mut self, leftovers: Leftovers) -> Self {
        self.leftovers = leftovers;
        self
    }
}
