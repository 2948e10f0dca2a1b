//! Typed identifiers and time: [`Time`], [`Lsn`], [`DagId`], [`JobId`], [`WorkerId`], [`ShardInfo`],
//! and the user-facing job references ([`JobRef`]) the CLI prints and parses.
//!
//! Every submission gets a [`DagId`]; a one-off job is a DAG of one. A shard allocates DagIds as
//! `k * count + index`, so the owner of any DAG is `dag % count` and a submit never needs to be
//! forwarded. A [`JobId`] packs `(dag, index)` as `dag << JOB_INDEX_BITS | index`, which also makes
//! JobId order equal submission order on a shard (the FIFO tie-break of the ready queues).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::limits::{JOB_INDEX_BITS, LOAD_TABLE_SLOTS, MAX_DAG_JOBS, MAX_NAME_LEN};

/// Wall-clock time in microseconds since the UNIX epoch, supplied by the shell (made non-decreasing).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    /// The epoch itself; also used as "never" for optional times stored compactly.
    pub const ZERO: Time = Time(0);

    /// A time from microseconds since the epoch.
    pub const fn from_micros(us: u64) -> Time {
        Time(us)
    }

    /// A time from milliseconds since the epoch.
    pub const fn from_millis(ms: u64) -> Time {
        Time(ms.saturating_mul(1000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// `self + ms` milliseconds, saturating.
    pub fn add_millis(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms.saturating_mul(1000)))
    }

    /// How long after `earlier` this time is (zero when it is not after it).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Time {
    type Output = Time;

    /// `self + d`, saturating at the end of time.
    fn add(self, d: Duration) -> Time {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(us))
    }
}

/// Log sequence number of a journal record; records of one core are numbered 1, 2, 3, ...
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

/// One submission: a DAG, or a one-off job (a DAG of one). Displayed as `dag-<n>`.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DagId(pub u64);

impl DagId {
    /// Largest DagId whose jobs still fit a [`JobId`].
    pub const MAX: u64 = u64::MAX >> JOB_INDEX_BITS;

    /// The shard that owns this submission.
    pub fn owner(self, shard_count: u32) -> u32 {
        // The remainder is below shard_count, a u32, so the cast cannot truncate.
        (self.0 % u64::from(shard_count.max(1))) as u32
    }

    /// The id of job `index` of this DAG (index 0 for a one-off).
    pub fn job(self, index: u32) -> JobId {
        JobId::new(self, index)
    }
}

impl fmt::Display for DagId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dag-{}", self.0)
    }
}

/// A job: `(dag, index within the dag)` packed into one `u64`.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

impl JobId {
    const INDEX_MASK: u64 = (1 << JOB_INDEX_BITS) - 1;

    /// Packs a job id. `index` must be below `MAX_DAG_JOBS` (the core validates DAG sizes first).
    pub fn new(dag: DagId, index: u32) -> JobId {
        debug_assert!((index as usize) < MAX_DAG_JOBS);
        debug_assert!(dag.0 <= DagId::MAX);
        JobId(dag.0 << JOB_INDEX_BITS | u64::from(index))
    }

    /// The submission this job belongs to.
    pub fn dag(self) -> DagId {
        DagId(self.0 >> JOB_INDEX_BITS)
    }

    /// The job's index inside its DAG (its line, 0-based).
    pub fn index(self) -> u32 {
        // Masked to JOB_INDEX_BITS (< 32) bits, so it fits a u32.
        (self.0 & Self::INDEX_MASK) as u32
    }
}

impl fmt::Display for JobId {
    /// The internal form `job-<dag>.<index>`; user-facing labels come from [`JobRef`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job-{}.{}", self.dag().0, self.index())
    }
}

/// A worker: `generation << 16 | slot`, where `slot` indexes the shared [`LoadTable`](super::LoadTable).
///
/// The shell assigns ids: a free slot and that slot's next generation (never 0). Generations let a
/// slot be reused while stale reports about its previous worker are still in flight: every load
/// operation checks the generation, so a late release for an old worker cannot touch the new one.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(pub u32);

impl WorkerId {
    /// A worker id, or `None` when the slot is outside the load table or the generation is 0.
    pub fn new(slot: u16, generation: u16) -> Option<WorkerId> {
        if usize::from(slot) >= LOAD_TABLE_SLOTS || generation == 0 {
            return None;
        }
        Some(WorkerId(u32::from(generation) << 16 | u32::from(slot)))
    }

    /// The worker's slot in the load table.
    pub fn slot(self) -> usize {
        (self.0 & 0xffff) as usize
    }

    /// The slot's generation this worker holds.
    pub fn generation(self) -> u16 {
        (self.0 >> 16) as u16
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "W{}.{}", self.slot(), self.generation())
    }
}

/// Which shard a core is, out of how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    /// This shard, `0..count`.
    pub index: u32,
    /// Number of shards, `1..=MAX_SHARDS`.
    pub count: u32,
}

impl ShardInfo {
    /// A single-shard setup.
    pub const SINGLE: ShardInfo = ShardInfo { index: 0, count: 1 };

    /// The DagId this shard allocates for its `k`-th submission.
    pub fn dag_id(self, k: u64) -> DagId {
        DagId(k * u64::from(self.count) + u64::from(self.index))
    }

    /// Whether this shard owns `dag`.
    pub fn owns(self, dag: DagId) -> bool {
        dag.owner(self.count) == self.index
    }
}

