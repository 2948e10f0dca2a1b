//! The handshake seam of a connection: every frame passes the [`Gate`] before the application
//! sees any, so no dispatch code can forget to check who is on the other side.
//!
//! A master's connections open with a challenge–response ([`Gate::server`]); clients and
//! workers answer it ([`Gate::client`]); the worker's own port, whose requests carry capability
//! tickets instead, stays [`Gate::Open`]. The exchange (`titan_auth::handshake` has the proofs):
//!
//! ```text
//! server: Challenge { nonce }            ── sent as the connection opens
//! client: Hello { role, nonce, proof }   ── its requests are held until the gate opens
//! server: Welcome { proof }              ── or an Error, and the server closes
//! ```
//!
//! Any other frame before the handshake is done fails the connection: a server answers it with
//! one `Error` frame and closes. A client whose server cannot prove that it holds the same key
//! (an impostor on the port, or another master) fails too, before it sends anything else. Both
//! sides give up when the handshake takes longer than [`HANDSHAKE_TIMEOUT`].

use std::sync::Arc;
use std::time::Instant;

use titan_auth::handshake::{check_proof, proof, Party};
use titan_auth::{Credential, Nonce, Role, ServerKeys};

use super::{ConnError, Outgoing};
use crate::codec::{access, encode_frame};
use crate::decoder::Frame;
use crate::error::ErrorCode;
use crate::header::OpCode;
use crate::limits::HANDSHAKE_TIMEOUT;
use crate::message::auth::{
    ArchivedChallenge, ArchivedHello, ArchivedWelcome, Challenge, Hello, Welcome, AUTH_SCHEME,
};
use crate::message::ArchivedErrorReply;

/// What must happen on a connection before the application sees its first frame.
#[derive(Debug)]
pub enum Gate {
    /// Nothing: every frame goes to the application (the worker's port, tests, baselines).
    Open,
    /// A server waiting for the answer to its challenge.
    Server(ServerSide),
    /// A client answering a server's challenge (boxed: it holds the client's key, and an open
    /// gate should not carry its size on every connection).
    Client(Box<ClientSide>),
    /// The handshake succeeded: frames go to the application, which may ask for the role.
    Authenticated(Role),
}

#[derive(Debug)]
pub struct ServerSide {
    keys: Arc<ServerKeys>,
    nonce: Nonce,
    deadline: Instant,
}

#[derive(Debug)]
pub struct ClientSide {
    credential: Credential,
    nonce: Nonce,
    /// The server's nonce, once its challenge arrived (then the `Welcome` is awaited).
    challenge: Option<Nonce>,
    deadline: Instant,
}

impl Gate {
    /// A server's side: `nonce` must be fresh (`Nonce::random`); `now` starts the deadline.
    pub fn server(keys: Arc<ServerKeys>, nonce: Nonce, now: Instant) -> Gate {
        Gate::Server(ServerSide {
            keys,
            nonce,
            deadline: now + HANDSHAKE_TIMEOUT,
        })
    }

    /// A client's side, proving `credential`; `nonce` must be fresh.
    pub fn client(credential: Credential, nonce: Nonce, now: Instant) -> Gate {
        Gate::Client(Box::new(ClientSide {
            credential,
            nonce,
            challenge: None,
            deadline: now + HANDSHAKE_TIMEOUT,
        }))
    }

    /// Whether frames now go to the application.
    pub fn is_open(&self) -> bool {
        matches!(self, Gate::Open | Gate::Authenticated(_))
    }

    /// The role the handshake proved (`None` for an open gate or one still closed).
    pub fn role(&self) -> Option<Role> {
        match self {
            Gate::Authenticated(role) => Some(*role),
            _ => None,
        }
    }

