//! Reading one segment file back: find every whole batch of records in order, and the logical end.
//!
//! The logical end of a segment is the offset after its last whole batch (the last record with
//! the commit flag, `record.rs`), never the file length: direct-IO writes pad the file to a block
//! boundary with zeros, and a crash can leave a torn batch. Records are delivered only once their
//! batch's commit is read, so the records of a torn batch never reach the caller. Scanning stops
//! at the first bytes that are not the next valid record of the batch being read. What follows
//! decides how to report it: only zeros up to the end of the file, after a whole batch, is a clean
//! end (padding, or a batch that never reached the disk); anything else (an unfinished batch,
//! nonzero bytes) is damage, reported with its offset for recovery to judge (`recovery.rs`: a torn
//! final write is cut, anything else stops the master).
//!
//! [`Cursor::step`] is the pure part (bytes in, records and a verdict out); [`scan_segment`] feeds
//! it from the storage layer's streaming reader with read-ahead.

use std::path::Path;

use super::error::{DamageReason, IoFailure, IoOp};
use super::limits::{READ_AHEAD_CHUNKS, READ_CHUNK_BYTES};
use super::record::{
    decode, plausible_header, view_checked, BatchPlace, Lsn, RecordView, RECORD_ALIGN,
    RECORD_HEADER_LEN,
};
use super::storage::{Storage, StorageFile, StreamReader};

/// The sequence-number rules a segment's records must follow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentBounds {
    /// The segment's start (from its name): records are `>= start`.
    pub start: Lsn,
    /// The next segment's start, if any: records are `< next_start`.
    pub next_start: Option<Lsn>,
    /// The last record of the previous segment: records are `> prev`.
    pub prev: Lsn,
    /// Records `<= skip_upto` are checked but not delivered (a snapshot covers them).
    pub skip_upto: Lsn,
    pub max_payload: usize,
    /// A batch longer than this is damage (no flusher writes one; it bounds what is held).
    pub max_batch_bytes: usize,
}

/// The records read since the last commit: a batch not (yet) known to be whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenBatch {
    pub first: Lsn,
    pub last: Lsn,
    pub records: u32,
}

/// The result of scanning one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentScan {
    /// Offset after the last whole batch.
    pub end: u64,
    /// Offset of the first bytes that are not the next valid record (`end` or later).
    pub stop: u64,
    pub file_len: u64,
    /// Sequence number of the last record of the last whole batch, or `bounds.prev`.
    pub last_lsn: Lsn,
    /// Valid records after `end` whose batch has no commit (a torn or damaged batch).
    pub open: Option<OpenBatch>,
    pub records: u64,
    pub delivered: u64,
    /// Set when the bytes after `end` are not all zero: why the record at `stop` was rejected.
    pub damage: Option<DamageReason>,
}

/// Where the scanner stopped parsing, if it has.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Parsing,
    /// Stopped at `stop`; bytes from `end` on must be checked for zeros.
    Stopped {
        reason: DamageReason,
        nonzero: bool,
    },
}

/// The pure scanning state: feed it the file's bytes in order through [`Cursor::step`].
#[derive(Debug)]
pub(crate) struct Cursor {
    bounds: SegmentBounds,
    /// File offset after the last whole batch; the caller's window starts here while parsing.
    end: u64,
    /// Bytes after `end` already checked: the records of the open batch.
    parsed: usize,
    stop: u64,
    last_lsn: Lsn,
    open: Option<OpenBatch>,
    records: u64,
    delivered: u64,
    verdict: Verdict,
}

impl Cursor {
    pub fn new(bounds: SegmentBounds) -> Self {
        Self {
            bounds,
            end: 0,
            parsed: 0,
            stop: 0,
            last_lsn: bounds.prev,
            open: None,
            records: 0,
            delivered: 0,
            verdict: Verdict::Parsing,
        }
    }

