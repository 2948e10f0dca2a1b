//! The blocking driver of a framed connection: std `Read + Write` around the sans-IO connection
//! of `titan_proto::conn`, for the client library and the load generator.
//!
//! Requests are queued with [`BlockingConn::send`] and leave with one write per
//! [`BlockingConn::flush`] (pipelining); frames come back from [`BlockingConn::recv`], borrowed
//! from the receive buffer. Time limits are the stream's own (`set_read_timeout` on a socket): a
//! read that times out is an `Io` error.

use std::io::{self, Read, Write};
use std::time::Instant;

use titan_proto::codec::FrameSerializer;
use titan_proto::conn::{Conn, ConnConfig, Gate, Transport};
use titan_proto::{self as proto, ConnError, EncodeError, Frame, OpCode};

/// A write buffer that grew past this (a large frame) is released after it was written.
const WIRE_SHRINK_ABOVE: usize = 256 * 1024;

/// Why no frame could be received.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("the peer closed the connection inside a frame ({buffered} bytes of it received)")]
    ClosedMidFrame { buffered: usize },
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Conn(#[from] ConnError),
}

/// One framed connection over a blocking stream.
pub struct BlockingConn<S> {
    stream: S,
    conn: Conn,
    /// What the last flush wrote, kept for its allocation.
    wire: Vec<u8>,
}

impl<S: Read + Write> BlockingConn<S> {
    /// A connection without a handshake (a worker's port, baselines, tests).
    pub fn new(stream: S, config: &ConnConfig) -> BlockingConn<S> {
        BlockingConn::with_gate(stream, config, Gate::Open)
    }

    /// A connection whose frames pass `gate` first; a client gate holds what is sent until
    /// the handshake is done (see [`BlockingConn::handshake`]).
    pub fn with_gate(stream: S, config: &ConnConfig, gate: Gate) -> BlockingConn<S> {
        BlockingConn {
            stream,
            conn: Conn::with_layers(config, Transport::Plaintext, gate),
            wire: Vec::new(),
        }
    }

    /// Runs the handshake to its end: answers the server's challenge and checks its proof. The
    /// frames sent before it leave right after. Bounded by the stream's read timeout.
    pub fn handshake(&mut self) -> Result<(), RecvError> {
        loop {
            // Lets the gate take what arrived, then sends its answers.
            self.conn.has_frame()?;
            self.flush()?;
            if self.conn.is_open() {
                return Ok(());
            }
            self.fill()?;
        }
    }

    /// The role the handshake proved (`None` without one).
    pub fn role(&self) -> Option<titan_auth::Role> {
        self.conn.incoming.role()
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Queues a frame without sending it; [`BlockingConn::flush`] sends everything queued.
    pub fn send<T>(&mut self, opcode: OpCode, msg: &T) -> Result<(), EncodeError>
    where
        T: for<'a, 'b> rkyv::Serialize<FrameSerializer<'a, 'b>>,
    {
        let mut result = Ok(0);
        self.conn
            .outgoing
            .push(|out| result = proto::encode_frame(out, opcode, msg));
        result.map(|_| ())
    }

    /// Queues a frame whose payload is already encoded (or empty).
    pub fn send_raw(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), EncodeError> {
        let mut result = Ok(0);
        self.conn
            .outgoing
            .push(|out| result = proto::encode_raw_frame(out, opcode, payload));
        result.map(|_| ())
    }

    /// Writes everything queued, in one write.
    pub fn flush(&mut self) -> io::Result<()> {
        self.conn.outgoing.take_transmit(&mut self.wire);
        let written = self.stream.write_all(&self.wire);
        self.conn.outgoing.on_written();
        self.wire.clear();
        if self.wire.capacity() > WIRE_SHRINK_ABOVE {
            self.wire = Vec::new();
        }
        written
    }

    /// Reads once from the stream (blocking, within its timeout).
    pub fn fill(&mut self) -> Result<(), RecvError> {
        let n = self.stream.read(self.conn.recv_room())?;
        if n == 0 {
            return Err(match self.conn.incoming.buffered() {
                0 => RecvError::Closed,
                buffered => RecvError::ClosedMidFrame { buffered },
            });
        }
        self.conn.on_received(n, Instant::now())?;
        Ok(())
    }

    /// The next frame, reading as much as it takes (and finishing the handshake on the way).
    pub fn recv(&mut self) -> Result<Frame<'_>, RecvError> {
        while !self.conn.has_frame()? {
            if self.conn.outgoing.has_transmit() {
                self.flush()?;
            }
            self.fill()?;
        }
        // A whole frame is buffered, so this is `Some`.
        self.conn.next_frame()?.ok_or(RecvError::Closed)
    }

