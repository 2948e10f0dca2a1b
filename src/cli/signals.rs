//! SIGINT and SIGTERM for the `titan` binary, and running a role (master or worker) until one
//! arrives: the roles themselves take a [`ShutdownHandle`] and report readiness as a value, so
//! that tests and other programs can embed them; printing and signals are this module's.
//!
//! The handler only records which signal arrived (an atomic store, async-signal-safe); a thread
//! polls for it. Signals are deliberately not blocked: a blocked mask survives `exec`, so every
//! job a worker started would inherit SIGINT and SIGTERM blocked and could never be stopped
//! gracefully (a Python job, which does not reset its mask the way shells do, would only die at
//! SIGKILL). Handlers, unlike masks, are reset to the default action by `exec`.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use tracing::info;

use titan_runtime::shutdown::ShutdownHandle;

/// How often a waiting thread looks for a recorded signal.
const SIGNAL_POLL: Duration = Duration::from_millis(10);

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

/// The signal recorded since the last call, if any (after [`install_handlers`]).
fn take_signal() -> Option<Signal> {
    match RECEIVED.swap(0, Ordering::SeqCst) {
        0 => None,
        signo => Signal::try_from(signo).ok(),
    }
}

/// Waits up to `timeout` for SIGINT or SIGTERM (after [`install_handlers`]).
pub fn wait_signal(timeout: Duration) -> Option<Signal> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(signal) = take_signal() {
            return Some(signal);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::sleep(left.min(SIGNAL_POLL));
    }
}

/// Runs `role` on a thread of its own until it returns, triggering its shutdown on SIGINT or
/// SIGTERM and passing each readiness it reports to `announce` (which prints the ready line).
pub fn run_role<R, E>(
    name: &str,
    role: impl FnOnce(ShutdownHandle, Sender<R>) -> Result<(), E> + Send + 'static,
    mut announce: impl FnMut(R),
) -> anyhow::Result<()>
where
    R: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    install_handlers().context("could not set up signal handling")?;
    let shutdown = ShutdownHandle::default();
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("titan-{name}"))
        .spawn({
            let shutdown = shutdown.clone();
            move || role(shutdown, ready_tx)
        })
        .with_context(|| format!("could not start the {name}'s thread"))?;
    // Not stopped at the first signal: a role still starting reports its readiness before it
    // stops, and the ready line is printed as it always was.
    let mut ready = Some(ready_rx);
    while !thread.is_finished() {
        match ready.as_ref().map(|rx| rx.recv_timeout(SIGNAL_POLL)) {
            Some(Ok(value)) => announce(value),
            Some(Err(RecvTimeoutError::Timeout)) => {}
            Some(Err(RecvTimeoutError::Disconnected)) => ready = None,
            None => std::thread::sleep(SIGNAL_POLL),
        }
        if let Some(signal) = take_signal() {
            info!(?signal, "signal received");
            shutdown.trigger();
        }
    }
    ready.iter().flat_map(|rx| rx.try_iter()).for_each(announce);
    match thread.join() {
        Ok(outcome) => Ok(outcome?),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
