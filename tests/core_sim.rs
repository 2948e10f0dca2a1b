//! Seeded simulations of whole clusters around the real cores (see `titan::core::sim`): many seeds
//! of the small faulty profile, the same with master crashes and recoveries, a proptest over
//! cluster shapes and fault rates, and the 100,000-node DAG. Every failure message carries the seed and the command that replays it.

use std::time::Duration;

use proptest::prelude::*;
use titan::core::sim::{self, SimConfig};

fn check(cfg: &SimConfig) -> sim::SimReport {
    match sim::run(cfg) {
        Ok(report) => report,
        Err(failure) => panic!("{failure}\nconfig: {cfg:?}"),
    }
}

#[test]
fn small_faulty_clusters_keep_every_invariant() {
    let mut totals = (0, 0, 0, 0);
    for seed in 0..48 {
        let r = check(&SimConfig::small(seed));
        assert_eq!(
            r.jobs,
            r.completed + r.dead + r.cancelled + r.upstream_failed,
            "seed {seed}"
        );
        totals = (
            totals.0 + r.completed,
            totals.1 + r.dead,
            totals.2 + r.cancelled,
            totals.3 + r.crashes,
        );
    }
    // The profile must actually exercise failures, cancels and crashes.
    assert!(
        totals.0 > 0 && totals.1 > 0 && totals.2 > 0 && totals.3 > 0,
        "{totals:?}"
    );
}

#[test]
fn master_crashes_lose_no_acknowledged_job_and_rerun_only_lost_attempts() {
    let mut totals = (0, 0, 0, 0, 0);
    for seed in 0..48 {
        let r = check(&SimConfig::restarts(seed));
        assert_eq!(
            r.jobs,
            r.completed + r.dead + r.cancelled + r.upstream_failed,
            "seed {seed}"
        );
        totals.0 += r.master_crashes;
        totals.1 += r.reshards;
        totals.2 += r.adopted;
        totals.3 += r.orphaned;
        totals.4 += r.snapshots;
    }
    // The profile must exercise restarts, new shard counts, adoption, orphans and snapshots.
    assert!(
        totals.0 > 0 && totals.1 > 0 && totals.2 > 0 && totals.3 > 0 && totals.4 > 0,
        "{totals:?}"
    );
}

#[test]
fn starved_clusters_scale_and_still_finish() {
    let mut spawned = 0;
    for seed in 0..8 {
        let mut cfg = SimConfig::small(seed);
        cfg.workers = 1;
        cfg.capacity = 1;
        cfg.workload.one_offs = 80;
        cfg.max_workers = 4;
        spawned += check(&cfg).spawned;
    }
    assert!(spawned > 0, "a starved backlog must ask for workers");
}

#[test]
fn a_100k_node_dag_validates_and_runs_to_completion() {
    let r = check(&SimConfig::big_dag(100, 100_000));
    assert_eq!(
        (r.jobs, r.completed, r.dispatches),
        (100_000, 100_000, 100_000)
    );
}

fn arb_config() -> impl Strategy<Value = SimConfig> {
    (
        any::<u64>(),
        1u32..=4,
        1u32..=6,
        1u32..=3,
        0u32..=400,
        0u32..=300,
        0u32..=6,
        0u64..=20,
        0u32..=8,
        (0u32..=3, any::<bool>(), prop::option::of(100u64..2000)),
    )
        .prop_map(
            |(
                seed,
                shards,
                workers,
                capacity,
                fail,
                cancel,
                crashes,
                lag_ms,
                max_workers,
                restarts,
            )| {
                let (master_crashes, reshard, snapshot_ms) = restarts;
                let mut cfg = SimConfig::small(seed);
                cfg.shards = shards;
                cfg.workers = workers;
                cfg.capacity = capacity;
                cfg.fail_permille = fail;
                cfg.cancel_permille = cancel;
                cfg.crashes = crashes;
                cfg.max_persist_lag = Duration::from_millis(lag_ms);
                cfg.max_workers = max_workers;
                cfg.workload.one_offs = 20;
                cfg.workload.dags = 4;
                cfg.master_crashes = master_crashes;
                cfg.reshard = reshard;
                cfg.snapshot_every = snapshot_ms.map(Duration::from_millis);
                cfg
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random workloads (DAGs, delays, priorities, services) with random failures, cancels, worker
    /// deaths, persistence lag, master crashes (with snapshots and new shard counts): every
    /// invariant of the simulator holds.
    #[test]
    fn random_clusters_keep_every_invariant(cfg in arb_config()) {
        if let Err(failure) = sim::run(&cfg) {
            prop_assert!(false, "{}\nconfig: {:?}", failure, cfg);
        }
    }
}

/// The first of `seeds` whose run fails once `fault` breaks a routing rule, with the failure.
fn first_failure(seeds: std::ops::Range<u64>, fault: sim::Fault) -> Option<(u64, sim::SimFailure)> {
    seeds.into_iter().find_map(|seed| {
        let cfg = SimConfig {
            router_fault: Some(fault),
            ..SimConfig::restarts(seed)
        };
        sim::run(&cfg).err().map(|failure| (seed, failure))
    })
}

/// The simulator carries out the master's own router, so breaking one of its rules (behind the
/// `sim` feature) breaks runs that pass with the rule intact.
#[test]
fn a_broken_routing_rule_fails_the_simulation() {
    // Announcing a returning worker before its adoptions lets a recovering core end its hold and
    // re-queue attempts the worker still runs.
    let (seed, failure) = first_failure(0..48, sim::Fault::WorkerUpBeforeAdoptions)
        .expect("some run notices WorkerUp before the adoptions");
    assert!(
        failure.what.contains("re-queued as lost"),
        "seed {seed}: {failure}"
    );
    assert!(failure
        .replay
        .contains("--router-fault worker-up-before-adoptions"));
    check(&SimConfig::restarts(seed));
    // Reports sent to a shard that does not own the job are ignored there: jobs never finish.
    let (seed, failure) = first_failure(0..8, sim::Fault::ReportsToWrongShard)
        .expect("some run notices reports going to the wrong shard");
    assert!(failure.what.contains("stuck"), "seed {seed}: {failure}");
    check(&SimConfig::restarts(seed));
}
