//! The commit ledger: which sequence numbers are durable, which failed, and who waits for which.
//!
//! It is plain data with no IO. The flusher reports outcomes (`on_durable`, `on_failed`) and gets
//! back the wakers to wake; waiters ask [`CommitLedger::outcome`] and park their waker under their
//! sequence number. Waking is by range, so one batch wakes exactly the tasks whose records it made
//! durable, and a single task waiting for the newest record is woken once per batch.
//!
//! Watermark contract: `durable()` only ever covers records that were written and synced, or that
//! were reported failed (to their waiters, before the watermark passed them). A failed range is
//! never reused: later records get higher sequence numbers, so `durable() >= lsn` alone does not
//! mean "lsn is on disk" — use [`CommitLedger::outcome`] (or `Journal::wait_durable`) for that.

use std::collections::{BTreeMap, VecDeque};
use std::task::Waker;

use super::error::{CommitError, IoFailure};
use super::limits::MAX_REMEMBERED_FAILURES;
use super::record::Lsn;

#[derive(Debug, Clone)]
struct FailedRange {
    first: Lsn,
    last: Lsn,
    cause: IoFailure,
}

/// Identifies one parked waiter, so it can update or withdraw its waker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct WaiterKey {
    lsn: Lsn,
    id: u64,
}

#[derive(Debug, Default)]
pub(crate) struct CommitLedger {
    durable: Lsn,
    last_assigned: Lsn,
    waiters: BTreeMap<WaiterKey, Waker>,
    next_waiter_id: u64,
    failures: VecDeque<FailedRange>,
    /// First LSN of the first failure ever seen; below it, "covered by the watermark" means durable.
    first_failure: Option<Lsn>,
    /// Last LSN of the newest failure that fell out of `failures`.
    forgotten_upto: Lsn,
}

impl CommitLedger {
    /// A ledger for a log whose records up to `durable` are on disk (recovered at open).
    pub fn new(durable: Lsn) -> Self {
        Self {
            durable,
            last_assigned: durable,
            ..Self::default()
        }
    }

    pub fn durable(&self) -> Lsn {
        self.durable
    }

    pub fn last_assigned(&self) -> Lsn {
        self.last_assigned
    }

    pub fn on_assigned(&mut self, lsn: Lsn) {
        debug_assert!(lsn > self.last_assigned);
        self.last_assigned = lsn;
    }

    /// Records `..=upto` are durable. Returns the wakers of the waiters that are now resolved.
    pub fn on_durable(&mut self, upto: Lsn) -> Vec<Waker> {
        assert!(
            upto <= self.last_assigned,
            "durable {upto} beyond last assigned {}",
            self.last_assigned
        );
        if upto <= self.durable {
            return Vec::new();
        }
        self.durable = upto;
        self.take_waiters_upto(upto)
    }

    /// Records `first..=last` will never be durable. Returns the wakers of their waiters.
    pub fn on_failed(&mut self, first: Lsn, last: Lsn, cause: IoFailure) -> Vec<Waker> {
        assert!(first > self.durable && first <= last && last <= self.last_assigned);
        self.first_failure.get_or_insert(first);
        if self.failures.len() == MAX_REMEMBERED_FAILURES {
            if let Some(oldest) = self.failures.pop_front() {
                self.forgotten_upto = oldest.last;
            }
        }
        self.failures.push_back(FailedRange { first, last, cause });
        self.take_waiters_upto(last)
    }

    fn take_waiters_upto(&mut self, upto: Lsn) -> Vec<Waker> {
        let rest = self.waiters.split_off(&WaiterKey {
            lsn: upto.next(),
            id: 0,
        });
        std::mem::replace(&mut self.waiters, rest)
            .into_values()
            .collect()
    }

    /// The outcome of `lsn`: `None` while it is still in flight.
    pub fn outcome(&self, lsn: Lsn) -> Option<Result<(), CommitError>> {
        if lsn > self.last_assigned {
            return Some(Err(CommitError::NotAppended {
                lsn,
                last: self.last_assigned,
            }));
        }
        if let Some(failed) = self.failed_range(lsn) {
            return Some(Err(CommitError::BatchFailed {
                first: failed.first,
                last: failed.last,
                cause: failed.cause.clone(),
            }));
        }
        if lsn > self.durable {
            return None;
        }
        let ambiguous = self.first_failure.is_some_and(|f| lsn >= f) && lsn <= self.forgotten_upto;
        if ambiguous {
            return Some(Err(CommitError::OutcomeForgotten { lsn }));
        }
        Some(Ok(()))
    }