    /// Checks that a record with this number and place may come next.
    fn check(&self, lsn: Lsn, place: BatchPlace, encoded: usize) -> Result<(), DamageReason> {
        let prev = self.open.map_or(self.last_lsn, |b| b.last);
        if lsn <= prev {
            return Err(DamageReason::OutOfOrder { lsn, prev });
        }
        if lsn < self.bounds.start {
            return Err(DamageReason::BeforeSegment {
                lsn,
                start: self.bounds.start,
            });
        }
        if let Some(next_start) = self.bounds.next_start.filter(|&n| lsn >= n) {
            return Err(DamageReason::BeyondSegment { lsn, next_start });
        }
        // A batch's records are consecutive and numbered from zero.
        let expected = self.open.map_or(0, |b| b.records);
        let follows = self.open.is_none_or(|b| lsn == b.last.next());
        if place.index != expected || !follows {
            return Err(DamageReason::OutOfBatch {
                lsn,
                index: place.index,
                expected,
            });
        }
        if self.parsed + encoded > self.bounds.max_batch_bytes.max(encoded) {
            return Err(DamageReason::BatchTooLong {
                max: self.bounds.max_batch_bytes,
            });
        }
        Ok(())
    }

    /// Consumes records from `window`, whose first byte is at file offset `self.end` while parsing.
    /// Returns how many bytes of the window were consumed (the whole batches); the caller keeps
    /// the rest and appends more bytes (or sets `eof` when there are none). After a stop, every
    /// byte is consumed and only checked for being zero.
    pub fn step(
        &mut self,
        window: &[u8],
        eof: bool,
        on_record: &mut dyn FnMut(RecordView<'_>),
    ) -> usize {
        if let Verdict::Stopped { nonzero, .. } = &mut self.verdict {
            *nonzero |= window.iter().any(|&b| b != 0);
            return window.len();
        }
        // Window offset of `self.end` (whole batches before it are delivered and consumed).
        let mut base = 0;
        loop {
            let pos = base + self.parsed;
            let rest = &window[pos..];
            let reason = match decode(rest, self.bounds.max_payload) {
                Ok(d) => match self.check(d.record.lsn, d.place, d.encoded_len) {
                    Ok(()) => {
                        let lsn = d.record.lsn;
                        let open = self.open.get_or_insert(OpenBatch {
                            first: lsn,
                            last: lsn,
                            records: 0,
                        });
                        open.last = lsn;
                        open.records += 1;
                        self.parsed += d.encoded_len;
                        if d.place.commit {
                            let batch = self.parsed;
                            self.deliver(&window[base..base + batch], on_record);
                            base += batch;
                        }
                        continue;
                    }
                    Err(reason) => reason,
                },
                Err(e) if e.is_incomplete() && !eof => return base,
                Err(e) => DamageReason::Record(e),
            };
            self.stop = self.end + self.parsed as u64;
            // Bytes of an unfinished batch are not zeros: an open batch is always damage.
            let nonzero = window[base..].iter().any(|&b| b != 0);
            self.verdict = Verdict::Stopped { reason, nonzero };
            return window.len();
        }
    }

    /// Delivers a whole batch (`batch` starts at `self.end`) and moves the end past it.
    fn deliver(&mut self, batch: &[u8], on_record: &mut dyn FnMut(RecordView<'_>)) {
        let mut pos = 0;
        while pos < batch.len() {
            let (record, len) = view_checked(&batch[pos..]);
            if record.lsn > self.bounds.skip_upto {
                self.delivered += 1;
                on_record(record);
            }
            pos += len;
        }
        let open = self.open.take().expect("a batch was open");
        self.records += u64::from(open.records);
        self.last_lsn = open.last;
        self.end += batch.len() as u64;
        self.parsed = 0;
    }

    pub fn finish(self, file_len: u64) -> SegmentScan {
        let damage = match self.verdict {
            Verdict::Stopped {
                reason,
                nonzero: true,
            } => Some(reason),
            _ => None,
        };
        SegmentScan {
            end: self.end,
            stop: self.stop.max(self.end),
            file_len,
            last_lsn: self.last_lsn,
            open: self.open,
            records: self.records,
            delivered: self.delivered,
            damage,
        }
    }
}

/// Scans the segment at `path`, calling `on_record` for each record of a whole batch after
/// `skip_upto`.
pub(crate) async fn scan_segment<S: Storage>(
    storage: &S,
    path: &Path,
    bounds: SegmentBounds,
    on_record: &mut dyn FnMut(RecordView<'_>),
) -> Result<SegmentScan, IoFailure> {
    let file = storage
        .open_read(path)
        .await
        .map_err(|e| IoFailure::new(IoOp::Open, path, &e))?;
    let file_len = file
        .size()
        .await
        .map_err(|e| IoFailure::new(IoOp::Read, path, &e))?;
    let mut reader = file.stream(READ_CHUNK_BYTES, READ_AHEAD_CHUNKS, file_len);
    let mut cursor = Cursor::new(bounds);
    // Bytes of a batch split across two reads wait here for the rest.
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let chunk = reader
            .next_chunk()
            .await
            .map_err(|e| IoFailure::new(IoOp::Read, path, &e))?;
        let eof = chunk.is_empty();
        if carry.is_empty() {
            let used = cursor.step(&chunk, eof, on_record);
            carry.extend_from_slice(&chunk[used..]);
        } else {
            carry.extend_from_slice(&chunk);
            let used = cursor.step(&carry, eof, on_record);
            carry.drain(..used);
        }
        if eof {
            break;
        }
    }
    reader
        .close()
        .await
        .map_err(|e| IoFailure::new(IoOp::Close, path, &e))?;
    Ok(cursor.finish(file_len))
}

/// Valid records found past a damaged spot, with sequence numbers after the last good one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Following {
    pub count: u64,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
    /// File offset of the last one.
    pub last_offset: u64,
    /// A commit or the first record of a batch among them: a batch written whole, or begun
    /// after the damaged one was (its write had returned).
    pub batch_mark: Option<Lsn>,
    /// The first record of the batch holding the first of them.
    pub batch_first: Lsn,
    /// Some of them belong to a batch other than the first one's.
    pub several_batches: bool,
}

/// Looks through `bytes` (file offset `base` onwards) at every record-aligned offset for records
/// with a sequence number above `after`: records written after the damage. A record counts if it
/// decodes, or, past the first offset (the damaged record itself), if only its header is intact:
/// a later batch whose payload was damaged too is still evidence that it was written.
pub(crate) fn following_records(
    bytes: &[u8],
    base: u64,
    after: Lsn,
    max_payload: usize,
) -> Option<Following> {
    let mut found: Option<Following> = None;
    let first = (RECORD_ALIGN - (base as usize % RECORD_ALIGN)) % RECORD_ALIGN;
    let mut pos = first;
    while pos + RECORD_HEADER_LEN <= bytes.len() {
        let (seen, step) = match decode(&bytes[pos..], max_payload) {
            Ok(d) => (Some((d.record.lsn, d.place)), d.encoded_len),
            Err(_) if pos > first => (plausible_header(&bytes[pos..], max_payload), RECORD_ALIGN),
            Err(_) => (None, RECORD_ALIGN),
        };
        match seen {
            Some((lsn, place)) if lsn > after && found.is_none_or(|f| lsn > f.last_lsn) => {
                note(&mut found, lsn, place, base + pos as u64);
                pos += step;
            }
            _ => pos += RECORD_ALIGN,
        }
    }
    found
}

fn note(found: &mut Option<Following>, lsn: Lsn, place: BatchPlace, offset: u64) {
    let batch_first = place.batch_first(lsn);
    let f = found.get_or_insert(Following {
        count: 0,
        first_lsn: lsn,
        last_lsn: lsn,
        last_offset: offset,
        batch_mark: None,
        batch_first,
        several_batches: false,
    });
    f.count += 1;
    f.last_lsn = lsn;
    f.last_offset = offset;
    f.several_batches |= batch_first != f.batch_first;
    if place.commit || place.index == 0 {
        f.batch_mark.get_or_insert(lsn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode_into, encode_placed, DecodeError};

    fn bounds() -> SegmentBounds {
        SegmentBounds {
            start: Lsn(1),
            next_start: None,
            prev: Lsn(0),
            skip_upto: Lsn(0),
            max_payload: 1024,
            max_batch_bytes: 1 << 20,
        }
    }

    /// Records `first..=last` as one batch.
    fn batch(out: &mut Vec<u8>, first: u64, last: u64) {
        for lsn in first..=last {
            let place = BatchPlace {
                index: (lsn - first) as u32,
                commit: lsn == last,
            };
            encode_placed(out, Lsn(lsn), 0, &vec![lsn as u8; 20 + lsn as usize], place);
        }
    }

    fn log(n: u64) -> Vec<u8> {
        let mut out = vec![];
        for lsn in 1..=n {
            encode_into(&mut out, Lsn(lsn), 0, &vec![lsn as u8; lsn as usize * 3]);
        }
        out
    }

    /// Feeds `bytes` in pieces of `piece` bytes, the way `scan_segment` does.
    fn scan(bytes: &[u8], piece: usize, bounds: SegmentBounds) -> (SegmentScan, Vec<u64>) {
        let mut cursor = Cursor::new(bounds);
        let mut seen = vec![];
        let mut carry = vec![];
        for chunk in bytes.chunks(piece).chain(std::iter::once(&[][..])) {
            let eof = chunk.is_empty();
            carry.extend_from_slice(chunk);
            let used = cursor.step(&carry, eof, &mut |r| seen.push(r.lsn.0));
            carry.drain(..used);
        }
        (cursor.finish(bytes.len() as u64), seen)
    }

    #[test]
    fn clean_log_with_zero_padding() {
        let mut bytes = log(20);
        let end = bytes.len() as u64;
        bytes.resize(bytes.len() + 700, 0);
        for piece in [1, 7, 64, 4096] {
            let (result, seen) = scan(&bytes, piece, bounds());
            assert_eq!(result.end, end);
            assert_eq!(result.damage, None);
            assert_eq!(seen, (1..=20).collect::<Vec<_>>());
        }
    }

    #[test]
    fn every_truncation_stops_at_a_record_boundary() {
        let bytes = log(6);
        let mut boundaries = vec![0u64];
        let mut pos = 0;
        while pos < bytes.len() {
            pos += decode(&bytes[pos..], 1024).unwrap().encoded_len;
            boundaries.push(pos as u64);
        }
        for cut in 0..=bytes.len() {
            let (result, seen) = scan(&bytes[..cut], 5, bounds());
            let expected_end = *boundaries.iter().rfind(|&&b| b <= cut as u64).unwrap();
            assert_eq!(result.end, expected_end, "cut {cut}");
            assert_eq!(seen.len() as u64, result.records);
            assert_eq!(
                result.damage.is_some(),
                cut as u64 != expected_end,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn garbage_after_zeros_is_damage() {
        let mut bytes = log(3);
        let end = bytes.len() as u64;
        bytes.resize(bytes.len() + 5000, 0);
        bytes.push(1);
        let (result, _) = scan(&bytes, 4096, bounds());
        assert_eq!(result.end, end);
        assert!(matches!(
            result.damage,
            Some(DamageReason::Record(DecodeError::UnknownFormat {
                format: 0
            }))
        ));
    }

    #[test]
    fn stale_or_foreign_sequence_numbers_stop_the_scan() {
        let mut bytes = log(3);
        encode_into(&mut bytes, Lsn(2), 0, b"stale");
        let (result, seen) = scan(&bytes, 4096, bounds());
        assert_eq!(seen, vec![1, 2, 3]);
        assert!(matches!(
            result.damage,
            Some(DamageReason::OutOfOrder { .. })
        ));
        let limited = SegmentBounds {
            next_start: Some(Lsn(3)),
            ..bounds()
        };
        let (result, seen) = scan(&log(3), 4096, limited);
        assert_eq!(seen, vec![1, 2]);
        assert!(matches!(
            result.damage,
            Some(DamageReason::BeyondSegment { .. })
        ));
    }

    #[test]
    fn records_are_delivered_by_whole_batches_and_a_torn_batch_is_damage() {
        let mut bytes = vec![];
        batch(&mut bytes, 1, 3);
        batch(&mut bytes, 4, 4);
        let whole = bytes.len() as u64;
        batch(&mut bytes, 5, 9);
        // The last batch lost its commit (and the record before): a torn write.
        let cut = {
            let mut pos = whole as usize;
            for _ in 0..3 {
                pos += decode(&bytes[pos..], 1024).unwrap().encoded_len;
            }
            pos
        };
        let mut torn = bytes[..cut].to_vec();
        torn.resize(torn.len() + 5000, 0);
        for piece in [1, 16, 100, 4096] {
            let (result, seen) = scan(&torn, piece, bounds());
            assert_eq!(seen, vec![1, 2, 3, 4], "piece {piece}");
            assert_eq!((result.end, result.last_lsn), (whole, Lsn(4)));
            assert_eq!(result.stop, cut as u64);
            let open = result.open.expect("an open batch");
            assert_eq!((open.first, open.last, open.records), (Lsn(5), Lsn(7), 3));
            assert!(result.damage.is_some(), "an unfinished batch is damage");
        }
        let (result, seen) = scan(&bytes, 7, bounds());
        assert_eq!(seen, (1..=9).collect::<Vec<_>>());
        assert_eq!((result.damage, result.open), (None, None));
    }

    #[test]
    fn a_later_batch_with_only_its_header_intact_is_still_evidence() {
        let mut bytes = vec![];
        batch(&mut bytes, 1, 2);
        let second = decode(&bytes, 1024).unwrap().encoded_len;
        let later = bytes.len();
        batch(&mut bytes, 3, 3);
        // Record 2 (the first batch's commit) and record 3's payload are damaged.
        bytes[second + RECORD_HEADER_LEN + 2] ^= 0x08;
        bytes[later + RECORD_HEADER_LEN + 2] ^= 0x08;
        let found = following_records(&bytes[second..], second as u64, Lsn(1), 1024).unwrap();
        assert_eq!((found.count, found.batch_mark), (1, Some(Lsn(3))));
        // The damaged record's own header is not evidence of anything.
        let alone = following_records(&bytes[second..later], second as u64, Lsn(1), 1024);
        assert_eq!(alone, None);
    }

    #[test]
    fn a_batch_must_be_numbered_from_zero_without_gaps() {
        let mut bytes = vec![];
        batch(&mut bytes, 1, 2);
        // Record 3 claims to be the second of a batch that never started.
        let place = BatchPlace {
            index: 1,
            commit: true,
        };
        encode_placed(&mut bytes, Lsn(3), 0, b"orphan", place);
        let (result, seen) = scan(&bytes, 64, bounds());
        assert_eq!(seen, vec![1, 2]);
        assert!(matches!(
            result.damage,
            Some(DamageReason::OutOfBatch {
                index: 1,
                expected: 0,
                ..
            })
        ));
    }

    #[test]
    fn skipped_records_are_checked_but_not_delivered() {
        let covered = SegmentBounds {
            skip_upto: Lsn(4),
            ..bounds()
        };
        let (result, seen) = scan(&log(6), 100, covered);
        assert_eq!(seen, vec![5, 6]);
        assert_eq!((result.records, result.delivered), (6, 2));
    }
}
