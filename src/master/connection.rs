//! One connection: a reader that decodes frames and hands them to the shard, and a writer task
//! that drains the connection's [`Outbox`].
//!
//! Requests may be pipelined; replies leave in request order (the outbox keeps it). A bad frame
//! gets an `Error` reply when the stream still allows one, then the connection closes after the
//! reply is written. A connection holding a partial frame that makes no progress for the stall
//! timeout is closed, so a stalled peer cannot pin memory; an idle connection between frames is
//! left alone (connections are long-lived). When more than `MAX_FRAMES_IN_FLIGHT` replies are
//! pending, the reader stops reading until some are written: a client cannot queue unbounded work.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_lite::{future, AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use tracing::debug;

use super::outbox::Outbox;
use super::shutdown::Shutdown;
use super::state::{ConnEntry, Shard};
use crate::proto::limits::MAX_FRAMES_IN_FLIGHT;
use crate::proto::message::ErrorReply;
use crate::proto::{self, ErrorCode, Limits, ProtoError, RecvBuf};

/// A reply buffer that grew past this (a large echo) is released after it was written.
const OUT_BUF_SHRINK_ABOVE: usize = 256 * 1024;

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

/// The stream shared by the reader and the writer task. Each borrows it only inside one `poll`,
/// so the borrows never overlap (one thread, and polls do not nest).
type Stream = Rc<RefCell<TcpStream>>;

async fn read_some(stream: &Stream, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_read(cx, buf)).await
}

async fn write_all(stream: &Stream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
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
            worker: None,
        })
    };
    let writer = glommio::spawn_local(write_loop(stream.clone(), outbox.clone()));
    let closed = match key {
        None => {
            let msg = format!(
                "connection limit of {} reached",
                shard.shared.config.max_connections
            );
            outbox.reply(|out| push_error(out, ErrorCode::TooManyConnections, &msg));
            Closed::Shutdown
        }
        Some(key) => {
            let closed = read_loop(&stream, &shard, &shutdown, key, &outbox, stall).await;
            shard.on_conn_closed(key);
            closed
        }
    };
    debug!(?peer, reason = %closed, "connection closed");
    outbox.close();
    writer.await;
    let _ = poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_close(cx)).await;
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
        loop {
            let result = match recv.next_frame() {
                Ok(None) => break,
                Ok(Some(frame)) => shard.on_frame(key, outbox, frame),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                outbox.reply(|out| push_error(out, e.code(), &e.to_string()));
                return Closed::BadFrame(e);
            }
        }
    }
}

/// Writes whatever the outbox has ready, one write per batch, until the outbox closes.
async fn write_loop(stream: Stream, outbox: Rc<Outbox>) {
    let mut buf = Vec::new();
    loop {
        outbox.take_ready(&mut buf);
        if buf.is_empty() {
            if outbox.is_closing() {
                return;
            }
            outbox.writable.wait().await;
            continue;
        }
        if write_all(&stream, &buf).await.is_err() {
            // The peer is gone or stopped reading past the timeout; the reader will see it too.
            outbox.close();
            return;
        }
        buf.clear();
        if buf.capacity() > OUT_BUF_SHRINK_ABOVE {
            buf = Vec::new();
        }
    }
}

/// Appends an `Error` frame. Messages are cut to the named limit.
pub(crate) fn push_error(out: &mut Vec<u8>, code: ErrorCode, message: &str) {
    let mut end = message.len().min(proto::limits::MAX_ERROR_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let reply = ErrorReply {
        code: code as u16,
        message: message[..end].to_string(),
    };
    // An ErrorReply of at most 1 KiB always fits in a frame, so encoding cannot fail.
    let _ = proto::encode_frame(out, OpCode::Error, &reply);
}

use crate::proto::OpCode;
