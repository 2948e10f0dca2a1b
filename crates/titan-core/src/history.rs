//! Bounded memory of the past ([`History`]): finished submissions are kept for queries until
//! `history_limit` terminal jobs or `history_max_age` is exceeded, then pruned oldest-first, whole
//! submissions at a time; the dead-letter queue keeps at most `dlq_limit` entries and counts what
//! it evicts; [`Totals`] count what happened since the core started. (The Java original's maps grew
//! forever.)

use std::collections::VecDeque;
use std::time::Duration;

use super::ids::{DagId, JobId, Time};
use super::job_store::flags;
use super::machine::Core;
use super::model::JobState;

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

impl Totals {
    /// Adds another shard-epoch's counters.
    pub(super) fn add(&mut self, o: &Totals) {
        self.completed += o.completed;
        self.dead += o.dead;
        self.cancelled += o.cancelled;
        self.upstream_failed += o.upstream_failed;
        self.requeued_on_loss += o.requeued_on_loss;
        self.stale_reports += o.stale_reports;
        self.dlq_evicted += o.dlq_evicted;
        self.pruned += o.pruned;
        self.adopted += o.adopted;
        self.orphaned += o.orphaned;
    }
}

/// Finished submissions in finishing order, the dead-letter queue and the counters.
#[derive(Debug, Default)]
pub struct History {
    finished: VecDeque<Finished>,
    /// Jobs of the submissions in `finished`.
    jobs: usize,
    dlq: VecDeque<DeadLetter>,
    totals: Totals,
}

impl History {
    /// A submission of `jobs` jobs finished at `at`.
    pub fn push(&mut self, at: Time, dag: DagId, jobs: usize) {
        self.finished.push_back(Finished { at, dag });
        self.jobs += jobs;
    }

    /// Adds restored finished submissions, keeping finishing order; `jobs` says how many jobs each
    /// holds.
    pub fn restore(&mut self, finished: Vec<Finished>, jobs: impl Fn(DagId) -> usize) {
        let had_history = !self.finished.is_empty();
        for f in finished {
            self.jobs += jobs(f.dag);
            self.finished.push_back(f);
        }
        if had_history {
            self.finished.make_contiguous().sort_by_key(|f| f.at);
        }
    }

    /// The oldest finished submission, once it is past `limit` jobs or `max_age` at `now`.
    pub fn pop_expired(&mut self, limit: usize, max_age: Duration, now: Time) -> Option<DagId> {
        let f = *self.finished.front()?;
        if self.jobs <= limit && f.at + max_age > now {
            return None;
        }
        self.finished.pop_front();
        Some(f.dag)
    }

    /// When the oldest finished submission passes `max_age`.
    pub fn next_expiry(&self, max_age: Duration) -> Option<Time> {
        self.finished.front().map(|f| f.at + max_age)
    }

    /// One job of a pruned submission is gone.
    pub fn pruned_job(&mut self) {
        self.jobs -= 1;
        self.totals.pruned += 1;
    }

    /// Finished submissions still retained, oldest first.
    pub fn finished(&self) -> impl Iterator<Item = &Finished> {
        self.finished.iter()
    }

    /// How many finished submissions are retained.
    pub fn len(&self) -> usize {
        self.finished.len()
    }

    /// Adds a dead letter, evicting (and counting) the oldest past `limit`; keeps none at 0.
    pub fn push_dead_letter(&mut self, letter: DeadLetter, limit: usize) {
        if self.dlq.len() >= limit {
            self.dlq.pop_front();
            self.totals.dlq_evicted += 1;
        }
        if limit > 0 {
            self.dlq.push_back(letter);
        }
    }

    /// The dead-letter queue, oldest first.
    pub fn dead_letters(&self) -> impl ExactSizeIterator<Item = &DeadLetter> {
        self.dlq.iter()
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The counters, for the transitions that count something.
    pub fn totals_mut(&mut self) -> &mut Totals {
        &mut self.totals
    }
}

impl Core {
    /// Prunes the oldest finished submissions past the history's bounds.
    pub(super) fn prune_history(&mut self) {
        let (limit, age) = (self.cfg.history_limit, self.cfg.history_max_age);
        while let Some(dag) = self.history.pop_expired(limit, age, self.now) {
            self.prune_submission(dag);
        }
    }

    fn prune_submission(&mut self, dag: DagId) {
        let slots: Vec<u32> = match self.room.remove(dag) {
            Some(d) => d.slots.into_vec(),
            None => self.jobs.slot_of(dag.job(0)).into_iter().collect(),
        };
        for slot in slots {
            let Some(job) = self.jobs.remove(slot) else {
                continue;
            };
            debug_assert!(
                job.state.is_terminal() && (job.has(flags::ONE_OFF) || job.id.dag() == dag)
            );
            self.adoption.take_floor(job.id);
            self.history.pruned_job();
        }
    }
}
