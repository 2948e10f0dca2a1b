//! The journal: one shard's write-ahead log as the master sees it.
//!
//! `append` is synchronous and cheap: it checks the limits, assigns the next sequence number and
//! copies the encoded record into the pending buffer. Durability is learned separately, by awaiting
//! [`Journal::wait_durable`] or reading [`Journal::durable_lsn`]; the flusher task (see
//! `flusher.rs`) does the IO. The journal is `!Send` and lives on the glommio executor that opened
//! it; all its state is behind one `RefCell` that is never borrowed across an `.await`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tracing::{info, warn};

use super::commit::{CommitLedger, WaiterKey};
use super::error::{AppendError, CommitError, IoFailure, IoOp, OpenError, SnapshotError};
use super::flusher::{Flusher, RollPoint};
use super::layout::{self, snapshot_path, sync_dir_on, SegmentFile, SnapshotFile};
use super::limits::{WalConfig, MAX_SNAPSHOT_BYTES};
use super::record::{encode_placed, encoded_len, BatchPlace, Lsn};
use super::recovery::{self, first_needed_segment, ReplayReport, Replayed};
use super::segment::{create_segment, install_segment, open_tail, prepare_segment};
use super::snapshot;
use super::storage::{DiskStorage, Storage};

/// Whether the journal accepts appends.
#[derive(Debug, Clone)]
pub enum Health {
    Healthy,
    /// A batch failed; the flusher is restoring the segment tail. Appends are refused meanwhile.
    Recovering(IoFailure),
    /// The tail could not be restored. Appends are refused until the journal is reopened.
    Failed(IoFailure),
}

/// Counters for tests, benchmarks and the master's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub appended: u64,
    pub durable_records: u64,
    /// Write + sync pairs that succeeded.
    pub batches: u64,
    pub bytes_written: u64,
    pub failed_batches: u64,
    pub segments_rolled: u64,
}

/// What a successful snapshot did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotReport {
    pub path: PathBuf,
    pub covered: Lsn,
    /// Segments deleted because the oldest retained snapshot covers them.
    pub removed_segments: Vec<PathBuf>,
    /// Snapshots deleted beyond the retention count.
    pub removed_snapshots: Vec<PathBuf>,
}

/// State shared by the journal handle, its waiters and the flusher task.
pub(crate) struct Shared {
    pub config: WalConfig,
    pub dir: PathBuf,
    pub next_lsn: Lsn,
    /// Encoded records not yet taken by the flusher.
    pub pending: Vec<u8>,
    /// Records in `pending`: each is encoded with its index there, which is its index in its
    /// batch unless the flusher splits the backlog (then it re-seals them).
    pub pending_records: u32,
    /// An emptied buffer kept to swap in for `pending`, so batches reuse allocations.
    pub spare: Vec<u8>,
    /// Where in `pending` a new segment must start.
    pub rolls: VecDeque<RollPoint>,
    /// Bytes assigned to the newest segment: durable, in flight and pending.
    pub segment_fill: u64,
    pub health: Health,
    pub ledger: CommitLedger,
    pub flusher_waker: Option<Waker>,
    pub closing: bool,
    /// Segment files of the log, oldest first; the last one is being appended to.
    pub segments: Vec<SegmentFile>,
    /// Snapshot files, oldest first.
    pub snapshots: Vec<SnapshotFile>,
    pub snapshot_in_progress: bool,
    pub stats: JournalStats,
}

impl Shared {
    pub fn recycle(&mut self, mut bytes: Vec<u8>) {
        bytes.clear();
        if bytes.capacity() <= self.config.max_pending_bytes {
            self.spare = bytes;
        }
    }

    fn check_accepting(&self) -> Result<(), AppendError> {
        if self.closing {
            return Err(AppendError::Closed);
        }
        match &self.health {
            Health::Healthy => Ok(()),
            Health::Recovering(cause) => Err(AppendError::Recovering {
                cause: cause.clone(),
            }),
            Health::Failed(cause) => Err(AppendError::Failed {
                cause: cause.clone(),
            }),
        }
    }
}

/// One shard's write-ahead log. See the module documentation of [`crate`] for the contract.
/// `S` is the storage it lives on: the real disk unless a simulator says otherwise.
pub struct Journal<S: Storage = DiskStorage> {
    shared: Rc<RefCell<Shared>>,
    flusher: Option<glommio::Task<()>>,
    storage: S,
}

