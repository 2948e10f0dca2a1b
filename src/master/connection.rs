//! One client connection: read, decode every whole frame, answer in order, write once per batch.
//!
//! Requests may be pipelined; each read is decoded completely and the replies of the whole batch
//! leave in one write, in request order. A bad frame gets an `Error` reply when the stream still
//! allows one, then the connection closes. A connection that holds a partial frame and makes no
//! progress for the stall timeout is closed, so a stalled peer cannot pin memory; an idle
//! connection between frames is left alone (connections are long-lived).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use tracing::{debug, trace};

use super::shutdown::Shutdown;
use super::Shared;
use crate::proto::message::{ArchivedPing, ErrorReply};
use crate::proto::{self, ErrorCode, Frame, Limits, OpCode, ProtoError, RecvBuf};

/// Initial size of a connection's reply buffer.
const OUT_BUF_INITIAL: usize = 16 * 1024;

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
    #[error("stalled mid-frame past the timeout")]
    Stalled,
    #[error("bad frame: {0}")]
    BadFrame(ProtoError),
    #[error("io error: {0}")]
    Io(io::Error),
}

pub(crate) async fn serve(
    stream: TcpStream,
    shared: Shared,
    shutdown: Shutdown,
    _guard: ConnectionGuard,
    over_limit: bool,
) {
    let peer = stream.peer_addr().ok();
    let mut stream = stream;
    let closed = if over_limit {
        let msg = format!(
            "connection limit of {} reached",
            shared.config.max_connections
        );
        let mut out = Vec::new();
        push_error(&mut out, ErrorCode::TooManyConnections, &msg);
        let _ = stream.write_all(&out).await;
        Closed::Shutdown
    } else {
        run(&mut stream, &shared, &shutdown).await
    };
    debug!(?peer, reason = %closed, "connection closed");
    let _ = stream.close().await;
}

async fn run(stream: &mut TcpStream, shared: &Shared, shutdown: &Shutdown) -> Closed {
    let _ = stream.set_nodelay(true);
    let stall = shared.config.stall_timeout;
    if stream.set_write_timeout(Some(stall)).is_err() {
        return Closed::Io(io::Error::other("cannot set a write timeout"));
    }
    let mut recv = RecvBuf::new(Limits::default());
    let mut out = Vec::with_capacity(OUT_BUF_INITIAL);
    loop {
        // Only a connection in the middle of a frame is on the clock.
        let timeout = recv.has_partial_frame().then_some(stall);
        if let Err(e) = stream.set_read_timeout(timeout) {
            return Closed::Io(e.into());
        }
        let read = {
            let spare = recv.spare_mut();
            future::or(async { Some(stream.read(spare).await) }, async {
                shutdown.wait().await;
                None
            })
            .await
        };
        let n = match read {
            None => return Closed::Shutdown,
            Some(Ok(0)) => return Closed::ByPeer,
            Some(Ok(n)) => n,
            Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => return Closed::Stalled,
            Some(Err(e)) => return Closed::Io(e),
        };
        recv.commit(n);
        let failure = answer_all(&mut recv, &mut out);
        if !out.is_empty() {
            if let Err(e) = stream.write_all(&out).await {
                return Closed::Io(e);
            }
            out.clear();
            if out.capacity() > OUT_BUF_SHRINK_ABOVE {
                out = Vec::with_capacity(OUT_BUF_INITIAL);
            }
        }
        if let Some(e) = failure {
            return Closed::BadFrame(e);
        }
    }
}

/// Answers every whole frame in the buffer. On the first bad frame, appends its error reply and
/// returns the error; frames after it are not read.
fn answer_all(recv: &mut RecvBuf, out: &mut Vec<u8>) -> Option<ProtoError> {
    loop {
        let result = match recv.next_frame() {
            Ok(None) => return None,
            Ok(Some(frame)) => answer(frame, out),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            push_error(out, e.code(), &e.to_string());
            return Some(e);
        }
    }
}

fn answer(frame: Frame<'_>, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    trace!(opcode = %frame.header.opcode, len = frame.header.len, "frame");
    match frame.header.opcode {
        OpCode::Ping => {
            proto::access::<ArchivedPing>(OpCode::Ping, frame.payload)?;
            proto::encode_raw_frame(out, OpCode::Pong, frame.payload)
                .map(|_| ())
                .map_err(|e| ProtoError::InvalidPayload {
                    opcode: OpCode::Ping,
                    reason: e.to_string(),
                })
        }
        opcode => Err(ProtoError::UnexpectedFrame {
            opcode,
            reason: "not served by this master",
        }),
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
