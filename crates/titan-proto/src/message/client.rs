//! Client ↔ master messages: submit, status, list, cancel, stop, wait, stats, workers.
//!
//! | request opcode | request | success reply |
//! |---|---|---|
//! | `SubmitJob`, `SubmitDag` | [`SubmitRequest`] | `Ack` [`Submitted`] |
//! | `GetJobStatus` | [`JobQuery`] | `Data` [`JobStatus`] |
//! | `ListJobs` | [`ListJobsRequest`] | `Data` [`JobList`] |
//! | `CancelJob` | [`JobQuery`] | `Ack` [`Cancelled`] |
//! | `Stop` | [`JobQuery`] | `Ack` [`Stopped`] |
//! | `WaitJobs` | [`WaitRequest`] | `Data` [`WaitReply`] |
//! | `Stats` | (empty) | `Data` [`StatsText`] |
//! | `StatsJson` | (empty) | `Data` [`ClusterStats`] |
//! | `ListWorkers` | (empty) | `Data` [`WorkerList`] |
//!
//! Any request may instead get an `Error` frame ([`super::ErrorReply`]).

use rkyv::{Archive, Deserialize, Serialize};

use titan_core::model::{JobState, Submission};

/// A parsed submission. The master validates it again: it never trusts a client's parser.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SubmitRequest {
    pub submission: Submission,
}

/// An accepted submission, sent once its journal record is durable.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Submitted {
    pub dag: u64,
    /// `TSK-<n>` for a one-off, `dag-<n>` for a DAG.
    pub label: String,
    pub jobs: Vec<JobLabel>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct JobLabel {
    pub id: u64,
    /// `TSK-<n>` or `dag-<n>:<NAME>`.
    pub label: String,
}

/// Names a job or a DAG as a user typed it: `TSK-17`, `dag-4`, `dag-4:NAME` or a bare `NAME`
/// (the most recent job of that name).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct JobQuery {
    pub job: String,
}

/// Everything a user may want to know about one job. Times are microseconds since the epoch.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[rkyv(derive(Debug))]
pub struct JobStatus {
    pub id: u64,
    pub label: String,
    pub state: JobState,
    /// The job's TYPE (`RUN`, `DEPLOY`, `NOOP`, a skill name, ...).
    pub kind: String,
    /// The job written back in the seed's syntax.
    pub spec: String,
    pub skill: String,
    pub priority: i32,
    /// Attempts dispatched so far.
    pub attempts: u32,
    /// Failed attempts counted against `retries`.
    pub failures: u8,
    pub retries: u8,
    /// Attempts lost with their worker.
    pub crashes: u8,
    pub worker: Option<u32>,
    pub worker_port: Option<u16>,
    /// For a service: whether it is ready (running, and its port accepts connections).
    pub ready: bool,
    pub submitted_at_us: u64,
    /// When the live or last attempt was dispatched.
    pub started_at_us: Option<u64>,
    /// When the job reached its terminal state.
    pub finished_at_us: Option<u64>,
    /// When the job entered its current state.
    pub state_since_us: u64,
    pub last_error: Option<String>,
    /// Names of the jobs it depends on.
    pub deps: Vec<String>,
}

#[cfg(any(test, feature = "test-support"))]
impl JobStatus {
    /// A queued NOOP one-off, for tests to adjust with struct update syntax.
    pub fn sample() -> JobStatus {
        JobStatus {
            id: 1,
            label: "TSK-1".into(),
            state: JobState::Queued,
            kind: "NOOP".into(),
            spec: "NOOP||1|0".into(),
            skill: "GENERAL".into(),
            priority: 1,
            attempts: 0,
            failures: 0,
            retries: 3,
            crashes: 0,
            worker: None,
            worker_port: None,
            ready: true,
            submitted_at_us: 1,
            started_at_us: None,
            finished_at_us: None,
            state_since_us: 1,
            last_error: None,
            deps: vec![],
        }
    }
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ListJobsRequest {
    pub state: Option<JobState>,
    pub limit: u32,
}

/// Jobs, newest first.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct JobList {
    pub jobs: Vec<JobStatus>,
    /// More jobs matched than `limit`.
    pub truncated: bool,
}

