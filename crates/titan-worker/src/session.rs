//! One connection to the master at a time: authenticate, register, heartbeat, take jobs,
//! report — and when the connection is lost, reconnect with a doubling pause until the worker
//! is told to stop.
//!
//! The handshake proves the worker key and checks that the master holds it too: a process
//! that took the master's port without the key gets no registration and sends no job
//! anything (the `Register` frame is held back until the master has proved itself).
//!
//! Each frame from the master is decoded once into a [`MasterCommand`] and applied by
//! [`Session::apply`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::net::TcpStream;
use tracing::{info, warn};

use super::jobs::Jobs;
use super::peers::Tickets;
use super::{Readiness, WorkerConfig};
use titan_auth::Nonce;
use titan_core::WorkerId;
use titan_proto::conn::{ConnConfig, Gate};
use titan_proto::decode::{self, MasterCommand};
use titan_proto::message::worker::{Heartbeat, Register, RunJob};
use titan_proto::{encode_frame, ConnError, OpCode, ProtoError};
use titan_runtime::conn::{Connection, ReadEnd};
use titan_runtime::outbox::Outbox;
use titan_runtime::shutdown::Shutdown;

/// How long connecting to the master may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Shortest heartbeat interval, whatever the master asks.
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("connection lost: {0}")]
    Io(std::io::Error),
    #[error("the master closed the connection")]
    Closed,
    #[error("the master refused: {0}")]
    Refused(String),
    #[error("cannot authenticate with the master: {0}")]
    Auth(ConnError),
    #[error("no random nonce for the handshake: {0}")]
    Random(titan_auth::AuthError),
    #[error("bad frame from the master: {0}")]
    Protocol(#[from] ConnError),
    #[error("stopping")]
    Stopped,
}

impl From<ProtoError> for SessionEnd {
    fn from(e: ProtoError) -> SessionEnd {
        SessionEnd::Protocol(e.into())
    }
}

impl From<ReadEnd> for SessionEnd {
    fn from(end: ReadEnd) -> SessionEnd {
        match end {
            ReadEnd::PeerClosed | ReadEnd::Closed => SessionEnd::Closed,
            ReadEnd::Shutdown => SessionEnd::Stopped,
            ReadEnd::Conn(e) if is_handshake(&e) => SessionEnd::Auth(e),
            ReadEnd::Conn(e) => SessionEnd::Protocol(e),
            ReadEnd::Io(e) => SessionEnd::Io(e),
        }
    }
}

/// Whether a connection failed in its handshake (rather than on a later frame).
fn is_handshake(e: &ConnError) -> bool {
    matches!(
        e,
        ConnError::ServerUnproven { .. }
            | ConnError::Refused { .. }
            | ConnError::UnknownScheme { .. }
            | ConnError::UnexpectedHandshake { .. }
            | ConnError::HandshakeTimeout { .. }
    )
}

/// What a session hands its master's news to: the job table and the port's ticket check.
#[derive(Clone, Copy)]
pub struct Link<'a> {
    pub jobs: &'a Rc<Jobs>,
    pub tickets: &'a Rc<Tickets>,
}

/// Keeps a session with the master until `shutdown`.
pub async fn keep_connected(
    config: &WorkerConfig,
    bound: SocketAddr,
    link: Link<'_>,
    shutdown: &Shutdown,
    mut ready: Readiness,
) {
    let mut pause = config.reconnect_min;
    while !shutdown.is_triggered() {
        let mut registered = false;
        let end = session(config, bound, link, shutdown, &mut registered, &mut ready).await;
        if matches!(end, SessionEnd::Stopped) || shutdown.is_triggered() {
            return;
        }
        if registered {
            pause = config.reconnect_min;
            warn!(reason = %end, "lost the master; reconnecting");
        } else {
            warn!(reason = %end, master = %config.master, retry_in = ?pause, "cannot reach the master");
        }
        future::or(glommio::timer::sleep(pause), shutdown.wait()).await;
        pause = (pause * 2).min(config.reconnect_max);
    }
}

