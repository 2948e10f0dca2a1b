//! Recovery: rebuilding a core from its journal. A core starts recovery fresh ([`Core::new`], with
//! `first_lsn` for the LSNs it will emit) or from a snapshot ([`Core::restore`], see `restore.rs`),
//! applies the records after it with [`Core::replay`] (or [`Core::replay_bytes`] on WAL payloads),
//! and ends with [`Core::finish_recovery`].
//!
//! Replay runs the same transitions as live handling with outputs, reservations and RNG-driven
//! decisions switched off: retry due times, dead/requeue decisions and completions come from the
//! records. Each record is applied at its own time: records of one submission arrive in order, but
//! after a change of the shard count one core receives the records of several old shards
//! interleaved, so the clock of one record says nothing about another submission. Deadlines that
//! were never journaled (a delay or backoff ending, which only moves a job to QUEUED) are fired up to
//! each record's time before it is applied, so the job is in the state the record expects; firing
//! another submission's deadline early only queues that job sooner, and no record needs a job to be
//! PENDING or FAILED. A record that does not fit the state rebuilt so far is a typed
//! [`ReplayError`], never a panic, and changes no job.
//!
//! `finish_recovery` keeps the attempts that were RUNNING running, without a worker: they wait
//! `adopt_grace` for their worker to re-register and report them (`Input::Adopt`, see `adopt.rs`);
//! the unreported ones are then re-queued as lost, under a new attempt and journaled.

use super::ids::{DagId, JobId, Lsn, Time, WorkerId};
use super::job_store::flags;
use super::machine::{Core, Phase};
use super::model::JobState;
use super::output::RequestError;
use super::ready_queues::ReadyEntry;
use super::record::{DecodeError, EndCause, Next, Record};
use super::skills::SkillId;
use super::timers::{TimerEntry, TimerKind};

