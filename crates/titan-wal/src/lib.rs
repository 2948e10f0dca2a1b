//! The write-ahead log: record format, segment files, group commit, recovery and snapshots.
//!
//! One [`Journal`] per shard, living on that shard's glommio executor (it is `!Send`), owning the
//! directory `titan_data/wal/shard-N/` ([`shard_dir`]). Payloads are opaque bytes with a `kind: u8`
//! tag; the master decides what they mean.
//!
//! Contract, in the order a master uses it:
//!
//! 1. [`Journal::open`] locks the directory (flock on `LOCK`: one journal per directory), replays
//!    the newest valid snapshot and every record of every whole batch after it through a callback
//!    ([`Replayed`]), cuts a batch torn by a crash (logged with its offset), refuses a log whose
//!    acknowledged records are damaged ([`OpenError::Corrupt`], unless
//!    [`WalConfig::recover_to_last_good`] says to cut it), and returns the journal positioned
//!    after the last whole batch, plus a [`ReplayReport`].
//! 2. [`Journal::append`] assigns the next [`Lsn`] and buffers the record; it never blocks and
//!    never does IO. A flusher task writes batches through direct IO, one `O_DSYNC` write each.
//! 3. A record is acknowledged only after [`Journal::wait_durable`] returned `Ok` for it (or
//!    [`Journal::outcome`] says so). When a write or sync fails, every record not yet durable fails
//!    with [`CommitError::BatchFailed`], the segment is cut back to its last durable byte, and the
//!    journal accepts appends again with higher sequence numbers (failed numbers are never reused).
//!    If the tail cannot be restored the journal reports [`Health::Failed`] and refuses appends
//!    until reopened. [`Journal::durable_lsn`] is a watermark for cheap polling: everything at or
//!    below it is durable or was reported failed.
//! 4. [`Journal::write_snapshot`] stores a state image covering a durable sequence number and
//!    deletes what the oldest retained snapshot makes redundant, bounding disk use and replay time.
//! 5. For a changed shard count, [`replay_dir`] reads an old shard directory without changing it,
//!    and [`retire_dir`] removes it once its contents are persisted elsewhere.
//!
//! All file operations go through the [`storage::Storage`] seam: [`storage::DiskStorage`] is the
//! real disk (glommio DMA files); with the `sim` feature, `storage::SimDisk` is a disk model that
//! loses unsynced writes, tears writes and flips bits, and `sim` runs the journal on it.
//!
//! On disk: segments are named after their first sequence number and, by default, created at
//! full size and zero-filled ahead of use (`segment.rs`), so appends overwrite and each
//! synchronous write flushes data only; the logical end of a segment is always found from the
//! records.
//! Limits live in [`limits`]; file formats are documented in `record.rs` and `snapshot.rs`.
//!
//! glommio 0.9 caveat: glommio decides per thread and device whether direct-IO reads may use the
//! IO-poll ring by reading the first file opened with direct IO; an empty file makes it guess
//! wrong and every later read fails with EOPNOTSUPP. `open` and `replay_dir` therefore open a
//! non-empty probe file first; other code on the same executor thread should not open an empty
//! file with `DmaFile` before them.

mod commit;
mod error;
mod flusher;
mod journal;
mod layout;
pub mod limits;
mod record;
mod recovery;
mod scan;
mod segment;
#[cfg(feature = "sim")]
pub mod sim;
mod snapshot;
pub mod storage;

pub use error::{
    AppendError, CommitError, Damage, DamageReason, IoFailure, IoOp, OpenError, SnapshotError,
};
pub use journal::{DurableWait, Health, Journal, JournalStats, SnapshotReport};
pub use layout::{list_shard_dirs, remove_retired, retire_dir, shard_dir};
pub use limits::{CommitMode, ConfigError, WalConfig};
pub use record::{
    decode, encode_into, encode_placed, encoded_len, is_format_1, seal, BatchPlace, DecodeError,
    Decoded, Lsn, RecordView, RECORD_FORMAT, RECORD_HEADER_LEN,
};
pub use recovery::{replay_dir, replay_dir_on, ReplayReport, Replayed};
