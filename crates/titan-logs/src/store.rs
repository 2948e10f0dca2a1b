//! The master's log store: every tracked job attempt's ring, the datagram numbering of every
//! sender, the limits that keep it all bounded, and the totals for `titan stats`. Pure: the
//! sink feeds it datagrams and queries it; no socket, clock or executor here.
//!
//! Memory stays bounded however much jobs print: each ring has a line and a byte limit, the
//! number of rings has a limit (the oldest finished attempt goes first, then the one idle the
//! longest), and all rings together have a byte budget (finished attempts are dropped first,
//! then the attempt idle the longest loses the older half of its lines).

use super::datagram::{AttemptKey, Datagram, DatagramHeader, DecodeError, Entry, Stream};
use super::keys::SinkKeys;
use super::limits::{
    DEFAULT_MAX_BYTES_PER_JOB, DEFAULT_MAX_JOBS, DEFAULT_MAX_LINES_PER_JOB,
    DEFAULT_MAX_TOTAL_BYTES, DEFAULT_MAX_WORKERS, MAX_PAGE_LINES,
};
use super::ring::{JobLogSummary, JobRing, LinesPage, RingLimits};
use std::collections::{BTreeMap, VecDeque};
use titan_core::WorkerId;

/// The sink's limits; every one is at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkLimits {
    pub max_lines_per_job: usize,
    /// Bytes per attempt, counting each line's payload plus
    /// [`LINE_OVERHEAD_BYTES`](super::LINE_OVERHEAD_BYTES).
    pub max_bytes_per_job: usize,
    pub max_jobs: usize,
    /// Bytes over all attempts, counted like `max_bytes_per_job`.
    pub max_total_bytes: usize,
    pub max_workers: usize,
}

impl Default for SinkLimits {
    fn default() -> Self {
        Self {
            max_lines_per_job: DEFAULT_MAX_LINES_PER_JOB,
            max_bytes_per_job: DEFAULT_MAX_BYTES_PER_JOB,
            max_jobs: DEFAULT_MAX_JOBS,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_workers: DEFAULT_MAX_WORKERS,
        }
    }
}

impl SinkLimits {
    fn sanitized(self) -> Self {
        Self {
            max_lines_per_job: self.max_lines_per_job.max(1),
            max_bytes_per_job: self.max_bytes_per_job.max(1),
            max_jobs: self.max_jobs.max(1),
            max_total_bytes: self.max_total_bytes.max(1),
            max_workers: self.max_workers.max(1),
        }
    }
}

/// The sink's totals since it started (for `titan stats --json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkStats {
    /// Valid datagrams received.
    pub datagrams: u64,
    /// Bytes of valid datagrams.
    pub datagram_bytes: u64,
    /// Datagrams rejected by the decoder (not counted in `datagrams`).
    pub invalid_datagrams: u64,
    /// Datagrams dropped because a seal did not verify: forged (a spoofing sender, a worker
    /// writing into another's jobs), altered on the way, or sealed with keys of another master
    /// (not counted in `datagrams`).
    pub unauthenticated_datagrams: u64,
    /// Datagram numbers skipped by senders' sequences: lost between the worker and here
    /// (dropped at the worker's socket, on the way, or in this socket's full receive buffer).
    pub datagrams_lost: u64,
    /// Datagrams that arrived after a later one of the same sender (counted in `datagrams_lost`).
    pub datagrams_late: u64,
    /// Line records received in order.
    pub lines: u64,
    /// Line records known missing, over all attempts ever tracked.
    pub lines_lost: u64,
    /// Line records that arrived after a later one (counted in `lines_lost`).
    pub lines_late: u64,
    /// Line records dropped from rings to respect the limits.
    pub lines_evicted: u64,
    pub jobs_tracked: usize,
    /// Attempts forgotten to respect `max_jobs` or the byte budget.
    pub jobs_evicted: u64,
    pub bytes_held: usize,
    pub workers_tracked: usize,
    /// Times a sender started a new session (a restarted worker) or was first seen.
    pub sessions: u64,
}

/// Where a sender's datagram numbering stands.
#[derive(Clone, Copy, Debug)]
struct SenderProgress {
    session: u32,
    next_seq: u64,
    last_active: u64,
}

/// Every tracked attempt's lines and the senders' numbering.
#[derive(Debug)]
pub struct LogStore {
    limits: SinkLimits,
    keys: SinkKeys,
    jobs: BTreeMap<AttemptKey, JobRing>,
    /// Attempts in the order they ended; may hold keys already forgotten.
    finished: VecDeque<AttemptKey>,
    senders: BTreeMap<WorkerId, SenderProgress>,
    bytes: usize,
    /// Counts datagrams and end markers: the clock of "least recently active".
    tick: u64,
    stats: SinkStats,
    /// Lost and late lines of every attempt, tracked or forgotten: kept up to date as rings
    /// change, so `stats` does not sum over every ring (a client polling STATS would pay for
    /// each tracked attempt on every call).
    lines_lost: u64,
    lines_late: u64,
}

