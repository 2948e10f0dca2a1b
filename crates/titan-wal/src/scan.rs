//! Reading one segment file back: find every valid record in order and the logical end.
//!
//! The logical end of a segment is the offset after its last valid record, never the file length:
//! direct-IO writes pad the file to a block boundary with zeros, and a crash can leave a torn batch.
//! Scanning stops at the first bytes that are not the next valid record. What follows decides how to
//! report it: only zeros up to the end of the file is a clean end (padding, or a batch that never
//! reached the disk); anything else is damage (a torn write or corruption) and is reported with its
//! offset so recovery can truncate there.
//!
//! [`Cursor::step`] is the pure part (bytes in, records and a verdict out); [`scan_segment`] feeds
//! it from a glommio direct-IO stream with read-ahead.

use std::path::Path;

use glommio::io::{DmaFile, DmaStreamReaderBuilder};

use super::error::{DamageReason, IoFailure, IoOp};
use super::limits::{READ_AHEAD_CHUNKS, READ_CHUNK_BYTES};
use super::record::{decode, Lsn, RecordView, RECORD_ALIGN, RECORD_HEADER_LEN};

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
}

/// The result of scanning one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentScan {
    /// Offset after the last valid record.
    pub end: u64,
    pub file_len: u64,
    /// Sequence number of the last valid record, or `bounds.prev` if there was none.
    pub last_lsn: Lsn,
    pub records: u64,
    pub delivered: u64,
    /// Set when the bytes after `end` are not all zero: why the record at `end` was rejected.
    pub damage: Option<DamageReason>,
}

/// Where the scanner stopped parsing, if it has.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Parsing,
    /// Stopped at `end`; bytes from there on must be checked for zeros.
    Stopped {
        reason: DamageReason,
        nonzero: bool,
    },
}

/// The pure scanning state: feed it the file's bytes in order through [`Cursor::step`].
#[derive(Debug)]
pub(crate) struct Cursor {
    bounds: SegmentBounds,
    end: u64,
    last_lsn: Lsn,
    records: u64,
    delivered: u64,
    verdict: Verdict,
}

impl Cursor {
    pub fn new(bounds: SegmentBounds) -> Self {
        Self {
            bounds,
            end: 0,
            last_lsn: bounds.prev,
            records: 0,
            delivered: 0,
            verdict: Verdict::Parsing,
        }
    }

    fn check_order(&self, lsn: Lsn) -> Result<(), DamageReason> {
        if lsn <= self.last_lsn {
            return Err(DamageReason::OutOfOrder {
                lsn,
                prev: self.last_lsn,
            });
        }
        if lsn < self.bounds.start {
            return Err(DamageReason::BeforeSegment {
                lsn,
                start: self.bounds.start,
            });
        }
        match self.bounds.next_start {
            Some(next_start) if lsn >= next_start => {
                Err(DamageReason::BeyondSegment { lsn, next_start })
            }
            _ => Ok(()),
        }
    }

    /// Consumes records from `window`, whose first byte is at file offset `self.end` while parsing.
    /// Returns how many bytes of the window were consumed; the caller keeps the rest and appends
    /// more bytes (or sets `eof` when there are none). After a stop, every byte is consumed and
    /// only checked for being zero.
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
        let mut pos = 0;
        while pos < window.len() || eof {
            let rest = &window[pos..];
            let reason = match decode(rest, self.bounds.max_payload) {
                Ok(decoded) => match self.check_order(decoded.record.lsn) {
                    Ok(()) => {
                        self.records += 1;
                        self.last_lsn = decoded.record.lsn;
                        if decoded.record.lsn > self.bounds.skip_upto {
                            self.delivered += 1;
                            on_record(decoded.record);
                        }
                        pos += decoded.encoded_len;
                        self.end += decoded.encoded_len as u64;
                        continue;
                    }
                    Err(reason) => reason,
                },
                Err(e) if e.is_incomplete() && !eof => return pos,
                Err(e) => DamageReason::Record(e),
            };
            if rest.is_empty() {
                // End of file exactly at a record boundary: a clean end with nothing after it.
                self.verdict = Verdict::Stopped {
                    reason,
                    nonzero: false,
                };
                return pos;
            }
            self.verdict = Verdict::Stopped {
                reason,
                nonzero: rest.iter().any(|&b| b != 0),
            };
            return window.len();
        }
        pos
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
            file_len,
            last_lsn: self.last_lsn,
            records: self.records,
            delivered: self.delivered,
            damage,
        }
    }
}

/// Scans the segment at `path`, calling `on_record` for each valid record after `skip_upto`.
pub(crate) async fn scan_segment(
    path: &Path,
    bounds: SegmentBounds,
    on_record: &mut dyn FnMut(RecordView<'_>),
) -> Result<SegmentScan, IoFailure> {
    let file = DmaFile::open(path)
        .await
        .map_err(|e| IoFailure::from_glommio(IoOp::Open, path, e))?;
    let file_len = file
        .file_size()
        .await
        .map_err(|e| IoFailure::from_glommio(IoOp::Read, path, e))?;
    let mut reader = DmaStreamReaderBuilder::new(file)
        .with_buffer_size(READ_CHUNK_BYTES)
        .with_read_ahead(READ_AHEAD_CHUNKS)
        .with_end_pos(file_len)
        .build();
    let mut cursor = Cursor::new(bounds);
    // Bytes of a record split across two reads wait here for the rest.
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let chunk = reader
            .get_buffer_aligned(READ_CHUNK_BYTES as u64)
            .await
            .map_err(|e| IoFailure::from_glommio(IoOp::Read, path, e))?;
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
}

/// Looks through `bytes` (file offset `base` onwards) at every record-aligned offset for records
/// that decode and carry a sequence number above `after`: records written after the damage.
/// A torn write leaves none beyond its own batch; corruption in the middle of the log does.
pub(crate) fn following_records(
    bytes: &[u8],
    base: u64,
    after: Lsn,
    max_payload: usize,
) -> Option<Following> {
    let mut found: Option<Following> = None;
    let mut pos = (RECORD_ALIGN - (base as usize % RECORD_ALIGN)) % RECORD_ALIGN;
    while pos + RECORD_HEADER_LEN <= bytes.len() {
        match decode(&bytes[pos..], max_payload) {
            Ok(d) if d.record.lsn > after && found.is_none_or(|f| d.record.lsn > f.last_lsn) => {
                let offset = base + pos as u64;
                let f = found.get_or_insert(Following {
                    count: 0,
                    first_lsn: d.record.lsn,
                    last_lsn: d.record.lsn,
                    last_offset: offset,
                });
                f.count += 1;
                f.last_lsn = d.record.lsn;
                f.last_offset = offset;
                pos += d.encoded_len;
            }
            _ => pos += RECORD_ALIGN,
        }
    }
    found
}

/// [`following_records`] over a segment file from `from` to its end (read in one go: this only
/// runs when recovery found damage).
pub(crate) fn following_in_file(
    path: &Path,
    from: u64,
    after: Lsn,
    max_payload: usize,
) -> Result<Option<Following>, IoFailure> {
    use std::io::{Read, Seek, SeekFrom};
    let read = || -> std::io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(from))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = read().map_err(|e| IoFailure::new(IoOp::Read, path, &e))?;
    Ok(following_records(&bytes, from, after, max_payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode_into, DecodeError};

    fn bounds() -> SegmentBounds {
        SegmentBounds {
            start: Lsn(1),
            next_start: None,
            prev: Lsn(0),
            skip_upto: Lsn(0),
            max_payload: 1024,
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