    fn failed_range(&self, lsn: Lsn) -> Option<&FailedRange> {
        // Failures are few and ordered; search from the newest, where live waiters look.
        self.failures
            .iter()
            .rev()
            .take_while(|f| f.last >= lsn)
            .find(|f| f.first <= lsn)
    }

    /// Parks (or re-parks) a waiter for `lsn`; `key` is the one returned by an earlier call.
    pub fn park(&mut self, lsn: Lsn, key: Option<WaiterKey>, waker: &Waker) -> WaiterKey {
        let key = key.unwrap_or_else(|| {
            self.next_waiter_id += 1;
            WaiterKey {
                lsn,
                id: self.next_waiter_id,
            }
        });
        match self.waiters.get_mut(&key) {
            Some(parked) if parked.will_wake(waker) => {}
            Some(parked) => parked.clone_from(waker),
            None => {
                self.waiters.insert(key, waker.clone());
            }
        }
        key
    }

    pub fn unpark(&mut self, key: WaiterKey) {
        self.waiters.remove(&key);
    }

    #[cfg(test)]
    pub fn parked(&self) -> usize {
        self.waiters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::IoOp;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn failure() -> IoFailure {
        let e = std::io::Error::from_raw_os_error(nix::libc::ENOSPC);
        IoFailure::new(IoOp::Write, Path::new("seg"), &e)
    }

    fn assign(ledger: &mut CommitLedger, upto: u64) {
        for lsn in ledger.last_assigned().0 + 1..=upto {
            ledger.on_assigned(Lsn(lsn));
        }
    }

    #[test]
    fn durable_wakes_only_covered_waiters() {
        let mut ledger = CommitLedger::new(Lsn(0));
        assign(&mut ledger, 10);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        for lsn in 1..=10 {
            ledger.park(Lsn(lsn), None, &waker);
        }
        let woken = ledger.on_durable(Lsn(4));
        assert_eq!(woken.len(), 4);
        assert_eq!(ledger.parked(), 6);
        assert!(matches!(ledger.outcome(Lsn(4)), Some(Ok(()))));
        assert!(ledger.outcome(Lsn(5)).is_none());
    }

    #[test]
    fn failed_range_is_reported_and_never_durable() {
        let mut ledger = CommitLedger::new(Lsn(0));
        assign(&mut ledger, 10);
        ledger.on_durable(Lsn(3));
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter);
        ledger.park(Lsn(7), None, &waker);
        assert_eq!(ledger.on_failed(Lsn(4), Lsn(10), failure()).len(), 1);
        assign(&mut ledger, 12);
        ledger.on_durable(Lsn(12));
        for lsn in 4..=10 {
            assert!(matches!(
                ledger.outcome(Lsn(lsn)),
                Some(Err(CommitError::BatchFailed {
                    first: Lsn(4),
                    last: Lsn(10),
                    ..
                }))
            ));
        }
        assert!(matches!(ledger.outcome(Lsn(3)), Some(Ok(()))));
        assert!(matches!(ledger.outcome(Lsn(11)), Some(Ok(()))));
        assert!(matches!(
            ledger.outcome(Lsn(13)),
            Some(Err(CommitError::NotAppended { .. }))
        ));
    }

    #[test]
    fn forgotten_failures_are_not_reported_as_durable() {
        let mut ledger = CommitLedger::new(Lsn(0));
        for i in 0..=MAX_REMEMBERED_FAILURES as u64 {
            let failed = 2 * i + 1;
            assign(&mut ledger, failed + 1);
            ledger.on_failed(Lsn(failed), Lsn(failed), failure());
            ledger.on_durable(Lsn(failed + 1));
        }
        assert!(matches!(
            ledger.outcome(Lsn(1)),
            Some(Err(CommitError::OutcomeForgotten { .. }))
        ));
        let newest = 2 * MAX_REMEMBERED_FAILURES as u64 + 1;
        assert!(matches!(
            ledger.outcome(Lsn(newest)),
            Some(Err(CommitError::BatchFailed { .. }))
        ));
        assert!(matches!(ledger.outcome(Lsn(newest + 1)), Some(Ok(()))));
    }

    #[test]
    fn unpark_removes_the_waiter() {
        let mut ledger = CommitLedger::new(Lsn(0));
        assign(&mut ledger, 1);
        let waker = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
        let key = ledger.park(Lsn(1), None, &waker);
        assert_eq!(ledger.park(Lsn(1), Some(key), &waker), key);
        assert_eq!(ledger.parked(), 1);
        ledger.unpark(key);
        assert_eq!(ledger.parked(), 0);
    }
}
