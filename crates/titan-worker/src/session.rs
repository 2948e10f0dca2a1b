//! One connection to the master at a time: register, heartbeat, take jobs, report — and when
//! the connection is lost, reconnect with a doubling pause until the worker is told to stop.

use std::cell::RefCell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future;
use glommio::net::TcpStream;
use rkyv::rancor;
use tracing::{info, warn};

use super::jobs::Jobs;
use super::{Readiness, WorkerConfig};
use titan_proto::message::worker::{
    ArchivedKillJob, ArchivedRegistered, ArchivedRetire, ArchivedRunJob, ArchivedSpawnChild,
    Heartbeat, Register, RunJob,
};
use titan_proto::message::ArchivedErrorReply;
use titan_proto::{self as proto, encode_frame, Limits, OpCode, ProtoError, RecvBuf};
use titan_runtime::outbox::Outbox;
use titan_runtime::shutdown::Shutdown;
use titan_runtime::stream::{self, read_some, SharedStream};

/// How long connecting to the master may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The two addresses of a session: the master's, and the one this worker listens on.
#[derive(Clone, Copy, Debug)]
struct Ends {
    master: SocketAddr,
    bound: SocketAddr,
}

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
    #[error("bad frame from the master: {0}")]
    Protocol(#[from] ProtoError),
    #[error("stopping")]
    Stopped,
}

/// Keeps a session with the master until `shutdown`.
pub async fn keep_connected(
    config: &WorkerConfig,
    bound: SocketAddr,
    jobs: &Rc<Jobs>,
    shutdown: &Shutdown,
    mut ready: Readiness,
) {
    let mut pause = config.reconnect_min;
    while !shutdown.is_triggered() {
        let mut registered = false;
        let end = session(config, bound, jobs, shutdown, &mut registered, &mut ready).await;
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
    jobs: &Rc<Jobs>,
    shutdown: &Shutdown,
    registered: &mut bool,
    ready: &mut Readiness,
) -> SessionEnd {
    let addr = match config.master.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => addr,
        _ => return SessionEnd::Resolve(config.master.clone()),
    };
    let stream = match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).await {
        Ok(s) => s,
        Err(e) => return SessionEnd::Connect(e.into()),
    };
    let _ = stream.set_nodelay(true);
    let stream: SharedStream = Rc::new(RefCell::new(stream));
    let outbox = Outbox::new();
    let writer = glommio::spawn_local(stream::write_loop(stream.clone(), outbox.clone()));
    let register = Register {
        port: bound.port(),
        capacity: config.capacity,
        skills: config.skills.clone(),
        pid: std::process::id(),
        parent: config.parent,
        ephemeral: config.ephemeral,
        spawn_ticket: config.spawn_ticket,
        running: jobs.running_attempts(),
        instance: jobs.instance(),
    };
    outbox.push(|out| {
        // A registration is a few hundred bytes; it always fits in a frame.
        let _ = encode_frame(out, OpCode::Register, &register);
    });
    let ends = Ends {
        master: addr,
        bound,
    };
    let end = serve_master(
        &stream, &outbox, jobs, shutdown, ends, config, registered, ready,
    )
    .await;
    jobs.unlink();
    outbox.close();
    writer.await;
    let _ = stream::close(&stream).await;
    end
}

