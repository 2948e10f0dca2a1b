//! The ready queues: one binary heap per skill, highest priority first, ties in JobId order (which
//! is submission order), with each skill's backlog count and how long it has starved, plus the set
//! of skills whose queue or workers changed since the last dispatch pass.
//!
//! The heaps use lazy deletion: a cancelled or re-routed job leaves its entry behind, and the entry
//! is recognised as stale when it reaches the top (the slot holds another job, or the job is no
//! longer in the state the entry was pushed for). A per-skill `live` count stays exact, and a heap
//! whose stale entries outnumber its live ones is rebuilt, so garbage stays bounded by live work.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::ids::{JobId, Lsn, Time};
use super::job_store::JobStore;
use super::model::JobState;
use super::skills::SkillId;

/// A job waiting in a ready queue. Max-heap order: higher priority, then lower (older) JobId.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyEntry {
    pub priority: i32,
    pub slot: u32,
    pub id: JobId,
    /// The journal records that made the job ready end here: its dispatch waits for them to be
    /// durable (not for its own `Dispatched` record; see `adopt.rs`).
    pub need: Lsn,
    /// The job's attempt counter when it was queued: an entry left behind when the job left the
    /// queue without being popped (adopted from a worker's report) must not count once the job
    /// is queued again, with a newer `need`.
    pub attempt: u32,
}

impl ReadyEntry {
    /// Whether this entry still stands for its job (QUEUED, and queued by this entry).
    pub fn is_live(&self, jobs: &JobStore) -> bool {
        jobs.check(self.slot, self.id)
            .is_some_and(|j| j.state == JobState::Queued && j.attempt == self.attempt)
    }
}

impl Ord for ReadyEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialOrd for ReadyEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The ready queue of one skill.
#[derive(Debug, Default)]
struct SkillQueue {
    heap: BinaryHeap<ReadyEntry>,
    /// Entries whose job is still QUEUED.
    live: usize,
    /// Since when this skill's backlog has had no free slot (cleared when the backlog empties).
    starved_since: Option<Time>,
}

impl SkillQueue {
    /// Drops stale entries when they outnumber live ones (amortised O(1) per entry).
    fn compact_if_needed(&mut self, is_live: impl Fn(&ReadyEntry) -> bool) {
        let stale = self.heap.len() - self.live;
        if stale > 1024 && stale > self.live {
            self.heap.retain(|e| is_live(e));
        }
    }
}

/// Per-skill ready queues, plus the set of skills to try placing at the end of `handle`.
#[derive(Debug, Default)]
pub struct ReadyQueues {
    queues: Vec<SkillQueue>,
    dirty: Vec<SkillId>,
    is_dirty: Vec<bool>,
    total_live: usize,
}

impl ReadyQueues {
    pub fn ensure(&mut self, skill: SkillId) {
        let n = usize::from(skill.0) + 1;
        if self.queues.len() < n {
            self.queues.resize_with(n, SkillQueue::default);
            self.is_dirty.resize(n, false);
        }
    }

    pub fn push(&mut self, skill: SkillId, entry: ReadyEntry) {
        self.ensure(skill);
        let q = &mut self.queues[usize::from(skill.0)];
        q.heap.push(entry);
        q.live += 1;
        self.total_live += 1;
        self.mark_dirty(skill);
    }

    /// Pushes many entries of one skill at once (recovery), rebuilding the heap in linear time.
    pub fn push_many(
        &mut self,
        skill: SkillId,
        entries: impl ExactSizeIterator<Item = ReadyEntry>,
    ) {
        self.ensure(skill);
        let n = entries.len();
        let q = &mut self.queues[usize::from(skill.0)];
        q.heap.extend(entries);
        q.live += n;
        self.total_live += n;
        self.mark_dirty(skill);
    }

    /// A QUEUED job left the queue without being popped (cancelled); its entry is now stale.
    pub fn forget(&mut self, skill: SkillId) {
        let q = &mut self.queues[usize::from(skill.0)];
        q.live -= 1;
        self.total_live -= 1;
    }

    /// The best QUEUED entry of `skill` (a dirty skill, so its queue exists), dropping stale
    /// entries on the way.
    pub fn head(&mut self, skill: SkillId, jobs: &JobStore) -> Option<ReadyEntry> {
        let is_live = |e: &ReadyEntry| e.is_live(jobs);
        let q = &mut self.queues[usize::from(skill.0)];
        q.compact_if_needed(is_live);
        while let Some(top) = q.heap.peek().copied() {
            if is_live(&top) {
                return Some(top);
            }
            q.heap.pop();
        }
        None
    }

