//! Adopting attempts after a master restart. Recovery ends with the attempts that were RUNNING
//! still RUNNING but without a worker (`finish_recovery`); workers keep running their processes
//! while the master is down, re-register (under new [`WorkerId`]s) and report every attempt they
//! hold with `Input::Adopt`. A report that names a recovered, unclaimed attempt makes it live on
//! that worker: its slot is reserved in the load table (past capacity if need be: the process
//! exists), with no new dispatch and no new attempt number. When `adopt_grace` ends, attempts no
//! worker reported are re-queued as lost (journaled, counted against the crash limit), so a job
//! runs twice only when its worker really lost it.
//!
//! A dispatch does not wait for its own `Dispatched` record (only for the records that made the
//! job ready, and the worker's `WorkerJoined`), so a crash may lose the record of an attempt that
//! runs. Such a job is recovered QUEUED, one attempt behind; the worker's report of the next
//! attempt is adopted like a recovered one (and journaled now) — only while holding, and only
//! for a recovered job (any other report of an attempt the core never sent is an orphan). Until that report is in, the
//! number must not be handed out again: a recovered core **holds** every dispatch until each
//! worker instance its log knows (`WorkerJoined` without `WorkerLeft`) has registered again — the
//! shell delivers a registration's reports before its `WorkerUp` — or until `adopt_grace` ends.
//! When every known worker is back, RUNNING attempts none of them reported are re-queued at once;
//! instances still missing when the grace ends are journaled as gone.
//!
//! A report the core cannot account for — the job finished, was cancelled or re-queued meanwhile,
//! another worker holds that attempt, or the job is unknown — is answered with `Output::Kill`
//! ([`KillReason::Orphaned`]): a process the core does not count must not run. An orphan's number
//! (which the core never heard of when its dispatch record was lost) is never handed out again: it
//! becomes the job's attempt floor, so a worker never sees two attempts with the same number once
//! it has reported one.
//!
//! Reports may arrive before the shard has seen the worker's `WorkerUp`; they are parked until it
//! does (then applied before the dispatch pass, so no new work takes the adopted slots on this
//! shard) or until the grace ends (then the reported attempts are killed as orphans).
//!
//! [`Adoption`] owns that state: the recovered attempts waiting for a report, the parked reports,
//! the grace deadline, the attempt floors, the hold, and the worker instances the log knows (kept
//! in live operation too: journaled joins minus leaves). The `Core` methods below apply reports.

use std::collections::{BTreeMap, BTreeSet};

use super::id_map::IdMap;
use super::ids::{JobId, Time, WorkerId};
use super::job_store::flags;
use super::limits::MAX_PARKED_ADOPTS;
use super::machine::Core;
use super::model::JobState;
use super::output::{KillReason, Output};
use super::record::{EndCause, Record};

/// Reports parked by worker: `(job, attempt)` in arrival order.
type Parked = BTreeMap<WorkerId, Vec<(JobId, u32)>>;

/// Recovered attempts waiting for their workers, parked reports, and the known workers.
#[derive(Debug, Default)]
pub struct Adoption {
    /// Recovered RUNNING attempts nobody reported yet: job -> attempt.
    waiting: BTreeMap<JobId, u32>,
    /// Reports from workers this shard has not seen register.
    parked: Parked,
    parked_count: usize,
    /// When the waiting attempts are re-queued and the parked reports killed.
    deadline: Option<Time>,
    /// Attempt numbers orphans reported beyond a job's counter: its next dispatch goes past them.
    floors: IdMap<JobId, u32>,
    /// After a restart, until the known workers are back: nothing is dispatched.
    hold: Option<Hold>,
    /// Worker instances this shard's log says are registered (journaled joins minus leaves).
    known: BTreeSet<u64>,
}

/// Dispatch held after a restart.
#[derive(Debug)]
struct Hold {
    /// The known worker instances not registered again yet.
    missing: BTreeSet<u64>,
    /// Submissions below this `k` were recovered: only their QUEUED jobs may be adopted from a
    /// report of a newer attempt (a lost `Dispatched` record).
    recovered_below_k: u64,
}

impl Adoption {
    /// When the grace ends, if it runs.
    pub fn deadline(&self) -> Option<Time> {
        self.deadline
    }

    /// Whether the grace ended by `now`.
    pub fn grace_over(&self, now: Time) -> bool {
        self.deadline.is_some_and(|t| t <= now)
    }

    /// Starts the grace, to end at `due`, unless it runs already.
    fn start_grace(&mut self, due: Time) {
        self.deadline.get_or_insert(due);
    }

