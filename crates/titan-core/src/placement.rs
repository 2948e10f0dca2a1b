//! Placement: the ready queues of this shard, the load table shared with the other shards, and
//! the rules that decide where a ready job may go. Least connections over the load table: fewest
//! reservations relative to capacity among alive workers with the skill and a free slot, lowest
//! `WorkerId` on ties, reserved by compare-and-swap (see `directory.rs`).
//!
//! **Prefetching** ([`Prefetch`]): only a plain job may be placed beyond a worker's capacity,
//! because its wait in the worker's queue changes nothing but when it starts. A service holds its
//! slot for ever, `SLEEP` runs on the worker's timer whatever its slots, and a timeout's clock
//! starts at the dispatch. A NOOP holds no slot on the worker at all.
//!
//! **Cross-shard wake-ups**: a shard that finds every slot of a skill taken sets its hungry bit in
//! the load table before its last look; a shard that releases a reservation takes the other
//! shards' bits and asks the shell to wake them ([`Placement::wake_mask`]), so no wake-up is lost.

use std::sync::Arc;
use std::time::Duration;

use super::config::CoreConfig;
use super::directory::{Directory, Prefetch, Reservation};
use super::ids::{JobId, Time, WorkerId};
use super::job_store::JobStore;
use super::limits::MAX_PREFETCH;
use super::load::LoadTable;
use super::model::{JobKind, JobSpec};
use super::ready_queues::{ReadyEntry, ReadyQueues};
use super::skills::SkillId;

/// The ready queues, the shared load table and this shard's view of them.
#[derive(Debug)]
pub struct Placement {
    load: Arc<LoadTable>,
    ready: ReadyQueues,
    /// This shard's hungry bit is set in the load table.
    hungry: bool,
    /// This handle released reservations (other shards may be waiting for them).
    freed: bool,
    /// `CoreConfig::prefetch`, bounded by [`MAX_PREFETCH`].
    prefetch: u32,
    /// `CoreConfig::prefetch_below`.
    prefetch_below: Duration,
}

impl Placement {
    pub fn new(load: Arc<LoadTable>, cfg: &CoreConfig) -> Placement {
        Placement {
            load,
            ready: ReadyQueues::default(),
            hungry: false,
            freed: false,
            prefetch: cfg.prefetch.min(MAX_PREFETCH),
            prefetch_below: cfg.prefetch_below,
        }
    }

    /// The shared load table.
    pub fn load(&self) -> &Arc<LoadTable> {
        &self.load
    }

    // ---- the ready queues ----------------------------------------------------------------------

    /// A job of `skill` is QUEUED.
    pub fn enqueue(&mut self, skill: SkillId, entry: ReadyEntry) {
        self.ready.push(skill, entry);
    }

    /// Many QUEUED jobs of one skill at once (recovery).
    pub fn enqueue_many(
        &mut self,
        skill: SkillId,
        entries: impl ExactSizeIterator<Item = ReadyEntry>,
    ) {
        self.ready.push_many(skill, entries);
    }

    /// A QUEUED job of `skill` left its queue without being placed (cancelled or adopted).
    pub fn forget(&mut self, skill: SkillId) {
        self.ready.forget(skill);
    }

    /// A worker with `skill` arrived or changed: the skill's queue exists and is tried again.
    pub fn worker_skill(&mut self, skill: SkillId) {
        self.ready.ensure(skill);
        self.ready.mark_dirty(skill);
    }

    /// Tries every skill with a backlog again (a wake-up, or dispatch no longer held).
    pub fn retry_all(&mut self) {
        self.ready.mark_all_waiting();
    }

    /// QUEUED jobs of `skill` in dispatch order, up to `limit` (queries).
    pub fn queued(&self, skill: SkillId, jobs: &JobStore, limit: usize) -> Vec<JobId> {
        self.ready.queued(skill, jobs, limit)
    }

    /// How many skills have a queue (ids `0..skills()`).
    pub fn skills(&self) -> usize {
        self.ready.skills()
    }

    /// Since when the backlog of `skill` has starved, and how many jobs wait, if it has any.
    pub fn starving(&self, skill: SkillId) -> Option<(Time, usize)> {
        self.ready.starving(skill)
    }

    /// Starts counting the starvation of `skill` again (scaling asked for a worker).
    pub fn restart_starvation(&mut self, skill: SkillId, now: Time) {
        self.ready.restart_starvation(skill, now);
    }

    // ---- the dispatch pass ---------------------------------------------------------------------

    /// The skills whose queue or workers changed since the last pass, in id order.
    pub fn take_dirty(&mut self) -> Vec<SkillId> {
        self.ready.take_dirty()
    }

    /// The best QUEUED job of `skill`.
    pub fn head(&mut self, skill: SkillId, jobs: &JobStore) -> Option<ReadyEntry> {
        self.ready.head(skill, jobs)
    }

    /// Reserves a slot for a job with `spec` of `skill` on the least loaded worker that fits.
    pub fn reserve(
        &self,
        skill: SkillId,
        spec: &JobSpec,
        workers: &Directory,
        now: Time,
    ) -> Reservation {
        let prefetch = self.prefetch_for(spec);
        workers.place(skill, &self.load, prefetch, spec.is_service(), now)
    }

    /// How far a job with `spec` may be placed beyond a worker's capacity (see the module docs).
    fn prefetch_for(&self, spec: &JobSpec) -> Prefetch {
        let depth = self.prefetch;
        if depth == 0 || spec.timeout_ms.is_some() {
            return Prefetch::Never;
        }
        match &spec.kind {
            JobKind::Noop => Prefetch::Always { depth },
            kind if kind.runs_a_process() => Prefetch::WhileShort {
                depth,
                below: self.prefetch_below,
            },
            _ => Prefetch::Never,
        }
    }

    /// The head of `skill` was placed.
    pub fn placed(&mut self, skill: SkillId) {
        self.ready.pop_live(skill);
    }

    /// The backlog of `skill` is empty, or no worker has the skill: it does not starve.
    pub fn fed(&mut self, skill: SkillId) {
        self.ready.fed(skill);
    }

    /// The backlog of `skill` found every slot taken at `now`.
    pub fn starved(&mut self, skill: SkillId, now: Time) {
        self.ready.starved(skill, now);
    }

    /// Sets this shard's hungry bit before a last look, so a release on another shard either sees
    /// the bit (and wakes us) or happened before the look (which sees the slot).
    pub fn mark_hungry(&mut self, shard_index: u32) {
        self.load.mark_hungry(shard_index);
        self.hungry = true;
    }

    /// Clears the hungry bit once no backlog of this shard starves.
    pub fn clear_hungry_if_fed(&mut self, shard_index: u32) {
        if self.hungry && !self.ready.any_starving() {
            self.load.clear_hungry(shard_index);
            self.hungry = false;
        }
    }

    // ---- releases ------------------------------------------------------------------------------

    /// Releases one reservation on `worker`, whose skills `skills` may place again.
    pub fn release(&mut self, worker: WorkerId, service: bool, now: Time, skills: &[SkillId]) {
        self.load.release(worker, service, now);
        self.freed = true;
        for &s in skills {
            self.ready.mark_dirty(s);
        }
    }

    /// After an input that released reservations: the other shards to wake (bit mask), if any.
    pub fn wake_mask(&mut self, shard_index: u32, shard_count: u32) -> Option<u64> {
        if !std::mem::take(&mut self.freed) || shard_count == 1 {
            return None;
        }
        let shards = self.load.take_hungry_except(shard_index);
        (shards != 0).then_some(shards)
    }
}