#[allow(clippy::too_many_arguments)]
async fn serve_master(
    stream: &SharedStream,
    outbox: &Rc<Outbox>,
    jobs: &Rc<Jobs>,
    shutdown: &Shutdown,
    ends: Ends,
    config: &WorkerConfig,
    registered: &mut bool,
    ready: &mut Readiness,
) -> SessionEnd {
    let Ends { master, bound } = ends;
    let mut recv = RecvBuf::new(Limits::default());
    let mut heartbeat: Option<glommio::task::JoinHandle<()>> = None;
    let end = loop {
        let read = {
            let spare = recv.spare_mut();
            future::or(async { Some(read_some(stream, spare).await) }, async {
                future::or(shutdown.wait(), outbox.closed.wait()).await;
                None
            })
            .await
        };
        let n = match read {
            None if shutdown.is_triggered() => break SessionEnd::Stopped,
            None => break SessionEnd::Closed,
            Some(Ok(0)) => break SessionEnd::Closed,
            Some(Ok(n)) => n,
            Some(Err(e)) => break SessionEnd::Io(e),
        };
        recv.commit(n);
        let mut failure = None;
        loop {
            let frame = match recv.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    failure = Some(SessionEnd::Protocol(e));
                    break;
                }
            };
            match frame.header.opcode {
                OpCode::Ack if !*registered => {
                    match proto::access::<ArchivedRegistered>(OpCode::Ack, frame.payload) {
                        Ok(r) => {
                            *registered = true;
                            let worker = r.worker.to_native();
                            let interval = Duration::from_millis(u64::from(
                                r.heartbeat_ms.to_native().max(10),
                            ));
                            let log_port = r.log_port.to_native();
                            let log_addr =
                                (log_port != 0).then(|| SocketAddr::new(master.ip(), log_port));
                            jobs.link(outbox.clone(), worker, log_addr);
                            heartbeat = Some(
                                glommio::spawn_local(heartbeats(
                                    outbox.clone(),
                                    jobs.clone(),
                                    interval,
                                ))
                                .detach(),
                            );
                            info!(worker, master = %config.master, "registered");
                            ready.registered(bound, worker);
                        }
                        Err(e) => failure = Some(SessionEnd::Protocol(e)),
                    }
                }
                OpCode::Run | OpCode::Deploy => {
                    match decode_run(frame.header.opcode, frame.payload) {
                        Ok(run) => jobs.start(run),
                        Err(e) => failure = Some(SessionEnd::Protocol(e)),
                    }
                }
                OpCode::SpawnWorker => {
                    match proto::access::<ArchivedSpawnChild>(OpCode::SpawnWorker, frame.payload) {
                        Ok(spawn) => jobs.spawn_child_worker(spawn.ticket.to_native()),
                        Err(e) => failure = Some(SessionEnd::Protocol(e)),
                    }
                }
                OpCode::KillWorker => {
                    let reason = proto::access::<ArchivedRetire>(OpCode::KillWorker, frame.payload)
                        .map(|r| r.reason.as_str().to_string())
                        .unwrap_or_else(|e| e.to_string());
                    info!(%reason, "retired by the master; stopping");
                    shutdown.trigger();
                    failure = Some(SessionEnd::Stopped);
                }
                OpCode::KillJob => {
                    match proto::access::<ArchivedKillJob>(OpCode::KillJob, frame.payload) {
                        Ok(k) => jobs.kill(k.job.to_native(), k.attempt.to_native()),
                        Err(e) => failure = Some(SessionEnd::Protocol(e)),
                    }
                }
                OpCode::Error => {
                    let message = proto::access::<ArchivedErrorReply>(OpCode::Error, frame.payload)
                        .map(|e| e.message.as_str().to_string())
                        .unwrap_or_else(|e| e.to_string());
                    failure = Some(SessionEnd::Refused(message));
                }
                opcode => {
                    failure = Some(SessionEnd::Protocol(ProtoError::UnexpectedFrame {
                        opcode,
                        reason: "not something a master sends a worker",
                    }))
                }
            }
            if failure.is_some() {
                break;
            }
        }
        if let Some(end) = failure {
            break end;
        }
    };
    if let Some(task) = heartbeat {
        task.cancel();
    }
    end
}

fn decode_run(opcode: OpCode, payload: &[u8]) -> Result<RunJob, ProtoError> {
    let archived = proto::access::<ArchivedRunJob>(opcode, payload)?;
    rkyv::deserialize::<RunJob, rancor::BoxedError>(archived).map_err(|e| {
        ProtoError::InvalidPayload {
            opcode,
            reason: e.to_string(),
        }
    })
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
