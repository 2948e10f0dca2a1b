//! The on-disk record format: pure encode and decode functions with typed errors, no IO.
//!
//! A record is a 24-byte header followed by the payload, zero-padded so the next record starts
//! 8-byte aligned:
//!
//! ```text
//! offset  size  field
//!      0     4  payload length (u32, little-endian)
//!      4     4  CRC32C over the payload, then bytes 0..4 and 8..24
//!      8     8  sequence number (LSN, u64, little-endian, never 0)
//!     16     1  kind (opaque to the log; the master's record type)
//!     17     1  format version (2)
//!     18     1  flags: bit 0 = commit (the last record of its batch); other bits zero
//!     19     1  reserved, zero
//!     20     4  index of the record in its batch (u32, little-endian; 0 = the batch's first)
//!     24     n  payload, then 0..7 zero bytes of padding
//! ```
//!
//! The sequence number is inside the checksum, so a stale record left over from an earlier write of
//! the same bytes cannot pass for the next one, and the padding must be zero, so the encoding of a
//! record is canonical: a decoder either rejects a damaged record or returns exactly what was
//! encoded. The decoder never trusts the length field before checking it against the limit.
//!
//! **Batches.** The flusher writes records in batches, one synchronous write each. Every record
//! names its place in its batch and the batch's last record carries the commit flag, so recovery
//! can tell a batch that was written whole (acknowledged) from one a crash cut short
//! (`recovery.rs`): a batch is whole when its records `0..=commit` are all there, valid and
//! consecutive. The flusher fills both fields in just before the write ([`seal`]); the payload
//! is checksummed first, so sealing re-checksums only the 20 header bytes, not the payload.
//!
//! Format 1 (before batches were marked) had no commit flag; this build refuses such a log with
//! a clear error instead of guessing where its batches ended ([`is_format_1`]).

use thiserror::Error;

/// Bytes in a record header.
pub const RECORD_HEADER_LEN: usize = 24;
/// Every record starts at a multiple of this within its segment.
pub const RECORD_ALIGN: usize = 8;
/// The only format this code writes and reads.
pub const RECORD_FORMAT: u8 = 2;
/// The format of logs written before batches were marked; refused with a clear error.
pub const RECORD_FORMAT_1: u8 = 1;
/// Flag bit of the last record of a batch.
pub const FLAG_COMMIT: u8 = 1;

// The layout above is load-bearing: pin it at compile time.
const _: () = assert!(RECORD_HEADER_LEN == 4 + 4 + 8 + 1 + 1 + 1 + 1 + 4);
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

/// Where a record sits in the batch it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchPlace {
    /// 0 for the batch's first record.
    pub index: u32,
    /// The batch's last record.
    pub commit: bool,
}

impl BatchPlace {
    /// A record that is a whole batch by itself.
    pub const ALONE: BatchPlace = BatchPlace {
        index: 0,
        commit: true,
    };

    /// The sequence number of the first record of the batch holding the record `lsn` (records
    /// of one batch have consecutive numbers).
    pub fn batch_first(self, lsn: Lsn) -> Lsn {
        Lsn(lsn.0.saturating_sub(u64::from(self.index)))
    }
}

/// A successfully decoded record and how many bytes of the buffer it occupied (with padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub record: RecordView<'a>,
    pub place: BatchPlace,
    pub encoded_len: usize,
    /// CRC32C of the payload alone, so [`seal`] need not read the payload again.
    pub payload_crc: u32,
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
    #[error("non-zero reserved header bytes, unknown flags or padding")]
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

/// The record checksum: the payload's CRC, extended by the header fields it protects.
fn checksum(header: &[u8], payload_crc: u32) -> u32 {
    let crc = crc32c::crc32c_append(payload_crc, &header[0..4]);
    crc32c::crc32c_append(crc, &header[8..RECORD_HEADER_LEN])
}

fn write_place(header: &mut [u8], place: BatchPlace) {
    header[18] = if place.commit { FLAG_COMMIT } else { 0 };
    header[19] = 0;
    header[20..24].copy_from_slice(&place.index.to_le_bytes());
}

/// Appends the encoding of one record to `out` and returns its encoded length. The record is a
/// batch by itself ([`BatchPlace::ALONE`]) until [`seal`] places it in a larger one.
///
/// The caller guarantees `lsn != 0` and that the payload fits a `u32` (the journal checks the
/// configured maximum first); both are programmer errors here, hence assertions.
pub fn encode_into(out: &mut Vec<u8>, lsn: Lsn, kind: u8, payload: &[u8]) -> usize {
    encode_placed(out, lsn, kind, payload, BatchPlace::ALONE)
}

/// [`encode_into`] with an explicit place in a batch.
pub fn encode_placed(
    out: &mut Vec<u8>,
    lsn: Lsn,
    kind: u8,
    payload: &[u8],
    place: BatchPlace,
) -> usize {
    assert!(lsn.0 != 0, "LSN 0 is reserved");
    let len = u32::try_from(payload.len()).expect("payload length checked against the limit");
    let start = out.len();
    let total = encoded_len(payload.len());
    let mut header = [0u8; RECORD_HEADER_LEN];
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[8..16].copy_from_slice(&lsn.0.to_le_bytes());
    header[16] = kind;
    header[17] = RECORD_FORMAT;
    write_place(&mut header, place);
    let crc = checksum(&header, crc32c::crc32c(payload));
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    out.reserve(total);
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    out.resize(start + total, 0);
    total
}

