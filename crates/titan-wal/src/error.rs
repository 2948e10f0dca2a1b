//! Typed errors of the write-ahead log, and [`IoFailure`], the cloneable description of a failed
//! disk operation that every waiter of a failed batch receives.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use super::limits::ConfigError;
use super::record::{DecodeError, Lsn};

/// The disk operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    CreateDir,
    ListDir,
    SyncDir,
    Open,
    Create,
    Read,
    Write,
    Sync,
    Truncate,
    Rename,
    Remove,
    Close,
}

impl std::fmt::Display for IoOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            IoOp::CreateDir => "create directory",
            IoOp::ListDir => "list directory",
            IoOp::SyncDir => "sync directory",
            IoOp::Open => "open",
            IoOp::Create => "create",
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::Sync => "fdatasync",
            IoOp::Truncate => "truncate",
            IoOp::Rename => "rename",
            IoOp::Remove => "remove",
            IoOp::Close => "close",
        };
        f.write_str(name)
    }
}

/// A failed disk operation: what, where, and the OS error. Cheap to clone (shared), because one
/// failure is reported to every waiter of the batch it broke.
#[derive(Debug, Clone, Error)]
#[error("{op} {path}: {detail}", path = .inner.path.display(), op = .inner.op, detail = .inner.detail)]
pub struct IoFailure {
    inner: Arc<IoFailureInner>,
}

#[derive(Debug)]
struct IoFailureInner {
    op: IoOp,
    path: PathBuf,
    errno: Option<i32>,
    kind: std::io::ErrorKind,
    detail: String,
}

impl IoFailure {
    pub fn new(op: IoOp, path: &Path, error: &std::io::Error) -> Self {
        Self::with_errno(
            op,
            path,
            error.raw_os_error(),
            error.kind(),
            error.to_string(),
        )
    }

    /// A read or write that moved fewer bytes than asked. For writes the usual cause is a full
    /// file system, but the OS did not say so.
    pub fn short(op: IoOp, path: &Path, done: usize, wanted: usize) -> Self {
        let kind = match op {
            IoOp::Write => std::io::ErrorKind::WriteZero,
            _ => std::io::ErrorKind::UnexpectedEof,
        };
        Self::with_errno(
            op,
            path,
            None,
            kind,
            format!("short {op}: {done} of {wanted} bytes"),
        )
    }

    fn with_errno(
        op: IoOp,
        path: &Path,
        errno: Option<i32>,
        kind: std::io::ErrorKind,
        detail: String,
    ) -> Self {
        Self {
            inner: Arc::new(IoFailureInner {
                op,
                path: path.to_path_buf(),
                errno,
                kind,
                detail,
            }),
        }
    }

    pub fn op(&self) -> IoOp {
        self.inner.op
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The OS error number (`libc::ENOSPC`, `libc::EIO`, ...) when there was one.
    pub fn errno(&self) -> Option<i32> {
        self.inner.errno
    }

    pub fn kind(&self) -> std::io::ErrorKind {
        self.inner.kind
    }

    /// The file system is full (ENOSPC, EDQUOT) or the write came back short.
    pub fn is_no_space(&self) -> bool {
        matches!(
            self.inner.errno,
            Some(nix::libc::ENOSPC) | Some(nix::libc::EDQUOT)
        ) || self.inner.kind == std::io::ErrorKind::WriteZero
    }
}

/// Why `Journal::append` refused a record. Nothing was assigned or buffered in any of these cases.
#[derive(Debug, Clone, Error)]
pub enum AppendError {
    #[error("record payload of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    /// Retryable: the flusher is behind; wait for a durable point and try again.
    #[error("{pending} bytes already wait for the disk (limit {max})")]
    Backpressure { pending: usize, max: usize },
    /// The last batch failed and the journal is restoring the segment tail; retry shortly.
    #[error("journal is recovering from a failed write: {cause}")]
    Recovering { cause: IoFailure },
    /// The journal could not restore a consistent tail after a failure; it must be reopened.
    #[error("journal failed and must be reopened: {cause}")]
    Failed { cause: IoFailure },
    #[error("journal is closed")]
    Closed,
}

impl AppendError {
    /// True for errors that may go away by themselves (retry after the next durable point).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            AppendError::Backpressure { .. } | AppendError::Recovering { .. }
        )
    }
}

/// Why a record did not become durable.
#[derive(Debug, Clone, Error)]
pub enum CommitError {
    /// The batch holding the record (and every record appended after it up to `last`) failed.
    /// None of `first..=last` will ever be durable; later records get higher sequence numbers.
    #[error("records {first}..={last} were not persisted: {cause}")]
    BatchFailed {
        first: Lsn,
        last: Lsn,
        cause: IoFailure,
    },
    #[error("sequence number {lsn} was never assigned (last assigned: {last})")]
    NotAppended { lsn: Lsn, last: Lsn },
    /// The record's outcome is older than the failure history the journal keeps.
    #[error("outcome of sequence number {lsn} is no longer known")]
    OutcomeForgotten { lsn: Lsn },
}

