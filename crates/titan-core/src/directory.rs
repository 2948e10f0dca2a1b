//! The shard-local worker directory ([`Directory`]): every worker this shard knows (capacity,
//! skills, port, parent, ephemeral, home), iterated in `WorkerId` order, with its per-skill lists,
//! the heartbeat deadlines of the workers this shard is home to, and the attempts this shard has
//! reserved on each worker, live or being killed, so a lost worker's reservations are released and
//! its live attempts re-queued. Every shard learns every worker from `WorkerUp` broadcasts.
//!
//! It also answers where a job fits ([`Directory::place`]): load lives in the shared
//! [`LoadTable`]; placement scans the workers that advertise a skill, picks the one with the fewest
//! reservations relative to capacity (ties: lowest id), and reserves a slot there by
//! compare-and-swap, rescanning when another shard won the race.
//!
//! **Prefetching** ([`Prefetch`]). A worker may be given up to `CoreConfig::prefetch` plain jobs
//! beyond its capacity, never while a service holds one of its slots: NOOPs at any other time
//! (they hold no slot on the worker: they complete on arrival), process jobs only while its
//! processes turn over fast ([`RunTime`] and the load table's last turnover). They wait in the
//! worker's own queue, and a slot that frees starts the next one at once, without a round trip
//! through the master. Least connections still decides: a worker past its capacity ranks after
//! every worker with a free slot.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use super::ids::{JobId, Lsn, Time, WorkerId};
use super::input::WorkerInfo;
use super::limits::{LOAD_TABLE_SLOTS, MAX_PLACEMENT_RACES};
use super::load::LoadTable;
use super::skills::SkillId;

/// One worker as this shard knows it.
#[derive(Debug)]
pub struct WorkerEntry {
    pub capacity: u32,
    pub skills: Vec<SkillId>,
    pub port: u16,
    pub parent: Option<WorkerId>,
    pub ephemeral: bool,
    pub home: bool,
    pub registered: Time,
    pub last_heartbeat: Time,
    /// Attempts this shard reserved on the worker: `(job, attempt)`, live or being killed, and
    /// whether it is a service's. A map, because a worker may hold thousands and every report
    /// removes one.
    pub attempts: BTreeMap<(JobId, u32), bool>,
    /// Retired by this (home) shard; no longer placeable while the shell disconnects it.
    pub retiring: bool,
    /// The worker process's identity ([`WorkerInfo::instance`](super::input::WorkerInfo)).
    pub instance: u64,
    /// The record journaling its registration; no dispatch to it leaves before that is durable.
    pub joined: Lsn,
    /// How long its attempts have run lately (for prefetching).
    pub run_time: RunTime,
}

impl WorkerEntry {
    /// A worker registering at `now` with `capacity` (clamped) and `skills` (interned).
    pub fn new(info: &WorkerInfo, capacity: u32, skills: Vec<SkillId>, now: Time) -> WorkerEntry {
        WorkerEntry {
            capacity,
            skills,
            port: info.port,
            parent: info.parent,
            ephemeral: info.ephemeral,
            home: info.home,
            registered: now,
            last_heartbeat: now,
            attempts: BTreeMap::new(),
            retiring: false,
            instance: info.instance,
            joined: Lsn(0),
            run_time: RunTime::UNKNOWN,
        }
    }
}

/// A moving average of how long a worker's processes ran, as the worker reports them (from the
/// real start, not from the dispatch; reports of no run time, NOOPs and attempts that never
/// started, are not counted). Each report moves it an eighth of the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunTime {
    average_us: u64,
}

impl RunTime {
    /// Where a new worker starts: one second, so that prefetching waits for a few dozen short
    /// attempts, and one long attempt among short ones stops it again at once.
    pub const UNKNOWN: RunTime = RunTime {
        average_us: 1_000_000,
    };

    pub fn note(&mut self, ran: Duration) {
        let us = u64::try_from(ran.as_micros()).unwrap_or(u64::MAX);
        self.average_us = self.average_us - self.average_us / 8 + us / 8;
    }

    pub fn is_below(self, limit: Duration) -> bool {
        u128::from(self.average_us) < limit.as_micros()
    }
}

/// How far placement may go beyond a worker's capacity for one job (see `CoreConfig::prefetch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefetch {
    /// Never: a service, `SLEEP`, a job with a timeout, or prefetching is off.
    Never,
    /// `depth` more, whatever runs there (but a service, which the load table checks): a NOOP
    /// holds no slot on the worker.
    Always { depth: u32 },
    /// `depth` more on a worker whose processes ran shorter than `below` on average and one of
    /// which ended less than `below` ago.
    WhileShort { depth: u32, below: Duration },
}

