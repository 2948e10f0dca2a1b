//! The framed connection, without IO: every TITAN_PROTO reader and writer (master, worker
//! session, worker port, client library, load generator) drives one [`Conn`] from its socket.
//!
//! A connection is a stack of layers, each owned by one type of this module:
//!
//! ```text
//! socket bytes ─▶ Transport ─▶ RecvBuf ─▶ Gate ─▶ frames for the application
//! socket bytes ◀─ Transport ◀─ Outgoing (replies in request order, pushed frames)
//! ```
//!
//! - [`Incoming`] owns the receive side: the decoder's buffer ([`RecvBuf`]), the handshake
//!   [`Gate`] and the [`Pacing`] of a frame in progress (the stall rule, a [`ProgressRule`]).
//! - [`Outgoing`] owns the send side: the reply order (slots reserved per request, filled in any
//!   order, sent in request order), frames pushed unasked, the [`Transport`], and the peer's
//!   [`Credit`]: how many replies and how many reply bytes it may be owed before its requests
//!   stop being read (backpressure).
//!
//! The two halves are separate so an async driver can give the receive side to its reader task
//! and share the send side with whoever replies (a master's shard completes replies long after
//! the request was read); a blocking driver holds both in one [`Conn`]. Neither half reads a
//! clock: time is an argument (`now`), so the stall rule is tested with injected time, and no
//! half touches a socket: a driver reads into [`Conn::recv_room`], reports the count with
//! [`Conn::on_received`], takes [`Conn::next_frame`] until it returns `None`, and writes what
//! [`Outgoing::take_transmit`] hands it. The drivers are `titan_client::BlockingConn` (std
//! `Read + Write`) and `titan_runtime::conn::Connection` (a glommio stream with a reader and a
//! writer task).
//!
//! ## Where TLS and authentication plug in
//! Both slot in here once, under every driver:
//! - **TLS** becomes a second [`Transport`] variant holding a `rustls::Connection`, which is
//!   itself sans-IO. Receiving: the driver reads ciphertext into [`Incoming::recv_room`] (a
//!   ciphertext staging buffer of `Incoming` for that variant, so no borrow of the shared send
//!   side is held across a read); [`Incoming::on_received`] hands it to the transport
//!   (`read_tls` + `process_new_packets`), which moves the plaintext from `reader()` into the
//!   `RecvBuf`. Sending: [`Outgoing::take_transmit`] writes the ready plaintext into `writer()`
//!   and hands the driver the output of `write_tls`. The transport lives in `Outgoing` because
//!   both directions need it and `Outgoing` is the half both sides can reach.
//! - **Authentication** is the [`Gate`] (`gate.rs`): a challenge–response state machine.
//!   Frames that arrive while the gate is closed go to it, never to the application; its answers
//!   (a challenge, a response) are pushed through `Outgoing` ahead of everything else, and a
//!   client's own frames are held back in `Outgoing` until the gate opens. A connection's first
//!   application frame is delivered only once the gate is open, so no dispatch code can forget
//!   the check, and the application asks the gate which role the peer proved
//!   ([`Incoming::role`]). The gate is passed once per connection: no per-frame cost.
//!
//! Issue-14 policies change in one place each: the stall rule in [`ProgressRule`], the byte
//! budget and in-flight bound in [`Credit`] (their defaults in [`crate::limits`]).

mod gate;
mod incoming;
mod layers;
mod outgoing;
mod pacing;

use std::time::Instant;

pub use gate::Gate;
pub use incoming::Incoming;
pub use layers::Transport;
pub use outgoing::{Credit, Outgoing, SlotId};
pub use pacing::{Pacing, ProgressRule};

use super::decoder::Frame;
use super::error::{ErrorCode, ProtoError};
use super::header::OpCode;
use super::limits::{Limits, MAX_BYTES_OWED, MAX_FRAMES_IN_FLIGHT};
use titan_auth::Role;

#[cfg(doc)]
use super::decoder::RecvBuf;

/// What a connection enforces: frame size, the stall rule, and the peer's credit.
#[derive(Clone, Copy, Debug)]
pub struct ConnConfig {
    pub limits: Limits,
    pub progress: ProgressRule,
    pub credit: Credit,
}

impl ConnConfig {
    /// A server's connection to a client or worker: a partial frame must progress under
    /// `progress`, and requests stop being read while the peer is owed
    /// [`MAX_FRAMES_IN_FLIGHT`] replies or more than [`MAX_BYTES_OWED`] bytes of them.
    pub fn server(progress: ProgressRule) -> ConnConfig {
        ConnConfig {
            limits: Limits::default(),
            progress,
            credit: Credit {
                max_in_flight: MAX_FRAMES_IN_FLIGHT,
                max_bytes_owed: MAX_BYTES_OWED,
            },
        }
    }

