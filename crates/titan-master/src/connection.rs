//! One connection: a reader that takes frames from the framed connection and hands them to the
//! shard, and (inside the connection) a writer task that drains its [`Outbox`].
//!
//! The connection opens with the handshake: the master's challenge leaves at once, and no frame
//! reaches the shard before the peer proved a role's key (anything else gets one `Error` frame
//! and a close; an unfinished handshake closes after `HANDSHAKE_TIMEOUT`). Each request then
//! goes to the shard with the role it was proved under.
//!
//! Requests may be pipelined; replies leave in request order (the outbox keeps it). A bad frame
//! gets an `Error` reply when the stream still allows one, then the connection closes after the
//! reply is written. The framed connection enforces the limits: a partial frame that makes no
//! progress for the stall timeout closes the connection, so a stalled peer cannot pin memory (an
//! idle connection between frames is left alone: connections are long-lived), and while
//! `MAX_FRAMES_IN_FLIGHT` replies are pending the reader stops reading until some are written,
//! so a client cannot queue unbounded work. A peer that stops sending still gets the replies it
//! is owed (see [`finish_replies`]).

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::net::TcpStream;
use tracing::debug;

use super::conns::{ConnEntry, ConnKey};
use super::shard::Shard;
use titan_auth::Nonce;
use titan_proto::conn::{ConnConfig, Gate, ProgressRule};
use titan_proto::{self as proto, ConnError, ErrorCode};
use titan_runtime::conn::{Connection, ReadEnd};
use titan_runtime::outbox::Outbox;
use titan_runtime::shutdown::Shutdown;

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
    #[error("{0}")]
    Read(ReadEnd),
    #[error("over the connection limit")]
    OverLimit,
    #[error("bad frame: {0}")]
    BadFrame(ConnError),
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
    let config = ConnConfig::server(ProgressRule::NoProgressFor(stall));
    let nonce = match Nonce::random() {
        Ok(nonce) => nonce,
        Err(e) => {
            debug!(?peer, error = %e, "no nonce for a challenge; connection dropped");
            return;
        }
    };
    // Every connection proves a role's key before its first request (see titan_proto::conn).
    let gate = Gate::server(shard.shared.auth.server.clone(), nonce, Instant::now());
    let mut conn = Connection::with_gate(stream, &config, shutdown.clone(), gate);
    let outbox = conn.outbox().clone();
    let key = if over_limit {
        None
    } else {
        shard.conns.insert(ConnEntry {
            outbox: outbox.clone(),
            peer,
            worker: None,
            last_active: Instant::now(),
        })
    };
    let closed = match key {
        None => {
            let msg = format!(
                "connection limit of {} reached",
                shard.shared.config.max_connections
            );
            outbox.reply(|out| proto::encode_error(out, ErrorCode::TooManyConnections, &msg));
            Closed::OverLimit
        }
        Some(key) => {
            let closed = read_loop(&mut conn, &shard, key, &outbox).await;
            // A worker's end is handled at once: its jobs must go back to the queue now.
            let worker = shard.conns.worker(key).is_some();
            if matches!(closed, Closed::Read(ReadEnd::PeerClosed)) && !worker {
                finish_replies(&outbox, &shutdown, stall).await;
            }
            shard.on_conn_closed(key);
            closed
        }
    };
    debug!(?peer, reason = %closed, "connection closed");
    conn.finish().await;
}

/// The peer stopped sending, perhaps only half-closing (`shutdown(SHUT_WR)`, `nc -N`): what it
/// sent is accepted and may already be acted on, so the replies still owed (a submit waits for
/// its log record) go out before the connection is dropped — within `grace`, and not past a
/// shutdown. A peer that closed both ways just makes the writes fail.
async fn finish_replies(outbox: &Outbox, shutdown: &Shutdown, grace: Duration) {
    let deadline = Instant::now() + grace;
    while outbox.in_flight() > 0 && !outbox.is_closing() && !shutdown.is_triggered() {
        let left = deadline.saturating_duration_since(Instant::now());
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
    conn: &mut Connection,
    shard: &Rc<Shard>,
    key: ConnKey,
    outbox: &Rc<Outbox>,
) -> Closed {
    loop {
        let arrived = match conn.fill().await {
            Ok(at) => at,
            Err(end) => return Closed::Read(end),
        };
        shard.conns.touch(key, arrived);
        loop {
            let result = match conn.next_request() {
                Ok(None) => break,
                Ok(Some((frame, role))) => shard
                    .on_frame(key, outbox, frame, role)
                    .map_err(ConnError::from),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                if let Some(code) = e.reply_code() {
                    outbox.reply(|out| proto::encode_error(out, code, &e.to_string()));
                }
                return Closed::BadFrame(e);
            }
        }
    }
}
