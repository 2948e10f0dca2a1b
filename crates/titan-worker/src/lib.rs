//! The worker: [`run`] keeps a session with the master (a handshake proving the worker key and
//! checking the master's own proof, register, heartbeats, jobs in, reports out; reconnecting
//! with backoff, jobs outliving sessions), reserves the worker's own port (`peers`, which serves
//! job files to ticket holders), and runs what it is sent. `jobs` is thin IO around [`ledger`],
//! the pure worker core (attempts, retained reports, readiness, timers), and [`handlers`], the
//! registry of what runs each kind of job (and so the skills advertised); [`exec`] is the process
//! engine, [`drain`] writes and ships each job's output. Embeddable: a [`ShutdownHandle`] stops
//! it, [`Ready`] reports its first registration.

mod children;
pub mod drain;
pub mod exec;
pub mod handlers;
mod jobs;
pub mod ledger;
mod peers;
mod session;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use tracing::{error, info, warn};

use exec::{EngineConfig, ProcessEngine};
use jobs::Jobs;
use peers::Tickets;
use titan_auth::Credential;
use titan_runtime::shutdown::{Shutdown, ShutdownHandle};
use titan_runtime::{EXECUTOR_IO_MEMORY, EXECUTOR_RING_DEPTH};

/// Niceness of job processes unless configured: a job that floods the host (100 MB of output on
/// two cores) then leaves NOOP scheduling at a median 85% of its quiet throughput instead of 75%
/// (`scripts/bench-logs.sh 3`, BENCHMARKS.md). Niceness only matters under contention: on an
/// otherwise idle host a job still gets every core.
pub const DEFAULT_JOB_NICE: i32 = 10;

/// How the worker is run; the CLI fills this from `titan worker` flags.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Where the worker listens (port 0 picks a free one).
    pub listen: SocketAddr,
    pub master: String,
    pub capacity: u32,
    pub skills: Vec<String>,
    pub perm_files: PathBuf,
    pub workspace: PathBuf,
    /// SIGTERM → SIGKILL grace when a job is killed.
    pub kill_grace: Duration,
    /// The worker that started this one (Inception), if any.
    pub parent: Option<u32>,
    /// Spawned by scaling: may be retired when idle.
    pub ephemeral: bool,
    pub spawn_ticket: Option<u64>,
    /// Niceness of job processes (0: unchanged).
    pub job_nice: i32,
    /// First pause before reconnecting to the master; it doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// The `titan` binary, started with [`SENTINEL_COMMAND`] as the sentinel; `None`: this
    /// executable (a worker embedded in another program points it at `titan`).
    pub sentinel_program: Option<PathBuf>,
    /// The worker key this worker proves to its master (and hands to its child workers).
    pub credential: Credential,
}

impl WorkerConfig {
    pub fn new(listen: SocketAddr, master: String, credential: Credential) -> WorkerConfig {
        WorkerConfig {
            listen,
            master,
            credential,
            capacity: 4,
            skills: vec![titan_core::GENERAL.to_string()],
            perm_files: PathBuf::from("perm_files"),
            workspace: PathBuf::from("titan_workspace"),
            kill_grace: exec::DEFAULT_KILL_GRACE,
            parent: None,
            ephemeral: false,
            spawn_ticket: None,
            job_nice: DEFAULT_JOB_NICE,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
            sentinel_program: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("could not start the worker's executor: {0}")]
    Spawn(String),
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("could not start the process engine: {0}")]
    Engine(#[from] exec::EngineError),
    #[error("could not start the sentinel that kills jobs if the worker dies: {0}")]
    Sentinel(std::io::Error),
    #[error("the worker's executor stopped unexpectedly")]
    Lost,
}

/// What a worker reports after its first registration with the master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// Where the worker listens (the port taken when 0 was asked).
    pub addr: SocketAddr,
    /// The id the master gave it.
    pub worker: u32,
}