impl Prefetch {
    /// Attempts beyond its capacity this job may find on `entry`'s worker, before the load
    /// table's own condition (no service there).
    fn extra(self, w: WorkerId, entry: &WorkerEntry, load: &LoadTable, now: Time) -> u32 {
        match self {
            Prefetch::Never => 0,
            Prefetch::Always { depth } => depth,
            Prefetch::WhileShort { depth, below } => {
                let turning = load.last_turnover(w).0 + below.as_micros() as u64 > now.0;
                if turning && entry.run_time.is_below(below) {
                    depth
                } else {
                    0
                }
            }
        }
    }
}

/// Where a placement attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// A slot on this worker is reserved.
    Placed(WorkerId),
    /// Workers have the skill, but none has a free slot.
    Full,
    /// No alive worker advertises the skill.
    NoWorker,
}

/// The directory of known workers.
#[derive(Debug)]
pub struct Directory {
    workers: BTreeMap<WorkerId, WorkerEntry>,
    by_skill: Vec<Vec<WorkerId>>,
    by_slot: Vec<Option<WorkerId>>,
    heartbeats: BinaryHeap<Reverse<(Time, WorkerId)>>,
}

impl Default for Directory {
    fn default() -> Directory {
        Directory {
            workers: BTreeMap::new(),
            by_skill: Vec::new(),
            by_slot: vec![None; LOAD_TABLE_SLOTS],
            heartbeats: BinaryHeap::new(),
        }
    }
}

impl Directory {
    pub fn get(&self, w: WorkerId) -> Option<&WorkerEntry> {
        self.workers.get(&w)
    }

    #[cfg(test)]
    pub fn get_mut(&mut self, w: WorkerId) -> Option<&mut WorkerEntry> {
        self.workers.get_mut(&w)
    }

    /// Known workers in id order.
    pub fn iter(&self) -> impl Iterator<Item = (WorkerId, &WorkerEntry)> {
        self.workers.iter().map(|(&w, e)| (w, e))
    }

    /// Known workers that are not being retired.
    pub fn active(&self) -> usize {
        self.workers.values().filter(|e| !e.retiring).count()
    }

    /// The skills of `w` (none when it is unknown).
    pub fn skills_of(&self, w: WorkerId) -> &[SkillId] {
        self.workers.get(&w).map_or(&[], |e| &e.skills)
    }

    /// The workers `w` spawned.
    pub fn children_of(&self, w: WorkerId) -> usize {
        self.workers
            .values()
            .filter(|e| e.parent == Some(w))
            .count()
    }

    /// Whether some known worker is the process `instance`.
    pub fn has_instance(&self, instance: u64) -> bool {
        self.workers.values().any(|e| e.instance == instance)
    }

    /// Ephemeral workers this shard is home to and has not retired, in id order.
    pub fn retirable(&self) -> Vec<WorkerId> {
        self.workers
            .iter()
            .filter(|(_, e)| e.home && e.ephemeral && !e.retiring)
            .map(|(&w, _)| w)
            .collect()
    }

    /// `w` re-registered with new capacity, port and skills.
    pub fn reregister(&mut self, w: WorkerId, capacity: u32, port: u16, skills: Vec<SkillId>) {
        if let Some(e) = self.workers.get_mut(&w) {
            e.capacity = capacity;
            e.port = port;
        }
        self.set_skills(w, skills);
    }

    /// The record of `w`'s registration.
    pub fn joined(&self, w: WorkerId) -> Lsn {
        self.workers.get(&w).map_or(Lsn(0), |e| e.joined)
    }

    /// `w`'s registration is journaled under `lsn`.
    pub fn set_joined(&mut self, w: WorkerId, lsn: Lsn) {
        if let Some(e) = self.workers.get_mut(&w) {
            e.joined = lsn;
        }
    }

    /// `w` sent a heartbeat at `now`.
    pub fn heartbeat(&mut self, w: WorkerId, now: Time) {
        if let Some(e) = self.workers.get_mut(&w) {
            e.last_heartbeat = now;
        }
    }

    /// `w` is being retired: no longer placeable while the shell disconnects it.
    pub fn retire(&mut self, w: WorkerId) {
        self.unlist(w);
        if let Some(e) = self.workers.get_mut(&w) {
            e.retiring = true;
        }
    }

    /// The worker currently known in `w`'s slot, if it is another generation.
    pub fn previous_in_slot(&self, w: WorkerId) -> Option<WorkerId> {
        self.by_slot[w.slot()].filter(|&old| old != w)
    }

