//! Scheduler core costs (criterion). Run: `cargo bench --bench core -- --warm-up-time 1 --measurement-time 3`.
//!
//! - `job_cycle/*`: submit + persist + dispatch + complete of NOOP one-offs on a warm core, one job per
//!   iteration and in batches of 1,000 (criterion reports elements/s). Target: <= 2 us per job.
//! - `baseline/*`: the floor for the same amount of bookkeeping (a heap push/pop and a hash map
//!   insert/remove per job), measured in the same run.
//! - `fan_out/N`, `fan_in/N`: release of an N-way fan-out (one completion releases N children) and an
//!   N-way fan-in (N completions, the last releases the child), for N = 1,000 and 10,000 to show
//!   linearity in edges. `dag_submit/N`: validation and storage of an N-job fan-out DAG.

use std::collections::{BinaryHeap, HashMap};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use titan::core::{
    Core, CoreConfig, DagId, DagJobSpec, Input, JobId, JobKind, JobSpec, LoadTable, Outcome,
    Output, ShardInfo, Submission, Time, WorkerId, WorkerInfo,
};

const T0: Time = Time::from_millis(1_700_000_000_000);

fn core_with_workers(count: u16, capacity: u32) -> Core {
    let load = Arc::new(LoadTable::new());
    let mut core = Core::new(CoreConfig::default(), ShardInfo::SINGLE, load, 1);
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

criterion_group!(benches, job_cycle, dags);
criterion_main!(benches);
