//! The messages carried in frame payloads, as rkyv archives.
//!
//! Each opcode has one request type and one reply type, listed with the message. Payloads are
//! validated with bytecheck before use and read in place (`Archived*` types); they never travel
//! as text. Domain values — submissions, job specs, states, outcomes — are the core's own model
//! types (`titan_core::model`), which derive rkyv: the wire carries the scheduler's vocabulary
//! rather than a parallel copy of it. Ids between master and worker travel as the core's typed ids
//! (`JobId`, `WorkerId`), which archive to the same bytes as the integers they wrap; ids shown to
//! clients (`--json`) stay plain numbers.

pub mod auth;
pub mod client;
pub mod logs;
pub mod stats_text;
pub mod worker;

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

/// 32 bytes of key material on the wire (a derived key a master hands its worker). `Debug`
/// never shows the bytes, archived or not, so a logged message cannot leak them.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
pub struct KeyBytes(pub [u8; 32]);

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBytes(..)")
    }
}

impl std::fmt::Debug for ArchivedKeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBytes(..)")
    }
}
