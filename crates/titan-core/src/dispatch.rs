//! The dispatch pass and the start of an attempt: at the end of each `handle`, every skill whose
//! queue or workers changed places its best QUEUED jobs until its backlog is empty or no worker
//! has a free slot (the rules are `placement.rs`'s); each placed job starts an attempt, journaled,
//! whose `Dispatch` waits only for the records that made the job ready and for its worker's
//! registration — not for its own `Dispatched` record (see `adopt.rs` for why that is safe).
//! Nothing is dispatched while replaying or while a recovered core holds dispatch for its workers.

use super::directory::Reservation;
use super::ids::{JobId, Lsn, WorkerId};
use super::job_store::flags;
use super::machine::Core;
use super::model::JobState;
use super::output::Output;
use super::record::Record;
use super::skills::SkillId;
use super::timers::{TimerEntry, TimerKind};

impl Core {
    /// One placement pass over the skills whose queue or workers changed.
    pub(super) fn dispatch(&mut self) {
        if self.replaying() || self.adoption.holding() {
            return;
        }
        for skill in self.placement.take_dirty() {
            self.dispatch_skill(skill);
        }
        self.placement.clear_hungry_if_fed(self.shard.index);
    }

    fn dispatch_skill(&mut self, skill: SkillId) {
        let mut retried = false;
        loop {
            let Some(entry) = self.placement.head(skill, &self.jobs) else {
                self.placement.fed(skill);
                return;
            };
            let spec = &self.jobs.at(entry.slot).spec;
            match self.placement.reserve(skill, spec, &self.workers, self.now) {
                Reservation::Placed(w) => {
                    self.placement.placed(skill);
                    self.start_attempt(entry.slot, w, entry.need);
                }
                Reservation::NoWorker => {
                    self.placement.fed(skill);
                    return;
                }
                Reservation::Full if self.shard.count > 1 && !retried => {
                    self.placement.mark_hungry(self.shard.index);
                    retried = true;
                }
                Reservation::Full => {
                    self.placement.starved(skill, self.now);
                    self.scaling_wanted();
                    return;
                }
            }
        }
    }

    /// Sends the job in `slot` to `worker`, whose slot is already reserved, once the records in
    /// `need` (those that made the job ready) and the worker's registration are durable.
    pub(super) fn start_attempt(&mut self, slot: u32, worker: WorkerId, need: Lsn) {
        let floor = self.adoption.take_floor(self.jobs.at(slot).id);
        // Saturating: a corrupt journal may carry any number, and must not make this panic.
        let attempt = self.jobs.at(slot).attempt.max(floor).saturating_add(1);
        let id = self.begin_attempt(slot, worker, attempt);
        // Not held for its own `Dispatched` record: after a crash that lost it, the worker
        // reports the attempt and the recovered master adopts it (`adopt.rs`), and until the
        // workers this log knows are back, the recovered master dispatches nothing.
        let joined = self.workers.joined(worker);
        self.send_after(
            need.max(joined),
            Output::Dispatch {
                worker,
                job: id,
                attempt,
            },
        );
    }

    /// Makes `attempt` of the job in `slot` live on `worker` (the reservation is the caller's)
    /// and journals it; returns the job's id.
    pub(super) fn begin_attempt(&mut self, slot: u32, worker: WorkerId, attempt: u32) -> JobId {
        self.set_state(slot, JobState::Running);
        let job = self.jobs.at_mut(slot);
        job.attempt = attempt;
        job.worker = Some(worker);
        job.started_at = self.now;
        job.flags &= !(flags::READY | flags::STARTED);
        let (id, timeout, service) = (job.id, job.spec.timeout_ms, job.spec.is_service());
        if service {
            self.retries.service_started(id, self.now, &self.cfg);
        }
        self.workers.add_attempt(worker, id, attempt, service);
        if let Some(ms) = timeout {
            let due = self.now.add_millis(u64::from(ms.get()));
            self.timers.push(TimerEntry {
                due,
                id,
                kind: TimerKind::Timeout,
                attempt,
                slot,
            });
        }
        self.journal(Record::Dispatched {
            job: id,
            attempt,
            worker,
            at: self.now,
        });
        id
    }

    /// Releases one reservation this shard held on `worker`, and lets its skills try again.
    pub(super) fn release_slot(&mut self, worker: WorkerId, service: bool) {
        if self.replaying() {
            return;
        }
        let skills = self.workers.skills_of(worker);
        self.placement.release(worker, service, self.now, skills);
    }

    /// Wakes the shards waiting for the capacity this input freed.
    pub(super) fn wake_others(&mut self) {
        if let Some(shards) = self.placement.wake_mask(self.shard.index, self.shard.count) {
            self.emit(Output::Wake { shards });
        }
    }
}
