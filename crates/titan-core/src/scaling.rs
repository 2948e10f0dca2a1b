//! Scaling decisions: ask a worker to spawn a child when a skill's backlog has waited longer than
//! `spawn_after` with no free slot, and retire ephemeral workers idle past `idle_timeout`.
//! [`Scaling`] holds this shard's spawn requests in flight and the next check; the `Core` methods
//! below make the decisions.
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
use super::machine::Core;
use super::output::{Output, SpawnReason};
use super::skills::SkillId;

/// Pending spawn requests and the next check.
#[derive(Debug, Default)]
pub struct Scaling {
    next_check: Option<Time>,
    pending: Vec<PendingSpawn>,
    next_ticket: u64,
}

/// A spawn this shard asked for.
#[derive(Debug, Clone, Copy)]
struct PendingSpawn {
    ticket: u64,
    expires: Time,
}

impl Scaling {
    /// When the next check is due.
    pub fn next_check(&self) -> Option<Time> {
        self.next_check
    }

    /// Wants a check at `at`, unless one is due earlier.
    pub fn check_at(&mut self, at: Time) {
        self.next_check = Some(self.next_check.map_or(at, |t| t.min(at)));
    }

    /// Starts a check at `now`: clears the next one and forgets the requests that expired;
    /// returns how many did.
    pub fn begin_check(&mut self, now: Time) -> usize {
        self.next_check = None;
        let before = self.pending.len();
        self.pending.retain(|p| p.expires > now);
        before - self.pending.len()
    }

    /// A new spawn request of shard `shard_index`, counted until `expires`; returns its ticket.
    pub fn request(&mut self, shard_index: u32, expires: Time) -> u64 {
        let ticket = self.next_ticket << 6 | u64::from(shard_index);
        self.next_ticket += 1;
        self.pending.push(PendingSpawn { ticket, expires });
        ticket
    }

    /// A child registered with `ticket`: returns whether it was this shard's pending request.
    pub fn arrived(&mut self, ticket: u64) -> bool {
        let Some(i) = self.pending.iter().position(|p| p.ticket == ticket) else {
            return false;
        };
        self.pending.swap_remove(i);
        true
    }

    /// Whether spawn requests are in flight.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

impl Core {
    /// Schedules a scaling check one interval from now unless one is already due earlier.
    pub(super) fn scaling_wanted(&mut self) {
        if self.replaying() {
            return;
        }
        self.scaling.check_at(self.now + self.cfg.scaling_interval);
    }

    pub(super) fn spawn_arrived(&mut self, ticket: u64) {
        if self.scaling.arrived(ticket) {
            self.placement.load().end_spawn();
        }
    }

    pub(super) fn scaling_check(&mut self) {
        for _ in 0..self.scaling.begin_check(self.now) {
            self.placement.load().end_spawn();
        }
        let starving = self.maybe_spawn();
        let ephemeral = self.maybe_retire();
        if starving || ephemeral || self.scaling.has_pending() {
            self.scaling_wanted();
        }
    }

    /// Returns whether some skill is still starving (so checks continue).
    fn maybe_spawn(&mut self) -> bool {
        let mut starving = false;
        for i in 0..self.placement.skills() {
            let skill = SkillId(i as u16);
            let Some((since, queued)) = self.placement.starving(skill) else {
                continue;
            };
            starving = true;
            let waiting = self.now.since(since);
            if waiting < self.cfg.spawn_after || self.cfg.max_workers == 0 {
                continue;
            }
            let Some(parent) = self.choose_parent(skill) else {
                continue;
            };
            if !self.placement.load().try_begin_spawn(self.cfg.max_workers) {
                return true;
            }
            let expires = self.now + self.cfg.spawn_timeout;
            let ticket = self.scaling.request(self.shard.index, expires);
            let reason = SpawnReason {
                skill: self.skills.name(skill).into(),
                waiting,
                queued,
            };
            // Waiting counts again from now, so the next spawn for this skill needs another `spawn_after`.
            self.placement.restart_starvation(skill, self.now);
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
        let load = self.placement.load();
        self.workers
            .with_skill(skill)
            .iter()
            .copied()
            .filter(|&w| load.load(w).is_some_and(|l| l.alive))
            .min_by_key(|&w| {
                let ephemeral = self.workers.get(w).is_some_and(|e| e.ephemeral);
                (ephemeral, self.workers.children_of(w), w)
            })
    }

    /// Retires idle ephemeral home workers; returns whether any ephemeral home worker remains.
    fn maybe_retire(&mut self) -> bool {
        let mut remaining = false;
        for w in self.workers.retirable() {
            let load = self.placement.load();
            let idle = load.load(w).is_some_and(|l| l.running == 0);
            let idle_for = self.now.since(load.last_active(w));
            if idle && idle_for >= self.cfg.idle_timeout && load.try_retire(w) {
                self.workers.retire(w);
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
