//! Encoding: [`DatagramWriter`] packs entries into one datagram of bounded size, in the layout
//! the parent module documents, and seals it.

use super::seal::{seal_nonce, section_aad, HEADER_SEAL_INDEX};
use super::{LineFlags, StreamKey, KIND_END, KIND_LINES, MAGIC, VERSION};
use crate::limits::{
    HEADER_BYTES, HEADER_FIELDS_BYTES, MAX_DATAGRAM_BYTES, MAX_RECORD_BYTES, MAX_SECTIONS,
    MIN_DATAGRAM_BYTES, RECORD_HEADER_BYTES, SECTION_BYTES, TAG_BYTES,
};
use titan_auth::SealKey;
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
    /// Where each section starts and the key that seals it (reused between datagrams).
    seals: Vec<(usize, SealKey)>,
    /// Whether the last section still lacks room for its tag (a lines section takes more
    /// records until the next section starts or the datagram is sealed).
    tag_pending: bool,
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
            seals: Vec::new(),
            tag_pending: false,
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

    /// Appends one line record, to be sealed with `seal` (its attempt's key); `false` when it
    /// does not fit (seal and clear, then push again: an empty writer always takes a record of
    /// up to [`MAX_RECORD_BYTES`]).
    ///
    /// Panics when `bytes` is longer than [`MAX_RECORD_BYTES`]: the line splitter never makes
    /// such a record, so one is a programmer error.
    pub fn push_line(
        &mut self,
        seal: &SealKey,
        key: StreamKey,
        seq: u64,
        flags: LineFlags,
        bytes: &[u8],
    ) -> bool {
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
            if self.buf.len() + record + TAG_BYTES > self.capacity {
                return false;
            }
        } else {
            if !self.has_room_for_section(record) {
                return false;
            }
            let count_at = self.push_section_head(seal, key, KIND_LINES, seq);
            self.open = Some((key, seq, count_at));
            self.tag_pending = true;
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

    /// Appends an end marker for `key` after `total` records, sealed with `seal`; `false` when
    /// it does not fit.
    pub fn push_end(&mut self, seal: &SealKey, key: StreamKey, total: u64) -> bool {
        if !self.has_room_for_section(0) {
            return false;
        }
        self.push_section_head(seal, key, KIND_END, total);
        self.buf.extend_from_slice(&[0; TAG_BYTES]);
        self.open = None;
        true
    }

    /// Writes the header, seals every section with its key and the header with `worker_key`,
    /// and returns the finished datagram. The writer keeps it until [`clear`](Self::clear).
    pub fn seal(
        &mut self,
        worker_key: &SealKey,
        worker: WorkerId,
        session: u32,
        seq: u64,
    ) -> &[u8] {
        self.close_tag();
        let mut fields = [0u8; HEADER_FIELDS_BYTES];
        fields[0..4].copy_from_slice(&MAGIC);
        fields[4] = VERSION;
        fields[6..8].copy_from_slice(&self.sections.to_be_bytes());
        fields[8..12].copy_from_slice(&worker.0.to_be_bytes());
        fields[12..16].copy_from_slice(&session.to_be_bytes());
        fields[16..24].copy_from_slice(&seq.to_be_bytes());
        self.buf[..HEADER_FIELDS_BYTES].copy_from_slice(&fields);
        for (index, (at, key)) in self.seals.iter().enumerate() {
            let end = self
                .seals
                .get(index + 1)
                .map_or(self.buf.len(), |(next, _)| *next);
            let body_len = end - at - SECTION_BYTES - TAG_BYTES;
            // A body is smaller than the datagram, whose size fits a u16 (asserted in limits).
            self.buf[at + 24..at + 26].copy_from_slice(&(body_len as u16).to_be_bytes());
            let aad = section_aad(&fields, &self.buf[*at..at + SECTION_BYTES]);
            let (body, tag) = self.buf[at + SECTION_BYTES..end].split_at_mut(body_len);
            tag.copy_from_slice(&key.seal(seal_nonce(session, seq, index as u16), &aad, body));
        }
        let header_tag = worker_key.seal(
            seal_nonce(session, seq, HEADER_SEAL_INDEX),
            &fields,
            &mut [],
        );
        self.buf[HEADER_FIELDS_BYTES..HEADER_BYTES].copy_from_slice(&header_tag);
        &self.buf
    }

    pub fn clear(&mut self) {
        self.buf.truncate(HEADER_BYTES);
        self.sections = 0;
        self.lines = 0;
        self.open = None;
        self.seals.clear();
        self.tag_pending = false;
    }

    fn count_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.buf[at], self.buf[at + 1]])
    }

    /// Whether a new section with `body` bytes fits, with its tag and the open section's.
    fn has_room_for_section(&self, body: usize) -> bool {
        let pending = if self.tag_pending { TAG_BYTES } else { 0 };
        self.buf.len() + pending + SECTION_BYTES + body + TAG_BYTES <= self.capacity
            && self.sections < MAX_SECTIONS
    }

    /// Makes room for the tag of the section that was taking records.
    fn close_tag(&mut self) {
        if self.tag_pending {
            self.buf.extend_from_slice(&[0; TAG_BYTES]);
            self.tag_pending = false;
        }
    }

    /// Appends a section header with a zero count and body length; returns where the count
    /// sits.
    fn push_section_head(&mut self, seal: &SealKey, key: StreamKey, kind: u8, seq: u64) -> usize {
        self.close_tag();
        self.seals.push((self.buf.len(), seal.clone()));
        self.buf.extend_from_slice(&key.attempt.job.0.to_be_bytes());
        self.buf
            .extend_from_slice(&key.attempt.attempt.to_be_bytes());
        self.buf.push(key.stream as u8);
        self.buf.push(kind);
        let count_at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_be_bytes());
        self.buf.extend_from_slice(&seq.to_be_bytes());
        self.buf.extend_from_slice(&0u16.to_be_bytes());
        self.sections += 1;
        count_at
    }
}
