//! Every limit of the write-ahead log, named in one place, and the configuration that carries them.
//!
//! The constants are the defaults; [`WalConfig`] lets the master (and the tests) choose others, and
//! [`WalConfig::validate`] rejects combinations that could not work (a record larger than a segment,
//! a batch smaller than one record, ...), so the rest of the module can rely on them.

use std::time::Duration;

use thiserror::Error;

use super::record::RECORD_HEADER_LEN;

/// Direct-IO block size: every write starts and ends on a multiple of it. 4 KiB is the page and
/// ext4 block size; it is a multiple of every logical block size glommio reports (512 or 4096).
pub const BLOCK_BYTES: usize = 4096;

/// A segment is rolled (a new file started) before it would grow past this many bytes.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Largest payload a single record may carry. Submits with inline script bytes are the big ones.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 4 << 20;

/// Most bytes written by one synchronous write. A larger backlog is written as several
/// batches so the first records of a burst are not held back by the last ones.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1 << 20;

/// Most encoded bytes that may wait for the flusher. An append beyond it is refused with
/// `AppendError::Backpressure` (retryable) instead of letting memory grow without bound.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 16 << 20;

/// Under load (at least `BUSY_RECORDS_PER_MS` records written per millisecond, see `flusher.rs`),
/// the least time between the starts of two writes, so batches grow instead of the number of
/// writes; a quiet log writes at once. Zero: natural batching only (appends that arrive while a
/// write is in flight form the next batch). 250 µs lifted NOOP end to end at capacity 16 from a
/// median 70% to 76% of memory-only (5 rounds each, `BENCHMARKS.md`); 500 µs, with snapshots
/// every 500,000 records, to 81% (was 72% in the same run), with acknowledged submits at 128 in
/// flight unchanged (130-135k/s); 1 ms cost those a fifth. It costs a single job nothing.
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_micros(500);

/// How many snapshots are kept. With two, a corrupt newest snapshot can fall back to the previous
/// one, because segments are deleted only once the *oldest* kept snapshot covers them.
pub const DEFAULT_SNAPSHOTS_RETAINED: usize = 2;

/// How many failed batches the journal remembers so that a late `wait_durable` on one of their
/// sequence numbers still answers "failed". Older failures answer `OutcomeForgotten`.
pub const MAX_REMEMBERED_FAILURES: usize = 256;

/// Size of each read during recovery and snapshot loading.
pub const READ_CHUNK_BYTES: usize = 1 << 20;

/// Reads kept in flight ahead of the scanner during recovery.
pub const READ_AHEAD_CHUNKS: usize = 4;

/// Size of each write of a snapshot file.
pub const SNAPSHOT_WRITE_CHUNK_BYTES: usize = 1 << 20;

/// Largest snapshot payload accepted (and believed when read back).
pub const MAX_SNAPSHOT_BYTES: u64 = 4 << 30;

/// When records become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Group commit: one synchronous write per batch of records.
    Group,
    /// One synchronous write per record: the baseline group commit is measured against.
    PerRecord,
}

/// Configuration of one shard's journal. `WalConfig::default()` uses the constants above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    pub segment_bytes: u64,
    pub max_record_bytes: usize,
    pub max_batch_bytes: usize,
    pub max_pending_bytes: usize,
    pub batch_window: Duration,
    pub snapshots_retained: usize,
    pub commit_mode: CommitMode,
    /// Create segments at full size, zero-filled, so appends overwrite instead of extending the
    /// file and each synchronous write flushes data only (no file-system journal commit).
    pub preallocate: bool,
    /// The operator's choice for a log corrupt in the middle: `None` (the default) refuses to
    /// open it; `Some(dir)` copies the damaged segment and every later one into
    /// `dir/<shard directory name>/` and cuts the log after its last good batch, dropping the
    /// acknowledged records after it (`titan master --recover-to-last-good`).
    pub recover_to_last_good: Option<std::path::PathBuf>,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            batch_window: DEFAULT_BATCH_WINDOW,
            snapshots_retained: DEFAULT_SNAPSHOTS_RETAINED,
            commit_mode: CommitMode::Group,
            preallocate: true,
            recover_to_last_good: None,
        }
    }
}

/// A configuration that cannot work, with the two numbers that disagree.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("max_record_bytes must be at least 1 and at most {max}, got {value}")]
    RecordSize { value: usize, max: usize },
    #[error("segment_bytes {segment} is not a multiple of the block size {block}")]
    SegmentUnaligned { segment: u64, block: usize },
    #[error("segment_bytes {segment} cannot hold one largest record of {record} encoded bytes")]
    SegmentTooSmall { segment: u64, record: u64 },
    #[error(
        "max_pending_bytes {pending} cannot hold one largest record of {record} encoded bytes"
    )]
    PendingTooSmall { pending: usize, record: usize },
    #[error("max_batch_bytes must be at least one block ({min}), got {value}")]
    BatchTooSmall { value: usize, min: usize },
    #[error("snapshots_retained must be at least 1")]
    NoSnapshotRetained,
}

/// Records larger than this could not have their length in a `u32` header field with room to spare.
const ABSOLUTE_MAX_RECORD_BYTES: usize = 1 << 30;

impl WalConfig {
    /// Encoded size (header, payload and padding) of the largest record this configuration allows.
    pub fn max_encoded_record_bytes(&self) -> usize {
        super::record::encoded_len(self.max_record_bytes)
    }

    /// Checks that the limits fit together; `Journal::open` calls it first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_record_bytes == 0 || self.max_record_bytes > ABSOLUTE_MAX_RECORD_BYTES {
            return Err(ConfigError::RecordSize {
                value: self.max_record_bytes,
                max: ABSOLUTE_MAX_RECORD_BYTES,
            });
        }
        let record = self.max_encoded_record_bytes();
        if self.segment_bytes % BLOCK_BYTES as u64 != 0 {
            return Err(ConfigError::SegmentUnaligned {
                segment: self.segment_bytes,
                block: BLOCK_BYTES,
            });
        }
        if self.segment_bytes < record as u64 {
            return Err(ConfigError::SegmentTooSmall {
                segment: self.segment_bytes,
                record: record as u64,
            });
        }
        if self.max_pending_bytes < record {
            return Err(ConfigError::PendingTooSmall {
                pending: self.max_pending_bytes,
                record,
            });
        }
        if self.max_batch_bytes < BLOCK_BYTES.max(RECORD_HEADER_LEN) {
            return Err(ConfigError::BatchTooSmall {
                value: self.max_batch_bytes,
                min: BLOCK_BYTES,
            });
        }
        if self.snapshots_retained == 0 {
            return Err(ConfigError::NoSnapshotRetained);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert_eq!(WalConfig::default().validate(), Ok(()));
    }

    #[test]
    fn record_larger_than_segment_is_rejected() {
        let config = WalConfig {
            segment_bytes: 4096,
            max_record_bytes: 4096,
            ..WalConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::SegmentTooSmall { .. })
        ));
    }

    #[test]
    fn zero_snapshots_retained_is_rejected() {
        let config = WalConfig {
            snapshots_retained: 0,
            ..WalConfig::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::NoSnapshotRetained));
    }
}
