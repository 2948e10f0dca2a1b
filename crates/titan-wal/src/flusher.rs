//! The flusher: the one task per journal that writes batches to the active segment through direct
//! IO, syncs them, rolls segments, and turns IO failures into failed batches.
//!
//! Batching is natural: the flusher takes everything appended so far, and whatever is appended
//! while it writes and syncs becomes the next batch. A taken backlog is written in batches of at
//! most `max_batch_bytes` (or one record each in per-record mode), each one synchronous write
//! (segments are opened `O_DSYNC`, see `segment.rs`), and each batch's records are reported
//! durable as soon as its write returns.
//!
//! Direct IO writes whole blocks at block-aligned offsets. The segment's last, partly filled block
//! is kept in memory (`tail`) and written again, extended, at the start of the next batch. The
//! already durable bytes in that block are rewritten with identical contents, so a torn rewrite can
//! only damage bytes of the batch being written, never acknowledged ones.
//!
//! Each batch is sealed just before its write: every record gets its index in the batch and the
//! last one the commit flag (`record.rs`), so recovery can tell a whole batch from a torn one
//! without any extra write.
//!
//! On a failed write or sync, every record not yet durable fails (the batch, the rest of the
//! backlog and the pending appends), since writing later records after a hole would be unsound.
//! The flusher then restores a known tail: truncate the segment to its last durable byte and sync.
//! If that works the journal accepts appends again, with sequence numbers after the failed ones
//! (which are never reused); if not, the journal stays failed until it is reopened.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::path::PathBuf;
use std::rc::Rc;
use std::task::{Poll, Waker};

use glommio::Task;
use tracing::{error, info, warn};

use super::error::{IoFailure, IoOp};
use super::journal::{Health, Shared};
use super::layout::SegmentFile;
use super::limits::{CommitMode, BLOCK_BYTES};
use super::record::{decode, seal, BatchPlace, Lsn};
use super::segment::{
    align_down, create_segment, discard_prepared, install_segment, prepare_segment, ActiveSegment,
    PreparedSegment, RollFailure,
};
use super::storage::{Storage, StorageFile, WriteBuffer};

/// A segment starts at this offset of a taken backlog, with this first sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RollPoint {
    pub offset: usize,
    pub start: Lsn,
}

/// A backlog taken from the journal in one go.
struct Backlog {
    bytes: Vec<u8>,
    rolls: VecDeque<RollPoint>,
}

pub(crate) struct Flusher<S: Storage> {
    storage: S,
    shared: Rc<RefCell<Shared>>,
    dir: PathBuf,
    active: ActiveSegment<S::File>,
    /// The next segment, being zero-filled in the background (when preallocating).
    next: Option<Task<Result<PreparedSegment<S::File>, IoFailure>>>,
    /// The directory stays locked until the last write is done, even if the handle was dropped.
    _lock: S::Lock,
    /// Records written in the current and the previous millisecond: the load the batch window
    /// reacts to (see `run`).
    load: LoadMeter,
}

/// Records written per millisecond, over the current and the previous millisecond.
#[derive(Debug)]
struct LoadMeter {
    since: std::time::Instant,
    current: u64,
    previous: u64,
}

impl LoadMeter {
    const BUCKET: std::time::Duration = std::time::Duration::from_millis(1);

    fn new() -> LoadMeter {
        LoadMeter {
            since: std::time::Instant::now(),
            current: 0,
            previous: 0,
        }
    }

    fn roll(&mut self, now: std::time::Instant) {
        let age = now.saturating_duration_since(self.since);
        if age >= Self::BUCKET {
            self.previous = if age < 2 * Self::BUCKET {
                self.current
            } else {
                0
            };
            self.current = 0;
            self.since = now;
        }
    }

    fn add(&mut self, records: u64, now: std::time::Instant) {
        self.roll(now);
        self.current += records;
    }

    fn busy(&mut self, now: std::time::Instant) -> bool {
        self.roll(now);
        self.current.max(self.previous) >= BUSY_RECORDS_PER_MS
    }
}

/// At this many records written per millisecond the batch window applies (one job's chain of
/// records, submit then completion, writes about 5 per millisecond).
const BUSY_RECORDS_PER_MS: u64 = 32;

fn wake_all(wakers: Vec<Waker>) {
    for waker in wakers {
        waker.wake();
    }
}

impl<S: Storage> Flusher<S> {
    pub fn new(
        storage: S,
        shared: Rc<RefCell<Shared>>,
        dir: PathBuf,
        active: ActiveSegment<S::File>,
        lock: S::Lock,
    ) -> Self {
        Self {
            storage,
            shared,
            dir,
            active,
            next: None,
            _lock: lock,
            load: LoadMeter::new(),
        }
    }

