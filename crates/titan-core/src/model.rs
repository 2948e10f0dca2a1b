//! The job model: what a job is ([`JobSpec`], [`JobKind`]), what a submission is ([`Submission`]),
//! the states of DESIGN.md §1 ([`JobState`]) and how an attempt ended ([`Outcome`]).
//!
//! Specs are compact because a million of them may sit in the queues: strings are `Box<str>`,
//! times are `u32` milliseconds, and a job's skill is derived from its kind instead of stored
//! (a `Skill` job's skill is its TYPE; every other kind needs `GENERAL`).

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

/// The skill every worker is expected to advertise by default and every built-in job needs.
pub const GENERAL: &str = "GENERAL";
/// Priority when none is given (higher runs first).
pub const DEFAULT_PRIORITY: i32 = 1;
/// Retries after the first attempt when none are configured (the Java original's value).
pub const DEFAULT_RETRIES: u8 = 3;

/// What a job does.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum JobKind {
    /// `RUN|file [args...]`: a script or binary from the worker's `perm_files/`.
    Run {
        /// Relative path checked lexically at parse time.
        file: Box<str>,
        /// Arguments, split on whitespace.
        args: Box<[Box<str>]>,
    },
    /// `RUN_INLINE|name:BASE64`: a script whose bytes travel with the job.
    RunInline {
        /// File name the worker writes the bytes to (decides the interpreter by extension).
        name: Box<str>,
        /// The script itself (raw bytes; base64 only in the text syntax).
        bytes: Box<[u8]>,
    },
    /// `DEPLOY|file[|port]`: a long-running service.
    Deploy {
        /// Relative path checked lexically at parse time.
        file: Box<str>,
        /// Port that must accept connections before the service counts as ready.
        port: Option<u16>,
    },
    /// Completes inside the worker with no process (measures scheduler cost).
    Noop,
    /// Completes inside the worker after `ms` milliseconds, with no process.
    Sleep {
        /// How long to sleep.
        ms: u32,
    },
    /// Any other TYPE: runs only on workers that advertise the skill `name`.
    Skill {
        /// The TYPE as written, which is also the required skill.
        name: Box<str>,
        /// The DATA field, passed to the skill's handler.
        data: Box<str>,
    },
}

impl JobKind {
    /// The TYPE keyword this kind prints as.
    pub fn type_name(&self) -> &str {
        match self {
            JobKind::Run { .. } => "RUN",
            JobKind::RunInline { .. } => "RUN_INLINE",
            JobKind::Deploy { .. } => "DEPLOY",
            JobKind::Noop => "NOOP",
            JobKind::Sleep { .. } => "SLEEP",
            JobKind::Skill { name, .. } => name,
        }
    }

    /// Whether a worker runs it as a bounded process (services are processes too, but unbounded).
    pub fn runs_a_process(&self) -> bool {
        matches!(
            self,
            JobKind::Run { .. } | JobKind::RunInline { .. } | JobKind::Skill { .. }
        )
    }
}

/// A job as submitted: what to run and how to schedule it.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct JobSpec {
    /// What the job does.
    pub kind: JobKind,
    /// Higher runs first; ties run in submission order.
    pub priority: i32,
    /// Wait this long before the job becomes runnable (for a DAG child: after its deps are met).
    pub delay_ms: u32,
    /// Kill the attempt when it runs longer than this (counts as a failed attempt).
    pub timeout_ms: Option<NonZeroU32>,
    /// Retries after the first attempt before the job goes to the dead-letter queue.
    pub retries: u8,
}

impl JobSpec {
    /// A spec with the default priority, no delay, no timeout and the default retries.
    pub fn new(kind: JobKind) -> JobSpec {
        JobSpec {
            kind,
            priority: DEFAULT_PRIORITY,
            delay_ms: 0,
            timeout_ms: None,
            retries: DEFAULT_RETRIES,
        }
    }

    /// The skill a worker needs to run this job.
    pub fn skill(&self) -> &str {
        match &self.kind {
            JobKind::Skill { name, .. } => name,
            _ => GENERAL,
        }
    }

    /// Whether this is a long-running service (`DEPLOY`).
    pub fn is_service(&self) -> bool {
        matches!(self.kind, JobKind::Deploy { .. })
    }
}

/// One job of a DAG submission: its id, its spec and the ids it depends on.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct DagJobSpec {
    /// The job's id inside the DAG (`ID` field).
    pub name: Box<str>,
    /// What to run.
    pub spec: JobSpec,
    /// Ids of jobs of the same DAG that must complete first (any order).
    pub deps: Vec<Box<str>>,
}