    /// The side that sends requests (a client, a worker's session with its master): it owes no
    /// replies, and it waits for its peer as long as its own timeouts allow.
    pub fn client() -> ConnConfig {
        ConnConfig {
            limits: Limits::default(),
            progress: ProgressRule::Unlimited,
            credit: Credit::UNLIMITED,
        }
    }
}

/// Why a connection cannot go on. Frame errors keep their [`ProtoError`]; the others are about
/// the connection rather than one frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    #[error(transparent)]
    Frame(#[from] ProtoError),
    #[error("no byte of a partial frame arrived for {silent_ms} ms (limit {limit_ms} ms)")]
    Stalled { silent_ms: u64, limit_ms: u64 },
    #[error("authenticate first: a connection's first frame answers the server's challenge (got {opcode})")]
    Unauthenticated { opcode: OpCode },
    #[error("authentication failed: the proof does not match this master's {role} key (check the access file)")]
    AuthFailed { role: Role },
    #[error("authentication failed: unknown role {byte}")]
    UnknownRole { byte: u8 },
    #[error("no handshake within {limit_ms} ms")]
    HandshakeTimeout { limit_ms: u64 },
    #[error("the server did not prove that it holds the {role} key: it is not the master this key belongs to (an impostor on the port, or another master)")]
    ServerUnproven { role: Role },
    #[error("the server refused the handshake: {message}")]
    Refused {
        code: Option<ErrorCode>,
        message: String,
    },
    #[error("the server speaks handshake scheme {scheme}; this build speaks 1")]
    UnknownScheme { scheme: u8 },
    #[error("unexpected {opcode} frame during the handshake")]
    UnexpectedHandshake { opcode: OpCode },
}

impl ConnError {
    /// The code of the `Error` reply the peer gets, or `None` when it cannot get one: a peer
    /// stalled mid-frame is not reading.
    pub fn reply_code(&self) -> Option<ErrorCode> {
        match self {
            ConnError::Frame(e) => Some(e.code()),
            ConnError::Unauthenticated { .. }
            | ConnError::AuthFailed { .. }
            | ConnError::UnknownRole { .. } => Some(ErrorCode::Unauthorized),
            // The peer is not reading (stalled), or this side is the client: no reply.
            ConnError::Stalled { .. }
            | ConnError::HandshakeTimeout { .. }
            | ConnError::ServerUnproven { .. }
            | ConnError::Refused { .. }
            | ConnError::UnknownScheme { .. }
            | ConnError::UnexpectedHandshake { .. } => None,
        }
    }
}

/// Both halves of one connection, for a driver that holds them together.
#[derive(Debug)]
pub struct Conn {
    pub incoming: Incoming,
    pub outgoing: Outgoing,
}

impl Conn {
    /// A plaintext connection with no handshake.
    pub fn new(config: &ConnConfig) -> Conn {
        Conn::with_layers(config, Transport::Plaintext, Gate::Open)
    }

    /// A connection over `transport`, whose frames pass `gate` before the application sees any.
    pub fn with_layers(config: &ConnConfig, transport: Transport, mut gate: Gate) -> Conn {
        let staging = transport.staging();
        let mut outgoing = Outgoing::new(transport, config.credit);
        gate.start(&mut outgoing);
        Conn {
            incoming: Incoming::new(config, staging, gate),
            outgoing,
        }
    }

    /// Room for the next read from the socket.
    pub fn recv_room(&mut self) -> &mut [u8] {
        self.incoming.recv_room()
    }

    /// `n` bytes were read into [`Conn::recv_room`] at `now`.
    pub fn on_received(&mut self, n: usize, now: Instant) -> Result<(), ConnError> {
        self.incoming.on_received(n, now, &mut self.outgoing)
    }

    /// The next application frame, `None` until one has fully arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ConnError> {
        self.incoming.next_frame(&mut self.outgoing)
    }

    /// Whether [`Conn::next_frame`] returns a frame without more bytes.
    pub fn has_frame(&mut self) -> Result<bool, ConnError> {
        self.incoming.has_frame(&mut self.outgoing)
    }

    /// Whether the handshake (if any) is done: frames go to the application.
    pub fn is_open(&self) -> bool {
        self.incoming.is_open()
    }
}
