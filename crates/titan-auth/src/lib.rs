//! Who may talk to Titan, and the proofs that say so: the keys of each role, the access file
//! that holds them, the challenge–response proofs of a connection's handshake, the capability
//! tickets that let a client read a job's files on a worker, and the keys that seal log
//! datagrams. No sockets and no clock: randomness comes from the OS (`ring`'s `SystemRandom`)
//! where a secret or a nonce is made, and time is an argument.
//!
//! - [`Secret`]: 32 random bytes, never printed.
//! - [`Role`] and [`Operation`]: what each key may do ([`Role::permits`]).
//! - [`AccessFile`]: the versioned `key = value` file a master writes on its first start
//!   ([`AccessFile::load_or_create`]) and clients read ([`KeyLookup`]).
//! - [`handshake`]: the MACs over both nonces that a client and a server exchange.
//! - [`MasterSecret`]: what only the master holds, and the keys derived from it (per-attempt
//!   log keys, a worker's log and ticket keys).
//! - [`ticket`]: capability tickets, MAC'd with a worker's ticket key.
//! - [`SealKey`]: the AEAD (ChaCha20-Poly1305) that seals log datagrams.
//!
//! Crypto is `ring`'s (HMAC-SHA256, ChaCha20-Poly1305, constant-time verification), never
//! hand-written. See docs/decisions/036-keys-handshake-tickets-log-keys.md.

mod access;
mod derive;
pub mod handshake;
mod lookup;
mod role;
mod seal;
mod secret;
pub mod ticket;

pub use access::{AccessFile, ACCESS_FILE_NAME, ACCESS_VERSION};
pub use derive::{KeyBytes, MasterSecret};
pub use handshake::{Nonce, ProofKey, ServerKeys};
pub use lookup::{Credential, KeyLookup, Want, ENV_ACCESS_FILE, ENV_KEY};
pub use role::{Operation, ReadOp, Refusal, Role};
pub use seal::{SealKey, SEAL_NONCE_BYTES, SEAL_TAG_BYTES};
pub use secret::{random_bytes, Secret, SECRET_BYTES};
pub use ticket::{Claims, TicketError, TicketKey, TICKET_LIFETIME};

use std::path::PathBuf;

/// Why keys could not be had or used. Messages name the file and line, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the access file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the access file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}, line {line}: {reason}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("the access file {} has no {role} key{hint}", path.display())]
    MissingKey {
        path: PathBuf,
        role: &'static str,
        hint: &'static str,
    },
    #[error(
        "the access file {} can be read by other users (mode {mode:03o}): run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{ENV_KEY} is not ROLE:HEX ({reason})")]
    BadEnvKey { reason: String },
    #[error("{ENV_KEY} holds the {have} key; {who} needs {need}")]
    WrongRole {
        have: Role,
        who: &'static str,
        need: &'static str,
    },
    #[error(
        "no access key: pass --access-file PATH, or set {ENV_ACCESS_FILE}=PATH or {ENV_KEY}=ROLE:HEX \
         (looked for {}, which a master creates in its data directory on its first start)",
        default.display()
    )]
    NoKey { default: PathBuf },
    #[error("the operating system's random source failed")]
    Random,
}
