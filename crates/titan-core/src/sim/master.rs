//! The simulated master's durability: per-shard WALs (records become durable when their
//! `Persisted` arrives), periodic snapshots (usable once the LSN they cover is durable), and master
//! crashes. A crash loses every record that was not durable and every message in flight to the
//! master; workers keep running and keep their reports. Recovery rebuilds each core from the newest
//! durable snapshot and the durable records after it — under a new shard count if `reshard` picks
//! one, with every old snapshot absorbed by every new core and the old shards' records interleaved
//! at random — then workers re-register under new ids and report what they hold (`Adopt`, before or
//! after their `WorkerUp`), followed by the reports they could not deliver.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::world::{core_config, core_seed, Event, World};
use super::SimFailure;
use crate::{
    Core, CoreConfig, Input, JobId, JobState, LoadTable, Lsn, Record, ShardInfo, Snapshot,
    WorkerIdAllocator,
};

/// One shard's write-ahead log, as far as durability goes.
#[derive(Default)]
pub(super) struct ShardWal {
    /// The newest durable snapshot: the LSN it covers and its bytes.
    pub(super) snapshot: Option<(Lsn, Vec<u8>)>,
    /// Snapshots whose covered LSN is not durable yet, oldest first.
    pub(super) pending: Vec<(Lsn, Vec<u8>)>,
    /// Records after the durable snapshot, in LSN order.
    pub(super) records: Vec<(Lsn, Record)>,
    pub(super) persisted: Lsn,
    /// How many of `records` the durable checker has followed (exactly the durable ones).
    pub(super) tracked: usize,
}

impl ShardWal {
    /// Makes the newest snapshot covered by `persisted` the base, dropping the records it covers.
    fn promote(&mut self) -> bool {
        let Some(i) = self.pending.iter().rposition(|(c, _)| *c <= self.persisted) else {
            return false;
        };
        let newest = self.pending.drain(..=i).next_back();
        let covered = newest.as_ref().map_or(Lsn(0), |(c, _)| *c);
        self.snapshot = newest;
        let cut = self.records.partition_point(|(l, _)| *l <= covered);
        self.records.drain(..cut);
        self.tracked -= cut.min(self.tracked);
        true
    }
}

impl World {
    /// Records up to `lsn` of shard `s` are durable.
    pub(super) fn persisted(&mut self, s: usize, lsn: Lsn) -> Result<(), SimFailure> {
        let wal = &mut self.wal[s];
        wal.persisted = wal.persisted.max(lsn);
        let mut broken = None;
        while wal.tracked < wal.records.len() && wal.records[wal.tracked].0 <= wal.persisted {
            let (l, r) = &wal.records[wal.tracked];
            if let Err(e) = self.durable.track(*l, r) {
                broken = Some(format!("durable history: {e}"));
            }
            wal.tracked += 1;
        }
        if wal.promote() {
            self.report.snapshots += 1;
        }
        match broken {
            Some(e) => Err(self.fail(e)),
            None => Ok(()),
        }
    }

    pub(super) fn on_snapshot_tick(&mut self) -> Result<(), SimFailure> {
        if !self.down {
            for s in 0..self.cores.len() {
                let snap = self.cores[s].snapshot();
                let covered = snap.last_lsn;
                let bytes = snap
                    .encode()
                    .map_err(|e| self.fail(format!("snapshot: {e}")))?;
                let wal = &mut self.wal[s];
                wal.pending.push((covered, bytes));
                if wal.promote() {
                    self.report.snapshots += 1;
                }
            }
        }
        if let Some(every) = self.cfg.snapshot_every {
            self.schedule(every, Event::Snapshot);
        }
        Ok(())
    }

