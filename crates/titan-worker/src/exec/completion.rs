//! The way back from the engine's threads to the executor: a queue of [`Completion`]s plus a
//! doorbell, one byte on a Unix socket pair whose read end the executor awaits through io_uring.
//!
//! The doorbell rings at most once per batch: a thread rings only when it flips `wake_pending`
//! from false to true, and the executor clears the flag before it drains the queue, so an item
//! pushed after the drain always rings again. A thousand exits that land while the executor is
//! busy cost one wake-up, not a thousand.
//!
//! Waking a parked glommio executor is not free (several `io_uring_enter`s and a `membarrier`
//! per sleep; the bench measured about 55 µs of CPU per job for one extra wake-up). Exits ring
//! at once, since callers wait for outcomes; launch notices are pushed "quietly" and ride along
//! with the next ring, or are rung by a process thread once they have waited a bounded delay
//! (see `EngineConfig::launch_notice_delay`).

use super::outcome::StartError;
use super::sys;
use std::io;
use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

/// A process a launcher thread started, handed over to the executor.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub child: Child,
    /// Readable once the process has exited; registered with the pool's epoll under the job's token.
    pub pidfd: OwnedFd,
    pub pid: u32,
    pub started: Instant,
    pub started_wall: SystemTime,
    /// The read ends of stdout and stderr in [`OutputMode::Capture`](super::OutputMode).
    pub output: Option<Captured>,
}

/// A captured job's output as the launcher leaves it: the read ends of both sockets, and why
/// either log file could not be created (the job runs anyway; the drain reports it).
#[derive(Debug)]
pub(crate) struct Captured {
    pub stdout: UnixStream,
    pub stderr: UnixStream,
    pub file_errors: [Option<Arc<std::io::Error>>; 2],
}

/// Why a launch produced no process.
#[derive(Debug)]
pub(crate) enum NotLaunched {
    /// The job was cancelled while it waited for a launcher thread.
    Cancelled,
    Failed(StartError),
}

/// One event for the executor, addressed by job token.
#[derive(Debug)]
pub(crate) enum Completion {
    Launched {
        token: u64,
        result: Result<Spawned, NotLaunched>,
    },
    Exited {
        token: u64,
        at: Instant,
        wall: SystemTime,
    },
}

/// The thread-safe half: threads push, the executor drains.
#[derive(Debug)]
pub(crate) struct CompletionQueue {
    /// `None` once the engine is gone; pushes then hand their items back.
    pending: Mutex<Option<Pending>>,
    wake_pending: AtomicBool,
    bell: UnixStream,
}

#[derive(Debug, Default)]
struct Pending {
    items: Vec<Completion>,
    /// When the oldest item not yet rung for was pushed.
    quiet_since: Option<Instant>,
}

impl CompletionQueue {
    /// Queues `items` and rings the doorbell if needed. When the engine is gone the items come
    /// back, so that the pusher can dispose of what they own (kill and reap a child).
    pub fn push(&self, items: Vec<Completion>) -> Result<(), Vec<Completion>> {
        if items.is_empty() {
            return Ok(());
        }
        self.append(items, None)?;
        self.ring();
        Ok(())
    }

    /// Queues `items` without ringing; they go with the next ring. The caller must make sure a
    /// ring follows within its delay ([`CompletionQueue::ring_if_due`]).
    pub fn push_quiet(&self, items: Vec<Completion>, now: Instant) -> Result<(), Vec<Completion>> {
        if items.is_empty() {
            return Ok(());
        }
        self.append(items, Some(now))
    }

    /// When the oldest quietly pushed item waiting for a ring was pushed, if any.
    pub fn quiet_since(&self) -> Option<Instant> {
        self.lock().as_ref().and_then(|p| p.quiet_since)
    }

    /// Rings for quietly pushed items that have waited at least `delay` (any wait, for zero).
    pub fn ring_if_due(&self, now: Instant, delay: std::time::Duration) {
        let due = self
            .quiet_since()
            .is_some_and(|since| now.saturating_duration_since(since) >= delay);
        if due {
            self.ring();
        }
    }

    fn append(
        &self,
        items: Vec<Completion>,
        quiet: Option<Instant>,
    ) -> Result<(), Vec<Completion>> {
        let mut guard = self.lock();
        let Some(pending) = guard.as_mut() else {
            return Err(items);
        };
        pending.items.extend(items);
        if pending.quiet_since.is_none() {
            pending.quiet_since = quiet;
        }
        Ok(())
    }

