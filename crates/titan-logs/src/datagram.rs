//! The log datagram: the bytes a worker sends to the master's log port. Pure encoding and
//! decoding, no IO.
//!
//! Layout (all integers big-endian, like TITAN_PROTO's header):
//!
//! ```text
//! header   magic "TLOG" | version u8 (2) | reserved u8 (0) | sections u16
//!          | worker u32 | session u32 | datagram seq u64                      (24 bytes)
//!          | tag [16]   the worker key's seal over the 24 bytes before it
//! section  job u64 | attempt u32 | stream u8 | kind u8 | count u16 | seq u64
//!          | body_len u16                                                      (26 bytes)
//!          | body       body_len bytes: the records, encrypted with the attempt's key
//!          | tag [16]   the attempt key's seal over the body, the header fields and this
//!                       section's header
//!          kind 0 (lines): `count` records fill the body, numbered seq, seq+1, …
//!          kind 1 (end):   count and body_len are 0, seq is the stream's total record count
//! record   flags u8 | len u16 | len bytes
//! ```
//!
//! A section groups consecutive records of one (job, attempt, stream), so a batch of short lines
//! costs 3 bytes of framing per line. The datagram sequence number counts every datagram a
//! sender (worker id + session) sealed, so a receiver counts datagrams lost anywhere on the way;
//! the record sequence numbers count lines per stream, so it also knows which job lost what.
//!
//! Seals are ChaCha20-Poly1305 (`titan_auth::SealKey`). Each attempt's lines are sealed with the
//! key the master derived for that attempt and sent with its dispatch, so a worker cannot write
//! lines into another worker's jobs, and nobody without a key can write any; the header is
//! sealed with the worker's own key (from its registration), so nobody can forge the numbering
//! a receiver counts loss by. A seal's nonce is the session (random per sender) followed by
//! `seq << 16 | section index` (`u16::MAX` for the header): unique for every seal a sender
//! makes. [`Datagram::open`] checks every seal and decrypts in place, then validates every
//! field before anything reads the datagram; it never panics.

use super::limits::{
    HEADER_BYTES, HEADER_FIELDS_BYTES, MAX_DATAGRAM_BYTES, MAX_RECORD_BYTES, RECORD_HEADER_BYTES,
    SECTION_BYTES, TAG_BYTES,
};
use titan_core::{JobId, WorkerId};

/// The first four bytes of every log datagram.
pub const MAGIC: [u8; 4] = *b"TLOG";
/// The format version this code writes and reads (1 had no seals).
pub const VERSION: u8 = 2;

const KIND_LINES: u8 = 0;
const KIND_END: u8 = 1;

#[path = "datagram_writer.rs"]
mod writer;
pub use writer::DatagramWriter;

#[path = "datagram_seal.rs"]
mod seal;
use seal::unseal;
pub use seal::OpenKeys;

/// Which output of a job a line comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    pub const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

    /// 0 for stdout, 1 for stderr: an index into per-stream arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    fn from_wire(value: u8) -> Option<Stream> {
        match value {
            0 => Some(Stream::Stdout),
            1 => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// One attempt of one job: the unit the sink keeps lines for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttemptKey {
    pub job: JobId,
    pub attempt: u32,
}

impl AttemptKey {
    pub fn new(job: JobId, attempt: u32) -> Self {
        Self { job, attempt }
    }

    pub fn stream(self, stream: Stream) -> StreamKey {
        StreamKey {
            attempt: self,
            stream,
        }
    }
}

/// One output stream of one job attempt: the unit record sequence numbers count in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamKey {
    pub attempt: AttemptKey,
    pub stream: Stream,
}

/// How a record ends, so the exact bytes the job wrote can be rebuilt from records
/// ([`LineFlags::terminator`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LineFlags(u8);

impl LineFlags {
    /// The line was longer than [`MAX_RECORD_BYTES`]: the next record of the stream continues
    /// it, and no newline follows this one.
    pub const CONTINUES: LineFlags = LineFlags(1);
    /// The stream ended without a final newline after this record.
    pub const UNTERMINATED: LineFlags = LineFlags(2);
    /// The line ended with `\r\n`; the `\r` is not part of the record's bytes.
    pub const CRLF: LineFlags = LineFlags(4);
    const KNOWN: u8 = 1 | 2 | 4;

