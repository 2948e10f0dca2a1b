//! Recovery: rebuilding a core from its journal. A fresh core (constructed with `first_lsn` one
//! past the last record and `first_dag_k` from a snapshot or zero) applies every record in LSN order
//! with [`Core::replay`], then [`Core::finish_recovery`] ends recovery.
//!
//! Replay runs the same transitions as live handling with outputs, reservations and RNG-driven
//! decisions switched off: retry due times, dead/requeue decisions and completions come from the
//! records. Deadlines that were never journaled (a delay or backoff ending, which only moves a job to
//! QUEUED) are fired up to each record's time before it is applied, so the job is in the state the
//! record expects. Attempts that were RUNNING when the master stopped are re-queued by
//! `finish_recovery` under a new attempt number: their workers will re-register, and a late report
//! for the old attempt is stale and ignored (at-least-once execution, never a lost acknowledged job).

use super::ids::{JobId, Time};
use super::io::RequestError;
use super::machine::Core;
use super::model::JobState;
use super::queues::TimerKind;
use super::record::Record;
use super::store::flags;

/// A journal record that does not fit the state rebuilt so far (a corrupt or misordered journal).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The record names a job this core does not hold.
    #[error("record names unknown job {job}")]
    UnknownJob {
        /// The job.
        job: JobId,
    },
    /// The job is not in a state the record can follow.
    #[error("job {job} is {state}; the record needs {expected}")]
    WrongState {
        /// The job.
        job: JobId,
        /// Its state.
        state: JobState,
        /// What the record needs.
        expected: &'static str,
    },
    /// The record's request would be refused now (e.g. a submission that no longer validates).
    #[error("replayed request refused: {0}")]
    Refused(#[from] RequestError),
}

impl Core {
    /// Applies one journal record during recovery (records in LSN order, before any live input).
    pub fn replay(&mut self, record: &Record) -> Result<(), ReplayError> {
        self.replaying = true;
        self.now = self.now.max(record.at());
        self.fire_replayed_deadlines();
        match record {
            Record::Submitted {
                dag, submission, ..
            } => {
                self.submit(submission.clone(), Some(*dag))?;
            }
            Record::Dispatched {
                job,
                attempt,
                worker,
                at,
            } => {
                let slot = self.expect(*job, JobState::Queued, "QUEUED")?;
                self.ready.forget(self.jobs.at(slot).skill);
                self.set_state(slot, JobState::Running);
                let j = self.jobs.at_mut(slot);
                j.attempt = *attempt;
                j.worker = Some(*worker);
                j.started_at = *at;
                j.flags &= !(flags::READY | flags::STARTED);
            }
            Record::ServiceReady { job, .. } => {
                let slot = self.expect(*job, JobState::Running, "RUNNING")?;
                self.mark_ready(slot);
            }
            Record::AttemptEnded {
                job, cause, next, ..
            } => {
                let slot = self.expect(*job, JobState::Running, "RUNNING")?;
                self.end_attempt(slot, cause.clone(), Some(*next));
            }
            Record::Cancelled { target, .. } => {
                self.cancel(*target, true)?;
            }
            Record::Stopped { job, .. } => self.stop(*job, true)?,
        }
        Ok(())
    }

    /// Ends recovery at `now`: attempts that were running are re-queued, and normal operation resumes.
    pub fn finish_recovery(&mut self, now: Time) {
        self.now = self.now.max(now);
        self.fire_replayed_deadlines();
        self.replaying = false;
        let mut running: Vec<(JobId, u32)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Running)
            .map(|(s, j)| (j.id, s))
            .collect();
        running.sort_unstable();
        for (_, slot) in running {
            let j = self.jobs.at_mut(slot);
            j.worker = None;
            j.flags &= !(flags::READY | flags::STARTED);
            self.enqueue(slot);
        }
        self.prune_history();
    }

    fn expect(
        &self,
        job: JobId,
        state: JobState,
        expected: &'static str,
    ) -> Result<u32, ReplayError> {
        let slot = self
            .jobs
            .slot_of(job)
            .ok_or(ReplayError::UnknownJob { job })?;
        let actual = self.jobs.at(slot).state;
        if actual != state {
            return Err(ReplayError::WrongState {
                job,
                state: actual,
                expected,
            });
        }
        Ok(slot)
    }

    /// Fires the delay and backoff deadlines due by now; timeouts are journaled and never fired here.
    fn fire_replayed_deadlines(&mut self) {
        while let Some(t) = self.timers.pop_due(self.now) {
            let Some(job) = self.jobs.check(t.slot, t.id) else {
                continue;
            };
            let due = match t.kind {
                TimerKind::Delay => job.state == JobState::Pending,
                TimerKind::Backoff => job.state == JobState::Failed && job.attempt == t.attempt,
                TimerKind::Timeout => false,
            };
            if due {
                self.enqueue(t.slot);
            }
        }
    }
}
