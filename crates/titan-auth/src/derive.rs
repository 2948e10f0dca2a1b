//! The master-only secret and the keys derived from it. Every derivation is one HMAC-SHA256
//! under the master secret over a label and the values the key is for, so each key is bound to
//! its purpose and its job attempt or worker, and a restarted master derives the same keys (the
//! secret lives in the access file): an attempt adopted after a restart keeps its log key.
//!
//! | key | for | handed out |
//! |---|---|---|
//! | attempt log key | sealing one attempt's log lines | with the attempt's `RunJob` |
//! | worker log key | sealing a worker's datagram headers | with `Registered` |
//! | worker ticket key | MAC'ing tickets for one worker process | with `Registered` |

use ring::hmac;

use super::{Secret, SECRET_BYTES};

/// A derived key as it travels to a worker.
pub type KeyBytes = [u8; SECRET_BYTES];

const ATTEMPT_LOG: &[u8] = b"titan-log/1 attempt\0";
const WORKER_LOG: &[u8] = b"titan-log/1 worker\0";
const TICKET: &[u8] = b"titan-ticket/1 worker\0";

/// The secret only the master holds.
#[derive(Clone)]
pub struct MasterSecret(hmac::Key);

impl MasterSecret {
    pub fn new(secret: &Secret) -> MasterSecret {
        MasterSecret(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()))
    }

    fn derive(&self, label: &[u8], parts: &[&[u8]]) -> KeyBytes {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(label);
        for part in parts {
            context.update(part);
        }
        let mut out = [0u8; SECRET_BYTES];
        out.copy_from_slice(context.sign().as_ref());
        out
    }

    /// The key that seals the log lines of `attempt` of `job`.
    pub fn attempt_log_key(&self, job: u64, attempt: u32) -> KeyBytes {
        self.derive(ATTEMPT_LOG, &[&job.to_be_bytes(), &attempt.to_be_bytes()])
    }

    /// The key that seals the headers of worker `worker`'s datagrams.
    pub fn worker_log_key(&self, worker: u32) -> KeyBytes {
        self.derive(WORKER_LOG, &[&worker.to_be_bytes()])
    }

    /// The key of the tickets for worker `worker`, process `instance` (a worker id is reused
    /// once its worker leaves; the instance is not).
    pub fn ticket_key(&self, worker: u32, instance: u64) -> KeyBytes {
        self.derive(TICKET, &[&worker.to_be_bytes(), &instance.to_be_bytes()])
    }
}

impl std::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_stable_and_differ_by_purpose_and_subject() {
        let secret = Secret::random().unwrap();
        let master = MasterSecret::new(&secret);
        let again = MasterSecret::new(&secret);
        assert_eq!(master.attempt_log_key(7, 1), again.attempt_log_key(7, 1));
        let keys = [
            master.attempt_log_key(7, 1),
            master.attempt_log_key(7, 2),
            master.attempt_log_key(8, 1),
            master.worker_log_key(7),
            master.ticket_key(7, 1),
            master.ticket_key(7, 2),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let other = MasterSecret::new(&Secret::random().unwrap());
        assert_ne!(
            other.attempt_log_key(7, 1),
            keys[0],
            "another master's keys differ"
        );
    }
}
