//! Worker liveness: registration, heartbeats (tracked by the worker's home shard only), and death.
//!
//! A worker is lost when it disconnects, is retired, or its home shard misses its heartbeats for
//! `heartbeat_timeout` (that shard emits `WorkerDead`, handles the loss itself, and the shell tells
//! the other shards with `WorkerLost`). Every shard then releases the reservations it held on the
//! worker and re-queues its live attempts there; each such loss counts against the job's crash
//! limit, separate from its retries, and a job past the limit goes DEAD. A service is re-queued the
//! same way, which redeploys it on another worker.

use super::directory::WorkerEntry;
use super::ids::WorkerId;
use super::input::WorkerInfo;
use super::limits::{MAX_WORKER_CAPACITY, MAX_WORKER_SKILLS};
use super::machine::Core;
use super::model::JobState;
use super::output::Output;
use super::record::{EndCause, Record};
use super::skills::SkillId;

impl Core {
    pub(super) fn on_worker_up(&mut self, info: WorkerInfo) {
        let id = info.id;
        let capacity = info.capacity.min(MAX_WORKER_CAPACITY);
        let skills = self.intern_worker_skills(&info.skills);
        if self.workers.get(id).is_some() {
            // Re-registration: new capacity or skills for the same worker.
            self.placement.load().activate(id, capacity, self.now);
            self.workers
                .reregister(id, capacity, info.port, skills.clone());
        } else {
            self.worker_joined(&info, capacity, skills.clone());
        }
        // Attempts it reported before this shard saw it register take their slots before any new
        // work is placed (the dispatch pass runs after this input).
        self.adopt_parked(id);
        self.known_worker_back(info.instance);
        for s in skills {
            self.placement.worker_skill(s);
        }
        if let Some(ticket) = info.spawn_ticket {
            self.spawn_arrived(ticket);
        }
        if info.home && info.ephemeral {
            self.scaling_wanted();
        }
    }

    /// The skills a worker advertises, interned, without duplicates. A skill beyond the
    /// interner's limit cannot match any job, so it is simply not listed.
    fn intern_worker_skills(&mut self, names: &[Box<str>]) -> Vec<SkillId> {
        let mut skills = Vec::new();
        for name in names.iter().take(MAX_WORKER_SKILLS) {
            if let Some(s) = self.skills.intern(name) {
                if !skills.contains(&s) {
                    skills.push(s);
                }
            }
        }
        skills
    }

    /// A worker new to this shard: active in the load table, into the directory, and journaled
    /// before anything is sent to it, so a restarted master knows to wait for it.
    fn worker_joined(&mut self, info: &WorkerInfo, capacity: u32, skills: Vec<SkillId>) {
        let id = info.id;
        if let Some(old) = self.workers.previous_in_slot(id) {
            // The shell reused the slot; whatever we still knew about the old worker is gone.
            self.on_worker_lost(old);
        }
        self.placement.load().activate(id, capacity, self.now);
        let entry = WorkerEntry::new(info, capacity, skills, self.now);
        self.workers.insert(id, entry, self.cfg.heartbeat_timeout);
        self.adoption.joined(info.instance);
        self.journal(Record::WorkerJoined {
            instance: info.instance,
            at: self.now,
        });
        self.workers.set_joined(id, self.last_lsn());
    }

    pub(super) fn on_heartbeat(&mut self, worker: WorkerId) {
        self.workers.heartbeat(worker, self.now);
    }

    /// Forgets `worker`: releases this shard's reservations on it and re-queues its live attempts.
    pub(super) fn on_worker_lost(&mut self, worker: WorkerId) {
        self.drop_parked(worker);
        let Some(entry) = self.workers.remove(worker) else {
            return;
        };
        if !self.replaying() {
            self.placement.load().deactivate(worker);
        }
        for ((job, attempt), service) in entry.attempts {
            self.release_slot(worker, service);
            let Some(slot) = self.jobs.slot_of(job) else {
                continue;
            };
            let j = self.jobs.at(slot);
            if j.state == JobState::Running && j.attempt == attempt && j.worker == Some(worker) {
                self.end_attempt(slot, EndCause::WorkerLost, None);
            }
        }
        // After the ends of its attempts, so a durable leave implies they are durable too.
        let instance = entry.instance;
        if !self.workers.has_instance(instance) {
            self.adoption.left(instance);
            self.journal(Record::WorkerLeft {
                instance,
                at: self.now,
            });
        }
    }

    /// Declares silent home workers dead.
    pub(super) fn fire_heartbeats(&mut self) {
        let timeout = self.cfg.heartbeat_timeout;
        while let Some(w) = self.workers.pop_silent(self.now, timeout) {
            let silent_for = self
                .workers
                .get(w)
                .map(|e| self.now.since(e.last_heartbeat))
                .unwrap_or_default();
            self.emit(Output::WorkerDead {
                worker: w,
                silent_for,
            });
            self.on_worker_lost(w);
        }
    }
}
