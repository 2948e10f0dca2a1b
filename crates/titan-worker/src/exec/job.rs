//! One job on the executor: its shared cell ([`JobCell`]), the caller's handle ([`Job`]) and
//! the supervisor task that turns events (launched, exited, cancel, deadline) into an
//! [`Outcome`]: SIGTERM then SIGKILL for cancels and timeouts, leftovers killed, the zombie
//! reaped.
//!
//! Everything here runs on the executor thread and never blocks: signals and a `waitpid` on a
//! process known to have exited are single non-blocking system calls.

use super::completion::{Captured, NotLaunched, Spawned};
use super::launcher::{signal_group, signal_leftovers};
use super::outcome::{Outcome, Termination, WaitStatus};
use super::pool::ProcessPool;
use super::spec::Leftovers;
use futures_lite::future;
use nix::sys::signal::Signal;
use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

/// A one-waiter wake-up flag for the supervisor: `fire` sets it, `wait` consumes it.
#[derive(Default)]
struct Wakeup {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Wakeup {
    fn fire(&self) {
        self.fired.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    async fn wait(&self) {
        future::poll_fn(|cx| {
            if self.fired.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Waits for a wake-up or the deadline, whichever comes first.
    async fn wait_until(&self, deadline: Option<Instant>) {
        match deadline {
            None => self.wait().await,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                future::or(self.wait(), glommio::timer::sleep(left)).await
            }
        }
    }
}

/// A started process, as the caller sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    /// The process id, which is also the id of the job's process group.
    pub pid: u32,
    pub started_at: SystemTime,
}

/// The read ends of a job's stdout and stderr in [`OutputMode::Capture`](super::OutputMode).
/// Each reaches EOF when every process of the job has closed it.
pub struct CapturedOutput {
    pub stdout: glommio::net::UnixStream,
    pub stderr: glommio::net::UnixStream,
    /// Why the engine could not create `stdout.log` / `stderr.log` before the start, if it
    /// could not (the job ran anyway).
    pub file_errors: [Option<Arc<std::io::Error>>; 2],
}

/// Per-job limits the supervisor enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobLimits {
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
    pub leftovers: Leftovers,
}

/// The state one job shares between the dispatch task (events in), the supervisor and the
/// caller's [`Job`] handles.
pub(crate) struct JobCell {
    pub token: u64,
    job_id: String,
    /// Shared with the launcher thread, which skips a request cancelled before it starts.
    pub cancel_flag: Arc<AtomicBool>,
    cancel_requested: Cell<bool>,
    /// Inbox: the launcher's result, taken by the supervisor.
    launched: RefCell<Option<Result<Spawned, NotLaunched>>>,
    /// Inbox: when a process thread saw the process exit.
    exited: Cell<Option<(Instant, SystemTime)>>,
    wakeup: Wakeup,
    /// Owned while the process runs; taken by the supervisor to reap it, or at engine teardown.
    child: RefCell<Option<Child>>,
    pidfd: RefCell<Option<OwnedFd>>,
    output: RefCell<Option<Captured>>,
    started: Cell<Option<Started>>,
    outcome: RefCell<Option<Outcome>>,
    /// Callers waiting in `started()` or `outcome()`.
    waiters: RefCell<Vec<Waker>>,
}

impl JobCell {
    pub fn new(token: u64, job_id: String) -> Self {
        Self {
            token,
            job_id,
            cancel_flag: Arc::new(AtomicBool::new(false)),
            cancel_requested: Cell::new(false),
            launched: RefCell::new(None),
            exited: Cell::new(None),
            wakeup: Wakeup::default(),
            child: RefCell::new(None),
            pidfd: RefCell::new(None),
            output: RefCell::new(None),
            started: Cell::new(None),
            outcome: RefCell::new(None),
            waiters: RefCell::new(Vec::new()),
        }
    }

    /// Event from the dispatch task: the launcher is done with this job.
    pub fn on_launched(&self, result: Result<Spawned, NotLaunched>) {
        *self.launched.borrow_mut() = Some(result);
        self.wakeup.fire();
    }

    /// Event from the dispatch task: the process has exited (it is a zombie until reaped).
    pub fn on_exited(&self, at: Instant, wall: SystemTime) {
        self.exited.set(Some((at, wall)));
        self.wakeup.fire();
    }

    /// Takes whatever process this cell still owns (for teardown when the engine goes away).
    pub fn take_process(&self) -> Option<Child> {
        let pending = match self.launched.borrow_mut().take() {
            Some(Ok(spawned)) => Some(spawned.child),
            _ => None,
        };
        pending.or_else(|| self.child.borrow_mut().take())
    }

    fn install(&self, spawned: Spawned) -> Started {
        let started = Started {
            pid: spawned.pid,
            started_at: spawned.started_wall,
        };
        *self.child.borrow_mut() = Some(spawned.child);
        *self.pidfd.borrow_mut() = Some(spawned.pidfd);
        *self.output.borrow_mut() = spawned.output;
        self.started.set(Some(started));
        self.wake_waiters();
        started
    }

