//! Bounded memory of the past: finished submissions are kept for queries until `history_limit`
//! terminal jobs or `history_max_age` is exceeded, then pruned oldest-first, whole submissions at a
//! time; the dead-letter queue keeps at most `dlq_limit` entries and counts what it evicts. (The
//! Java original's maps grew forever.)

use super::ids::{DagId, JobId, Time};
use super::machine::Core;
use super::model::JobState;
use super::store::flags;

/// A submission whose jobs are all terminal, in finishing order.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub at: Time,
    pub dag: DagId,
}

/// One dead-letter entry; it outlives the job's history entry.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct DeadLetter {
    /// The dead job.
    pub job: JobId,
    /// When it died.
    pub at: Time,
    /// Attempts dispatched.
    pub attempts: u32,
    /// The last failure, as text.
    pub error: Box<str>,
}

/// Monotonic counters since the core started (carried by snapshots of the same shard layout).
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct Totals {
    /// Jobs that completed.
    pub completed: u64,
    /// Jobs that went DEAD.
    pub dead: u64,
    /// Jobs cancelled (or stopped), descendants included.
    pub cancelled: u64,
    /// Jobs that never ran because a dependency died.
    pub upstream_failed: u64,
    /// Attempts re-queued because their worker was lost.
    pub requeued_on_loss: u64,
    /// Worker reports that matched no attempt this shard holds.
    pub stale_reports: u64,
    /// Dead letters dropped because the DLQ was full.
    pub dlq_evicted: u64,
    /// Jobs pruned from history.
    pub pruned: u64,
    /// Recovered attempts a re-registered worker reported and kept running.
    pub adopted: u64,
    /// Reported attempts the core could not account for and asked the worker to kill.
    pub orphaned: u64,
}

impl Totals {
    pub(super) fn count_terminal(&mut self, state: JobState) {
        match state {
            JobState::Completed => self.completed += 1,
            JobState::Dead => self.dead += 1,
            JobState::Cancelled => self.cancelled += 1,
            JobState::UpstreamFailed => self.upstream_failed += 1,
            _ => {}
        }
    }
}

impl Core {
    pub(super) fn prune_history(&mut self) {
        let (limit, age) = (self.cfg.history_limit, self.cfg.history_max_age);
        while let Some(&f) = self.history.front() {
            if self.history_jobs <= limit && f.at + age > self.now {
                break;
            }
            self.history.pop_front();
            self.prune_submission(f.dag);
        }
    }

    fn prune_submission(&mut self, dag: DagId) {
        let slots: Vec<u32> = match self.dags.remove(&dag) {
            Some(d) => {
                for name in d.graph.names.iter() {
                    if self.names.get(name).is_some_and(|id| id.dag() == dag) {
                        self.names.remove(name);
                    }
                }
                d.slots.into_vec()
            }
            None => self.jobs.slot_of(dag.job(0)).into_iter().collect(),
        };
        for slot in slots {
            let Some(job) = self.jobs.remove(slot) else {
                continue;
            };
            debug_assert!(
                job.state.is_terminal() && (job.has(flags::ONE_OFF) || job.id.dag() == dag)
            );
            self.counts[job.state as usize] -= 1;
            self.errors.remove(&job.id);
            self.adoption.take_floor(job.id);
            self.history_jobs -= 1;
            self.totals.pruned += 1;
        }
    }
}
