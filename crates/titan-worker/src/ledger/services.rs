//! How services come up: a deploy whose port another process holds waits for it (polled until
//! the grace ends, then refused), and a service with a port is probed until it accepts a
//! connection (then it is ready, and said so) or its deadline passes (then it is killed, and
//! its deploy fails saying why).

use std::time::{Duration, Instant};

use tracing::warn;

use super::{Activity, Attempt, Comm, Entry, Ledger, OutputLines, Report, Watching};
use crate::exec::{PortProbe, ProbeNext};
use titan_core::Outcome;

/// How long a service with a port may take to accept connections before its deploy fails.
pub const SERVICE_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a service's port may stay taken before its deploy is refused: it may be a previous
/// run of this very service still dying (a redeploy after its worker died races the sentinel's
/// kill). The refusal is `Rejected`, which the master does not retry.
pub const PORT_FREE_GRACE: Duration = Duration::from_secs(1);

/// How often a taken port is checked during [`PORT_FREE_GRACE`].
pub const PORT_FREE_POLL: Duration = Duration::from_millis(25);

/// Where a launched service stands.
pub(super) enum Readiness {
    /// Launched, not started yet.
    Starting {
        port: Option<u16>,
    },
    Probing(PortProbe),
    Ready,
    /// Killed for not opening its port.
    Failed,
}

impl<P, L> Ledger<P, L> {
    /// `attempt` is a service whose `port` another process holds: it waits for the port, and
    /// `launch` is handed back through [`Comm::launch`] once the port is free.
    pub fn on_port_busy(
        &mut self,
        now: Instant,
        attempt: Attempt,
        port: u16,
        launch: L,
        comm: &mut impl Comm<P, L>,
    ) {
        self.track(now, attempt, Activity::AwaitingPort { port, launch });
        self.arm(attempt.job, now + PORT_FREE_POLL, comm);
    }

    /// A connection to a starting service's port was accepted (`Ok`) or failed.
    pub fn on_probe(
        &mut self,
        now: Instant,
        attempt: Attempt,
        result: Result<(), String>,
        comm: &mut impl Comm<P, L>,
    ) {
        let Some(launched) = self.launched_mut(attempt) else {
            return;
        };
        let Watching::Service(Readiness::Probing(probe)) = &mut launched.watch else {
            return;
        };
        match result {
            Ok(()) => self.on_ready(attempt, comm),
            Err(error) => {
                let next = probe.on_refused(now, error);
                self.after_refusal(attempt, next, comm);
            }
        }
    }

    /// The poll of a taken port is due: launch once it is free, refuse once the grace ends.
    pub(super) fn on_port_poll(
        &mut self,
        now: Instant,
        attempt: Attempt,
        port: u16,
        waited: Duration,
        comm: &mut impl Comm<P, L>,
    ) {
        let job = attempt.job;
        if !comm.port_in_use(port) {
            if let Some(Entry {
                activity: Activity::AwaitingPort { launch, .. },
                ..
            }) = self.remove(job)
            {
                comm.launch(attempt, launch);
            }
        } else if waited >= PORT_FREE_GRACE {
            warn!(%job, port, "service port already in use; refusing the deploy");
            self.remove(job);
            let message = format!("port {port} is already in use by another process");
            let refused = Outcome::Rejected {
                message: message.into(),
            };
            self.finish(now, attempt, refused, waited, OutputLines::default(), comm);
        } else {
            self.arm(job, now + PORT_FREE_POLL, comm);
        }
    }

    /// A service has started: one without a port is ready now, one with a port is probed.
    pub(super) fn begin_readiness(
        &mut self,
        now: Instant,
        attempt: Attempt,
        comm: &mut impl Comm<P, L>,
    ) {
        let Some(launched) = self.launched_mut(attempt) else {
            return;
        };
        match launched.watch {
            Watching::Service(Readiness::Starting { port: None }) => self.on_ready(attempt, comm),
            Watching::Service(Readiness::Starting { port: Some(port) }) => {
                let deadline = now + SERVICE_READY_TIMEOUT;
                let probe = PortProbe::new(port, now, deadline);
                launched.watch = Watching::Service(Readiness::Probing(probe));
                comm.probe(attempt, port, deadline);
            }
            _ => {}
        }
    }

    /// The next probe of a starting service is due (or its deadline passed).
    pub(super) fn on_probe_due(
        &mut self,
        now: Instant,
        attempt: Attempt,
        comm: &mut impl Comm<P, L>,
    ) {
        let Some(launched) = self.launched_mut(attempt) else {
            return;
        };
        let Watching::Service(Readiness::Probing(probe)) = &mut launched.watch else {
            return;
        };
        if now >= probe.deadline() {
            let next = probe.on_late(now);
            self.after_refusal(attempt, next, comm);
        } else {
            comm.probe(attempt, probe.port(), probe.deadline());
        }
    }

    /// A probe of a starting service failed: try again later, or kill it and say why.
    fn after_refusal(&mut self, attempt: Attempt, next: ProbeNext, comm: &mut impl Comm<P, L>) {
        match next {
            ProbeNext::RetryAt(at) => self.arm(attempt.job, at, comm),
            ProbeNext::GiveUp(not_ready) => {
                let Some(launched) = self.launched_mut(attempt) else {
                    return;
                };
                warn!(job = %attempt.job, port = not_ready.port, error = %not_ready, "service never opened its port; killing it");
                launched.watch = Watching::Service(Readiness::Failed);
                let message = format!("deploy failed: {not_ready}").into();
                launched.verdict = Some(Outcome::Error { message });
                comm.cancel(&launched.handle);
            }
        }
    }

    fn on_ready(&mut self, attempt: Attempt, comm: &mut impl Comm<P, L>) {
        let linked = self.linked;
        if let Some(launched) = self.launched_mut(attempt) {
            launched.watch = Watching::Service(Readiness::Ready);
            if linked {
                comm.send(Report::Ready(attempt));
            }
        }
    }
}
