//! The on-disk record format: pure encode and decode functions with typed errors, no IO.
//!
//! A record is a 24-byte header followed by the payload, zero-padded so the next record starts
//! 8-byte aligned:
//!
//! ```text
//! offset  size  field
//!      0     4  payload length (u32, little-endian)
//!      4     4  CRC32C over bytes 0..4, bytes 8..24 and the payload
//!      8     8  sequence number (LSN, u64, little-endian, never 0)
//!     16     1  kind (opaque to the log; the master's record type)
//!     17     1  format version (1)
//!     18     6  reserved, zero
//!     24     n  payload, then 0..7 zero bytes of padding
//! ```
//!
//! The sequence number is inside the checksum, so a stale record left over from an earlier write of
//! the same bytes cannot pass for the next one, and the padding must be zero, so the encoding of a
//! record is canonical: a decoder either rejects a damaged record or returns exactly what was
//! encoded. The decoder never trusts the length field before checking it against the limit.

use thiserror::Error;

/// Bytes in a record header.
pub const RECORD_HEADER_LEN: usize = 24;
/// Every record starts at a multiple of this within its segment.
pub const RECORD_ALIGN: usize = 8;
/// The only format this code writes and reads.
pub const RECORD_FORMAT: u8 = 1;

// The layout above is load-bearing: pin it at compile time.
const _: () = assert!(RECORD_HEADER_LEN == 4 + 4 + 8 + 1 + 1 + 6);
const _: () = assert!(RECORD_HEADER_LEN % RECORD_ALIGN == 0);

/// Log sequence number: the position of a record in its shard's log. Starts at 1; `Lsn(0)` means
/// "nothing yet". Numbers strictly increase along the log but may skip values that were assigned to
/// records whose batch failed to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);

    pub fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A record read back from the log; the payload borrows the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub lsn: Lsn,
    pub kind: u8,
    pub payload: &'a [u8],
}

/// A successfully decoded record and how many bytes of the buffer it occupied (with padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub record: RecordView<'a>,
    pub encoded_len: usize,
}

/// Why the bytes at some offset are not a record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The buffer ends inside the record; `needed` bytes in total would be enough to decide.
    #[error("incomplete record: {have} bytes available, {needed} needed")]
    Incomplete { have: usize, needed: usize },
    #[error("record length {len} exceeds the limit of {max}")]
    TooLong { len: u64, max: usize },
    #[error("unknown record format {format}")]
    UnknownFormat { format: u8 },
    #[error("record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("record with sequence number 0")]
    ZeroLsn,
    #[error("non-zero reserved header bytes or padding")]
    NonZeroPadding,
}

impl DecodeError {
    /// True when more bytes could turn this into a valid record.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, DecodeError::Incomplete { .. })
    }
}

/// Rounds `n` up to the record alignment.
pub const fn align_record(n: usize) -> usize {
    (n + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// Encoded size of a record with a payload of `payload_len` bytes, padding included.
pub const fn encoded_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + align_record(payload_len)
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&header[0..4]);
    let crc = crc32c::crc32c_append(crc, &header[8..RECORD_HEADER_LEN]);
    crc32c::crc32c_append(crc, payload)
}

/// Appends the encoding of one record to `out` and returns its encoded length.
///
/// The caller guarantees `lsn != 0` and that the payload fits a `u32` (the journal checks the
/// configured maximum first); both are programmer errors here, hence assertions.
pub fn encode_into(out: &mut Vec<u8>, lsn: Lsn, kind: u8, payload: &[u8]) -> usize {
    assert!(lsn.0 != 0, "LSN 0 is reserved");
    let len = u32::try_from(payload.len()).expect("payload length checked against the limit");
    let start = out.len();
    let total = encoded_len(payload.len());
    let mut header = [0u8; RECORD_HEADER_LEN];
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[8..16].copy_from_slice(&lsn.0.to_le_bytes());
    header[16] = kind;
    header[17] = RECORD_FORMAT;
    let crc = checksum(&header, payload);
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    out.reserve(total);
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    out.resize(start + total, 0);
    total
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(bytes)
}

fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// Decodes the record at the start of `buf`, accepting payloads of at most `max_payload` bytes.
pub fn decode(buf: &[u8], max_payload: usize) -> Result<Decoded<'_>, DecodeError> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(DecodeError::Incomplete {
            have: buf.len(),
            needed: RECORD_HEADER_LEN,
        });
    }
    let len = read_u32(buf, 0) as usize;
    if len > max_payload {
        return Err(DecodeError::TooLong {
            len: len as u64,
            max: max_payload,
        });
    }
    let format = buf[17];
    if format != RECORD_FORMAT {
        return Err(DecodeError::UnknownFormat { format });
    }
    let total = encoded_len(len);
    if buf.len() < total {
        return Err(DecodeError::Incomplete {
            have: buf.len(),
            needed: total,
        });
    }
    let header = &buf[..RECORD_HEADER_LEN];
    let payload = &buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    let stored = read_u32(header, 4);
    let computed = checksum(header, payload);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    let reserved_clean = header[18..RECORD_HEADER_LEN].iter().all(|&b| b == 0);
    let padding_clean = buf[RECORD_HEADER_LEN + len..total].iter().all(|&b| b == 0);
    if !reserved_clean || !padding_clean {
        return Err(DecodeError::NonZeroPadding);
    }
    let lsn = read_u64(header, 8);
    if lsn == 0 {
        return Err(DecodeError::ZeroLsn);
    }
    Ok(Decoded {
        record: RecordView {
            lsn: Lsn(lsn),
            kind: header[16],
            payload,
        },
        encoded_len: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 1 << 16;

    #[test]
    fn round_trip_and_alignment() {
        for len in 0..40 {
            let payload: Vec<u8> = (0..len as u8).collect();
            let mut out = vec![];
            let n = encode_into(&mut out, Lsn(7), 3, &payload);
            assert_eq!(n, out.len());
            assert_eq!(n % RECORD_ALIGN, 0);
            let decoded = decode(&out, MAX).expect("valid record");
            assert_eq!(decoded.encoded_len, n);
            assert_eq!(decoded.record.lsn, Lsn(7));
            assert_eq!(decoded.record.kind, 3);
            assert_eq!(decoded.record.payload, &payload[..]);
        }
    }

    #[test]
    fn zeros_are_not_a_record() {
        let zeros = [0u8; 64];
        assert!(decode(&zeros, MAX).is_err());
        assert!(!decode(&zeros, MAX).unwrap_err().is_incomplete());
    }

    #[test]
    fn oversized_length_is_rejected_before_reading_it() {
        let mut out = vec![];
        encode_into(&mut out, Lsn(1), 0, &[1, 2, 3]);
        out[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode(&out, MAX),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let mut out = vec![];
        encode_into(&mut out, Lsn(9), 1, b"hello, world");
        for cut in 0..out.len() {
            let err = decode(&out[..cut], MAX).unwrap_err();
            assert!(err.is_incomplete(), "cut {cut}: {err:?}");
        }
    }

    proptest! {
        #[test]
        fn prop_round_trip(lsn in 1u64.., kind: u8, payload in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut out = vec![];
            encode_into(&mut out, Lsn(lsn), kind, &payload);
            let decoded = decode(&out, MAX).unwrap();
            prop_assert_eq!(decoded.record, RecordView { lsn: Lsn(lsn), kind, payload: &payload });
            prop_assert_eq!(decoded.encoded_len, out.len());
        }

        /// Any change to any bytes of an encoded record is either detected or leaves a record that
        /// decodes to exactly the original (never a different record).
        #[test]
        fn prop_corruption_is_detected(
            lsn in 1u64..,
            kind: u8,
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        ) {
            let mut out = vec![];
            encode_into(&mut out, Lsn(lsn), kind, &payload);
            let original = out.clone();
            for (index, mask) in &flips {
                let at = index.index(out.len());
                out[at] ^= mask;
            }
            match decode(&out, MAX) {
                Err(_) => {}
                Ok(decoded) => {
                    prop_assert_eq!(decoded.record, RecordView { lsn: Lsn(lsn), kind, payload: &payload });
                    prop_assert_eq!(&out[..decoded.encoded_len], &original[..]);
                }
            }
        }

        /// Truncation anywhere is reported as incomplete, never as a (different) record.
        #[test]
        fn prop_truncation_is_incomplete(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut out = vec![];
            encode_into(&mut out, Lsn(1), 0, &payload);
            let cut = cut.index(out.len());
            prop_assert!(decode(&out[..cut], MAX).unwrap_err().is_incomplete());
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn prop_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes, MAX);
        }
    }
}
