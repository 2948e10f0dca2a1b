//! Port checks for services: [`wait_port_ready`] (does a freshly started service accept
//! connections yet?) and [`port_in_use`] (may a service be started on this port at all?).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// The pause after the first refused connection; it doubles up to [`PORT_PROBE_MAX_INTERVAL`].
pub const PORT_PROBE_FIRST_INTERVAL: Duration = Duration::from_millis(5);
/// The longest pause between two connection attempts.
pub const PORT_PROBE_MAX_INTERVAL: Duration = Duration::from_millis(100);

/// The port did not accept a connection before the deadline.
#[derive(Clone, Debug, thiserror::Error)]
#[error("port {port} did not accept a connection within {waited:?} ({attempts} attempts; last: {last_error})")]
pub struct PortNotReady {
    pub port: u16,
    pub waited: Duration,
    pub attempts: u32,
    pub last_error: String,
}

/// Connects to `127.0.0.1:port` until a connection is accepted (then closes it) or `deadline`
/// passes. Returns how long it took. Runs on the glommio executor; the pauses between attempts
/// are timers, never sleeps. To give up early when the service dies, race this with
/// [`Job::outcome`](super::Job::outcome).
pub async fn wait_port_ready(port: u16, deadline: Instant) -> Result<Duration, PortNotReady> {
    let began = Instant::now();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut pause = PORT_PROBE_FIRST_INTERVAL;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = if left.is_zero() {
            Err(io::Error::from(io::ErrorKind::TimedOut))
        } else {
            glommio::net::TcpStream::connect_timeout(addr, left)
                .await
                .map_err(io::Error::from)
        };
        let last_error = match attempt {
            Ok(stream) => {
                drop(stream);
                return Ok(began.elapsed());
            }
            Err(error) => error.to_string(),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(PortNotReady {
                port,
                waited: began.elapsed(),
                attempts,
                last_error,
            });
        }
        glommio::timer::sleep(pause.min(left)).await;
        pause = (pause * 2).min(PORT_PROBE_MAX_INTERVAL);
    }
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
