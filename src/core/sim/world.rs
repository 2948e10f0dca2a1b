//! The simulated cluster: the shell's routing between cores, workers that run (or fail, or lose)
//! attempts in virtual time, clients that submit, cancel and stop, and injected faults.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::check::Checker;
use super::workload::{self, Planned};
use super::{SimConfig, SimFailure, SimReport};
use crate::core::{
    Ack, Core, CoreConfig, DagId, Input, JobId, LoadTable, Outcome, Output, ShardInfo, Target,
    Time, WorkerId, WorkerIdAllocator, WorkerInfo,
};

const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const SUBMIT_WINDOW: Duration = Duration::from_secs(5);

struct SimWorker {
    alive: bool,
    /// Every shard was (or is being) told the worker is gone.
    buried: bool,
    home: u32,
    capacity: u32,
    skills: Vec<Box<str>>,
    ephemeral: bool,
    /// Attempts the worker is running, with the shard that owns each.
    running: BTreeMap<(JobId, u32), u32>,
}

struct Join {
    skills: Vec<Box<str>>,
    capacity: u32,
    parent: Option<WorkerId>,
    ticket: Option<u64>,
}

enum Event {
    Deliver {
        shard: u32,
        input: Input,
    },
    Submit {
        index: usize,
    },
    Cancel {
        token: u64,
        pick: u64,
    },
    Stop {
        shard: u32,
        job: JobId,
    },
    Arrive {
        worker: WorkerId,
        shard: u32,
        job: JobId,
        attempt: u32,
        service: bool,
        run_for: Duration,
    },
    Done {
        worker: WorkerId,
        job: JobId,
        attempt: u32,
    },
    KillArrive {
        worker: WorkerId,
        job: JobId,
        attempt: u32,
    },
    Crash {
        silent: bool,
    },
    Join(Join),
    Heartbeats,
}

pub struct World {
    cfg: SimConfig,
    rng: SmallRng,
    start: Time,
    now: Time,
    cores: Vec<Core>,
    load: Arc<LoadTable>,
    ids: WorkerIdAllocator,
    workers: BTreeMap<WorkerId, SimWorker>,
    events: BTreeMap<(Time, u64), Event>,
    seq: u64,
    busy: usize,
    check: Checker,
    plan: Vec<Option<Planned>>,
    submissions_left: usize,
    tokens: HashMap<u64, u32>,
    accepted: HashMap<u64, (u32, DagId, u32)>,
    next_token: u64,
    report: SimReport,
}

fn core_config(cfg: &SimConfig) -> CoreConfig {
    CoreConfig {
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(200),
        heartbeat_timeout: Duration::from_secs(3),
        scaling_interval: Duration::from_millis(200),
        spawn_after: Duration::from_secs(1),
        spawn_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(3),
        max_workers: cfg.max_workers,
        history_limit: usize::MAX,
        history_max_age: Duration::from_secs(365 * 24 * 3600),
        ..CoreConfig::default()
    }
}

impl World {
    pub fn new(cfg: &SimConfig) -> World {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let load = Arc::new(LoadTable::new());
        let shards = cfg.shards.max(1);
        let cores = (0..shards)
            .map(|index| {
                let shard = ShardInfo {
                    index,
                    count: shards,
                };
                Core::new(
                    core_config(cfg),
                    shard,
                    load.clone(),
                    cfg.seed ^ u64::from(index).wrapping_mul(0x9E37),
                )
            })
            .collect();
        let plan = workload::generate(&cfg.workload, &mut rng, SUBMIT_WINDOW, cfg.cancel_permille);
        let start = Time::from_millis(1_700_000_000_000);
        World {
            submissions_left: plan.len(),
            plan: plan.into_iter().map(Some).collect(),
            cfg: cfg.clone(),
            rng,
            start,
            now: start,
            cores,
            load,
            ids: WorkerIdAllocator::new(),
            workers: BTreeMap::new(),
            events: BTreeMap::new(),
            seq: 0,
            busy: 0,
            check: Checker::new(shards as usize),
            tokens: HashMap::new(),
            accepted: HashMap::new(),
            next_token: 1,
            report: SimReport {
                seed: cfg.seed,
                ..SimReport::default()
            },
        }
    }