    pub const fn empty() -> Self {
        LineFlags(0)
    }

    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Flags from the wire, or `None` when unknown bits are set.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        if bits & !Self::KNOWN == 0 {
            Some(LineFlags(bits))
        } else {
            None
        }
    }

    pub const fn contains(self, other: LineFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn union(self, other: LineFlags) -> Self {
        LineFlags(self.0 | other.0)
    }

    /// The bytes that followed the record in the job's output: a newline, `\r\n`, or nothing.
    pub const fn terminator(self) -> &'static [u8] {
        if self.contains(Self::CONTINUES) || self.contains(Self::UNTERMINATED) {
            b""
        } else if self.contains(Self::CRLF) {
            b"\r\n"
        } else {
            b"\n"
        }
    }
}

/// The fixed part of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatagramHeader {
    pub worker: WorkerId,
    /// Chosen at random by the sender when it starts, so a receiver notices a restarted worker
    /// whose datagram numbers begin again at 0 (and the seals' nonces never repeat).
    pub session: u32,
    /// The sender's datagram number, counting from 0 in each session.
    pub seq: u64,
    pub sections: u16,
}

/// One line record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineEntry<'a> {
    pub key: StreamKey,
    pub seq: u64,
    pub flags: LineFlags,
    pub bytes: &'a [u8],
}

/// What a datagram carries, one item at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    Line(LineEntry<'a>),
    /// The stream has ended after `total` records (numbered 0..total).
    End {
        key: StreamKey,
        total: u64,
    },
}

/// Why bytes are not a valid log datagram.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram of {len} bytes is shorter than the {HEADER_BYTES}-byte header")]
    TooShort { len: usize },
    #[error("datagram of {len} bytes exceeds the maximum of {max}")]
    TooLong { len: usize, max: usize },
    #[error("bad magic {found:02x?}")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported version {found} (this build reads {VERSION})")]
    UnsupportedVersion { found: u8 },
    #[error("reserved header byte is {found}, must be 0")]
    Reserved { found: u8 },
    #[error("the header's seal does not verify: not sent by the worker it names")]
    ForgedHeader,
    #[error("section {section}'s seal does not verify: not sealed with its attempt's key")]
    ForgedSection { section: usize },
    #[error("section {section} is cut short: needs {needed} more bytes, {left} left")]
    Truncated {
        section: usize,
        needed: usize,
        left: usize,
    },
    #[error("section {section} names stream {value}")]
    BadStream { section: usize, value: u8 },
    #[error("section {section} has unknown kind {value}")]
    BadKind { section: usize, value: u8 },
    #[error("section {section} is a lines section with no record")]
    EmptySection { section: usize },
    #[error("section {section} is an end section with {count} records")]
    EndWithRecords { section: usize, count: u16 },
    #[error("section {section}: {left} body bytes after its records")]
    BodyLeft { section: usize, left: usize },
    #[error("section {section}: sequence numbers overflow")]
    SeqOverflow { section: usize },
    #[error("section {section} record {record}: {len} bytes exceed the maximum of {max}")]
    RecordTooLong {
        section: usize,
        record: usize,
        len: usize,
        max: usize,
    },
    #[error("section {section} record {record}: unknown flags {flags:#04x}")]
    UnknownFlags {
        section: usize,
        record: usize,
        flags: u8,
    },
    #[error("{count} bytes after the last section")]
    TrailingBytes { count: usize },
}

impl DecodeError {
    /// Whether the datagram failed its seals (forged, altered, or sealed with a key the master
    /// did not give out) rather than its format.
    pub fn is_forged(&self) -> bool {
        matches!(
            self,
            DecodeError::ForgedHeader | DecodeError::ForgedSection { .. }
        )
    }
}

