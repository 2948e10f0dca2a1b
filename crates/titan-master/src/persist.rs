//! Durability for one shard: the core's journal records go into the shard's write-ahead log, and
//! the core hears `Persisted` only for records the log made durable.
//!
//! Core LSNs and WAL LSNs are separate sequences; `pending` maps each appended core record to its
//! WAL position until the WAL says it is durable. One pump task per shard waits for the newest
//! appended position (one wake-up per group-commit batch) and feeds the core the highest core LSN
//! now durable.
//!
//! **When the disk fails** (full, or an IO error), the batch's records will never be durable. The
//! core's state already contains their effects, so the shard goes *degraded*: it stops appending
//! (a log missing some records must not grow past the gap), refuses new mutations with a clear
//! error (reads keep working), keeps the replies the core holds held, and retries a snapshot of
//! the whole core every second. A snapshot makes everything it covers durable at once, so when
//! one succeeds the held replies are released as acknowledged — truthfully — and appends resume.
//! No reply ever acknowledges something that is not on disk.
//!
//! **Snapshots** are also taken periodically (every `snapshot_every` records), which bounds the
//! log's size and the replay time after a crash.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use tracing::{error, info, warn};

use super::shard::Shard;
use titan_core::{Input, Lsn, Output, Record, SubmissionImage};
use titan_runtime::outbox::Notify;
use titan_wal::{self as wal, Journal};

/// The WAL record kind of a core journal record (an rkyv `Record`).
pub const KIND_CORE_RECORD: u8 = 1;

/// How often a degraded shard retries its snapshot.
pub const DEGRADED_RETRY: Duration = Duration::from_secs(1);

/// Core records between periodic snapshots, unless configured. Each snapshot encodes every
/// retained job (up to the 100,000 of the history window, plus the live ones), so at 200,000 a
/// NOOP job paid for 1.5 job images; 500,000 records replay in about 0.2-0.3 s.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 500_000;

/// The shard's log, when it has one (`None`: state is kept in memory only). Handed over for
/// closing at shutdown.
pub struct Wal {
    log: RefCell<Option<Rc<Persistence>>>,
}

impl Wal {
    pub fn new(log: Option<Rc<Persistence>>) -> Wal {
        Wal {
            log: RefCell::new(log),
        }
    }

    /// Appends the journal records among `outputs`, in order. False when the shard keeps no log
    /// (a degraded log still counts: its records are covered by the next snapshot).
    pub fn append_all(&self, outputs: &[Output]) -> bool {
        let log = self.log.borrow().clone();
        let Some(log) = log else {
            return false;
        };
        for output in outputs {
            if let Output::Journal { lsn, record } = output {
                log.append(*lsn, record);
            }
        }
        true
    }

    pub fn is_on(&self) -> bool {
        self.log.borrow().is_some()
    }

    /// Why mutations are refused, if they are.
    pub fn degraded(&self) -> Option<Degraded> {
        self.log.borrow().as_ref().and_then(|p| p.degraded())
    }

    /// Takes the log out, for closing at shutdown.
    pub fn take(&self) -> Option<Rc<Persistence>> {
        self.log.borrow_mut().take()
    }
}

/// Why a shard is not writing its log.
#[derive(Clone, Debug)]
pub struct Degraded {
    pub cause: String,
}

pub struct Persistence {
    journal: Journal,
    /// (core LSN, WAL LSN) of appended records not yet durable, in order.
    pending: RefCell<VecDeque<(Lsn, wal::Lsn)>>,
    degraded: RefCell<Option<Degraded>>,
    appended: Notify,
    snapshot_due: Notify,
    since_snapshot: Cell<u64>,
    snapshot_every: u64,
    /// The newest WAL position known durable (not failed): what a degraded snapshot covers.
    last_ok: Cell<wal::Lsn>,
    /// Reused for encoding records (one allocation for the shard's life, not one per record).
    scratch: RefCell<Vec<u8>>,
    /// The previous snapshot's encoding buffer and (emptied) submission list, reused: fresh
    /// ones of tens of MB were faulted in, zeroed, on every snapshot.
    snapshot_buffers: RefCell<(Vec<u8>, Vec<SubmissionImage>)>,
}

impl Persistence {
    pub fn new(journal: Journal, snapshot_every: u64) -> Rc<Persistence> {
        // Everything recovered from the log is durable.
        let journal_last = journal.last_lsn();
        Rc::new(Persistence {
            journal,
            pending: RefCell::new(VecDeque::new()),
            degraded: RefCell::new(None),
            appended: Notify::default(),
            snapshot_due: Notify::default(),
            since_snapshot: Cell::new(0),
            snapshot_every: snapshot_every.max(1),
            last_ok: Cell::new(journal_last),
            scratch: RefCell::new(Vec::with_capacity(4096)),
            snapshot_buffers: RefCell::new((Vec::new(), Vec::new())),
        })
    }

    /// Why mutations are refused, if they are.
    pub fn degraded(&self) -> Option<Degraded> {
        self.degraded.borrow().clone()
    }

