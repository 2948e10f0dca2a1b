//! The simulation's state and event loop: cores sharing one load table, the event queue in virtual
//! time, and the end-of-run checks (every job terminal, load counters back to zero).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::check::Checker;
use super::master::ShardWal;
use super::workload::{self, Planned};
use super::{SimConfig, SimFailure, SimReport};
use crate::{
    Core, CoreConfig, DagId, Input, JobId, LoadTable, ShardInfo, Time, WorkerId, WorkerIdAllocator,
};

pub(super) const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const SUBMIT_WINDOW: Duration = Duration::from_secs(5);

/// A simulated worker process, known by a stable key; its [`WorkerId`] changes when it
/// re-registers with a restarted master.
pub(super) struct SimWorker {
    /// Its id with the current master (meaningful while `registered`).
    pub(super) id: WorkerId,
    /// Known to the current master.
    pub(super) registered: bool,
    pub(super) alive: bool,
    /// Every shard was (or is being) told the worker is gone, or the master forgot it.
    pub(super) buried: bool,
    pub(super) capacity: u32,
    pub(super) skills: Vec<Box<str>>,
    /// The worker that spawned it.
    pub(super) parent: Option<u64>,
    /// Attempts the worker is running.
    pub(super) running: BTreeSet<(JobId, u32)>,
    /// The attempts it listed when it last re-registered (running or with an undelivered report).
    pub(super) listed: BTreeSet<(JobId, u32)>,
    /// Reports it could not deliver (master down, or not registered yet), re-sent after it
    /// re-registers and re-reports its attempts.
    pub(super) unsent: Vec<Input>,
    /// Every final report it made (delivered or not): like the real worker's retained reports,
    /// listed and re-sent on each re-registration, since a delivered report can die with the
    /// master before it is journaled.
    pub(super) reported: Vec<Input>,
    /// Attempts it held when it last re-registered: adoption may place them past its capacity.
    pub(super) allowance: usize,
}

pub(super) struct Join {
    pub(super) skills: Vec<Box<str>>,
    pub(super) capacity: u32,
    pub(super) parent: Option<u64>,
    pub(super) ticket: Option<u64>,
}

pub(super) enum Event {
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
        job: JobId,
    },
    Arrive {
        worker: u64,
        job: JobId,
        attempt: u32,
        service: bool,
        run_for: Duration,
    },
    Done {
        worker: u64,
        job: JobId,
        attempt: u32,
        ran: Duration,
    },
    KillArrive {
        worker: u64,
        job: JobId,
        attempt: u32,
    },
    Crash {
        silent: bool,
    },
    Join(Join),
    Heartbeats,
    MasterCrash,
    MasterUp,
    Rejoin {
        worker: u64,
    },
    Snapshot,
}

impl Event {
    /// Events that do not keep the run alive (periodic ones).
    fn periodic(&self) -> bool {
        matches!(self, Event::Heartbeats | Event::Snapshot)
    }
}

pub struct World {
    pub(super) cfg: SimConfig,
    pub(super) rng: SmallRng,
    pub(super) start: Time,
    pub(super) now: Time,
    pub(super) cores: Vec<Core>,
    pub(super) load: Arc<LoadTable>,
    pub(super) ids: WorkerIdAllocator,
    pub(super) workers: BTreeMap<u64, SimWorker>,
    /// Registered workers by their current id.
    pub(super) by_id: BTreeMap<WorkerId, u64>,
    /// When the last message to each worker arrives: a connection delivers in order.
    pub(super) link_clock: BTreeMap<u64, Time>,
    pub(super) next_worker: u64,
    pub(super) events: BTreeMap<(Time, u64), Event>,
    pub(super) seq: u64,
    pub(super) busy: usize,
    pub(super) check: Checker,
    /// Follows only durable records (see `check.rs`).
    pub(super) durable: Checker,
    pub(super) wal: Vec<ShardWal>,
    /// The master is down: client requests wait, worker reports are kept by the workers.
    pub(super) down: bool,
    /// Client events that arrived while the master was down.
    pub(super) deferred: Vec<Event>,
    /// Attempts held by live workers that the recovered master must adopt: attempt -> worker.
    pub(super) adoptable: BTreeMap<(JobId, u32), u64>,
    /// Every attempt any master life dispatched, with the worker it went to: an attempt number is
    /// never handed out twice (a lost `Dispatched` record must not lead to a second copy).
    pub(super) sent: HashMap<(JobId, u32), u64>,
    pub(super) plan: Vec<Option<Planned>>,
    pub(super) submissions_left: usize,
    /// Acknowledged submissions: token -> (dag, jobs).
    pub(super) accepted: HashMap<u64, (DagId, u32)>,
    /// Stop requests not answered yet: token -> service. A client repeats them after a master
    /// restart (an unanswered stop may have been lost with the master's unpersisted records).
    pub(super) stops: BTreeMap<u64, JobId>,
    pub(super) next_token: u64,
    pub(super) report: SimReport,
}

/// Prefetch depth of the simulated master. The simulated workers run what they hold at once;
/// what is checked is the master's accounting (capacity plus this, never more).
pub(super) const SIM_PREFETCH: u32 = 4;

