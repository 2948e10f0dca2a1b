//! Unit tests of the core's transitions, driven through `handle` with a small harness that plays the
//! shell: it feeds `Persisted` back for every journal record (unless told not to) and collects outputs.

mod jobs;
mod recovery;
mod restore;
mod services;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use super::*;

/// A one-shard (or multi-shard) test shell around one core.
pub struct Harness {
    pub core: Core,
    pub load: Arc<LoadTable>,
    pub now: Time,
    pub auto_persist: bool,
    pub log: Vec<Output>,
    next_token: u64,
}

/// DagIds skipped after a recovery in these tests.
pub const SKIP: u64 = 1000;

pub fn config() -> CoreConfig {
    CoreConfig {
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        backoff_jitter_percent: 0,
        // Tests jump through time without heartbeating; the heartbeat tests set their own timeout.
        heartbeat_timeout: Duration::from_secs(24 * 3600),
        recovery_dag_skip: SKIP,
        ..CoreConfig::default()
    }
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(config())
    }

    pub fn with(cfg: CoreConfig) -> Harness {
        let load = Arc::new(LoadTable::new());
        Harness::shard(cfg, ShardInfo::SINGLE, load)
    }

    pub fn shard(cfg: CoreConfig, shard: ShardInfo, load: Arc<LoadTable>) -> Harness {
        let core = Core::new(cfg, shard, load.clone(), 7);
        Harness {
            core,
            load,
            now: Time::from_millis(1_000),
            auto_persist: true,
            log: Vec::new(),
            next_token: 1,
        }
    }

    /// Handles one input and returns its outputs (after auto-persisting the journal).
    pub fn step(&mut self, input: Input) -> Vec<Output> {
        self.core.handle(self.now, input);
        let mut outs: Vec<Output> = self.core.drain_outputs().collect();
        if self.auto_persist {
            if let Some(lsn) = outs.iter().rev().find_map(|o| match o {
                Output::Journal { lsn, .. } => Some(*lsn),
                _ => None,
            }) {
                self.core.handle(self.now, Input::Persisted { lsn });
                outs.extend(self.core.drain_outputs());
            }
        }
        self.log.extend(outs.iter().cloned());
        outs
    }

    pub fn advance(&mut self, d: Duration) -> Vec<Output> {
        self.now = self.now + d;
        self.step(Input::Tick)
    }

    pub fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    pub fn worker(&mut self, slot: u16, capacity: u32, skills: &[&str]) -> WorkerId {
        let id = WorkerId::new(slot, 1).unwrap();
        self.step(Input::WorkerUp(WorkerInfo {
            id,
            capacity,
            skills: skills.iter().map(|s| Box::from(*s)).collect(),
            port: 8080 + slot,
            parent: None,
            ephemeral: false,
            home: true,
            spawn_ticket: None,
            instance: id.slot() as u64,
        }));
        id
    }

    /// Registers worker `(slot, generation)` with two GENERAL slots; returns the outputs.
    pub fn worker_outs(&mut self, slot: u16, generation: u16) -> Vec<Output> {
        let id = WorkerId::new(slot, generation).unwrap();
        self.step(Input::WorkerUp(WorkerInfo {
            id,
            capacity: 2,
            skills: vec!["GENERAL".into()],
            port: 8080 + slot,
            parent: None,
            ephemeral: false,
            home: true,
            spawn_ticket: None,
            instance: id.slot() as u64,
        }))
    }

    pub fn submit(&mut self, submission: Submission) -> (DagId, Vec<Output>) {
        let token = self.token();
        let is_one_off = matches!(submission, Submission::OneOff(_));
        let outs = self.step(Input::Submit { token, submission });
        let (dag, one_off) = outs
            .iter()
            .find_map(|o| match o {
                Output::Reply {
                    token: t,
                    reply: Ok(Ack::Submitted { dag, one_off, .. }),
                } if *t == token => Some((*dag, *one_off)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no accepted reply in {outs:?}"));
        // The shell labels a one-off's ack from this flag alone, without a lookup.
        assert_eq!(one_off, is_one_off, "{outs:?}");
        (dag, outs)
    }

    pub fn one_off(&mut self, text: &str) -> JobId {
        let spec = grammar::parse_one_off(text).unwrap();
        self.submit(Submission::OneOff(spec)).0.job(0)
    }

    pub fn dag(&mut self, text: &str) -> DagId {
        let jobs = grammar::parse_dag(text).unwrap();
        self.submit(Submission::Dag(jobs)).0
    }

    /// The seed's Inception DAG on `worker`, mid flight: START_DASH and WORKER_A ready (2 ms
    /// apart), WORKER_B's first attempt failed (exit 1), the rest waiting.
    pub fn seed_dag_mid_flight(&mut self, worker: WorkerId) -> DagId {
        let dag = self.dag("START_DASH|DEPLOY|server_dashboard.py|1|0|[] ; WORKER_A|DEPLOY|Worker.jar|8081|1|2|[START_DASH] ; WORKER_B|DEPLOY|Worker.jar|8082|1|2|[START_DASH] ; RUN_CALC|RUN|calc.py|2|0|[WORKER_A, WORKER_B] ; WORKER_C|DEPLOY|Worker.jar|8083|1|5|[RUN_CALC]");
        self.step(Input::ServiceReady {
            job: dag.job(0),
            attempt: 1,
            worker,
        });
        self.advance(Duration::from_millis(2));
        self.step(Input::ServiceReady {
            job: dag.job(1),
            attempt: 1,
            worker,
        });
        self.finish(dag.job(2), 1, worker, 1);
        dag
    }

    pub fn finish(&mut self, job: JobId, attempt: u32, worker: WorkerId, code: i32) -> Vec<Output> {
        let outcome = Outcome::Exited { code };
        self.step(Input::JobFinished {
            job,
            attempt,
            worker,
            outcome,
            duration: Duration::from_millis(1),
        })
    }

    pub fn state(&self, job: JobId) -> JobState {
        self.core.state(job).expect("job retained")
    }

    /// Every journal record emitted so far, in LSN order.
    pub fn journal(&self) -> Vec<Record> {
        self.log
            .iter()
            .filter_map(|o| match o {
                Output::Journal { record, .. } => Some(record.clone()),
                _ => None,
            })
            .collect()
    }

    /// A restarted master: a fresh core (and load table) rebuilt from `records`, recovered at `now`.
    pub fn recovered(cfg: CoreConfig, records: Vec<Record>, now: Time) -> Harness {
        let mut h = Harness::with(cfg.clone());
        let mut core = Core::new(cfg, ShardInfo::SINGLE, h.load.clone(), 11);
        for r in records {
            core.replay(r).expect("replays");
        }
        core.finish_recovery(now);
        h.core = core;
        h.now = now;
        h
    }

    pub fn adopt(&mut self, worker: WorkerId, job: JobId, attempt: u32) -> Vec<Output> {
        self.step(Input::Adopt {
            worker,
            job,
            attempt,
        })
    }
}

/// The dispatches in `outs`, as `(worker, job, attempt)`.
pub fn dispatches(outs: &[Output]) -> Vec<(WorkerId, JobId, u32)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Dispatch {
                worker,
                job,
                attempt,
            } => Some((*worker, *job, *attempt)),
            _ => None,
        })
        .collect()
}

pub fn journaled(outs: &[Output]) -> Vec<Record> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Journal { record, .. } => Some(record.clone()),
            _ => None,
        })
        .collect()
}

pub fn kills(outs: &[Output]) -> Vec<(JobId, KillReason)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Kill { job, reason, .. } => Some((*job, *reason)),
            _ => None,
        })
        .collect()
}

pub fn replies(outs: &[Output]) -> Vec<Result<Ack, RequestError>> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Reply { reply, .. } => Some(reply.clone()),
            _ => None,
        })
        .collect()
}
