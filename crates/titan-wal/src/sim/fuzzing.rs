//! Entry points for the fuzz targets (`fuzz/`) and their regression seeds in the test suite:
//! the pure segment scanner over arbitrary bytes, fed in arbitrary pieces.

use crate::record::Lsn;
use crate::scan::{following_records, Cursor, SegmentBounds};

/// What scanning arbitrary bytes as a segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    pub delivered: Vec<u64>,
    pub end: u64,
    pub damaged: bool,
}

/// Scans `bytes` as a segment starting at sequence number 1, fed in pieces of `piece` bytes the
/// way the reader does, and checks what must hold whatever the bytes: records come out in
/// increasing order, the end is within the bytes, and the same bytes fed in one piece give the
/// same result.
pub fn scan_bytes(bytes: &[u8], piece: usize) -> ScanOutcome {
    let outcome = scan_in_pieces(bytes, piece.max(1));
    let whole = scan_in_pieces(bytes, bytes.len().max(1));
    assert_eq!(
        outcome, whole,
        "the result depends on how the bytes were read"
    );
    assert!(outcome.end <= bytes.len() as u64);
    assert!(outcome.delivered.windows(2).all(|w| w[0] < w[1]));
    let _ = following_records(bytes, 0, Lsn::ZERO, 1 << 16);
    outcome
}

fn scan_in_pieces(bytes: &[u8], piece: usize) -> ScanOutcome {
    let bounds = SegmentBounds {
        start: Lsn(1),
        next_start: None,
        prev: Lsn::ZERO,
        skip_upto: Lsn::ZERO,
        max_payload: 1 << 16,
        max_batch_bytes: 1 << 20,
    };
    let mut cursor = Cursor::new(bounds);
    let mut delivered = Vec::new();
    let mut carry = Vec::new();
    for chunk in bytes.chunks(piece).chain(std::iter::once(&[][..])) {
        let eof = chunk.is_empty();
        carry.extend_from_slice(chunk);
        let used = cursor.step(&carry, eof, &mut |r| delivered.push(r.lsn.0));
        carry.drain(..used);
    }
    let scan = cursor.finish(bytes.len() as u64);
    ScanOutcome {
        delivered,
        end: scan.end,
        damaged: scan.damage.is_some(),
    }
}