async fn session(
    config: &WorkerConfig,
    bound: SocketAddr,
    link: Link<'_>,
    shutdown: &Shutdown,
    registered: &mut bool,
    ready: &mut Readiness,
) -> SessionEnd {
    let jobs = link.jobs;
    let addr = match config.master.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => addr,
        _ => return SessionEnd::Resolve(config.master.clone()),
    };
    let stream = match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).await {
        Ok(s) => s,
        Err(e) => return SessionEnd::Connect(e.into()),
    };
    let _ = stream.set_nodelay(true);
    let nonce = match Nonce::random() {
        Ok(nonce) => nonce,
        Err(e) => return SessionEnd::Random(e),
    };
    let gate = Gate::client(config.credential.clone(), nonce, Instant::now());
    let mut conn = Connection::with_gate(stream, &ConnConfig::client(), shutdown.clone(), gate);
    let register = Register {
        port: bound.port(),
        capacity: config.capacity,
        skills: jobs.skills(),
        pid: std::process::id(),
        parent: config.parent.map(WorkerId),
        ephemeral: config.ephemeral,
        spawn_ticket: config.spawn_ticket,
        running: jobs.running_attempts(),
        instance: jobs.instance(),
    };
    // Held back by the gate until the master has proved that it holds the worker key.
    conn.outbox().push(|out| {
        // A registration is a few hundred bytes; it always fits in a frame.
        let _ = encode_frame(out, OpCode::Register, &register);
    });
    let mut session = Session {
        config,
        jobs,
        tickets: link.tickets,
        shutdown,
        outbox: conn.outbox().clone(),
        master: addr,
        bound,
        registered,
        ready,
        heartbeat: None,
    };
    let end = serve_master(&mut conn, &mut session).await;
    if let Some(task) = session.heartbeat.take() {
        task.cancel();
    }
    jobs.unlink();
    conn.finish().await;
    end
}

async fn serve_master(conn: &mut Connection, session: &mut Session<'_>) -> SessionEnd {
    loop {
        if let Err(end) = conn.fill().await {
            return end.into();
        }
        loop {
            let applied = match conn.next_frame() {
                Ok(None) => break,
                Ok(Some(frame)) => MasterCommand::decode(frame)
                    .map_err(SessionEnd::from)
                    .and_then(|command| session.apply(command)),
                Err(e) => Err(ReadEnd::Conn(e).into()),
            };
            if let Err(end) = applied {
                return end;
            }
        }
    }
}

/// One session's state: what the commands of the master act on.
struct Session<'a> {
    config: &'a WorkerConfig,
    jobs: &'a Rc<Jobs>,
    tickets: &'a Tickets,
    shutdown: &'a Shutdown,
    outbox: Rc<Outbox>,
    /// The master's address, and the one this worker listens on.
    master: SocketAddr,
    bound: SocketAddr,
    registered: &'a mut bool,
    ready: &'a mut Readiness,
    heartbeat: Option<glommio::task::JoinHandle<()>>,
}

impl Session<'_> {
    /// Applies one command; an error ends the session.
    fn apply(&mut self, command: MasterCommand<'_>) -> Result<(), SessionEnd> {
        match command {
            MasterCommand::Registered {
                worker,
                heartbeat,
                log_port,
                log_key,
                ticket_key,
            } => {
                self.tickets.set(worker.0, &ticket_key.0);
                self.on_registered(worker, heartbeat, log_port, &log_key.0)?
            }
            MasterCommand::Run(run) => {
                // The one copy of the attempt: the label and spec the job table keeps.
                let run: RunJob = decode::owned(OpCode::Run, run)?;
                self.jobs.start(run);
            }
            MasterCommand::KillJob { job, attempt, .. } => self.jobs.kill(job.0, attempt),
            MasterCommand::SpawnChild { ticket } => self.jobs.spawn_child_worker(ticket),
            MasterCommand::Retire { reason } => {
                let reason = reason.unwrap_or("(reason unreadable)");
                info!(%reason, "retired by the master; stopping");
                self.shutdown.trigger();
                return Err(SessionEnd::Stopped);
            }
            MasterCommand::Refused { message, .. } => {
                let message = message.unwrap_or("(message unreadable)");
                return Err(SessionEnd::Refused(message.to_string()));
            }
        }
        Ok(())
    }

    fn on_registered(
        &mut self,
        worker: WorkerId,
        heartbeat: Duration,
        log_port: u16,
        log_key: &titan_auth::KeyBytes,
    ) -> Result<(), ProtoError> {
        if *self.registered {
            return Err(ProtoError::UnexpectedFrame {
                opcode: OpCode::Ack,
                reason: "this worker registered already",
            });
        }
        *self.registered = true;
        let log_addr = (log_port != 0).then(|| SocketAddr::new(self.master.ip(), log_port));
        self.jobs
            .link(self.outbox.clone(), worker.0, log_addr, log_key);
        let beats = heartbeats(
            self.outbox.clone(),
            self.jobs.clone(),
            heartbeat.max(MIN_HEARTBEAT),
        );
        self.heartbeat = Some(glommio::spawn_local(beats).detach());
        let worker = worker.0;
        info!(worker, master = %self.config.master, "registered");
        self.ready.registered(self.bound, worker);
        Ok(())
    }
}

async fn heartbeats(outbox: Rc<Outbox>, jobs: Rc<Jobs>, interval: Duration) {
    loop {
        glommio::timer::sleep(interval).await;
        if outbox.is_closing() {
            return;
        }
        let beat = Heartbeat {
            running: jobs.running() as u32,
        };
        outbox.push(|out| {
            let _ = encode_frame(out, OpCode::Heartbeat, &beat);
        });
    }
}
