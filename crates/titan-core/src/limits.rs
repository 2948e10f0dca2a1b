//! Named limits of the scheduler core, in one place (STYLE.md principle 3).
//!
//! Hard limits live here as constants because ids, packed atomics and the grammar depend on them;
//! soft limits that an operator may tune (history size, live jobs, watchers) live in
//! [`CoreConfig`](super::CoreConfig) with defaults that stay inside these bounds.

/// Bits of a [`JobId`](super::JobId) that hold the job's index inside its DAG.
pub const JOB_INDEX_BITS: u32 = 24;

/// Most jobs one submission (DAG) may hold. Below `1 << JOB_INDEX_BITS` so every index fits.
pub const MAX_DAG_JOBS: usize = 1_000_000;

/// Most dependency edges one DAG may declare (bounds validation work and memory).
pub const MAX_DAG_EDGES: usize = 8_000_000;

/// Slots in the shared [`LoadTable`](super::LoadTable); a [`WorkerId`](super::WorkerId)'s slot is below this.
pub const LOAD_TABLE_SLOTS: usize = 1024;

/// Most master shards (the hungry-shard wake mask is one `u64`).
pub const MAX_SHARDS: u32 = 64;

/// Most concurrent jobs one worker may advertise (packed into 16 bits of a load slot).
pub const MAX_WORKER_CAPACITY: u32 = 4096;

/// Most attempts placed on one worker beyond its capacity (`CoreConfig::prefetch`).
pub const MAX_PREFETCH: u32 = 1024;

/// Most distinct skills one core interns (TYPE names of skill jobs plus worker skills).
pub const MAX_SKILLS: usize = 4096;

/// Most skills one worker may advertise.
pub const MAX_WORKER_SKILLS: usize = 64;

/// Longest DAG job id, skill name or file name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Longest DATA field (RUN command line, skill payload), in bytes.
pub const MAX_DATA_LEN: usize = 64 * 1024;

/// Most arguments after the file of a `RUN` job.
pub const MAX_ARGS: usize = 256;

/// Largest inline script carried by `RUN_INLINE` (decoded bytes); below the 10 MiB frame limit.
pub const MAX_INLINE_BYTES: usize = 8 * 1024 * 1024;

/// Longest delay a job may ask for: 30 days, in milliseconds (fits a `u32`).
pub const MAX_DELAY_MS: u32 = 30 * 24 * 3600 * 1000;

/// Most `Adopt` reports one core holds for workers it has not seen register yet (every attempt
/// the whole cluster can hold, prefetched ones included); beyond it a report is answered with an
/// orphan kill.
pub const MAX_PARKED_ADOPTS: usize =
    LOAD_TABLE_SLOTS * (MAX_WORKER_CAPACITY + MAX_PREFETCH) as usize;

/// Most placement attempts for one job in one pass when compare-and-swap keeps losing races.
pub const MAX_PLACEMENT_RACES: usize = 8;

const _: () = assert!(MAX_DAG_JOBS < (1 << JOB_INDEX_BITS));
const _: () = assert!(LOAD_TABLE_SLOTS <= u16::MAX as usize);
const _: () = assert!(MAX_WORKER_CAPACITY + MAX_PREFETCH < u16::MAX as u32);
const _: () = assert!(MAX_SKILLS <= u16::MAX as usize);
