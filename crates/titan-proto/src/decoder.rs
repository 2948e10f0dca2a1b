//! The incremental frame decoder and the receive buffer it works over.
//!
//! `RecvBuf` owns a connection's received bytes. The socket reads into [`RecvBuf::spare_mut`],
//! reports the count with [`RecvBuf::commit`], and [`RecvBuf::next_frame`] hands out whole frames
//! as slices of the buffer until only a partial frame is left. A partial frame is the normal
//! "need more bytes" state (`Ok(None)`), not an error, and checking for it allocates nothing.
//!
//! Memory follows the bytes that actually arrived, never the length a header claims: the buffer
//! doubles only when it is full, up to one maximal frame, and shrinks back once it is empty. A
//! peer that announces a 10 MiB frame and stalls costs us what it sent, until the stall timeout.

use super::error::ProtoError;
use super::header::{Header, HEADER_LEN};
use super::limits::{Limits, RECV_BUF_INITIAL};

/// Free space below which `spare_mut` compacts or grows before handing out room to read into.
const MIN_READ_ROOM: usize = 4 * 1024;

/// An empty buffer larger than this is given back to the allocator.
const SHRINK_ABOVE: usize = 4 * RECV_BUF_INITIAL;

/// One decoded frame, borrowed from the receive buffer (zero-copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: Header,
    pub payload: &'a [u8],
}

/// A connection's receive buffer: bytes in `data[start..end]` are received and not yet decoded.
/// `data` is always fully initialized, so reading into the free tail needs no `unsafe`.
#[derive(Debug)]
pub struct RecvBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    limits: Limits,
}

impl RecvBuf {
    pub fn new(limits: Limits) -> RecvBuf {
        RecvBuf {
            data: vec![0; RECV_BUF_INITIAL],
            start: 0,
            end: 0,
            limits,
        }
    }

