//! Random workloads for the simulator: one-off jobs, random DAGs of mixed job kinds (with priorities,
//! delays, timeouts, skills and services), and one large DAG with local dependencies.

use std::num::NonZeroU32;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::Rng;

use crate::model::{DagJobSpec, JobKind, JobSpec, Submission};

/// The size and mix of a simulated workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadShape {
    /// One-off submissions.
    pub one_offs: usize,
    /// Random DAG submissions.
    pub dags: usize,
    /// Largest random DAG.
    pub max_dag_size: usize,
    /// Jobs of one large DAG submitted first (0: none).
    pub big_dag: usize,
    /// Whether services (DEPLOY jobs) appear.
    pub services: bool,
}

/// One planned client submission.
pub struct Planned {
    /// Offset from the start of the run.
    pub at: Duration,
    pub submission: Submission,
    /// When set, a cancel request follows the submission after this long.
    pub cancel_after: Option<Duration>,
}

/// Submissions spread uniformly over `window`, in time order.
pub fn generate(
    shape: &WorkloadShape,
    rng: &mut SmallRng,
    window: Duration,
    cancel_permille: u32,
) -> Vec<Planned> {
    let mut plan = Vec::new();
    if shape.big_dag > 0 {
        plan.push(Planned {
            at: Duration::ZERO,
            submission: big_dag(rng, shape.big_dag),
            cancel_after: None,
        });
    }
    let window_us = window.as_micros().max(1) as u64;
    for i in 0..shape.one_offs + shape.dags {
        let submission = if i < shape.one_offs {
            Submission::OneOff(random_spec(rng, shape.services))
        } else {
            let n = rng.gen_range(1..=shape.max_dag_size.max(1));
            Submission::Dag(random_dag(rng, n, shape.services))
        };
        let cancel_after = (rng.gen_range(0..1000) < cancel_permille)
            .then(|| Duration::from_micros(rng.gen_range(0..200_000)));
        plan.push(Planned {
            at: Duration::from_micros(rng.gen_range(0..window_us)),
            submission,
            cancel_after,
        });
    }
    plan.sort_by_key(|p| p.at);
    plan
}

fn random_spec(rng: &mut SmallRng, services: bool) -> JobSpec {
    let roll = rng.gen_range(0..100);
    let kind = match roll {
        0..=29 => JobKind::Noop,
        30..=59 => JobKind::Run {
            file: "work.py".into(),
            args: Box::new([]),
        },
        60..=79 => JobKind::Sleep {
            ms: rng.gen_range(1..50),
        },
        80..=89 => JobKind::Skill {
            name: "GPU".into(),
            data: "frame".into(),
        },
        _ if services => JobKind::Deploy {
            file: "svc.py".into(),
            port: Some(rng.gen_range(9000..9100)),
        },
        _ => JobKind::Noop,
    };
    let mut spec = JobSpec::new(kind);
    spec.priority = rng.gen_range(0..4);
    if rng.gen_range(0..10) >= 7 {
        spec.delay_ms = rng.gen_range(1..100);
    }
    if matches!(spec.kind, JobKind::Run { .. }) && rng.gen_range(0..10) == 0 {
        spec.timeout_ms = NonZeroU32::new(30);
    }
    spec
}

fn random_dag(rng: &mut SmallRng, n: usize, services: bool) -> Vec<DagJobSpec> {
    (0..n)
        .map(|i| {
            let mut deps: Vec<Box<str>> = Vec::new();
            if i > 0 {
                for _ in 0..rng.gen_range(0..=3usize) {
                    let name: Box<str> = format!("N{}", rng.gen_range(0..i)).into();
                    if !deps.contains(&name) {
                        deps.push(name);
                    }
                }
            }
            DagJobSpec {
                name: format!("N{i}").into(),
                spec: random_spec(rng, services),
                deps,
            }
        })
        .collect()
}

/// A large DAG whose node `i` depends on up to two of the previous thousand nodes.
fn big_dag(rng: &mut SmallRng, n: usize) -> Submission {
    let jobs = (0..n)
        .map(|i| {
            let mut deps: Vec<Box<str>> = Vec::new();
            if i > 0 {
                for _ in 0..rng.gen_range(1..=2usize) {
                    let p = rng.gen_range(i.saturating_sub(1000)..i);
                    let name: Box<str> = format!("N{p}").into();
                    if !deps.contains(&name) {
                        deps.push(name);
                    }
                }
            }
            let kind = if i % 3 == 0 {
                JobKind::Run {
                    file: "step.py".into(),
                    args: Box::new([]),
                }
            } else {
                JobKind::Noop
            };
            DagJobSpec {
                name: format!("N{i}").into(),
                spec: JobSpec::new(kind),
                deps,
            }
        })
        .collect();
    Submission::Dag(jobs)
}

/// How long the simulated worker takes for a job of this kind (services run until stopped).
pub fn duration(kind: &JobKind, rng: &mut SmallRng) -> Duration {
    match kind {
        JobKind::Noop => Duration::from_micros(rng.gen_range(10..1000)),
        JobKind::Sleep { ms } => Duration::from_millis(u64::from(*ms)),
        JobKind::Run { .. } | JobKind::RunInline { .. } => {
            Duration::from_micros(rng.gen_range(1000..60_000))
        }
        JobKind::Skill { .. } => Duration::from_micros(rng.gen_range(1000..20_000)),
        JobKind::Deploy { .. } => Duration::from_micros(rng.gen_range(100_000..3_000_000)),
    }
}
