//! The log datagram: the bytes a worker sends to the master's log port. Pure encoding and
//! decoding, no IO.
//!
//! Layout (all integers big-endian, like TITAN_PROTO's header):
//!
//! ```text
//! header   magic "TLOG" | version u8 | reserved u8 (0) | sections u16
//!          | worker u32 | session u32 | datagram seq u64                      (24 bytes)
//! section  job u64 | attempt u32 | stream u8 | kind u8 | count u16 | seq u64   (24 bytes)
//!          kind 0 (lines): `count` records follow, numbered seq, seq+1, …
//!          kind 1 (end):   count is 0 and seq is the stream's total record count
//! record   flags u8 | len u16 | len bytes
//! ```
//!
//! A section groups consecutive records of one (job, attempt, stream), so a batch of short lines
//! costs 3 bytes of framing per line. The datagram sequence number counts every datagram a
//! sender (worker id + session) sealed, so a receiver counts datagrams lost anywhere on the way;
//! the record sequence numbers count lines per stream, so it also knows which job lost what.
//! [`Datagram::decode`] validates a whole datagram before anything reads it and never panics.

use super::limits::{
    HEADER_BYTES, MAX_DATAGRAM_BYTES, MAX_RECORD_BYTES, RECORD_HEADER_BYTES, SECTION_BYTES,
};
use titan_core::{JobId, WorkerId};

/// The first four bytes of every log datagram.
pub const MAGIC: [u8; 4] = *b"TLOG";
/// The format version this code writes and reads.
pub const VERSION: u8 = 1;

const KIND_LINES: u8 = 0;
const KIND_END: u8 = 1;

#[path = "datagram_writer.rs"]
mod writer;
pub use writer::DatagramWriter;

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
    /// Chosen by the sender when it starts, so a receiver notices a restarted worker whose
    /// datagram numbers begin again at 0.
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

/// A validated datagram, read in place from the receive buffer.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    pub header: DatagramHeader,
    body: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// Checks every field of `bytes`; only a datagram that passes is returned.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_DATAGRAM_BYTES {
            return Err(DecodeError::TooLong {
                len: bytes.len(),
                max: MAX_DATAGRAM_BYTES,
            });
        }
        let mut cursor = Cursor(bytes);
        let head = cursor
            .take(HEADER_BYTES)
            .ok_or(DecodeError::TooShort { len: bytes.len() })?;
        let mut head = Cursor(head);
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
        // The header slice is exactly HEADER_BYTES long, so these reads cannot run short.
        let header = DatagramHeader {
            sections: head.u16().unwrap_or_default(),
            worker: WorkerId(head.u32().unwrap_or_default()),
            session: head.u32().unwrap_or_default(),
            seq: head.u64().unwrap_or_default(),
        };
        let datagram = Datagram {
            header,
            body: cursor.0,
        };
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

/// Iterates a validated datagram (see [`Datagram::entries`]).
pub struct Entries<'a> {
    body: Cursor<'a>,
    sections_left: u16,
    section_index: usize,
    /// The lines section being read: its key, the next record's number and index, records left.
    open: Option<OpenLines>,
}

#[derive(Clone, Copy)]
struct OpenLines {
    key: StreamKey,
    next_seq: u64,
    record: usize,
    left: u16,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        // `decode` walked the same bytes successfully, so `step` cannot fail here.
        self.step().ok().flatten()
    }
}

impl<'a> Entries<'a> {
    fn step(&mut self) -> Result<Option<Entry<'a>>, DecodeError> {
        if let Some(open) = self.open.as_mut() {
            if open.left > 0 {
                let line = read_record(&mut self.body, self.section_index, open)?;
                return Ok(Some(Entry::Line(line)));
            }
            self.open = None;
            self.section_index += 1;
        }
        if self.sections_left == 0 {
            return Ok(None);
        }
        self.sections_left -= 1;
        let section = self.section_index;
        let left = self.body.0.len();
        let mut head = Cursor(
            self.body
                .take(SECTION_BYTES)
                .ok_or(DecodeError::Truncated {
                    section,
                    needed: SECTION_BYTES,
                    left,
                })?,
        );
        // The section header slice is exactly SECTION_BYTES long.
        let job = JobId(head.u64().unwrap_or_default());
        let attempt = head.u32().unwrap_or_default();
        let stream_byte = head.u8().unwrap_or_default();
        let kind = head.u8().unwrap_or_default();
        let count = head.u16().unwrap_or_default();
        let seq = head.u64().unwrap_or_default();
        let stream = Stream::from_wire(stream_byte).ok_or(DecodeError::BadStream {
            section,
            value: stream_byte,
        })?;
        let key = AttemptKey::new(job, attempt).stream(stream);
        match kind {
            KIND_END if count != 0 => Err(DecodeError::EndWithRecords { section, count }),
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
                    next_seq: seq,
                    record: 0,
                    left: count,
                };
                let line = read_record(&mut self.body, section, &mut open)?;
                self.open = Some(open);
                Ok(Some(Entry::Line(line)))
            }
            value => Err(DecodeError::BadKind { section, value }),
        }
    }
}

fn read_record<'a>(
    body: &mut Cursor<'a>,
    section: usize,
    open: &mut OpenLines,
) -> Result<LineEntry<'a>, DecodeError> {
    let record = open.record;
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
    // `decode` checked that seq + count does not overflow.
    open.next_seq += 1;
    open.record += 1;
    open.left -= 1;
    Ok(line)
}

/// A byte slice read front to back; every read is checked.
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

#[cfg(test)]
#[path = "datagram_tests.rs"]
mod tests;
