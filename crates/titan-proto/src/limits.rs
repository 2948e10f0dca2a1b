//! Named limits of the protocol, in one place. Every buffer and queue a peer can make us grow is
//! bounded by one of these.

use std::time::Duration;

/// Largest payload accepted, as in the Java original (10 MiB).
pub const MAX_FRAME_LEN: u32 = 10 * 1024 * 1024;

/// Requests a connection may have awaiting their reply before the server stops reading from it.
pub const MAX_FRAMES_IN_FLIGHT: usize = 1024;

/// Bytes of finished replies a connection may owe its peer (not yet written because the peer
/// does not read) before the server stops reading its requests: backpressure, so a client that
/// pipelines large requests and never reads cannot make the server buffer without bound.
pub const MAX_BYTES_OWED: usize = 64 * 1024 * 1024;

/// Open connections a master accepts in total (all shards); more are refused with an error.
pub const MAX_CONNECTIONS: usize = 4096;

/// A connection holding a partial frame that makes no progress for this long is closed, so a
/// stalled peer cannot pin receive-buffer memory.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection must finish its handshake within this long of being opened (both sides): an
/// unauthenticated connection holds a slot and memory, and a peer that is not Titan never
/// answers.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Initial receive-buffer size of a connection; it grows only as bytes actually arrive.
pub const RECV_BUF_INITIAL: usize = 16 * 1024;

/// Longest text of an error reply; longer messages are cut.
pub const MAX_ERROR_MESSAGE: usize = 1024;

/// The limits a decoder enforces, so tests and tools can tighten them.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_frame_len: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_len: MAX_FRAME_LEN,
        }
    }
}
