//! Process signals and the shutdown broadcast inside each shard.
//!
//! SIGINT and SIGTERM are blocked in every thread before any executor starts (threads inherit the
//! mask), and the main thread collects them with `sigtimedwait`, so no executor is ever
//! interrupted by a signal handler. The main thread then raises a process-wide flag; each shard
//! notices it within [`POLL_INTERVAL`] and closes its local [`Shutdown`], which wakes every task
//! waiting on it (accept loops, connections).

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::sync::Semaphore;
use nix::sys::signal::{SigSet, Signal};

/// How often a shard looks at the process-wide stop flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Blocks SIGINT and SIGTERM in the calling thread and every thread it spawns afterwards.
pub fn block_signals() -> nix::Result<SigSet> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;
    Ok(set)
}

/// Waits up to `timeout` for one of the blocked signals.
pub fn wait_signal(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = nix::sys::time::TimeSpec::from_duration(timeout);
    // SAFETY: sigtimedwait reads the set and the timespec and writes nothing we pass (null info).
    let signo = unsafe { nix::libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), ts.as_ref()) };
    if signo <= 0 {
        return None;
    }
    Signal::try_from(signo).ok()
}

/// The process-wide request to stop, shared by the main thread and all shards.
#[derive(Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn raise(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A shard-local broadcast: tasks `wait()` until `trigger()` is called once.
#[derive(Clone)]
pub struct Shutdown(Rc<Semaphore>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(Rc::new(Semaphore::new(0)))
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        self.0.close();
    }

    pub fn is_triggered(&self) -> bool {
        // A closed semaphore refuses even zero-unit acquisitions.
        self.0.try_acquire(0).is_err()
    }

    /// Resolves once the shutdown was triggered.
    pub async fn wait(&self) {
        // No permits are ever signalled, so acquire only returns when the semaphore is closed.
        let _ = self.0.acquire(1).await;
    }

    /// Closes this shard's shutdown when the process-wide flag goes up.
    pub async fn follow(self, flag: StopFlag) {
        while !flag.is_raised() && !self.is_triggered() {
            glommio::timer::sleep(POLL_INTERVAL).await;
        }
        self.trigger();
    }
}
