//! The master's keys: its access file, loaded (or created on the first start) before any shard
//! serves, and what is made from it — each connection's challenge, a registering worker's log
//! and ticket keys, an attempt's log key at dispatch, and the tickets that let a client read a
//! job's files on a worker. The master-only secret never leaves this process; only keys derived
//! from it do.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::info;

use titan_auth::ticket::TICKET_LIFETIME;
use titan_auth::{AccessFile, AuthError, Claims, MasterSecret, ServerKeys, TicketKey};
use titan_core::{JobId, WorkerId};
use titan_proto::message::logs::Ticket;
use titan_proto::message::KeyBytes;

/// What the master authenticates and derives with.
pub(crate) struct MasterAuth {
    /// Checks the proofs of connecting clients and workers, per role.
    pub server: Arc<ServerKeys>,
    /// The master-only secret.
    pub secret: MasterSecret,
}

impl MasterAuth {
    /// Loads the access file at `path`, creating it with fresh keys on the first start.
    pub fn load(path: &Path) -> Result<MasterAuth, AuthError> {
        let (file, created) = AccessFile::load_or_create(path)?;
        if created {
            info!(path = %path.display(), "created the access file (keys for workers, clients and read-only clients)");
        }
        // `load_or_create` refuses a file without all four keys, so both are there.
        let missing = |role| AuthError::MissingKey {
            path: path.to_path_buf(),
            role,
            hint: "",
        };
        let server = ServerKeys::from_access(&file).ok_or_else(|| missing("role"))?;
        let master = file.master.as_ref().ok_or_else(|| missing("master"))?;
        Ok(MasterAuth {
            server: Arc::new(server),
            secret: MasterSecret::new(master),
        })
    }

    /// The keys a worker gets with its registration: its log key and its ticket key.
    pub fn registration_keys(&self, worker: WorkerId, instance: u64) -> (KeyBytes, KeyBytes) {
        (
            KeyBytes(self.secret.worker_log_key(worker.0)),
            KeyBytes(self.secret.ticket_key(worker.0, instance)),
        )
    }

    /// The key sealing the log lines of `attempt` of `job` (one HMAC).
    pub fn attempt_key(&self, job: JobId, attempt: u32) -> KeyBytes {
        KeyBytes(self.secret.attempt_log_key(job.0, attempt))
    }

    /// A ticket to read `job_dir` on worker `worker` (process `instance`) for
    /// [`TICKET_LIFETIME`] from now.
    pub fn ticket(&self, worker: WorkerId, instance: u64, job_dir: &str) -> Ticket {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let expires_unix_ms = (now + TICKET_LIFETIME).as_millis() as u64;
        let key = TicketKey::new(&self.secret.ticket_key(worker.0, instance));
        let claims = Claims {
            worker: worker.0,
            job_dir,
            expires_unix_ms,
        };
        Ticket {
            worker,
            job_dir: job_dir.to_string(),
            expires_unix_ms,
            tag: KeyBytes(key.sign(&claims)),
        }
    }
}