impl LogStore {
    /// A store that opens datagrams with `keys`.
    pub fn new(limits: SinkLimits, keys: SinkKeys) -> Self {
        Self {
            limits: limits.sanitized(),
            keys,
            jobs: BTreeMap::new(),
            finished: VecDeque::new(),
            senders: BTreeMap::new(),
            bytes: 0,
            tick: 0,
            stats: SinkStats::default(),
            lines_lost: 0,
            lines_late: 0,
        }
    }

    pub fn limits(&self) -> SinkLimits {
        self.limits
    }

    /// Takes in one received datagram, opening its seals in place. `touched` gets the
    /// attempts it added to or ended (each once per run of entries), so the caller can wake
    /// their followers. A forged or invalid datagram is counted and changes nothing else.
    pub fn on_datagram(
        &mut self,
        bytes: &mut [u8],
        touched: &mut Vec<AttemptKey>,
    ) -> Result<DatagramHeader, DecodeError> {
        let len = bytes.len();
        let datagram = match Datagram::open(bytes, &mut self.keys) {
            Ok(datagram) => datagram,
            Err(error) => {
                if error.is_forged() {
                    self.stats.unauthenticated_datagrams += 1;
                } else {
                    self.stats.invalid_datagrams += 1;
                }
                return Err(error);
            }
        };
        self.tick += 1;
        self.stats.datagrams += 1;
        self.stats.datagram_bytes += len as u64;
        self.on_sender(datagram.header);
        for entry in datagram.entries() {
            let key = match entry {
                Entry::Line(line) => {
                    self.on_line(
                        line.key.attempt,
                        line.key.stream,
                        line.seq,
                        line.flags,
                        line.bytes,
                    );
                    line.key.attempt
                }
                Entry::End { key, total } => {
                    self.on_stream_end(key.attempt, key.stream, total);
                    key.attempt
                }
            };
            if touched.last() != Some(&key) {
                touched.push(key);
            }
        }
        Ok(datagram.header)
    }

    /// Records that a stream ended after `total` records, from an end marker or from the
    /// worker's report over TCP (which cannot be lost). Returns true when the attempt is ended
    /// now (both streams) and was not before.
    pub fn on_stream_end(&mut self, key: AttemptKey, stream: Stream, total: u64) -> bool {
        self.tick += 1;
        let ring = self.ring(key);
        let before = (ring.lost(), ring.late());
        let ended_now = ring.on_end(stream, total);
        let after = (ring.lost(), ring.late());
        self.count_losses(before, after);
        if ended_now {
            self.finished.push_back(key);
            self.prune_finished();
        }
        ended_now
    }

    /// Up to `max_lines` (at most [`MAX_PAGE_LINES`]) lines from `cursor` on; `None` when the
    /// attempt is not tracked (no line yet, or forgotten).
    pub fn lines_since(&self, key: AttemptKey, cursor: u64, max_lines: usize) -> Option<LinesPage> {
        let max_lines = max_lines.clamp(1, MAX_PAGE_LINES);
        self.jobs.get(&key).map(|ring| ring.page(cursor, max_lines))
    }

    pub fn summary(&self, key: AttemptKey) -> Option<JobLogSummary> {
        self.jobs.get(&key).map(JobRing::summary)
    }

    /// The cursor the attempt's next line will get and whether it has ended; `None` when not
    /// tracked. Cheap: followers call it to decide whether to wait.
    pub fn progress(&self, key: AttemptKey) -> Option<(u64, bool)> {
        self.jobs
            .get(&key)
            .map(|ring| (ring.next_cursor(), ring.ended().is_some()))
    }

    /// Forgets an attempt (its lines and counters). Its lost lines stay in the totals.
    pub fn forget(&mut self, key: AttemptKey) -> bool {
        match self.jobs.remove(&key) {
            Some(ring) => {
                self.release(&ring);
                true
            }
            None => false,
        }
    }

    pub fn stats(&self) -> SinkStats {
        SinkStats {
            lines_lost: self.lines_lost,
            lines_late: self.lines_late,
            jobs_tracked: self.jobs.len(),
            bytes_held: self.bytes,
            workers_tracked: self.senders.len(),
            ..self.stats
        }
    }

