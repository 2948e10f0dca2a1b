//! The process threads: a few blocking threads, off the executor, that start jobs and notice
//! their exits. They share one epoll instance holding a "work" eventfd and the pidfd of every
//! running job (one-shot), and one queue of launch requests with a limit on processes running
//! at once.
//!
//! Why one pool does both: the thread that sees a job exit (its pidfd fires) frees the slot and
//! starts the next queued job right away, so when jobs are queued the path from one exit to the
//! next fork is a single wake-up, as in a bare spawn-and-wait loop; the executor hears of both
//! events afterwards, batched. Why epoll over pidfds: a pidfd names exactly one process, so
//! nothing here can steal the exit status of a child that other code waits for (`waitpid(-1)`
//! and SIGCHLD would); the zombie is left for the executor to reap, which keeps the leader's pid,
//! hence the process-group id, reserved for as long as the executor may signal the group.
//! Why not glommio's `spawn_blocking`: its pool has one thread by default and also runs
//! glommio's own blocking file operations; waiting for exits would hold its threads.

use super::completion::{Completion, CompletionQueue, NotLaunched};
use super::launcher::{kill_and_reap, launch, LaunchRequest, LauncherContext};
use super::spec::ChildAffinity;
use super::sys;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// The epoll token of the work eventfd; job tokens count up from 1 and never reach it.
const WORK_TOKEN: u64 = u64::MAX;
/// Set in the token of a re-armed pidfd watch: its event must not free a slot a second time.
pub(crate) const REARM_BIT: u64 = 1 << 62;

/// Shared by the executor (submit, cancel, rearm, stop) and the process threads.
#[derive(Debug)]
pub(crate) struct ProcessPool {
    epoll: OwnedFd,
    /// Readable (level-triggered) while there may be work: new requests, cancels, stop.
    work: OwnedFd,
    stop: AtomicBool,
    /// Cancels of requests that may still be queued; a thread sweeps the queue when non-zero.
    cancels: AtomicUsize,
    state: Mutex<PoolState>,
    max_running: usize,
    /// How long a launch notice may wait for a ring (see the completion module).
    launch_notice_delay: Duration,
    context: LauncherContext,
    queue: Arc<CompletionQueue>,
}

#[derive(Debug, Default)]
struct PoolState {
    pending: VecDeque<LaunchRequest>,
    /// Processes started whose exit has not been seen yet (plus launches in progress).
    running: usize,
}

impl PoolState {
    /// Takes the next request to start, reserving a slot, if a slot is free.
    fn take_startable(&mut self, max_running: usize) -> Option<LaunchRequest> {
        if self.running >= max_running {
            return None;
        }
        let request = self.pending.pop_front()?;
        self.running += 1;
        Some(request)
    }

    /// Removes a request no thread has taken yet; false when there is none with that token.
    fn withdraw(&mut self, token: u64) -> bool {
        match self.pending.iter().position(|r| r.token == token) {
            Some(i) => self.pending.remove(i).is_some(),
            None => false,
        }
    }

    fn has_startable(&self, max_running: usize) -> bool {
        self.running < max_running && !self.pending.is_empty()
    }

    /// Removes cancelled requests, which complete at once without taking a slot.
    fn sweep_cancelled(&mut self) -> Vec<Completion> {
        let mut swept = Vec::new();
        self.pending.retain(|request| {
            let cancelled = request.cancelled.load(Ordering::Acquire);
            if cancelled {
                swept.push(Completion::Launched {
                    token: request.token,
                    result: Err(NotLaunched::Cancelled),
                });
            }
            !cancelled
        });
        swept
    }
}

impl ProcessPool {
    /// Starts `threads` process threads.
    /// The sentinel recording job groups, if the engine has one.
    pub fn sentinel(&self) -> Option<&super::sentinel::Sentinel> {
        self.context.sentinel.as_deref()
    }