impl Journal {
    /// Opens (creating if needed) the shard directory `dir`, replays it through `on` (the newest
    /// valid snapshot, then every record of every whole batch after it), cuts a torn final batch,
    /// and returns a journal that appends after the last whole batch. A log damaged anywhere else
    /// is not opened ([`OpenError::Corrupt`]) unless `config.recover_to_last_good` says to cut it.
    /// Must run on a glommio executor.
    pub async fn open(
        dir: &Path,
        config: WalConfig,
        on: impl FnMut(Replayed<'_>),
    ) -> Result<(Journal, ReplayReport), OpenError> {
        Journal::open_on(DiskStorage, dir, config, on).await
    }
}

impl<S: Storage> Journal<S> {
    /// [`Journal::open`] on any storage.
    pub async fn open_on(
        storage: S,
        dir: &Path,
        config: WalConfig,
        mut on: impl FnMut(Replayed<'_>),
    ) -> Result<(Journal<S>, ReplayReport), OpenError> {
        config.validate()?;
        layout::ensure_dir(&storage, dir).await?;
        let lock = layout::lock_dir(&storage, dir)?;
        storage
            .prepare_dir(dir)
            .await
            .map_err(|e| IoFailure::new(IoOp::Open, dir, &e))?;
        let scanned = recovery::scan_dir(&storage, dir, &config, &mut on).await?;
        let report = scanned.report;
        remove_leftovers(&storage, dir, &scanned.listing.temporaries, &report).await?;
        let mut segments = scanned.kept_segments;
        let (active, next_lsn) = match scanned.tail {
            Some(tail) => {
                let next = report.last_lsn.next().max(tail.file.start);
                let damaged = report.damage.is_some();
                (open_tail(&storage, &tail, damaged).await?, next)
            }
            None => {
                let next = report.last_lsn.next();
                let active = if config.preallocate {
                    let prepared = prepare_segment(&storage, dir, config.segment_bytes).await?;
                    install_segment(&storage, dir, prepared, next).await
                } else {
                    create_segment(&storage, dir, next).await
                };
                let active = active.map_err(|f| f.cause)?;
                segments.push(SegmentFile {
                    start: next,
                    path: active.path.clone(),
                });
                (active, next)
            }
        };
        let snapshots = scanned
            .listing
            .snapshots
            .into_iter()
            .filter(|s| !report.corrupt_snapshots.contains(&s.path))
            .collect();
        let shared = Rc::new(RefCell::new(Shared {
            dir: dir.to_path_buf(),
            next_lsn,
            pending: Vec::new(),
            pending_records: 0,
            spare: Vec::new(),
            rolls: VecDeque::new(),
            segment_fill: active.end,
            health: Health::Healthy,
            ledger: CommitLedger::new(Lsn(next_lsn.0 - 1)),
            flusher_waker: None,
            closing: false,
            segments,
            snapshots,
            snapshot_in_progress: false,
            stats: JournalStats::default(),
            config,
        }));
        let flusher = Flusher::new(
            storage.clone(),
            shared.clone(),
            dir.to_path_buf(),
            active,
            lock,
        );
        let task = glommio::spawn_local(flusher.run());
        info!(dir = %dir.display(), records = report.records, last_lsn = %report.last_lsn, "WAL opened");
        Ok((
            Journal {
                shared,
                flusher: Some(task),
                storage,
            },
            report,
        ))
    }

    /// Appends a record and returns its sequence number. Synchronous: the record is copied into
    /// the pending batch and is durable only once [`Journal::wait_durable`] says so.
    pub fn append(&self, kind: u8, payload: &[u8]) -> Result<Lsn, AppendError> {
        let (lsn, waker) = {
            let mut shared = self.shared.borrow_mut();
            shared.check_accepting()?;
            let max = shared.config.max_record_bytes;
            if payload.len() > max {
                return Err(AppendError::TooLarge {
                    len: payload.len(),
                    max,
                });
            }
            let size = encoded_len(payload.len());
            let max_pending = shared.config.max_pending_bytes;
            if shared.pending.len() + size > max_pending {
                return Err(AppendError::Backpressure {
                    pending: shared.pending.len(),
                    max: max_pending,
                });
            }
            let lsn = shared.next_lsn;
            if shared.segment_fill > 0
                && shared.segment_fill + size as u64 > shared.config.segment_bytes
            {
                let offset = shared.pending.len();
                shared.rolls.push_back(RollPoint { offset, start: lsn });
                shared.segment_fill = 0;
            }
            let place = BatchPlace {
                index: shared.pending_records,
                commit: false,
            };
            encode_placed(&mut shared.pending, lsn, kind, payload, place);
            shared.pending_records += 1;
            shared.segment_fill += size as u64;
            shared.next_lsn = lsn.next();
            shared.ledger.on_assigned(lsn);
            shared.stats.appended += 1;
            (lsn, shared.flusher_waker.take())
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(lsn)
    }

    /// Every record up to this sequence number is durable or was reported failed. Failed sequence
    /// numbers are never reused, so after a failure this watermark passes them; ask
    /// [`Journal::outcome`] or [`Journal::wait_durable`] about a particular record.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.borrow().ledger.durable()
    }

    /// The sequence number of the newest appended record (durable or not).
    pub fn last_lsn(&self) -> Lsn {
        self.shared.borrow().ledger.last_assigned()
    }

    /// The outcome of one record without waiting: `None` while it is in flight.
    pub fn outcome(&self, lsn: Lsn) -> Option<Result<(), CommitError>> {
        self.shared.borrow().ledger.outcome(lsn)
    }

    /// Resolves when the record `lsn` (and so every earlier one that did not fail) is durable, or
    /// with the error of the batch that failed it. Waiting for the newest record wakes one task per
    /// batch; waiting for each record wakes each waiter once.
    pub fn wait_durable(&self, lsn: Lsn) -> DurableWait {
        DurableWait {
            shared: self.shared.clone(),
            lsn,
            key: None,
        }
    }

    pub fn health(&self) -> Health {
        self.shared.borrow().health.clone()
    }

    pub fn stats(&self) -> JournalStats {
        self.shared.borrow().stats
    }

    pub fn dir(&self) -> PathBuf {
        self.shared.borrow().dir.clone()
    }

    /// Writes `bytes` as a snapshot covering every record up to `covered` (which must be durable;
    /// this waits for it), atomically, then deletes old snapshots beyond the retention count and
    /// every segment the oldest retained snapshot fully covers.
    pub async fn write_snapshot(
        &self,
        covered: Lsn,
        bytes: &[u8],
    ) -> Result<SnapshotReport, SnapshotError> {
        let dir = self.begin_snapshot(covered, bytes.len())?;
        let _guard = SnapshotGuard(self.shared.clone());
        if let Err(cause) = self.wait_durable(covered).await {
            return Err(SnapshotError::NotDurable { covered, cause });
        }
        let path = snapshot_path(&dir, covered);
        snapshot::write(&self.storage, &path, covered, bytes).await?;
        let (removed_snapshots, removed_segments) = self.apply_retention(SnapshotFile {
            covered,
            path: path.clone(),
        });
        let mut removed = Vec::new();
        for file in removed_snapshots.iter().chain(&removed_segments) {
            match layout::remove_file_on(&self.storage, file) {
                Ok(()) => removed.push(file.clone()),
                // Left behind, the file costs space until the next snapshot, never correctness.
                Err(e) => warn!(error = %e, "could not delete a file covered by a snapshot"),
            }
        }
        if !removed.is_empty() {
            sync_dir_on(&self.storage, &dir).await?;
        }
        info!(%covered, removed = removed.len(), "WAL snapshot written");
        Ok(SnapshotReport {
            path,
            covered,
            removed_segments: removed_segments
                .into_iter()
                .filter(|p| removed.contains(p))
                .collect(),
            removed_snapshots: removed_snapshots
                .into_iter()
                .filter(|p| removed.contains(p))
                .collect(),
        })
    }

    fn begin_snapshot(&self, covered: Lsn, len: usize) -> Result<PathBuf, SnapshotError> {
        let mut shared = self.shared.borrow_mut();
        if shared.snapshot_in_progress {
            return Err(SnapshotError::InProgress);
        }
        if let Some(newest) = shared.snapshots.last() {
            if covered <= newest.covered {
                return Err(SnapshotError::NotNewer {
                    covered,
                    existing: newest.covered,
                });
            }
        }
        if len as u64 > MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::TooLarge {
                len: len as u64,
                max: MAX_SNAPSHOT_BYTES,
            });
        }
        shared.snapshot_in_progress = true;
        Ok(shared.dir.clone())
    }

