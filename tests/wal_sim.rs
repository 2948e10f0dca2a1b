//! The storage-fault simulator (`titan_wal::sim`): the real journal on a simulated disk that
//! loses unsynced writes at power cuts, tears the write in flight, flips bits and fails
//! operations. Every acknowledged record must come back, or recovery must refuse with a precise
//! error; never a silent loss. A few hundred seeds here; `scripts/sim-storage.sh N` runs more.
//!
//! `TITAN_SIM_SEEDS=N` sets how many seeds (starting at `TITAN_SIM_FIRST`, default 0), and a
//! failure prints the seed that reproduces it (`TITAN_SIM_FIRST=S TITAN_SIM_SEEDS=1`).

use glommio::{LocalExecutorBuilder, Placement};
use titan::wal::sim::{run_seed, Summary};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn storage_faults_never_lose_an_acknowledged_record_silently() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let seeds = env("TITAN_SIM_SEEDS", 300);
    let first = env("TITAN_SIM_FIRST", 0);
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("glommio executor");
    let (summary, failures) = executor.run(async move {
        let mut summary = Summary::default();
        let mut failures = Vec::new();
        for seed in first..first + seeds {
            match run_seed(seed).await {
                Ok(report) => summary.add(&report),
                Err(e) => {
                    eprintln!("FAILED {e} (replay: TITAN_SIM_FIRST={seed} TITAN_SIM_SEEDS=1)");
                    failures.push(seed);
                }
            }
        }
        (summary, failures)
    });
    println!(
        "storage sim: {} seeds from {first}: {} epochs, {} power cuts mid-operation, {} failed \
         operations, {} bit flips, {} precise refusals, {} acknowledged records checked, {} \
         forgiven (flips in the last batch's commit, or in every batch after the damage), {} failing seeds",
        summary.seeds,
        summary.epochs,
        summary.crashes,
        summary.failed_ops,
        summary.flips,
        summary.refusals,
        summary.acked,
        summary.forgiven,
        failures.len()
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
    assert!(summary.acked > 0 && summary.crashes > 0, "{summary:?}");
}
