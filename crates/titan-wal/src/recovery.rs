//! Reading a shard directory back: choose the newest usable snapshot, replay the records after it
//! segment by segment, and find where the log really ends.
//!
//! [`scan_dir`] only reads; it returns what it found and what would have to change (a damaged tail
//! to cut, later segments that are no longer part of the log). `Journal::open` applies that plan
//! before appending; [`replay_dir`] (for old shard directories after a change of the shard count)
//! only reports it. Segments that the chosen snapshot fully covers are not read at all, so recovery
//! time is bounded by the snapshot interval, not by the age of the log.

use std::path::{Path, PathBuf};

use tracing::{error, warn};

use super::error::{Damage, DamageReason, OpenError};
use super::layout::{self, Listing, SegmentFile};
use super::limits::{WalConfig, BLOCK_BYTES};
use super::record::{Lsn, RecordView};
use super::scan::{following_in_file, scan_segment, SegmentBounds};
use super::snapshot::{self, SnapshotCorruption};

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
    /// Where the log stops being valid, if it ends in anything but zeros.
    pub damage: Option<Damage>,
    /// Segments after damage; no longer part of the log (`open` deletes them).
    pub cut_segments: Vec<PathBuf>,
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
async fn replay_snapshot(
    listing: &Listing,
    report: &mut ReplayReport,
    on: &mut dyn FnMut(Replayed<'_>),
) -> Result<Lsn, OpenError> {
    for file in listing.snapshots.iter().rev() {
        match snapshot::load(file).await? {
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
pub(crate) async fn scan_dir(
    dir: &Path,
    config: &WalConfig,
    on: &mut dyn FnMut(Replayed<'_>),
) -> Result<Scanned, OpenError> {
    let listing = layout::list(dir)?;
    let mut report = ReplayReport::default();
    let covered = replay_snapshot(&listing, &mut report, on).await?;
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
        };
        let scan = scan_segment(&segment.path, bounds, &mut |r| on(Replayed::Record(r))).await?;
        report.records += scan.delivered;
        last_lsn = scan.last_lsn;
        kept.push(segment.clone());
        let is_last = i + 1 == segments.len();
        if let Some(reason) = scan.damage {
            check_torn_tail(config, &segments[i..], scan.end, scan.last_lsn, &reason)?;
            report.damage = Some(Damage {
                path: segment.path.clone(),
                offset: scan.end,
                reason,
            });
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
    if let Some(damage) = &report.damage {
        warn!(
            path = %damage.path.display(),
            offset = damage.offset,
            reason = %damage.reason,
            "WAL ends in a torn or corrupt record; the log ends at this offset"
        );
    }
    Ok(Scanned {
        report,
        listing,
        tail,
        kept_segments: kept,
    })
}

/// Damage at `offset` of `segments[0]` is only cut away as a torn final write if nothing written
/// after it survives: no valid later record beyond the reach of one batch (a torn batch can leave
/// its own later blocks behind, never a later batch's), and none in a later segment (a segment is
/// only started once the previous one is durable). Otherwise the log is corrupt in the middle and
/// opening fails; records that may belong to the torn batch are dropped with an error logged.
fn check_torn_tail(
    config: &WalConfig,
    segments: &[SegmentFile],
    offset: u64,
    last: Lsn,
    reason: &DamageReason,
) -> Result<(), OpenError> {
    let max = config.max_record_bytes;
    let reach = offset + (config.max_batch_bytes + BLOCK_BYTES) as u64;
    let here = following_in_file(&segments[0].path, offset, last, max)?;
    let mut later = None;
    for segment in &segments[1..] {
        if let Some(f) = following_in_file(&segment.path, 0, last, max)? {
            later = Some(f);
            break;
        }
    }
    let certain = match (here, later) {
        (_, Some(f)) => Some(f),
        (Some(f), None) if f.last_offset > reach => Some(f),
        _ => None,
    };
    if let Some(f) = certain {
        return Err(OpenError::Corrupt {
            path: segments[0].path.clone(),
            offset,
            reason: reason.clone(),
            count: f.count,
            first: f.first_lsn,
            last: f.last_lsn,
        });
    }
    if let Some(f) = here {
        error!(
            path = %segments[0].path.display(),
            offset,
            %reason,
            dropped = f.count,
            first = %f.first_lsn,
            last = %f.last_lsn,
            "valid records follow the damaged one within the reach of the last write: taken for \
             a write torn by a crash and dropped with it; if the host did not crash while \
             writing, this is corruption and these records were lost"
        );
    }
    Ok(())
}

/// Replays a shard directory without changing its log: the newest valid snapshot, then every valid
/// record after it, stopping (and reporting, not repairing) at a torn or corrupt tail.
///
/// Meant for shard directories of a previous run with a different shard count: the master replays
/// them, re-persists their contents into the new shards, then removes them with
/// [`super::retire_dir`]. Must run on a glommio executor.
pub async fn replay_dir(
    dir: &Path,
    config: &WalConfig,
    mut on: impl FnMut(Replayed<'_>),
) -> Result<ReplayReport, OpenError> {
    config.validate()?;
    let _lock = layout::lock_dir(dir)?;
    // The probe file is created and removed again; the log itself is not touched.
    layout::prime_direct_io(dir).await?;
    Ok(scan_dir(dir, config, &mut on).await?.report)
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
