//! A seeded, deterministic simulation of a whole Titan cluster around the real
//! [`Core`](crate::Core)s: several shards sharing one [`LoadTable`](crate::LoadTable),
//! many workers, virtual time, random job failures, cancels, services with random lifetimes,
//! worker crashes (disconnects and silent deaths caught by missed heartbeats), replacement workers,
//! scaling (spawns and retirements), a WAL that persists records after a random lag, periodic
//! snapshots, and master crashes: the cores are dropped with everything not yet durable, rebuilt
//! from the last durable snapshot and records (optionally under another shard count, with the old
//! shards' records interleaved), while the workers keep running; they re-register under new ids
//! and report what they hold. Pure code: no threads, clocks or IO (TigerBeetle's simulator is the
//! model). Invariants are checked as the run goes; a failure names the seed that reproduces it:
//! `cargo run --release --example sim -- <flags>` (the failure prints the exact flags).
//!
//! Checked invariants: a job is dispatched only when every dependency completed (or is a ready
//! service); no job completes twice and no terminal job is dispatched or ended again; every
//! dispatched job was the best QUEUED job of its skill on its shard (optional, costs a queue scan);
//! no `Reply` or `Notify` leaves a core before every journal record emitted before it was persisted;
//! at the end every job is terminal and the load table's counters are back to zero. Across master
//! crashes: every acknowledged submission survives, the durable history never completes a job twice
//! or dispatches a child before its parents; an attempt that a live worker still holds and the
//! recovered master considers running (or queued, its dispatch record lost) is adopted — never
//! re-queued as lost, never killed as an orphan; and no attempt number goes to a second worker
//! while the first one lives (so a job runs twice only when its worker really lost it). Workers
//! list and re-send every final report on re-registration, as the real worker does.
//!
//! The simulator is only the master's transport (virtual latency, the event queue, faults) and
//! these checks: where every input and output goes is decided by the master's own
//! [`Router`](crate::router::Router), so the runs check the routing rules the master uses.

mod check;
mod cluster;
mod master;
mod routing;
mod workload;
mod world;

use std::time::Duration;

pub use crate::router::Fault;
pub use workload::WorkloadShape;

/// What to simulate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Seeds every random choice (workload, faults, timings, the cores' jitter).
    pub seed: u64,
    /// Master shards.
    pub shards: u32,
    /// Workers at the start (one in four also has the `GPU` skill).
    pub workers: u32,
    /// Slots per worker.
    pub capacity: u32,
    /// The workload.
    pub workload: WorkloadShape,
    /// Chance (per mille) that a job attempt fails.
    pub fail_permille: u32,
    /// Chance (per mille) that a submission gets a cancel request later.
    pub cancel_permille: u32,
    /// Worker crashes spread over the submission window (half of them silent).
    pub crashes: u32,
    /// Largest delay before a journal record is reported persisted.
    pub max_persist_lag: Duration,
    /// Most workers scaling may grow to (0: no scaling).
    pub max_workers: u32,
    /// Check priority order on every dispatch (scans the queue; keep workloads small).
    pub check_priority: bool,
    /// Virtual time after which a run that has not finished counts as stuck.
    pub time_limit: Duration,
    /// Master crashes spread over the submission window (each followed by a recovery).
    pub master_crashes: u32,
    /// Whether a recovery may change the shard count (1 to 4 shards).
    pub reshard: bool,
    /// How often each shard takes a snapshot (`None`: recovery replays the whole journal).
    pub snapshot_every: Option<Duration>,
    /// A routing rule to break on purpose (`None` in every real run): a test shows that the
    /// simulator notices when the master's router changes.
    pub router_fault: Option<Fault>,
}

