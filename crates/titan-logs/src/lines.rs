//! Cutting one output stream into numbered records, whatever sizes the reads come in.
//!
//! A record is a line without its newline. A line longer than the record limit becomes several
//! records, each but the last flagged `CONTINUES`; the cut falls after every `max` bytes of the
//! line, so where reads happened to end never changes the records. A `\r` right before the
//! newline is dropped and flagged `CRLF`; a last line without a newline is flagged
//! `UNTERMINATED`. Concatenating each record's bytes and [`LineFlags::terminator`] rebuilds the
//! stream exactly.

use super::datagram::LineFlags;
use super::limits::MAX_RECORD_BYTES;

/// One record of a stream, borrowed from the splitter or from the bytes just fed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// 0 for the stream's first record, then consecutive.
    pub seq: u64,
    pub flags: LineFlags,
    pub bytes: &'a [u8],
}

/// Turns the reads of one stream into records. Holds at most one unfinished line of up to the
/// record limit.
#[derive(Debug)]
pub struct LineSplitter {
    /// The current line's bytes not yet emitted (never more than `max` after a feed).
    partial: Vec<u8>,
    next_seq: u64,
    max: usize,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl LineSplitter {
    /// A splitter with records of at most [`MAX_RECORD_BYTES`].
    pub fn new() -> Self {
        Self::with_max_record(MAX_RECORD_BYTES)
    }

    /// A splitter with a smaller record limit (tests use it to make cuts frequent). `max` is
    /// clamped to 1..=[`MAX_RECORD_BYTES`].
    pub fn with_max_record(max: usize) -> Self {
        Self {
            partial: Vec::new(),
            next_seq: 0,
            max: max.clamp(1, MAX_RECORD_BYTES),
        }
    }

    /// Records emitted so far.
    pub fn records(&self) -> u64 {
        self.next_seq
    }

    /// Feeds the next bytes of the stream; `emit` receives every record they complete.
    pub fn feed(&mut self, mut chunk: &[u8], mut emit: impl FnMut(Record<'_>)) {
        while let Some(newline) = memchr::memchr(b'\n', chunk) {
            let (line, rest) = (&chunk[..newline], &chunk[newline + 1..]);
            if self.partial.is_empty() {
                emit_line(&mut self.next_seq, self.max, line, &mut emit);
            } else {
                self.partial.extend_from_slice(line);
                emit_line(&mut self.next_seq, self.max, &self.partial, &mut emit);
                self.partial.clear();
            }
            chunk = rest;
        }
        if chunk.is_empty() {
            return;
        }
        self.partial.extend_from_slice(chunk);
        // Cut only while more than `max` bytes wait: a line of exactly `max` bytes may still
        // end with the next byte and must then be one record.
        let mut cut = 0;
        while self.partial.len() - cut > self.max {
            emit(Record {
                seq: self.next_seq,
                flags: LineFlags::CONTINUES,
                bytes: &self.partial[cut..cut + self.max],
            });
            self.next_seq += 1;
            cut += self.max;
        }
        self.partial.drain(..cut);
    }

    /// Ends the stream: a last line without a newline becomes an `UNTERMINATED` record. Returns
    /// the total number of records.
    pub fn finish(&mut self, mut emit: impl FnMut(Record<'_>)) -> u64 {
        if !self.partial.is_empty() {
            emit(Record {
                seq: self.next_seq,
                flags: LineFlags::UNTERMINATED,
                bytes: &self.partial,
            });
            self.next_seq += 1;
            self.partial.clear();
        }
        self.next_seq
    }
}

/// Emits one complete line (its newline already removed) as one or more records.
fn emit_line(next_seq: &mut u64, max: usize, mut line: &[u8], emit: &mut impl FnMut(Record<'_>)) {
    while line.len() > max {
        emit(Record {
            seq: *next_seq,
            flags: LineFlags::CONTINUES,
            bytes: &line[..max],
        });
        *next_seq += 1;
        line = &line[max..];
    }
    let (bytes, flags) = match line.strip_suffix(b"\r") {
        Some(stripped) => (stripped, LineFlags::CRLF),
        None => (line, LineFlags::empty()),
    };
    emit(Record {
        seq: *next_seq,
        flags,
        bytes,
    });
    *next_seq += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Owned = (u64, LineFlags, Vec<u8>);

    fn split(reads: &[&[u8]], max: usize) -> Vec<Owned> {
        let mut splitter = LineSplitter::with_max_record(max);
        let mut out = Vec::new();
        for read in reads {
            splitter.feed(read, |r| out.push((r.seq, r.flags, r.bytes.to_vec())));
        }
        let total = splitter.finish(|r| out.push((r.seq, r.flags, r.bytes.to_vec())));
        assert_eq!(total, out.len() as u64);
        out
    }

    fn rebuild(records: &[Owned]) -> Vec<u8> {
        let mut out = Vec::new();
        for (_, flags, bytes) in records {
            out.extend_from_slice(bytes);
            out.extend_from_slice(flags.terminator());
        }
        out
    }

    #[test]
    fn lines_crlf_and_a_final_partial_line() {
        let records = split(&[b"one\ntw", b"o\r\nthr", b"ee"], 100);
        assert_eq!(
            records,
            vec![
                (0, LineFlags::empty(), b"one".to_vec()),
                (1, LineFlags::CRLF, b"two".to_vec()),
                (2, LineFlags::UNTERMINATED, b"three".to_vec()),
            ]
        );
    }

    #[test]
    fn empty_lines_and_empty_streams() {
        assert_eq!(split(&[], 10), vec![]);
        assert_eq!(split(&[b"", b""], 10), vec![]);
        assert_eq!(
            split(&[b"\n\n"], 10),
            vec![
                (0, LineFlags::empty(), vec![]),
                (1, LineFlags::empty(), vec![])
            ]
        );
    }

    #[test]
    fn long_lines_are_cut_after_every_max_bytes() {
        let records = split(&[b"abcdefg", b"h\nabcd\n"], 4);
        assert_eq!(
            records,
            vec![
                (0, LineFlags::CONTINUES, b"abcd".to_vec()),
                (1, LineFlags::empty(), b"efgh".to_vec()),
                (2, LineFlags::empty(), b"abcd".to_vec()),
            ]
        );
        // A line of max + 1 bytes whose last byte is the \r of a CRLF.
        let records = split(&[b"abcd\r", b"\n"], 4);
        assert_eq!(
            records,
            vec![
                (0, LineFlags::CONTINUES, b"abcd".to_vec()),
                (1, LineFlags::CRLF, vec![]),
            ]
        );
    }

    #[test]
    fn the_partial_line_stays_bounded() {
        let mut splitter = LineSplitter::with_max_record(8);
        let mut records = 0;
        for _ in 0..1000 {
            splitter.feed(&[b'x'; 100], |_| records += 1);
            assert!(splitter.partial.len() <= 8);
        }
        assert_eq!(records, 100_000 / 8 - 1);
    }

    /// A stream built from lines of the given kinds, to make long lines and CRs likely.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            3 => proptest::collection::vec(b'a'..=b'c', 0..12),
            1 => Just(b"\r".to_vec()),
            2 => Just(b"\n".to_vec()),
            1 => Just(b"\r\n".to_vec()),
            1 => proptest::collection::vec(any::<u8>(), 0..40),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn any_split_into_reads_gives_the_same_records_and_rebuilds_the_bytes(
            bytes in stream(),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
            max in 1usize..16,
        ) {
            let whole = split(&[&bytes], max);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut reads = Vec::new();
            let mut start = 0;
            for point in points {
                reads.push(&bytes[start..point]);
                start = point;
            }
            reads.push(&bytes[start..]);
            prop_assert_eq!(&split(&reads, max), &whole);
            prop_assert_eq!(rebuild(&whole), bytes);
            prop_assert!(whole.iter().all(|(_, _, b)| b.len() <= max));
            prop_assert!(whole.iter().enumerate().all(|(i, (seq, _, _))| *seq == i as u64));
        }
    }
}
