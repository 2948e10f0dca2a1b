//! Worker liveness: registration, heartbeats (tracked by the worker's home shard only), and death.
//!
//! A worker is lost when it disconnects, is retired, or its home shard misses its heartbeats for
//! `heartbeat_timeout` (that shard emits `WorkerDead`, handles the loss itself, and the shell tells
//! the other shards with `WorkerLost`). Every shard then releases the reservations it held on the
//! worker and re-queues its live attempts there; each such loss counts against the job's crash
//! limit, separate from its retries, and a job past the limit goes DEAD. A service is re-queued the
//! same way, which redeploys it on another worker.

use super::ids::{Lsn, WorkerId};
use super::io::{Output, WorkerInfo};
use super::limits::{MAX_WORKER_CAPACITY, MAX_WORKER_SKILLS};
use super::machine::Core;
use super::model::JobState;
use super::record::{EndCause, Record};
use super::workers::WorkerEntry;

impl Core {
    pub(super) fn on_worker_up(&mut self, info: WorkerInfo) {
        let id = info.id;
        let capacity = info.capacity.min(MAX_WORKER_CAPACITY);
        let mut skills = Vec::new();
        for name in info.skills.iter().take(MAX_WORKER_SKILLS) {
            // A skill beyond the interner's limit cannot match any job, so it is simply not listed.
            if let Some(s) = self.skills.intern(name) {
                if !skills.contains(&s) {
                    skills.push(s);
                }
            }
        }
        if self.dir.get(id).is_some() {
            // Re-registration: new capacity or skills for the same worker.
            self.load.activate(id, capacity, self.now);
            if let Some(e) = self.dir.get_mut(id) {
                e.capacity = capacity;
                e.port = info.port;
            }
            self.dir.set_skills(id, skills.clone());
        } else {
            if let Some(old) = self.dir.previous_in_slot(id) {
                // The shell reused the slot; whatever we still knew about the old worker is gone.
                self.on_worker_lost(old);
            }
            self.load.activate(id, capacity, self.now);
            let entry = WorkerEntry {
                capacity,
                skills: skills.clone(),
                port: info.port,
                parent: info.parent,
                ephemeral: info.ephemeral,
                home: info.home,
                registered: self.now,
                last_heartbeat: self.now,
                attempts: std::collections::BTreeMap::new(),
                retiring: false,
                instance: info.instance,
                joined: Lsn(0),
                run_time: super::workers::RunTime::UNKNOWN,
            };
            self.dir.insert(id, entry, self.cfg.heartbeat_timeout);
            // Journaled before anything is sent to it, so a restarted master knows to wait for it.
            self.known_workers.insert(info.instance);
            self.journal(Record::WorkerJoined {
                instance: info.instance,
                at: self.now,
            });
            let joined = self.last_lsn();
            if let Some(e) = self.dir.get_mut(id) {
                e.joined = joined;
            }
        }
        // Attempts it reported before this shard saw it register take their slots before any new
        // work is placed (the dispatch pass runs after this input).
        self.adopt_parked(id);
        self.known_worker_back(info.instance);
        for s in skills {
            self.ready.ensure(s);
            self.ready.mark_dirty(s);
        }
        if let Some(ticket) = info.spawn_ticket {
            self.spawn_arrived(ticket);
        }
        if info.home && info.ephemeral {
            self.scaling_wanted();
        }
    }

    pub(super) fn on_heartbeat(&mut self, worker: WorkerId) {
        let now = self.now;
        if let Some(e) = self.dir.get_mut(worker) {
            e.last_heartbeat = now;
        }
    }

    /// Forgets `worker`: releases this shard's reservations on it and re-queues its live attempts.
    pub(super) fn on_worker_lost(&mut self, worker: WorkerId) {
        self.drop_parked(worker);
        let Some(entry) = self.dir.remove(worker) else {
            return;
        };
        if !self.replaying {
            self.load.deactivate(worker);
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
        if !self.dir.workers.values().any(|e| e.instance == instance) {
            self.known_workers.remove(&instance);
            self.journal(Record::WorkerLeft {
                instance,
                at: self.now,
            });
        }
    }

    /// Declares silent home workers dead.
    pub(super) fn fire_heartbeats(&mut self) {
        let timeout = self.cfg.heartbeat_timeout;
        while let Some(w) = self.dir.pop_silent(self.now, timeout) {
            let silent_for = self
                .dir
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
