//! The roles are embeddable: a master and a worker run on threads of this test process, report
//! readiness as values (no stdout to parse), serve a job, and stop through one shutdown handle.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use support::{perm_files, scratch_dir, titan_bin, DEADLINE};
use titan::cli::client::Client;
use titan::core::grammar::parse_one_off;
use titan::core::{JobState, Submission};
use titan::master::{self, MasterConfig, MasterError};
use titan::runtime::shutdown::ShutdownHandle;
use titan::worker::{self, WorkerConfig, WorkerError};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A two-shard master on free ports, journaling to `data`.
fn start_master(
    data: &Path,
    shutdown: &ShutdownHandle,
) -> (master::Ready, JoinHandle<Result<(), MasterError>>) {
    let mut config = MasterConfig::new(LOOPBACK, 0);
    config.shards = 2;
    config.log_port = 0;
    config.data_dir = Some(data.to_path_buf());
    config.wal.segment_bytes = 16 << 20;
    config.wal.preallocate = false;
    let (ready_tx, ready_rx) = mpsc::channel();
    let shutdown = shutdown.clone();
    let thread = std::thread::spawn(move || master::run(config, shutdown, ready_tx));
    let ready = ready_rx
        .recv_timeout(DEADLINE)
        .expect("the master is ready");
    (ready, thread)
}

#[test]
fn a_master_and_a_worker_run_embedded_and_stop_through_one_handle() {
    let data = scratch_dir("embedded-data");
    let shutdown = ShutdownHandle::default();
    let (ready, master) = start_master(&data, &shutdown);
    assert_eq!(ready.shards, 2);
    assert_eq!(ready.addr.ip(), LOOPBACK);
    assert_ne!(ready.addr.port(), 0, "the port taken is reported");
    assert_ne!(ready.log_addr.port(), 0, "the log port taken is reported");

    // The master created its access file in its data directory; the worker and the client read
    // their keys from it.
    let keys = titan::auth::KeyLookup {
        flag: Some(data.join(titan::auth::ACCESS_FILE_NAME)),
        ..Default::default()
    };
    let worker_key = keys.credential(titan::auth::Want::Worker).unwrap();
    let client_key = keys.credential(titan::auth::Want::Client).unwrap();
    let listen = SocketAddr::new(LOOPBACK, 0);
    let mut config = WorkerConfig::new(listen, ready.addr.to_string(), worker_key);
    config.perm_files = perm_files();
    config.workspace = scratch_dir("embedded-workspace");
    // The sentinel is `titan __sentinel`; this test executable has no such command.
    config.sentinel_program = Some(titan_bin());
    let (worker_tx, worker_rx) = mpsc::channel();
    let worker = std::thread::spawn({
        let shutdown = shutdown.clone();
        move || worker::run(config, shutdown, worker_tx)
    });
    let registered: worker::Ready = worker_rx
        .recv_timeout(DEADLINE)
        .expect("the worker is ready");
    assert_eq!(registered.addr.ip(), LOOPBACK);
    assert_ne!(registered.addr.port(), 0);

    let mut client = Client::connect(&ready.addr.to_string(), &client_key).unwrap();
    let job = client
        .submit(Submission::OneOff(parse_one_off("NOOP").unwrap()))
        .unwrap()
        .label;
    let done = client.wait(std::slice::from_ref(&job), DEADLINE).unwrap();
    assert_eq!(done.jobs.len(), 1, "{done:?}");
    assert_eq!(done.jobs[0].state, JobState::Completed, "{done:?}");
    drop(client);

    shutdown.trigger();
    let worker_end: Result<(), WorkerError> = worker.join().expect("the worker thread");
    worker_end.expect("the worker stops cleanly");
    master
        .join()
        .expect("the master thread")
        .expect("the master stops cleanly");
    // The worker's sentinel (`titan __sentinel`) finished and was reaped: nothing is left behind.
    assert_eq!(children(), Vec::<String>::new());

    // Stopped cleanly means the log was closed and its lock released: a new master in this same
    // process opens the directory and finds the job done.
    let again = ShutdownHandle::default();
    let (ready, master) = start_master(&data, &again);
    let mut client = Client::connect(&ready.addr.to_string(), &client_key).unwrap();
    assert_eq!(client.status(&job).unwrap().state, JobState::Completed);
    drop(client);
    again.trigger();
    master.join().unwrap().unwrap();
}

/// The processes this one started that still exist (running or zombie), as `/proc` states them.
fn children() -> Vec<String> {
    let me = std::process::id().to_string();
    let entries = std::fs::read_dir("/proc").expect("reading /proc");
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter(|stat| {
            // After the command: state, then the parent's pid.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after.split_whitespace().nth(1) == Some(me.as_str())
        })
        .collect()
}
