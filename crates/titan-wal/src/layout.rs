//! Where things live on disk: the shard directories under the WAL root, and inside one shard
//! directory the segment files (`<first-lsn>.wal`), snapshots (`snapshot-<covered-lsn>.snap`) and
//! temporary files. Listing, naming, durable directory changes and retiring an old shard directory.
//!
//! These are rare metadata operations (open, roll, snapshot, reshard); the journal's go through
//! the [`Storage`] seam, and the reshard helpers at the bottom use `std::fs` directly.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::{IoFailure, IoOp, OpenError};
use super::record::Lsn;
use super::storage::Storage;

const SEGMENT_SUFFIX: &str = ".wal";
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".tmp";
const SHARD_PREFIX: &str = "shard-";
const RETIRED_SUFFIX: &str = ".retired";
/// Held (flock, exclusive) by the one journal or replay using the directory.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// Sequence numbers are written with this many digits so names sort like numbers.
const LSN_DIGITS: usize = 20;

/// The directory of shard `index` under the WAL root: `root/shard-<index>`.
pub fn shard_dir(root: &Path, index: u32) -> PathBuf {
    root.join(format!("{SHARD_PREFIX}{index}"))
}

/// A segment file; records in it have sequence numbers `>= start` and below the next segment's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub start: Lsn,
    pub path: PathBuf,
}

/// A snapshot file covering every record up to `covered`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub covered: Lsn,
    pub path: PathBuf,
}

/// What one shard directory holds, each list sorted oldest first.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub segments: Vec<SegmentFile>,
    pub snapshots: Vec<SnapshotFile>,
    pub temporaries: Vec<PathBuf>,
}

pub(crate) fn segment_path(dir: &Path, start: Lsn) -> PathBuf {
    dir.join(format!(
        "{:0width$}{SEGMENT_SUFFIX}",
        start.0,
        width = LSN_DIGITS
    ))
}

pub(crate) fn snapshot_path(dir: &Path, covered: Lsn) -> PathBuf {
    dir.join(format!(
        "{SNAPSHOT_PREFIX}{:0width$}{SNAPSHOT_SUFFIX}",
        covered.0,
        width = LSN_DIGITS
    ))
}

pub(crate) fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

fn parse_lsn(digits: &str) -> Option<Lsn> {
    if digits.len() != LSN_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

/// Lists a shard directory. Unknown names are an error rather than silently ignored: something
/// else writing into the log directory is worth stopping for.
pub(crate) fn list<S: Storage>(storage: &S, dir: &Path) -> Result<Listing, OpenError> {
    let mut listing = Listing::default();
    let entries = storage
        .list_dir(dir)
        .map_err(|e| IoFailure::new(IoOp::ListDir, dir, &e))?;
    for path in entries {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return Err(OpenError::StrayFile { path });
        };
        if name == LOCK_FILE {
            continue;
        } else if name.ends_with(TMP_SUFFIX) {
            listing.temporaries.push(path);
        } else if let Some(start) = name.strip_suffix(SEGMENT_SUFFIX).and_then(parse_lsn) {
            listing.segments.push(SegmentFile { start, path });
        } else if let Some(covered) = name
            .strip_prefix(SNAPSHOT_PREFIX)
            .and_then(|n| n.strip_suffix(SNAPSHOT_SUFFIX))
            .and_then(parse_lsn)
        {
            listing.snapshots.push(SnapshotFile { covered, path });
        } else {
            return Err(OpenError::StrayFile { path });
        }
    }
    listing.segments.sort_by_key(|s| s.start);
    listing.snapshots.sort_by_key(|s| s.covered);
    listing.temporaries.sort();
    Ok(listing)
}

/// Locks a shard directory for one journal (or replay): two journals writing one log would
/// interleave their records, so the second `open` fails instead.
pub(crate) fn lock_dir<S: Storage>(storage: &S, dir: &Path) -> Result<S::Lock, OpenError> {
    storage.lock_dir(dir).map_err(|e| {
        let path = dir.join(LOCK_FILE);
        if e.kind() == std::io::ErrorKind::WouldBlock {
            OpenError::Locked { path }
        } else {
            IoFailure::new(IoOp::Open, &path, &e).into()
        }
    })
}

