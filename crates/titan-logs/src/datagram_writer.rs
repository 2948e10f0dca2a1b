//! Encoding: [`DatagramWriter`] packs entries into one datagram of bounded size, in the layout
//! the parent module documents.

use super::{LineFlags, StreamKey, KIND_END, KIND_LINES, MAGIC, VERSION};
use crate::limits::{
    HEADER_BYTES, MAX_DATAGRAM_BYTES, MAX_RECORD_BYTES, MIN_DATAGRAM_BYTES, RECORD_HEADER_BYTES,
    SECTION_BYTES,
};
use titan_core::WorkerId;

/// Builds one datagram in a reusable buffer: entries are pushed until one does not fit, then
/// the datagram is sealed with its header and sent, and the writer cleared.
#[derive(Debug)]
pub struct DatagramWriter {
    buf: Vec<u8>,
    capacity: usize,
    sections: u16,
    lines: u32,
    /// The lines section records are being appended to: its key, the next record's number, and
    /// where its count field sits in `buf`.
    open: Option<(StreamKey, u64, usize)>,
}

impl DatagramWriter {
    /// A writer for datagrams of at most `capacity` bytes, clamped to
    /// [`MIN_DATAGRAM_BYTES`]..=[`MAX_DATAGRAM_BYTES`].
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(MIN_DATAGRAM_BYTES, MAX_DATAGRAM_BYTES);
        let mut buf = Vec::with_capacity(capacity);
        buf.resize(HEADER_BYTES, 0);
        Self {
            buf,
            capacity,
            sections: 0,
            lines: 0,
            open: None,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// True when nothing has been pushed since the last [`clear`](Self::clear).
    pub fn is_empty(&self) -> bool {
        self.sections == 0
    }

    /// Line records pushed since the last clear.
    pub fn lines(&self) -> u32 {
        self.lines
    }

    /// Appends one line record; `false` when it does not fit (seal and clear, then push again:
    /// an empty writer always takes a record of up to [`MAX_RECORD_BYTES`]).
    ///
    /// Panics when `bytes` is longer than [`MAX_RECORD_BYTES`]: the line splitter never makes
    /// such a record, so one is a programmer error.
    pub fn push_line(&mut self, key: StreamKey, seq: u64, flags: LineFlags, bytes: &[u8]) -> bool {
        assert!(
            bytes.len() <= MAX_RECORD_BYTES,
            "record of {} bytes",
            bytes.len()
        );
        let record = RECORD_HEADER_BYTES + bytes.len();
        let continues = match self.open {
            Some((open_key, next_seq, count_at)) => {
                open_key == key && next_seq == seq && self.count_at(count_at) < u16::MAX
            }
            None => false,
        };
        if continues {
            if self.buf.len() + record > self.capacity {
                return false;
            }
        } else {
            if self.buf.len() + SECTION_BYTES + record > self.capacity || self.sections == u16::MAX
            {
                return false;
            }
            let count_at = self.push_section_head(key, KIND_LINES, seq);
            self.open = Some((key, seq, count_at));
        }
        if let Some((_, _, count_at)) = self.open {
            let count = self.count_at(count_at) + 1;
            self.buf[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
            self.open = Some((key, seq.wrapping_add(1), count_at));
        }
        self.buf.push(flags.bits());
        // `bytes.len()` ≤ MAX_RECORD_BYTES, which fits a u16 (asserted at compile time).
        self.buf
            .extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(bytes);
        self.lines += 1;
        true
    }

    /// Appends an end marker for `key` after `total` records; `false` when it does not fit.
    pub fn push_end(&mut self, key: StreamKey, total: u64) -> bool {
        if self.buf.len() + SECTION_BYTES > self.capacity || self.sections == u16::MAX {
            return false;
        }
        self.push_section_head(key, KIND_END, total);
        self.open = None;
        true
    }

    /// Writes the header and returns the finished datagram. The writer keeps its content until
    /// [`clear`](Self::clear).
    pub fn seal(&mut self, worker: WorkerId, session: u32, seq: u64) -> &[u8] {
        let mut head = [0u8; HEADER_BYTES];
        head[0..4].copy_from_slice(&MAGIC);
        head[4] = VERSION;
        head[6..8].copy_from_slice(&self.sections.to_be_bytes());
        head[8..12].copy_from_slice(&worker.0.to_be_bytes());
        head[12..16].copy_from_slice(&session.to_be_bytes());
        head[16..24].copy_from_slice(&seq.to_be_bytes());
        self.buf[..HEADER_BYTES].copy_from_slice(&head);
        &self.buf
    }

    pub fn clear(&mut self) {
        self.buf.truncate(HEADER_BYTES);
        self.sections = 0;
        self.lines = 0;
        self.open = None;
    }

    fn count_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.buf[at], self.buf[at + 1]])
    }

    /// Appends a section header with a zero count; returns where the count sits.
    fn push_section_head(&mut self, key: StreamKey, kind: u8, seq: u64) -> usize {
        self.buf.extend_from_slice(&key.attempt.job.0.to_be_bytes());
        self.buf
            .extend_from_slice(&key.attempt.attempt.to_be_bytes());
        self.buf.push(key.stream as u8);
        self.buf.push(kind);
        let count_at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_be_bytes());
        self.buf.extend_from_slice(&seq.to_be_bytes());
        self.sections += 1;
        count_at
    }
}