    pub(super) fn on_master_crash(&mut self) {
        self.report.master_crashes += 1;
        self.down = true;
        // Messages in flight to the master are lost; workers keep the reports they sent.
        let events = std::mem::take(&mut self.events);
        for (key, event) in events {
            match event {
                Event::Deliver { input, .. } => {
                    self.busy -= 1;
                    self.return_report(input);
                }
                other => {
                    self.events.insert(key, other);
                }
            }
        }
        for w in self.workers.values_mut() {
            w.registered = false;
            if !w.alive {
                w.buried = true;
            }
        }
        self.by_id.clear();
        self.adoptable.clear();
        for wal in &mut self.wal {
            wal.records.truncate(wal.tracked);
            wal.pending.clear();
        }
        let down = Duration::from_millis(self.rng.gen_range(50..500));
        self.schedule(down, Event::MasterUp);
    }

    fn return_report(&mut self, input: Input) {
        let worker = match &input {
            Input::JobStarted { worker, .. }
            | Input::JobFinished { worker, .. }
            | Input::ServiceReady { worker, .. } => *worker,
            _ => return,
        };
        if let Some(w) = self
            .by_id
            .get(&worker)
            .and_then(|k| self.workers.get_mut(k))
        {
            if w.alive {
                w.unsent.push(input);
            }
        }
    }

    pub(super) fn on_master_up(&mut self) -> Result<(), SimFailure> {
        self.down = false;
        let old = self.wal.len() as u32;
        let count = if self.cfg.reshard {
            self.rng.gen_range(1..=4)
        } else {
            old
        };
        self.load = Arc::new(LoadTable::new());
        self.ids = WorkerIdAllocator::new();
        let start: Vec<Lsn> = if count == old {
            self.recover_in_place()?
        } else {
            self.report.reshards += 1;
            self.recover_resharded(count)?
        };
        self.check = self.durable.for_new_epoch(&start);
        let keys: Vec<u64> = self
            .workers
            .iter()
            .filter(|(_, w)| w.alive && !w.buried)
            .map(|(&k, _)| k)
            .collect();
        for worker in keys {
            let after = Duration::from_millis(self.rng.gen_range(0..500));
            self.schedule(after, Event::Rejoin { worker });
        }
        for (_, job) in std::mem::take(&mut self.stops) {
            let after = Duration::from_millis(self.rng.gen_range(0..100));
            self.schedule(after, Event::Stop { job });
        }
        for event in std::mem::take(&mut self.deferred) {
            let after = Duration::from_millis(self.rng.gen_range(0..100));
            self.schedule(after, event);
        }
        Ok(())
    }

    fn new_core(&self, shard: ShardInfo, first_lsn: u64) -> Core {
        let cfg = CoreConfig {
            first_lsn,
            ..core_config(&self.cfg)
        };
        let seed = core_seed(self.cfg.seed, shard.index, self.report.master_crashes);
        Core::new(cfg, shard, self.load.clone(), seed)
    }

    /// Same shard count: each core from its own snapshot and records; the WALs continue.
    fn recover_in_place(&mut self) -> Result<Vec<Lsn>, SimFailure> {
        let count = self.wal.len() as u32;
        let mut cores = Vec::new();
        for index in 0..count {
            let shard = ShardInfo { index, count };
            let wal = &self.wal[index as usize];
            let mut core = self.new_core(shard, wal.persisted.0 + 1);
            if let Some((_, bytes)) = &wal.snapshot {
                let snap = Snapshot::decode(bytes).map_err(|e| self.fail(e.to_string()))?;
                core.absorb(snap)
                    .map_err(|e| self.fail(format!("restore: {e}")))?;
            }
            for (lsn, r) in &wal.records {
                core.replay(r.clone())
                    .map_err(|e| self.fail(format!("replay of {lsn:?}: {e}")))?;
            }
            core.finish_recovery(self.now);
            cores.push(core);
        }
        self.cores = cores;
        Ok(self.wal.iter().map(|w| w.persisted).collect())
    }

