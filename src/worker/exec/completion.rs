//! The way back from the engine's threads to the executor: a queue of [`Completion`]s plus a
//! doorbell, one byte on a Unix socket pair whose read end the executor awaits through io_uring.
//!
//! The doorbell rings at most once per batch: a thread rings only when it flips `wake_pending`
//! from false to true, and the executor clears the flag before it drains the queue, so an item
//! pushed after the drain always rings again. A thousand exits that land while the executor is
//! busy cost one wake-up, not a thousand.

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
    pub output: Option<(UnixStream, UnixStream)>,
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
    items: Mutex<Option<Vec<Completion>>>,
    wake_pending: AtomicBool,
    bell: UnixStream,
}

impl CompletionQueue {
    /// Queues `items` and rings the doorbell if needed. When the engine is gone the items come
    /// back, so that the pusher can dispose of what they own (kill and reap a child).
    pub fn push(&self, items: Vec<Completion>) -> Result<(), Vec<Completion>> {
        if items.is_empty() {
            return Ok(());
        }
        {
            let mut guard = self.items.lock().unwrap_or_else(PoisonError::into_inner);
            match guard.as_mut() {
                Some(queue) => queue.extend(items),
                None => return Err(items),
            }
        }
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            // A failed ring means the executor side is gone; `close` handles what is queued.
            let _ = sys::send_wake_byte(self.bell.as_fd());
        }
        Ok(())
    }

    /// Takes everything queued. The flag is cleared first: see the module comment.
    fn drain(&self) -> Vec<Completion> {
        self.wake_pending.store(false, Ordering::Release);
        let mut guard = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        guard.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Refuses further pushes, returns what was queued and lets the doorbell's reader see EOF.
    pub fn close(&self) -> Vec<Completion> {
        let left = {
            let mut guard = self.items.lock().unwrap_or_else(PoisonError::into_inner);
            guard.take().unwrap_or_default()
        };
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
        items: Mutex::new(Some(Vec::new())),
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
            items: Mutex::new(Some(Vec::new())),
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
