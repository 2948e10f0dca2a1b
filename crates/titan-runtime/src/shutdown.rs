//! Process signals and the shutdown broadcast inside each shard.
//!
//! SIGINT and SIGTERM get a handler that only records which signal arrived (an atomic store,
//! async-signal-safe); the main thread polls for it and then raises a process-wide flag; each
//! shard notices the flag within [`POLL_INTERVAL`] and closes its local [`Shutdown`], which wakes
//! every task waiting on it (accept loops, connections).
//!
//! Signals are deliberately not blocked: a blocked mask survives `exec`, so every job a worker
//! started would inherit SIGINT and SIGTERM blocked and could never be stopped gracefully (a
//! Python job, which does not reset its mask the way shells do, would only die at SIGKILL).
//! Handlers, unlike masks, are reset to the default action by `exec`.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// How often a shard looks at the process-wide stop flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// The last termination signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_termination_signal(signo: nix::libc::c_int) {
    RECEIVED.store(signo, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to a handler that records them for [`wait_signal`].
pub fn install_handlers() -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_termination_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only performs an atomic store, which is async-signal-safe.
        unsafe { sigaction(signal, &action)? };
    }
    Ok(())
}

/// Waits up to `timeout` for SIGINT or SIGTERM (after [`install_handlers`]).
pub fn wait_signal(timeout: Duration) -> Option<Signal> {
    let deadline = Instant::now() + timeout;
    loop {
        let signo = RECEIVED.swap(0, Ordering::SeqCst);
        if signo != 0 {
            return Signal::try_from(signo).ok();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::sleep(left.min(Duration::from_millis(10)));
    }
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