    /// A new shard count: every snapshot to every core, records to their owners, interleaved.
    fn recover_resharded(&mut self, count: u32) -> Result<Vec<Lsn>, SimFailure> {
        let mut snaps = Vec::new();
        for (_, bytes) in self.wal.iter().filter_map(|w| w.snapshot.as_ref()) {
            snaps.push(Snapshot::decode(bytes).map_err(|e| self.fail(e.to_string()))?);
        }
        let mut streams: Vec<std::vec::IntoIter<(Lsn, Record)>> = self
            .wal
            .iter_mut()
            .map(|w| std::mem::take(&mut w.records).into_iter())
            .collect();
        let mut merged = Vec::new();
        while !streams.is_empty() {
            let i = self.rng.gen_range(0..streams.len());
            match streams[i].next() {
                Some((_, r)) => merged.push(r),
                None => {
                    streams.swap_remove(i);
                }
            }
        }
        let mut cores = Vec::new();
        for index in 0..count {
            let shard = ShardInfo { index, count };
            let mut core = self.new_core(shard, 1);
            for s in &snaps {
                core.absorb(s.clone())
                    .map_err(|e| self.fail(format!("absorb: {e}")))?;
            }
            // As the real master: departures are not replayed across a reshard (see
            // `master::recovery::reshard`).
            let mine = merged.iter().filter(|r| match r.dag() {
                Some(d) => shard.owns(d),
                None => !matches!(r, Record::WorkerLeft { .. }),
            });
            for r in mine {
                core.replay(r.clone())
                    .map_err(|e| self.fail(format!("replay after a reshard: {e}")))?;
            }
            core.finish_recovery(self.now);
            cores.push(core);
        }
        // The new WALs start from a snapshot of the recovered state (the old ones are retired).
        let mut wal = Vec::new();
        for core in &cores {
            let snap = core.snapshot();
            let bytes = snap
                .encode()
                .map_err(|e| self.fail(format!("snapshot: {e}")))?;
            wal.push(ShardWal {
                snapshot: Some((snap.last_lsn, bytes)),
                ..Default::default()
            });
        }
        self.wal = wal;
        self.cores = cores;
        Ok(vec![Lsn(0); count as usize])
    }

    /// A worker re-registers with the recovered master and reports what it holds.
    pub(super) fn on_rejoin(&mut self, key: u64) -> Result<(), SimFailure> {
        // Registered already (a rejoin scheduled by an earlier recovery), dead or forgotten.
        let Some(w) = self
            .workers
            .get(&key)
            .filter(|w| w.alive && !w.buried && !w.registered)
        else {
            return Ok(());
        };
        let mut attempts: Vec<(JobId, u32)> = w.running.iter().copied().collect();
        attempts.extend(w.reported.iter().filter_map(|i| match i {
            Input::JobFinished { job, attempt, .. } => Some((*job, *attempt)),
            _ => None,
        }));
        attempts.sort_unstable();
        attempts.dedup();
        for &(job, attempt) in &attempts {
            let core = &self.cores[self.owner(job.dag()) as usize];
            // A recovered attempt, or one whose `Dispatched` record the crash lost.
            let waits = core.job(job).is_some_and(|v| {
                (v.state == JobState::Running && v.attempts == attempt && v.adopting)
                    || (v.state == JobState::Queued && attempt > v.attempts)
            });
            if waits {
                self.adoptable.insert((job, attempt), key);
            }
        }
        if let Some(w) = self.workers.get_mut(&key) {
            w.allowance = w.running.len();
            w.listed = attempts.iter().copied().collect();
        }
        self.register(key, None, &attempts)?;
        let id = self.workers[&key].id;
        for (&(job, _), _) in self.adoptable.iter().filter(|(_, k)| **k == key) {
            let core = &self.cores[self.owner(job.dag()) as usize];
            if core.job(job).is_some_and(|v| v.worker == Some(id)) {
                self.report.adopted += 1;
            }
        }
        let w = self.workers.get_mut(&key).expect("exists");
        // Every final report again (the master ignores the ones it has); the rest if undelivered.
        let mut resend: Vec<Input> = std::mem::take(&mut w.unsent)
            .into_iter()
            .filter(|i| !matches!(i, Input::JobFinished { .. }))
            .collect();
        resend.extend(w.reported.iter().cloned());
        for input in resend {
            let lat = self.latency();
            self.send(key, lat, input);
        }
        Ok(())
    }
}
