//! Journal records: every state change a core needs to rebuild itself after a crash, as values the
//! WAL persists (rkyv). Derived changes — a child released when its last parent completes, the
//! descendants of a dead or cancelled job — are not recorded: replaying the records through the
//! same transitions recomputes them from the DAG. Decisions that used randomness or a clock (a retry's
//! due time) are recorded with their result, so replay never re-decides them.
//!
//! Every job record names exactly one submission ([`Record::dag`], also on the archived form), so
//! a master that restarts with another shard count routes each old record to its new owner
//! (`dag.owner(count)`) without decoding more than the id; the worker records (`WorkerJoined`,
//! `WorkerLeft`) name none and go to every shard. [`Record::encode`] and
//! [`Record::decode`] are the payload format the WAL stores (an rkyv archive, validated on read).

use super::ids::{DagId, JobId, Time, WorkerId};
use super::input::Target;
use super::model::{Outcome, Submission};

/// Why an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum EndCause {
    /// The worker reported this outcome.
    Reported(Outcome),
    /// The core's timeout fired (the attempt was killed).
    TimedOut,
    /// The worker died or disconnected.
    WorkerLost,
}

/// What happened to the job after the attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Next {
    /// COMPLETED; its children are released.
    Completed,
    /// FAILED; queued again at `due`.
    Retry {
        /// When the backoff ends.
        due: Time,
    },
    /// Re-queued at once (worker lost; counted against the crash limit).
    Requeued,
    /// DEAD; its unreleased descendants become UPSTREAM_FAILED.
    Dead,
}

/// One journal record.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Record {
    /// A submission was accepted.
    Submitted {
        /// Its id (also advances the shard's DagId counter on replay).
        dag: DagId,
        /// Acceptance time (delays of root jobs count from here).
        at: Time,
        /// The jobs, as submitted.
        submission: Submission,
    },
    /// An attempt was sent to a worker.
    Dispatched {
        /// The job.
        job: JobId,
        /// Attempt number.
        attempt: u32,
        /// The worker.
        worker: WorkerId,
        /// When.
        at: Time,
    },
    /// A service became ready; its children are released.
    ServiceReady {
        /// The service job.
        job: JobId,
        /// Its attempt.
        attempt: u32,
        /// When.
        at: Time,
    },
    /// An attempt ended, and what the job does next.
    AttemptEnded {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: u32,
        /// When.
        at: Time,
        /// Why it ended.
        cause: EndCause,
        /// The decision.
        next: Next,
    },
    /// A client cancelled a job (with its unreleased descendants) or a DAG.
    Cancelled {
        /// What.
        target: Target,
        /// When.
        at: Time,
    },
    /// A client stopped a service (it ends CANCELLED).
    Stopped {
        /// The service job.
        job: JobId,
        /// When.
        at: Time,
    },
    /// A worker process registered; this shard may send it attempts from now on.
    WorkerJoined {
        /// Its [`WorkerInfo::instance`](super::input::WorkerInfo).
        instance: u64,
        /// When.
        at: Time,
    },
    /// A worker process is gone (disconnected, dead, retired, or not back after a restart).
    WorkerLeft {
        /// Its instance.
        instance: u64,
        /// When.
        at: Time,
    },
}

/// A journal payload that is not a valid archived [`Record`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a journal payload of {len} bytes is not a valid record: {reason}")]
pub struct DecodeError {
    /// Payload length.
    pub len: usize,
    /// What validation found.
    pub reason: String,
}

/// A value the archive format cannot hold (a relative offset past its 32-bit range).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode: {reason}")]
pub struct EncodeError {
    /// What the serializer reported.
    pub reason: String,
}

impl Record {
    /// The submission this record belongs to: what the master routes it by. `None` for the
    /// worker records, which belong to every shard.
    pub fn dag(&self) -> Option<DagId> {
        match self {
            Record::Submitted { dag, .. } => Some(*dag),
            Record::Cancelled { target, .. } => Some(target.dag()),
            Record::Dispatched { job, .. }
            | Record::ServiceReady { job, .. }
            | Record::AttemptEnded { job, .. }
            | Record::Stopped { job, .. } => Some(job.dag()),
            Record::WorkerJoined { .. } | Record::WorkerLeft { .. } => None,
        }
    }