    fn ring(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            // A failed ring means the executor side is gone; `close` handles what is queued.
            let _ = sys::send_wake_byte(self.bell.as_fd());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Pending>> {
        // Pushing and taking a vector cannot leave it inconsistent, even after a panic.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes everything queued. The flag is cleared first: see the module comment.
    fn drain(&self) -> Vec<Completion> {
        self.wake_pending.store(false, Ordering::Release);
        let mut guard = self.lock();
        match guard.as_mut() {
            Some(pending) => {
                pending.quiet_since = None;
                std::mem::take(&mut pending.items)
            }
            None => Vec::new(),
        }
    }

    /// Refuses further pushes, returns what was queued and lets the doorbell's reader see EOF.
    pub fn close(&self) -> Vec<Completion> {
        let left = self.lock().take().map(|p| p.items).unwrap_or_default();
        let _ = self.bell.shutdown(std::net::Shutdown::Write);
        left
    }
}

/// The executor half: awaits the doorbell, then drains the queue.
pub(crate) struct Doorbell {
    socket: glommio::net::UnixStream,
    queue: Arc<CompletionQueue>,
    buf: [u8; 64],
}

impl Doorbell {
    /// The next batch of completions, or `None` once the queue is closed.
    pub async fn next_batch(&mut self) -> Option<Vec<Completion>> {
        use futures_lite::AsyncReadExt;
        loop {
            match self.socket.read(&mut self.buf).await {
                Ok(0) => return None,
                Ok(_) => {
                    let batch = self.queue.drain();
                    if !batch.is_empty() {
                        return Some(batch);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }
}

/// Creates the queue and its doorbell. Must run on the glommio executor that will await it.
pub(crate) fn completion_channel() -> io::Result<(Arc<CompletionQueue>, Doorbell)> {
    let (bell, reader) = UnixStream::pair()?;
    let queue = Arc::new(CompletionQueue {
        pending: Mutex::new(Some(Pending::default())),
        wake_pending: AtomicBool::new(false),
        bell,
    });
    // SAFETY: `into_raw_fd` gives up ownership of a connected stream socket, which the glommio
    // stream takes over (and closes on drop).
    let socket = unsafe { glommio::net::UnixStream::from_raw_fd(reader.into_raw_fd()) };
    Ok((
        queue.clone(),
        Doorbell {
            socket,
            queue,
            buf: [0; 64],
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(token: u64) -> Completion {
        Completion::Exited {
            token,
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn queue() -> (CompletionQueue, UnixStream) {
        let (bell, reader) = UnixStream::pair().unwrap();
        reader.set_nonblocking(true).unwrap();
        let queue = CompletionQueue {
            pending: Mutex::new(Some(Pending::default())),
            wake_pending: AtomicBool::new(false),
            bell,
        };
        (queue, reader)
    }

    fn rings(reader: &UnixStream) -> usize {
        use std::io::Read;
        let mut buf = [0u8; 16];
        (&*reader).read(&mut buf).unwrap_or(0)
    }

    #[test]
    fn the_doorbell_rings_once_per_drained_batch() {
        let (queue, reader) = queue();
        queue.push(vec![exit(1)]).unwrap();
        queue.push(vec![exit(2), exit(3)]).unwrap();
        queue.push(Vec::new()).unwrap();
        assert_eq!(rings(&reader), 1, "one ring for three pushes");
        assert_eq!(queue.drain().len(), 3);
        queue.push(vec![exit(4)]).unwrap();
        assert_eq!(rings(&reader), 1, "a push after a drain rings again");
        assert_eq!(queue.drain().len(), 1);
    }

    #[test]
    fn quiet_items_wait_for_the_next_ring_or_their_delay() {
        let (queue, reader) = queue();
        let t0 = Instant::now();
        let delay = std::time::Duration::from_millis(2);
        queue.push_quiet(vec![exit(1)], t0).unwrap();
        assert_eq!(rings(&reader), 0, "no ring for a quiet push");
        assert_eq!(queue.quiet_since(), Some(t0));
        queue.ring_if_due(t0 + delay / 2, delay);
        assert_eq!(rings(&reader), 0, "not due yet");
        queue.ring_if_due(t0 + delay, delay);
        assert_eq!(rings(&reader), 1, "due");
        assert_eq!(queue.drain().len(), 1);
        assert_eq!(queue.quiet_since(), None);

        queue.push_quiet(vec![exit(2)], t0).unwrap();
        queue.push(vec![exit(3)]).unwrap();
        assert_eq!(
            rings(&reader),
            1,
            "an ordinary push takes the quiet item along"
        );
        assert_eq!(queue.drain().len(), 2);
    }

    #[test]
    fn a_closed_queue_hands_items_back_and_the_reader_sees_eof() {
        let (queue, reader) = queue();
        queue.push(vec![exit(1)]).unwrap();
        assert_eq!(queue.close().len(), 1);
        let refused = queue.push(vec![exit(2)]).unwrap_err();
        assert_eq!(refused.len(), 1);
        reader.set_nonblocking(false).unwrap();
        assert_eq!(rings(&reader), 1, "the ring sent before closing");
        assert_eq!(rings(&reader), 0, "then EOF");
    }
}