    /// Appends one core record. Returns false when it was not appended (the shard is degraded or
    /// just became so); the record's effect is then covered by the next snapshot.
    pub fn append(&self, lsn: Lsn, record: &Record) -> bool {
        if self.degraded.borrow().is_some() {
            return false;
        }
        let mut scratch = self.scratch.borrow_mut();
        let mut buffer = std::mem::take(&mut *scratch);
        buffer.clear();
        let bytes = match record.encode_into(buffer) {
            Ok(bytes) => bytes,
            Err(e) => {
                drop(scratch);
                self.degrade(format!("a journal record could not be encoded: {e}"));
                return false;
            }
        };
        let appended = self.journal.append(KIND_CORE_RECORD, &bytes);
        *scratch = bytes;
        drop(scratch);
        match appended {
            Ok(wal_lsn) => {
                self.pending.borrow_mut().push_back((lsn, wal_lsn));
                self.appended.notify();
                let n = self.since_snapshot.get() + 1;
                self.since_snapshot.set(n);
                if n >= self.snapshot_every {
                    self.snapshot_due.notify();
                }
                true
            }
            Err(e) => {
                self.degrade(format!("the write-ahead log refused a record: {e}"));
                false
            }
        }
    }

    fn degrade(&self, cause: String) {
        let mut degraded = self.degraded.borrow_mut();
        if degraded.is_none() {
            error!(%cause, "write-ahead log failing: refusing changes until a snapshot succeeds");
            *degraded = Some(Degraded { cause });
            self.pending.borrow_mut().clear();
            self.snapshot_due.notify();
        }
    }

    /// Takes a snapshot of the shard's core and writes it; on success every core record up to the
    /// snapshot is durable. Runs one at a time.
    ///
    /// The image is taken in one go, with the log position it covers, since the core keeps
    /// changing afterwards. Encoding it (the larger part: tens of milliseconds for 100,000 jobs)
    /// runs on the executor's blocking thread, so the shard goes on serving meanwhile; records
    /// appended meanwhile are not covered and stay in the log.
    async fn snapshot(&self, shard: &Shard) -> Result<(Lsn, wal::Lsn), String> {
        let (buffer, submissions) = std::mem::take(&mut *self.snapshot_buffers.borrow_mut());
        let mut image = shard.core.borrow().snapshot_reusing(submissions);
        let core_lsn = image.last_lsn;
        // Healthy: the image covers every record appended so far. Degraded: it covers the durable
        // records and the state of the lost ones.
        let covered = if self.degraded.borrow().is_some() {
            self.last_ok.get()
        } else {
            self.journal.last_lsn()
        };
        let (encoded, submissions) = glommio::executor()
            .spawn_blocking(move || {
                let encoded = image.encode_into(buffer);
                // Emptied here, off the shard thread: dropping the jobs' images is not free.
                image.submissions.clear();
                (encoded, image.submissions)
            })
            .await;
        let bytes = encoded.map_err(|e| format!("encoding the snapshot: {e}"))?;
        let written = self.journal.write_snapshot(covered, &bytes).await;
        *self.snapshot_buffers.borrow_mut() = (bytes, submissions);
        written.map_err(|e| e.to_string())?;
        self.last_ok.set(self.last_ok.get().max(covered));
        Ok((core_lsn, covered))
    }

    /// The pump: feeds the core `Persisted` as the WAL makes records durable.
    pub async fn pump(self: Rc<Persistence>, shard: Rc<Shard>) {
        loop {
            self.appended.wait().await;
            let Some(&(_, target)) = self.pending.borrow().back() else {
                continue;
            };
            match self.journal.wait_durable(target).await {
                Ok(()) => {
                    self.last_ok.set(self.last_ok.get().max(target));
                    let durable = target;
                    let mut done = None;
                    {
                        let mut pending = self.pending.borrow_mut();
                        while let Some(&(core, wal)) = pending.front() {
                            if wal > durable {
                                break;
                            }
                            done = Some(core);
                            pending.pop_front();
                        }
                    }
                    if let Some(lsn) = done {
                        shard.handle(Input::Persisted { lsn });
                    }
                }
                Err(e) => self.degrade(format!("writing the write-ahead log failed: {e}")),
            }
        }
    }

    /// Takes periodic snapshots, and retries until one succeeds while degraded.
    pub async fn snapshots(self: Rc<Persistence>, shard: Rc<Shard>) {
        loop {
            self.snapshot_due.wait().await;
            loop {
                let degraded = self.degraded.borrow().is_some();
                if !degraded && self.since_snapshot.get() < self.snapshot_every {
                    break;
                }
                let counted = self.since_snapshot.get();
                let result = self.snapshot(&shard).await;
                match result {
                    Ok((core_lsn, covered)) => {
                        // Records appended while the snapshot was written count towards the next.
                        self.since_snapshot
                            .set(self.since_snapshot.get().saturating_sub(counted));
                        if self.degraded.borrow_mut().take().is_some() {
                            info!("write-ahead log writable again: a snapshot covers everything; accepting changes");
                        }
                        // Everything up to the snapshot is durable now, whether or not its
                        // records reached the log; later records still wait for the pump.
                        self.pending.borrow_mut().retain(|&(_, wal)| wal > covered);
                        shard.handle(Input::Persisted { lsn: core_lsn });
                        break;
                    }
                    Err(e) if degraded => {
                        warn!(error = %e, "snapshot failed; the log stays closed to changes");
                        glommio::timer::sleep(DEGRADED_RETRY).await;
                    }
                    Err(e) => {
                        warn!(error = %e, "periodic snapshot failed; will try again later");
                        self.since_snapshot.set(0);
                        break;
                    }
                }
            }
        }
    }

    /// Writes everything pending and closes the log (on shutdown).
    pub async fn close(self: Rc<Persistence>) {
        match Rc::try_unwrap(self) {
            Ok(p) => {
                if let Err(e) = p.journal.close().await {
                    warn!(error = %e, "closing the write-ahead log");
                }
            }
            Err(_) => {
                warn!("the write-ahead log is still in use at shutdown; it is flushed on drop")
            }
        }
    }
}
