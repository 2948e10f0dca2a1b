//! Job storage: a slab of compact [`Job`]s indexed by a hash map from [`JobId`] to slot, the
//! number of jobs in each state (kept exact by [`JobStore::set_state`]) and each job's last
//! failure text (kept beside the slab so a job that never failed costs nothing for it). One-off
//! jobs have no DAG state (see `waiting_room.rs`), which keeps a million queued one-offs near 150
//! bytes each (see the memory test in `tests/core_memory.rs`).
//!
//! The map is only ever used for lookups, never iterated for a decision, so its order cannot make
//! the core nondeterministic; iteration for queries goes through the slab and sorts.

use super::id_map::IdMap;
use super::ids::{JobId, Time, WorkerId};
use super::model::{JobSpec, JobState};
use super::skills::SkillId;

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

/// The slab of jobs plus the id index, the per-state counts and the last failures.
#[derive(Default)]
pub struct JobStore {
    slots: Vec<Option<Job>>,
    free: Vec<u32>,
    index: IdMap<JobId, u32>,
    /// Stored jobs by state, indexed by `JobState as usize`.
    counts: [usize; 9],
    /// The last failure of each job that has one.
    errors: IdMap<JobId, Box<str>>,
}

impl JobStore {
    pub fn insert(&mut self, job: Job) -> u32 {
        let id = job.id;
        self.counts[job.state as usize] += 1;
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

    /// Removes the job in `slot` with its last failure.
    pub fn remove(&mut self, slot: u32) -> Option<Job> {
        let job = self.slots.get_mut(slot as usize)?.take()?;
        self.index.remove(&job.id);
        self.free.push(slot);
        self.counts[job.state as usize] -= 1;
        self.errors.remove(&job.id);
        Some(job)
    }

    /// Moves the job in `slot` to `state` at `now`, keeping the per-state counts exact.
    pub fn set_state(&mut self, slot: u32, state: JobState, now: Time) {
        let job = self.at_mut(slot);
        let old = job.state;
        job.state = state;
        job.since = now;
        self.counts[old as usize] -= 1;
        self.counts[state as usize] += 1;
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

    /// Mutable access to the job in `slot`, which the caller knows is occupied. Its state changes
    /// through [`JobStore::set_state`] only.
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

    /// Stored jobs by state, indexed by `JobState as usize` (retained terminal jobs included).
    pub fn counts(&self) -> [usize; 9] {
        self.counts
    }

    /// Jobs not yet terminal.
    pub fn live(&self) -> usize {
        JobState::ALL
            .iter()
            .filter(|s| !s.is_terminal())
            .map(|&s| self.counts[s as usize])
            .sum()
    }

    /// The last failure of `id`, if it has one.
    pub fn error(&self, id: JobId) -> Option<&str> {
        self.errors.get(&id).map(|e| &**e)
    }

    /// Records the last failure of `id`.
    pub fn set_error(&mut self, id: JobId, text: Box<str>) {
        self.errors.insert(id, text);
    }
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
}