    /// Runs until the journal is closed (after writing what was appended before) or has failed.
    pub async fn run(mut self) {
        let window = self.shared.borrow().config.batch_window;
        let mut last_write: Option<std::time::Instant> = None;
        while self.wait_for_work().await {
            // Under load, writes start at most once per window, so batches grow instead of the
            // write count. A quiet log, or one request waiting on the previous (a single job's
            // submit, then its completion; a DAG chain), writes at once.
            let busy = self.load.busy(std::time::Instant::now()) && !window.is_zero();
            let due = last_write.filter(|_| busy).map(|t| t + window);
            if let Some(wait) =
                due.and_then(|d| d.checked_duration_since(std::time::Instant::now()))
            {
                if !self.shared.borrow().closing {
                    glommio::timer::sleep(wait).await;
                }
            }
            last_write = Some(std::time::Instant::now());
            let mut backlog = self.take();
            self.write_backlog(&mut backlog).await;
            self.shared.borrow_mut().recycle(backlog.bytes);
        }
        let path = self.active.path.clone();
        if let Err(e) = self.active.file.close().await {
            error!(path = %path.display(), error = %e, "closing WAL segment failed");
        }
        if let Some(task) = self.next.take() {
            // Cancelled half-way or failed, the temporary file is left for the next open to remove.
            if let Some(Ok(prepared)) = task.cancel().await {
                discard_prepared(&self.storage, prepared).await;
            }
        }
    }

