//! Stopping a role: the cross-thread [`ShutdownHandle`] that whoever runs a master or a worker
//! holds, and the shard-local [`Shutdown`] broadcast that wakes every task of one executor.
//!
//! A role is given a `ShutdownHandle`; the binary triggers it on SIGINT/SIGTERM, a test or an
//! embedding process whenever it likes. Each executor follows the handle (noticing it within
//! [`POLL_INTERVAL`]) and closes its local [`Shutdown`], which wakes every task waiting on it
//! (accept loops, connections). Signals themselves are the binary's business, not this crate's.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::sync::Semaphore;

/// How often an executor looks at its [`ShutdownHandle`].
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// A request to stop, shared across threads: cloneable, `Send`, triggered once from anywhere.
#[derive(Clone, Debug, Default)]
pub struct ShutdownHandle(Arc<AtomicBool>);

impl ShutdownHandle {
    pub fn trigger(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_triggered(&self) -> bool {
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

    /// Closes this executor's shutdown when the cross-thread handle is triggered.
    pub async fn follow(self, handle: ShutdownHandle) {
        while !handle.is_triggered() && !self.is_triggered() {
            glommio::timer::sleep(POLL_INTERVAL).await;
        }
        self.trigger();
    }
}