    fn fail(&self, what: impl Into<String>) -> SimFailure {
        let (seed, at) = (self.cfg.seed, self.now.since(self.start));
        SimFailure {
            seed,
            at,
            what: what.into(),
            replay: self.cfg.replay_args(),
        }
    }

    fn schedule(&mut self, after: Duration, event: Event) {
        if !matches!(event, Event::Heartbeats) {
            self.busy += 1;
        }
        self.seq += 1;
        self.events.insert((self.now + after, self.seq), event);
    }

    fn latency(&mut self) -> Duration {
        Duration::from_micros(self.rng.gen_range(50..500))
    }

    pub fn run(mut self) -> Result<SimReport, SimFailure> {
        for i in 0..self.cfg.workers {
            let skills: Vec<Box<str>> = if i % 4 == 0 {
                vec!["GENERAL".into(), "GPU".into()]
            } else {
                vec!["GENERAL".into()]
            };
            let capacity = self.cfg.capacity;
            self.join(Join {
                skills,
                capacity,
                parent: None,
                ticket: None,
            })?;
        }
        for index in 0..self.plan.len() {
            let at = self.plan[index].as_ref().map_or(Duration::ZERO, |p| p.at);
            self.schedule(at, Event::Submit { index });
        }
        for i in 0..self.cfg.crashes {
            let at = Duration::from_micros(self.rng.gen_range(0..SUBMIT_WINDOW.as_micros() as u64));
            self.schedule(at, Event::Crash { silent: i % 2 == 1 });
        }
        self.schedule(HEARTBEAT_EVERY, Event::Heartbeats);
        loop {
            if self.now.since(self.start) > self.cfg.time_limit {
                return Err(self.fail(format!(
                    "stuck: still running after {:?}: {}",
                    self.cfg.time_limit,
                    self.live_summary()
                )));
            }
            if self.busy == 0 && self.submissions_left == 0 && self.quiet() {
                return self.finish();
            }
            let next_event = self.events.first_key_value().map(|(k, _)| k.0);
            let next_timer = (0..self.cores.len())
                .filter_map(|i| self.cores[i].poll_timeout().map(|t| (t, i)))
                .min();
            if let Some((t, i)) = next_timer.filter(|(t, _)| next_event.is_none_or(|e| *t <= e)) {
                self.now = self.now.max(t);
                self.deliver(i as u32, Input::Tick)?;
                continue;
            }
            let Some(((t, _), event)) = self.events.pop_first() else {
                return Err(self.fail(format!(
                    "nothing left to do but jobs are live: {}",
                    self.live_summary()
                )));
            };
            if !matches!(event, Event::Heartbeats) {
                self.busy -= 1;
            }
            self.now = t;
            self.report.events += 1;
            self.on_event(event)?;
        }
    }

    fn quiet(&self) -> bool {
        // A silently dead worker still holds reservations until its home shard notices.
        self.cores.iter().all(|c| c.stats().live == 0)
            && self
                .workers
                .values()
                .all(|w| w.running.is_empty() && (w.alive || w.buried))
    }

    fn live_summary(&self) -> String {
        let mut out = String::new();
        for c in &self.cores {
            for v in c
                .jobs(None, usize::MAX)
                .into_iter()
                .filter(|v| !v.state.is_terminal())
                .take(5)
            {
                out.push_str(&format!(
                    "{} {} attempts={} worker={:?}; ",
                    v.id, v.state, v.attempts, v.worker
                ));
            }
        }
        out
    }