    /// True when there is something to write; false when closing with nothing left, or failed.
    async fn wait_for_work(&self) -> bool {
        poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            if matches!(shared.health, Health::Failed(_)) {
                return Poll::Ready(false);
            }
            if !shared.pending.is_empty() {
                return Poll::Ready(true);
            }
            if shared.closing {
                return Poll::Ready(false);
            }
            shared.flusher_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn take(&self) -> Backlog {
        let mut shared = self.shared.borrow_mut();
        let spare = std::mem::take(&mut shared.spare);
        shared.pending_records = 0;
        Backlog {
            bytes: std::mem::replace(&mut shared.pending, spare),
            rolls: std::mem::take(&mut shared.rolls),
        }
    }

    async fn write_backlog(&mut self, backlog: &mut Backlog) {
        let (mode, max_batch, max_record) = {
            let shared = self.shared.borrow();
            (
                shared.config.commit_mode,
                shared.config.max_batch_bytes,
                shared.config.max_record_bytes,
            )
        };
        let bytes = &mut backlog.bytes[..];
        let mut rolls = backlog.rolls.iter().peekable();
        let mut pos = 0;
        while pos < bytes.len() {
            if let Some(roll) = rolls.next_if(|r| r.offset == pos) {
                // The new segment is named after the last durable record (here: the last record
                // of the previous segment) plus one, so recovery can check that no segment is
                // missing. That is `roll.start` unless failed records were skipped in between.
                let start = self.shared.borrow().ledger.durable().next();
                assert!(
                    start <= roll.start,
                    "durable records precede the roll point"
                );
                if let Err(failure) = self.roll(start).await {
                    self.on_failure(roll.start, failure.cause, failure.settled)
                        .await;
                    return;
                }
            }
            let piece_end = rolls.peek().map_or(bytes.len(), |r| r.offset);
            let limit = match mode {
                CommitMode::Group => max_batch,
                CommitMode::PerRecord => 0,
            };
            let batch = Batch::cut(&mut bytes[pos..piece_end], limit, max_record);
            self.load.add(batch.records, std::time::Instant::now());
            match self.write_batch(&bytes[pos..pos + batch.len]).await {
                Ok(()) => {
                    self.on_durable(&batch);
                    self.prepare_next();
                }
                Err(cause) => {
                    self.on_failure(batch.first, cause, true).await;
                    return;
                }
            }
            pos += batch.len;
        }
    }

    /// Writes the tail block plus `records` at the tail's aligned offset; durable on return
    /// (`O_DSYNC`).
    async fn write_batch(&mut self, records: &[u8]) -> Result<(), IoFailure> {
        let path = &self.active.path;
        let base = align_down(self.active.end);
        let head = self.active.tail.len();
        let total = head + records.len();
        let padded = total.next_multiple_of(BLOCK_BYTES);
        let mut buf = self.active.file.alloc_buffer(padded);
        let bytes = buf.bytes_mut();
        bytes[..head].copy_from_slice(&self.active.tail);
        bytes[head..total].copy_from_slice(records);
        bytes[total..].fill(0);
        let new_end = self.active.end + records.len() as u64;
        let new_tail_from = (align_down(new_end) - base) as usize;
        let new_tail = bytes[new_tail_from..total].to_vec();
        let written = self
            .active
            .file
            .write_at(buf, base)
            .await
            .map_err(|e| IoFailure::new(IoOp::Write, path, &e))?;
        if written < padded {
            return Err(IoFailure::short(IoOp::Write, path, written, padded));
        }
        self.active.end = new_end;
        self.active.tail = new_tail;
        Ok(())
    }

    fn on_durable(&self, batch: &Batch) {
        let wakers = {
            let mut shared = self.shared.borrow_mut();
            shared.stats.batches += 1;
            shared.stats.durable_records += batch.records;
            shared.stats.bytes_written += batch.len as u64;
            shared.ledger.on_durable(batch.last)
        };
        wake_all(wakers);
    }

    /// Fails everything not yet durable from `first` on, then tries to restore a known tail
    /// (unless the set of segments itself is unknown: then the journal fails until reopened).
    async fn on_failure(&mut self, first: Lsn, cause: IoFailure, restorable: bool) {
        let (last, wakers) = {
            let mut shared = self.shared.borrow_mut();
            let last = shared.ledger.last_assigned();
            shared.pending.clear();
            shared.pending_records = 0;
            shared.rolls.clear();
            shared.stats.failed_batches += 1;
            shared.health = Health::Recovering(cause.clone());
            (last, shared.ledger.on_failed(first, last, cause.clone()))
        };
        wake_all(wakers);
        error!(%first, %last, error = %cause, "WAL batch failed; these records are not persisted");
        let repaired = if restorable {
            self.repair().await
        } else {
            Err(cause)
        };
        let mut shared = self.shared.borrow_mut();
        match repaired {
            Ok(()) => {
                shared.health = Health::Healthy;
                shared.segment_fill = self.active.end;
                info!(path = %self.active.path.display(), end = self.active.end, "WAL tail restored; appending again");
            }
            Err(e) => {
                error!(error = %e, "WAL tail could not be restored; journal failed until reopened");
                shared.health = Health::Failed(e);
            }
        }
    }

    /// Cuts the active segment back to its last durable byte and syncs that.
    async fn repair(&self) -> Result<(), IoFailure> {
        let path = &self.active.path;
        self.active
            .file
            .truncate(self.active.end)
            .await
            .map_err(|e| IoFailure::new(IoOp::Truncate, path, &e))?;
        self.active
            .file
            .fdatasync()
            .await
            .map_err(|e| IoFailure::new(IoOp::Sync, path, &e))
    }

    /// Once the active segment is half full, starts zero-filling the next one in the background.
    fn prepare_next(&mut self) {
        let (preallocate, size) = {
            let shared = self.shared.borrow();
            (shared.config.preallocate, shared.config.segment_bytes)
        };
        if preallocate && self.next.is_none() && self.active.end >= size / 2 {
            let (storage, dir) = (self.storage.clone(), self.dir.clone());
            self.next = Some(glommio::spawn_local(async move {
                prepare_segment(&storage, &dir, size).await
            }));
        }
    }

    /// Starts a new segment whose first record is `start`: the prepared one if there is one,
    /// otherwise a plain empty file.
    async fn roll(&mut self, start: Lsn) -> Result<(), RollFailure> {
        let prepared = match self.next.take() {
            Some(task) => match task.await {
                Ok(prepared) => Some(prepared),
                Err(e) => {
                    warn!(error = %e, "preparing a WAL segment failed; using a plain one");
                    None
                }
            },
            None => None,
        };
        let next = match prepared {
            Some(prepared) => install_segment(&self.storage, &self.dir, prepared, start).await?,
            None => create_segment(&self.storage, &self.dir, start).await?,
        };
        let previous = std::mem::replace(&mut self.active, next);
        {
            let mut shared = self.shared.borrow_mut();
            shared.segments.push(SegmentFile {
                start,
                path: self.active.path.clone(),
            });
            shared.stats.segments_rolled += 1;
        }
        // Everything in the previous segment is synced; a failing close loses nothing.
        if let Err(e) = previous.file.close().await {
            error!(path = %previous.path.display(), error = %e, "closing WAL segment failed");
        }
        Ok(())
    }
}

/// One write + sync worth of records at the front of a piece of the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Batch {
    len: usize,
    records: u64,
    first: Lsn,
    last: Lsn,
}

