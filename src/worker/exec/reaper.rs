//! The reaper thread: one blocking `epoll_wait` over the pidfds of every running job. A pidfd
//! turns readable when its process exits; the thread then queues `Exited { token }` for the
//! executor, which reaps the zombie itself (a non-blocking `waitpid`).
//!
//! Why not reap here: the executor signals process groups by the leader's pid. As long as the
//! leader is an unreaped zombie its pid, hence the group id, cannot be reused, so a SIGKILL sent
//! by the executor can never hit a stranger. Reaping on the executor thread keeps "signal" and
//! "reap" in one thread, in order. Why not `waitpid(-1)` or SIGCHLD: both would steal the
//! statuses of children that other code in the process (std's `Command::output`, tests) waits
//! for; a pidfd names exactly one process.

use super::completion::{Completion, CompletionQueue};
use super::sys;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The epoll token of the stop eventfd; job tokens count up from 1 and never reach it.
const STOP_TOKEN: u64 = u64::MAX;

/// Shared by the executor (stop, rearm) and the launcher threads (watch).
#[derive(Debug)]
pub(crate) struct ReaperHandle {
    epoll: OwnedFd,
    stop: OwnedFd,
}

impl ReaperHandle {
    /// Starts the reaper thread.
    pub fn start(queue: Arc<CompletionQueue>) -> io::Result<Arc<Self>> {
        let epoll = sys::epoll_create()?;
        let stop = sys::eventfd()?;
        sys::epoll_watch(epoll.as_fd(), stop.as_fd(), STOP_TOKEN)?;
        let handle = Arc::new(Self { epoll, stop });
        let thread_handle = handle.clone();
        std::thread::Builder::new()
            .name("titan-reaper".into())
            .spawn(move || run(&thread_handle, &queue))?;
        Ok(handle)
    }

    /// Reports `token` once when the process behind `pidfd` exits.
    pub fn watch(&self, pidfd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        sys::epoll_watch_once(self.epoll.as_fd(), pidfd, token, false)
    }

    /// Re-enables a one-shot watch that has fired.
    pub fn rearm(&self, pidfd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        sys::epoll_watch_once(self.epoll.as_fd(), pidfd, token, true)
    }

    /// Ends the thread after its current batch.
    pub fn stop(&self) {
        // An eventfd write fails only when the counter would overflow: it is readable anyway.
        let _ = sys::eventfd_signal(self.stop.as_fd());
    }
}

fn run(handle: &ReaperHandle, queue: &CompletionQueue) {
    let mut tokens = Vec::new();
    loop {
        if let Err(error) = sys::epoll_wait(handle.epoll.as_fd(), &mut tokens) {
            // Only EBADF/EINVAL are possible here, both programming errors.
            tracing::error!(%error, "reaper: epoll_wait failed; exits are no longer observed");
            return;
        }
        let (at, wall) = (Instant::now(), SystemTime::now());
        let stop = tokens.contains(&STOP_TOKEN);
        let exits: Vec<Completion> = tokens
            .iter()
            .filter(|&&token| token != STOP_TOKEN)
            .map(|&token| Completion::Exited { token, at, wall })
            .collect();
        // Exits own nothing, so a closed queue (engine gone) just drops them.
        if !exits.is_empty() && queue.push(exits).is_err() {
            return;
        }
        if stop {
            return;
        }
    }
}
