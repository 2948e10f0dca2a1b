//! The receive side of a connection: socket bytes in, application frames out, through the
//! transport, the decoder and the handshake gate, with the stall rule watching frames in
//! progress.

use std::time::Instant;

use super::layers::Staging;
use super::pacing::Pacing;
use super::Gate;
use super::{ConnConfig, ConnError, Outgoing};
use crate::decoder::{Frame, RecvBuf};

#[derive(Debug)]
pub struct Incoming {
    recv: RecvBuf,
    staging: Staging,
    gate: Gate,
    pacing: Pacing,
}

impl Incoming {
    pub(super) fn new(config: &ConnConfig, staging: Staging, gate: Gate) -> Incoming {
        Incoming {
            recv: RecvBuf::new(config.limits),
            staging,
            gate,
            pacing: Pacing::new(config.progress),
        }
    }

    /// Room for the next read from the socket (never empty).
    pub fn recv_room(&mut self) -> &mut [u8] {
        self.staging.room(&mut self.recv)
    }

    /// `n` bytes (more than 0) were read into [`Incoming::recv_room`] at `now`. `out` is the
    /// connection's send side, which holds the transport.
    pub fn on_received(
        &mut self,
        n: usize,
        now: Instant,
        out: &mut Outgoing,
    ) -> Result<(), ConnError> {
        out.transport_mut()
            .on_received(&mut self.staging, n, &mut self.recv)?;
        self.pacing.on_bytes(now);
        Ok(())
    }

