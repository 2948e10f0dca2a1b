//! Typed protocol errors and the error codes that travel in `Error` replies.

use super::header::OpCode;

/// Everything that can be wrong with bytes from a peer. Each variant says what was seen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("wrong protocol version {got} (this peer speaks {expected})")]
    WrongVersion { got: u8, expected: u8 },
    #[error("unknown opcode 0x{opcode:02x}")]
    UnknownOpcode { opcode: u8 },
    #[error("reserved header bits set (flags 0x{flags:02x}, spare 0x{spare:02x})")]
    ReservedBits { flags: u8, spare: u8 },
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: u32, max: u32 },
    #[error("invalid {opcode} payload: {reason}")]
    InvalidPayload { opcode: OpCode, reason: String },
    #[error("unexpected {opcode} frame: {reason}")]
    UnexpectedFrame {
        opcode: OpCode,
        reason: &'static str,
    },
}

impl ProtoError {
    /// The code sent to the peer in an `Error` reply.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtoError::WrongVersion { .. } => ErrorCode::WrongVersion,
            ProtoError::UnknownOpcode { .. } => ErrorCode::UnknownOpcode,
            ProtoError::ReservedBits { .. } => ErrorCode::MalformedHeader,
            ProtoError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ProtoError::InvalidPayload { .. } => ErrorCode::InvalidPayload,
            ProtoError::UnexpectedFrame { .. } => ErrorCode::Unsupported,
        }
    }

    /// Whether the byte stream can still be trusted after this error. After a bad header the
    /// frame boundaries are lost, so the connection must close; a bad payload inside a
    /// well-framed frame leaves the stream in sync, but the server still closes (a peer that
    /// sends invalid payloads is broken), after replying.
    pub fn stream_in_sync(&self) -> bool {
        matches!(
            self,
            ProtoError::InvalidPayload { .. } | ProtoError::UnexpectedFrame { .. }
        )
    }
}

/// Error codes carried by `Error` replies. Numbers are stable on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    WrongVersion = 1,
    UnknownOpcode = 2,
    MalformedHeader = 3,
    FrameTooLarge = 4,
    InvalidPayload = 5,
    Unsupported = 6,
    TooManyConnections = 7,
    TooManyInFlight = 8,
    /// The request was well formed but the operation failed (bad DAG, unknown job, ...).
    Rejected = 20,
    NotFound = 21,
    /// The master could not persist the request (disk full or failing); nothing was accepted.
    Unavailable = 22,
    /// The connection did not authenticate (no handshake, a wrong key).
    Unauthorized = 23,
    ShuttingDown = 24,
    /// The connection's role may not make this request (the message says which key would).
    Forbidden = 25,
    Internal = 99,
}

impl ErrorCode {
    pub fn from_u16(code: u16) -> Option<ErrorCode> {
        use ErrorCode::*;
        [
            WrongVersion,
            UnknownOpcode,
            MalformedHeader,
            FrameTooLarge,
            InvalidPayload,
            Unsupported,
            TooManyConnections,
            TooManyInFlight,
            Rejected,
            NotFound,
            Unavailable,
            Unauthorized,
            ShuttingDown,
            Forbidden,
            Internal,
        ]
        .into_iter()
        .find(|c| *c as u16 == code)
    }
}
