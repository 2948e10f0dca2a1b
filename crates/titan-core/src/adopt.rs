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

use std::collections::{BTreeMap, BTreeSet};

use super::ids::{JobId, Time, WorkerId};
use super::io::{KillReason, Output};
use super::limits::MAX_PARKED_ADOPTS;
use super::machine::Core;
use super::model::JobState;
use super::record::{EndCause, Record};
use super::store::{flags, IdMap};

/// Recovered attempts waiting for their workers, and parked reports.
#[derive(Debug, Default)]
pub struct Adoption {
    /// Recovered RUNNING attempts nobody reported yet: job -> attempt.
    pub waiting: BTreeMap<JobId, u32>,
    /// Reports from workers this shard has not seen register.
    pub parked: BTreeMap<WorkerId, Vec<(JobId, u32)>>,
    pub parked_count: usize,
    /// When the waiting attempts are re-queued and the parked reports killed.
    pub deadline: Option<Time>,
    /// Attempt numbers orphans reported beyond a job's counter: its next dispatch goes past them.
    pub floors: IdMap<JobId, u32>,
    /// After a restart, until the known workers are back: nothing is dispatched.
    pub hold: Option<Hold>,
}

/// Dispatch held after a restart.
#[derive(Debug)]
pub struct Hold {
    /// The known worker instances not registered again yet.
    pub missing: BTreeSet<u64>,
    /// Submissions below this `k` were recovered: only their QUEUED jobs may be adopted from a
    /// report of a newer attempt (a lost `Dispatched` record).
    pub recovered_below_k: u64,
}

impl Adoption {
    /// Removes and returns `job`'s attempt floor (0 when none; free when no orphan was reported).
    pub fn take_floor(&mut self, job: JobId) -> u32 {
        if self.floors.is_empty() {
            return 0;
        }
        self.floors.remove(&job).unwrap_or(0)
    }

    /// Dispatch is held until the known workers are back.
    pub fn holding(&self) -> bool {
        self.hold.is_some()
    }
}

impl Core {
    pub(super) fn on_adopt(&mut self, worker: WorkerId, job: JobId, attempt: u32) {
        if self.dir.get(worker).is_some() {
            return self.adopt(worker, job, attempt);
        }
        if self.adoption.parked_count >= MAX_PARKED_ADOPTS {
            return self.orphan(worker, job, attempt);
        }
        self.adoption
            .parked
            .entry(worker)
            .or_default()
            .push((job, attempt));
        self.adoption.parked_count += 1;
        let due = self.now + self.cfg.adopt_grace;
        self.adoption.deadline.get_or_insert(due);
    }

    /// Applies the reports parked for a worker that just registered on this shard.
    pub(super) fn adopt_parked(&mut self, worker: WorkerId) {
        let Some(list) = self.adoption.parked.remove(&worker) else {
            return;
        };
        self.adoption.parked_count -= list.len();
        for (job, attempt) in list {
            self.adopt(worker, job, attempt);
        }
    }

    /// Forgets the parked reports of a worker that is gone (its processes went with it).
    pub(super) fn drop_parked(&mut self, worker: WorkerId) {
        if let Some(list) = self.adoption.parked.remove(&worker) {
            self.adoption.parked_count -= list.len();
        }
    }

    /// A registered worker reports `(job, attempt)`: adopt it, accept a duplicate, or kill it.
    fn adopt(&mut self, worker: WorkerId, job: JobId, attempt: u32) {
        let Some(slot) = self.jobs.slot_of(job) else {
            let k = job.dag().0 / u64::from(self.shard.count);
            if self.shard.owns(job.dag()) && k >= self.next_k {
                // A submission whose record was lost: its id must never name another one.
                self.next_k = k + 1;
            }
            return self.orphan(worker, job, attempt);
        };
        let j = self.jobs.at(slot);
        let this_attempt = j.state == JobState::Running && j.attempt == attempt;
        if this_attempt && j.worker == Some(worker) {
            return; // Reported twice.
        }
        let service = j.spec.is_service();
        if this_attempt && j.worker.is_none() && self.adoption.waiting.remove(&job).is_some() {
            if self.load.adopt(worker, service, self.now) {
                let j = self.jobs.at_mut(slot);
                j.worker = Some(worker);
                j.flags |= flags::STARTED;
                self.dir.add_attempt(worker, job, attempt, service);
                self.totals.adopted += 1;
                return;
            }
            // The worker is not placeable (retiring, or its slot is saturated): its copy is killed
            // and the job runs again now rather than after the grace.
            self.end_attempt(slot, EndCause::WorkerLost, None);
            return self.orphan(worker, job, attempt);
        }
        let j = self.jobs.at(slot);
        let recovered = self
            .adoption
            .hold
            .as_ref()
            .is_some_and(|h| job.dag().0 / u64::from(self.shard.count) < h.recovered_below_k);
        if recovered
            && j.state == JobState::Queued
            && attempt > j.attempt
            && self.load.adopt(worker, service, self.now)
        {
            // Sent before a crash that lost its `Dispatched` record: it runs (or ran) there.
            let skill = j.skill;
            self.ready.forget(skill);
            self.adoption.floors.remove(&job);
            self.begin_attempt(slot, worker, attempt);
            self.jobs.at_mut(slot).flags |= flags::STARTED;
            self.totals.adopted += 1;
            return;
        }
        let j = self.jobs.at(slot);
        if attempt > j.attempt && !j.state.is_terminal() {
            // The record of this dispatch was lost; the next dispatch must use a fresh number.
            let floor = self.adoption.floors.entry(job).or_default();
            *floor = (*floor).max(attempt);
        }
        self.orphan(worker, job, attempt);
    }

    fn orphan(&mut self, worker: WorkerId, job: JobId, attempt: u32) {
        self.totals.orphaned += 1;
        self.emit(Output::Kill {
            worker,
            job,
            attempt,
            reason: KillReason::Orphaned,
        });
    }

    /// Starts holding dispatch after a restart, when the log knows workers that may hold attempts.
    pub(super) fn hold_for_known_workers(&mut self) {
        if self.known_workers.is_empty() || self.cfg.adopt_grace.is_zero() {
            return;
        }
        self.adoption.hold = Some(Hold {
            missing: self.known_workers.clone(),
            recovered_below_k: self.next_k,
        });
        let due = self.now + self.cfg.adopt_grace;
        self.adoption.deadline.get_or_insert(due);
    }

    /// A worker instance registered (its reports are in): ends the hold when it was the last.
    pub(super) fn known_worker_back(&mut self, instance: u64) {
        let Some(hold) = self.adoption.hold.as_mut() else {
            return;
        };
        hold.missing.remove(&instance);
        if hold.missing.is_empty() {
            self.adoption.hold = None;
            // Every worker that could hold a recovered attempt has reported: the rest are lost.
            self.requeue_unreported();
            self.ready.mark_all_waiting();
        }
    }

    fn requeue_unreported(&mut self) {
        let waiting = std::mem::take(&mut self.adoption.waiting);
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
        self.adoption.deadline = None;
        self.requeue_unreported();
        if let Some(hold) = self.adoption.hold.take() {
            for instance in hold.missing {
                self.known_workers.remove(&instance);
                self.journal(Record::WorkerLeft {
                    instance,
                    at: self.now,
                });
            }
            self.ready.mark_all_waiting();
        }
        let parked = std::mem::take(&mut self.adoption.parked);
        self.adoption.parked_count = 0;
        for (worker, list) in parked {
            for (job, attempt) in list {
                self.orphan(worker, job, attempt);
            }
        }
    }
}
