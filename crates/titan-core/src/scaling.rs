//! Scaling decisions: ask a worker to spawn a child when a skill's backlog has waited longer than
//! `spawn_after` with no free slot, and retire ephemeral workers idle past `idle_timeout`.
//!
//! Each shard decides for its own backlog; the global bound `max_workers` is enforced through the
//! load table (`alive + spawning < max_workers`, reserved by compare-and-swap), so shards cannot
//! overshoot together. A spawn request stays counted until the child registers with the request's
//! ticket or `spawn_timeout` passes. The parent is an alive worker with the skill, preferring
//! non-ephemeral ones, then fewest children, then lowest id. At most one spawn per shard per check.
//! Retirement is decided by the worker's home shard from the load table's `last_active` time, and
//! the load table refuses to retire the last alive worker or a busy one. Checks run every
//! `scaling_interval` while there is something to decide (a starving skill, a pending spawn, or an
//! ephemeral home worker), so an idle core has no periodic wake-up.

use super::ids::{Time, WorkerId};
use super::io::{Output, SpawnReason};
use super::machine::Core;
use super::store::SkillId;

/// Pending spawn requests and the next check.
#[derive(Debug, Default)]
pub struct Scaling {
    pub next_check: Option<Time>,
    pub pending: Vec<PendingSpawn>,
    pub next_ticket: u64,
}

/// A spawn this shard asked for.
#[derive(Debug, Clone, Copy)]
pub struct PendingSpawn {
    pub ticket: u64,
    pub expires: Time,
}

impl Core {
    /// Schedules a scaling check one interval from now unless one is already due earlier.
    pub(super) fn scaling_wanted(&mut self) {
        if self.replaying {
            return;
        }
        let at = self.now + self.cfg.scaling_interval;
        self.scaling.next_check = Some(self.scaling.next_check.map_or(at, |t| t.min(at)));
    }

    pub(super) fn spawn_arrived(&mut self, ticket: u64) {
        if let Some(i) = self.scaling.pending.iter().position(|p| p.ticket == ticket) {
            self.scaling.pending.swap_remove(i);
            self.load.end_spawn();
        }
    }

    pub(super) fn scaling_check(&mut self) {
        self.scaling.next_check = None;
        let now = self.now;
        let before = self.scaling.pending.len();
        self.scaling.pending.retain(|p| p.expires > now);
        for _ in self.scaling.pending.len()..before {
            self.load.end_spawn();
        }
        let starving = self.maybe_spawn();
        let ephemeral = self.maybe_retire();
        if starving || ephemeral || !self.scaling.pending.is_empty() {
            self.scaling_wanted();
        }
    }

    /// Returns whether some skill is still starving (so checks continue).
    fn maybe_spawn(&mut self) -> bool {
        let mut starving = false;
        for i in 0..self.ready.queues.len() {
            let q = &self.ready.queues[i];
            let Some(since) = q.starved_since.filter(|_| q.live > 0) else {
                continue;
            };
            starving = true;
            let waiting = self.now.since(since);
            if waiting < self.cfg.spawn_after || self.cfg.max_workers == 0 {
                continue;
            }
            let skill = SkillId(i as u16);
            let Some(parent) = self.choose_parent(skill) else {
                continue;
            };
            if !self.load.try_begin_spawn(self.cfg.max_workers) {
                return true;
            }
            let ticket = self.scaling.next_ticket << 6 | u64::from(self.shard.index);
            self.scaling.next_ticket += 1;
            let expires = self.now + self.cfg.spawn_timeout;
            self.scaling.pending.push(PendingSpawn { ticket, expires });
            let reason = SpawnReason {
                skill: self.skills.name(skill).into(),
                waiting,
                queued: q.live,
            };
            // Waiting counts again from now, so the next spawn for this skill needs another `spawn_after`.
            self.ready.queues[i].starved_since = Some(self.now);
            self.emit(Output::SpawnWorker {
                parent,
                ticket,
                reason,
            });
            return true;
        }
        starving
    }

    fn choose_parent(&self, skill: SkillId) -> Option<WorkerId> {
        let children = |w: WorkerId| {
            self.dir
                .workers
                .values()
                .filter(|e| e.parent == Some(w))
                .count()
        };
        self.dir
            .with_skill(skill)
            .iter()
            .copied()
            .filter(|&w| self.load.load(w).is_some_and(|l| l.alive))
            .min_by_key(|&w| (self.dir.get(w).is_some_and(|e| e.ephemeral), children(w), w))
    }

    /// Retires idle ephemeral home workers; returns whether any ephemeral home worker remains.
    fn maybe_retire(&mut self) -> bool {
        let mut remaining = false;
        let candidates: Vec<WorkerId> = self
            .dir
            .workers
            .iter()
            .filter(|(_, e)| e.home && e.ephemeral && !e.retiring)
            .map(|(&w, _)| w)
            .collect();
        for w in candidates {
            let idle = self.load.load(w).is_some_and(|l| l.running == 0);
            let idle_for = self.now.since(self.load.last_active(w));
            if idle && idle_for >= self.cfg.idle_timeout && self.load.try_retire(w) {
                self.dir.unlist(w);
                if let Some(e) = self.dir.get_mut(w) {
                    e.retiring = true;
                }
                self.emit(Output::RetireWorker {
                    worker: w,
                    idle_for,
                });
            } else {
                remaining = true;
            }
        }
        remaining
    }
}
