//! Snapshots: an image of everything a core needs to continue exactly as it is — retained
//! submissions with their specs, states, attempts, failures and crashes, retry and delay due times,
//! DAG graphs and release state, services' readiness, finished submissions still in the history
//! window (so `titan status` answers after a restart), the dead-letter queue, the name index, the
//! skill interner's order, counters, `next_dag_k` and the last LSN — as one rkyv value.
//!
//! Left out on purpose: the worker directory and reservations (workers re-register after a
//! restart and report their attempts, see `adopt.rs`; only their instances are kept, so the
//! restarted master knows whom to wait for), parked watches and held replies (their connections died with
//! the master), scaling requests in flight, and anything derivable: per-state counts, each DAG
//! job's remaining-dependency count (its parents that have not released it), children lists,
//! ready queues and timeouts (from `started_at`). [`Core::restore`] (in `restore.rs`) rebuilds those.
//!
//! The master stores [`Snapshot::encode`]'s bytes with the WAL (`write_snapshot(covered, bytes)`,
//! where `covered` is the WAL position of [`Snapshot::last_lsn`]); recovery is
//! `Core::restore` from [`Snapshot::decode`], then `replay` of the records after it, then
//! `finish_recovery`.

use super::dag::DagGraph;
use super::history::{DeadLetter, Totals};
use super::id_map::IdMap;
use super::ids::{DagId, JobId, Lsn, Time};
use super::job_store::{flags, Job};
use super::machine::Core;
use super::model::{JobSpec, JobState};
use super::record::EncodeError;

/// The snapshot format this build writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 2;

/// An image of one core's state (see the module docs for what is in it).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Snapshot {
    /// [`SNAPSHOT_FORMAT`] of the writer.
    pub format: u32,
    /// The shard that took it.
    pub shard_index: u32,
    /// The shard count it was taken under.
    pub shard_count: u32,
    /// The core's last journal LSN; the snapshot covers every record up to it.
    pub last_lsn: Lsn,
    /// The `k` of the next DagId the shard would have allocated (`k * shard_count + shard_index`).
    pub next_dag_k: u64,
    /// The core's clock.
    pub now: Time,
    /// Interned skill names in id order.
    pub skills: Vec<Box<str>>,
    /// Retained submissions (live and finished), in DagId order.
    pub submissions: Vec<SubmissionImage>,
    /// Finished submissions in the order they finished (oldest first; pruned from the front).
    pub history: Vec<FinishedImage>,
    /// The name index: for each DAG job name, the job it resolves to.
    pub names: Vec<JobId>,
    /// The dead-letter queue, oldest first.
    pub dlq: Vec<DeadLetter>,
    /// Counters.
    pub totals: Totals,
    /// Worker instances registered with this shard (a restarted master waits for them).
    pub workers: Vec<u64>,
}

/// One submission: a DAG, or a one-off job (no graph, one job).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct SubmissionImage {
    /// Its id.
    pub dag: DagId,
    /// Acceptance time.
    pub submitted: Time,
    /// The DAG's shape; `None` for a one-off.
    pub graph: Option<GraphImage>,
    /// Its jobs by index.
    pub jobs: Vec<JobImage>,
}

/// A DAG's names and dependency edges in compressed form (see [`DagGraph::parent_csr`]).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct GraphImage {
    /// Job names by index.
    pub names: Vec<Box<str>>,
    /// Offsets into `parents`, one per job plus one.
    pub parent_start: Vec<u32>,
    /// Parent indices.
    pub parents: Vec<u32>,
}

/// One job's spec and runtime state.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct JobImage {
    /// What it runs.
    pub spec: JobSpec,
    /// Its state.
    pub state: JobState,
    /// When it entered that state.
    pub since: Time,
    /// When its live or last attempt was dispatched (`Time::ZERO`: never).
    pub started_at: Time,
    /// When a PENDING job's delay or a FAILED job's backoff ends.
    pub wake: Option<Time>,
    /// Attempts dispatched.
    pub attempt: u32,
    /// Failed attempts counted against retries.
    pub failures: u8,
    /// Attempts lost with their worker.
    pub crashes: u8,
    /// Released / ready / started bits (see `store::flags`).
    pub flags: u8,
    /// The last failure, as text.
    pub error: Option<Box<str>>,
}

/// A finished submission in the history window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct FinishedImage {
    /// When its last job ended.
    pub at: Time,
    /// The submission.
    pub dag: DagId,
}

/// Snapshot bytes that cannot be used: invalid archive or another format version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotDecodeError {
    /// The bytes are not a valid archived snapshot.
    #[error("snapshot of {len} bytes is not valid: {reason}")]
    Invalid {
        /// Length.
        len: usize,
        /// What validation found.
        reason: String,
    },
    /// Written by a build with another format.
    #[error("snapshot format {found}; this build reads {expected}")]
    Format {
        /// In the bytes.
        found: u32,
        /// [`SNAPSHOT_FORMAT`].
        expected: u32,
    },
}