    /// Removes and returns `job`'s attempt floor (0 when none; free when no orphan was reported).
    pub fn take_floor(&mut self, job: JobId) -> u32 {
        if self.floors.is_empty() {
            return 0;
        }
        self.floors.remove(&job).unwrap_or(0)
    }

    /// A worker reported `attempt` of `job`, which the core never heard of: the next dispatch
    /// must go past it.
    fn raise_floor(&mut self, job: JobId, attempt: u32) {
        let floor = self.floors.entry(job).or_default();
        *floor = (*floor).max(attempt);
    }

    /// Dispatch is held until the known workers are back.
    pub fn holding(&self) -> bool {
        self.hold.is_some()
    }

    /// Whether a submission with this `k` was recovered (while the hold lasts).
    fn recovered(&self, k: u64) -> bool {
        self.hold.as_ref().is_some_and(|h| k < h.recovered_below_k)
    }

    /// Holds dispatch until every known worker is back or the grace ends at `due`; submissions
    /// below `recovered_below_k` count as recovered. Nothing to hold when no worker is known.
    pub fn hold(&mut self, recovered_below_k: u64, due: Time) {
        if self.known.is_empty() {
            return;
        }
        self.hold = Some(Hold {
            missing: self.known.clone(),
            recovered_below_k,
        });
        self.start_grace(due);
    }

    /// Worker `instance` registered: returns whether it was the last one the hold waited for.
    pub fn worker_back(&mut self, instance: u64) -> bool {
        let Some(hold) = self.hold.as_mut() else {
            return false;
        };
        hold.missing.remove(&instance);
        if !hold.missing.is_empty() {
            return false;
        }
        self.hold = None;
        true
    }

    /// A recovered RUNNING attempt waits for its worker's report until the grace ends at `due`.
    pub fn await_report(&mut self, job: JobId, attempt: u32, due: Time) {
        self.waiting.insert(job, attempt);
        self.start_grace(due);
    }

    /// Claims the waiting recovered attempt of `job` for a report; false when none waits.
    fn claim(&mut self, job: JobId) -> bool {
        self.waiting.remove(&job).is_some()
    }

    /// Parks a report from a worker this shard has not seen register; false when the parking is
    /// full (the report is then an orphan).
    fn park(&mut self, worker: WorkerId, job: JobId, attempt: u32, due: Time) -> bool {
        if self.parked_count >= MAX_PARKED_ADOPTS {
            return false;
        }
        self.parked.entry(worker).or_default().push((job, attempt));
        self.parked_count += 1;
        self.start_grace(due);
        true
    }

    /// Takes the recovered attempts still waiting for a report.
    fn take_waiting(&mut self) -> BTreeMap<JobId, u32> {
        std::mem::take(&mut self.waiting)
    }

    /// Ends the grace: returns the instances the hold still waited for, if it held, which are
    /// no longer known, and every parked report.
    fn end_grace(&mut self) -> (Option<BTreeSet<u64>>, Parked) {
        self.deadline = None;
        let missing = self.hold.take().map(|hold| {
            for instance in &hold.missing {
                self.known.remove(instance);
            }
            hold.missing
        });
        self.parked_count = 0;
        (missing, std::mem::take(&mut self.parked))
    }

    /// Takes the reports parked for `worker`.
    fn unpark(&mut self, worker: WorkerId) -> Option<Vec<(JobId, u32)>> {
        let list = self.parked.remove(&worker)?;
        self.parked_count -= list.len();
        Some(list)
    }

    // ---- the known workers ---------------------------------------------------------------------

    /// Worker `instance` is journaled as registered.
    pub fn joined(&mut self, instance: u64) {
        self.known.insert(instance);
    }

    /// Worker `instance` is journaled as gone.
    pub fn left(&mut self, instance: u64) {
        self.known.remove(&instance);
    }

    /// Adds the known workers of a snapshot.
    pub fn extend_known(&mut self, instances: impl IntoIterator<Item = u64>) {
        self.known.extend(instances);
    }

    /// The known worker instances, in order.
    pub fn known(&self) -> impl Iterator<Item = u64> + '_ {
        self.known.iter().copied()
    }
}

impl Core {
    pub(super) fn on_adopt(&mut self, worker: WorkerId, job: JobId, attempt: u32) {
        if self.workers.get(worker).is_some() {
            return self.adopt(worker, job, attempt);
        }
        let due = self.now + self.cfg.adopt_grace;
        if !self.adoption.park(worker, job, attempt, due) {
            self.orphan(worker, job, attempt);
        }
    }