    /// Records the new snapshot and takes out of the lists what retention lets go.
    fn apply_retention(&self, new: SnapshotFile) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let mut shared = self.shared.borrow_mut();
        shared.snapshots.push(new);
        let drop_snapshots = shared
            .snapshots
            .len()
            .saturating_sub(shared.config.snapshots_retained);
        let removed_snapshots: Vec<PathBuf> = shared
            .snapshots
            .drain(..drop_snapshots)
            .map(|s| s.path)
            .collect();
        // Until `snapshots_retained` snapshots exist, the start of the log is the fallback for a
        // corrupt newest snapshot, so no segment is redundant yet.
        let oldest_kept = if shared.snapshots.len() < shared.config.snapshots_retained {
            Lsn::ZERO
        } else {
            shared.snapshots[0].covered
        };
        let drop_segments = first_needed_segment(&shared.segments, oldest_kept);
        let removed_segments = shared
            .segments
            .drain(..drop_segments)
            .map(|s| s.path)
            .collect();
        (removed_snapshots, removed_segments)
    }

    /// Writes out everything appended so far, stops the flusher and closes the segment. Returns
    /// the failure if the journal ended failed (records after the failure were reported to their
    /// waiters already).
    pub async fn close(mut self) -> Result<(), IoFailure> {
        let waker = {
            let mut shared = self.shared.borrow_mut();
            shared.closing = true;
            shared.flusher_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        if let Some(task) = self.flusher.take() {
            task.await;
        }
        match &self.shared.borrow().health {
            Health::Failed(cause) | Health::Recovering(cause) => Err(cause.clone()),
            Health::Healthy => Ok(()),
        }
    }
}

