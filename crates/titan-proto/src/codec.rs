//! Encoding frames into a write buffer and validating payloads in place.
//!
//! Encoding serializes the message straight into the caller's output buffer after an 8-byte
//! header placeholder, then fills the header in; a connection reuses one buffer for all its
//! replies, so there is no allocation per frame once it has grown. Decoding never copies: a
//! payload is validated with bytecheck and the archived message is read where it lies.

use rkyv::api::high::{to_bytes_in_with_alloc, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::{Positional, Writer};
use rkyv::util::with_arena;
use rkyv::{Portable, Serialize};

use super::error::{ErrorCode, ProtoError};
use super::header::{Header, OpCode, HEADER_LEN};
use super::limits::MAX_FRAME_LEN;
use super::message::ErrorReply;

/// Why a frame could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("{opcode} payload of {len} bytes exceeds the frame limit of {max} bytes")]
    TooLarge {
        opcode: OpCode,
        len: usize,
        max: u32,
    },
    #[error("serializing a {opcode} payload failed: {reason}")]
    Serialize { opcode: OpCode, reason: String },
}

/// An rkyv writer appending to a byte buffer whose archive starts at `base`. rkyv positions are
/// relative to the start of the archive, so several frames can share one buffer.
pub struct FrameWriter<'a> {
    buf: &'a mut Vec<u8>,
    base: usize,
}

impl Positional for FrameWriter<'_> {
    fn pos(&self) -> usize {
        self.buf.len() - self.base
    }
}

impl<E> Writer<E> for FrameWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

/// The serializer every message type must support.
pub type FrameSerializer<'a, 'b> = HighSerializer<FrameWriter<'a>, ArenaHandle<'b>, rancor::Error>;

/// Appends one frame (header + archived `msg`) to `out` and returns its total length. On error
/// `out` is left as it was.
pub fn encode_frame<T>(out: &mut Vec<u8>, opcode: OpCode, msg: &T) -> Result<usize, EncodeError>
where
    T: for<'a, 'b> Serialize<FrameSerializer<'a, 'b>>,
{
    let header_at = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    let base = out.len();
    let result = with_arena(|arena| {
        to_bytes_in_with_alloc::<_, _, rancor::Error>(
            msg,
            FrameWriter { buf: out, base },
            arena.acquire(),
        )
        .map(|_| ())
    });
    if let Err(e) = result {
        out.truncate(header_at);
        return Err(EncodeError::Serialize {
            opcode,
            reason: e.to_string(),
        });
    }
    finish_frame(out, header_at, opcode)
}

/// Appends a frame whose payload is already encoded (an echo, a forwarded archive).
pub fn encode_raw_frame(
    out: &mut Vec<u8>,
    opcode: OpCode,
    payload: &[u8],
) -> Result<usize, EncodeError> {
    let header_at = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.extend_from_slice(payload);
    finish_frame(out, header_at, opcode)
}

fn finish_frame(out: &mut Vec<u8>, header_at: usize, opcode: OpCode) -> Result<usize, EncodeError> {
    let len = out.len() - header_at - HEADER_LEN;
    if len > MAX_FRAME_LEN as usize {
        out.truncate(header_at);
        return Err(EncodeError::TooLarge {
            opcode,
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let header = Header::new(opcode, len as u32).encode();
    out[header_at..header_at + HEADER_LEN].copy_from_slice(&header);
    Ok(HEADER_LEN + len)
}

/// Appends an `Error` frame with `code` and `message`, the message cut to
/// [`MAX_ERROR_MESSAGE`](super::limits::MAX_ERROR_MESSAGE) bytes at a character boundary.
pub fn encode_error(out: &mut Vec<u8>, code: ErrorCode, message: &str) {
    let mut end = message.len().min(super::limits::MAX_ERROR_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let reply = ErrorReply {
        code: code as u16,
        message: message[..end].to_string(),
    };
    // An ErrorReply of at most 1 KiB always fits in a frame, so encoding cannot fail.
    let _ = encode_frame(out, OpCode::Error, &reply);
}

/// Validates `payload` as an archived `T` and returns a reference into it: the zero-copy read.
/// Any failure is an `InvalidPayload` error naming the opcode; never the unchecked API.
/// `BoxedError` keeps the reason in release builds too (rkyv's default error drops it there);
/// it costs nothing unless validation fails.
pub fn access<T>(opcode: OpCode, payload: &[u8]) -> Result<&T, ProtoError>
where
    T: Portable + for<'a> CheckBytes<HighValidator<'a, rancor::BoxedError>>,
{
    rkyv::access::<T, rancor::BoxedError>(payload).map_err(|e| ProtoError::InvalidPayload {
        opcode,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{Conn, ConnConfig};
    use crate::message::{ArchivedPing, Ping};

    #[test]
    fn frames_share_one_buffer_and_decode_in_place() {
        let mut out = Vec::new();
        for nonce in 0..10u64 {
            let ping = Ping {
                nonce,
                data: vec![nonce as u8; nonce as usize * 7],
            };
            encode_frame(&mut out, OpCode::Ping, &ping).unwrap();
        }
        let mut conn = Conn::new(&ConnConfig::client());
        let room = conn.recv_room();
        room[..out.len()].copy_from_slice(&out);
        conn.on_received(out.len(), std::time::Instant::now())
            .unwrap();
        for nonce in 0..10u64 {
            let frame = conn.next_frame().unwrap().unwrap();
            let ping: &ArchivedPing = access(frame.header.opcode, frame.payload).unwrap();
            assert_eq!(ping.nonce.to_native(), nonce);
            assert_eq!(ping.data.len(), nonce as usize * 7);
        }
    }

    #[test]
    fn garbage_payload_is_an_error_not_a_panic() {
        for garbage in [&[][..], &[0xff; 3][..], &[0x41; 64][..]] {
            let err = access::<ArchivedPing>(OpCode::Ping, garbage).unwrap_err();
            assert!(
                matches!(
                    err,
                    ProtoError::InvalidPayload {
                        opcode: OpCode::Ping,
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn oversized_message_is_refused_and_buffer_restored() {
        let mut out = vec![1, 2, 3];
        let ping = Ping {
            nonce: 1,
            data: vec![0; MAX_FRAME_LEN as usize + 1],
        };
        assert!(matches!(
            encode_frame(&mut out, OpCode::Ping, &ping),
            Err(EncodeError::TooLarge { .. })
        ));
        assert_eq!(out, vec![1, 2, 3]);
    }
}
