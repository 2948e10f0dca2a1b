//! Property tests that drive one core directly with random operations (one-offs, DAGs, services,
//! worker arrivals and losses, reports, cancels, stops, time, partial persistence):
//! - no successful reply leaves before the record it acknowledges is persisted;
//! - no job completes twice, and a child never starts before its parents completed (or are ready);
//! - replaying the journal into a fresh core rebuilds the same observable state (running attempts
//!   stay RUNNING, waiting for their workers), and so does restoring a snapshot taken at a random
//!   point and replaying the rest of the journal;
//! - the journals (and snapshots) of several shards, split across another shard count and replayed
//!   interleaved, rebuild every job on its new owner, and new DagIds pass every old one;
//! - when everything has ended, the load counters are back to zero.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use titan::core::*;

mod core_props_support;
use core_props_support::*;

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

/// DagIds a recovered core skips (ids a crash may have lost).
const SKIP: u64 = 100;

fn config() -> CoreConfig {
    CoreConfig {
        recovery_dag_skip: SKIP,
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
    fn new(shard: ShardInfo) -> Driver {
        Driver {
            core: Core::new(config(), shard, Arc::new(LoadTable::new()), 5),
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
                    if let Ok(Ack::Submitted { dag, jobs, .. }) = reply {
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
                    instance: id.slot() as u64,
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
        let mut d = Driver::new(ShardInfo::SINGLE);
        for op in ops {
            d.apply(op)?;
        }
        // Recovery: a fresh core fed the journal holds the same jobs in the same states.
        d.step(Input::Tick)?;
        let mut fresh = Core::new(config(), ShardInfo::SINGLE, Arc::new(LoadTable::new()), 99);
        replay_all(&mut fresh, &d.journal)?;
        fresh.finish_recovery(d.now);
        same_core(&d.core, &fresh, &d.jobs)?;
    }

    #[test]
    fn a_snapshot_plus_the_rest_of_the_journal_rebuilds_the_same_state(
        ops in prop::collection::vec(arb_op(), 1..120),
        cut in 0.0f64..1.0,
    ) {
        let mut d = Driver::new(ShardInfo::SINGLE);
        let at = (ops.len() as f64 * cut) as usize;
        let (snap, covered) = run_with_snapshot(&mut d, ops, at)?;
        prop_assert_eq!(snap.last_lsn, Lsn(covered as u64));
        d.step(Input::Tick)?;
        let load = Arc::new(LoadTable::new());
        let mut back = match Core::restore(config(), ShardInfo::SINGLE, load, 99, snap) {
            Ok(core) => core,
            Err(e) => return Err(TestCaseError::fail(format!("restore failed: {e}"))),
        };
        replay_all(&mut back, &d.journal[covered..])?;
        back.finish_recovery(d.now);
        same_core(&d.core, &back, &d.jobs)?;
    }

    #[test]
    fn shards_split_across_a_new_count_with_interleaved_replay(
        ops in prop::collection::vec((any::<bool>(), arb_op()), 1..150),
        cuts in (0.0f64..1.0, 0.0f64..1.0),
        snapshots in any::<bool>(),
        count in 1u32..=4,
        interleave in any::<u64>(),
    ) {
        let mut old: Vec<Driver> = (0..2).map(|index| Driver::new(ShardInfo { index, count: 2 })).collect();
        let mut per: [Vec<Op>; 2] = [Vec::new(), Vec::new()];
        for (second, op) in ops {
            per[usize::from(second)].push(op);
        }
        let mut snaps = Vec::new();
        let mut covered = Vec::new();
        for (i, (d, ops)) in old.iter_mut().zip(per).enumerate() {
            let cut = if i == 0 { cuts.0 } else { cuts.1 };
            let at = if snapshots { (ops.len() as f64 * cut) as usize } else { usize::MAX };
            let (snap, upto) = run_with_snapshot(d, ops, at)?;
            covered.push(if snapshots { upto } else { 0 });
            if snapshots {
                snaps.push(snap);
            }
        }
        // Both old shards reach the same time, which the new cores recover at.
        let end = old.iter().map(|d| d.now).max().unwrap_or_default();
        for d in old.iter_mut() {
            d.now = end;
            d.step(Input::Tick)?;
        }
        let tails: Vec<Vec<Record>> = old.iter().zip(&covered).map(|(d, &c)| d.journal[c..].to_vec()).collect();
        // One interleaving of both shards' records, each shard's in order.
        let mut rng = interleave;
        let mut merged = Vec::new();
        let (mut a, mut b) = (tails[0].iter().peekable(), tails[1].iter().peekable());
        while a.peek().is_some() || b.peek().is_some() {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let take_a = b.peek().is_none() || (a.peek().is_some() && rng >> 63 == 0);
            merged.extend(if take_a { a.next() } else { b.next() });
        }
        let mut new = Vec::new();
        for index in 0..count {
            let shard = ShardInfo { index, count };
            let mut core = Core::new(config(), shard, Arc::new(LoadTable::new()), 1);
            for s in &snaps {
                if let Err(e) = core.absorb(s.clone()) {
                    return Err(TestCaseError::fail(format!("absorb failed: {e}")));
                }
            }
            let mine: Vec<Record> = merged.iter().filter(|r| r.dag().is_none_or(|d| shard.owns(d))).map(|r| (*r).clone()).collect();
            replay_all(&mut core, &mine)?;
            core.finish_recovery(end);
            new.push(core);
        }
        let mut highest = vec![None; count as usize];
        for d in &old {
            for &job in &d.jobs {
                let owner = job.dag().owner(count) as usize;
                same_job(&d.core, &new[owner], job)?;
                for (i, other) in new.iter().enumerate() {
                    prop_assert!(i == owner || other.job(job).is_none(), "{} on two shards", job);
                }
                highest[owner] = highest[owner].max(Some(job.dag()));
            }
        }
        // A shard allocates increasing ids of its own residue: starting past every recovered id
        // it owns means none is ever reused.
        for (index, core) in new.iter().enumerate() {
            let next = ShardInfo { index: index as u32, count }.dag_id(core.next_dag_k());
            prop_assert!(highest[index].is_none_or(|h| next > h), "shard {} would reuse {}", index, next);
        }
    }

    #[test]
    fn load_counters_return_to_zero_when_everything_ends(ops in prop::collection::vec(arb_op(), 1..80)) {
        let mut d = Driver::new(ShardInfo::SINGLE);
        for op in ops {
            d.apply(op)?;
        }
        // Finish: a healthy GPU-capable worker, services stopped, every attempt reported successfully.
        d.apply(Op::WorkerUp { slot: 0, capacity: 2 })?;
        for _ in 0..10_000 {
            // The log catches up first: dispatches wait for their records to be durable, and a
            // held dispatch is work still to do.
            d.apply(Op::Persist { fraction: 255 })?;
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
