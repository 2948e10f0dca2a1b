//! Property tests that drive one core directly with random operations (one-offs, DAGs, services,
//! worker arrivals and losses, reports, cancels, stops, time, partial persistence):
//! - no successful reply leaves before the record it acknowledges is persisted;
//! - no job completes twice, and a child never starts before its parents completed (or are ready);
//! - replaying the journal into a fresh core rebuilds the same job states (running attempts re-queued);
//! - when everything has ended, the load counters are back to zero.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use titan::core::*;

#[derive(Clone, Debug)]
enum Op {
    OneOff {
        priority: i32,
        delay_ms: u32,
        kind: u8,
    },
    Dag {
        size: usize,
        edges: Vec<(usize, usize)>,
        kinds: Vec<u8>,
    },
    WorkerUp {
        slot: u16,
        capacity: u32,
    },
    WorkerLost {
        slot: u16,
    },
    Finish {
        pick: usize,
        success: bool,
    },
    Ready {
        pick: usize,
    },
    Cancel {
        pick: usize,
        whole_dag: bool,
    },
    Stop {
        pick: usize,
    },
    Advance {
        ms: u64,
    },
    Persist {
        fraction: u8,
    },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0i32..4, prop_oneof![Just(0u32), 1u32..200], 0u8..4)
            .prop_map(|(priority, delay_ms, kind)| Op::OneOff { priority, delay_ms, kind }),
        2 => (1usize..6, prop::collection::vec((0usize..6, 0usize..6), 0..8), prop::collection::vec(0u8..4, 6))
            .prop_map(|(size, edges, kinds)| Op::Dag { size, edges, kinds }),
        1 => (0u16..4, 1u32..3).prop_map(|(slot, capacity)| Op::WorkerUp { slot, capacity }),
        1 => (0u16..4).prop_map(|slot| Op::WorkerLost { slot }),
        6 => (any::<usize>(), any::<bool>()).prop_map(|(pick, success)| Op::Finish { pick, success }),
        1 => any::<usize>().prop_map(|pick| Op::Ready { pick }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, whole_dag)| Op::Cancel { pick, whole_dag }),
        1 => any::<usize>().prop_map(|pick| Op::Stop { pick }),
        2 => (1u64..500).prop_map(|ms| Op::Advance { ms }),
        3 => any::<u8>().prop_map(|fraction| Op::Persist { fraction }),
    ]
}

fn spec(kind: u8, priority: i32, delay_ms: u32) -> JobSpec {
    let kind = match kind {
        0 => JobKind::Noop,
        1 => JobKind::Run {
            file: "a.py".into(),
            args: Box::new([]),
        },
        2 => JobKind::Deploy {
            file: "svc.py".into(),
            port: None,
        },
        _ => JobKind::Skill {
            name: "GPU".into(),
            data: "x".into(),
        },
    };
    JobSpec {
        priority,
        delay_ms,
        ..JobSpec::new(kind)
    }
}

fn config() -> CoreConfig {
    CoreConfig {
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_secs(24 * 3600),
        ..CoreConfig::default()
    }
}

struct Driver {
    core: Core,
    now: Time,
    journal: Vec<Record>,
    last_lsn: Lsn,
    persisted: Lsn,
    /// Mutation record each request's successful reply depends on.
    pending: BTreeMap<u64, Lsn>,
    running: Vec<(WorkerId, JobId, u32)>,
    workers: BTreeMap<u16, WorkerId>,
    generation: [u16; 4],
    jobs: Vec<JobId>,
    parents: BTreeMap<JobId, Vec<JobId>>,
    completed: HashSet<JobId>,
    ready: HashSet<JobId>,
    next_token: u64,
}