pub(super) fn core_config(cfg: &SimConfig) -> CoreConfig {
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
        adopt_grace: Duration::from_secs(2),
        prefetch: SIM_PREFETCH,
        ..CoreConfig::default()
    }
}

/// The seed of shard `index`'s core in master life `epoch`.
pub(super) fn core_seed(seed: u64, index: u32, epoch: u64) -> u64 {
    seed ^ u64::from(index).wrapping_mul(0x9E37) ^ epoch.wrapping_mul(0x85EB_CA6B)
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
                let seed = core_seed(cfg.seed, index, 0);
                Core::new(core_config(cfg), shard, load.clone(), seed)
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
            by_id: BTreeMap::new(),
            link_clock: BTreeMap::new(),
            next_worker: 0,
            events: BTreeMap::new(),
            seq: 0,
            busy: 0,
            check: Checker::new(shards as usize),
            durable: Checker::new(shards as usize),
            wal: (0..shards).map(|_| ShardWal::default()).collect(),
            down: false,
            deferred: Vec::new(),
            adoptable: BTreeMap::new(),
            sent: HashMap::new(),
            accepted: HashMap::new(),
            stops: BTreeMap::new(),
            next_token: 1,
            report: SimReport {
                seed: cfg.seed,
                ..SimReport::default()
            },
        }
    }

    pub(super) fn fail(&self, what: impl Into<String>) -> SimFailure {
        let (seed, at) = (self.cfg.seed, self.now.since(self.start));
        SimFailure {
            seed,
            at,
            what: what.into(),
            replay: self.cfg.replay_args(),
        }
    }

    pub(super) fn schedule(&mut self, after: Duration, event: Event) {
        if !event.periodic() {
            self.busy += 1;
        }
        self.seq += 1;
        self.events.insert((self.now + after, self.seq), event);
    }

    pub(super) fn latency(&mut self) -> Duration {
        Duration::from_micros(self.rng.gen_range(50..500))
    }

    /// Delay of the next message to worker `key`: random, but never arriving before an earlier
    /// message on the same connection (TCP keeps order; a kill must not overtake its dispatch).
    pub(super) fn latency_to_worker(&mut self, key: u64) -> Duration {
        let arrive = self.now + self.latency();
        let at = self
            .link_clock
            .get(&key)
            .map_or(arrive, |&last| arrive.max(last));
        self.link_clock.insert(key, at);
        at.since(self.now)
    }

    /// The shard that owns `dag` under the current shard count.
    pub(super) fn owner(&self, dag: DagId) -> u32 {
        dag.owner(self.cores.len() as u32)
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
        let window = SUBMIT_WINDOW.as_micros() as u64;
        for i in 0..self.cfg.crashes {
            let at = Duration::from_micros(self.rng.gen_range(0..window));
            self.schedule(at, Event::Crash { silent: i % 2 == 1 });
        }
        for _ in 0..self.cfg.master_crashes {
            let at = Duration::from_micros(self.rng.gen_range(0..window));
            self.schedule(at, Event::MasterCrash);
        }
        self.schedule(HEARTBEAT_EVERY, Event::Heartbeats);
        if let Some(every) = self.cfg.snapshot_every {
            self.schedule(every, Event::Snapshot);
        }
        self.event_loop()
    }

    fn event_loop(mut self) -> Result<SimReport, SimFailure> {
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
                .filter(|_| !self.down)
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
            if !event.periodic() {
                self.busy -= 1;
            }
            self.now = t;
            self.report.events += 1;
            self.on_event(event)?;
        }
    }

    fn quiet(&self) -> bool {
        // A silently dead worker still holds reservations until its home shard notices.
        !self.down
            && self.cores.iter().all(|c| c.stats().live == 0)
            && self
                .workers
                .values()
                .all(|w| w.running.is_empty() && w.unsent.is_empty() && (w.alive || w.buried))
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
        for (key, w) in &self.workers {
            if !w.running.is_empty() || !w.unsent.is_empty() || !(w.alive || w.buried) {
                out.push_str(&format!(
                    "worker {key} ({}, alive={}, buried={}) running={:?} unsent={}; ",
                    w.id,
                    w.alive,
                    w.buried,
                    w.running,
                    w.unsent.len()
                ));
            }
        }
        out
    }

    fn finish(mut self) -> Result<SimReport, SimFailure> {
        let mut accepted: Vec<(DagId, u32)> = self.accepted.values().copied().collect();
        accepted.sort_unstable();
        for (dag, n) in accepted {
            for i in 0..n {
                let job = dag.job(i);
                let state = self.cores[self.owner(dag) as usize].state(job);
                match state {
                    Some(s) if s.is_terminal() => {}
                    other => return Err(self.fail(format!("{job} ended the run in {other:?}"))),
                }
                let r = &mut self.report;
                match state {
                    Some(crate::JobState::Completed) => r.completed += 1,
                    Some(crate::JobState::Dead) => r.dead += 1,
                    Some(crate::JobState::Cancelled) => r.cancelled += 1,
                    _ => r.upstream_failed += 1,
                }
            }
        }
        if self.load.running_total() != 0 || self.load.services_total() != 0 {
            return Err(self.fail(format!(
                "load counters did not return to zero: {:?}",
                self.load
            )));
        }
        self.report.virtual_time = self.now.since(self.start);
        Ok(self.report)
    }
}