    /// The WAL payload of this record (an rkyv archive).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        self.encode_into(Vec::new())
    }

    /// Appends the archive to `out` (reusing its allocation) and returns it.
    pub fn encode_into(&self, out: Vec<u8>) -> Result<Vec<u8>, EncodeError> {
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(self, out).map_err(|e| EncodeError {
            reason: e.to_string(),
        })
    }

    /// Validates a WAL payload in place (no copy) and returns the archived record.
    pub fn access(payload: &[u8]) -> Result<&ArchivedRecord, DecodeError> {
        rkyv::access::<ArchivedRecord, rkyv::rancor::Error>(payload).map_err(|e| DecodeError {
            len: payload.len(),
            reason: e.to_string(),
        })
    }

    /// Validates and decodes a WAL payload.
    pub fn decode(payload: &[u8]) -> Result<Record, DecodeError> {
        let archived = Record::access(payload)?;
        rkyv::deserialize::<Record, rkyv::rancor::Error>(archived).map_err(|e| DecodeError {
            len: payload.len(),
            reason: e.to_string(),
        })
    }

    /// The time the change happened.
    pub fn at(&self) -> Time {
        match self {
            Record::Submitted { at, .. }
            | Record::Dispatched { at, .. }
            | Record::ServiceReady { at, .. }
            | Record::AttemptEnded { at, .. }
            | Record::Cancelled { at, .. }
            | Record::Stopped { at, .. }
            | Record::WorkerJoined { at, .. }
            | Record::WorkerLeft { at, .. } => *at,
        }
    }
}

impl ArchivedRecord {
    /// The submission this record belongs to, read from the archive without decoding it
    /// (`None`: a worker record, for every shard).
    pub fn dag(&self) -> Option<DagId> {
        let job = |j: &super::ids::ArchivedJobId| Some(JobId(j.0.to_native()).dag());
        match self {
            ArchivedRecord::Submitted { dag, .. } => Some(DagId(dag.0.to_native())),
            ArchivedRecord::Cancelled { target, .. } => match target {
                super::input::ArchivedTarget::Job(j) => job(j),
                super::input::ArchivedTarget::Dag(d) => Some(DagId(d.0.to_native())),
            },
            ArchivedRecord::Dispatched { job: j, .. }
            | ArchivedRecord::ServiceReady { job: j, .. }
            | ArchivedRecord::AttemptEnded { job: j, .. }
            | ArchivedRecord::Stopped { job: j, .. } => job(j),
            ArchivedRecord::WorkerJoined { .. } | ArchivedRecord::WorkerLeft { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DagJobSpec, JobKind, JobSpec};

    #[test]
    fn records_round_trip_through_rkyv() {
        let spec = JobSpec::new(JobKind::Run {
            file: "a.py".into(),
            args: vec![Box::from("x")].into(),
        });
        let records = vec![
            Record::Submitted {
                dag: DagId(3),
                at: Time(10),
                submission: Submission::Dag(vec![DagJobSpec {
                    name: "A".into(),
                    spec,
                    deps: vec![],
                }]),
            },
            Record::AttemptEnded {
                job: DagId(3).job(0),
                attempt: 2,
                at: Time(11),
                cause: EndCause::Reported(Outcome::Error {
                    message: "boom".into(),
                }),
                next: Next::Retry { due: Time(99) },
            },
            Record::Cancelled {
                target: Target::Dag(DagId(3)),
                at: Time(12),
            },
        ];
        for r in records {
            let bytes = r.encode().unwrap();
            assert_eq!(Record::access(&bytes).unwrap().dag(), Some(DagId(3)));
            assert_eq!(r.dag(), Some(DagId(3)));
            assert_eq!(Record::decode(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn garbage_payloads_are_typed_errors() {
        let r = Record::Stopped {
            job: DagId(9).job(2),
            at: Time(5),
        };
        let mut bytes = r.encode().unwrap();
        assert!(Record::decode(&bytes[..bytes.len() - 1]).is_err());
        // The root sits at the end of the archive and starts with the enum tag: an unknown tag
        // must fail validation, not panic.
        let root = bytes.len() - std::mem::size_of::<ArchivedRecord>();
        bytes[root] = 0xee;
        let err = Record::decode(&bytes).unwrap_err();
        assert_eq!(err.len, bytes.len());
        assert!(Record::decode(&[]).is_err());
    }
}