    fn on_sender(&mut self, header: DatagramHeader) {
        let tick = self.tick;
        let known = self
            .senders
            .get(&header.worker)
            .filter(|sender| sender.session == header.session)
            .copied();
        let next_seq = match known {
            Some(sender) if header.seq >= sender.next_seq => {
                self.stats.datagrams_lost += header.seq - sender.next_seq;
                header.seq + 1
            }
            Some(sender) => {
                self.stats.datagrams_late += 1;
                sender.next_seq
            }
            None => {
                // A new session: numbering starts at what arrives first, since a master that
                // (re)started mid-session cannot know what came before.
                self.stats.sessions += 1;
                if !self.senders.contains_key(&header.worker)
                    && self.senders.len() >= self.limits.max_workers
                {
                    self.forget_idlest_sender();
                }
                header.seq + 1
            }
        };
        self.senders.insert(
            header.worker,
            SenderProgress {
                session: header.session,
                next_seq,
                last_active: tick,
            },
        );
    }

    fn forget_idlest_sender(&mut self) {
        let idlest = self
            .senders
            .iter()
            .min_by_key(|(worker, sender)| (sender.last_active, **worker))
            .map(|(worker, _)| *worker);
        if let Some(worker) = idlest {
            self.senders.remove(&worker);
        }
    }

    fn on_line(
        &mut self,
        key: AttemptKey,
        stream: Stream,
        seq: u64,
        flags: super::datagram::LineFlags,
        bytes: &[u8],
    ) {
        let limits = RingLimits {
            max_lines: self.limits.max_lines_per_job,
            max_bytes: self.limits.max_bytes_per_job,
        };
        let ring = self.ring(key);
        let before = (ring.lost(), ring.late());
        let effect = ring.on_line(stream, seq, flags, bytes, limits);
        let after = (ring.lost(), ring.late());
        self.count_losses(before, after);
        if effect.stored {
            self.stats.lines += 1;
        }
        self.stats.lines_evicted += effect.evicted;
        self.bytes = self.bytes + effect.bytes_added - effect.bytes_freed;
        self.enforce_budget();
    }

    /// The attempt's ring, created (making room first) when not tracked yet.
    fn ring(&mut self, key: AttemptKey) -> &mut JobRing {
        if !self.jobs.contains_key(&key) && self.jobs.len() >= self.limits.max_jobs {
            let victim = self.oldest_finished().or_else(|| self.idlest(|_| true));
            if let Some(victim) = victim {
                self.evict(victim);
            }
        }
        let tick = self.tick;
        let ring = self.jobs.entry(key).or_insert_with(|| JobRing::new(tick));
        ring.last_active = tick;
        ring
    }

    fn evict(&mut self, key: AttemptKey) {
        if let Some(ring) = self.jobs.remove(&key) {
            self.release(&ring);
            self.stats.jobs_evicted += 1;
        }
    }

    /// Pops finished attempts off the queue until one still tracked appears.
    fn oldest_finished(&mut self) -> Option<AttemptKey> {
        while let Some(key) = self.finished.pop_front() {
            if self
                .jobs
                .get(&key)
                .is_some_and(|ring| ring.ended().is_some())
            {
                return Some(key);
            }
        }
        None
    }

    /// The tracked attempt that received nothing for the longest, among those `eligible`.
    fn idlest(&self, eligible: impl Fn(&JobRing) -> bool) -> Option<AttemptKey> {
        self.jobs
            .iter()
            .filter(|(_, ring)| eligible(ring))
            .min_by_key(|(key, ring)| (ring.last_active, **key))
            .map(|(key, _)| *key)
    }

    /// Keeps all rings within the total byte budget: finished attempts go first, then the idlest
    /// running attempt loses the older half of its lines (at once, so the scan for it is rare).
    /// The attempt printing right now is the most recently active, hence trimmed last.
    fn enforce_budget(&mut self) {
        while self.bytes > self.limits.max_total_bytes {
            if let Some(victim) = self.oldest_finished() {
                self.evict(victim);
                continue;
            }
            let Some(victim) = self.idlest(|ring| !ring.is_empty()) else {
                return;
            };
            let Some(ring) = self.jobs.get_mut(&victim) else {
                return;
            };
            let target = ring.bytes() / 2;
            while ring.bytes() > target {
                let freed = ring.evict_oldest();
                self.bytes -= freed;
                self.stats.lines_evicted += 1;
            }
        }
    }

    fn release(&mut self, ring: &JobRing) {
        self.bytes -= ring.bytes();
    }

    /// Moves the totals by one ring's change of (lost, late) lines. A ring's loss can shrink (a
    /// line counted in its missing tail arrives after the end marker), and the totals include
    /// the ring's earlier value, so subtracting it first cannot underflow.
    fn count_losses(&mut self, before: (u64, u64), after: (u64, u64)) {
        self.lines_lost = self.lines_lost - before.0 + after.0;
        self.lines_late = self.lines_late - before.1 + after.1;
    }

    /// Drops forgotten keys from the finished queue when it has grown well past the jobs.
    fn prune_finished(&mut self) {
        if self.finished.len() > 2 * self.limits.max_jobs {
            let jobs = &self.jobs;
            self.finished.retain(|key| jobs.contains_key(key));
        }
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