/// What a client submits: one job, or a DAG of named jobs.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Submission {
    /// `SUBMIT TYPE|DATA|...`
    OneOff(JobSpec),
    /// `SUBMIT_DAG line ; line ; ...`
    Dag(Vec<DagJobSpec>),
}

impl Submission {
    /// Number of jobs in the submission.
    pub fn len(&self) -> usize {
        match self {
            Submission::OneOff(_) => 1,
            Submission::Dag(jobs) => jobs.len(),
        }
    }

    /// Whether the submission holds no job (an empty DAG, which the core rejects).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The life of a job (DESIGN.md §1).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum JobState {
    /// Waiting for its delay to pass.
    Pending,
    /// Waiting for its DAG dependencies.
    Blocked,
    /// Runnable, waiting for a worker slot.
    Queued,
    /// Dispatched to a worker (a service stays here while it lives).
    Running,
    /// Finished successfully.
    Completed,
    /// The last attempt failed; a retry is due after a backoff.
    Failed,
    /// Retries or crash limit exhausted; listed in the dead-letter queue.
    Dead,
    /// Cancelled by a user (or stopped, for a service), or a dependency was cancelled.
    Cancelled,
    /// A dependency died; this job never runs.
    UpstreamFailed,
}

impl JobState {
    /// All states, in declaration order.
    pub const ALL: [JobState; 9] = [
        JobState::Pending,
        JobState::Blocked,
        JobState::Queued,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::Dead,
        JobState::Cancelled,
        JobState::UpstreamFailed,
    ];

    /// Whether the job will never change state again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Dead | JobState::Cancelled | JobState::UpstreamFailed
        )
    }

    /// The upper-case name used in STATS, `--json` and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Blocked => "BLOCKED",
            JobState::Queued => "QUEUED",
            JobState::Running => "RUNNING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Dead => "DEAD",
            JobState::Cancelled => "CANCELLED",
            JobState::UpstreamFailed => "UPSTREAM_FAILED",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// States appear in JSON as their upper-case names (`"UPSTREAM_FAILED"`).
impl serde::Serialize for JobState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A state name that is not one of [`JobState::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<JobState, UnknownState> {
        let t = s.trim();
        JobState::ALL
            .into_iter()
            .find(|st| st.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// How a worker says an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Outcome {
    /// The process exited; 0 is success.
    Exited {
        /// Exit status.
        code: i32,
    },
    /// The process was killed by a signal it did not ask for.
    Signaled {
        /// Signal number.
        signal: i32,
    },
    /// The worker could not run the job (missing file, no JVM, handler error, ...).
    Error {
        /// Human-readable cause.
        message: Box<str>,
    },
    /// The worker killed the attempt because the master asked it to.
    Killed,
    /// The worker enforced a timeout itself.
    TimedOut,
    /// The worker refused to start the attempt for a reason a retry cannot fix (a service's port
    /// is taken by another process): the job is DEAD at once, without retries.
    Rejected {
        /// Human-readable cause.
        message: Box<str>,
    },
}

impl Outcome {
    /// Whether the attempt succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Exited { code: 0 })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited { code } => write!(f, "exited with code {code}"),
            Outcome::Signaled { signal } => write!(f, "killed by signal {signal}"),
            Outcome::Error { message } => write!(f, "error: {message}"),
            Outcome::Killed => f.write_str("killed on request"),
            Outcome::TimedOut => f.write_str("timed out"),
            Outcome::Rejected { message } => write!(f, "refused: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_print_and_parse() {
        for st in JobState::ALL {
            assert_eq!(st.name().parse::<JobState>().unwrap(), st);
        }
        assert_eq!(
            "upstream_failed".parse::<JobState>().unwrap(),
            JobState::UpstreamFailed
        );
        assert!("DONE".parse::<JobState>().is_err());
    }

    #[test]
    fn terminal_states_are_the_four_ends() {
        let terminal: Vec<_> = JobState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [
                JobState::Completed,
                JobState::Dead,
                JobState::Cancelled,
                JobState::UpstreamFailed
            ]
        );
    }

    #[test]
    fn skill_is_derived_from_kind() {
        assert_eq!(JobSpec::new(JobKind::Noop).skill(), GENERAL);
        let k = JobKind::Skill {
            name: "PDF_CONVERT".into(),
            data: "x.pdf".into(),
        };
        assert_eq!(JobSpec::new(k).skill(), "PDF_CONVERT");
    }

    #[test]
    fn spec_stays_compact() {
        // The memory target (<= 256 bytes per queued job) depends on this staying small.
        assert!(
            std::mem::size_of::<JobSpec>() <= 56,
            "{}",
            std::mem::size_of::<JobSpec>()
        );
    }
}
