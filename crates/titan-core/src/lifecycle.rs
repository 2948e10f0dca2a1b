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

use std::time::Duration;

use rand::Rng;

use super::history::{DeadLetter, Finished};
use super::ids::{JobId, WorkerId};
use super::io::{KillReason, Output};
use super::machine::Core;
use super::model::{JobState, Outcome};
use super::record::{EndCause, Next, Record};
use super::store::flags;

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
        let Some(service) = self.dir.take_attempt(worker, job, attempt) else {
            // Not an attempt this shard holds on that worker: old, duplicated or misrouted.
            self.totals.stale_reports += 1;
            return;
        };
        self.release_slot(worker, service);
        if let Some(slot) = live {
            if self.jobs.at(slot).spec.kind.runs_a_process() {
                self.dir.note_run_time(worker, ran, &self.load, self.now);
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
        let (now, stable) = (self.now, self.cfg.service_stable_after);
        let job = self.jobs.at_mut(slot);
        job.worker = None;
        let service = job.spec.is_service();
        let success = matches!(&cause, EndCause::Reported(o) if o.is_success()) && !service;
        match &cause {
            EndCause::WorkerLost => {
                job.crashes = job.crashes.saturating_add(1);
                self.totals.requeued_on_loss += 1;
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
        let next = match recorded {
            Some(next) => next,
            None => self.decide(slot, &cause, success),
        };
        let (id, attempt) = (self.jobs.at(slot).id, self.jobs.at(slot).attempt);
        if !success {
            let mut text = match &cause {
                EndCause::Reported(o) => o.to_string(),
                EndCause::TimedOut => "timed out".to_string(),
                EndCause::WorkerLost => "worker lost".to_string(),
            };
            let refused = matches!(cause, EndCause::Reported(Outcome::Rejected { .. }));
            let lost = matches!(cause, EndCause::WorkerLost);
            if service && next == Next::Dead && !refused && !lost {
                // The only other way a service dies: the crash-loop guard.
                text = format!(
                    "crash loop: {} starts within {:?}, not restarted (last run: {text})",
                    self.cfg.crash_loop_starts, self.cfg.crash_loop_window
                );
            }
            self.errors.insert(id, text.into());
        }
        self.journal(Record::AttemptEnded {
            job: id,
            attempt,
            at: now,
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
                let kind = super::queues::TimerKind::Backoff;
                self.timers.push(super::queues::TimerEntry {
                    due,
                    id,
                    kind,
                    attempt,
                    slot,
                });
            }
            Next::Requeued => self.enqueue(slot),
            Next::Dead => self.bury(slot),
        }
    }

    fn decide(&mut self, slot: u32, cause: &EndCause, success: bool) -> Next {
        let job = self.jobs.at(slot);
        if success {
            return Next::Completed;
        }
        if let EndCause::WorkerLost = cause {
            return if job.crashes > self.cfg.crash_limit {
                Next::Dead
            } else {
                Next::Requeued
            };
        }
        if let EndCause::Reported(Outcome::Rejected { .. }) = cause {
            return Next::Dead;
        }
        if job.spec.is_service() {
            // Services restart until stopped; only a crash loop ends them (not `retries`).
            if self.crash_looping(job.id) {
                return Next::Dead;
            }
            return Next::Retry {
                due: self.now + self.service_delay(job.failures),
            };
        }
        if job.failures > job.spec.retries {
            return Next::Dead;
        }
        let failures = job.failures;
        Next::Retry {
            due: self.now + self.backoff(failures),
        }
    }

    /// Records that the service `job` starts an attempt now (live or replayed).
    pub(super) fn note_service_start(&mut self, job: JobId) {
        let keep = self.cfg.crash_loop_starts.max(1) as usize;
        let starts = self.service_starts.entry(job).or_default();
        if starts.len() == keep {
            starts.pop_front();
        }
        starts.push_back(self.now);
    }

    /// Whether the service `job` started `crash_loop_starts` times within the window.
    fn crash_looping(&self, job: JobId) -> bool {
        let limit = self.cfg.crash_loop_starts as usize;
        let window = self.cfg.crash_loop_window;
        limit > 0
            && self.service_starts.get(&job).is_some_and(|starts| {
                starts
                    .iter()
                    .filter(|t| self.now.since(**t) < window)
                    .count()
                    >= limit
            })
    }

    /// A service's restart delay: `service_restart_base * 2^(failures-1)`, capped, no jitter.
    fn service_delay(&self, failures: u8) -> Duration {
        let shift = u32::from(failures.saturating_sub(1)).min(40);
        let base = self.cfg.service_restart_base;
        base.saturating_mul(1u32 << shift.min(31))
            .min(self.cfg.backoff_max.max(base))
    }

    /// `base * 2^(failures-1)`, capped, minus up to `jitter%` drawn from the seeded RNG.
    fn backoff(&mut self, failures: u8) -> Duration {
        let base = self.cfg.backoff_base.as_micros().min(u128::from(u64::MAX)) as u64;
        let max = self.cfg.backoff_max.as_micros().min(u128::from(u64::MAX)) as u64;
        let shift = u32::from(failures.saturating_sub(1)).min(40);
        let full = base.saturating_mul(1u64 << shift).min(max);
        let cut = full / 100 * u64::from(self.cfg.backoff_jitter_percent.min(100));
        let jitter = if cut == 0 {
            0
        } else {
            self.rng.gen_range(0..=cut)
        };
        Duration::from_micros(full - jitter)
    }

    /// DEAD: into the dead-letter queue; unreleased descendants become UPSTREAM_FAILED.
    fn bury(&mut self, slot: u32) {
        self.set_state(slot, JobState::Dead);
        let job = self.jobs.at(slot);
        let letter = DeadLetter {
            job: job.id,
            at: self.now,
            attempts: job.attempt,
            error: self.errors.get(&job.id).cloned().unwrap_or_default(),
        };
        if self.dlq.len() >= self.cfg.dlq_limit {
            self.dlq.pop_front();
            self.totals.dlq_evicted += 1;
        }
        if self.cfg.dlq_limit > 0 {
            self.dlq.push_back(letter);
        }
        self.finish_job(slot);
        self.propagate(slot, JobState::UpstreamFailed);
    }

    // ---- the waiting room ----------------------------------------------------------------------

    /// Decrements the unmet-dependency counters of `slot`'s children (once per job).
    fn release_children(&mut self, slot: u32) {
        let job = self.jobs.at_mut(slot);
        if job.has(flags::RELEASED) {
            return;
        }
        job.flags |= flags::RELEASED;
        if job.has(flags::ONE_OFF) {
            return;
        }
        let (dag_id, index) = (job.id.dag(), job.id.index() as usize);
        let Some(dag) = self.dags.get_mut(&dag_id) else {
            return;
        };
        let mut runnable = Vec::new();
        for &c in dag.graph.children(index) {
            let c = c as usize;
            dag.remaining[c] -= 1;
            if dag.remaining[c] == 0 && self.jobs.at(dag.slots[c]).state == JobState::Blocked {
                runnable.push(dag.slots[c]);
            }
        }
        for s in runnable {
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
        let dag_id = job.id.dag();
        let mut changed = Vec::new();
        if let Some(dag) = self.dags.get(&dag_id) {
            let mut stack = vec![job.id.index()];
            while let Some(i) = stack.pop() {
                for &c in dag.graph.children(i as usize) {
                    let cs = dag.slots[c as usize];
                    let child = self.jobs.at_mut(cs);
                    if child.state == JobState::Blocked {
                        self.counts[JobState::Blocked as usize] -= 1;
                        self.counts[to as usize] += 1;
                        child.state = to;
                        child.since = self.now;
                        changed.push(cs);
                        stack.push(c);
                    }
                }
            }
        }
        for &s in &changed {
            self.finish_job(s);
        }
        changed.len() as u32
    }

    /// Bookkeeping once a job is terminal: totals, watchers, and history when its submission is done.
    pub(super) fn finish_job(&mut self, slot: u32) {
        let job = self.jobs.at(slot);
        let (id, state, one_off) = (job.id, job.state, job.has(flags::ONE_OFF));
        self.service_starts.remove(&id);
        self.totals.count_terminal(state);
        if let Some(tokens) = self.watchers.remove(&id) {
            self.watcher_count -= tokens.len();
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
            self.dags.get_mut(&dag).and_then(|d| {
                d.live -= 1;
                (d.live == 0).then_some(d.slots.len())
            })
        };
        if let Some(jobs) = done_jobs {
            self.history.push_back(Finished { at: self.now, dag });
            self.history_jobs += jobs;
        }
    }
}