impl SimConfig {
    /// A small mixed workload with every fault enabled, for property tests.
    pub fn small(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            shards: 2,
            workers: 4,
            capacity: 2,
            workload: WorkloadShape {
                one_offs: 40,
                dags: 6,
                max_dag_size: 12,
                big_dag: 0,
                services: true,
            },
            fail_permille: 150,
            cancel_permille: 100,
            crashes: 3,
            max_persist_lag: Duration::from_millis(5),
            max_workers: 6,
            check_priority: true,
            time_limit: Duration::from_secs(3600),
            master_crashes: 0,
            reshard: false,
            snapshot_every: None,
            router_fault: None,
        }
    }

    /// One DAG of `nodes` jobs on a healthy cluster (the 100,000-node test).
    pub fn big_dag(seed: u64, nodes: usize) -> SimConfig {
        SimConfig {
            seed,
            shards: 1,
            workers: 32,
            capacity: 8,
            workload: WorkloadShape {
                one_offs: 0,
                dags: 0,
                max_dag_size: 0,
                big_dag: nodes,
                services: false,
            },
            fail_permille: 0,
            cancel_permille: 0,
            crashes: 0,
            max_persist_lag: Duration::from_millis(2),
            max_workers: 0,
            check_priority: false,
            time_limit: Duration::from_secs(24 * 3600),
            master_crashes: 0,
            reshard: false,
            snapshot_every: None,
            router_fault: None,
        }
    }

    /// The small faulty profile with master crashes, snapshots and changes of the shard count.
    pub fn restarts(seed: u64) -> SimConfig {
        SimConfig {
            master_crashes: 2,
            reshard: true,
            snapshot_every: Some(Duration::from_millis(700)),
            ..SimConfig::small(seed)
        }
    }
}

impl SimConfig {
    /// The `examples/sim.rs` arguments that rebuild this configuration.
    pub fn replay_args(&self) -> String {
        let w = &self.workload;
        let mut a = format!(
            "--seed {} --shards {} --workers {} --capacity {}",
            self.seed, self.shards, self.workers, self.capacity
        );
        if w.big_dag > 0 {
            a.push_str(&format!(" --big-dag {}", w.big_dag));
        }
        a.push_str(&format!(
            " --one-offs {} --dags {} --max-dag-size {} --services {} --fail-permille {} --cancel-permille {} --crashes {} --persist-lag-us {} --max-workers {} --check-priority {}",
            w.one_offs,
            w.dags,
            w.max_dag_size,
            w.services,
            self.fail_permille,
            self.cancel_permille,
            self.crashes,
            self.max_persist_lag.as_micros(),
            self.max_workers,
            self.check_priority,
        ));
        a.push_str(&format!(
            " --master-crashes {} --reshard {}",
            self.master_crashes, self.reshard
        ));
        if let Some(every) = self.snapshot_every {
            a.push_str(&format!(" --snapshot-every-ms {}", every.as_millis()));
        }
        if let Some(fault) = self.router_fault {
            a.push_str(&format!(" --router-fault {}", fault.name()));
        }
        a
    }
}

/// What a finished run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Jobs accepted.
    pub jobs: u64,
    /// Jobs by terminal state.
    pub completed: u64,
    /// DEAD jobs.
    pub dead: u64,
    /// CANCELLED jobs.
    pub cancelled: u64,
    /// UPSTREAM_FAILED jobs.
    pub upstream_failed: u64,
    /// Attempts dispatched.
    pub dispatches: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual time from the first to the last event.
    pub virtual_time: Duration,
    /// Worker crashes injected.
    pub crashes: u64,
    /// Workers spawned by scaling.
    pub spawned: u64,
    /// Workers retired by scaling.
    pub retired: u64,
    /// Master crashes injected (each recovered).
    pub master_crashes: u64,
    /// Recoveries that changed the shard count.
    pub reshards: u64,
    /// Attempts re-registered workers reported and the recovered master adopted.
    pub adopted: u64,
    /// Reported attempts the recovered master could not account for and killed.
    pub orphaned: u64,
    /// Snapshots that became durable.
    pub snapshots: u64,
}

/// A violated invariant or a stuck run, with the seed that reproduces it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("simulation failed (seed {seed}) at virtual {at:?}: {what}\nreplay: cargo run --release --example sim -- {replay}")]
pub struct SimFailure {
    /// The seed.
    pub seed: u64,
    /// Virtual time since the start.
    pub at: Duration,
    /// What went wrong.
    pub what: String,
    /// Arguments of `examples/sim.rs` that replay the run.
    pub replay: String,
}

/// Runs one simulation to completion.
pub fn run(cfg: &SimConfig) -> Result<SimReport, SimFailure> {
    world::World::new(cfg).run()
}
