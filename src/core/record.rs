//! Journal records: every state change a core needs to rebuild itself after a crash, as values the
//! WAL persists (rkyv). Derived changes — a child released when its last parent completes, the
//! descendants of a dead or cancelled job — are not recorded: replaying the records through the
//! same transitions recomputes them from the DAG. Decisions that used randomness or a clock (a retry's
//! due time) are recorded with their result, so replay never re-decides them.

use super::ids::{DagId, JobId, Time, WorkerId};
use super::io::Target;
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
}

impl Record {
    /// The time the change happened.
    pub fn at(&self) -> Time {
        match self {
            Record::Submitted { at, .. }
            | Record::Dispatched { at, .. }
            | Record::ServiceReady { at, .. }
            | Record::AttemptEnded { at, .. }
            | Record::Cancelled { at, .. }
            | Record::Stopped { at, .. } => *at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{DagJobSpec, JobKind, JobSpec};

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
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&r).unwrap();
            let archived = rkyv::access::<ArchivedRecord, rkyv::rancor::Error>(&bytes).unwrap();
            let back: Record = rkyv::deserialize::<Record, rkyv::rancor::Error>(archived).unwrap();
            assert_eq!(back, r);
        }
    }
}
