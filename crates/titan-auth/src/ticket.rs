//! Capability tickets: what lets a client read one job's files on one worker.
//!
//! A worker never holds a client key. Instead the master, which checked the client's key and
//! role, hands the client a ticket in the reply that points it at the worker (today `GetLogs`;
//! the dashboard and artifact downloads use the same path): the worker's id, the job's directory
//! and an expiry, MAC'd (HMAC-SHA256) with the ticket key of that worker process, which the
//! master derived from its own secret and gave the worker when it registered. The worker checks
//! the MAC, that the ticket names it and the directory asked for, and that it has not expired,
//! before it serves a byte. A ticket grants reading that directory's files, nothing else.

use std::time::Duration;

use ring::hmac;

use super::derive::KeyBytes;

/// How long a ticket is valid after the master issued it: long enough to download a job's
/// files piece by piece, short enough that a leaked ticket soon stops working. A client asks
/// the master for a fresh one when it needs more time.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(300);

/// Bytes of a ticket's MAC.
pub const TICKET_TAG_BYTES: usize = 32;

const LABEL: &[u8] = b"titan-ticket/1 job-files\0";

/// What a ticket says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claims<'a> {
    /// The worker that may serve it.
    pub worker: u32,
    /// The job directory (in the worker's workspace) whose files it opens.
    pub job_dir: &'a str,
    /// Wall-clock expiry, milliseconds since the Unix epoch.
    pub expires_unix_ms: u64,
}

/// Why a ticket was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error(
        "the ticket's MAC does not match (forged, altered, or issued for another worker process)"
    )]
    Forged,
    #[error("the ticket expired {ago_ms} ms ago; ask the master for a fresh one")]
    Expired { ago_ms: u64 },
}

/// One worker process's ticket key: the master signs with it, the worker checks with it.
#[derive(Clone)]
pub struct TicketKey(hmac::Key);

impl TicketKey {
    pub fn new(bytes: &KeyBytes) -> TicketKey {
        TicketKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    fn message(claims: &Claims<'_>) -> Vec<u8> {
        let dir = claims.job_dir.as_bytes();
        let mut message = Vec::with_capacity(LABEL.len() + 16 + dir.len());
        message.extend_from_slice(LABEL);
        message.extend_from_slice(&claims.worker.to_be_bytes());
        message.extend_from_slice(&claims.expires_unix_ms.to_be_bytes());
        message.extend_from_slice(&(dir.len() as u32).to_be_bytes());
        message.extend_from_slice(dir);
        message
    }

    /// The MAC of a ticket with these claims.
    pub fn sign(&self, claims: &Claims<'_>) -> [u8; TICKET_TAG_BYTES] {
        let mut out = [0u8; TICKET_TAG_BYTES];
        out.copy_from_slice(hmac::sign(&self.0, &Self::message(claims)).as_ref());
        out
    }

    /// Checks the MAC (in constant time), then the expiry against `now_unix_ms`.
    pub fn check(
        &self,
        claims: &Claims<'_>,
        tag: &[u8],
        now_unix_ms: u64,
    ) -> Result<(), TicketError> {
        hmac::verify(&self.0, &Self::message(claims), tag).map_err(|_| TicketError::Forged)?;
        if now_unix_ms >= claims.expires_unix_ms {
            return Err(TicketError::Expired {
                ago_ms: now_unix_ms - claims.expires_unix_ms,
            });
        }
        Ok(())
    }
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_checks_until_it_expires_and_not_once_altered() {
        let key = TicketKey::new(&[7; 32]);
        let claims = Claims {
            worker: 3,
            job_dir: "TSK-1",
            expires_unix_ms: 1_000,
        };
        let tag = key.sign(&claims);
        assert_eq!(key.check(&claims, &tag, 999), Ok(()));
        assert_eq!(
            key.check(&claims, &tag, 1_500),
            Err(TicketError::Expired { ago_ms: 500 })
        );
        let other_dir = Claims {
            job_dir: "TSK-2",
            ..claims
        };
        assert_eq!(key.check(&other_dir, &tag, 0), Err(TicketError::Forged));
        let later = Claims {
            expires_unix_ms: u64::MAX,
            ..claims
        };
        assert_eq!(
            key.check(&later, &tag, 0),
            Err(TicketError::Forged),
            "expiry is signed"
        );
        let other_key = TicketKey::new(&[8; 32]);
        assert_eq!(other_key.check(&claims, &tag, 0), Err(TicketError::Forged));
    }
}
