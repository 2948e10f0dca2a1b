//! The messages carried in frame payloads, as rkyv archives.
//!
//! Each opcode has one request type and one reply type. Payloads are validated with bytecheck
//! before use and read in place (`Archived*` types); they never travel as text.

use rkyv::{Archive, Deserialize, Serialize};

/// `Ping`: a liveness probe. The reply is a `Pong` frame carrying the same payload bytes.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Ping {
    pub nonce: u64,
    pub data: Vec<u8>,
}

/// The payload of every `Error` frame.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ErrorReply {
    /// An [`ErrorCode`](super::ErrorCode) number.
    pub code: u16,
    pub message: String,
}