    /// Bytes received but not yet handed out as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Allocated size, for memory accounting and tests.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Room to read into. Compacts the buffer or grows it (doubling, capped at one maximal frame
    /// plus its header) when the free tail is small; never grows past what the peer has sent
    /// more than twofold.
    pub fn spare_mut(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.data.len() > SHRINK_ABOVE {
                self.data = vec![0; RECV_BUF_INITIAL];
            }
        }
        if self.data.len() - self.end < MIN_READ_ROOM {
            self.make_room();
        }
        &mut self.data[self.end..]
    }

    /// Records that `n` bytes were read into the slice returned by `spare_mut`.
    pub fn commit(&mut self, n: usize) {
        assert!(
            self.end + n <= self.data.len(),
            "committed more than the spare room"
        );
        self.end += n;
    }

    /// Appends bytes (for callers that do not read from a socket directly, and tests). Unlike
    /// socket reads it may grow the buffer past one maximal frame: the caller chose the bytes.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.make_room();
        let end = self.end + bytes.len();
        if end > self.data.len() {
            self.data.resize(end, 0);
        }
        self.data[self.end..end].copy_from_slice(bytes);
        self.end = end;
    }

    /// The next whole frame, `Ok(None)` when only part of one has arrived, or the error that
    /// makes the stream unusable (bad header). The header is checked as soon as its 8 bytes are
    /// here, before any payload byte is awaited or any room reserved for it.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ProtoError> {
        let Some(header) = self.peek_header()? else {
            return Ok(None);
        };
        let total = HEADER_LEN + header.len as usize;
        if self.buffered() < total {
            return Ok(None);
        }
        let payload_start = self.start + HEADER_LEN;
        self.start += total;
        Ok(Some(Frame {
            header,
            payload: &self.data[payload_start..payload_start + header.len as usize],
        }))
    }

    /// Whether a whole frame is buffered, so `next_frame` returns it without more bytes; the
    /// same header error as `next_frame` when the bytes held cannot start a frame.
    pub fn has_whole_frame(&self) -> Result<bool, ProtoError> {
        Ok(self
            .peek_header()?
            .is_some_and(|h| self.buffered() >= HEADER_LEN + h.len as usize))
    }

    /// Whether the bytes held are the beginning of a frame that has not fully arrived.
    pub fn has_partial_frame(&self) -> bool {
        self.buffered() > 0
    }

    fn peek_header(&self) -> Result<Option<Header>, ProtoError> {
        let avail = &self.data[self.start..self.end];
        let Some(bytes) = avail.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        Header::decode(bytes, self.limits.max_frame_len).map(Some)
    }

    fn make_room(&mut self) {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() - self.end >= MIN_READ_ROOM {
            return;
        }
        let cap = HEADER_LEN + self.limits.max_frame_len as usize + MIN_READ_ROOM;
        let grown = (self.data.len() * 2).max(RECV_BUF_INITIAL).min(cap);
        if grown > self.data.len() {
            self.data.resize(grown, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::OpCode;
    use crate::limits::MAX_FRAME_LEN;

    fn frame_bytes(op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Header::new(op, payload.len() as u32).encode().to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn partial_header_and_payload_need_more() {
        let bytes = frame_bytes(OpCode::Ping, b"hello");
        let mut buf = RecvBuf::new(Limits::default());
        for (i, b) in bytes.iter().enumerate() {
            assert_eq!(buf.next_frame(), Ok(None), "after {i} bytes");
            buf.extend_from_slice(&[*b]);
        }
        let frame = buf.next_frame().unwrap().unwrap();
        assert_eq!(frame.header.opcode, OpCode::Ping);
        assert_eq!(frame.payload, b"hello");
        assert_eq!(buf.next_frame(), Ok(None));
        assert_eq!(buf.buffered(), 0);
    }

    #[test]
    fn many_frames_in_one_read() {
        let mut stream = Vec::new();
        for i in 0..100u8 {
            stream.extend(frame_bytes(OpCode::Ping, &vec![i; i as usize]));
        }
        let mut buf = RecvBuf::new(Limits::default());
        buf.extend_from_slice(&stream);
        for i in 0..100u8 {
            let frame = buf.next_frame().unwrap().unwrap();
            assert_eq!(frame.payload, &vec![i; i as usize][..]);
        }
        assert_eq!(buf.next_frame(), Ok(None));
    }

    #[test]
    fn oversized_claim_is_refused_before_any_payload() {
        let mut buf = RecvBuf::new(Limits::default());
        buf.extend_from_slice(&Header::new(OpCode::Ping, MAX_FRAME_LEN + 1).encode());
        assert_eq!(
            buf.next_frame(),
            Err(ProtoError::FrameTooLarge {
                len: MAX_FRAME_LEN + 1,
                max: MAX_FRAME_LEN
            })
        );
        assert_eq!(
            buf.capacity(),
            RECV_BUF_INITIAL,
            "nothing reserved for the claimed length"
        );
    }

    #[test]
    fn memory_follows_received_bytes_not_claimed_length() {
        let mut buf = RecvBuf::new(Limits::default());
        buf.extend_from_slice(&Header::new(OpCode::Ping, MAX_FRAME_LEN).encode());
        buf.extend_from_slice(&[7; 100_000]);
        assert_eq!(buf.next_frame(), Ok(None));
        assert!(
            buf.capacity() <= 4 * 100_000,
            "capacity {} for 100 kB received",
            buf.capacity()
        );
    }

    #[test]
    fn a_maximal_frame_fits_and_the_buffer_shrinks_after() {
        let payload = vec![3u8; MAX_FRAME_LEN as usize];
        let mut buf = RecvBuf::new(Limits::default());
        buf.extend_from_slice(&frame_bytes(OpCode::Ping, &payload));
        assert_eq!(
            buf.next_frame().unwrap().unwrap().payload.len(),
            payload.len()
        );
        let _ = buf.spare_mut();
        assert_eq!(buf.capacity(), RECV_BUF_INITIAL);
    }
}
