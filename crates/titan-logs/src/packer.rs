//! Batching records into numbered datagrams: the pure core of the shipper.
//!
//! The packer appends records to the open datagram and seals it when the next entry would not
//! fit or when the caller flushes (the shipper does so when a batch is older than its flush
//! window). Each sealed datagram gets the next datagram sequence number, whether or not the
//! caller then manages to send it: a datagram dropped at the sender is a gap the receiver
//! counts like any other loss.

use super::datagram::{DatagramWriter, StreamKey};
use super::lines::Record;
use titan_auth::SealKey;
use titan_core::WorkerId;

/// A datagram ready to go.
#[derive(Clone, Copy, Debug)]
pub struct Sealed<'a> {
    pub seq: u64,
    pub bytes: &'a [u8],
    /// Line records in it (so a dropped datagram's lines can be counted).
    pub lines: u32,
}

/// Packs records and end markers into datagrams for one sender.
#[derive(Debug)]
pub struct Packer {
    writer: DatagramWriter,
    worker: WorkerId,
    /// Seals the headers (the worker's log key).
    worker_key: SealKey,
    session: u32,
    next_seq: u64,
}

impl Packer {
    /// A packer for datagrams of at most `datagram_bytes` (clamped to the format's limits),
    /// whose headers `worker_key` seals. `session` must be random: the seals' nonces start
    /// with it.
    pub fn new(worker: WorkerId, worker_key: SealKey, session: u32, datagram_bytes: usize) -> Self {
        Self {
            writer: DatagramWriter::new(datagram_bytes),
            worker,
            worker_key,
            session,
            next_seq: 0,
        }
    }

    pub fn worker(&self) -> WorkerId {
        self.worker
    }

    /// Changes the worker id written into later datagrams and the key sealing them (the
    /// worker learns both when it registers). The datagram numbering goes on.
    pub fn set_worker(&mut self, worker: WorkerId, worker_key: SealKey) {
        self.worker = worker;
        self.worker_key = worker_key;
    }

    pub fn session(&self) -> u32 {
        self.session
    }

    /// The size datagrams are packed to.
    pub fn datagram_bytes(&self) -> usize {
        self.writer.capacity()
    }

    /// Datagrams sealed so far (the next datagram's number).
    pub fn sealed(&self) -> u64 {
        self.next_seq
    }

    /// True when no entry waits in the open datagram.
    pub fn is_empty(&self) -> bool {
        self.writer.is_empty()
    }

    /// Adds one record, sealed with `seal` (its attempt's key); `send` receives the datagram
    /// sealed to make room, if any.
    pub fn push_line(
        &mut self,
        seal: &SealKey,
        key: StreamKey,
        record: Record<'_>,
        send: impl FnMut(Sealed<'_>),
    ) {
        let pushed =
            |w: &mut DatagramWriter| w.push_line(seal, key, record.seq, record.flags, record.bytes);
        self.push(pushed, send);
    }

    /// Adds the end marker of a stream after `total` records.
    pub fn push_end(
        &mut self,
        seal: &SealKey,
        key: StreamKey,
        total: u64,
        send: impl FnMut(Sealed<'_>),
    ) {
        self.push(|w: &mut DatagramWriter| w.push_end(seal, key, total), send);
    }

    /// Seals the open datagram if it holds anything.
    pub fn flush(&mut self, send: impl FnMut(Sealed<'_>)) {
        if !self.writer.is_empty() {
            self.seal(send);
        }
    }

    /// Seals the open datagram even when empty: an empty datagram still carries its number,
    /// so the receiver learns of datagrams lost at the tail of a burst.
    pub fn sync(&mut self, send: impl FnMut(Sealed<'_>)) {
        self.seal(send);
    }

    fn push(
        &mut self,
        mut pushed: impl FnMut(&mut DatagramWriter) -> bool,
        send: impl FnMut(Sealed<'_>),
    ) {
        if pushed(&mut self.writer) {
            return;
        }
        self.seal(send);
        // An empty writer takes any record the splitter makes (MIN_DATAGRAM_BYTES holds the
        // largest one), so a second refusal is a programmer error.
        assert!(
            pushed(&mut self.writer),
            "entry does not fit an empty datagram"
        );
    }

    fn seal(&mut self, mut send: impl FnMut(Sealed<'_>)) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let lines = self.writer.lines();
        send(Sealed {
            seq,
            bytes: self
                .writer
                .seal(&self.worker_key, self.worker, self.session, seq),
            lines,
        });
        self.writer.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagram::testing::{keys, open};
    use crate::datagram::{AttemptKey, Entry, LineFlags, Stream};
    use crate::limits::MIN_DATAGRAM_BYTES;
    use titan_core::JobId;

    #[test]
    fn datagrams_are_numbered_and_filled_before_sealing() {
        let attempt = AttemptKey::new(JobId(3), 1);
        let key = attempt.stream(Stream::Stdout);
        let (mut sink, worker_key, seal) = keys(WorkerId(9), attempt);
        let mut packer = Packer::new(WorkerId(9), worker_key, 5, MIN_DATAGRAM_BYTES);
        let mut sent: Vec<(u64, Vec<u8>, u32)> = Vec::new();
        let line = [b'y'; 500];
        for seq in 0..5 {
            let record = Record {
                seq,
                flags: LineFlags::empty(),
                bytes: &line,
            };
            packer.push_line(&seal, key, record, |s| {
                sent.push((s.seq, s.bytes.to_vec(), s.lines))
            });
        }
        packer.push_end(&seal, key, 5, |s| {
            sent.push((s.seq, s.bytes.to_vec(), s.lines))
        });
        packer.flush(|s| sent.push((s.seq, s.bytes.to_vec(), s.lines)));
        assert!(packer.is_empty());
        packer.flush(|_| panic!("nothing to flush"));
        // 500-byte records: two fit a minimal datagram, so 2 + 2 + (1 + end).
        let shape: Vec<(u64, u32)> = sent.iter().map(|(seq, _, n)| (*seq, *n)).collect();
        assert_eq!(shape, vec![(0, 2), (1, 2), (2, 1)]);
        let last = open(&mut sink, &mut sent[2].1).unwrap();
        assert_eq!(last.header.worker, WorkerId(9));
        assert_eq!(last.header.session, 5);
        assert!(matches!(
            last.entries().last(),
            Some(Entry::End { total: 5, .. })
        ));
        packer.sync(|s| sent.push((s.seq, s.bytes.to_vec(), s.lines)));
        let marker = open(&mut sink, &mut sent[3].1).unwrap();
        assert_eq!((marker.header.seq, marker.header.sections), (3, 0));
        assert_eq!(packer.sealed(), 4);
    }
}
