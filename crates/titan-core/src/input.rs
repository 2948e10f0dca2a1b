//! What goes into a core: every event it reacts to ([`Input`]), with the worker registration
//! ([`WorkerInfo`]) and cancel target ([`Target`]) they carry. The shell turns client requests,
//! worker reports, journal acknowledgements and deadlines into these values and passes each to
//! [`Core::handle`](super::Core::handle) with the time it happened.

use std::time::Duration;

use super::ids::{DagId, JobId, Lsn, WorkerId};
use super::model::{Outcome, Submission};

/// What a cancel applies to.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// One job (its non-started descendants follow it).
    Job(JobId),
    /// Every non-terminal job of a submission.
    Dag(DagId),
}

impl Target {
    /// The submission the target belongs to.
    pub fn dag(self) -> DagId {
        match self {
            Target::Job(job) => job.dag(),
            Target::Dag(dag) => dag,
        }
    }
}

/// A worker's registration, broadcast by the shell to every shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Slot and generation, assigned by the shell.
    pub id: WorkerId,
    /// Concurrent attempts it accepts (clamped to `MAX_WORKER_CAPACITY`).
    pub capacity: u32,
    /// Skills it advertises; a worker that should take built-in jobs lists `GENERAL`.
    pub skills: Vec<Box<str>>,
    /// The port it listens on (shown in STATS).
    pub port: u16,
    /// The worker that spawned it, for children.
    pub parent: Option<WorkerId>,
    /// Whether it was spawned by scaling and may be retired when idle.
    pub ephemeral: bool,
    /// Whether this shard is its home: tracks its heartbeats and decides its retirement.
    pub home: bool,
    /// The ticket of the `SpawnWorker` output that created it, when the shell passed it through.
    pub spawn_ticket: Option<u64>,
    /// The worker process's own identity, the same on every registration it makes (its
    /// [`WorkerId`] is new each time). Journaled, so a restarted master knows whom to wait for.
    pub instance: u64,
}

/// Everything a core reacts to. `now` comes with each input through [`Core::handle`](super::Core::handle).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A client submits a one-off job or a DAG.
    Submit {
        /// Opaque to the core; echoed in the `Reply`.
        token: u64,
        /// What to run.
        submission: Submission,
    },
    /// A client cancels a job (and its descendants) or a whole DAG.
    Cancel {
        /// Echoed in the `Reply`.
        token: u64,
        /// What to cancel.
        target: Target,
    },
    /// A client stops a service (`DEPLOY` job); it ends CANCELLED.
    Stop {
        /// Echoed in the `Reply`.
        token: u64,
        /// The service.
        job: JobId,
    },
    /// A client waits for a job to reach a terminal state (answered by `Notify`, or `Reply` with an error).
    Watch {
        /// Echoed in the `Notify`.
        token: u64,
        /// The job.
        job: JobId,
    },
    /// A worker registered (or re-registered with new capacity or skills).
    WorkerUp(WorkerInfo),
    /// A worker's heartbeat (only its home shard needs it).
    Heartbeat {
        /// The worker.
        worker: WorkerId,
    },
    /// A worker disconnected, was retired, or another shard declared it dead.
    WorkerLost {
        /// The worker.
        worker: WorkerId,
    },
    /// A worker started an attempt.
    JobStarted {
        /// The job.
        job: JobId,
        /// The attempt from the `Dispatch`.
        attempt: u32,
        /// The reporting worker.
        worker: WorkerId,
    },
    /// A worker finished (or gave up on) an attempt.
    JobFinished {
        /// The job.
        job: JobId,
        /// The attempt from the `Dispatch`.
        attempt: u32,
        /// The reporting worker.
        worker: WorkerId,
        /// How it ended.
        outcome: Outcome,
        /// How long it ran on the worker.
        duration: Duration,
    },
    /// A service is running and its port (if any) accepts connections.
    ServiceReady {
        /// The service job.
        job: JobId,
        /// The attempt from the `Dispatch`.
        attempt: u32,
        /// The reporting worker.
        worker: WorkerId,
    },
    /// A worker reports an attempt it is running, after (re-)registering: typically after a master
    /// restart, for every attempt the worker lists. Send it to the shard that owns `job.dag()`,
    /// before or after that shard's `WorkerUp` for the worker (before is better: the attempt's slot is
    /// then reserved before any new work is placed there). The attempt becomes live again on
    /// `worker` without a new dispatch or attempt number if the core considers it running and
    /// unclaimed; otherwise the core answers `Output::Kill` with
    /// [`KillReason::Orphaned`](super::KillReason::Orphaned).
    Adopt {
        /// The reporting worker (its id from this registration).
        worker: WorkerId,
        /// The job.
        job: JobId,
        /// The attempt from the original `Dispatch`.
        attempt: u32,
    },
    /// Every journal record up to `lsn` is durable.
    Persisted {
        /// The highest durable LSN.
        lsn: Lsn,
    },
    /// A deadline from `poll_timeout` passed, or another shard freed capacity (`Output::Wake`).
    Tick,
}