/// Replies when every named job is terminal, or when the timeout passes.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct WaitRequest {
    pub jobs: Vec<String>,
    pub timeout_ms: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct WaitReply {
    /// The jobs that reached a terminal state, in the order asked.
    pub jobs: Vec<JobStatus>,
    /// The ids (as asked) of jobs still live when the wait timed out.
    pub pending: Vec<String>,
    pub timed_out: bool,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Cancelled {
    /// Jobs moved to CANCELLED (descendants included).
    pub jobs: u32,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Stopped {
    pub label: String,
}

/// The seed's STATS text, rendered by the master.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct StatsText {
    pub text: String,
}

/// STATS as data: the counts of the text layout and more.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[rkyv(derive(Debug))]
pub struct ClusterStats {
    pub active_workers: u32,
    /// "Execution Queue": QUEUED jobs.
    pub queued: u64,
    /// "Delayed (Time)": PENDING jobs plus FAILED jobs waiting for their retry backoff.
    pub delayed: u64,
    /// "Blocked (DAG)": BLOCKED jobs.
    pub blocked: u64,
    /// "Dead Letter (DLQ)": DEAD jobs kept in the dead-letter queue.
    pub dlq: u64,
    pub running: u64,
    pub completed: u64,
    pub cancelled: u64,
    pub upstream_failed: u64,
    pub shards: u32,
    /// How state survives a master restart.
    pub persistence: Persistence,
    pub workers: Vec<WorkerStatus>,
    /// The most recent scaling decisions, oldest first.
    pub scaling: Vec<ScalingEvent>,
    /// Output lines streamed from workers, and what was lost on the way.
    pub logs: LogTotals,
}

/// How the master keeps its state. In JSON and in STATS it reads `memory-only`, `wal`, or
/// `write-ahead log failing, changes refused (<cause>)`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum Persistence {
    /// No journal: a master restart loses every job.
    MemoryOnly,
    /// A write-ahead log, working.
    Wal,
    /// A write-ahead log that cannot be written: changes are refused until it can.
    Failing { cause: String },
}

impl std::fmt::Display for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Persistence::MemoryOnly => f.write_str("memory-only"),
            Persistence::Wal => f.write_str("wal"),
            Persistence::Failing { cause } => {
                write!(f, "write-ahead log failing, changes refused ({cause})")
            }
        }
    }
}

impl serde::Serialize for Persistence {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The log sink's counters: loss is reported, never silent.
#[derive(
    Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, serde::Serialize,
)]
#[rkyv(derive(Debug))]
pub struct LogTotals {
    pub lines: u64,
    /// Lines that never arrived (a datagram lost on the way or dropped by a full buffer).
    pub lines_lost: u64,
    pub datagrams_lost: u64,
    /// Lines dropped from the master's rings to bound memory (the workers' files keep them).
    pub lines_evicted: u64,
    pub invalid_datagrams: u64,
    /// Datagrams whose seal did not verify (forged, altered, or another master's), dropped.
    pub unauthenticated_datagrams: u64,
    pub jobs_tracked: u64,
    pub bytes_held: u64,
}

/// A decision to spawn or retire a worker, and why.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[rkyv(derive(Debug))]
pub struct ScalingEvent {
    pub at_us: u64,
    pub action: ScalingAction,
    /// The worker asked to spawn a child, or the worker retired.
    pub worker: u32,
    pub worker_port: Option<u16>,
    pub reason: String,
}

/// What a scaling decision does; `"spawn"` or `"retire"` in JSON.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[rkyv(derive(Debug))]
#[serde(rename_all = "lowercase")]
pub enum ScalingAction {
    /// A worker is asked to spawn a child worker.
    Spawn,
    /// An idle ephemeral worker is retired.
    Retire,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[rkyv(derive(Debug))]
pub struct WorkerStatus {
    pub id: u32,
    pub port: u16,
    pub running: u32,
    pub capacity: u32,
    pub skills: Vec<String>,
    pub parent: Option<u32>,
    pub ephemeral: bool,
    /// Labels of the services it hosts.
    pub services: Vec<String>,
    pub silent_for_ms: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct WorkerList {
    pub workers: Vec<WorkerStatus>,
}
