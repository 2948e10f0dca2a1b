//! Scheduler core costs (criterion). Run: `cargo bench --bench core -- --warm-up-time 1 --measurement-time 3`.
//!
//! - `job_cycle/*`: submit + persist + dispatch + complete of NOOP one-offs on a warm core, one job per
//!   iteration and in batches of 1,000 (criterion reports elements/s). Target: <= 2 us per job.
//! - `baseline/*`: the floor for the same amount of bookkeeping (a heap push/pop and a hash map
//!   insert/remove per job), measured in the same run.
//! - `fan_out/N`, `fan_in/N`: release of an N-way fan-out (one completion releases N children) and an
//!   N-way fan-in (N completions, the last releases the child), for N = 1,000 and 10,000 to show
//!   linearity in edges. `dag_submit/N`: validation and storage of an N-job fan-out DAG.
//! - `recovery/*`: a fresh core replaying 1,000,000 journal records of a realistic mix (submits of
//!   one-offs and small DAGs, dispatches, attempt ends with 5% failures and their retries), then
//!   `finish_recovery`; from WAL payloads (`replay_bytes`: validate, decode, apply) and from decoded
//!   records (`replay`). Baseline in the same run: `decode_only` (validating and decoding the same
//!   payloads, no core). Target: 1,000,000 records in <= 1 s including the WAL's read (~0.2 s), so
//!   the core's share must stay below ~0.8 us per record.
//! - `snapshot/*`: a core holding 100,000 live jobs (queued, running, delayed, failed, blocked DAG
//!   children): `take` (snapshot + encode) and `load` (decode + restore + finish_recovery). Target:
//!   load <= 200 ms. Baseline: `decode_only` (the bytes back into a `Snapshot` value).

use std::collections::{BinaryHeap, HashMap};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use mimalloc::MiMalloc;
use titan::core::{
    Core, CoreConfig, DagId, DagJobSpec, Input, JobId, JobKind, JobSpec, LoadTable, Outcome,
    Output, Record, ShardInfo, Snapshot, Submission, Time, WorkerId, WorkerInfo,
};

// The allocator of the `titan` binary: recovery and snapshot loading allocate per job, so the
// numbers must come from the allocator the master runs with.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const T0: Time = Time::from_millis(1_700_000_000_000);

fn core_with_workers(count: u16, capacity: u32) -> Core {
    core_with_workers_cfg(CoreConfig::default(), count, capacity)
}

fn core_with_workers_cfg(cfg: CoreConfig, count: u16, capacity: u32) -> Core {
    let load = Arc::new(LoadTable::new());
    let mut core = Core::new(cfg, ShardInfo::SINGLE, load, 1);
    for slot in 0..count {
        let id = WorkerId::new(slot, 1).expect("valid id");
        let skills = vec!["GENERAL".into()];
        let info = WorkerInfo {
            id,
            capacity,
            skills,
            port: 8080 + slot,
            parent: None,
            ephemeral: false,
            home: true,
            spawn_ticket: None,
            instance: id.slot() as u64,
        };
        core.handle(T0, Input::WorkerUp(info));
    }
    core.drain_outputs().for_each(drop);
    core
}

fn core_with_worker(capacity: u32) -> (Core, WorkerId) {
    (
        core_with_workers(1, capacity),
        WorkerId::new(0, 1).expect("valid id"),
    )
}

/// Submits and returns the attempts dispatched right away.
fn submit_and_collect(core: &mut Core, submission: Submission) -> Vec<(WorkerId, JobId, u32)> {
    core.handle(
        T0,
        Input::Submit {
            token: 1,
            submission,
        },
    );
    persist_and_collect(core)
}

/// Persists everything and returns the attempts dispatched (dispatches leave the core once their
/// records are durable); other outputs are dropped.
fn persist_and_collect(core: &mut Core) -> Vec<(WorkerId, JobId, u32)> {
    core.handle(
        T0,
        Input::Persisted {
            lsn: core.last_lsn(),
        },
    );
    core.drain_outputs()
        .filter_map(|o| match o {
            Output::Dispatch {
                worker,
                job,
                attempt,
            } => Some((worker, job, attempt)),
            _ => None,
        })
        .collect()
}