/// Makes a directory entry change (create, rename, unlink) inside `dir` durable (`std::fs`).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), IoFailure> {
    let handle = fs::File::open(dir).map_err(|e| IoFailure::new(IoOp::SyncDir, dir, &e))?;
    handle
        .sync_all()
        .map_err(|e| IoFailure::new(IoOp::SyncDir, dir, &e))
}

/// Creates `dir` (and parents) if missing, durably.
pub(crate) async fn ensure_dir<S: Storage>(storage: &S, dir: &Path) -> Result<(), IoFailure> {
    if storage.is_dir(dir) {
        return Ok(());
    }
    storage
        .create_dir_all(dir)
        .map_err(|e| IoFailure::new(IoOp::CreateDir, dir, &e))?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => storage
            .sync_dir(parent)
            .await
            .map_err(|e| IoFailure::new(IoOp::SyncDir, parent, &e)),
        _ => Ok(()),
    }
}

/// Syncs `dir` through the storage layer.
pub(crate) async fn sync_dir_on<S: Storage>(storage: &S, dir: &Path) -> Result<(), IoFailure> {
    storage
        .sync_dir(dir)
        .await
        .map_err(|e| IoFailure::new(IoOp::SyncDir, dir, &e))
}

pub(crate) fn remove_file_on<S: Storage>(storage: &S, path: &Path) -> Result<(), IoFailure> {
    storage
        .remove_file(path)
        .map_err(|e| IoFailure::new(IoOp::Remove, path, &e))
}

/// The shard directories under `root` (`shard-<n>`), sorted by index. A missing root is empty.
pub fn list_shard_dirs(root: &Path) -> Result<Vec<(u32, PathBuf)>, IoFailure> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IoFailure::new(IoOp::ListDir, root, &e)),
    };
    let mut shards = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| IoFailure::new(IoOp::ListDir, root, &e))?;
        let name = entry.file_name();
        let index = name
            .to_str()
            .and_then(|n| n.strip_prefix(SHARD_PREFIX))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(index) = index {
            shards.push((index, entry.path()));
        }
    }
    shards.sort();
    Ok(shards)
}

/// Removes a shard directory whose contents were re-persisted elsewhere. The directory is first
/// renamed to `<name>.retired` (durably), so a crash part-way through leaves either the intact
/// shard or a retired leftover that [`remove_retired`] deletes, never a half-deleted shard.
pub fn retire_dir(dir: &Path) -> Result<(), IoFailure> {
    let mut retired = dir.as_os_str().to_owned();
    retired.push(RETIRED_SUFFIX);
    let retired = PathBuf::from(retired);
    if retired.exists() {
        fs::remove_dir_all(&retired).map_err(|e| IoFailure::new(IoOp::Remove, &retired, &e))?;
    }
    fs::rename(dir, &retired).map_err(|e| IoFailure::new(IoOp::Rename, dir, &e))?;
    let parent = dir.parent().unwrap_or(Path::new("."));
    sync_dir(parent)?;
    fs::remove_dir_all(&retired).map_err(|e| IoFailure::new(IoOp::Remove, &retired, &e))?;
    sync_dir(parent)
}

/// Deletes `*.retired` leftovers of interrupted [`retire_dir`] calls under `root`.
pub fn remove_retired(root: &Path) -> Result<Vec<PathBuf>, IoFailure> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IoFailure::new(IoOp::ListDir, root, &e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| IoFailure::new(IoOp::ListDir, root, &e))?;
        let path = entry.path();
        if path.to_str().is_some_and(|p| p.ends_with(RETIRED_SUFFIX)) {
            fs::remove_dir_all(&path).map_err(|e| IoFailure::new(IoOp::Remove, &path, &e))?;
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        sync_dir(root)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_numerically() {
        let dir = Path::new("/x");
        let a = segment_path(dir, Lsn(9));
        let b = segment_path(dir, Lsn(10));
        assert!(a < b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            name.strip_suffix(SEGMENT_SUFFIX).and_then(parse_lsn),
            Some(Lsn(9))
        );
        let snap = snapshot_path(dir, Lsn(u64::MAX));
        assert!(snap
            .to_str()
            .unwrap()
            .ends_with("18446744073709551615.snap"));
    }

    #[test]
    fn parse_rejects_short_or_non_digit_names() {
        assert_eq!(parse_lsn("12"), None);
        assert_eq!(parse_lsn("0000000000000000001a"), None);
        assert_eq!(parse_lsn("00000000000000000012"), Some(Lsn(12)));
    }
}