    /// When the handshake must be done by, while it is not.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Gate::Server(s) => Some(s.deadline),
            Gate::Client(c) => Some(c.deadline),
            Gate::Open | Gate::Authenticated(_) => None,
        }
    }

    /// `Err` once the handshake is overdue at `now`.
    pub fn check(&self, now: Instant) -> Result<(), ConnError> {
        match self.deadline() {
            Some(deadline) if now >= deadline => Err(ConnError::HandshakeTimeout {
                limit_ms: HANDSHAKE_TIMEOUT.as_millis() as u64,
            }),
            _ => Ok(()),
        }
    }

    /// What this side does as the connection opens: a server challenges, a client holds its
    /// frames back until it is through.
    pub(super) fn start(&mut self, out: &mut Outgoing) {
        match self {
            Gate::Server(server) => {
                let challenge = Challenge {
                    scheme: AUTH_SCHEME,
                    nonce: server.nonce.0,
                };
                // A challenge is 33 bytes: it always fits in a frame.
                out.push_handshake(|o| drop(encode_frame(o, OpCode::Challenge, &challenge)));
            }
            Gate::Client(_) => out.hold(),
            Gate::Open | Gate::Authenticated(_) => {}
        }
    }

    /// A frame that arrived while the gate is closed: the handshake consumes it, may answer
    /// through `out`, and opens the gate or fails the connection.
    pub(super) fn on_frame(
        &mut self,
        frame: Frame<'_>,
        out: &mut Outgoing,
    ) -> Result<(), ConnError> {
        let opened = match self {
            Gate::Server(server) => server.on_frame(frame, out)?,
            Gate::Client(client) => client.on_frame(frame, out)?,
            // Never called: an open gate lets every frame through.
            Gate::Open | Gate::Authenticated(_) => None,
        };
        if let Some(role) = opened {
            *self = Gate::Authenticated(role);
            out.release();
        }
        Ok(())
    }
}

impl ServerSide {
    /// Checks the client's `Hello`; the role it proved, once it did.
    fn on_frame(
        &mut self,
        frame: Frame<'_>,
        out: &mut Outgoing,
    ) -> Result<Option<Role>, ConnError> {
        let opcode = frame.header.opcode;
        if opcode != OpCode::Hello {
            return Err(ConnError::Unauthenticated { opcode });
        }
        let hello = access::<ArchivedHello>(opcode, frame.payload)?;
        let role =
            Role::from_wire(hello.role).ok_or(ConnError::UnknownRole { byte: hello.role })?;
        let client = Nonce(hello.nonce);
        let key = self.keys.key(role);
        if !check_proof(key, Party::Client, role, &self.nonce, &client, &hello.proof) {
            return Err(ConnError::AuthFailed { role });
        }
        let welcome = Welcome {
            proof: proof(key, Party::Server, role, &self.nonce, &client),
        };
        out.push_handshake(|o| drop(encode_frame(o, OpCode::Welcome, &welcome)));
        Ok(Some(role))
    }
}

impl ClientSide {
    /// Answers the challenge, then checks the server's `Welcome`.
    fn on_frame(
        &mut self,
        frame: Frame<'_>,
        out: &mut Outgoing,
    ) -> Result<Option<Role>, ConnError> {
        let opcode = frame.header.opcode;
        let role = self.credential.role;
        let key = self.credential.proof_key();
        match (opcode, self.challenge) {
            (OpCode::Error, _) => Err(refused(frame)),
            (OpCode::Challenge, None) => {
                let challenge = access::<ArchivedChallenge>(opcode, frame.payload)?;
                if challenge.scheme != AUTH_SCHEME {
                    return Err(ConnError::UnknownScheme {
                        scheme: challenge.scheme,
                    });
                }
                let server = Nonce(challenge.nonce);
                let hello = Hello {
                    role: role.to_wire(),
                    nonce: self.nonce.0,
                    proof: proof(key, Party::Client, role, &server, &self.nonce),
                };
                out.push_handshake(|o| drop(encode_frame(o, OpCode::Hello, &hello)));
                self.challenge = Some(server);
                Ok(None)
            }
            (OpCode::Welcome, Some(server)) => {
                let welcome = access::<ArchivedWelcome>(opcode, frame.payload)?;
                if !check_proof(
                    key,
                    Party::Server,
                    role,
                    &server,
                    &self.nonce,
                    &welcome.proof,
                ) {
                    return Err(ConnError::ServerUnproven { role });
                }
                Ok(Some(role))
            }
            _ => Err(ConnError::UnexpectedHandshake { opcode }),
        }
    }
}

/// The server's `Error` during the handshake, as the client reports it.
fn refused(frame: Frame<'_>) -> ConnError {
    match access::<ArchivedErrorReply>(OpCode::Error, frame.payload) {
        Ok(e) => ConnError::Refused {
            code: ErrorCode::from_u16(e.code.to_native()),
            message: e.message.as_str().to_string(),
        },
        Err(e) => ConnError::Frame(e),
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
