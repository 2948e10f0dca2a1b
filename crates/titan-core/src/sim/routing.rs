//! The simulated shell: it hands inputs to cores and carries every core output out where the
//! master's own [`Router`] sends it (the WAL, clients, workers, other shards), over the simulated
//! network, checking invariants on the way. Which shard, worker or client gets what is the
//! router's decision, never the simulator's: a change to a routing rule changes this run too.

use std::cmp::Reverse;
use std::time::Duration;

use rand::Rng;

use super::workload;
use super::world::{Event, Join, World};
use super::SimFailure;
use crate::router::{Command, Delivery, ReplyTo, Route, Router, WatchToken};
use crate::{Ack, EndCause, Input, JobId, KillReason, Record, ShardInfo, WorkerId};

impl World {
    /// Hands one input to a core and routes what comes out.
    pub(super) fn deliver(&mut self, shard: u32, input: Input) -> Result<(), SimFailure> {
        if self.down {
            return Ok(());
        }
        match &input {
            Input::Persisted { lsn } => {
                self.check.on_persisted(shard as usize, *lsn);
                self.persisted(shard as usize, *lsn)?;
            }
            Input::Submit { token, .. }
            | Input::Cancel { token, .. }
            | Input::Stop { token, .. } => self.check.expect_request(*token),
            _ => {}
        }
        self.cores[shard as usize].handle(self.now, input);
        let routed = self.pump(shard);
        self.check.request_done();
        routed
    }

    /// The master's routing rules as seen from `shard` (with the rule the run breaks, if any).
    pub(super) fn router(&self, shard: u32) -> Router {
        let count = self.cores.len() as u32;
        Router::new(ShardInfo {
            index: shard,
            count,
        })
        .with_fault(self.cfg.router_fault)
    }

    /// An input reaches shard `via` from outside; it goes where the router sends it.
    pub(super) fn arrive(&mut self, via: u32, input: Input) -> Result<(), SimFailure> {
        let Delivery { shard, input } = self.router(via).input(input);
        self.deliver(shard, input)
    }

    /// Every shard loses `worker` (scheduled: the shell learns of it as its connection closes).
    fn lose_everywhere(&mut self, router: Router, worker: WorkerId) {
        for Delivery { shard, input } in router.worker_lost(worker) {
            self.schedule(Duration::ZERO, Event::Deliver { shard, input });
        }
    }

    pub(super) fn pump(&mut self, shard: u32) -> Result<(), SimFailure> {
        let s = shard as usize;
        let router = self.router(shard);
        let mut dispatched = Vec::new();
        while let Some(output) = self.cores[s].poll_output() {
            match router.route(output) {
                Route::Journal { lsn, record } => {
                    // A dispatch is decided when its record is journaled; the `Dispatch` output
                    // itself waits for that record to be durable, so priority is checked here.
                    if let Record::Dispatched { job, .. } = &record {
                        dispatched.push(*job);
                    }
                    self.on_journal(shard, lsn, record)?
                }
                Route::Reply { to, reply } => self.on_reply(router, to, reply)?,
                Route::Notify { to, job, .. } => {
                    if !matches!(to, ReplyTo::Wait(_)) {
                        return Err(self.fail(format!("{job}: a notification for no wait")));
                    }
                    self.check.on_notify(s, job).map_err(|e| self.fail(e))?
                }
                Route::Worker { worker, command } => self.on_command(s, worker, command)?,
                Route::Disconnect { worker, .. } => {
                    self.bury_worker(worker);
                    self.lose_everywhere(router, worker);
                }
                Route::Tick(shards) => {
                    for shard in shards {
                        let input = Input::Tick;
                        self.schedule(Duration::ZERO, Event::Deliver { shard, input });
                    }
                }
            }
        }
        if self.cfg.check_priority {
            self.check_priority(s, &dispatched)?;
        }
        Ok(())
    }

    fn on_reply(
        &mut self,
        router: Router,
        to: ReplyTo,
        reply: Result<Ack, crate::RequestError>,
    ) -> Result<(), SimFailure> {
        let (s, token) = (router.shard().index as usize, to.pack());
        self.stops.remove(&token);
        self.check
            .on_reply(s, token, reply.is_ok())
            .map_err(|e| self.fail(e))?;
        if let Ok(Ack::Submitted { dag, jobs, .. }) = reply {
            self.accepted.insert(token, (dag, jobs));
            self.report.jobs += u64::from(jobs);
            if self.rng.gen_range(0..4) == 0 {
                let job = dag.job(self.rng.gen_range(0..jobs));
                let watch = WatchToken {
                    origin: router.shard().index,
                    seq: self.token() as u32,
                    index: 0,
                };
                let input = Input::Watch {
                    token: watch.pack(),
                    job,
                };
                let Delivery { shard, input } = router.input(input);
                self.schedule(Duration::ZERO, Event::Deliver { shard, input });
            }
        }
        Ok(())
    }

