//! One connection: a reader that decodes frames and hands them to the shard, and a writer task
//! that drains the connection's [`Outbox`].
//!
//! Requests may be pipelined; replies leave in request order (the outbox keeps it). A bad frame
//! gets an `Error` reply when the stream still allows one, then the connection closes after the
//! reply is written. A connection holding a partial frame that makes no progress for the stall
//! timeout is closed, so a stalled peer cannot pin memory; an idle connection between frames is
//! left alone (connections are long-lived). When more than `MAX_FRAMES_IN_FLIGHT` replies are
//! pending, the reader stops reading until some are written: a client cannot queue unbounded work.
//! A peer that stops sending still gets the replies it is owed (see [`finish_replies`]).

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_lite::future;
use glommio::net::TcpStream;
use tracing::debug;

use super::state::{ConnEntry, Shard};
use titan_proto::limits::MAX_FRAMES_IN_FLIGHT;
use titan_proto::{self as proto, ErrorCode, Limits, ProtoError, RecvBuf};
use titan_runtime::outbox::Outbox;
use titan_runtime::shutdown::Shutdown;
use titan_runtime::stream::{self, read_some, SharedStream as Stream};

/// Decrements the shared connection count when a connection ends, however it ends.
pub(crate) struct ConnectionGuard(Arc<AtomicUsize>);

impl ConnectionGuard {
    pub fn new(count: Arc<AtomicUsize>) -> ConnectionGuard {
        ConnectionGuard(count)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a connection ended; only for logging.
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("peer closed")]
    ByPeer,
    #[error("shutting down")]
    Shutdown,
    #[error("closed by the master")]
    ByMaster,
    #[error("stalled mid-frame past the timeout")]
    Stalled,
    #[error("bad frame: {0}")]
    BadFrame(ProtoError),
    #[error("io error: {0}")]
    Io(io::Error),
}

pub(crate) async fn serve(
    stream: TcpStream,
    shard: Rc<Shard>,
    shutdown: Shutdown,
    _guard: ConnectionGuard,
    over_limit: bool,
) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let stall = shard.shared.config.stall_timeout;
    let _ = stream.set_write_timeout(Some(stall));
    let stream: Stream = Rc::new(RefCell::new(stream));
    let outbox = Outbox::new();
    let key = if over_limit {
        None
    } else {
        shard.conns.borrow_mut().insert(ConnEntry {
            outbox: outbox.clone(),
            peer,
            worker: None,
            last_active: std::time::Instant::now(),
        })
    };
    let writer = glommio::spawn_local(stream::write_loop(stream.clone(), outbox.clone()));
    let closed = match key {
        None => {
            let msg = format!(
                "connection limit of {} reached",
                shard.shared.config.max_connections
            );
            outbox.reply(|out| proto::encode_error(out, ErrorCode::TooManyConnections, &msg));
            Closed::Shutdown
        }
        Some(key) => {
            let closed = read_loop(&stream, &shard, &shutdown, key, &outbox, stall).await;
            // A worker's end is handled at once: its jobs must go back to the queue now.
            let worker = shard
                .conns
                .borrow()
                .get(key)
                .is_some_and(|c| c.worker.is_some());
            if matches!(closed, Closed::ByPeer) && !worker {
                finish_replies(&outbox, &shutdown, stall).await;
            }
            shard.on_conn_closed(key);
            closed
        }
    };
    debug!(?peer, reason = %closed, "connection closed");
    outbox.close();
    writer.await;
    let _ = stream::close(&stream).await;
}

/// The peer stopped sending, perhaps only half-closing (`shutdown(SHUT_WR)`, `nc -N`): what it
/// sent is accepted and may already be acted on, so the replies still owed (a submit waits for
/// its log record) go out before the connection is dropped — within `grace`, and not past a
/// shutdown. A peer that closed both ways just makes the writes fail.
async fn finish_replies(outbox: &Outbox, shutdown: &Shutdown, grace: std::time::Duration) {
    let deadline = std::time::Instant::now() + grace;
    while outbox.in_flight() > 0 && !outbox.is_closing() && !shutdown.is_triggered() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        future::or(
            outbox.drained.wait(),
            future::or(shutdown.wait(), glommio::timer::sleep(left)),
        )
        .await;
    }
}

async fn read_loop(
    stream: &Stream,
    shard: &Rc<Shard>,
    shutdown: &Shutdown,
    key: super::mesh::ConnKey,
    outbox: &Rc<Outbox>,
    stall: std::time::Duration,
) -> Closed {
    let mut recv = RecvBuf::new(Limits::default());
    loop {
        while outbox.in_flight() >= MAX_FRAMES_IN_FLIGHT {
            let woke = future::or(
                async {
                    outbox.drained.wait().await;
                    true
                },
                async {
                    shutdown.wait().await;
                    false
                },
            )
            .await;
            if !woke || outbox.is_closing() {
                return Closed::Shutdown;
            }
        }
        let partial = recv.has_partial_frame();
        let read = {
            let spare = recv.spare_mut();
            let reading = async { Some(read_some(stream, spare).await) };
            let stalled = async {
                if partial {
                    glommio::timer::sleep(stall).await;
                } else {
                    future::pending::<()>().await;
                }
                None
            };
            let stopped = async {
                future::or(shutdown.wait(), outbox.closed.wait()).await;
                Some(Err(io::ErrorKind::ConnectionAborted.into()))
            };
            future::or(reading, future::or(stalled, stopped)).await
        };
        let n = match read {
            None => return Closed::Stalled,
            Some(Ok(0)) => return Closed::ByPeer,
            Some(Ok(n)) => n,
            Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionAborted => {
                return if shutdown.is_triggered() {
                    Closed::Shutdown
                } else {
                    Closed::ByMaster
                };
            }
            Some(Err(e)) => return Closed::Io(e),
        };
        recv.commit(n);
        if let Some(entry) = shard.conns.borrow_mut().get_mut(key) {
            entry.last_active = std::time::Instant::now();
        }
        loop {
            let result = match recv.next_frame() {
                Ok(None) => break,
                Ok(Some(frame)) => shard.on_frame(key, outbox, frame),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                outbox.reply(|out| proto::encode_error(out, e.code(), &e.to_string()));
                return Closed::BadFrame(e);
            }
        }
    }
}
