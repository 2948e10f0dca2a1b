//! What comes out of a core: the effects the shell carries out ([`Output`]) and the answers a
//! client sees ([`Ack`], [`RequestError`]), with the reasons they carry ([`KillReason`],
//! [`SpawnReason`]). Outputs are owned values; `handle` may queue many, and `poll_output` drains
//! them in emission order.

use std::time::Duration;

use super::grammar::GrammarError;
use super::ids::{DagId, JobId, Lsn, WorkerId};
use super::model::JobState;
use super::record::Record;

/// Why a running attempt is killed.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KillReason {
    /// A client cancelled the job.
    Cancelled,
    /// A client stopped the service.
    Stopped,
    /// The job ran past its timeout.
    TimedOut,
    /// A worker reported an attempt the core does not consider running there (finished, cancelled,
    /// re-queued or unknown, typically after a master restart): it must not keep running.
    Orphaned,
}

/// A successful answer to a mutation, sent only once its journal records are durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ack {
    /// The submission was accepted; its jobs are `dag.job(0..jobs)`.
    Submitted {
        /// The submission's id (`TSK-<n>` for a one-off, `dag-<n>` for a DAG).
        dag: DagId,
        /// Number of jobs.
        jobs: u32,
        /// A one-off job (its label is `TSK-<n>`, known without looking the job up).
        one_off: bool,
    },
    /// Jobs moved to CANCELLED by this request (descendants included).
    Cancelled {
        /// How many.
        jobs: u32,
    },
    /// The service was stopped.
    Stopped {
        /// The service job.
        job: JobId,
    },
}

/// Why a client request was refused. Nothing of a refused request changed state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The submission is malformed (a field or the DAG structure).
    #[error("rejected: {0}")]
    Rejected(#[from] GrammarError),
    /// Too many live jobs on this shard (retryable later).
    #[error("too many live jobs: {live} live, {adding} more would pass the limit of {max}")]
    TooManyLiveJobs {
        /// Jobs live now.
        live: usize,
        /// Jobs in the refused submission.
        adding: usize,
        /// The limit.
        max: usize,
    },
    /// Too many distinct skills.
    #[error("too many distinct skills (limit {max})")]
    TooManySkills {
        /// The limit.
        max: usize,
    },
    /// Too many parked watches (retryable later).
    #[error("too many watchers (limit {max})")]
    TooManyWatchers {
        /// The limit.
        max: usize,
    },
    /// No such job on this shard (never existed, or pruned from history).
    #[error("unknown job {job}")]
    UnknownJob {
        /// The job.
        job: JobId,
    },
    /// No such DAG on this shard.
    #[error("unknown DAG {dag}")]
    UnknownDag {
        /// The DAG.
        dag: DagId,
    },
    /// The job already reached a terminal state.
    #[error("job {job} already finished ({state})")]
    AlreadyFinished {
        /// The job.
        job: JobId,
        /// Its terminal state.
        state: JobState,
    },
    /// Every job of the DAG already finished.
    #[error("{dag} already finished")]
    DagFinished {
        /// The DAG.
        dag: DagId,
    },
    /// `Stop` applies to services (DEPLOY jobs) only.
    #[error("job {job} is not a service")]
    NotAService {
        /// The job.
        job: JobId,
    },
    /// The request reached a shard that does not own the DAG (a shell routing bug).
    #[error("{dag} belongs to shard {owner}")]
    WrongShard {
        /// The DAG.
        dag: DagId,
        /// Its owner shard.
        owner: u32,
    },
}

impl RequestError {
    /// Whether the same request may succeed later without change.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RequestError::TooManyLiveJobs { .. } | RequestError::TooManyWatchers { .. }
        )
    }
}

/// Why scaling asks for a new worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpawnReason {
    /// The skill whose backlog waits.
    pub skill: Box<str>,
    /// How long it has waited with no free slot.
    pub waiting: Duration,
    /// Jobs queued for that skill on this shard.
    pub queued: usize,
}

/// An effect the shell must carry out, in the order the core emitted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Append this record to the WAL; feed back `Input::Persisted` once it is durable.
    Journal {
        /// Its sequence number (strictly increasing per core).
        lsn: Lsn,
        /// The state change.
        record: Record,
    },
    /// Answer a client request. Held until every record emitted before it is persisted, so replies
    /// leave in request order and never acknowledge anything that is not durable.
    Reply {
        /// The request's token.
        token: u64,
        /// The answer.
        reply: Result<Ack, RequestError>,
    },
    /// A watched job reached a terminal state (gated like `Reply`).
    Notify {
        /// The `Watch` request's token.
        token: u64,
        /// The job.
        job: JobId,
        /// Its terminal state.
        state: JobState,
    },
    /// Send this attempt to the worker; read the spec with `Core::spec(job)`. A slot on the worker is
    /// already reserved in the load table.
    Dispatch {
        /// Where.
        worker: WorkerId,
        /// What.
        job: JobId,
        /// Attempt number (1 for the first run); reports must echo it.
        attempt: u32,
    },
    /// Kill this attempt's process group; the worker still reports `JobFinished` for it.
    Kill {
        /// Where.
        worker: WorkerId,
        /// What.
        job: JobId,
        /// Which attempt.
        attempt: u32,
        /// Why.
        reason: KillReason,
    },
    /// This (home) shard declared the worker dead: disconnect it and send `WorkerLost` to the others.
    WorkerDead {
        /// The worker.
        worker: WorkerId,
        /// How long it had been silent.
        silent_for: Duration,
    },
    /// Ask `parent` to spawn a child worker; pass `ticket` to the child's registration.
    SpawnWorker {
        /// The worker that should spawn.
        parent: WorkerId,
        /// Correlates the child's `WorkerInfo::spawn_ticket`.
        ticket: u64,
        /// Why.
        reason: SpawnReason,
    },
    /// Shut this idle ephemeral worker down, then send `WorkerLost` for it to every shard. It is
    /// already marked dead in the load table.
    RetireWorker {
        /// The worker.
        worker: WorkerId,
        /// How long it had been idle.
        idle_for: Duration,
    },
    /// This shard freed capacity that these other shards (bit mask) are waiting for: send each `Tick`.
    Wake {
        /// Bit `i` set = wake shard `i`.
        shards: u64,
    },
}
