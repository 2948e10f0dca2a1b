//! The ready queues (one binary heap per skill, highest priority first, ties in JobId order, which is
//! submission order), the timer heap (delays, retry backoffs, job timeouts) and the skill interner.
//!
//! Both heaps use lazy deletion: a cancelled or re-routed job leaves its entry behind, and the entry
//! is recognised as stale when it reaches the top (the slot holds another job, or the job is no longer
//! in the state the entry was pushed for). A per-skill `live` count stays exact, and a heap whose
//! stale entries outnumber its live ones is rebuilt, so garbage stays bounded by live work.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use super::ids::{JobId, Lsn, Time};
use super::limits::MAX_SKILLS;
use super::model::JobState;
use super::store::{JobStore, SkillId};

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
pub struct SkillQueue {
    pub heap: BinaryHeap<ReadyEntry>,
    /// Entries whose job is still QUEUED.
    pub live: usize,
    /// Since when this skill's backlog has had no free slot (cleared when the backlog empties).
    pub starved_since: Option<Time>,
}

impl SkillQueue {
    /// Drops stale entries when they outnumber live ones (amortised O(1) per entry).
    pub fn compact_if_needed(&mut self, is_live: impl Fn(&ReadyEntry) -> bool) {
        let stale = self.heap.len() - self.live;
        if stale > 1024 && stale > self.live {
            self.heap.retain(|e| is_live(e));
        }
    }
}

/// Per-skill ready queues, plus the set of skills to try placing at the end of `handle`.
#[derive(Debug, Default)]
pub struct ReadyQueues {
    pub queues: Vec<SkillQueue>,
    dirty: Vec<SkillId>,
    is_dirty: Vec<bool>,
    pub total_live: usize,
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

    pub fn queue(&mut self, skill: SkillId) -> &mut SkillQueue {
        &mut self.queues[usize::from(skill.0)]
    }
}

/// What a timer entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// A PENDING job's delay ends.
    Delay,
    /// A FAILED job's backoff ends.
    Backoff,
    /// A RUNNING attempt's timeout.
    Timeout,
}

/// One deadline. Stale entries (the job moved on) are skipped when popped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerEntry {
    pub due: Time,
    pub id: JobId,
    pub kind: TimerKind,
    pub attempt: u32,
    pub slot: u32,
}

/// Min-heap of job deadlines.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<TimerEntry>>,
}

impl Timers {
    pub fn push(&mut self, entry: TimerEntry) {
        self.heap.push(Reverse(entry));
    }

    pub fn peek(&self) -> Option<&TimerEntry> {
        self.heap.peek().map(|r| &r.0)
    }

    /// Pops the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Time) -> Option<TimerEntry> {
        if self.peek()?.due <= now {
            return self.heap.pop().map(|r| r.0);
        }
        None
    }

    pub fn pop(&mut self) -> Option<TimerEntry> {
        self.heap.pop().map(|r| r.0)
    }

    /// Every entry, stale ones included, in no particular order (snapshots filter and sort).
    pub fn iter(&self) -> impl Iterator<Item = &TimerEntry> {
        self.heap.iter().map(|r| &r.0)
    }
}

/// Interns skill names to small ids (`GENERAL` is always 0). Bounded by [`MAX_SKILLS`].
#[derive(Debug)]
pub struct Skills {
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, SkillId>,
}

impl Skills {
    pub fn new() -> Skills {
        let general: Box<str> = super::model::GENERAL.into();
        Skills {
            names: vec![general.clone()],
            ids: HashMap::from([(general, SkillId(0))]),
        }
    }

    /// The id of `name`, interning it; `None` when [`MAX_SKILLS`] are interned already.
    pub fn intern(&mut self, name: &str) -> Option<SkillId> {
        if name == super::model::GENERAL {
            // Every built-in job needs it: skip hashing for the common case.
            return Some(SkillId(0));
        }
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        if self.names.len() >= MAX_SKILLS {
            return None;
        }
        let id = SkillId(self.names.len() as u16);
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        Some(id)
    }

    pub fn get(&self, name: &str) -> Option<SkillId> {
        self.ids.get(name).copied()
    }

    pub fn name(&self, id: SkillId) -> &str {
        &self.names[usize::from(id.0)]
    }

    /// Interned names in id order (`GENERAL` first).
    pub fn names(&self) -> &[Box<str>] {
        &self.names
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
    fn timers_pop_in_due_order_only_when_due() {
        let mut t = Timers::default();
        for (due, id) in [(30, 1), (10, 2), (20, 3)] {
            t.push(TimerEntry {
                due: Time(due),
                id: JobId(id),
                kind: TimerKind::Delay,
                attempt: 0,
                slot: 0,
            });
        }
        assert!(t.pop_due(Time(5)).is_none());
        assert_eq!(t.pop_due(Time(25)).unwrap().id, JobId(2));
        assert_eq!(t.pop_due(Time(25)).unwrap().id, JobId(3));
        assert!(t.pop_due(Time(25)).is_none());
    }

    #[test]
    fn skills_intern_with_general_first() {
        let mut s = Skills::new();
        assert_eq!(s.get("GENERAL"), Some(SkillId(0)));
        let a = s.intern("PDF").unwrap();
        assert_eq!(s.intern("PDF"), Some(a));
        assert_eq!(s.name(a), "PDF");
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
