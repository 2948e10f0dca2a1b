//! Power loss for real: the master's data directory lives on a FUSE file system that models a
//! disk with a volatile write cache (`tests/cachefs`): written bytes are visible at once but
//! durable only once synced (or written `O_DSYNC`), and new names only once their directory is
//! synced. Jobs are submitted and their acknowledgements recorded while the power is cut at a
//! random moment (the disk freezes, the master is killed, everything not durable is thrown
//! away), several times; after each restart every acknowledged job must be there.
//!
//! `kill -9` alone keeps the page cache, so the crash tests would pass without a single fsync;
//! this one would not. It needs root and `/dev/fuse`: under `CI=true` it fails if it cannot
//! mount, elsewhere it skips with the reason.

mod cachefs;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cachefs::CacheFs;
use nix::sys::signal::Signal;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use support::durability::cannot_set_up;
use support::{scratch_dir, Master};
use titan::cli::client::Client;
use titan::core::grammar::parse_one_off;
use titan::core::Submission;

/// Power cuts per run.
const CUTS: usize = 4;

/// Two shards, snapshots every 50 records (so cuts also land in snapshot writes). The test
/// support starts masters with 16 MiB segments created as they fill (`--wal-no-preallocate`), so
/// each commit here also extends its file; the simulator covers preallocated segments.
const MASTER_ARGS: [&str; 4] = ["--shards", "2", "--snapshot-every", "50"];

/// Submits jobs until told to stop or the master goes away; every label acknowledged is pushed
/// to `acked` the moment its reply arrives.
fn submitter(
    addr: String,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut client) = Client::connect(&addr, &support::client_key()) else {
            return;
        };
        let _ = client.set_timeout(Some(Duration::from_secs(5)));
        while !stop.load(Ordering::Relaxed) {
            let job = Submission::OneOff(parse_one_off("RUN|calc.py").unwrap());
            match client.submit(job) {
                Ok(reply) => acked.lock().unwrap().push(reply.label),
                Err(_) => return,
            }
        }
    })
}

fn start_master(port: u16, data: &std::path::Path) -> Master {
    let data = data.display().to_string();
    let mut args = vec!["--data-dir", data.as_str()];
    args.extend_from_slice(&MASTER_ARGS);
    Master::start_on(port, &args)
}

fn missing(master: &Master, labels: &[String]) -> Vec<String> {
    let mut client = support::connect(&master.addr);
    labels
        .iter()
        .filter(|l| client.status(l).is_err())
        .cloned()
        .collect()
}

#[test]
fn every_acknowledged_job_survives_power_cuts() {
    let seed: u64 = std::env::var("TITAN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64);
    eprintln!("power-loss seed {seed} (replay with TITAN_TEST_SEED={seed})");
    let mut rng = SmallRng::seed_from_u64(seed);
    let fs = CacheFs::default();
    let mountpoint = scratch_dir("power-loss-mnt");
    let mut mounted = match fs.mount(&mountpoint) {
        Ok(m) => Some(m),
        Err(e) => {
            cannot_set_up(&format!(
                "a FUSE mount at {} (needs root and /dev/fuse): {e}",
                mountpoint.display()
            ));
            return;
        }
    };
    let data = mountpoint.join("data");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut port = 0;
    for cut in 0..CUTS {
        let master = start_master(port, &data);
        port = master.port();
        let before = acked.lock().unwrap().clone();
        let lost = missing(&master, &before);
        assert!(
            lost.is_empty(),
            "after cut {cut}: {} acknowledged jobs lost: {lost:?}",
            lost.len()
        );
        // Cut the power once this many more submits are acknowledged, while more are in flight.
        let target = before.len() + rng.gen_range(5..120);
        let stop = Arc::new(AtomicBool::new(false));
        let client = submitter(master.addr.clone(), acked.clone(), stop.clone());
        let deadline = Instant::now() + Duration::from_secs(20);
        while acked.lock().unwrap().len() < target {
            assert!(
                Instant::now() < deadline,
                "submits stalled at {}",
                acked.lock().unwrap().len()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        fs.cut_power();
        master.proc.signal(Signal::SIGKILL);
        stop.store(true, Ordering::Relaxed);
        client.join().unwrap();
        drop(master);
        // Remount on the durable image, as a rebooted machine would see it.
        drop(mounted.take());
        fs.restore_durable();
        mounted = Some(fs.mount(&mountpoint).expect("remount"));
    }
    let master = start_master(port, &data);
    let all = acked.lock().unwrap().clone();
    let lost = missing(&master, &all);
    let counters = fs.counters();
    eprintln!(
        "power loss: {CUTS} cuts, {} acknowledged jobs, {} lost; {} O_DSYNC writes, {} file syncs, \
         {} directory syncs, {} unsynced bytes dropped",
        all.len(),
        lost.len(),
        counters.sync_writes,
        counters.file_syncs,
        counters.dir_syncs,
        counters.lost_bytes
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged jobs lost: {lost:?}",
        lost.len()
    );
    assert!(!all.is_empty());
    drop(master);
}