/// Persists everything and collects the dispatches, consuming every other output.
fn settle(core: &mut Core, dispatched: &mut Vec<(JobId, u32)>) {
    core.handle(
        T0,
        Input::Persisted {
            lsn: core.last_lsn(),
        },
    );
    for o in core.drain_outputs() {
        if let Output::Dispatch { job, attempt, .. } = o {
            dispatched.push((job, attempt));
        } else {
            black_box(o);
        }
    }
}

fn finish(core: &mut Core, worker: WorkerId, job: JobId, attempt: u32) {
    let outcome = Outcome::Exited { code: 0 };
    core.handle(
        T0,
        Input::JobFinished {
            job,
            attempt,
            worker,
            outcome,
            duration: Duration::ZERO,
        },
    );
}

fn job_cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("job_cycle");
    let noop = Submission::OneOff(JobSpec::new(JobKind::Noop));
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_noop", |b| {
        let (mut core, worker) = core_with_worker(64);
        let mut dispatched = Vec::with_capacity(1);
        let mut token = 0;
        b.iter(|| {
            token += 1;
            core.handle(
                T0,
                Input::Submit {
                    token,
                    submission: noop.clone(),
                },
            );
            settle(&mut core, &mut dispatched);
            for (job, attempt) in dispatched.drain(..) {
                finish(&mut core, worker, job, attempt);
            }
            core.drain_outputs().for_each(|o| drop(black_box(o)));
        });
    });
    const BATCH: u64 = 1000;
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("batch_1000_noop", |b| {
        let (mut core, worker) = core_with_worker(BATCH as u32);
        let mut dispatched = Vec::with_capacity(BATCH as usize);
        let mut token = 0;
        b.iter(|| {
            for _ in 0..BATCH {
                token += 1;
                core.handle(
                    T0,
                    Input::Submit {
                        token,
                        submission: noop.clone(),
                    },
                );
            }
            settle(&mut core, &mut dispatched);
            for (job, attempt) in dispatched.drain(..) {
                finish(&mut core, worker, job, attempt);
            }
            core.drain_outputs().for_each(|o| drop(black_box(o)));
        });
    });
    g.finish();

    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("heap_and_map_per_job", |b| {
        let mut heap = BinaryHeap::new();
        let mut map: HashMap<u64, JobSpec> = HashMap::new();
        let spec = JobSpec::new(JobKind::Noop);
        let mut id = 0u64;
        b.iter(|| {
            id += 1;
            map.insert(id, spec.clone());
            heap.push((1i32, std::cmp::Reverse(id)));
            let (_, std::cmp::Reverse(top)) = heap.pop().expect("pushed");
            black_box(map.remove(&top));
        });
    });
    g.finish();
}

fn named(i: usize) -> Box<str> {
    format!("J{i}").into()
}

fn fan_out_dag(n: usize) -> Submission {
    let mut jobs = vec![DagJobSpec {
        name: "ROOT".into(),
        spec: JobSpec::new(JobKind::Noop),
        deps: vec![],
    }];
    jobs.extend((0..n).map(|i| DagJobSpec {
        name: named(i),
        spec: JobSpec::new(JobKind::Noop),
        deps: vec!["ROOT".into()],
    }));
    Submission::Dag(jobs)
}

fn fan_in_dag(n: usize) -> Submission {
    let mut jobs: Vec<DagJobSpec> = (0..n)
        .map(|i| DagJobSpec {
            name: named(i),
            spec: JobSpec::new(JobKind::Noop),
            deps: vec![],
        })
        .collect();
    let deps = (0..n).map(named).collect();
    jobs.push(DagJobSpec {
        name: "SINK".into(),
        spec: JobSpec::new(JobKind::Noop),
        deps,
    });
    Submission::Dag(jobs)
}