/// Why a shard directory could not be opened or replayed.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Io(#[from] IoFailure),
    /// Records are missing: replay must continue at `expected` but the next segment, `path`,
    /// starts at `found`. A segment was deleted (or the snapshot that covered it is corrupt);
    /// the journal refuses to open rather than silently skip acknowledged records.
    #[error(
        "log has a gap: expected sequence number {expected} next, but {path} starts at {found}"
    )]
    Gap {
        expected: Lsn,
        found: Lsn,
        path: PathBuf,
    },
    /// Acknowledged records are damaged: something written after the damaged batch survives (a
    /// later batch or segment), or the damaged batch's own commit is intact (its write had
    /// completed). Cutting the log there would drop acknowledged records, and replaying past the
    /// damage would skip a change, so the journal refuses to open and changes nothing.
    #[error("{}", corrupt_message(path, *offset, reason, *last_good, *count, *first, *last, later_segment.as_deref()))]
    Corrupt {
        path: PathBuf,
        /// Offset of the first bytes that are not the next valid record.
        offset: u64,
        reason: DamageReason,
        /// The last record of the last whole batch before the damage (or the snapshot's):
        /// where `recover_to_last_good` would cut the log.
        last_good: Lsn,
        /// Records found after the damage, whole or with an intact header (0 when the evidence
        /// is a later segment).
        count: u64,
        first: Lsn,
        last: Lsn,
        /// The segment after the damaged one, when there is one (it was started only once the
        /// damaged one was complete).
        later_segment: Option<PathBuf>,
    },
    /// The log was written with an older record format this build does not read.
    #[error(
        "{path} holds records of format {format}, written by an older Titan; this build reads \
         format {current} only. Drain the jobs with the version that wrote it, or move the data \
         directory aside to start empty",
        current = super::record::RECORD_FORMAT
    )]
    OldFormat { path: PathBuf, format: u8 },
    /// Another journal (or replay) in this or another process holds the directory.
    #[error("WAL directory is in use: {path} is locked")]
    Locked { path: PathBuf },
    #[error("unexpected file name in WAL directory: {path}")]
    StrayFile { path: PathBuf },
}

/// Why a snapshot was not written.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot must cover a durable sequence number; {covered} is not durable: {cause}")]
    NotDurable { covered: Lsn, cause: CommitError },
    #[error("snapshot at {covered} is not newer than the existing snapshot at {existing}")]
    NotNewer { covered: Lsn, existing: Lsn },
    #[error("snapshot of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u64, max: u64 },
    #[error("another snapshot is being written")]
    InProgress,
    #[error(transparent)]
    Io(#[from] IoFailure),
}

#[allow(clippy::too_many_arguments)]
fn corrupt_message(
    path: &Path,
    offset: u64,
    reason: &DamageReason,
    last_good: Lsn,
    count: u64,
    first: Lsn,
    last: Lsn,
    later_segment: Option<&Path>,
) -> String {
    let evidence = match (count, later_segment) {
        (0, Some(next)) => format!("a later segment, {}, exists", next.display()),
        (0, None) => "the damaged batch's commit is intact".to_string(),
        _ => format!(
            "{count} valid records written later follow (sequence numbers {first}..={last})"
        ),
    };
    format!(
        "{} is damaged at offset {offset} ({reason}); the last good record is {last_good}, but \
         {evidence}: this is not a torn final write, so acknowledged records are damaged and the \
         log is not cut",
        path.display()
    )
}

/// A damaged or invalid file found while reading the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub path: PathBuf,
    /// Offset of the first bytes that are not the next valid record.
    pub offset: u64,
    pub reason: DamageReason,
    /// Where the log was cut: after its last whole batch (at or before `offset`).
    pub cut_at: u64,
    /// Valid records of the unfinished batch dropped with the cut.
    pub dropped: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DamageReason {
    #[error(transparent)]
    Record(#[from] DecodeError),
    #[error("sequence number {lsn} does not follow {prev}")]
    OutOfOrder { lsn: Lsn, prev: Lsn },
    #[error("sequence number {lsn} belongs to the next segment (starting at {next_start})")]
    BeyondSegment { lsn: Lsn, next_start: Lsn },
    #[error("sequence number {lsn} is before its segment's start {start}")]
    BeforeSegment { lsn: Lsn, start: Lsn },
    #[error("record {lsn} says it is number {index} of its batch; {expected} was next")]
    OutOfBatch { lsn: Lsn, index: u32, expected: u32 },
    #[error("a batch longer than {max} bytes has no commit")]
    BatchTooLong { max: usize },
}
