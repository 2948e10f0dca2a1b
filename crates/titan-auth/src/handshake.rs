//! The proofs of a connection's handshake, before any other frame:
//!
//! ```text
//! server → client   Challenge { server nonce }
//! client → server   Hello { role, client nonce, client proof }
//! server → client   Welcome { server proof }           (or an Error, and the server closes)
//! ```
//!
//! Both proofs are HMAC-SHA256 under the role's secret over the role and both nonces, each
//! with its own label, so neither can stand in for the other (no reflection) and the secret
//! never crosses the wire. A recorded `Hello` fails against a fresh challenge, and a recorded
//! `Welcome` fails against a fresh client nonce: replays fail both ways. The server's proof
//! is what makes the authentication mutual: a worker takes jobs only from a master that holds
//! the worker key. The state machines that exchange these frames are `titan_proto::conn`'s
//! `Gate`; this module is the arithmetic.

use ring::hmac;

use super::secret::random_bytes;
use super::{AccessFile, AuthError, Role, Secret};

/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes of a proof (an HMAC-SHA256 tag).
pub const PROOF_BYTES: usize = 32;

/// The label of the client's proof; the version is in it so a change of scheme changes it.
const CLIENT_LABEL: &[u8] = b"titan-auth/1 client proof\0";
const SERVER_LABEL: &[u8] = b"titan-auth/1 server proof\0";

/// A fresh random value, once per handshake and side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nonce(pub [u8; NONCE_BYTES]);

impl Nonce {
    /// From the OS random source.
    pub fn random() -> Result<Nonce, AuthError> {
        Ok(Nonce(random_bytes()?))
    }
}

/// A role's secret, prepared for making and checking proofs.
#[derive(Clone)]
pub struct ProofKey(hmac::Key);

impl ProofKey {
    pub fn new(secret: &Secret) -> ProofKey {
        ProofKey(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()))
    }
}

impl std::fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProofKey(..)")
    }
}

/// Which side makes a proof: each has its own label, so one side's proof never passes as the
/// other's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Party {
    Client,
    Server,
}

impl Party {
    fn label(self) -> &'static [u8] {
        match self {
            Party::Client => CLIENT_LABEL,
            Party::Server => SERVER_LABEL,
        }
    }
}

/// The transcript both proofs cover: the party's label, the role, both nonces.
fn transcript(party: Party, role: Role, server: &Nonce, client: &Nonce) -> Vec<u8> {
    let label = party.label();
    let mut message = Vec::with_capacity(label.len() + 1 + 2 * NONCE_BYTES);
    message.extend_from_slice(label);
    message.push(role.to_wire());
    message.extend_from_slice(&server.0);
    message.extend_from_slice(&client.0);
    message
}

/// `party`'s proof that it holds `role`'s secret (`key`), over both nonces.
pub fn proof(
    key: &ProofKey,
    party: Party,
    role: Role,
    server: &Nonce,
    client: &Nonce,
) -> [u8; PROOF_BYTES] {
    let tag = hmac::sign(&key.0, &transcript(party, role, server, client));
    let mut out = [0u8; PROOF_BYTES];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Checks `party`'s proof in constant time.
pub fn check_proof(
    key: &ProofKey,
    party: Party,
    role: Role,
    server: &Nonce,
    client: &Nonce,
    claimed: &[u8],
) -> bool {
    hmac::verify(&key.0, &transcript(party, role, server, client), claimed).is_ok()
}

/// The keys a server accepts: one per role.
#[derive(Clone, Debug)]
pub struct ServerKeys {
    worker: ProofKey,
    client: ProofKey,
    read_only: ProofKey,
}

impl ServerKeys {
    /// The role keys of a master's access file (`None` when one is missing).
    pub fn from_access(file: &AccessFile) -> Option<ServerKeys> {
        Some(ServerKeys {
            worker: ProofKey::new(file.worker.as_ref()?),
            client: ProofKey::new(file.client.as_ref()?),
            read_only: ProofKey::new(file.read_only.as_ref()?),
        })
    }

    pub fn key(&self, role: Role) -> &ProofKey {
        match role {
            Role::Worker => &self.worker,
            Role::Client => &self.client,
            Role::ReadOnly => &self.read_only,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_check_with_the_right_key_role_and_nonces_only() {
        let secret = Secret::random().unwrap();
        let key = ProofKey::new(&secret);
        let (server, client) = (Nonce::random().unwrap(), Nonce::random().unwrap());
        let (c, s, role) = (Party::Client, Party::Server, Role::Client);
        let made = proof(&key, c, role, &server, &client);
        assert!(check_proof(&key, c, role, &server, &client, &made));
        let other = ProofKey::new(&Secret::random().unwrap());
        assert!(
            !check_proof(&other, c, role, &server, &client, &made),
            "wrong key"
        );
        assert!(
            !check_proof(&key, c, Role::ReadOnly, &server, &client, &made),
            "wrong role"
        );
        let fresh = Nonce::random().unwrap();
        assert!(
            !check_proof(&key, c, role, &fresh, &client, &made),
            "replayed"
        );
        assert!(
            !check_proof(&key, c, role, &server, &client, &made[..31]),
            "cut short"
        );
        // The server's proof over the same transcript differs: neither stands in for the other.
        let answer = proof(&key, s, role, &server, &client);
        assert_ne!(answer, made);
        assert!(check_proof(&key, s, role, &server, &client, &answer));
        assert!(!check_proof(&key, s, role, &server, &client, &made));
    }
}