    /// The next frame for the application, or `None` until one has fully arrived. Frames that
    /// arrive before the gate opens are the handshake's, never the application's.
    pub fn next_frame(&mut self, out: &mut Outgoing) -> Result<Option<Frame<'_>>, ConnError> {
        self.pass_gate(out)?;
        if !self.gate.is_open() {
            return Ok(None);
        }
        Ok(self.recv.next_frame()?)
    }

    /// Like [`Incoming::next_frame`], with the role the peer proved (read after the gate took
    /// the handshake's frames, so the first request after a `Hello` in the same read has it).
    pub fn next_request(
        &mut self,
        out: &mut Outgoing,
    ) -> Result<Option<(Frame<'_>, Option<titan_auth::Role>)>, ConnError> {
        self.pass_gate(out)?;
        if !self.gate.is_open() {
            return Ok(None);
        }
        let role = self.gate.role();
        Ok(self.recv.next_frame()?.map(|frame| (frame, role)))
    }

    /// Whether [`Incoming::next_frame`] returns a frame without more bytes.
    pub fn has_frame(&mut self, out: &mut Outgoing) -> Result<bool, ConnError> {
        self.pass_gate(out)?;
        Ok(self.gate.is_open() && self.recv.has_whole_frame()?)
    }

    /// Bytes received and not yet handed out: the start of a frame still arriving.
    pub fn buffered(&self) -> usize {
        self.recv.buffered()
    }

    /// When the connection must close unless more bytes arrive (see [`Pacing`]), or at the
    /// latest when an unfinished handshake is overdue.
    pub fn stall_deadline(&self) -> Option<Instant> {
        let stall = self.pacing.deadline(self.recv.has_partial_frame());
        match (stall, self.gate.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `Err(Stalled)` once a frame in progress broke the stall rule at `now`, and
    /// `Err(HandshakeTimeout)` once the handshake is overdue.
    pub fn check_progress(&self, now: Instant) -> Result<(), ConnError> {
        self.gate.check(now)?;
        self.pacing.check(self.recv.has_partial_frame(), now)
    }

    /// Whether frames go to the application (no handshake, or it is done).
    pub fn is_open(&self) -> bool {
        self.gate.is_open()
    }

    /// The role the peer proved in the handshake (`None` without one).
    pub fn role(&self) -> Option<titan_auth::Role> {
        self.gate.role()
    }

    fn pass_gate(&mut self, out: &mut Outgoing) -> Result<(), ConnError> {
        while !self.gate.is_open() {
            let Some(frame) = self.recv.next_frame()? else {
                return Ok(());
            };
            self.gate.on_frame(frame, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Conn, ProgressRule};
    use super::*;
    use crate::header::{Header, OpCode};
    use crate::{ErrorCode, ProtoError};

    fn frame_bytes(op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Header::new(op, payload.len() as u32).encode().to_vec();
        out.extend_from_slice(payload);
        out
    }

    /// Feeds `bytes` the way a driver does: copied into the room, then reported.
    fn receive(conn: &mut Conn, mut bytes: &[u8], now: Instant) {
        while !bytes.is_empty() {
            let room = conn.recv_room();
            let n = room.len().min(bytes.len());
            room[..n].copy_from_slice(&bytes[..n]);
            conn.on_received(n, now).unwrap();
            bytes = &bytes[n..];
        }
    }

    fn server(stall: Duration) -> Conn {
        Conn::new(&ConnConfig::server(ProgressRule::NoProgressFor(stall)))
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_in_order() {
        let mut stream = frame_bytes(OpCode::Ping, b"first");
        stream.extend(frame_bytes(OpCode::Stats, b""));
        stream.extend(frame_bytes(OpCode::Ping, &[7; 5000]));
        let t0 = Instant::now();
        for cut in [1, 7, 8, 9, 13, 21, 100, stream.len() - 1] {
            let mut conn = server(Duration::from_secs(1));
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                receive(&mut conn, part, t0);
                while let Some(frame) = conn.next_frame().unwrap() {
                    got.push((frame.header.opcode, frame.payload.len()));
                }
            }
            let want = [(OpCode::Ping, 5), (OpCode::Stats, 0), (OpCode::Ping, 5000)];
            assert_eq!(got, want, "cut at {cut}");
            assert_eq!(conn.incoming.buffered(), 0);
        }
    }

    #[test]
    fn has_frame_tells_whether_a_whole_frame_is_buffered() {
        let bytes = frame_bytes(OpCode::Ping, b"abc");
        let mut conn = server(Duration::from_secs(1));
        let t0 = Instant::now();
        receive(&mut conn, &bytes[..bytes.len() - 1], t0);
        assert_eq!(conn.has_frame(), Ok(false));
        receive(&mut conn, &bytes[bytes.len() - 1..], t0);
        assert_eq!(conn.has_frame(), Ok(true));
        assert!(conn.next_frame().unwrap().is_some());
        assert_eq!(conn.has_frame(), Ok(false));
    }

    #[test]
    fn a_bad_header_is_a_typed_error() {
        let mut conn = server(Duration::from_secs(1));
        receive(&mut conn, &[9, 0x20, 0, 0, 0, 0, 0, 0], Instant::now());
        assert_eq!(
            conn.next_frame(),
            Err(ConnError::Frame(ProtoError::WrongVersion {
                got: 9,
                expected: crate::VERSION
            }))
        );
        assert_eq!(
            conn.has_frame().unwrap_err().reply_code(),
            Some(ErrorCode::WrongVersion)
        );
    }

    #[test]
    fn the_stall_rule_watches_partial_frames_with_injected_time() {
        let limit = Duration::from_millis(200);
        let mut conn = server(limit);
        let t0 = Instant::now();
        let bytes = frame_bytes(OpCode::Ping, &[1; 64]);
        receive(&mut conn, &bytes, t0);
        assert!(conn.next_frame().unwrap().is_some());
        assert_eq!(conn.incoming.stall_deadline(), None, "idle between frames");
        receive(&mut conn, &bytes[..10], t0 + limit);
        assert_eq!(conn.next_frame(), Ok(None));
        assert_eq!(conn.incoming.stall_deadline(), Some(t0 + 2 * limit));
        assert_eq!(
            conn.incoming
                .check_progress(t0 + 2 * limit - Duration::from_millis(1)),
            Ok(())
        );
        let stalled = conn.incoming.check_progress(t0 + 2 * limit).unwrap_err();
        assert!(
            matches!(stalled, ConnError::Stalled { limit_ms: 200, .. }),
            "{stalled:?}"
        );
        assert_eq!(stalled.reply_code(), None, "a stalled peer gets no reply");
    }
}