    fn finish(mut self) -> Result<SimReport, SimFailure> {
        let accepted: Vec<(u32, DagId, u32)> = self.accepted.values().copied().collect();
        for (shard, dag, n) in accepted {
            for i in 0..n {
                let job = dag.job(i);
                let state = self.cores[shard as usize].state(job);
                match state {
                    Some(s) if s.is_terminal() => {}
                    other => return Err(self.fail(format!("{job} ended the run in {other:?}"))),
                }
                let r = &mut self.report;
                match state {
                    Some(crate::core::JobState::Completed) => r.completed += 1,
                    Some(crate::core::JobState::Dead) => r.dead += 1,
                    Some(crate::core::JobState::Cancelled) => r.cancelled += 1,
                    _ => r.upstream_failed += 1,
                }
            }
        }
        if self.load.running_total() != 0 {
            return Err(self.fail(format!(
                "load counters did not return to zero: {:?}",
                self.load
            )));
        }
        self.report.dispatches = self.check.dispatches;
        self.report.virtual_time = self.now.since(self.start);
        Ok(self.report)
    }

    /// Hands one input to a core and routes what comes out.
    fn deliver(&mut self, shard: u32, input: Input) -> Result<(), SimFailure> {
        match &input {
            Input::Persisted { lsn } => self.check.on_persisted(shard as usize, *lsn),
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

    fn pump(&mut self, shard: u32) -> Result<(), SimFailure> {
        let s = shard as usize;
        let mut dispatched = Vec::new();
        while let Some(output) = self.cores[s].poll_output() {
            match output {
                Output::Journal { lsn, record } => {
                    self.check
                        .on_journal(s, lsn, &record)
                        .map_err(|e| self.fail(e))?;
                    if let crate::core::Record::ServiceReady { job, .. } = record {
                        let life = Duration::from_micros(self.rng.gen_range(50_000..2_000_000));
                        self.schedule(life, Event::Stop { shard, job });
                    }
                    let lag = Duration::from_micros(
                        self.rng
                            .gen_range(0..=self.cfg.max_persist_lag.as_micros() as u64),
                    );
                    self.schedule(
                        lag,
                        Event::Deliver {
                            shard,
                            input: Input::Persisted { lsn },
                        },
                    );
                }
                Output::Reply { token, reply } => {
                    self.check
                        .on_reply(s, token, reply.is_ok())
                        .map_err(|e| self.fail(e))?;
                    if let Ok(Ack::Submitted { dag, jobs }) = reply {
                        self.accepted.insert(token, (shard, dag, jobs));
                        self.report.jobs += u64::from(jobs);
                        if self.rng.gen_range(0..4) == 0 {
                            let job = dag.job(self.rng.gen_range(0..jobs));
                            let t = self.token();
                            self.schedule(
                                Duration::ZERO,
                                Event::Deliver {
                                    shard,
                                    input: Input::Watch { token: t, job },
                                },
                            );
                        }
                    }
                }
                Output::Notify { job, .. } => {
                    self.check.on_notify(s, job).map_err(|e| self.fail(e))?
                }
                Output::Dispatch {
                    worker,
                    job,
                    attempt,
                } => {
                    let spec = self.cores[s]
                        .spec(job)
                        .ok_or_else(|| self.fail(format!("no spec for {job}")))?;
                    let service = spec.is_service();
                    let kind = spec.kind.clone();
                    let run_for = workload::duration(&kind, &mut self.rng);
                    let lat = self.latency();
                    self.schedule(
                        lat,
                        Event::Arrive {
                            worker,
                            shard,
                            job,
                            attempt,
                            service,
                            run_for,
                        },
                    );
                    dispatched.push(job);
                }
                Output::Kill {
                    worker,
                    job,
                    attempt,
                    ..
                } => {
                    let lat = self.latency();
                    self.schedule(
                        lat,
                        Event::KillArrive {
                            worker,
                            job,
                            attempt,
                        },
                    );
                }
                Output::WorkerDead { worker, .. } => {
                    self.bury_worker(worker);
                    for other in (0..self.cores.len() as u32).filter(|&o| o != shard) {
                        self.schedule(
                            Duration::ZERO,
                            Event::Deliver {
                                shard: other,
                                input: Input::WorkerLost { worker },
                            },
                        );
                    }
                }
                Output::SpawnWorker { parent, ticket, .. } => {
                    if let Some(p) = self.workers.get(&parent).filter(|p| p.alive) {
                        let join = Join {
                            skills: p.skills.clone(),
                            capacity: p.capacity,
                            parent: Some(parent),
                            ticket: Some(ticket),
                        };
                        self.report.spawned += 1;
                        self.schedule(Duration::from_millis(100), Event::Join(join));
                    }
                }
                Output::RetireWorker { worker, .. } => {
                    self.report.retired += 1;
                    self.bury_worker(worker);
                    for o in 0..self.cores.len() as u32 {
                        self.schedule(
                            Duration::ZERO,
                            Event::Deliver {
                                shard: o,
                                input: Input::WorkerLost { worker },
                            },
                        );
                    }
                }
                Output::Wake { shards } => {
                    for o in (0..self.cores.len() as u32).filter(|o| shards & (1 << o) != 0) {
                        self.schedule(
                            Duration::ZERO,
                            Event::Deliver {
                                shard: o,
                                input: Input::Tick,
                            },
                        );
                    }
                }
            }
        }
        if self.cfg.check_priority {
            self.check_priority(s, &dispatched)?;
        }
        Ok(())
    }

    /// Every job dispatched in this batch must rank at least as high as the best job left queued.
    fn check_priority(&self, s: usize, dispatched: &[JobId]) -> Result<(), SimFailure> {
        let core = &self.cores[s];
        for &job in dispatched {
            let Some(v) = core.job(job) else { continue };
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

    fn bury_worker(&mut self, worker: WorkerId) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.alive = false;
            w.buried = true;
            w.running.clear();
        }
        self.ids.free(worker);
    }

    fn join(&mut self, join: Join) -> Result<(), SimFailure> {
        let Some(id) = self.ids.allocate() else {
            return Ok(());
        };
        let home = id.slot() as u32 % self.cores.len() as u32;
        let ephemeral = join.parent.is_some();
        let w = SimWorker {
            alive: true,
            buried: false,
            home,
            capacity: join.capacity,
            skills: join.skills.clone(),
            ephemeral,
            running: BTreeMap::new(),
        };
        self.workers.insert(id, w);
        for shard in 0..self.cores.len() as u32 {
            let info = WorkerInfo {
                id,
                capacity: join.capacity,
                skills: join.skills.clone(),
                port: 8080 + id.slot() as u16,
                parent: join.parent,
                ephemeral,
                home: shard == home,
                spawn_ticket: join.ticket,
            };
            self.deliver(shard, Input::WorkerUp(info))?;
        }
        Ok(())
    }

    fn on_event(&mut self, event: Event) -> Result<(), SimFailure> {
        match event {
            Event::Deliver { shard, input } => self.deliver(shard, input)?,
            Event::Submit { index } => self.on_submit(index)?,
            Event::Cancel { token, pick } => {
                if let Some(&(shard, dag, n)) = self.accepted.get(&token) {
                    let target = if pick % 10 == 0 {
                        Target::Dag(dag)
                    } else {
                        Target::Job(dag.job((pick % u64::from(n)) as u32))
                    };
                    let t = self.token();
                    self.deliver(shard, Input::Cancel { token: t, target })?;
                }
            }
            Event::Stop { shard, job } => {
                let t = self.token();
                self.deliver(shard, Input::Stop { token: t, job })?;
            }
            Event::Arrive {
                worker,
                shard,
                job,
                attempt,
                service,
                run_for,
            } => self.on_arrive(worker, shard, job, attempt, service, run_for)?,
            Event::Done {
                worker,
                job,
                attempt,
            } => {
                let fail = self.rng.gen_range(0..1000) < self.cfg.fail_permille;
                let outcome = if fail {
                    Outcome::Exited { code: 1 }
                } else {
                    Outcome::Exited { code: 0 }
                };
                self.report_end(worker, job, attempt, outcome);
            }
            Event::KillArrive {
                worker,
                job,
                attempt,
            } => self.report_end(worker, job, attempt, Outcome::Killed),
            Event::Crash { silent } => self.on_crash(silent)?,
            Event::Join(join) => self.join(join)?,
            Event::Heartbeats => {
                let beats: Vec<(WorkerId, u32)> = self
                    .workers
                    .iter()
                    .filter(|(_, w)| w.alive)
                    .map(|(&id, w)| (id, w.home))
                    .collect();
                for (worker, home) in beats {
                    self.deliver(home, Input::Heartbeat { worker })?;
                }
                self.schedule(HEARTBEAT_EVERY, Event::Heartbeats);
            }
        }
        Ok(())
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn on_submit(&mut self, index: usize) -> Result<(), SimFailure> {
        let Some(planned) = self.plan[index].take() else {
            return Ok(());
        };
        self.submissions_left -= 1;
        let token = self.token();
        let shard = self.rng.gen_range(0..self.cores.len() as u32);
        self.tokens.insert(token, shard);
        if let Some(after) = planned.cancel_after {
            let pick = self.rng.gen();
            self.schedule(after, Event::Cancel { token, pick });
        }
        self.deliver(
            shard,
            Input::Submit {
                token,
                submission: planned.submission,
            },
        )
    }

    fn on_arrive(
        &mut self,
        worker: WorkerId,
        shard: u32,
        job: JobId,
        attempt: u32,
        service: bool,
        run_for: Duration,
    ) -> Result<(), SimFailure> {
        let Some(w) = self.workers.get_mut(&worker).filter(|w| w.alive) else {
            return Ok(());
        };
        w.running.insert((job, attempt), shard);
        let (running, capacity) = (w.running.len(), w.capacity);
        if running > capacity as usize {
            return Err(self.fail(format!(
                "{worker} runs {running} attempts with capacity {capacity}"
            )));
        }
        let lat = self.latency();
        self.schedule(
            lat,
            Event::Deliver {
                shard,
                input: Input::JobStarted {
                    job,
                    attempt,
                    worker,
                },
            },
        );
        if service {
            let ready = Input::ServiceReady {
                job,
                attempt,
                worker,
            };
            self.schedule(
                lat + Duration::from_millis(5),
                Event::Deliver {
                    shard,
                    input: ready,
                },
            );
        } else {
            self.schedule(
                run_for,
                Event::Done {
                    worker,
                    job,
                    attempt,
                },
            );
        }
        Ok(())
    }

    fn report_end(&mut self, worker: WorkerId, job: JobId, attempt: u32, outcome: Outcome) {
        let Some(w) = self.workers.get_mut(&worker).filter(|w| w.alive) else {
            return;
        };
        let Some(shard) = w.running.remove(&(job, attempt)) else {
            return;
        };
        let lat = self.latency();
        let input = Input::JobFinished {
            job,
            attempt,
            worker,
            outcome,
            duration: Duration::ZERO,
        };
        self.schedule(lat, Event::Deliver { shard, input });
    }

    fn on_crash(&mut self, silent: bool) -> Result<(), SimFailure> {
        let alive: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.alive)
            .map(|(&id, _)| id)
            .collect();
        if alive.len() < 2 {
            return Ok(());
        }
        let victim = alive[self.rng.gen_range(0..alive.len())];
        self.report.crashes += 1;
        let (skills, capacity, ephemeral) = {
            let w = &self.workers[&victim];
            (w.skills.clone(), w.capacity, w.ephemeral)
        };
        if silent {
            // The process hangs: no reports, no heartbeats; its home shard will notice.
            let w = self.workers.get_mut(&victim).expect("victim exists");
            w.alive = false;
            w.running.clear();
        } else {
            self.bury_worker(victim);
            for shard in 0..self.cores.len() as u32 {
                self.deliver(shard, Input::WorkerLost { worker: victim })?;
            }
        }
        if !ephemeral {
            self.schedule(
                Duration::from_secs(1),
                Event::Join(Join {
                    skills,
                    capacity,
                    parent: None,
                    ticket: None,
                }),
            );
        }
        Ok(())
    }
}