    pub fn insert(
        &mut self,
        w: WorkerId,
        entry: WorkerEntry,
        heartbeat_timeout: std::time::Duration,
    ) {
        if entry.home {
            self.heartbeats
                .push(Reverse((entry.last_heartbeat + heartbeat_timeout, w)));
        }
        for &s in &entry.skills {
            self.list(w, s);
        }
        self.by_slot[w.slot()] = Some(w);
        self.workers.insert(w, entry);
    }

    fn list(&mut self, w: WorkerId, s: SkillId) {
        let i = usize::from(s.0);
        if self.by_skill.len() <= i {
            self.by_skill.resize_with(i + 1, Vec::new);
        }
        if let Err(pos) = self.by_skill[i].binary_search(&w) {
            self.by_skill[i].insert(pos, w);
        }
    }

    /// Stops placing on `w` (retiring or gone).
    pub fn unlist(&mut self, w: WorkerId) {
        let Some(e) = self.workers.get(&w) else {
            return;
        };
        for s in &e.skills {
            if let Some(list) = self.by_skill.get_mut(usize::from(s.0)) {
                list.retain(|&x| x != w);
            }
        }
    }

    /// Replaces a known worker's skills (re-registration).
    pub fn set_skills(&mut self, w: WorkerId, skills: Vec<SkillId>) {
        self.unlist(w);
        if let Some(e) = self.workers.get_mut(&w) {
            e.skills = skills.clone();
            if !e.retiring {
                for s in skills {
                    self.list(w, s);
                }
            }
        }
    }

    pub fn remove(&mut self, w: WorkerId) -> Option<WorkerEntry> {
        self.unlist(w);
        let e = self.workers.remove(&w)?;
        if self.by_slot[w.slot()] == Some(w) {
            self.by_slot[w.slot()] = None;
        }
        Some(e)
    }

    /// Workers advertising `skill`, in id order.
    pub fn with_skill(&self, skill: SkillId) -> &[WorkerId] {
        self.by_skill
            .get(usize::from(skill.0))
            .map_or(&[], Vec::as_slice)
    }

    pub fn add_attempt(&mut self, w: WorkerId, job: JobId, attempt: u32, service: bool) {
        if let Some(e) = self.workers.get_mut(&w) {
            e.attempts.insert((job, attempt), service);
        }
    }

    /// Removes a reservation record and says whether it was a service's; `None` when this shard
    /// holds no such attempt on `w` (stale report).
    pub fn take_attempt(&mut self, w: WorkerId, job: JobId, attempt: u32) -> Option<bool> {
        self.workers
            .get_mut(&w)
            .and_then(|e| e.attempts.remove(&(job, attempt)))
    }

    /// Least-connections placement for `skill`, reserving the chosen slot (a service's if
    /// `service`); `prefetch` says how far past a worker's capacity the job may go.
    pub fn place(
        &self,
        skill: SkillId,
        load: &LoadTable,
        prefetch: Prefetch,
        service: bool,
        now: Time,
    ) -> Reservation {
        let candidates = self.with_skill(skill);
        if candidates.is_empty() {
            return Reservation::NoWorker;
        }
        let extra = |w: WorkerId| {
            self.workers
                .get(&w)
                .map_or(0, |e| prefetch.extra(w, e, load, now))
        };
        for _ in 0..MAX_PLACEMENT_RACES {
            let Some(w) = least_loaded(candidates, load, extra) else {
                return Reservation::Full;
            };
            if load.reserve(w, extra(w), service, now) {
                return Reservation::Placed(w);
            }
        }
        Reservation::Full
    }

    /// Notes that an attempt which ran a process for `ran` ended on `w` (reports of no run time,
    /// from NOOPs or attempts that never started, say nothing about its processes).
    pub fn note_run_time(&mut self, w: WorkerId, ran: Duration, load: &LoadTable, now: Time) {
        if ran.is_zero() {
            return;
        }
        if let Some(e) = self.workers.get_mut(&w) {
            e.run_time.note(ran);
            load.note_turnover(w, now);
        }
    }

    /// The earliest heartbeat deadline of an alive home worker, fixing lazily stale heap entries.
    pub fn next_heartbeat_deadline(&mut self, timeout: std::time::Duration) -> Option<Time> {
        while let Some(&Reverse((due, w))) = self.heartbeats.peek() {
            match self.workers.get(&w) {
                Some(e) if e.home && !e.retiring => {
                    let actual = e.last_heartbeat + timeout;
                    if actual == due {
                        return Some(due);
                    }
                    self.heartbeats.pop();
                    self.heartbeats.push(Reverse((actual, w)));
                }
                _ => {
                    self.heartbeats.pop();
                }
            }
        }
        None
    }

