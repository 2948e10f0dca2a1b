//! The keys a log sink opens datagrams with: derived from the master's secret (one HMAC each)
//! as datagrams name workers and attempts, and kept in a bounded cache so a busy attempt costs
//! one derivation, not one per datagram. Datagrams naming made-up workers or attempts can only
//! make the cache start over ([`MAX_CACHED_KEYS`]), never grow it.

use std::collections::HashMap;

use super::datagram::{AttemptKey, OpenKeys};
use super::limits::MAX_CACHED_KEYS;
use titan_auth::{MasterSecret, SealKey};
use titan_core::WorkerId;

/// The master's derivations of the log keys, cached.
pub struct SinkKeys {
    master: MasterSecret,
    workers: HashMap<WorkerId, SealKey>,
    attempts: HashMap<AttemptKey, SealKey>,
}

impl SinkKeys {
    pub fn new(master: MasterSecret) -> SinkKeys {
        SinkKeys {
            master,
            workers: HashMap::new(),
            attempts: HashMap::new(),
        }
    }
}

impl std::fmt::Debug for SinkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkKeys")
            .field("workers", &self.workers.len())
            .field("attempts", &self.attempts.len())
            .finish()
    }
}

/// The cached key of `id`, derived and cached first if need be.
fn cached<K: std::hash::Hash + Eq + Copy>(
    cache: &mut HashMap<K, SealKey>,
    id: K,
    derive: impl FnOnce() -> SealKey,
) -> &SealKey {
    if cache.len() >= MAX_CACHED_KEYS && !cache.contains_key(&id) {
        cache.clear();
    }
    cache.entry(id).or_insert_with(derive)
}

impl OpenKeys for SinkKeys {
    fn worker_key(&mut self, worker: WorkerId) -> Option<&SealKey> {
        let master = &self.master;
        Some(cached(&mut self.workers, worker, || {
            SealKey::new(&master.worker_log_key(worker.0))
        }))
    }

    fn attempt_key(&mut self, attempt: AttemptKey) -> Option<&SealKey> {
        let master = &self.master;
        Some(cached(&mut self.attempts, attempt, || {
            SealKey::new(&master.attempt_log_key(attempt.job.0, attempt.attempt))
        }))
    }
}