/// Runs a worker until `shutdown` is triggered or the master retires it. Sends [`Ready`] on
/// `ready` after its first registration (a master that is not up yet is retried meanwhile).
pub fn run(
    config: WorkerConfig,
    shutdown: ShutdownHandle,
    ready: Sender<Ready>,
) -> Result<(), WorkerError> {
    if !config.perm_files.is_dir() {
        // Not fatal: NOOP, inline scripts and services from elsewhere still run.
        warn!(
            perm_files = %config.perm_files.display(),
            "perm_files is not a directory here: RUN and DEPLOY of its files will fail (see --perm-files)"
        );
    }
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("titan-worker")
        .io_memory(EXECUTOR_IO_MEMORY)
        .ring_depth(EXECUTOR_RING_DEPTH)
        .spawn(move || serve(config, shutdown, Readiness::new(ready)))
        .map_err(|e| WorkerError::Spawn(e.to_string()))?;
    handle.join().map_err(|_| WorkerError::Lost)?
}

/// Reports the first registration, once: later ones (after the master came back) are not news.
pub(crate) struct Readiness(Option<Sender<Ready>>);

impl Readiness {
    fn new(ready: Sender<Ready>) -> Readiness {
        Readiness(Some(ready))
    }

    pub(crate) fn registered(&mut self, addr: SocketAddr, worker: u32) {
        if let Some(ready) = self.0.take() {
            // Nobody listening for readiness is no reason not to work.
            let _ = ready.send(Ready { addr, worker });
        }
    }
}

async fn serve(
    config: WorkerConfig,
    stop: ShutdownHandle,
    ready: Readiness,
) -> Result<(), WorkerError> {
    let listener = glommio::net::TcpListener::bind(config.listen)
        .and_then(|l| l.local_addr().map(|a| (l, a)))
        .map_err(|e| WorkerError::Bind {
            addr: config.listen,
            source: e.into(),
        })?;
    let (listener, bound) = listener;
    let mut engine_config = EngineConfig::new(&config.perm_files, &config.workspace);
    engine_config.sentinel = Some(Arc::new(start_sentinel(
        config.sentinel_program.as_deref(),
    )?));
    engine_config.kill_grace = config.kill_grace;
    engine_config.job_nice = config.job_nice;
    engine_config.max_running = config.capacity.max(1) as usize;
    // The master may place prefetched jobs beyond the capacity; they wait in the engine's queue.
    // (The master clamps a capacity to its maximum; room is left for children and stragglers.)
    let most_placed = config.capacity.min(titan_core::limits::MAX_WORKER_CAPACITY)
        + titan_core::limits::MAX_PREFETCH;
    engine_config.max_jobs = engine_config.max_jobs.max(most_placed as usize + 64);
    let engine = ProcessEngine::start(engine_config)?;
    let shutdown = Shutdown::default();
    glommio::spawn_local(shutdown.clone().follow(stop)).detach();
    let workspace = Rc::new(
        std::path::absolute(&config.workspace).unwrap_or_else(|_| config.workspace.clone()),
    );
    let tickets = Rc::new(Tickets::default());
    glommio::spawn_local(peers::serve(
        listener,
        shutdown.clone(),
        workspace,
        tickets.clone(),
    ))
    .detach();
    let children = children::ChildTemplate::new(
        config.master.clone(),
        &config.perm_files,
        &config.workspace,
        config.capacity,
        config.skills.clone(),
        config.job_nice,
        config.credential.clone(),
    );
    let jobs = Rc::new(Jobs::new(engine.clone(), children));
    let link = session::Link {
        jobs: &jobs,
        tickets: &tickets,
    };
    session::keep_connected(&config, bound, link, &shutdown, ready).await;
    info!("stopping: killing running jobs");
    engine.shutdown().await;
    if let Err(e) = std::io::Write::flush(&mut std::io::stdout()) {
        error!(error = %e, "flushing stdout");
    }
    Ok(())
}

/// The hidden subcommand that runs [`exec::run_sentinel`].
pub const SENTINEL_COMMAND: &str = "__sentinel";

/// Starts `program` (by default this binary) as the worker's sentinel (see [`exec::sentinel`]).
fn start_sentinel(program: Option<&std::path::Path>) -> Result<exec::Sentinel, WorkerError> {
    let exe = match program {
        Some(program) => program.to_path_buf(),
        None => std::env::current_exe().map_err(WorkerError::Sentinel)?,
    };
    exec::Sentinel::start(&exe, &[SENTINEL_COMMAND]).map_err(WorkerError::Sentinel)
}
