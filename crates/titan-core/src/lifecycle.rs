//! Job lifecycle transitions after submission: worker reports, retries with backoff, the dead-letter
//! queue, timeouts, services becoming ready, and the DAG waiting room's release and failure
//! propagation. (Client requests — submit, cancel, stop, watch — are in `requests.rs`.)
//!
//! ```text
//! submit ─► BLOCKED ─(deps met)─► PENDING ─(delay)─► QUEUED ─(placed)─► RUNNING ─► COMPLETED
//!              │                     │                 ▲   ▲                 │
//!              │                     │                 │   └─(worker lost)───┤
//!              │                     │                 └─FAILED◄─(retry due)─┤
//!              ▼                     ▼                                       ▼
//!     UPSTREAM_FAILED / CANCELLED (descendants)     CANCELLED (any live state)   DEAD (DLQ)
//! ```
//!
//! A job's children are released once, when it COMPLETES or, for a service, when it is READY;
//! release costs O(out-degree). Descendants of a job that dies or is cancelled before releasing its
//! children follow it (UPSTREAM_FAILED or CANCELLED); a child is never started before every parent
//! completed (or is a ready service). Cancelling or stopping a RUNNING attempt, or timing it out,
//! emits `Kill` and ends the attempt at once; its slot stays reserved until the worker's final
//! report for that attempt (or the worker's loss) arrives, so capacity is never over-committed.
//! What follows a failed attempt is the retry policy's decision (`retries.rs`).

use super::history::DeadLetter;
use super::ids::{JobId, WorkerId};
use super::job_store::flags;
use super::machine::Core;
use super::model::{JobState, Outcome};
use super::output::{KillReason, Output};
use super::record::{EndCause, Next, Record};
use super::timers::{TimerEntry, TimerKind};

impl Core {
    // ---- worker reports ------------------------------------------------------------------------

    /// The live attempt's slot if `(job, attempt, worker)` names it.
    fn live_attempt(&self, job: JobId, attempt: u32, worker: WorkerId) -> Option<u32> {
        let slot = self.jobs.slot_of(job)?;
        let j = self.jobs.at(slot);
        (j.state == JobState::Running && j.attempt == attempt && j.worker == Some(worker))
            .then_some(slot)
    }

    pub(super) fn on_job_started(&mut self, job: JobId, attempt: u32, worker: WorkerId) {
        if let Some(slot) = self.live_attempt(job, attempt, worker) {
            self.jobs.at_mut(slot).flags |= flags::STARTED;
        }
    }

    pub(super) fn on_job_finished(
        &mut self,
        job: JobId,
        attempt: u32,
        worker: WorkerId,
        outcome: Outcome,
        ran: std::time::Duration,
    ) {
        let live = self.live_attempt(job, attempt, worker);
        let Some(service) = self.workers.take_attempt(worker, job, attempt) else {
            // Not an attempt this shard holds on that worker: old, duplicated or misrouted.
            self.history.totals_mut().stale_reports += 1;
            return;
        };
        self.release_slot(worker, service);
        if let Some(slot) = live {
            if self.jobs.at(slot).spec.kind.runs_a_process() {
                let load = self.placement.load();
                self.workers.note_run_time(worker, ran, load, self.now);
            }
            self.end_attempt(slot, EndCause::Reported(outcome), None);
        }
    }

    pub(super) fn on_service_ready(&mut self, job: JobId, attempt: u32, worker: WorkerId) {
        let Some(slot) = self.live_attempt(job, attempt, worker) else {
            return;
        };
        let j = self.jobs.at(slot);
        if !j.spec.is_service() || j.has(flags::READY) {
            return;
        }
        self.journal(Record::ServiceReady {
            job,
            attempt,
            at: self.now,
        });
        self.mark_ready(slot);
    }

    pub(super) fn mark_ready(&mut self, slot: u32) {
        let now = self.now;
        let j = self.jobs.at_mut(slot);
        j.flags |= flags::READY;
        j.since = now;
        self.release_children(slot);
    }

    pub(super) fn on_timeout(&mut self, slot: u32) {
        self.kill_attempt(slot, KillReason::TimedOut);
        self.end_attempt(slot, EndCause::TimedOut, None);
    }

    // ---- attempt endings -----------------------------------------------------------------------

    /// Ends the live attempt of `slot` (the reservation is handled by the caller) and moves the job
    /// on: COMPLETED, FAILED with a backoff, re-queued, or DEAD. `recorded` replays a journaled decision.
    pub(super) fn end_attempt(&mut self, slot: u32, cause: EndCause, recorded: Option<Next>) {
        let success = self.count_attempt_end(slot, &cause);
        let next = match recorded {
            Some(next) => next,
            None => {
                let job = self.jobs.at(slot);
                self.retries.next(&self.cfg, job, &cause, success, self.now)
            }
        };
        let (id, attempt) = (self.jobs.at(slot).id, self.jobs.at(slot).attempt);
        if !success {
            let text = self.failure_text(slot, &cause, next);
            self.jobs.set_error(id, text.into());
        }
        self.journal(Record::AttemptEnded {
            job: id,
            attempt,
            at: self.now,
            cause,
            next,
        });
        match next {
            Next::Completed => {
                self.set_state(slot, JobState::Completed);
                self.release_children(slot);
                self.finish_job(slot);
            }
            Next::Retry { due } => {
                self.set_state(slot, JobState::Failed);
                self.timers.push(TimerEntry {
                    due,
                    id,
                    kind: TimerKind::Backoff,
                    attempt,
                    slot,
                });
            }
            Next::Requeued => self.enqueue(slot),
            Next::Dead => self.bury(slot),
        }
    }