    /// The top entry was popped for dispatch.
    pub fn pop_live(&mut self, skill: SkillId) {
        let q = &mut self.queues[usize::from(skill.0)];
        q.heap.pop();
        q.live -= 1;
        self.total_live -= 1;
    }

    pub fn mark_dirty(&mut self, skill: SkillId) {
        let i = usize::from(skill.0);
        if i < self.is_dirty.len() && !self.is_dirty[i] {
            self.is_dirty[i] = true;
            self.dirty.push(skill);
        }
    }

    /// Marks every skill with a backlog dirty (after a wake-up from another shard).
    pub fn mark_all_waiting(&mut self) {
        for i in 0..self.queues.len() {
            if self.queues[i].live > 0 {
                self.mark_dirty(SkillId(i as u16));
            }
        }
    }

    /// Takes the dirty skills in ascending order (deterministic placement order across skills).
    pub fn take_dirty(&mut self) -> Vec<SkillId> {
        let mut d = std::mem::take(&mut self.dirty);
        for s in &d {
            self.is_dirty[usize::from(s.0)] = false;
        }
        d.sort_unstable();
        d
    }

    // ---- starvation (no free slot for a backlog), which drives scaling ---------------------------

    /// The backlog of `skill` found a slot, or has nothing left to place it on: not starving.
    pub fn fed(&mut self, skill: SkillId) {
        self.queues[usize::from(skill.0)].starved_since = None;
    }

    /// The backlog of `skill` found no free slot at `now` (it keeps the earlier start if any).
    pub fn starved(&mut self, skill: SkillId, now: Time) {
        self.queues[usize::from(skill.0)]
            .starved_since
            .get_or_insert(now);
    }

    /// Starts counting the starvation of `skill` again from `now` (a spawn was asked for it).
    pub fn restart_starvation(&mut self, skill: SkillId, now: Time) {
        self.queues[usize::from(skill.0)].starved_since = Some(now);
    }

    /// Since when the backlog of `skill` has starved, and how many jobs wait, if it has any.
    pub fn starving(&self, skill: SkillId) -> Option<(Time, usize)> {
        let q = &self.queues[usize::from(skill.0)];
        q.starved_since.filter(|_| q.live > 0).map(|t| (t, q.live))
    }

    /// Whether any backlog starves.
    pub fn any_starving(&self) -> bool {
        self.queues
            .iter()
            .any(|q| q.live > 0 && q.starved_since.is_some())
    }

    /// How many skills have a queue (ids `0..skills()`).
    pub fn skills(&self) -> usize {
        self.queues.len()
    }

    /// QUEUED jobs of `skill` in dispatch order (best first), up to `limit`. O(queue log queue).
    pub fn queued(&self, skill: SkillId, jobs: &JobStore, limit: usize) -> Vec<JobId> {
        let Some(q) = self.queues.get(usize::from(skill.0)) else {
            return Vec::new();
        };
        let mut live: Vec<_> = q.heap.iter().filter(|e| e.is_live(jobs)).copied().collect();
        live.sort_unstable_by(|a, b| b.cmp(a));
        live.into_iter().take(limit).map(|e| e.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(priority: i32, id: u64) -> ReadyEntry {
        ReadyEntry {
            priority,
            slot: 0,
            id: JobId(id),
            need: Lsn(0),
            attempt: 0,
        }
    }

    #[test]
    fn ready_order_is_priority_then_fifo() {
        let mut h = BinaryHeap::new();
        for x in [e(1, 5), e(2, 9), e(1, 3), e(2, 7), e(0, 1)] {
            h.push(x);
        }
        let order: Vec<u64> = std::iter::from_fn(|| h.pop()).map(|x| x.id.0).collect();
        assert_eq!(order, [7, 9, 3, 5, 1]);
    }

    #[test]
    fn dirty_skills_come_out_sorted_and_once() {
        let mut q = ReadyQueues::default();
        q.push(SkillId(3), e(1, 1));
        q.push(SkillId(1), e(1, 2));
        q.push(SkillId(3), e(1, 3));
        assert_eq!(q.take_dirty(), vec![SkillId(1), SkillId(3)]);
        assert!(q.take_dirty().is_empty());
        assert_eq!(q.total_live, 3);
    }
}