/// A user-facing reference to a job or DAG, as printed and typed at the CLI.
///
/// - `TSK-<n>`: the one-off job of submission `n`;
/// - `dag-<n>`: the DAG `n` as a whole;
/// - `dag-<n>:<NAME>`: the job `NAME` of DAG `n`;
/// - `NAME`: the most recent job with that name (resolved by the master across shards).
///
/// Parsing tries the prefixed forms first (prefixes are case-insensitive), so a bare name that looks
/// like `TSK-7` is read as the task.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum JobRef {
    /// A one-off job.
    Task(DagId),
    /// A whole DAG.
    Dag(DagId),
    /// A named job of a DAG.
    DagJob(DagId, Box<str>),
    /// The most recent job with this name.
    Name(Box<str>),
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobRef::Task(d) => write!(f, "TSK-{}", d.0),
            JobRef::Dag(d) => write!(f, "dag-{}", d.0),
            JobRef::DagJob(d, n) => write!(f, "dag-{}:{}", d.0, n),
            JobRef::Name(n) => f.write_str(n),
        }
    }
}

/// Why a [`JobRef`] did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid job reference {input:?}: {reason}")]
pub struct JobRefError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: NameProblem,
}

/// What is wrong with a name (a DAG job id, a skill, a job reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    /// Nothing left after trimming.
    #[error("it is empty")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("it is longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A character outside `A-Z a-z 0-9 _ . -`.
    #[error("character {ch:?} is not allowed (use letters, digits, '_', '.', '-')")]
    BadChar {
        /// The offending character.
        ch: char,
    },
    /// A number after `TSK-` or `dag-` did not parse or is out of range.
    #[error("the number after the prefix is not a valid id")]
    BadNumber,
}

/// Checks a DAG job id or skill name: 1..=MAX_NAME_LEN bytes of `A-Z a-z 0-9 _ . -`.
pub fn check_name(name: &str) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameProblem::TooLong { max: MAX_NAME_LEN });
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        Some(ch) => Err(NameProblem::BadChar { ch }),
        None => Ok(()),
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_dag_number(digits: &str) -> Option<DagId> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= DagId::MAX)
        .map(DagId)
}

impl FromStr for JobRef {
    type Err = JobRefError;

    fn from_str(input: &str) -> Result<JobRef, JobRefError> {
        let s = input.trim();
        let err = |reason| JobRefError {
            input: input.to_string(),
            reason,
        };
        if let Some(rest) = strip_prefix_ci(s, "TSK-") {
            return parse_dag_number(rest)
                .map(JobRef::Task)
                .ok_or(err(NameProblem::BadNumber));
        }
        if let Some(rest) = strip_prefix_ci(s, "dag-") {
            let (digits, name) = match rest.split_once(':') {
                Some((d, n)) => (d, Some(n.trim())),
                None => (rest, None),
            };
            let dag = parse_dag_number(digits).ok_or(err(NameProblem::BadNumber))?;
            return match name {
                None => Ok(JobRef::Dag(dag)),
                Some(n) => {
                    check_name(n).map_err(err)?;
                    Ok(JobRef::DagJob(dag, n.into()))
                }
            };
        }
        check_name(s).map_err(err)?;
        Ok(JobRef::Name(s.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_packs_dag_and_index() {
        let id = JobId::new(DagId(77), 123_456);
        assert_eq!(id.dag(), DagId(77));
        assert_eq!(id.index(), 123_456);
        assert!(JobId::new(DagId(1), 999_999) < JobId::new(DagId(2), 0));
    }

    #[test]
    fn shard_allocation_and_ownership_agree() {
        let shard = ShardInfo { index: 3, count: 4 };
        for k in 0..10 {
            let dag = shard.dag_id(k);
            assert!(shard.owns(dag));
            assert_eq!(dag.owner(4), 3);
        }
    }

    #[test]
    fn worker_id_checks_slot_and_generation() {
        let w = WorkerId::new(5, 9).expect("valid");
        assert_eq!((w.slot(), w.generation()), (5, 9));
        assert!(WorkerId::new(5, 0).is_none());
        assert!(WorkerId::new(LOAD_TABLE_SLOTS as u16, 1).is_none());
    }

    #[test]
    fn job_refs_round_trip() {
        for text in ["TSK-12", "dag-4", "dag-4:RUN_CALC", "WORKER_A"] {
            let r: JobRef = text.parse().expect(text);
            assert_eq!(r.to_string(), text);
        }
        assert_eq!("tsk-3".parse::<JobRef>().unwrap(), JobRef::Task(DagId(3)));
        assert_eq!(" DAG-3 ".parse::<JobRef>().unwrap(), JobRef::Dag(DagId(3)));
    }

    #[test]
    fn bad_job_refs_are_typed_errors() {
        assert_eq!(
            "TSK-x".parse::<JobRef>().unwrap_err().reason,
            NameProblem::BadNumber
        );
        assert_eq!("".parse::<JobRef>().unwrap_err().reason, NameProblem::Empty);
        assert_eq!(
            "a b".parse::<JobRef>().unwrap_err().reason,
            NameProblem::BadChar { ch: ' ' }
        );
        assert_eq!(
            "dag-1:".parse::<JobRef>().unwrap_err().reason,
            NameProblem::Empty
        );
    }

    #[test]
    fn time_arithmetic_saturates() {
        let t = Time::from_millis(5);
        assert_eq!(t + Duration::from_millis(1), Time(6000));
        assert_eq!(Time(10).since(Time(20)), Duration::ZERO);
        assert_eq!(Time(u64::MAX).add_millis(1), Time(u64::MAX));
    }
}