    /// Applies the reports parked for a worker that just registered on this shard.
    pub(super) fn adopt_parked(&mut self, worker: WorkerId) {
        let Some(list) = self.adoption.unpark(worker) else {
            return;
        };
        for (job, attempt) in list {
            self.adopt(worker, job, attempt);
        }
    }

    /// Forgets the parked reports of a worker that is gone (its processes went with it).
    pub(super) fn drop_parked(&mut self, worker: WorkerId) {
        self.adoption.unpark(worker);
    }

    /// A registered worker reports `(job, attempt)`: adopt it, accept a duplicate, or kill it.
    fn adopt(&mut self, worker: WorkerId, job: JobId, attempt: u32) {
        let Some(slot) = self.jobs.slot_of(job) else {
            if self.shard.owns(job.dag()) {
                // A submission whose record was lost: its id must never name another one.
                self.dag_ids.note(job.dag());
            }
            return self.orphan(worker, job, attempt);
        };
        let j = self.jobs.at(slot);
        let this_attempt = j.state == JobState::Running && j.attempt == attempt;
        if this_attempt && j.worker == Some(worker) {
            return; // Reported twice.
        }
        let service = j.spec.is_service();
        if this_attempt && j.worker.is_none() && self.adoption.claim(job) {
            if self.placement.load().adopt(worker, service, self.now) {
                let j = self.jobs.at_mut(slot);
                j.worker = Some(worker);
                j.flags |= flags::STARTED;
                self.workers.add_attempt(worker, job, attempt, service);
                self.history.totals_mut().adopted += 1;
                return;
            }
            // The worker is not placeable (retiring, or its slot is saturated): its copy is killed
            // and the job runs again now rather than after the grace.
            self.end_attempt(slot, EndCause::WorkerLost, None);
            return self.orphan(worker, job, attempt);
        }
        let j = self.jobs.at(slot);
        let recovered = self.adoption.recovered(self.dag_ids.k_of(job.dag()));
        if recovered
            && j.state == JobState::Queued
            && attempt > j.attempt
            && self.placement.load().adopt(worker, service, self.now)
        {
            // Sent before a crash that lost its `Dispatched` record: it runs (or ran) there.
            let skill = j.skill;
            self.placement.forget(skill);
            self.adoption.take_floor(job);
            self.begin_attempt(slot, worker, attempt);
            self.jobs.at_mut(slot).flags |= flags::STARTED;
            self.history.totals_mut().adopted += 1;
            return;
        }
        let j = self.jobs.at(slot);
        if attempt > j.attempt && !j.state.is_terminal() {
            // The record of this dispatch was lost; the next dispatch must use a fresh number.
            self.adoption.raise_floor(job, attempt);
        }
        self.orphan(worker, job, attempt);
    }

    fn orphan(&mut self, worker: WorkerId, job: JobId, attempt: u32) {
        self.history.totals_mut().orphaned += 1;
        self.emit(Output::Kill {
            worker,
            job,
            attempt,
            reason: KillReason::Orphaned,
        });
    }

    /// Starts holding dispatch after a restart, when the log knows workers that may hold attempts.
    pub(super) fn hold_for_known_workers(&mut self) {
        if self.cfg.adopt_grace.is_zero() {
            return;
        }
        let due = self.now + self.cfg.adopt_grace;
        self.adoption.hold(self.dag_ids.next_k(), due);
    }

    /// A worker instance registered (its reports are in): ends the hold when it was the last.
    pub(super) fn known_worker_back(&mut self, instance: u64) {
        if self.adoption.worker_back(instance) {
            // Every worker that could hold a recovered attempt has reported: the rest are lost.
            self.requeue_unreported();
            self.placement.retry_all();
        }
    }

    fn requeue_unreported(&mut self) {
        let waiting = self.adoption.take_waiting();
        for (job, attempt) in waiting {
            let Some(slot) = self.jobs.slot_of(job) else {
                continue;
            };
            let j = self.jobs.at(slot);
            if j.state == JobState::Running && j.attempt == attempt && j.worker.is_none() {
                self.end_attempt(slot, EndCause::WorkerLost, None);
            }
        }
    }

    /// The grace ended: unreported attempts are lost, parked reports are orphans, and known
    /// workers that did not come back are gone.
    pub(super) fn end_adoption_grace(&mut self) {
        let (missing, parked) = self.adoption.end_grace();
        self.requeue_unreported();
        if let Some(missing) = missing {
            for instance in missing {
                self.journal(Record::WorkerLeft {
                    instance,
                    at: self.now,
                });
            }
            self.placement.retry_all();
        }
        for (worker, list) in parked {
            for (job, attempt) in list {
                self.orphan(worker, job, attempt);
            }
        }
    }
}