/// A journal record that does not fit the state rebuilt so far (a corrupt, misrouted or misordered
/// journal). None of them is retryable: the journal itself is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The payload is not a valid archived record.
    #[error(transparent)]
    Decode(#[from] DecodeError),
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
    /// The record's attempt number does not follow the job's.
    #[error("job {job} is at attempt {current}; the record names attempt {attempt}")]
    WrongAttempt {
        /// The job.
        job: JobId,
        /// The job's attempt counter.
        current: u32,
        /// The record's attempt.
        attempt: u32,
    },
    /// A readiness record for a job that is not a service.
    #[error("job {job} is not a service but the record says it became ready")]
    NotAService {
        /// The job.
        job: JobId,
    },
    /// A submission record for a DAG this core already holds.
    #[error("{dag} is submitted twice")]
    DuplicateDag {
        /// The DAG.
        dag: DagId,
    },
    /// A DagId too large for job ids.
    #[error("{dag} is out of range")]
    BadDagId {
        /// The DAG.
        dag: DagId,
    },
    /// The record belongs to another shard (the shell routed it wrong).
    #[error("{dag} belongs to shard {owner}, not this one")]
    WrongShard {
        /// The DAG.
        dag: DagId,
        /// Its owner under this core's shard count.
        owner: u32,
    },
    /// Recovery already ended; records can no longer be replayed into this core.
    #[error("recovery already ended; replay records before the first live input")]
    AfterRecovery,
    /// The record's request would be refused now (e.g. a submission that no longer validates).
    #[error("replayed request refused: {0}")]
    Refused(#[from] RequestError),
}

impl Core {
    /// Applies one journal record during recovery (each submission's records in LSN order, before
    /// any live input).
    pub fn replay(&mut self, record: Record) -> Result<(), ReplayError> {
        self.check_replayable(record.dag())?;
        let at = record.at();
        self.now = at;
        self.replay_until(at);
        self.fire_replayed_deadlines();
        self.apply_record(record)?;
        self.prune_history();
        Ok(())
    }

    /// Validates a WAL payload ([`Record::encode`]) and replays it.
    pub fn replay_bytes(&mut self, payload: &[u8]) -> Result<(), ReplayError> {
        self.replay(Record::decode(payload)?)
    }

    /// Ends recovery at `now` after a restart (call it whenever a WAL existed, even an empty one):
    /// attempts that were running wait for their workers for `adopt_grace` (or are re-queued at
    /// once when it is zero), `recovery_dag_skip` DagIds are skipped, and normal operation resumes.
    /// Idempotent. A core that never recovered needs no call: its first input starts it.
    pub fn finish_recovery(&mut self, now: Time) {
        self.end_recovery(now, true);
    }

    /// Enters (or stays in) replay, with records seen up to `at`.
    pub(super) fn replay_until(&mut self, at: Time) {
        let clock = self.replay_clock().max(at);
        self.phase = Phase::Replaying { clock };
    }

    /// The latest record time replay has seen (zero when nothing was replayed).
    pub(super) fn replay_clock(&self) -> Time {
        match self.phase {
            Phase::Replaying { clock } => clock,
            Phase::Fresh | Phase::Live => Time::ZERO,
        }
    }

    /// `skip`: jump past DagIds a crash may have lost (always after a restart; when `handle` ends
    /// recovery implicitly, only if something was replayed).
    pub(super) fn end_recovery(&mut self, now: Time, skip: bool) {
        if self.phase == Phase::Live {
            return;
        }
        self.now = self.now.max(self.replay_clock()).max(now);
        self.fire_replayed_deadlines();
        if skip {
            // Ids handed out after the last durable record are unknown, and may still be in use.
            self.dag_ids.skip(self.cfg.recovery_dag_skip);
        }
        self.phase = Phase::Live;
        self.build_ready_queues();
        self.hold_for_known_workers();
        let mut running: Vec<(JobId, u32)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Running)
            .map(|(s, j)| (j.id, s))
            .collect();
        running.sort_unstable();
        for (_, slot) in running {
            self.await_adoption(slot);
        }
        self.prune_history();
    }

    /// Puts every QUEUED job into its skill's queue (replay and restore only set states).
    fn build_ready_queues(&mut self) {
        let mut queued: Vec<(SkillId, ReadyEntry)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Queued)
            .map(|(slot, j)| {
                let priority = j.spec.priority;
                (
                    j.skill,
                    ReadyEntry {
                        priority,
                        slot,
                        id: j.id,
                        // Everything replayed is durable.
                        need: Lsn(0),
                        attempt: j.attempt,
                    },
                )
            })
            .collect();
        queued.sort_unstable_by_key(|(skill, e)| (*skill, e.id));
        for chunk in queued.chunk_by(|a, b| a.0 == b.0) {
            self.placement
                .enqueue_many(chunk[0].0, chunk.iter().map(|(_, e)| *e));
        }
    }

    /// A recovered RUNNING attempt: no worker until one reports it; its timeout still counts.
    fn await_adoption(&mut self, slot: u32) {
        let j = self.jobs.at_mut(slot);
        j.worker = None;
        j.flags &= !flags::STARTED;
        let (id, attempt, started, timeout) = (j.id, j.attempt, j.started_at, j.spec.timeout_ms);
        if let Some(ms) = timeout {
            self.timers.push(TimerEntry {
                due: started.add_millis(u64::from(ms.get())),
                id,
                kind: TimerKind::Timeout,
                attempt,
                slot,
            });
        }
        if self.cfg.adopt_grace.is_zero() {
            self.end_attempt(slot, EndCause::WorkerLost, None);
            return;
        }
        let due = self.now + self.cfg.adopt_grace;
        self.adoption.await_report(id, attempt, due);
    }

    fn check_replayable(&self, dag: Option<DagId>) -> Result<(), ReplayError> {
        if self.phase == Phase::Live {
            return Err(ReplayError::AfterRecovery);
        }
        let Some(dag) = dag else {
            return Ok(());
        };
        if dag.0 > DagId::MAX {
            return Err(ReplayError::BadDagId { dag });
        }
        if !self.shard.owns(dag) {
            let owner = dag.owner(self.shard.count);
            return Err(ReplayError::WrongShard { dag, owner });
        }
        Ok(())
    }

    fn apply_record(&mut self, record: Record) -> Result<(), ReplayError> {
        match record {
            Record::Submitted {
                dag, submission, ..
            } => {
                // Ids at or past `next_dag_k` cannot exist yet (the common, in-order case); older
                // ones are looked up (interleaved old shards, or a duplicated record).
                if !self.dag_ids.is_fresh(dag)
                    && (self.room.holds(dag) || self.jobs.slot_of(dag.job(0)).is_some())
                {
                    return Err(ReplayError::DuplicateDag { dag });
                }
                self.submit(submission, Some(dag))?;
            }
            Record::Dispatched {
                job,
                attempt,
                worker,
                at,
            } => self.replay_dispatch(job, attempt, worker, at)?,
            Record::ServiceReady { job, attempt, .. } => {
                let slot = self.running(job, attempt)?;
                if !self.jobs.at(slot).spec.is_service() {
                    return Err(ReplayError::NotAService { job });
                }
                self.mark_ready(slot);
            }
            Record::AttemptEnded {
                job,
                attempt,
                cause,
                next,
                ..
            } => {
                let slot = self.running(job, attempt)?;
                self.check_next(slot, &cause, next)?;
                self.end_attempt(slot, cause, Some(next));
            }
            Record::Cancelled { target, .. } => {
                self.cancel(target, true)?;
            }
            Record::Stopped { job, .. } => self.stop(job, true)?,
            Record::WorkerJoined { instance, .. } => self.adoption.joined(instance),
            Record::WorkerLeft { instance, .. } => self.adoption.left(instance),
        }
        Ok(())
    }

    fn replay_dispatch(
        &mut self,
        job: JobId,
        attempt: u32,
        worker: WorkerId,
        at: Time,
    ) -> Result<(), ReplayError> {
        let slot = self.slot_in(job, JobState::Queued, "QUEUED")?;
        let current = self.jobs.at(slot).attempt;
        // Orphan reports may have raised the counter past lost records, so only "later" is checked.
        if attempt <= current {
            return Err(ReplayError::WrongAttempt {
                job,
                current,
                attempt,
            });
        }
        self.set_state(slot, JobState::Running);
        let j = self.jobs.at_mut(slot);
        j.attempt = attempt;
        // The old worker id only marks the attempt as running; workers re-register after a
        // restart, and `finish_recovery` clears it.
        j.worker = Some(worker);
        j.started_at = at;
        j.flags &= !(flags::READY | flags::STARTED);
        if j.spec.is_service() {
            self.retries.service_started(job, self.now, &self.cfg);
        }
        Ok(())
    }

    /// A decision that contradicts its cause (a retry after success, a completion of a service).
    fn check_next(&self, slot: u32, cause: &EndCause, next: Next) -> Result<(), ReplayError> {
        let (job, service) = (self.jobs.at(slot).id, self.jobs.at(slot).spec.is_service());
        let success = matches!(cause, EndCause::Reported(o) if o.is_success()) && !service;
        let fits = match next {
            Next::Completed => success,
            Next::Retry { .. } => !success && !matches!(cause, EndCause::WorkerLost),
            Next::Requeued => matches!(cause, EndCause::WorkerLost),
            Next::Dead => !success,
        };
        if fits {
            Ok(())
        } else {
            let state = self.jobs.at(slot).state;
            let expected = "a decision that fits how the attempt ended";
            Err(ReplayError::WrongState {
                job,
                state,
                expected,
            })
        }
    }

    /// The slot of a RUNNING job at exactly `attempt`.
    fn running(&self, job: JobId, attempt: u32) -> Result<u32, ReplayError> {
        let slot = self.slot_in(job, JobState::Running, "RUNNING")?;
        let current = self.jobs.at(slot).attempt;
        if current != attempt {
            return Err(ReplayError::WrongAttempt {
                job,
                current,
                attempt,
            });
        }
        Ok(slot)
    }

    fn slot_in(
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
            // Recovery pushes no timeouts before `finish_recovery` (after this runs).
            if t.is_live_wake(&self.jobs) {
                self.enqueue(t.slot);
            }
        }
    }
}
