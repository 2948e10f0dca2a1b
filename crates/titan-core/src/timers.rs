//! Job deadlines: a min-heap of [`TimerEntry`]s for PENDING jobs' delays, FAILED jobs' retry
//! backoffs and RUNNING attempts' timeouts. The heap uses lazy deletion: an entry whose job moved
//! on stays behind and is recognised as stale ([`TimerEntry::is_live`]) when it comes up.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::ids::{JobId, Time};
use super::job_store::JobStore;
use super::model::JobState;

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

impl TimerEntry {
    /// Whether the deadline still applies: its job is still in `slot` and in the state (and, for
    /// backoffs and timeouts, the attempt) the entry was pushed for.
    pub fn is_live(&self, jobs: &JobStore) -> bool {
        let Some(job) = jobs.check(self.slot, self.id) else {
            return false;
        };
        match self.kind {
            TimerKind::Delay => job.state == JobState::Pending,
            TimerKind::Backoff => job.state == JobState::Failed && job.attempt == self.attempt,
            TimerKind::Timeout => job.state == JobState::Running && job.attempt == self.attempt,
        }
    }

    /// Whether this is a delay or backoff that still applies: what moves a job to QUEUED by
    /// itself, unjournaled (a timeout is journaled when it fires).
    pub fn is_live_wake(&self, jobs: &JobStore) -> bool {
        self.kind != TimerKind::Timeout && self.is_live(jobs)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