    /// Detaches the attempt from its worker and counts how it ended against the job's crash limit
    /// or its retries; returns whether it completed the job.
    fn count_attempt_end(&mut self, slot: u32, cause: &EndCause) -> bool {
        let (now, stable) = (self.now, self.cfg.service_stable_after);
        let job = self.jobs.at_mut(slot);
        job.worker = None;
        let service = job.spec.is_service();
        let success = matches!(cause, EndCause::Reported(o) if o.is_success()) && !service;
        match cause {
            EndCause::WorkerLost => {
                job.crashes = job.crashes.saturating_add(1);
                self.history.totals_mut().requeued_on_loss += 1;
            }
            _ if success => {}
            _ => {
                if service && job.has(flags::READY) && now.since(job.since) >= stable {
                    // A service that ran stably and then crashed starts a fresh retry budget.
                    job.failures = 0;
                }
                job.failures = job.failures.saturating_add(1);
            }
        }
        success
    }

    /// The last-error text of an attempt that did not complete its job.
    fn failure_text(&self, slot: u32, cause: &EndCause, next: Next) -> String {
        let text = match cause {
            EndCause::Reported(o) => o.to_string(),
            EndCause::TimedOut => "timed out".to_string(),
            EndCause::WorkerLost => "worker lost".to_string(),
        };
        let refused = matches!(cause, EndCause::Reported(Outcome::Rejected { .. }));
        let lost = matches!(cause, EndCause::WorkerLost);
        let service = self.jobs.at(slot).spec.is_service();
        if service && next == Next::Dead && !refused && !lost {
            // The only other way a service dies: the crash-loop guard.
            return format!(
                "crash loop: {} starts within {:?}, not restarted (last run: {text})",
                self.cfg.crash_loop_starts, self.cfg.crash_loop_window
            );
        }
        text
    }

    /// DEAD: into the dead-letter queue; unreleased descendants become UPSTREAM_FAILED.
    fn bury(&mut self, slot: u32) {
        self.set_state(slot, JobState::Dead);
        let job = self.jobs.at(slot);
        let letter = DeadLetter {
            job: job.id,
            at: self.now,
            attempts: job.attempt,
            error: self.jobs.error(job.id).map(Box::from).unwrap_or_default(),
        };
        self.history.push_dead_letter(letter, self.cfg.dlq_limit);
        self.finish_job(slot);
        self.propagate(slot, JobState::UpstreamFailed);
    }

    // ---- the waiting room ----------------------------------------------------------------------

    /// Releases `slot`'s children (once per job): those with no unmet dependency left run.
    fn release_children(&mut self, slot: u32) {
        let job = self.jobs.at_mut(slot);
        if job.has(flags::RELEASED) {
            return;
        }
        job.flags |= flags::RELEASED;
        if job.has(flags::ONE_OFF) {
            return;
        }
        let id = job.id;
        for s in self.room.release(id, &self.jobs) {
            self.enter_runnable(s);
        }
    }

    /// Moves every BLOCKED descendant of `slot` to `to`, unless `slot` already released its children.
    /// Returns how many jobs changed. Linear in the edges of the affected subgraph.
    pub(super) fn propagate(&mut self, slot: u32, to: JobState) -> u32 {
        let job = self.jobs.at(slot);
        if job.has(flags::ONE_OFF) || job.has(flags::RELEASED) {
            return 0;
        }
        let id = job.id;
        let changed = self.room.end_descendants(id, to, &mut self.jobs, self.now);
        for &s in &changed {
            self.finish_job(s);
        }
        changed.len() as u32
    }

    /// Bookkeeping once a job is terminal: totals, watchers, and history when its submission is done.
    pub(super) fn finish_job(&mut self, slot: u32) {
        let job = self.jobs.at(slot);
        let (id, state, one_off) = (job.id, job.state, job.has(flags::ONE_OFF));
        self.retries.forget(id);
        self.history.totals_mut().count_terminal(state);
        if let Some(tokens) = self.watchers.take(id) {
            for token in tokens {
                self.ack(Output::Notify {
                    token,
                    job: id,
                    state,
                });
            }
        }
        let dag = id.dag();
        let done_jobs = if one_off {
            Some(1)
        } else {
            self.room.job_ended(dag)
        };
        if let Some(jobs) = done_jobs {
            self.history.push(self.now, dag, jobs);
        }
    }
}