    fn on_command(
        &mut self,
        s: usize,
        worker: WorkerId,
        command: Command,
    ) -> Result<(), SimFailure> {
        match command {
            Command::Run { job, attempt } => self.on_dispatch(s, worker, job, attempt)?,
            Command::Kill {
                job,
                attempt,
                reason,
            } => self.on_kill(worker, job, attempt, reason)?,
            Command::Spawn { ticket, .. } => {
                let key = self.by_id.get(&worker).copied();
                if let Some((key, p)) = key.and_then(|k| Some((k, self.workers.get(&k)?))) {
                    if p.alive {
                        let join = Join {
                            skills: p.skills.clone(),
                            capacity: p.capacity,
                            parent: Some(key),
                            ticket: Some(ticket),
                        };
                        self.report.spawned += 1;
                        self.schedule(Duration::from_millis(100), Event::Join(join));
                    }
                }
            }
            Command::Retire { .. } => {
                self.report.retired += 1;
                self.bury_worker(worker);
                self.lose_everywhere(self.router(s as u32), worker);
            }
        }
        Ok(())
    }

    fn on_kill(
        &mut self,
        worker: WorkerId,
        job: JobId,
        attempt: u32,
        reason: KillReason,
    ) -> Result<(), SimFailure> {
        if reason != KillReason::Orphaned {
            // Cancelled, stopped or timed out: the attempt ends for a good reason.
            self.adoptable.remove(&(job, attempt));
        } else {
            self.report.orphaned += 1;
            // Two workers may hold the same attempt when a dispatch record was lost and the
            // number reused; the claimant that was not adopted must die.
            let holder = self.adoptable.get(&(job, attempt));
            if holder.is_some() && holder == self.by_id.get(&worker) {
                return Err(self.fail(format!(
                    "{job} attempt {attempt} on a live worker was killed as an orphan"
                )));
            }
        }
        if let Some(&key) = self.by_id.get(&worker) {
            let lat = self.latency_to_worker(key);
            let worker = key;
            self.schedule(
                lat,
                Event::KillArrive {
                    worker,
                    job,
                    attempt,
                },
            );
        }
        Ok(())
    }

    fn on_journal(
        &mut self,
        shard: u32,
        lsn: crate::Lsn,
        record: Record,
    ) -> Result<(), SimFailure> {
        let s = shard as usize;
        self.check
            .on_journal(s, lsn, &record)
            .map_err(|e| self.fail(e))?;
        match &record {
            Record::ServiceReady { job, .. } => {
                let life = Duration::from_micros(self.rng.gen_range(50_000..2_000_000));
                self.schedule(life, Event::Stop { job: *job });
            }
            Record::AttemptEnded {
                job,
                attempt,
                cause,
                ..
            } => {
                let held = self.adoptable.remove(&(*job, *attempt));
                if held.is_some() && *cause == EndCause::WorkerLost {
                    return Err(self.fail(format!(
                        "{job} attempt {attempt}, held by a live worker, was re-queued as lost"
                    )));
                }
            }
            _ => {}
        }
        self.wal[s].records.push((lsn, record));
        let max_lag = self.cfg.max_persist_lag.as_micros() as u64;
        let lag = Duration::from_micros(self.rng.gen_range(0..=max_lag));
        let input = Input::Persisted { lsn };
        self.schedule(lag, Event::Deliver { shard, input });
        Ok(())
    }

    fn on_dispatch(
        &mut self,
        s: usize,
        worker: WorkerId,
        job: JobId,
        attempt: u32,
    ) -> Result<(), SimFailure> {
        self.report.dispatches += 1;
        let spec = self.cores[s]
            .spec(job)
            .ok_or_else(|| self.fail(format!("no spec for {job}")))?;
        let service = spec.is_service();
        let kind = spec.kind.clone();
        let run_for = workload::duration(&kind, &mut self.rng);
        if let Some(&key) = self.by_id.get(&worker) {
            if let Some(first) = self.sent.insert((job, attempt), key) {
                // Reusing the number of an attempt that died with its worker is harmless.
                if self.workers.get(&first).is_some_and(|w| w.alive) {
                    return Err(self.fail(format!(
                        "{job} attempt {attempt} dispatched twice (to live worker {first}, then {key})"
                    )));
                }
            }
            let lat = self.latency_to_worker(key);
            let arrive = Event::Arrive {
                worker: key,
                job,
                attempt,
                service,
                run_for,
            };
            self.schedule(lat, arrive);
        }
        Ok(())
    }

    /// Every job dispatched in this batch must rank at least as high as the best job left queued.
    fn check_priority(&self, s: usize, dispatched: &[JobId]) -> Result<(), SimFailure> {
        let core = &self.cores[s];
        for &job in dispatched {
            let Some(v) = core.job(job) else { continue };
            if v.started {
                // Adopted from a worker's report (its lost record journaled again), not placed.
                continue;
            }
            let mine = (v.spec.priority, Reverse(job));
            if let Some(&best) = core.queued(v.skill, 1).first() {
                let b = core.job(best).map(|b| (b.spec.priority, Reverse(best)));
                if b.is_some_and(|b| b > mine) {
                    return Err(self.fail(format!(
                        "{job} {mine:?} dispatched while {best} {b:?} waited"
                    )));
                }
            }
        }
        Ok(())
    }
}
