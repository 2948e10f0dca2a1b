//! Adopting attempts after a master restart. Recovery ends with the attempts that were RUNNING
//! still RUNNING but without a worker (`finish_recovery`); workers keep running their processes
//! while the master is down, re-register (under new [`WorkerId`]s) and report every attempt they
//! hold with `Input::Adopt`. A report that names a recovered, unclaimed attempt makes it live on
//! that worker: its slot is reserved in the load table (past capacity if need be: the process
//! exists), with no new dispatch and no new attempt number. When `adopt_grace` ends, attempts no
//! worker reported are re-queued as lost (journaled, counted against the crash limit), so a job
//! runs twice only when its worker really lost it.
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

use std::collections::BTreeMap;

use super::ids::{JobId, Time, WorkerId};
use super::io::{KillReason, Output};
use super::limits::MAX_PARKED_ADOPTS;
use super::machine::Core;
use super::model::JobState;
use super::record::EndCause;
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
}

impl Adoption {
    /// Removes and returns `job`'s attempt floor (0 when none; free when no orphan was reported).
    pub fn take_floor(&mut self, job: JobId) -> u32 {
        if self.floors.is_empty() {
            return 0;
        }
        self.floors.remove(&job).unwrap_or(0)
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
        if this_attempt && j.worker.is_none() && self.adoption.waiting.remove(&job).is_some() {
            if self.load.adopt(worker, self.now) {
                let j = self.jobs.at_mut(slot);
                j.worker = Some(worker);
                j.flags |= flags::STARTED;
                self.dir.add_attempt(worker, job, attempt);
                self.totals.adopted += 1;
                return;
            }
            // The worker is not placeable (retiring, or its slot is saturated): its copy is killed
            // and the job runs again now rather than after the grace.
            self.end_attempt(slot, EndCause::WorkerLost, None);
            return self.orphan(worker, job, attempt);
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

    /// The grace ended: unreported attempts are lost, parked reports are orphans.
    pub(super) fn end_adoption_grace(&mut self) {
        self.adoption.deadline = None;
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
        let parked = std::mem::take(&mut self.adoption.parked);
        self.adoption.parked_count = 0;
        for (worker, list) in parked {
            for (job, attempt) in list {
                self.orphan(worker, job, attempt);
            }
        }
    }
}
