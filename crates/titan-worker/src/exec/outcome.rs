//! What became of a job's process: the [`Outcome`] (how it ended, when, its pid) and the typed
//! reasons a process could not be started ([`StartError`]) or launched ([`LaunchError`]).

use super::resolve::ResolveError;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How a job's process ended.
#[derive(Clone, Debug)]
pub enum Termination {
    /// The process exited by itself with this status code.
    Exited { code: i32 },
    /// The process was killed by a signal the engine did not send.
    Signaled { signal: i32 },
    /// The job ran past its timeout; its process group got SIGTERM, and SIGKILL if it outlived
    /// the grace period (`escalated`).
    TimedOut { timeout: Duration, escalated: bool },
    /// The job was cancelled. `escalated` as for a timeout; `pid` in the outcome is `None` when
    /// the cancel came before the process was started (then nothing ran).
    Cancelled { escalated: bool },
    /// The process never started.
    FailedToStart { error: StartError },
    /// The process ended but its status could not be collected (another part of the program
    /// reaped it): a bug to report, never expected.
    StatusLost { error: Arc<io::Error> },
}

/// The raw status `waitpid` reported, kept even when the termination is a timeout or a cancel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    Code(i32),
    Signal(i32),
}

/// The complete record of one run of a job's process.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub termination: Termination,
    /// The raw wait status, when the process was started and reaped.
    pub wait_status: Option<WaitStatus>,
    /// The pid (also the process-group id), when the process was started.
    pub pid: Option<u32>,
    /// When the process was spawned.
    pub started_at: Option<SystemTime>,
    /// When the engine learned of its exit (or gave up starting it).
    pub ended_at: SystemTime,
    /// From spawn to exit, measured on a monotonic clock; zero when it never started.
    pub duration: Duration,
}

impl Outcome {
    /// True only for an exit with status 0.
    pub fn succeeded(&self) -> bool {
        matches!(self.termination, Termination::Exited { code: 0 })
    }

    /// The exit code, when the process exited by itself.
    pub fn exit_code(&self) -> Option<i32> {
        match self.termination {
            Termination::Exited { code } => Some(code),
            _ => None,
        }
    }
}

/// Why a job's process could not be started. Resolution errors are permanent for the job; the
/// I/O ones may be transient (a full disk, a file-descriptor limit), see [`StartError::retryable`].
#[derive(Clone, Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("cannot prepare workspace {}: {source}", path.display())]
    Workspace {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("cannot watch process {pid}: {source}")]
    Watch {
        pid: u32,
        #[source]
        source: Arc<io::Error>,
    },
}

impl StartError {
    /// Whether trying again later (or elsewhere) may succeed.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::Resolve(_))
    }
}

/// Why [`ProcessEngine::launch`](super::ProcessEngine::launch) refused a job at once.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("workspace directory name rejected: {0}")]
    BadWorkspaceName(ResolveError),
    #[error("environment variable rejected: {name:?}")]
    BadEnv { name: String },
    #[error("{limit} jobs already in flight")]
    TooManyJobs { limit: usize },
    #[error("the process engine is shutting down")]
    ShuttingDown,
}