    pub fn start(
        threads: usize,
        max_running: usize,
        launch_notice_delay: Duration,
        context: LauncherContext,
        queue: Arc<CompletionQueue>,
    ) -> io::Result<Arc<Self>> {
        let epoll = sys::epoll_create()?;
        let work = sys::eventfd()?;
        sys::epoll_watch(epoll.as_fd(), work.as_fd(), WORK_TOKEN)?;
        let pool = Arc::new(Self {
            epoll,
            work,
            stop: AtomicBool::new(false),
            cancels: AtomicUsize::new(0),
            state: Mutex::new(PoolState::default()),
            max_running,
            launch_notice_delay,
            context,
            queue,
        });
        for n in 0..threads {
            let thread_pool = pool.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("titan-proc-{n}"))
                .spawn(move || thread_pool.run());
            if let Err(error) = spawned {
                // Threads already started must not outlive the failed start.
                pool.stop();
                return Err(error);
            }
        }
        Ok(pool)
    }

    /// Queues a launch. Called on the executor: the lock is never held across a system call.
    pub fn submit(&self, request: LaunchRequest) {
        self.lock().pending.push_back(request);
        self.signal_work();
    }

    /// Takes back a request no process thread has taken yet: it completes as cancelled, never
    /// started. False when a thread took it (its process started, or is starting).
    pub fn withdraw(&self, token: u64) -> bool {
        let withdrawn = self.lock().withdraw(token);
        if withdrawn {
            let cancelled = Completion::Launched {
                token,
                result: Err(NotLaunched::Cancelled),
            };
            let _ = self.queue.push(vec![cancelled]);
        }
        withdrawn
    }

    /// A job was cancelled; if its request is still queued, it completes at once.
    pub fn on_cancel(&self) {
        self.cancels.fetch_add(1, Ordering::AcqRel);
        self.signal_work();
    }

    /// Re-enables the one-shot watch of a pidfd that fired before its process could be reaped.
    pub fn rearm(&self, pidfd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        sys::epoll_watch_once(self.epoll.as_fd(), pidfd, token | REARM_BIT, true)
    }

    /// Ends the threads after their current launch; queued requests are dropped.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        // Never drained once `stop` is set, so every thread wakes and sees the flag.
        self.signal_work();
    }

    fn signal_work(&self) {
        // Fails only if the counter would overflow, and then it is readable anyway.
        let _ = sys::eventfd_signal(self.work.as_fd());
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state stays consistent under every panic point (plain pushes and counters).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) {
        if self.context.affinity == ChildAffinity::AllCpus {
            if let Err(error) = sys::allow_all_cpus() {
                tracing::warn!(%error, "cannot widen CPU affinity; jobs inherit the executor's");
            }
        }
        if self.context.job_nice != 0 {
            // A process starts with the niceness of the thread that forked it, so renicing this
            // thread once gives every job its niceness from its first instruction.
            // SAFETY: setpriority reads its integer arguments only; who = 0 is this thread.
            let set = unsafe {
                nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, self.context.job_nice)
            };
            if set != 0 {
                tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower the priority of jobs");
            }
        }
        let delay = self.launch_notice_delay;
        let mut tokens = Vec::new();
        loop {
            // Wake up in time to ring for launch notices nobody has rung for yet.
            let timeout = self
                .queue
                .quiet_since()
                .map(|since| (since + delay).saturating_duration_since(Instant::now()));
            if let Err(error) = sys::epoll_wait(self.epoll.as_fd(), &mut tokens, timeout) {
                // Only EBADF/EINVAL are possible, both programming errors.
                tracing::error!(%error, "process thread: epoll_wait failed, thread exits");
                return;
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let exits = self.on_events(&tokens);
            // Fork the next queued job before ringing for the exits: the executor, once woken,
            // competes for the CPU, and a freed slot should be refilled first.
            let more = self.start_one();
            // Exits own nothing: if the engine is gone they are simply dropped.
            let _ = self.queue.push(exits);
            if more {
                while self.start_one() {}
            }
            self.queue.ring_if_due(Instant::now(), delay);
        }
    }

    /// Exits free their slots and are returned for the executor; the work eventfd is reset.
    fn on_events(&self, tokens: &[u64]) -> Vec<Completion> {
        let (at, wall) = (Instant::now(), SystemTime::now());
        let mut exits = Vec::new();
        let mut freed = 0;
        for &token in tokens {
            if token == WORK_TOKEN {
                sys::eventfd_drain(self.work.as_fd());
                continue;
            }
            if token & REARM_BIT == 0 {
                freed += 1;
            }
            exits.push(Completion::Exited {
                token: token & !REARM_BIT,
                at,
                wall,
            });
        }
        if freed > 0 {
            let mut state = self.lock();
            state.running = state.running.saturating_sub(freed);
        }
        exits
    }

    /// Completes cancelled queued requests and starts the next queued job if a slot is free;
    /// when yet more could start, the work eventfd wakes a sibling to fork in parallel. Returns
    /// whether it did anything (so the caller loops until there is nothing left to do).
    fn start_one(&self) -> bool {
        let (swept, next) = {
            let mut state = self.lock();
            let swept = match self.cancels.swap(0, Ordering::AcqRel) {
                0 => Vec::new(),
                _ => {
                    // A cancelled job may be started already, its launch notice still waiting
                    // for a ring: ring now, so that the executor can kill it.
                    self.queue.ring_if_due(Instant::now(), Duration::ZERO);
                    state.sweep_cancelled()
                }
            };
            let next = state.take_startable(self.max_running);
            if next.is_some() && state.has_startable(self.max_running) {
                self.signal_work();
            }
            (swept, next)
        };
        let swept_any = !swept.is_empty();
        let _ = self.queue.push(swept);
        let Some(request) = next else {
            return swept_any;
        };
        if self.stop.load(Ordering::Acquire) {
            return false;
        }
        let token = request.token;
        let result = launch(&self.context, self.epoll.as_fd(), request);
        if result.is_err() {
            let mut state = self.lock();
            state.running = state.running.saturating_sub(1);
        }
        self.hand_over(Completion::Launched { token, result });
        true
    }

    /// Queues a launch notice, quietly unless the delay is zero; if the engine is gone, ends
    /// the process here instead.
    fn hand_over(&self, completion: Completion) {
        let items = vec![completion];
        let queued = match self.launch_notice_delay.is_zero() {
            true => self.queue.push(items),
            false => self.queue.push_quiet(items, Instant::now()),
        };
        if let Err(items) = queued {
            for item in items {
                if let Completion::Launched {
                    result: Ok(spawned),
                    ..
                } = item
                {
                    kill_and_reap(spawned.child);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::resolve::Program;
    use crate::exec::spec::OutputMode;

    fn request(token: u64) -> LaunchRequest {
        LaunchRequest {
            token,
            job_id: format!("j{token}"),
            job_dir: "/nonexistent".into(),
            program: Program::trusted("/bin/true", Vec::new()),
            env: Vec::new(),
            output: OutputMode::Files,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    #[test]
    fn slots_limit_what_starts_and_cancelled_requests_leave_first() {
        let mut state = PoolState::default();
        for token in 1..=4 {
            state.pending.push_back(request(token));
        }
        assert_eq!(state.take_startable(2).map(|r| r.token), Some(1));
        assert!(state.has_startable(2));
        assert_eq!(state.take_startable(2).map(|r| r.token), Some(2));
        assert!(state.take_startable(2).is_none(), "two running, limit two");
        assert!(!state.has_startable(2));

        state.pending[1].cancelled.store(true, Ordering::Release);
        let swept = state.sweep_cancelled();
        assert!(matches!(
            swept.as_slice(),
            [Completion::Launched {
                token: 4,
                result: Err(NotLaunched::Cancelled)
            }]
        ));
        state.running -= 1;
        assert_eq!(state.take_startable(2).map(|r| r.token), Some(3));
        assert!(state.pending.is_empty());
    }

    #[test]
    fn only_requests_no_thread_took_can_be_withdrawn() {
        let mut state = PoolState::default();
        for token in 1..=3 {
            state.pending.push_back(request(token));
        }
        assert_eq!(state.take_startable(1).map(|r| r.token), Some(1));
        assert!(!state.withdraw(1), "taken: its process is starting");
        assert!(state.withdraw(3));
        assert!(!state.withdraw(3), "once");
        state.running -= 1;
        assert_eq!(state.take_startable(1).map(|r| r.token), Some(2));
        assert!(state.take_startable(1).is_none() && state.pending.is_empty());
    }
}
