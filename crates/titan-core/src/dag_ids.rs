//! DagId allocation for one shard. Shard `index` of `count` hands out `k * count + index` for
//! `k = next_k, next_k + 1, ...`, so the owner of any id is `dag % count`. Every id the shard meets
//! (replayed, restored, or reported by a worker after its record was lost) pushes `next_k` past
//! it, and recovery skips a margin for ids a crash may have lost: an id never names two
//! submissions.

use super::ids::{DagId, ShardInfo};

/// The next `k` of one shard's DagIds.
#[derive(Debug)]
pub struct DagIds {
    shard: ShardInfo,
    next_k: u64,
}

impl DagIds {
    pub fn new(shard: ShardInfo, first_k: u64) -> DagIds {
        DagIds {
            shard,
            next_k: first_k,
        }
    }

    /// The `k` the next submission will use.
    pub fn next_k(&self) -> u64 {
        self.next_k
    }

    /// The `k` of `dag` under this shard's count.
    pub fn k_of(&self, dag: DagId) -> u64 {
        dag.0 / u64::from(self.shard.count)
    }

    /// Whether `dag` is at or past the next id: it cannot have been handed out or met yet.
    pub fn is_fresh(&self, dag: DagId) -> bool {
        self.k_of(dag) >= self.next_k
    }

    /// A new id.
    pub fn allocate(&mut self) -> DagId {
        let dag = self.shard.dag_id(self.next_k);
        self.next_k += 1;
        dag
    }

    /// `dag` is in use: later ids pass it.
    pub fn note(&mut self, dag: DagId) {
        self.next_k = self.next_k.max(self.k_of(dag) + 1);
    }

    /// Every id an old shard handed out is below `next_dag_k * shard_count` (its snapshot's
    /// bound): later ids pass them all.
    pub fn pass_old_shard(&mut self, next_dag_k: u64, shard_count: u32) {
        let bound = next_dag_k.saturating_mul(u64::from(shard_count));
        self.next_k = self.next_k.max(bound.div_ceil(u64::from(self.shard.count)));
    }

    /// Skips `n` ids (after a restart: ids handed out after the last durable record are unknown).
    pub fn skip(&mut self, n: u64) {
        self.next_k = self.next_k.saturating_add(n);
    }
}
