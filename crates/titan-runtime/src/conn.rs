//! The async driver of a framed connection: a glommio TCP stream, a reader (whoever owns the
//! [`Connection`]) and a writer task, around the sans-IO connection of `titan_proto::conn`.
//!
//! The reader reads into the receive side and hands out whole frames; it waits before reading
//! while the peer has no credit (too many replies or reply bytes owed) and closes a frame in
//! progress that breaks the stall rule. The writer task drains the [`Outbox`], one write per
//! batch of ready bytes, until the outbox closes. glommio keeps separate read and write
//! readiness per stream, so a read and a write may be in flight at once; each side borrows the
//! stream only inside a single `poll`, so the borrows never overlap (one thread, and polls do
//! not nest).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use futures_lite::{future, AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use glommio::Task;

use titan_auth::Role;
use titan_proto::conn::{Conn, ConnConfig, ConnError, Gate, Incoming, Transport};
use titan_proto::Frame;

use super::outbox::Outbox;
use super::shutdown::Shutdown;

type SharedStream = Rc<RefCell<TcpStream>>;

/// A reply buffer that grew past this (a large frame) is released after it was written.
const OUT_BUF_SHRINK_ABOVE: usize = 256 * 1024;

/// Why a connection stopped reading.
#[derive(Debug, thiserror::Error)]
pub enum ReadEnd {
    #[error("peer closed")]
    PeerClosed,
    #[error("shutting down")]
    Shutdown,
    /// The outbox was closed: by its owner (a shard dropping a dead worker) or by a failed write.
    #[error("closed on this side")]
    Closed,
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("io error: {0}")]
    Io(#[from] io::Error),
}

/// One framed connection over a glommio stream. Call [`Connection::finish`] to end it, so the
/// replies already ready are written before the stream closes.
pub struct Connection {
    stream: SharedStream,
    incoming: Incoming,
    outbox: Rc<Outbox>,
    writer: Task<()>,
    shutdown: Shutdown,
}

impl Connection {
    /// Wraps `stream` and starts its writer task. Reading stops at `shutdown`. No handshake:
    /// see [`Connection::with_gate`].
    pub fn new(stream: TcpStream, config: &ConnConfig, shutdown: Shutdown) -> Connection {
        Connection::with_gate(stream, config, shutdown, Gate::Open)
    }

    /// Like [`Connection::new`], with frames passing `gate` (a handshake) before the reader
    /// sees any. A server's challenge leaves at once.
    pub fn with_gate(
        stream: TcpStream,
        config: &ConnConfig,
        shutdown: Shutdown,
        gate: Gate,
    ) -> Connection {
        let Conn { incoming, outgoing } = Conn::with_layers(config, Transport::Plaintext, gate);
        let stream = Rc::new(RefCell::new(stream));
        let outbox = Outbox::new(outgoing);
        let writer = glommio::spawn_local(write_loop(stream.clone(), outbox.clone()));
        Connection {
            stream,
            incoming,
            outbox,
            writer,
            shutdown,
        }
    }

    /// The sending side, to reply, push frames or close from elsewhere.
    pub fn outbox(&self) -> &Rc<Outbox> {
        &self.outbox
    }

    /// Reads once from the socket, when the peer has credit, and returns when the bytes
    /// arrived. Ends at the peer's close, a stall, a shutdown or a close of the outbox.
    pub async fn fill(&mut self) -> Result<Instant, ReadEnd> {
        self.wait_for_credit().await?;
        loop {
            let woke = self.read_or_wake().await;
            let now = Instant::now();
            match woke {
                Woke::Read(Ok(0)) => return Err(ReadEnd::PeerClosed),
                Woke::Read(Ok(n)) => {
                    let incoming = &mut self.incoming;
                    self.outbox.with(|out| incoming.on_received(n, now, out))?;
                    return Ok(now);
                }
                Woke::Read(Err(e)) => return Err(ReadEnd::Io(e)),
                Woke::Deadline => self.incoming.check_progress(now)?,
                Woke::Stopped => return Err(self.stop_reason()),
            }
        }
    }

    /// The next whole frame already read, borrowed from the receive buffer. While the
    /// handshake runs, its frames are consumed here and its answers handed to the writer.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ConnError> {
        Ok(self.next_request()?.map(|(frame, _)| frame))
    }

    /// Like [`Connection::next_frame`], with the role the peer proved in the handshake.
    pub fn next_request(&mut self) -> Result<Option<(Frame<'_>, Option<Role>)>, ConnError> {
        let handshaking = !self.incoming.is_open();
        let incoming = &mut self.incoming;
        let next = self.outbox.with(move |out| incoming.next_request(out));
        if handshaking {
            // The gate may have pushed an answer, or released the frames it held back.
            self.outbox.writable.notify();
        }
        next
    }

    /// The role the peer proved in the handshake (`None` without one, or before it is done).
    pub fn role(&self) -> Option<Role> {
        self.incoming.role()
    }

    /// Closes the outbox, lets the writer write what is ready, and closes the stream.
    pub async fn finish(self) {
        self.outbox.close();
        self.writer.await;
        let _ = poll_fn(|cx| Pin::new(&mut *self.stream.borrow_mut()).poll_close(cx)).await;
    }

    async fn wait_for_credit(&self) -> Result<(), ReadEnd> {
        while !self.outbox.may_read() {
            if self.outbox.is_closing() || self.shutdown.is_triggered() {
                return Err(self.stop_reason());
            }
            future::or(self.outbox.drained.wait(), self.shutdown.wait()).await;
        }
        Ok(())
    }

    /// A read, or whichever comes first of the stall deadline and a reason to stop.
    async fn read_or_wake(&mut self) -> Woke {
        let deadline = self.incoming.stall_deadline();
        let room = self.incoming.recv_room();
        let stream = &self.stream;
        let reading = async {
            Woke::Read(poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_read(cx, room)).await)
        };
        let timer = async {
            match deadline {
                Some(at) => {
                    glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await
                }
                None => future::pending::<()>().await,
            }
            Woke::Deadline
        };
        let stopped = async {
            future::or(self.shutdown.wait(), self.outbox.closed.wait()).await;
            Woke::Stopped
        };
        future::or(reading, future::or(timer, stopped)).await
    }

    fn stop_reason(&self) -> ReadEnd {
        if self.shutdown.is_triggered() {
            ReadEnd::Shutdown
        } else {
            ReadEnd::Closed
        }
    }
}

enum Woke {
    Read(io::Result<usize>),
    Deadline,
    Stopped,
}

/// Writes whatever the outbox has ready, one write per batch, until the outbox closes. A write
/// error closes the outbox (the reader notices through `Outbox::closed`).
async fn write_loop(stream: SharedStream, outbox: Rc<Outbox>) {
    let mut buf = Vec::new();
    loop {
        outbox.take_transmit(&mut buf);
        if buf.is_empty() {
            if outbox.is_closing() {
                return;
            }
            outbox.writable.wait().await;
            continue;
        }
        if write_all(&stream, &buf).await.is_err() {
            outbox.close();
            return;
        }
        outbox.on_written();
        buf.clear();
        if buf.capacity() > OUT_BUF_SHRINK_ABOVE {
            buf = Vec::new();
        }
    }
}

async fn write_all(stream: &SharedStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}