/// A validated datagram, read in place from the receive buffer.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    pub header: DatagramHeader,
    body: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// Checks every seal of `bytes` with `keys` and decrypts the sections in place, then
    /// validates every field; only a datagram that passes all of it is returned.
    pub fn open(
        bytes: &'a mut [u8],
        keys: &mut impl OpenKeys,
    ) -> Result<Datagram<'a>, DecodeError> {
        unseal(bytes, keys)?;
        Datagram::parse(bytes)
    }

    /// Validates the fields of a datagram whose seals were opened (`open` does both).
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (header, body) = read_header(bytes)?;
        let datagram = Datagram { header, body };
        let mut entries = datagram.walk();
        while entries.step()?.is_some() {}
        if !entries.body.0.is_empty() {
            return Err(DecodeError::TrailingBytes {
                count: entries.body.0.len(),
            });
        }
        Ok(datagram)
    }

    /// The datagram's lines and end markers, in the order they were packed.
    pub fn entries(&self) -> Entries<'a> {
        self.walk()
    }

    fn walk(&self) -> Entries<'a> {
        Entries {
            body: Cursor(self.body),
            sections_left: self.header.sections,
            section_index: 0,
            open: None,
        }
    }
}

/// The header's fields, checked, and what follows the header.
pub(crate) fn read_header(bytes: &[u8]) -> Result<(DatagramHeader, &[u8]), DecodeError> {
    if bytes.len() > MAX_DATAGRAM_BYTES {
        return Err(DecodeError::TooLong {
            len: bytes.len(),
            max: MAX_DATAGRAM_BYTES,
        });
    }
    if bytes.len() < HEADER_BYTES {
        return Err(DecodeError::TooShort { len: bytes.len() });
    }
    let mut head = Cursor(&bytes[..HEADER_FIELDS_BYTES]);
    let magic = head.array::<4>().unwrap_or_default();
    if magic != MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    let version = head.u8().unwrap_or_default();
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion { found: version });
    }
    let reserved = head.u8().unwrap_or_default();
    if reserved != 0 {
        return Err(DecodeError::Reserved { found: reserved });
    }
    // The fields' slice is exactly HEADER_FIELDS_BYTES long, so these reads cannot run short.
    let header = DatagramHeader {
        sections: head.u16().unwrap_or_default(),
        worker: WorkerId(head.u32().unwrap_or_default()),
        session: head.u32().unwrap_or_default(),
        seq: head.u64().unwrap_or_default(),
    };
    Ok((header, &bytes[HEADER_BYTES..]))
}

/// Iterates a validated datagram (see [`Datagram::entries`]).
pub struct Entries<'a> {
    body: Cursor<'a>,
    sections_left: u16,
    section_index: usize,
    /// The lines section being read: its key, its records, the next record's number and index,
    /// records left.
    open: Option<OpenLines<'a>>,
}

#[derive(Clone, Copy)]
struct OpenLines<'a> {
    key: StreamKey,
    records: Cursor<'a>,
    next_seq: u64,
    record: usize,
    left: u16,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        // `parse` walked the same bytes successfully, so `step` cannot fail here.
        self.step().ok().flatten()
    }
}

impl<'a> Entries<'a> {
    fn step(&mut self) -> Result<Option<Entry<'a>>, DecodeError> {
        if let Some(open) = self.open.as_mut() {
            if open.left > 0 {
                let line = read_record(self.section_index, open)?;
                return Ok(Some(Entry::Line(line)));
            }
            if !open.records.0.is_empty() {
                return Err(DecodeError::BodyLeft {
                    section: self.section_index,
                    left: open.records.0.len(),
                });
            }
            self.open = None;
            self.section_index += 1;
        }
        if self.sections_left == 0 {
            return Ok(None);
        }
        self.sections_left -= 1;
        self.next_section()
    }

    fn next_section(&mut self) -> Result<Option<Entry<'a>>, DecodeError> {
        let section = self.section_index;
        let truncated = |needed: usize, left: usize| DecodeError::Truncated {
            section,
            needed,
            left,
        };
        let left = self.body.0.len();
        let mut head = Cursor(
            self.body
                .take(SECTION_BYTES)
                .ok_or_else(|| truncated(SECTION_BYTES, left))?,
        );
        // The section header slice is exactly SECTION_BYTES long.
        let job = JobId(head.u64().unwrap_or_default());
        let attempt = head.u32().unwrap_or_default();
        let stream_byte = head.u8().unwrap_or_default();
        let kind = head.u8().unwrap_or_default();
        let count = head.u16().unwrap_or_default();
        let seq = head.u64().unwrap_or_default();
        let body_len = usize::from(head.u16().unwrap_or_default());
        let left = self.body.0.len();
        let records = self
            .body
            .take(body_len)
            .ok_or_else(|| truncated(body_len, left))?;
        let left = self.body.0.len();
        self.body
            .take(TAG_BYTES)
            .ok_or_else(|| truncated(TAG_BYTES, left))?;
        let stream = Stream::from_wire(stream_byte).ok_or(DecodeError::BadStream {
            section,
            value: stream_byte,
        })?;
        let key = AttemptKey::new(job, attempt).stream(stream);
        match kind {
            KIND_END if count != 0 || body_len != 0 => {
                Err(DecodeError::EndWithRecords { section, count })
            }
            KIND_END => {
                self.section_index += 1;
                Ok(Some(Entry::End { key, total: seq }))
            }
            KIND_LINES if count == 0 => Err(DecodeError::EmptySection { section }),
            KIND_LINES => {
                if seq.checked_add(u64::from(count)).is_none() {
                    return Err(DecodeError::SeqOverflow { section });
                }
                let mut open = OpenLines {
                    key,
                    records: Cursor(records),
                    next_seq: seq,
                    record: 0,
                    left: count,
                };
                let line = read_record(section, &mut open)?;
                self.open = Some(open);
                Ok(Some(Entry::Line(line)))
            }
            value => Err(DecodeError::BadKind { section, value }),
        }
    }
}

