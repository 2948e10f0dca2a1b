//! Port checks for services: [`wait_port_ready`] (does a freshly started service accept
//! connections yet?) and [`port_in_use`] (may a service be started on this port at all?). The
//! schedule of the first, [`PortProbe`], is pure, so the worker's core can run it on its timers.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// The pause after the first refused connection; it doubles up to [`PORT_PROBE_MAX_INTERVAL`].
pub const PORT_PROBE_FIRST_INTERVAL: Duration = Duration::from_millis(5);
/// The longest pause between two connection attempts.
pub const PORT_PROBE_MAX_INTERVAL: Duration = Duration::from_millis(100);

/// The port did not accept a connection before the deadline.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("port {port} did not accept a connection within {waited:?} ({attempts} attempts; last: {last_error})")]
pub struct PortNotReady {
    pub port: u16,
    pub waited: Duration,
    pub attempts: u32,
    pub last_error: String,
}

/// What to do after a connection attempt was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeNext {
    /// Try again at this instant.
    RetryAt(Instant),
    /// The deadline has passed: the port is not ready.
    GiveUp(PortNotReady),
}

/// The schedule of a readiness probe, with no IO: how often to try a port, when to give up, and
/// what to say then. [`wait_port_ready`] drives it with real connections; the worker's core
/// drives it from its timers.
#[derive(Clone, Debug)]
pub struct PortProbe {
    port: u16,
    began: Instant,
    deadline: Instant,
    /// The pause after the next refusal.
    pause: Duration,
    attempts: u32,
}

impl PortProbe {
    pub fn new(port: u16, began: Instant, deadline: Instant) -> PortProbe {
        PortProbe {
            port,
            began,
            deadline,
            pause: PORT_PROBE_FIRST_INTERVAL,
            attempts: 0,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// When the probe gives up.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// A connection attempt made at or before `now` failed with `error`.
    pub fn on_refused(&mut self, now: Instant, error: String) -> ProbeNext {
        self.attempts += 1;
        let left = self.deadline.saturating_duration_since(now);
        if left.is_zero() {
            return ProbeNext::GiveUp(PortNotReady {
                port: self.port,
                waited: now.saturating_duration_since(self.began),
                attempts: self.attempts,
                last_error: error,
            });
        }
        let at = now + self.pause.min(left);
        self.pause = (self.pause * 2).min(PORT_PROBE_MAX_INTERVAL);
        ProbeNext::RetryAt(at)
    }

    /// An attempt due at `now`, when the deadline has already passed: it fails without a
    /// connection being tried.
    pub fn on_late(&mut self, now: Instant) -> ProbeNext {
        self.on_refused(now, io::ErrorKind::TimedOut.to_string())
    }
}

/// Connects to `127.0.0.1:port` until a connection is accepted (then closes it) or `deadline`
/// passes. Returns how long it took. Runs on the glommio executor; the pauses between attempts
/// are timers, never sleeps. To give up early when the service dies, race this with
/// [`Job::outcome`](super::Job::outcome).
pub async fn wait_port_ready(port: u16, deadline: Instant) -> Result<Duration, PortNotReady> {
    let began = Instant::now();
    let mut probe = PortProbe::new(port, began, deadline);
    loop {
        let now = Instant::now();
        let next = match deadline.checked_duration_since(now) {
            Some(left) if !left.is_zero() => match connect_once(port, left).await {
                Ok(()) => return Ok(began.elapsed()),
                Err(error) => probe.on_refused(Instant::now(), error.to_string()),
            },
            _ => probe.on_late(now),
        };
        match next {
            ProbeNext::RetryAt(at) => {
                glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await
            }
            ProbeNext::GiveUp(not_ready) => return Err(not_ready),
        }
    }
}

/// One attempt to connect to `127.0.0.1:port`, waiting at most `timeout`; the connection is
/// closed at once.
pub async fn connect_once(port: u16, timeout: Duration) -> io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    glommio::net::TcpStream::connect_timeout(addr, timeout)
        .await
        .map(drop)
        .map_err(io::Error::from)
}

/// Whether something already holds `port` on this host: tries to bind `0.0.0.0:port` (which
/// conflicts with a listener on any local address) and releases it at once. `Ok(false)` means
/// the port was free at that instant. Errors other than "address in use" (e.g. `EACCES` for a
/// privileged port) are returned as they are. A non-blocking system call: safe on the executor.
pub fn port_in_use(port: u16) -> io::Result<bool> {
    match TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)) {
        Ok(listener) => {
            drop(listener);
            Ok(false)
        }
        Err(error) if error.kind() == io::ErrorKind::AddrInUse => Ok(true),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn refusals_back_off_by_doubling_up_to_the_cap() {
        let t0 = Instant::now();
        let mut probe = PortProbe::new(9, t0, t0 + Duration::from_secs(10));
        let mut now = t0;
        let mut pauses = Vec::new();
        for _ in 0..7 {
            match probe.on_refused(now, "refused".into()) {
                ProbeNext::RetryAt(at) => {
                    pauses.push(at - now);
                    now = at;
                }
                ProbeNext::GiveUp(e) => panic!("gave up early: {e}"),
            }
        }
        assert_eq!(pauses, [5, 10, 20, 40, 80, 100, 100].map(ms));
    }

    #[test]
    fn the_last_pause_stops_at_the_deadline_and_then_it_gives_up() {
        let t0 = Instant::now();
        let mut probe = PortProbe::new(7, t0, t0 + ms(8));
        assert_eq!(
            probe.on_refused(t0, "a".into()),
            ProbeNext::RetryAt(t0 + ms(5))
        );
        assert_eq!(
            probe.on_refused(t0 + ms(5), "b".into()),
            ProbeNext::RetryAt(t0 + ms(8))
        );
        let ProbeNext::GiveUp(e) = probe.on_late(t0 + ms(8)) else {
            panic!("a probe past its deadline must give up");
        };
        assert_eq!((e.port, e.waited, e.attempts), (7, ms(8), 3));
        assert_eq!(e.last_error, "timed out");
    }
}