impl Driver {
    fn new() -> Driver {
        Driver {
            core: Core::new(config(), ShardInfo::SINGLE, Arc::new(LoadTable::new()), 5),
            now: Time::from_millis(1_000_000),
            journal: Vec::new(),
            last_lsn: Lsn(0),
            persisted: Lsn(0),
            pending: BTreeMap::new(),
            running: Vec::new(),
            workers: BTreeMap::new(),
            generation: [0; 4],
            jobs: Vec::new(),
            parents: BTreeMap::new(),
            completed: HashSet::new(),
            ready: HashSet::new(),
            next_token: 0,
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Handles one input and checks every output.
    fn step(&mut self, input: Input) -> Result<(), TestCaseError> {
        let request = match &input {
            Input::Submit { token, .. }
            | Input::Cancel { token, .. }
            | Input::Stop { token, .. } => Some(*token),
            _ => None,
        };
        if let Input::Persisted { lsn } = input {
            self.persisted = self.persisted.max(lsn);
        }
        self.core.handle(self.now, input);
        let outs: Vec<Output> = self.core.drain_outputs().collect();
        for o in outs {
            match o {
                Output::Journal { lsn, record } => {
                    prop_assert!(lsn > self.last_lsn);
                    self.last_lsn = lsn;
                    if let (
                        Some(t),
                        Record::Submitted { .. }
                        | Record::Cancelled { .. }
                        | Record::Stopped { .. },
                    ) = (request, &record)
                    {
                        self.pending.entry(t).or_insert(lsn);
                    }
                    self.observe(&record)?;
                    self.journal.push(record);
                }
                Output::Reply { token, reply } => {
                    if reply.is_ok() {
                        let need = self.pending.get(&token).copied();
                        let need =
                            need.ok_or_else(|| TestCaseError::fail("ok reply without a record"))?;
                        prop_assert!(
                            need <= self.persisted,
                            "reply {} before {:?} persisted",
                            token,
                            need
                        );
                    }
                    if let Ok(Ack::Submitted { dag, jobs }) = reply {
                        self.jobs.extend((0..jobs).map(|i| dag.job(i)));
                    }
                }
                Output::Dispatch {
                    worker,
                    job,
                    attempt,
                } => {
                    for p in self.parents.get(&job).into_iter().flatten() {
                        prop_assert!(
                            self.completed.contains(p) || self.ready.contains(p),
                            "{} before {}",
                            job,
                            p
                        );
                    }
                    self.running.push((worker, job, attempt));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn observe(&mut self, record: &Record) -> Result<(), TestCaseError> {
        match record {
            Record::Submitted {
                dag,
                submission: Submission::Dag(jobs),
                ..
            } => {
                let index: BTreeMap<&str, u32> = jobs
                    .iter()
                    .enumerate()
                    .map(|(i, j)| (&*j.name, i as u32))
                    .collect();
                for (i, j) in jobs.iter().enumerate() {
                    let ps = j.deps.iter().map(|d| dag.job(index[&**d])).collect();
                    self.parents.insert(dag.job(i as u32), ps);
                }
            }
            Record::AttemptEnded {
                job,
                next: Next::Completed,
                ..
            } => {
                prop_assert!(self.completed.insert(*job), "{} completed twice", job);
            }
            Record::ServiceReady { job, .. } => {
                self.ready.insert(*job);
            }
            _ => {}
        }
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::OneOff {
                priority,
                delay_ms,
                kind,
            } => {
                let token = self.token();
                self.step(Input::Submit {
                    token,
                    submission: Submission::OneOff(spec(kind, priority, delay_ms)),
                })?;
            }
            Op::Dag { size, edges, kinds } => {
                let mut jobs: Vec<DagJobSpec> = (0..size)
                    .map(|i| DagJobSpec {
                        name: format!("J{i}").into(),
                        spec: spec(kinds[i], 1, 0),
                        deps: vec![],
                    })
                    .collect();
                for (a, b) in edges {
                    let (a, b) = (a % size, b % size);
                    let dep: Box<str> = format!("J{}", a.min(b)).into();
                    if a != b && !jobs[a.max(b)].deps.contains(&dep) {
                        jobs[a.max(b)].deps.push(dep);
                    }
                }
                let token = self.token();
                self.step(Input::Submit {
                    token,
                    submission: Submission::Dag(jobs),
                })?;
            }
            Op::WorkerUp { slot, capacity } => {
                if self.workers.contains_key(&slot) {
                    return Ok(());
                }
                self.generation[slot as usize] += 1;
                let id = WorkerId::new(slot, self.generation[slot as usize]).expect("valid");
                self.workers.insert(slot, id);
                let skills = if slot == 0 {
                    vec!["GENERAL".into(), "GPU".into()]
                } else {
                    vec!["GENERAL".into()]
                };
                let info = WorkerInfo {
                    id,
                    capacity,
                    skills,
                    port: 1,
                    parent: None,
                    ephemeral: false,
                    home: true,
                    spawn_ticket: None,
                };
                self.step(Input::WorkerUp(info))?;
            }
            Op::WorkerLost { slot } => {
                if let Some(worker) = self.workers.remove(&slot) {
                    self.running.retain(|r| r.0 != worker);
                    self.step(Input::WorkerLost { worker })?;
                }
            }
            Op::Finish { pick, success } => {
                if self.running.is_empty() {
                    return Ok(());
                }
                let (worker, job, attempt) = self.running.swap_remove(pick % self.running.len());
                let outcome = if success {
                    Outcome::Exited { code: 0 }
                } else {
                    Outcome::Exited { code: 2 }
                };
                self.step(Input::JobFinished {
                    job,
                    attempt,
                    worker,
                    outcome,
                    duration: Duration::ZERO,
                })?;
            }
            Op::Ready { pick } => {
                if let Some(&(worker, job, attempt)) =
                    self.running.get(pick % self.running.len().max(1))
                {
                    self.step(Input::ServiceReady {
                        job,
                        attempt,
                        worker,
                    })?;
                }
            }
            Op::Cancel { pick, whole_dag } => {
                if let Some(&job) = self.jobs.get(pick % self.jobs.len().max(1)) {
                    let target = if whole_dag {
                        Target::Dag(job.dag())
                    } else {
                        Target::Job(job)
                    };
                    let token = self.token();
                    self.step(Input::Cancel { token, target })?;
                }
            }
            Op::Stop { pick } => {
                if let Some(&job) = self.jobs.get(pick % self.jobs.len().max(1)) {
                    let token = self.token();
                    self.step(Input::Stop { token, job })?;
                }
            }
            Op::Advance { ms } => {
                self.now = self.now + Duration::from_millis(ms);
                self.step(Input::Tick)?;
            }
            Op::Persist { fraction } => {
                let span = self.last_lsn.0 - self.persisted.0;
                let lsn = Lsn(self.persisted.0 + span * u64::from(fraction) / 255);
                self.step(Input::Persisted { lsn })?;
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_core_consistent(ops in prop::collection::vec(arb_op(), 1..120)) {
        let mut d = Driver::new();
        for op in ops {
            d.apply(op)?;
        }
        // Recovery: a fresh core fed the journal holds the same jobs in the same states.
        let end = d.now;
        d.step(Input::Tick)?;
        let mut fresh = Core::new(config(), ShardInfo::SINGLE, Arc::new(LoadTable::new()), 99);
        for r in &d.journal {
            if let Err(e) = fresh.replay(r.clone()) {
                prop_assert!(false, "replay of {:?} failed: {}", r, e);
            }
        }
        fresh.finish_recovery(end);
        for &job in &d.jobs {
            let live = d.core.job(job).expect("retained");
            let back = fresh.job(job).expect("replayed");
            // Attempts that were running stay RUNNING, waiting for their workers to report them.
            prop_assert_eq!(back.state, live.state, "{}", job);
            prop_assert_eq!(back.adopting, live.state == JobState::Running, "{}", job);
            prop_assert_eq!((back.attempts, back.failures, back.crashes), (live.attempts, live.failures, live.crashes));
        }
        let (a, b) = (d.core.stats(), fresh.stats());
        prop_assert_eq!(
            (a.totals.completed, a.totals.dead, a.totals.cancelled, a.totals.upstream_failed, a.dlq),
            (b.totals.completed, b.totals.dead, b.totals.cancelled, b.totals.upstream_failed, b.dlq)
        );
        prop_assert_eq!(fresh.next_dag_k(), d.core.next_dag_k());
    }

    #[test]
    fn load_counters_return_to_zero_when_everything_ends(ops in prop::collection::vec(arb_op(), 1..80)) {
        let mut d = Driver::new();
        for op in ops {
            d.apply(op)?;
        }
        // Finish: a healthy GPU-capable worker, services stopped, every attempt reported successfully.
        d.apply(Op::WorkerUp { slot: 0, capacity: 2 })?;
        for _ in 0..10_000 {
            if d.core.stats().live == 0 && d.running.is_empty() {
                break;
            }
            for &job in d.jobs.clone().iter() {
                if d.core.job(job).is_some_and(|v| v.spec.is_service() && !v.state.is_terminal()) {
                    let token = d.token();
                    d.step(Input::Stop { token, job })?;
                }
            }
            if d.running.is_empty() {
                d.apply(Op::Advance { ms: 200 })?;
            } else {
                d.apply(Op::Finish { pick: 0, success: true })?;
            }
        }
        prop_assert_eq!(d.core.stats().live, 0);
        prop_assert_eq!(d.core.load_table().running_total(), 0);
    }
}