impl Batch {
    /// Takes whole records from the front of `piece` up to `limit` bytes (always at least one)
    /// and seals them as one batch: each record's index in it, the commit flag on the last.
    /// Every record is fully decoded and checked first: the log asserts before writing to disk.
    fn cut(piece: &mut [u8], limit: usize, max_record: usize) -> Batch {
        let mut batch = Batch {
            len: 0,
            records: 0,
            first: Lsn::ZERO,
            last: Lsn::ZERO,
        };
        // The first record's index in the backlog, and the last record's offset and checksum.
        let mut base = 0;
        let mut last = (0, 0);
        while batch.len < piece.len() {
            let decoded = decode(&piece[batch.len..], max_record)
                .expect("the pending buffer holds only records this journal encoded");
            if batch.records > 0 && batch.len + decoded.encoded_len > limit {
                break;
            }
            let lsn = decoded.record.lsn;
            assert!(
                lsn > batch.last,
                "records in the pending buffer are in order"
            );
            if batch.records == 0 {
                batch.first = lsn;
                base = decoded.place.index;
            }
            assert_eq!(
                decoded.place.index,
                base + batch.records as u32,
                "records are indexed by their place in the pending buffer"
            );
            last = (batch.len, decoded.payload_crc);
            batch.last = lsn;
            batch.len += decoded.encoded_len;
            batch.records += 1;
        }
        if base != 0 {
            // A backlog split into several batches (a roll, the size limit, per-record mode):
            // renumber this one from zero. Rare, so the payloads are simply checksummed again.
            Self::renumber(&mut piece[..batch.len], max_record);
        }
        let (at, crc) = if base != 0 {
            let decoded = decode(&piece[last.0..], max_record).expect("just sealed");
            (last.0, decoded.payload_crc)
        } else {
            last
        };
        let place = BatchPlace {
            index: (batch.records - 1) as u32,
            commit: true,
        };
        seal(&mut piece[at..], crc, place);
        batch
    }

    fn renumber(batch: &mut [u8], max_record: usize) {
        let mut pos = 0;
        let mut index = 0;
        while pos < batch.len() {
            let decoded = decode(&batch[pos..], max_record).expect("checked by cut");
            let (len, crc) = (decoded.encoded_len, decoded.payload_crc);
            let place = BatchPlace {
                index,
                commit: false,
            };
            seal(&mut batch[pos..], crc, place);
            pos += len;
            index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode_placed;

    fn pending(n: u64) -> Vec<u8> {
        let mut piece = vec![];
        for lsn in 1..=n {
            let place = BatchPlace {
                index: lsn as u32 - 1,
                commit: false,
            };
            encode_placed(&mut piece, Lsn(lsn), 0, &[7u8; 100], place);
        }
        piece
    }

    /// The places of the records in `bytes`, in order.
    fn places(bytes: &[u8]) -> Vec<(u32, bool)> {
        let mut out = vec![];
        let mut pos = 0;
        while pos < bytes.len() {
            let d = decode(&bytes[pos..], 1024).unwrap();
            out.push((d.place.index, d.place.commit));
            pos += d.encoded_len;
        }
        out
    }

    #[test]
    fn batches_hold_whole_records_within_the_limit_and_are_sealed() {
        let one = crate::record::encoded_len(100);
        let mut piece = pending(10);
        let batch = Batch::cut(&mut piece, 3 * one + 5, 1024);
        assert_eq!(
            (batch.records, batch.first, batch.last),
            (3, Lsn(1), Lsn(3))
        );
        assert_eq!(batch.len, 3 * one);
        assert_eq!(
            places(&piece[..batch.len]),
            vec![(0, false), (1, false), (2, true)]
        );
        // The next batch of the same backlog is renumbered from zero.
        let rest = &mut piece[batch.len..];
        let second = Batch::cut(rest, 2 * one, 1024);
        assert_eq!((second.records, second.first), (2, Lsn(4)));
        assert_eq!(places(&rest[..second.len]), vec![(0, false), (1, true)]);
        let mut piece = pending(10);
        let single = Batch::cut(&mut piece, 0, 1024);
        assert_eq!((single.records, single.len), (1, one));
        assert_eq!(places(&piece[..one]), vec![(0, true)]);
        let mut piece = pending(10);
        let all = Batch::cut(&mut piece, usize::MAX, 1024);
        assert_eq!((all.records, all.last), (10, Lsn(10)));
        assert_eq!(places(&piece).last(), Some(&(9, true)));
    }

    #[test]
    fn the_load_meter_calls_a_sustained_stream_busy_and_a_single_chain_quiet() {
        let t0 = std::time::Instant::now();
        let ms = |n: u64| t0 + std::time::Duration::from_millis(n);
        let mut meter = LoadMeter {
            since: t0,
            current: 0,
            previous: 0,
        };
        assert!(!meter.busy(t0));
        // One job's records: a few per millisecond.
        for i in 0..4 {
            meter.add(2, ms(i));
            assert!(!meter.busy(ms(i)), "at {i} ms");
        }
        // A stream: 40 records within a millisecond.
        meter.add(40, ms(4));
        assert!(meter.busy(ms(4)));
        // Still counted during the next millisecond, forgotten after two quiet ones.
        assert!(meter.busy(ms(5)));
        assert!(!meter.busy(ms(7)));
    }
}