    /// The next frame if it has already been read whole, without blocking or a system call: a
    /// pipelining caller drains these before it writes again, so one write carries the
    /// requests that replace a whole batch of replies.
    pub fn recv_buffered(&mut self) -> Result<Option<Frame<'_>>, ConnError> {
        self.conn.next_frame()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use titan_proto::message::{ArchivedPing, Ping};

    /// A stream that delivers `input` in reads of `chunk` bytes and records what is written.
    struct Scripted {
        input: Vec<u8>,
        at: usize,
        chunk: usize,
        written: Vec<Vec<u8>>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.chunk.min(buf.len()).min(self.input.len() - self.at);
            buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pings(count: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for nonce in 0..count {
            let ping = Ping {
                nonce,
                data: vec![nonce as u8; 100],
            };
            proto::encode_frame(&mut out, OpCode::Ping, &ping).unwrap();
        }
        out
    }

    fn conn(input: Vec<u8>, chunk: usize) -> BlockingConn<Scripted> {
        let stream = Scripted {
            input,
            at: 0,
            chunk,
            written: Vec::new(),
        };
        BlockingConn::new(stream, &ConnConfig::client())
    }

    #[test]
    fn frames_arrive_whole_from_reads_of_any_size_then_eof() {
        for chunk in [1, 7, 113, 4096] {
            let mut c = conn(pings(5), chunk);
            for nonce in 0..5 {
                let frame = c.recv().unwrap();
                let ping = proto::access::<ArchivedPing>(OpCode::Ping, frame.payload).unwrap();
                assert_eq!(ping.nonce.to_native(), nonce, "reads of {chunk}");
            }
            assert!(matches!(c.recv(), Err(RecvError::Closed)));
        }
    }

    #[test]
    fn an_eof_inside_a_frame_says_so() {
        let mut bytes = pings(1);
        bytes.truncate(bytes.len() - 3);
        let mut c = conn(bytes.clone(), 64);
        assert!(matches!(
            c.recv(),
            Err(RecvError::ClosedMidFrame { buffered }) if buffered == bytes.len()
        ));
    }

    #[test]
    fn queued_frames_leave_in_one_write_per_flush() {
        let mut c = conn(Vec::new(), 1);
        for nonce in 0..3 {
            let ping = Ping {
                nonce,
                data: vec![],
            };
            c.send(OpCode::Ping, &ping).unwrap();
        }
        c.send_raw(OpCode::Stats, &[]).unwrap();
        c.flush().unwrap();
        c.flush().unwrap();
        let written = &c.get_ref().written;
        assert_eq!(written.len(), 1, "one write, and none for an empty flush");
        let mut expected = Vec::new();
        for nonce in 0..3 {
            let ping = Ping {
                nonce,
                data: vec![],
            };
            proto::encode_frame(&mut expected, OpCode::Ping, &ping).unwrap();
        }
        proto::encode_raw_frame(&mut expected, OpCode::Stats, &[]).unwrap();
        assert_eq!(written[0], expected);
    }

    #[test]
    fn recv_buffered_never_reads() {
        let mut c = conn(pings(2), 1 << 20);
        assert!(c.recv_buffered().unwrap().is_none(), "nothing read yet");
        c.recv().unwrap();
        assert!(
            c.recv_buffered().unwrap().is_some(),
            "the second came with the first read"
        );
        assert!(c.recv_buffered().unwrap().is_none());
    }
}
