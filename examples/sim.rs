//! Replays one seeded simulation of a Titan cluster (see `titan::core::sim`).
//!
//! ```text
//! cargo run --release --example sim -- --seed 42
//! cargo run --release --example sim -- --seed 7 --big-dag 100000
//! cargo run --release --example sim -- --seed 3 --master-crashes 3 --reshard true --snapshot-every-ms 700
//! ```
//!
//! Without flags beyond `--seed` it runs `SimConfig::small(seed)` (with `--big-dag N`,
//! `SimConfig::big_dag(seed, N)`); every other flag overrides one field. A failing run prints the
//! exact flags that replay it.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use titan::core::sim::{self, SimConfig};

#[derive(Parser, Debug)]
#[command(about = "Run one deterministic simulation of the scheduler core")]
struct Args {
    /// Seed of every random choice in the run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Jobs of one large DAG (starts from the big-DAG profile: no faults).
    #[arg(long)]
    big_dag: Option<usize>,
    /// Master shards.
    #[arg(long)]
    shards: Option<u32>,
    /// Workers at the start.
    #[arg(long)]
    workers: Option<u32>,
    /// Slots per worker.
    #[arg(long)]
    capacity: Option<u32>,
    /// One-off submissions.
    #[arg(long)]
    one_offs: Option<usize>,
    /// Random DAG submissions.
    #[arg(long)]
    dags: Option<usize>,
    /// Largest random DAG.
    #[arg(long)]
    max_dag_size: Option<usize>,
    /// Whether services (DEPLOY jobs) appear.
    #[arg(long)]
    services: Option<bool>,
    /// Failed attempts per mille.
    #[arg(long)]
    fail_permille: Option<u32>,
    /// Submissions followed by a cancel, per mille.
    #[arg(long)]
    cancel_permille: Option<u32>,
    /// Worker crashes to inject.
    #[arg(long)]
    crashes: Option<u32>,
    /// Largest persistence lag, in microseconds.
    #[arg(long)]
    persist_lag_us: Option<u64>,
    /// Most workers scaling may grow to.
    #[arg(long)]
    max_workers: Option<u32>,
    /// Check priority order on every dispatch (scans queues).
    #[arg(long)]
    check_priority: Option<bool>,
    /// Master crashes to inject (each followed by a recovery).
    #[arg(long)]
    master_crashes: Option<u32>,
    /// Whether a recovery may change the shard count.
    #[arg(long)]
    reshard: Option<bool>,
    /// Snapshot every shard this often, in milliseconds.
    #[arg(long)]
    snapshot_every_ms: Option<u64>,
    /// Break one of the master's routing rules on purpose (worker-up-before-adoptions,
    /// reports-to-wrong-shard): the run should fail.
    #[arg(long)]
    router_fault: Option<sim::Fault>,
}

fn config(a: &Args) -> SimConfig {
    let mut c = match a.big_dag {
        Some(n) => SimConfig::big_dag(a.seed, n),
        None => SimConfig::small(a.seed),
    };
    let w = &mut c.workload;
    w.one_offs = a.one_offs.unwrap_or(w.one_offs);
    w.dags = a.dags.unwrap_or(w.dags);
    w.max_dag_size = a.max_dag_size.unwrap_or(w.max_dag_size);
    w.services = a.services.unwrap_or(w.services);
    c.shards = a.shards.unwrap_or(c.shards);
    c.workers = a.workers.unwrap_or(c.workers);
    c.capacity = a.capacity.unwrap_or(c.capacity);
    c.fail_permille = a.fail_permille.unwrap_or(c.fail_permille);
    c.cancel_permille = a.cancel_permille.unwrap_or(c.cancel_permille);
    c.crashes = a.crashes.unwrap_or(c.crashes);
    c.max_persist_lag = a
        .persist_lag_us
        .map_or(c.max_persist_lag, Duration::from_micros);
    c.max_workers = a.max_workers.unwrap_or(c.max_workers);
    c.check_priority = a.check_priority.unwrap_or(c.check_priority);
    c.master_crashes = a.master_crashes.unwrap_or(c.master_crashes);
    c.reshard = a.reshard.unwrap_or(c.reshard);
    if let Some(ms) = a.snapshot_every_ms {
        c.snapshot_every = Some(Duration::from_millis(ms));
    }
    c.router_fault = a.router_fault.or(c.router_fault);
    c
}

fn main() -> ExitCode {
    let cfg = config(&Args::parse());
    let started = Instant::now();
    match sim::run(&cfg) {
        Ok(report) => {
            println!("{report:#?}");
            println!("wall time: {:?}", started.elapsed());
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::FAILURE
        }
    }
}
