//! Job storage: a slab of compact [`Job`]s indexed by a hash map from [`JobId`] to slot, and the
//! per-DAG waiting-room state ([`DagState`]). One-off jobs have no `DagState`, which keeps a million
//! queued one-offs near 150 bytes each (see the memory test in `tests/core_memory.rs`).
//!
//! The map is only ever used for lookups, never iterated for a decision, so its order cannot make
//! the core nondeterministic; iteration for queries goes through the slab and sorts.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::dag::DagGraph;
use super::ids::{JobId, Time, WorkerId};
use super::model::{JobSpec, JobState};

/// A cheap, well-mixed hasher for integer ids (SplitMix64's finalizer). Lookups only.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// A `HashMap` keyed by ids, hashed with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Interned skill, local to one core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SkillId(pub u16);

/// Bits of [`Job::flags`].
pub mod flags {
    /// The job is a one-off (no `DagState`).
    pub const ONE_OFF: u8 = 1;
    /// Its children were released (completed, or a ready service).
    pub const RELEASED: u8 = 2;
    /// A service whose current attempt reported ready.
    pub const READY: u8 = 4;
    /// The worker confirmed the current attempt started.
    pub const STARTED: u8 = 8;
}

/// One job's spec and runtime state.
#[derive(Debug)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    pub submitted: Time,
    /// When the job entered its current state (for a ready service: when it became ready).
    pub since: Time,
    /// When the live (or last) attempt was dispatched; `Time(0)` before the first.
    pub started_at: Time,
    /// The worker of the live attempt while RUNNING.
    pub worker: Option<WorkerId>,
    /// Attempts dispatched so far; the live attempt's number while RUNNING.
    pub attempt: u32,
    pub skill: SkillId,
    pub state: JobState,
    /// Failed attempts counted against `spec.retries`.
    pub failures: u8,
    /// Attempts lost with their worker, counted against the crash limit.
    pub crashes: u8,
    pub flags: u8,
}

impl Job {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The slab of jobs plus the id index.
#[derive(Default)]
pub struct JobStore {
    slots: Vec<Option<Job>>,
    free: Vec<u32>,
    index: IdMap<JobId, u32>,
}

impl JobStore {
    pub fn insert(&mut self, job: Job) -> u32 {
        let id = job.id;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(job);
                s
            }
            None => {
                self.slots.push(Some(job));
                // The slab holds at most max_live_jobs + history, far below u32::MAX.
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(id, slot);
        slot
    }

    pub fn remove(&mut self, slot: u32) -> Option<Job> {
        let job = self.slots.get_mut(slot as usize)?.take()?;
        self.index.remove(&job.id);
        self.free.push(slot);
        Some(job)
    }

    pub fn slot_of(&self, id: JobId) -> Option<u32> {
        self.index.get(&id).copied()
    }

    pub fn get(&self, slot: u32) -> Option<&Job> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// The job in `slot`, which the caller knows is occupied.
    pub fn at(&self, slot: u32) -> &Job {
        // Callers pass slots taken from the index or a DagState of a retained submission.
        self.slots[slot as usize].as_ref().expect("occupied slot")
    }

    /// Mutable access to the job in `slot`, which the caller knows is occupied.
    pub fn at_mut(&mut self, slot: u32) -> &mut Job {
        self.slots[slot as usize].as_mut().expect("occupied slot")
    }

    /// The job with `id` if it is stored in `slot` (validates lazily deleted queue entries).
    pub fn check(&self, slot: u32, id: JobId) -> Option<&Job> {
        self.get(slot).filter(|j| j.id == id)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// All stored jobs in slab order (queries sort what they return).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Job)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, j)| j.as_ref().map(|j| (i as u32, j)))
    }
}

/// The waiting room of one DAG: its graph, unmet-dependency counters and the slots of its jobs.
#[derive(Debug)]
pub struct DagState {
    pub graph: DagGraph,
    pub remaining: Box<[u32]>,
    pub slots: Box<[u32]>,
    /// Jobs not yet terminal.
    pub live: u32,
    pub submitted: Time,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_stays_compact() {
        // 1M queued jobs must fit 256 MB with the index and queue entries; keep the slab entry small.
        assert!(
            std::mem::size_of::<Option<Job>>() <= 112,
            "{}",
            std::mem::size_of::<Option<Job>>()
        );
    }

    #[test]
    fn id_hasher_spreads_one_off_ids() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let b = BuildHasherDefault::<IdHasher>::default();
        let low: std::collections::BTreeSet<u64> = (0..1024u64)
            .map(|d| b.hash_one(JobId(d << 24)) & 1023)
            .collect();
        assert!(low.len() > 600, "poor spread: {}", low.len());
    }
}