fn read_record<'a>(section: usize, open: &mut OpenLines<'a>) -> Result<LineEntry<'a>, DecodeError> {
    let record = open.record;
    let body = &mut open.records;
    let truncated = |needed: usize, left: usize| DecodeError::Truncated {
        section,
        needed,
        left,
    };
    let left = body.0.len();
    let mut head = Cursor(
        body.take(RECORD_HEADER_BYTES)
            .ok_or_else(|| truncated(RECORD_HEADER_BYTES, left))?,
    );
    let flag_bits = head.u8().unwrap_or_default();
    let len = usize::from(head.u16().unwrap_or_default());
    let flags = LineFlags::from_bits(flag_bits).ok_or(DecodeError::UnknownFlags {
        section,
        record,
        flags: flag_bits,
    })?;
    if len > MAX_RECORD_BYTES {
        return Err(DecodeError::RecordTooLong {
            section,
            record,
            len,
            max: MAX_RECORD_BYTES,
        });
    }
    let left = body.0.len();
    let bytes = body.take(len).ok_or_else(|| truncated(len, left))?;
    let line = LineEntry {
        key: open.key,
        seq: open.next_seq,
        flags,
        bytes,
    };
    // `parse` checked that seq + count does not overflow.
    open.next_seq += 1;
    open.record += 1;
    open.left -= 1;
    Ok(line)
}

/// A byte slice read front to back; every read is checked.
#[derive(Clone, Copy)]
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }
}

/// Keys for tests: one fixed master secret, as the sink and the workers would derive them.
#[cfg(test)]
pub(crate) mod testing {
    use super::{AttemptKey, Datagram, DecodeError};
    use crate::keys::SinkKeys;
    use titan_auth::{MasterSecret, SealKey, Secret};
    use titan_core::WorkerId;

    pub fn master() -> MasterSecret {
        MasterSecret::new(&Secret::from_bytes([42; 32]))
    }

    pub fn worker_key(worker: WorkerId) -> SealKey {
        SealKey::new(&master().worker_log_key(worker.0))
    }

    pub fn attempt_key(attempt: AttemptKey) -> SealKey {
        SealKey::new(&master().attempt_log_key(attempt.job.0, attempt.attempt))
    }

    /// The sink's keys, and a worker's header key and one attempt's key.
    pub fn keys(worker: WorkerId, attempt: AttemptKey) -> (SinkKeys, SealKey, SealKey) {
        (
            SinkKeys::new(master()),
            worker_key(worker),
            attempt_key(attempt),
        )
    }

    pub fn open<'a>(keys: &mut SinkKeys, bytes: &'a mut [u8]) -> Result<Datagram<'a>, DecodeError> {
        Datagram::open(bytes, keys)
    }
}

#[cfg(test)]
#[path = "datagram_tests.rs"]
mod tests;