    /// Pops one home worker whose heartbeat deadline passed at `now`.
    pub fn pop_silent(&mut self, now: Time, timeout: std::time::Duration) -> Option<WorkerId> {
        let due = self.next_heartbeat_deadline(timeout)?;
        if due > now {
            return None;
        }
        self.heartbeats.pop().map(|Reverse((_, w))| w)
    }
}

/// The candidate with the fewest reservations relative to capacity and a free slot; lowest id on ties.
fn least_loaded(
    candidates: &[WorkerId],
    load: &LoadTable,
    extra: impl Fn(WorkerId) -> u32,
) -> Option<WorkerId> {
    let mut best: Option<(WorkerId, u64, u64)> = None;
    for &w in candidates {
        let Some(l) = load.load(w) else { continue };
        if !l.alive || l.running >= l.limit(extra(w)) {
            continue;
        }
        let (r, c) = (u64::from(l.running), u64::from(l.capacity));
        // running/capacity < best_running/best_capacity, compared without division.
        if best.is_none_or(|(_, br, bc)| r * bc < br * c) {
            best = Some((w, r, c));
        }
    }
    best.map(|(w, _, _)| w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(skills: &[u16], home: bool) -> WorkerEntry {
        WorkerEntry {
            capacity: 4,
            skills: skills.iter().map(|&s| SkillId(s)).collect(),
            port: 8080,
            parent: None,
            ephemeral: false,
            home,
            registered: Time(0),
            last_heartbeat: Time(0),
            attempts: BTreeMap::new(),
            retiring: false,
            instance: 0,
            joined: Lsn(0),
            run_time: RunTime::UNKNOWN,
        }
    }

    fn w(slot: u16) -> WorkerId {
        WorkerId::new(slot, 1).unwrap()
    }

    #[test]
    fn least_connections_relative_to_capacity_with_lowest_id_ties() {
        let load = LoadTable::new();
        let mut d = Directory::default();
        for (slot, cap) in [(0, 2), (1, 8), (2, 8)] {
            load.activate(w(slot), cap, Time(0));
            d.insert(w(slot), entry(&[0], false), Duration::from_secs(1));
        }
        assert!(load.reserve(w(0), 0, false, Time(0)));
        // w0 is at 1/2, w1 and w2 at 0/8: the tie goes to the lower id.
        assert_eq!(
            d.place(SkillId(0), &load, Prefetch::Never, false, Time(0)),
            Reservation::Placed(w(1))
        );
        assert_eq!(
            d.place(SkillId(0), &load, Prefetch::Never, false, Time(0)),
            Reservation::Placed(w(2))
        );
        // w1 1/8, w2 1/8, w0 1/2: w1 again.
        assert_eq!(
            d.place(SkillId(0), &load, Prefetch::Never, false, Time(0)),
            Reservation::Placed(w(1))
        );
        assert_eq!(
            d.place(SkillId(1), &load, Prefetch::Never, false, Time(0)),
            Reservation::NoWorker
        );
    }

    #[test]
    fn full_workers_are_skipped() {
        let load = LoadTable::new();
        let mut d = Directory::default();
        load.activate(w(0), 1, Time(0));
        d.insert(w(0), entry(&[0], false), Duration::from_secs(1));
        assert_eq!(
            d.place(SkillId(0), &load, Prefetch::Never, false, Time(0)),
            Reservation::Placed(w(0))
        );
        assert_eq!(
            d.place(SkillId(0), &load, Prefetch::Never, false, Time(0)),
            Reservation::Full
        );
        d.unlist(w(0));
        assert_eq!(
            d.place(SkillId(0), &load, Prefetch::Never, false, Time(0)),
            Reservation::NoWorker
        );
    }

    #[test]
    fn heartbeat_deadlines_follow_the_latest_heartbeat() {
        let mut d = Directory::default();
        let t = Duration::from_secs(10);
        d.insert(w(0), entry(&[0], true), t);
        d.insert(w(1), entry(&[0], false), t);
        assert_eq!(d.next_heartbeat_deadline(t), Some(Time(10_000_000)));
        d.get_mut(w(0)).unwrap().last_heartbeat = Time(5_000_000);
        assert_eq!(d.pop_silent(Time(12_000_000), t), None);
        assert_eq!(d.pop_silent(Time(15_000_000), t), Some(w(0)));
    }

    #[test]
    fn attempts_are_taken_once() {
        let mut d = Directory::default();
        d.insert(w(0), entry(&[0], false), Duration::from_secs(1));
        d.add_attempt(w(0), JobId(1), 1, false);
        assert_eq!(d.take_attempt(w(0), JobId(1), 1), Some(false));
        assert_eq!(d.take_attempt(w(0), JobId(1), 1), None);
        assert_eq!(d.take_attempt(w(1), JobId(1), 1), None);
    }
}