/// Rewrites the batch place of the encoded record at the start of `record`, whose payload
/// checksum is `payload_crc` (from [`decode`]): only the header is checksummed again.
pub fn seal(record: &mut [u8], payload_crc: u32, place: BatchPlace) {
    let header = &mut record[..RECORD_HEADER_LEN];
    write_place(header, place);
    let crc = checksum(header, payload_crc);
    header[4..8].copy_from_slice(&crc.to_le_bytes());
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
    let payload_crc = crc32c::crc32c(payload);
    let computed = checksum(header, payload_crc);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    let flags_clean = header[18] & !FLAG_COMMIT == 0 && header[19] == 0;
    let padding_clean = buf[RECORD_HEADER_LEN + len..total].iter().all(|&b| b == 0);
    if !flags_clean || !padding_clean {
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
        place: BatchPlace {
            index: read_u32(header, 20),
            commit: header[18] & FLAG_COMMIT != 0,
        },
        encoded_len: total,
        payload_crc,
    })
}

/// Reads the record at the start of `buf` without checking it: only for bytes [`decode`] has
/// already accepted (recovery decodes a batch, then delivers it once its commit is seen).
pub(crate) fn view_checked(buf: &[u8]) -> (RecordView<'_>, usize) {
    let len = read_u32(buf, 0) as usize;
    let view = RecordView {
        lsn: Lsn(read_u64(buf, 8)),
        kind: buf[16],
        payload: &buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len],
    };
    (view, encoded_len(len))
}

/// The sequence number and batch place of a header that looks written by this format, without
/// its checksum (whose payload may be damaged): recovery takes the header of a later batch as
/// evidence that the write before it completed. Zeros and stale bytes do not pass: the format
/// byte, the flags, the reserved byte, the length limit and a non-zero number must all fit.
pub(crate) fn plausible_header(buf: &[u8], max_payload: usize) -> Option<(Lsn, BatchPlace)> {
    if buf.len() < RECORD_HEADER_LEN || buf[17] != RECORD_FORMAT {
        return None;
    }
    let flags_clean = buf[18] & !FLAG_COMMIT == 0 && buf[19] == 0;
    let lsn = read_u64(buf, 8);
    if !flags_clean || read_u32(buf, 0) as usize > max_payload || lsn == 0 {
        return None;
    }
    let place = BatchPlace {
        index: read_u32(buf, 20),
        commit: buf[18] & FLAG_COMMIT != 0,
    };
    Some((Lsn(lsn), place))
}

/// True when `buf` starts with a whole, valid record of format 1 (a log written before batches
/// were marked): recovery refuses such a log instead of taking it for damage.
pub fn is_format_1(buf: &[u8], max_payload: usize) -> bool {
    if buf.len() < RECORD_HEADER_LEN || buf[17] != RECORD_FORMAT_1 {
        return false;
    }
    let len = read_u32(buf, 0) as usize;
    if len > max_payload || buf.len() < encoded_len(len) {
        return false;
    }
    // Format 1's checksum: bytes 0..4, 8..24, then the payload.
    let crc = crc32c::crc32c(&buf[0..4]);
    let crc = crc32c::crc32c_append(crc, &buf[8..RECORD_HEADER_LEN]);
    let crc = crc32c::crc32c_append(crc, &buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len]);
    crc == read_u32(buf, 4)
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
    fn sealing_places_a_record_in_its_batch_without_changing_it() {
        let mut out = vec![];
        encode_into(&mut out, Lsn(9), 4, b"sealed payload");
        let alone = decode(&out, MAX).unwrap();
        assert_eq!(alone.place, BatchPlace::ALONE);
        let crc = alone.payload_crc;
        let place = BatchPlace {
            index: 7,
            commit: false,
        };
        seal(&mut out, crc, place);
        let sealed = decode(&out, MAX).expect("still valid");
        assert_eq!(sealed.place, place);
        assert_eq!(sealed.record.payload, b"sealed payload");
        assert_eq!(place.batch_first(Lsn(9)), Lsn(2));
        let mut direct = vec![];
        encode_placed(&mut direct, Lsn(9), 4, b"sealed payload", place);
        assert_eq!(direct, out, "sealing is the same as encoding in place");
    }

    #[test]
    fn format_1_records_are_recognised_not_decoded() {
        // A format-1 record: checksum over bytes 0..4, 8..24, then the payload.
        let payload = b"old log";
        let mut old = vec![0u8; RECORD_HEADER_LEN];
        old[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        old[8..16].copy_from_slice(&3u64.to_le_bytes());
        old[17] = RECORD_FORMAT_1;
        old.extend_from_slice(payload);
        old.resize(encoded_len(payload.len()), 0);
        let crc = crc32c::crc32c(&old[0..4]);
        let crc = crc32c::crc32c_append(crc, &old[8..RECORD_HEADER_LEN]);
        let crc = crc32c::crc32c_append(crc, payload);
        old[4..8].copy_from_slice(&crc.to_le_bytes());
        assert!(is_format_1(&old, MAX));
        assert_eq!(
            decode(&old, MAX),
            Err(DecodeError::UnknownFormat { format: 1 })
        );
        old[30] ^= 1;
        assert!(
            !is_format_1(&old, MAX),
            "a damaged format-1 record is damage"
        );
        let mut new = vec![];
        encode_into(&mut new, Lsn(3), 0, payload);
        assert!(!is_format_1(&new, MAX));
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