impl<S: Storage> Drop for Journal<S> {
    /// Dropping without `close` still writes what was appended: the flusher is told to finish and
    /// left running (detached) on the executor; it releases the directory lock when done, so an
    /// immediate reopen can see `OpenError::Locked`. Use `close` to wait for it.
    fn drop(&mut self) {
        if let Some(task) = self.flusher.take() {
            let waker = {
                let mut shared = self.shared.borrow_mut();
                shared.closing = true;
                shared.flusher_waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
            task.detach();
        }
    }
}

/// Clears the in-progress flag however `write_snapshot` ends.
struct SnapshotGuard(Rc<RefCell<Shared>>);

impl Drop for SnapshotGuard {
    fn drop(&mut self) {
        self.0.borrow_mut().snapshot_in_progress = false;
    }
}

/// The future returned by [`Journal::wait_durable`].
pub struct DurableWait {
    shared: Rc<RefCell<Shared>>,
    lsn: Lsn,
    key: Option<WaiterKey>,
}

impl Future for DurableWait {
    type Output = Result<(), CommitError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut shared = this.shared.borrow_mut();
        if let Some(outcome) = shared.ledger.outcome(this.lsn) {
            if let Some(key) = this.key.take() {
                shared.ledger.unpark(key);
            }
            return Poll::Ready(outcome);
        }
        this.key = Some(shared.ledger.park(this.lsn, this.key, cx.waker()));
        Poll::Pending
    }
}

impl Drop for DurableWait {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            if let Ok(mut shared) = self.shared.try_borrow_mut() {
                shared.ledger.unpark(key);
            }
        }
    }
}

/// Deletes what recovery found to be garbage: temporary files, corrupt snapshots, and segments
/// after a torn one (or a corrupt one, with `recover_to_last_good`, after copying them aside).
/// Each deletion is logged; the directory is synced once at the end.
async fn remove_leftovers<S: Storage>(
    storage: &S,
    dir: &Path,
    temporaries: &[PathBuf],
    report: &ReplayReport,
) -> Result<(), IoFailure> {
    for path in temporaries {
        info!(path = %path.display(), "removing leftover temporary file");
        layout::remove_file_on(storage, path)?;
    }
    for path in &report.corrupt_snapshots {
        warn!(path = %path.display(), "removing corrupt snapshot");
        layout::remove_file_on(storage, path)?;
    }
    for path in &report.cut_segments {
        warn!(path = %path.display(), "removing WAL segment after a damaged one");
        layout::remove_file_on(storage, path)?;
    }
    let removed = temporaries.len() + report.corrupt_snapshots.len() + report.cut_segments.len();
    if removed > 0 {
        sync_dir_on(storage, dir).await?;
    }
    Ok(())
}
