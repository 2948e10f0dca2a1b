//! Reading a shard directory back: choose the newest usable snapshot, replay the records after it
//! segment by segment, find where the log really ends, and judge any damage.
//!
//! [`scan_dir`] only reads; it returns what it found and what would have to change (a torn tail
//! to cut, later segments that are no longer part of the log). `Journal::open` applies that plan
//! before appending; [`replay_dir`] (for old shard directories after a change of the shard count)
//! only reports it. Segments that the chosen snapshot fully covers are not read at all, so recovery
//! time is bounded by the snapshot interval, not by the age of the log.
//!
//! **Torn or corrupt.** Only the batch being written when the host went down can be torn, and it
//! was never acknowledged: its write had not returned. Every earlier batch was written whole
//! before the next one started, and a segment is only started once the previous one is complete.
//! So damage is taken for a torn final write only when nothing written later survives: no later
//! segment, and after the damage no commit (the damaged batch's own commit intact means its write
//! completed; a later batch's means it was followed), no first record of a batch, and no record
//! of another batch. Anything else is corruption of acknowledged records: opening fails with
//! [`OpenError::Corrupt`] naming the file, the offset and the last good record, and nothing is
//! cut or deleted, unless the operator asked to cut the log after its last good batch
//! ([`WalConfig::recover_to_last_good`]), which first copies every segment it would change aside.
//! Records a snapshot covers are not evidence either way: losing them loses nothing.

use std::path::{Path, PathBuf};

use tracing::{error, warn};

use super::error::{Damage, DamageReason, IoFailure, IoOp, OpenError};
use super::layout::{self, Listing, SegmentFile};
use super::limits::WalConfig;
use super::record::{is_format_1, DecodeError, Lsn, RecordView, RECORD_FORMAT_1};
use super::scan::{following_records, scan_segment, Following, SegmentBounds, SegmentScan};
use super::snapshot::{self, SnapshotCorruption};
use super::storage::{DiskStorage, Storage};

/// What replay hands to the caller, in log order: at most one snapshot, then records after it.
#[derive(Debug, Clone, Copy)]
pub enum Replayed<'a> {
    /// The state image covering every record up to `covered`.
    Snapshot { covered: Lsn, bytes: &'a [u8] },
    /// A record after the snapshot (or after the start of the log).
    Record(RecordView<'a>),
}

/// What a replay found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// The snapshot delivered, if any.
    pub snapshot: Option<Lsn>,
    /// Snapshot files that failed verification (skipped; `open` deletes them).
    pub corrupt_snapshots: Vec<PathBuf>,
    /// Records delivered to the callback.
    pub records: u64,
    /// The highest sequence number the log and snapshot account for.
    pub last_lsn: Lsn,
    /// Where the log stops being valid, if it ends in anything but zeros after a whole batch.
    pub damage: Option<Damage>,
    /// Segments after damage; no longer part of the log (`open` deletes them).
    pub cut_segments: Vec<PathBuf>,
    /// Copies of segments kept aside before `recover_to_last_good` cut a corrupt log.
    pub copies: Vec<PathBuf>,
}

/// The segment the log ends in.
#[derive(Debug, Clone)]
pub(crate) struct TailSegment {
    pub file: SegmentFile,
    pub end: u64,
    pub file_len: u64,
}

/// Everything [`scan_dir`] learned, for `Journal::open` to act on.
#[derive(Debug)]
pub(crate) struct Scanned {
    pub report: ReplayReport,
    pub listing: Listing,
    pub tail: Option<TailSegment>,
    /// The segments that remain part of the log, oldest first (`tail` is the last).
    pub kept_segments: Vec<SegmentFile>,
}

/// Index of the first segment not fully covered by `covered`: segment `i` holds records below the
/// start of segment `i + 1`, so it is covered when that start is at most `covered + 1`.
pub(crate) fn first_needed_segment(segments: &[SegmentFile], covered: Lsn) -> usize {
    segments
        .windows(2)
        .position(|pair| pair[1].start > covered.next())
        .unwrap_or(segments.len().saturating_sub(1))
}