    fn publish(&self, outcome: Outcome) {
        *self.outcome.borrow_mut() = Some(outcome);
        self.wake_waiters();
    }

    fn wake_waiters(&self) {
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    fn register(&self, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
        }
    }
}

/// The caller's handle on a launched job. Cheap to clone; every clone sees the same job.
#[derive(Clone)]
pub struct Job {
    cell: Rc<JobCell>,
    pool: Arc<ProcessPool>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("job_id", &self.cell.job_id)
            .field("started", &self.cell.started.get())
            .field("finished", &self.cell.outcome.borrow().is_some())
            .finish()
    }
}

impl Job {
    pub(crate) fn new(cell: Rc<JobCell>, pool: Arc<ProcessPool>) -> Self {
        Self { cell, pool }
    }

    /// The id given in the [`JobSpec`](super::JobSpec).
    pub fn job_id(&self) -> &str {
        &self.cell.job_id
    }

    /// The process id once started (also the process-group id).
    pub fn pid(&self) -> Option<u32> {
        self.cell.started.get().map(|s| s.pid)
    }

    /// Waits until the process has started. `None` means it never will: it failed to start or
    /// was cancelled first, and [`outcome`](Self::outcome) says which.
    pub async fn started(&self) -> Option<Started> {
        future::poll_fn(|cx| {
            if let Some(started) = self.cell.started.get() {
                return Poll::Ready(Some(started));
            }
            if self.cell.outcome.borrow().is_some() {
                return Poll::Ready(None);
            }
            self.cell.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Waits for the job to end, however it ends.
    pub async fn outcome(&self) -> Outcome {
        future::poll_fn(|cx| {
            if let Some(outcome) = self.cell.outcome.borrow().as_ref() {
                return Poll::Ready(outcome.clone());
            }
            self.cell.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Whether the job's process is known to have exited (its outcome may still be on the way).
    pub fn has_exited(&self) -> bool {
        self.cell.exited.get().is_some() || self.cell.outcome.borrow().is_some()
    }

    /// The outcome if the job has ended.
    pub fn try_outcome(&self) -> Option<Outcome> {
        self.cell.outcome.borrow().clone()
    }

    /// Takes the job back if its launch is still waiting for a slot: it then ends cancelled,
    /// never started, and true is returned. False when its process started or is starting, or
    /// when it was already cancelled (the cancel completes it).
    pub fn withdraw(&self) -> bool {
        if self.cell.started.get().is_some() || self.cell.cancel_requested.get() {
            return false;
        }
        let withdrawn = self.pool.withdraw(self.cell.token);
        if withdrawn {
            self.cell.cancel_requested.set(true);
        }
        withdrawn
    }

    /// Cancels the job: a queued launch is skipped; a running process group gets SIGTERM, then
    /// SIGKILL after the grace period. The outcome is `Cancelled` unless the job had already
    /// ended. Idempotent; returns at once.
    pub fn cancel(&self) {
        if self.cell.cancel_requested.replace(true) {
            return;
        }
        self.cell.cancel_flag.store(true, Ordering::Release);
        if self.cell.started.get().is_none() {
            // Possibly still queued for a process thread: let the pool complete it at once.
            self.pool.on_cancel();
        }
        self.cell.wakeup.fire();
    }

    /// The stdout and stderr read ends in capture mode, once started; `None` otherwise or when
    /// already taken. Must be called on the engine's executor.
    pub fn take_output(&self) -> Option<CapturedOutput> {
        let captured = self.cell.output.borrow_mut().take()?;
        // SAFETY: each `into_raw_fd` gives up ownership of a connected stream socket, which the
        // glommio stream takes over and closes on drop.
        let (stdout, stderr) = unsafe {
            (
                glommio::net::UnixStream::from_raw_fd(captured.stdout.into_raw_fd()),
                glommio::net::UnixStream::from_raw_fd(captured.stderr.into_raw_fd()),
            )
        };
        Some(CapturedOutput {
            stdout,
            stderr,
            file_errors: captured.file_errors,
        })
    }
}

/// Why the supervisor ends a process that is still running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    Cancel,
    Timeout,
}

/// Drives one job from launch to outcome and publishes the outcome to the job's handles.
pub(crate) async fn supervise(cell: &JobCell, limits: JobLimits, pool: &ProcessPool) {
    let outcome = run_to_outcome(cell, limits, pool).await;
    cell.publish(outcome);
}

async fn run_to_outcome(cell: &JobCell, limits: JobLimits, pool: &ProcessPool) -> Outcome {
    let launched = loop {
        if let Some(result) = cell.launched.borrow_mut().take() {
            break result;
        }
        cell.wakeup.wait().await;
    };
    let spawned = match launched {
        Ok(spawned) => spawned,
        Err(NotLaunched::Cancelled) => {
            return never_started(Termination::Cancelled { escalated: false })
        }
        Err(NotLaunched::Failed(error)) => {
            return never_started(Termination::FailedToStart { error })
        }
    };
    let started_instant = spawned.started;
    let started = cell.install(spawned);
    let pid = started.pid;

    let deadline = limits.timeout.map(|t| started_instant + t);
    let reason = loop {
        if cell.exited.get().is_some() {
            break None;
        }
        if cell.cancel_requested.get() {
            break Some(StopReason::Cancel);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Some(StopReason::Timeout);
        }
        cell.wakeup.wait_until(deadline).await;
    };
    let escalated = match reason {
        Some(_) => terminate(cell, pid, limits.kill_grace).await,
        None => false,
    };
    // The leader is a zombie now, so its pid still names the group: clean up before reaping.
    if limits.leftovers == Leftovers::Kill {
        signal_leftovers(pid, Signal::SIGKILL);
    }
    let (status, ended_at) = reap(cell, pool).await;
    if let Some(sentinel) = pool.sentinel() {
        sentinel.untrack(pid);
    }
    cell.pidfd.borrow_mut().take();
    let (exit_instant, ended_wall) = ended_at;
    let wait_status = status.as_ref().ok().map(wait_status_of);
    let termination = match (reason, status) {
        (Some(StopReason::Cancel), _) => Termination::Cancelled { escalated },
        (Some(StopReason::Timeout), _) => Termination::TimedOut {
            timeout: limits.timeout.unwrap_or_default(),
            escalated,
        },
        (None, Ok(status)) => match wait_status_of(&status) {
            WaitStatus::Code(code) => Termination::Exited { code },
            WaitStatus::Signal(signal) => Termination::Signaled { signal },
        },
        (None, Err(error)) => Termination::StatusLost {
            error: Arc::new(error),
        },
    };
    Outcome {
        termination,
        wait_status,
        pid: Some(pid),
        started_at: Some(started.started_at),
        ended_at: ended_wall,
        duration: exit_instant.saturating_duration_since(started_instant),
    }
}

/// SIGTERM to the group, SIGKILL if the leader outlives the grace; returns once it has exited,
/// with whether SIGKILL was needed.
async fn terminate(cell: &JobCell, pid: u32, grace: Duration) -> bool {
    signal_group(pid, Signal::SIGTERM);
    let kill_at = Instant::now() + grace;
    while cell.exited.get().is_none() {
        if Instant::now() >= kill_at {
            signal_group(pid, Signal::SIGKILL);
            while cell.exited.get().is_none() {
                cell.wakeup.wait().await;
            }
            return true;
        }
        cell.wakeup.wait_until(Some(kill_at)).await;
    }
    false
}

/// Collects the exit status of a process a process thread reported exited. `waitpid` cannot block
/// here; should the status not be there yet, the pidfd is re-armed and the wait repeated.
async fn reap(
    cell: &JobCell,
    pool: &ProcessPool,
) -> (std::io::Result<ExitStatus>, (Instant, SystemTime)) {
    loop {
        let exited = cell
            .exited
            .get()
            .unwrap_or_else(|| (Instant::now(), SystemTime::now()));
        // The borrow ends with the statement: nothing is held across the await below.
        let polled = match cell.child.borrow_mut().take() {
            Some(mut child) => match child.try_wait() {
                Ok(None) => {
                    *cell.child.borrow_mut() = Some(child);
                    None
                }
                done => Some(done),
            },
            None => Some(Err(std::io::Error::other(
                "process taken by engine teardown",
            ))),
        };
        match polled {
            Some(Ok(Some(status))) => return (Ok(status), exited),
            Some(Err(error)) => return (Err(error), exited),
            Some(Ok(None)) | None => {}
        }
        cell.exited.set(None);
        let rearmed = match cell.pidfd.borrow().as_ref() {
            Some(pidfd) => pool.rearm(pidfd.as_fd(), cell.token),
            None => Err(std::io::Error::other("pidfd missing")),
        };
        if let Err(error) = rearmed {
            return (Err(error), exited);
        }
        while cell.exited.get().is_none() {
            cell.wakeup.wait().await;
        }
    }
}

fn wait_status_of(status: &ExitStatus) -> WaitStatus {
    match (status.code(), status.signal()) {
        (Some(code), _) => WaitStatus::Code(code),
        (None, Some(signal)) => WaitStatus::Signal(signal),
        // waitpid reports either an exit code or a terminating signal for an ended process.
        (None, None) => WaitStatus::Code(-1),
    }
}

fn never_started(termination: Termination) -> Outcome {
    Outcome {
        termination,
        wait_status: None,
        pid: None,
        started_at: None,
        ended_at: SystemTime::now(),
        duration: Duration::ZERO,
    }
}