fn dags(c: &mut Criterion) {
    let mut g = c.benchmark_group("fan_out");
    for n in [1_000usize, 10_000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_batched(
                || {
                    // One slot: only ROOT runs; completing it releases n children into the queue.
                    let (mut core, worker) = core_with_worker(1);
                    core.handle(
                        T0,
                        Input::Submit {
                            token: 1,
                            submission: fan_out_dag(n),
                        },
                    );
                    core.drain_outputs().for_each(drop);
                    (core, worker)
                },
                |(mut core, worker)| {
                    finish(&mut core, worker, DagId(0).job(0), 1);
                    core.drain_outputs().for_each(|o| drop(black_box(o)));
                    core
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();

    let mut g = c.benchmark_group("fan_in");
    for n in [1_000usize, 10_000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_batched(
                || {
                    // Every parent runs at once (3 workers x 4,096 slots); the measured part is n
                    // completions, each decrementing the sink's counter, and the sink's release.
                    let mut core = core_with_workers(3, 4096);
                    let running = submit_and_collect(&mut core, fan_in_dag(n));
                    assert_eq!(running.len(), n);
                    (core, running)
                },
                |(mut core, running)| {
                    for (worker, job, attempt) in running {
                        finish(&mut core, worker, job, attempt);
                        core.drain_outputs().for_each(|o| drop(black_box(o)));
                    }
                    core
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();

    let mut g = c.benchmark_group("dag_submit");
    for n in [1_000usize, 10_000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let submission = fan_out_dag(n);
            b.iter_batched(
                || (core_with_worker(1).0, submission.clone()),
                |(mut core, submission)| {
                    core.handle(
                        T0,
                        Input::Submit {
                            token: 1,
                            submission,
                        },
                    );
                    core
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

/// A one-off of the realistic mix: mostly NOOPs, some scripts with arguments, some delayed.
fn mixed_spec(i: u64) -> JobSpec {
    let kind = if i % 10 < 7 {
        JobKind::Noop
    } else {
        JobKind::Run {
            file: "jobs/report.py".into(),
            args: vec![Box::from("--day"), format!("{}", i % 31).into()].into(),
        }
    };
    JobSpec {
        priority: (i % 4) as i32,
        ..JobSpec::new(kind)
    }
}

fn mixed_dag(i: u64) -> Submission {
    let jobs = (0..5)
        .map(|j| DagJobSpec {
            name: format!("STEP{j}").into(),
            spec: mixed_spec(i + j),
            deps: if j == 0 {
                vec![]
            } else {
                vec![format!("STEP{}", j - 1).into()]
            },
        })
        .collect();
    Submission::Dag(jobs)
}

/// Runs a live core (64 workers) until it has journaled `n` records; returns them.
fn journal_of_a_busy_core(n: usize) -> Vec<Record> {
    // The run spans minutes of virtual time without heartbeats: keep the workers alive.
    let cfg = CoreConfig {
        heartbeat_timeout: Duration::from_secs(24 * 3600),
        ..CoreConfig::default()
    };
    let mut core = core_with_workers_cfg(cfg, 64, 64);
    let mut records = Vec::with_capacity(n + 10_000);
    let mut now = T0;
    let mut token = 0u64;
    let mut running: Vec<(WorkerId, JobId, u32)> = Vec::new();
    let mut outs: Vec<Output> = Vec::new();
    while records.len() < n {
        for _ in 0..200 {
            token += 1;
            let submission = if token % 20 == 0 {
                mixed_dag(token)
            } else {
                Submission::OneOff(mixed_spec(token))
            };
            core.handle(now, Input::Submit { token, submission });
        }
        core.handle(
            now,
            Input::Persisted {
                lsn: core.last_lsn(),
            },
        );
        outs.extend(core.drain_outputs());
        for (k, (worker, job, attempt)) in running.drain(..).enumerate() {
            let code = i32::from(k % 20 == 7);
            let outcome = Outcome::Exited { code };
            let duration = Duration::ZERO;
            let input = Input::JobFinished {
                job,
                attempt,
                worker,
                outcome,
                duration,
            };
            core.handle(now, input);
            outs.extend(core.drain_outputs());
        }
        for o in outs.drain(..) {
            match o {
                Output::Journal { record, .. } => records.push(record),
                Output::Dispatch {
                    worker,
                    job,
                    attempt,
                } => running.push((worker, job, attempt)),
                _ => {}
            }
        }
        // Backoffs (1 s, jittered) end while later batches arrive.
        now = now + Duration::from_millis(50);
        core.handle(now, Input::Tick);
        outs.extend(core.drain_outputs());
    }
    records.truncate(n);
    records
}

fn recovery(c: &mut Criterion) {
    const RECORDS: usize = 1_000_000;
    let records = journal_of_a_busy_core(RECORDS);
    let payloads: Vec<Vec<u8>> = records
        .iter()
        .map(|r| r.encode().expect("encodes"))
        .collect();
    let mut mix = [0usize; 4];
    for r in &records {
        mix[match r {
            Record::Submitted { .. } => 0,
            Record::Dispatched { .. } => 1,
            Record::AttemptEnded { .. } => 2,
            _ => 3,
        }] += 1;
    }
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    println!(
        "journal: {} records ({} submitted, {} dispatched, {} attempt ends, {} other), {} payload bytes",
        records.len(),
        mix[0],
        mix[1],
        mix[2],
        mix[3],
        bytes
    );
    let end = records.last().map_or(T0, Record::at);
    let fresh = || {
        Core::new(
            CoreConfig::default(),
            ShardInfo::SINGLE,
            Arc::new(LoadTable::new()),
            1,
        )
    };
    let mut g = c.benchmark_group("recovery");
    g.sample_size(10);
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("decode_only", |b| {
        b.iter(|| {
            for p in &payloads {
                black_box(Record::decode(p).expect("valid"));
            }
        });
    });
    g.bench_function("replay_bytes", |b| {
        b.iter_batched(
            fresh,
            |mut core| {
                for p in &payloads {
                    core.replay_bytes(p).expect("replays");
                }
                core.finish_recovery(end);
                core
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("replay_records", |b| {
        b.iter_batched(
            || (fresh(), records.clone()),
            |(mut core, records)| {
                for r in records {
                    core.replay(r).expect("replays");
                }
                core.finish_recovery(end);
                core
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

/// A core holding `n` live jobs: queued, running, delayed, failed, and blocked DAG children.
fn core_with_live_jobs(n: usize) -> Core {
    let mut core = core_with_workers(16, 1000);
    let mut token = 0u64;
    while core.stats().live < n {
        token += 1;
        let submission = match token % 10 {
            0 => mixed_dag(token),
            1 => Submission::OneOff(JobSpec {
                delay_ms: 600_000,
                ..mixed_spec(token)
            }),
            _ => Submission::OneOff(mixed_spec(token)),
        };
        core.handle(T0, Input::Submit { token, submission });
    }
    let dispatched = persist_and_collect(&mut core);
    // A tenth of the running attempts fail and wait for their retry.
    for (worker, job, attempt) in dispatched.into_iter().step_by(10) {
        let outcome = Outcome::Exited { code: 1 };
        let input = Input::JobFinished {
            job,
            attempt,
            worker,
            outcome,
            duration: Duration::ZERO,
        };
        core.handle(T0, input);
    }
    core.drain_outputs().for_each(drop);
    core
}

fn snapshots(c: &mut Criterion) {
    const LIVE: usize = 100_000;
    let core = core_with_live_jobs(LIVE);
    let bytes = core.snapshot().encode().expect("encodes");
    println!(
        "snapshot of {} live jobs: {} bytes ({} per job)",
        core.stats().live,
        bytes.len(),
        bytes.len() / LIVE
    );
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10);
    g.throughput(Throughput::Elements(LIVE as u64));
    g.bench_function("take", |b| {
        b.iter(|| black_box(core.snapshot().encode().expect("encodes")));
    });
    g.bench_function("decode_only", |b| {
        b.iter(|| black_box(Snapshot::decode(&bytes).expect("valid")));
    });
    g.bench_function("load", |b| {
        b.iter(|| {
            let snapshot = Snapshot::decode(&bytes).expect("valid");
            let load = Arc::new(LoadTable::new());
            let mut back =
                Core::restore(CoreConfig::default(), ShardInfo::SINGLE, load, 1, snapshot)
                    .expect("restores");
            back.finish_recovery(T0);
            back
        });
    });
    g.finish();
}

criterion_group!(benches, job_cycle, dags);
criterion_group!(durability, recovery, snapshots);
criterion_main!(benches, durability);