fn check_gap(segments: &[SegmentFile], covered: Lsn) -> Result<(), OpenError> {
    match segments.first() {
        Some(oldest) if oldest.start > covered.next() => Err(OpenError::Gap {
            expected: covered.next(),
            found: oldest.start,
            path: oldest.path.clone(),
        }),
        _ => Ok(()),
    }
}

/// Delivers the newest valid snapshot; returns what it covers (0 without one).
async fn replay_snapshot<S: Storage>(
    storage: &S,
    listing: &Listing,
    report: &mut ReplayReport,
    on: &mut dyn FnMut(Replayed<'_>),
) -> Result<Lsn, OpenError> {
    for file in listing.snapshots.iter().rev() {
        match snapshot::load(storage, file).await? {
            Ok(loaded) => {
                check_gap(&listing.segments, file.covered)?;
                on(Replayed::Snapshot {
                    covered: file.covered,
                    bytes: loaded.payload(),
                });
                report.snapshot = Some(file.covered);
                return Ok(file.covered);
            }
            Err(corruption) => {
                report_corrupt_snapshot(&file.path, &corruption);
                report.corrupt_snapshots.push(file.path.clone());
            }
        }
    }
    check_gap(&listing.segments, Lsn::ZERO)?;
    Ok(Lsn::ZERO)
}

fn report_corrupt_snapshot(path: &Path, corruption: &SnapshotCorruption) {
    error!(path = %path.display(), %corruption, "corrupt snapshot skipped; falling back to an older one");
}

/// Reads the shard directory `dir`: snapshot, then records, calling `on` for each in order.
pub(crate) async fn scan_dir<S: Storage>(
    storage: &S,
    dir: &Path,
    config: &WalConfig,
    on: &mut dyn FnMut(Replayed<'_>),
) -> Result<Scanned, OpenError> {
    let listing = layout::list(storage, dir)?;
    let mut report = ReplayReport::default();
    let covered = replay_snapshot(storage, &listing, &mut report, on).await?;
    let segments = &listing.segments;
    let first = first_needed_segment(segments, covered);
    let mut last_lsn = Lsn::ZERO;
    let mut tail = None;
    let mut kept = segments[..first.min(segments.len())].to_vec();
    for (i, segment) in segments.iter().enumerate().skip(first) {
        // Each segment is named after the record that follows the previous segment's last one
        // (or the snapshot's, when the snapshot reaches further than the log did).
        let expected = last_lsn.max(covered).next();
        if i > first && segment.start > expected {
            return Err(OpenError::Gap {
                expected,
                found: segment.start,
                path: segment.path.clone(),
            });
        }
        let bounds = SegmentBounds {
            start: segment.start,
            next_start: segments.get(i + 1).map(|s| s.start),
            prev: last_lsn,
            skip_upto: covered,
            max_payload: config.max_record_bytes,
            max_batch_bytes: config.max_pending_bytes.max(config.max_batch_bytes),
        };
        let scan = scan_segment(storage, &segment.path, bounds, &mut |r| {
            on(Replayed::Record(r))
        })
        .await?;
        report.records += scan.delivered;
        last_lsn = scan.last_lsn;
        kept.push(segment.clone());
        let is_last = i + 1 == segments.len();
        if let Some(reason) = scan.damage.clone() {
            let judged = Judged {
                segments: &segments[i..],
                scan: &scan,
                covered,
                reason,
            };
            let damage = judge(storage, dir, config, judged, &mut report).await?;
            report.damage = Some(damage);
            report.cut_segments = segments[i + 1..].iter().map(|s| s.path.clone()).collect();
        }
        if is_last || report.damage.is_some() {
            tail = Some(TailSegment {
                file: segment.clone(),
                end: scan.end,
                file_len: scan.file_len,
            });
            break;
        }
    }
    report.last_lsn = last_lsn.max(covered);
    Ok(Scanned {
        report,
        listing,
        tail,
        kept_segments: kept,
    })
}

/// Damage found in `segments[0]`, and what is known around it.
struct Judged<'a> {
    segments: &'a [SegmentFile],
    scan: &'a SegmentScan,
    covered: Lsn,
    reason: DamageReason,
}

/// Decides whether damage is a torn final write (cut it) or corruption (refuse, or with
/// `recover_to_last_good`, keep copies and cut), and returns it for the report.
async fn judge<S: Storage>(
    storage: &S,
    dir: &Path,
    config: &WalConfig,
    judged: Judged<'_>,
    report: &mut ReplayReport,
) -> Result<Damage, OpenError> {
    let Judged {
        segments,
        scan,
        covered,
        reason,
    } = judged;
    let path = &segments[0].path;
    refuse_format_1(storage, path, scan, &reason, config)?;
    let after = scan.open.map_or(scan.last_lsn, |b| b.last).max(covered);
    let max = config.max_record_bytes;
    let read = |p: &Path, from| {
        storage
            .read_from(p, from)
            .map_err(|e| IoFailure::new(IoOp::Read, p, &e))
    };
    let mut evidence = following_records(&read(path, scan.stop)?, scan.stop, after, max);
    let torn = segments.len() == 1 && evidence.is_none_or(|f| same_torn_batch(&f, scan, after));
    for later in &segments[1..] {
        if evidence.is_some() {
            break;
        }
        evidence = following_records(&read(&later.path, 0)?, 0, after, max);
    }
    let damage = Damage {
        path: path.clone(),
        offset: scan.stop,
        reason: reason.clone(),
        cut_at: scan.end,
        dropped: scan.open.map_or(0, |b| b.records),
    };
    if torn {
        log_torn(&damage, evidence.as_ref());
        return Ok(damage);
    }
    let corrupt = OpenError::Corrupt {
        path: path.clone(),
        offset: scan.stop,
        reason,
        last_good: scan.last_lsn.max(covered),
        count: evidence.map_or(0, |f| f.count),
        first: evidence.map_or(Lsn::ZERO, |f| f.first_lsn),
        last: evidence.map_or(Lsn::ZERO, |f| f.last_lsn),
        later_segment: segments.get(1).map(|s| s.path.clone()),
    };
    let Some(aside) = &config.recover_to_last_good else {
        return Err(corrupt);
    };
    report.copies = keep_aside(storage, dir, aside, segments)?;
    error!(
        error = %corrupt,
        copies = ?report.copies,
        "--recover-to-last-good: cutting the log after its last good batch; the damaged segment \
         and every later one were copied aside first"
    );
    Ok(damage)
}

/// Valid records after the damage can belong to the torn batch itself only if none of them is a
/// commit or a batch's first record, and all belong to the damaged batch.
fn same_torn_batch(found: &Following, scan: &SegmentScan, after: Lsn) -> bool {
    let same_batch = match scan.open {
        Some(open) => found.batch_first == open.first,
        None => found.batch_first > after,
    };
    found.batch_mark.is_none() && !found.several_batches && same_batch
}

fn log_torn(damage: &Damage, trailing: Option<&Following>) {
    warn!(
        path = %damage.path.display(),
        offset = damage.offset,
        cut_at = damage.cut_at,
        dropped = damage.dropped,
        trailing = trailing.map_or(0, |f| f.count),
        reason = %damage.reason,
        "WAL ends in a batch torn by a crash (never acknowledged): the log is cut after its last \
         whole batch"
    );
}

/// A log written by the previous record format is not damage: refuse it with its own error.
fn refuse_format_1<S: Storage>(
    storage: &S,
    path: &Path,
    scan: &SegmentScan,
    reason: &DamageReason,
    config: &WalConfig,
) -> Result<(), OpenError> {
    let old = DamageReason::Record(DecodeError::UnknownFormat {
        format: RECORD_FORMAT_1,
    });
    if *reason != old {
        return Ok(());
    }
    let bytes = storage
        .read_from(path, scan.stop)
        .map_err(|e| IoFailure::new(IoOp::Read, path, &e))?;
    if is_format_1(&bytes, config.max_record_bytes) {
        return Err(OpenError::OldFormat {
            path: path.to_path_buf(),
            format: RECORD_FORMAT_1,
        });
    }
    Ok(())
}

/// Copies `segments` into `aside/<shard directory name>/` (durably) before a cut; returns the
/// copies' paths. An earlier copy of the same segment is kept: the new one gets a number.
fn keep_aside<S: Storage>(
    storage: &S,
    dir: &Path,
    aside: &Path,
    segments: &[SegmentFile],
) -> Result<Vec<PathBuf>, IoFailure> {
    let shard = dir
        .file_name()
        .map_or_else(|| "shard".into(), |n| n.to_owned());
    let target = aside.join(shard);
    storage
        .create_dir_all(&target)
        .map_err(|e| IoFailure::new(IoOp::CreateDir, &target, &e))?;
    let existing = storage
        .list_dir(&target)
        .map_err(|e| IoFailure::new(IoOp::ListDir, &target, &e))?;
    let mut copies = Vec::new();
    for segment in segments {
        let name = segment
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let copy = (0..)
            .map(|n| target.join(format!("{name}.damaged-{n}")))
            .find(|p| !existing.contains(p))
            .expect("an unused name");
        storage
            .copy_durably(&segment.path, &copy)
            .map_err(|e| IoFailure::new(IoOp::Write, &copy, &e))?;
        copies.push(copy);
    }
    Ok(copies)
}

/// Replays a shard directory without changing its log: the newest valid snapshot, then every valid
/// record after it, stopping (and reporting, not repairing) at a torn tail.
///
/// Meant for shard directories of a previous run with a different shard count: the master replays
/// them, re-persists their contents into the new shards, then removes them with
/// [`super::retire_dir`]. Must run on a glommio executor.
pub async fn replay_dir(
    dir: &Path,
    config: &WalConfig,
    on: impl FnMut(Replayed<'_>),
) -> Result<ReplayReport, OpenError> {
    replay_dir_on(&DiskStorage, dir, config, on).await
}

/// [`replay_dir`] on any storage.
pub async fn replay_dir_on<S: Storage>(
    storage: &S,
    dir: &Path,
    config: &WalConfig,
    mut on: impl FnMut(Replayed<'_>),
) -> Result<ReplayReport, OpenError> {
    config.validate()?;
    let _lock = layout::lock_dir(storage, dir)?;
    storage
        .prepare_dir(dir)
        .await
        .map_err(|e| IoFailure::new(IoOp::Open, dir, &e))?;
    Ok(scan_dir(storage, dir, config, &mut on).await?.report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(starts: &[u64]) -> Vec<SegmentFile> {
        starts
            .iter()
            .map(|&s| SegmentFile {
                start: Lsn(s),
                path: PathBuf::from(format!("{s}")),
            })
            .collect()
    }

    #[test]
    fn covered_segments_are_skipped() {
        let s = segs(&[1, 100, 200]);
        assert_eq!(first_needed_segment(&s, Lsn(0)), 0);
        assert_eq!(first_needed_segment(&s, Lsn(98)), 0);
        assert_eq!(first_needed_segment(&s, Lsn(99)), 1);
        assert_eq!(first_needed_segment(&s, Lsn(250)), 2);
        assert_eq!(first_needed_segment(&[], Lsn(5)), 0);
    }

    #[test]
    fn gap_between_snapshot_and_oldest_segment_is_an_error() {
        let s = segs(&[100, 200]);
        assert!(check_gap(&s, Lsn(99)).is_ok());
        assert!(matches!(check_gap(&s, Lsn(50)), Err(OpenError::Gap { .. })));
        assert!(check_gap(&[], Lsn(0)).is_ok());
    }
}