impl Snapshot {
    /// The bytes to store (an rkyv archive).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        self.encode_into(Vec::new())
    }

    /// [`Snapshot::encode`] into `out` (cleared first), reusing its allocation: a master that
    /// snapshots every few hundred thousand records keeps one buffer of the image's size instead
    /// of growing a fresh one, page by zeroed page, each time.
    pub fn encode_into(&self, mut out: Vec<u8>) -> Result<Vec<u8>, EncodeError> {
        out.clear();
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(self, out).map_err(|e| EncodeError {
            reason: e.to_string(),
        })
    }

    /// Validates and decodes stored bytes.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotDecodeError> {
        let invalid = |e: rkyv::rancor::Error| SnapshotDecodeError::Invalid {
            len: bytes.len(),
            reason: e.to_string(),
        };
        let archived =
            rkyv::access::<ArchivedSnapshot, rkyv::rancor::Error>(bytes).map_err(invalid)?;
        let found = archived.format.to_native();
        if found != SNAPSHOT_FORMAT {
            return Err(SnapshotDecodeError::Format {
                found,
                expected: SNAPSHOT_FORMAT,
            });
        }
        rkyv::deserialize::<Snapshot, rkyv::rancor::Error>(archived).map_err(invalid)
    }

    /// Jobs in the snapshot, finished ones included.
    pub fn jobs(&self) -> usize {
        self.submissions.iter().map(|s| s.jobs.len()).sum()
    }
}

impl Core {
    /// An image of this core's state, from which [`Core::restore`] rebuilds an equivalent core.
    /// Costs one pass over the retained jobs and the timers.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_reusing(Vec::new())
    }

    /// [`Core::snapshot`] building its submission list in `submissions` (cleared first), so a
    /// shell that snapshots periodically can hand the emptied list of the previous image back.
    pub fn snapshot_reusing(&self, mut submissions: Vec<SubmissionImage>) -> Snapshot {
        let wake = self.wake_times();
        // Sized once: at most one submission per job (growing it by doubling would copy it and
        // touch fresh pages several times over).
        submissions.clear();
        submissions.reserve(self.jobs.len());
        submissions.extend(self.room.iter().map(|(dag, d)| {
            SubmissionImage {
                dag,
                submitted: d.submitted,
                graph: Some(graph_image(&d.graph)),
                jobs: d
                    .slots
                    .iter()
                    .map(|&s| self.job_image(self.jobs.at(s), &wake))
                    .collect(),
            }
        }));
        let dags = submissions.len();
        submissions.extend(self.jobs.iter().filter(|(_, j)| j.has(flags::ONE_OFF)).map(
            |(_, j)| SubmissionImage {
                dag: j.id.dag(),
                submitted: j.submitted,
                graph: None,
                jobs: vec![self.job_image(j, &wake)],
            },
        ));
        if submissions.len() > dags {
            submissions.sort_unstable_by_key(|s| s.dag);
        }
        Snapshot {
            format: SNAPSHOT_FORMAT,
            shard_index: self.shard.index,
            shard_count: self.shard.count,
            last_lsn: self.last_lsn(),
            next_dag_k: self.dag_ids.next_k(),
            now: self.now.max(self.replay_clock()),
            skills: self.skills.names().to_vec(),
            submissions,
            history: self
                .history
                .finished()
                .map(|f| FinishedImage {
                    at: f.at,
                    dag: f.dag,
                })
                .collect(),
            names: self.room.named_jobs(),
            dlq: self.history.dead_letters().cloned().collect(),
            totals: *self.history.totals(),
            workers: self.adoption.known().collect(),
        }
    }

    /// Due times of the live delay and backoff timers, by job.
    fn wake_times(&self) -> IdMap<JobId, Time> {
        let mut wake = IdMap::default();
        for t in self.timers.iter() {
            if t.is_live_wake(&self.jobs) {
                wake.insert(t.id, t.due);
            }
        }
        wake
    }

    fn job_image(&self, j: &Job, wake: &IdMap<JobId, Time>) -> JobImage {
        JobImage {
            spec: j.spec.clone(),
            state: j.state,
            since: j.since,
            started_at: j.started_at,
            wake: wake.get(&j.id).copied(),
            attempt: j.attempt,
            failures: j.failures,
            crashes: j.crashes,
            flags: j.flags & !flags::ONE_OFF,
            error: self.jobs.error(j.id).map(Box::from),
        }
    }
}

fn graph_image(g: &DagGraph) -> GraphImage {
    let (parent_start, parents) = g.parent_csr();
    GraphImage {
        names: g.names.to_vec(),
        parent_start: parent_start.to_vec(),
        parents: parents.to_vec(),
    }
}
