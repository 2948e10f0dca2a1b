//! The handshake every connection to a master opens with, before any other frame (the proofs
//! are `titan_auth::handshake`'s; the state machines are `conn`'s `Gate`).
//!
//! | opcode | direction | message |
//! |---|---|---|
//! | `Challenge` | server → client, first | [`Challenge`] |
//! | `Hello` | client → server | [`Hello`] |
//! | `Welcome` | server → client | [`Welcome`] (or an `Error`, then the server closes) |

use rkyv::{Archive, Deserialize, Serialize};

/// The handshake scheme this build speaks (the proofs' labels carry it too).
pub const AUTH_SCHEME: u8 = 1;

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Challenge {
    pub scheme: u8,
    /// The server's fresh nonce.
    pub nonce: [u8; 32],
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Hello {
    /// The role the client claims (`titan_auth::Role::to_wire`).
    pub role: u8,
    /// The client's fresh nonce.
    pub nonce: [u8; 32],
    /// HMAC of the transcript under the role's secret.
    pub proof: [u8; 32],
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Welcome {
    /// The server's HMAC of the transcript under the same secret.
    pub proof: [u8; 32],
}
