//! The master process: one glommio executor per shard, all accepting on the same port.
//!
//! [`run`] starts the shards (shard 0 binds first so that `--port 0` resolves to one port that the
//! other shards then share through SO_REUSEPORT), reports [`Ready`] once every shard serves, and
//! waits until its [`ShutdownHandle`] is triggered or a shard fails; then it stops every shard and
//! joins them. Signals and the ready line belong to whoever embeds it (the `titan` binary). Each
//! shard is thin IO around its core and the pure router in `titan_core::router` (`shard.rs`).
//! Connections are long-lived and pipelined (`connection.rs`).

mod auth;
mod connection;
mod conns;
mod directory;
mod effects;
mod frames;
mod gather;
mod logs;
mod membership;
mod mesh;
mod persist;
mod queries;
pub mod recovery;
mod remote;
mod requests;
mod scaling;
mod shard;
mod startup;
mod stats;
mod status;
mod timer;
mod workers;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use tracing::{error, info};

use mesh::MESH_CHANNEL_CAPACITY;
use titan_core::{CoreConfig, LoadTable, WorkerIdAllocator};
use titan_proto::limits::{MAX_CONNECTIONS, STALL_TIMEOUT};
use titan_runtime::shutdown::{self, ShutdownHandle};
use titan_runtime::{EXECUTOR_IO_MEMORY, EXECUTOR_RING_DEPTH};

/// How the master is run; the CLI fills this from `titan master` flags.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    pub bind: IpAddr,
    pub port: u16,
    pub shards: usize,
    /// Pin shard `i` to CPU `i`. Off by default: masters, workers and the load generator often
    /// share a small host, and pinned executors would fight over the same cores.
    pub pin: bool,
    pub stall_timeout: Duration,
    pub max_connections: usize,
    /// How often workers are told to send heartbeats.
    pub heartbeat_interval: Duration,
    /// The scheduler's knobs (retries, backoff, heartbeat timeout, history, scaling).
    pub core: CoreConfig,
    /// Seeds the cores' random number generators (retry jitter).
    pub seed: u64,
    /// UDP port of the log sink (0 picks a free one).
    pub log_port: u16,
    /// Where the write-ahead log lives; `None` keeps state in memory only.
    pub data_dir: Option<std::path::PathBuf>,
    pub wal: titan_wal::WalConfig,
    /// Core records between snapshots.
    pub snapshot_every: u64,
    /// The access file (the keys of every role); `None`: `access` in the data directory (in
    /// `titan_data/` when state is kept in memory only).
    pub access_file: Option<std::path::PathBuf>,
}

impl MasterConfig {
    pub fn new(bind: IpAddr, port: u16) -> MasterConfig {
        MasterConfig {
            bind,
            port,
            shards: default_shards(),
            pin: false,
            stall_timeout: STALL_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            core: CoreConfig {
                heartbeat_timeout: DEFAULT_HEARTBEAT_INTERVAL * 5,
                ..CoreConfig::default()
            },
            seed: std::process::id() as u64,
            log_port: DEFAULT_LOG_PORT,
            data_dir: Some(std::path::PathBuf::from(DEFAULT_DATA_DIR)),
            wal: wal_config(),
            snapshot_every: persist::DEFAULT_SNAPSHOT_EVERY,
            access_file: None,
        }
    }

    /// Where the access file is: as configured, else `access` in the data directory.
    pub fn access_path(&self) -> std::path::PathBuf {
        match (&self.access_file, &self.data_dir) {
            (Some(path), _) => path.clone(),
            (None, Some(data)) => data.join(titan_auth::ACCESS_FILE_NAME),
            (None, None) => {
                std::path::Path::new(DEFAULT_DATA_DIR).join(titan_auth::ACCESS_FILE_NAME)
            }
        }
    }
}

/// The log's settings: a record can be as large as the largest frame (a submission carrying an
/// inline script), so no accepted request can be too large to journal.
fn wal_config() -> titan_wal::WalConfig {
    let mut config = titan_wal::WalConfig::default();
    config.max_record_bytes = titan_proto::limits::MAX_FRAME_LEN as usize + (256 << 10);
    config.max_pending_bytes = config.max_pending_bytes.max(2 * config.max_record_bytes);
    config
}

/// Where the write-ahead log lives unless configured.
pub const DEFAULT_DATA_DIR: &str = "titan_data";

/// Where `--recover-to-last-good` keeps copies of the damaged segments it cuts.
pub fn damaged_copies_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("damaged")
}

pub use persist::DEFAULT_SNAPSHOT_EVERY;

/// The master's TCP port unless configured (the one client commands use by default).
pub const DEFAULT_PORT: u16 = 9090;

/// The log sink's UDP port unless configured.
pub const DEFAULT_LOG_PORT: u16 = 9091;

/// Workers heartbeat about once a second; five missed beats make a worker dead.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// One shard per CPU the process may run on.
pub fn default_shards() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("--shards must be between 1 and {max}, got {got}")]
    BadShardCount { got: usize, max: usize },
    #[error("could not start shard {shard}: {reason}")]
    Spawn { shard: usize, reason: String },
    #[error("could not open the log port {addr} (UDP): {reason}")]
    LogBind { addr: SocketAddr, reason: String },
    #[error("shard {shard} could not listen on {addr}: {source}")]
    Bind {
        shard: usize,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("shard {shard} stopped unexpectedly")]
    ShardLost { shard: usize },
    #[error("recovering the data directory failed: {0}")]
    Recovery(#[from] recovery::RecoveryError),
    #[error(transparent)]
    Access(#[from] titan_auth::AuthError),
}

/// What shards tell the main thread while starting.
pub(crate) enum ShardEvent {
    /// Listening on this address (the next shard may start).
    Bound(SocketAddr),
    /// State recovered; serving.
    Ready,
    Failed(MasterError),
}

/// Largest shard count accepted.
pub const MAX_SHARDS: usize = 64;

/// State every shard shares: the master's own stop (triggered once it is to stop, whatever the
/// reason), the connection count, the workers' load table and the worker id allocator
/// (registration is rare, so a mutex is fine there; placement reads the load table without
/// locks).
#[derive(Clone)]
pub(crate) struct Shared {
    pub stop: ShutdownHandle,
    pub connections: Arc<AtomicUsize>,
    pub config: Arc<MasterConfig>,
    pub load: Arc<LoadTable>,
    pub worker_ids: Arc<Mutex<WorkerIdAllocator>>,
    /// The log sink's actual UDP port, set by shard 0 before any shard serves (0: none yet).
    pub log_port: Arc<std::sync::atomic::AtomicU16>,
    /// The log generation shards open (none: memory only).
    pub generation: Option<Arc<recovery::Generation>>,
    /// Shards done replaying their logs (recovery ends when all are).
    pub recovered_shards: Arc<AtomicUsize>,
    /// The keys: connections' handshakes, workers' and attempts' keys, tickets.
    pub auth: Arc<auth::MasterAuth>,
}

impl Shared {
    pub fn log_port(&self) -> u16 {
        self.log_port.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// What a master reports once every shard serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// The TCP address clients and workers connect to (the port taken when 0 was asked).
    pub addr: SocketAddr,
    /// The UDP address of the log sink workers stream job output to.
    pub log_addr: SocketAddr,
    pub shards: usize,
}

/// Runs a master until `shutdown` is triggered or a shard fails. Sends [`Ready`] on `ready` once
/// every shard listens and has recovered its state; a shutdown triggered before then takes effect
/// once the master is ready (recovery is not cut short).
pub fn run(
    config: MasterConfig,
    shutdown: ShutdownHandle,
    ready: Sender<Ready>,
) -> Result<(), MasterError> {
    let Started {
        shared,
        handles,
        shard_events,
        ready: report,
    } = start(config)?;
    info!(addr = %report.addr, shards = report.shards, "master ready");
    // Nobody listening for readiness is no reason not to serve.
    let _ = ready.send(report);
    let outcome = wait_for_stop(&shutdown, &shared, &shard_events);
    shared.stop.trigger();
    join_all(handles);
    info!("master stopped");
    outcome
}

/// A master whose shards all serve.
struct Started {
    shared: Shared,
    handles: Vec<glommio::ExecutorJoinHandle<()>>,
    shard_events: Receiver<ShardEvent>,
    ready: Ready,
}

/// Starts every shard and waits until all of them have recovered; on a failure, stops and joins
/// the shards already started.
fn start(config: MasterConfig) -> Result<Started, MasterError> {
    if config.shards == 0 || config.shards > MAX_SHARDS {
        return Err(MasterError::BadShardCount {
            got: config.shards,
            max: MAX_SHARDS,
        });
    }
    let auth = Arc::new(auth::MasterAuth::load(&config.access_path())?);
    let generation = match &config.data_dir {
        Some(data) => Some(Arc::new(recovery::prepare(
            data,
            config.shards as u32,
            &config.wal,
            &config.core,
        )?)),
        None => None,
    };
    let shared = Shared {
        stop: ShutdownHandle::default(),
        connections: Arc::new(AtomicUsize::new(0)),
        config: Arc::new(config.clone()),
        load: Arc::new(LoadTable::new()),
        worker_ids: Arc::new(Mutex::new(WorkerIdAllocator::new())),
        log_port: Arc::new(std::sync::atomic::AtomicU16::new(0)),
        generation,
        recovered_shards: Arc::new(AtomicUsize::new(0)),
        auth,
    };
    let mesh = (config.shards > 1).then(|| MeshBuilder::full(config.shards, MESH_CHANNEL_CAPACITY));
    let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
    let mut handles = Vec::with_capacity(config.shards);
    let mut addr = SocketAddr::new(config.bind, config.port);
    for index in 0..config.shards {
        let placement = if config.pin {
            Placement::Fixed(index)
        } else {
            Placement::Unbound
        };
        let (shard_shared, ready_tx, mesh) = (shared.clone(), ready_tx.clone(), mesh.clone());
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("titan-shard-{index}"))
            .io_memory(EXECUTOR_IO_MEMORY)
            .ring_depth(EXECUTOR_RING_DEPTH)
            .spawn(move || startup::serve(index, addr, shard_shared, mesh, ready_tx))
            .map_err(|e| MasterError::Spawn {
                shard: index,
                reason: e.to_string(),
            })?;
        handles.push(handle);
        // Every shard binds the address the first one actually got, so `--port 0` works.
        match ready_rx.recv() {
            Ok(ShardEvent::Bound(bound)) => addr = bound,
            Ok(ShardEvent::Failed(e)) => return Err(abandon(&shared, handles, e)),
            Ok(ShardEvent::Ready) | Err(_) => return Err(MasterError::ShardLost { shard: index }),
        }
    }
    // Shards recover their state concurrently; the master is ready when all have.
    for _ in 0..config.shards {
        match ready_rx.recv() {
            Ok(ShardEvent::Ready) => {}
            Ok(ShardEvent::Failed(e)) => return Err(abandon(&shared, handles, e)),
            Ok(ShardEvent::Bound(_)) | Err(_) => {
                let lost = MasterError::ShardLost { shard: 0 };
                return Err(abandon(&shared, handles, lost));
            }
        }
    }
    let ready = Ready {
        addr,
        log_addr: SocketAddr::new(addr.ip(), shared.log_port()),
        shards: config.shards,
    };
    Ok(Started {
        shared,
        handles,
        shard_events: ready_rx,
        ready,
    })
}

/// Stops and joins the shards started so far, after `error` made starting fail.
fn abandon(
    shared: &Shared,
    handles: Vec<glommio::ExecutorJoinHandle<()>>,
    error: MasterError,
) -> MasterError {
    shared.stop.trigger();
    join_all(handles);
    error
}

/// Blocks until `shutdown` is triggered or a shard reports that it stopped on its own.
fn wait_for_stop(
    shutdown: &ShutdownHandle,
    shared: &Shared,
    shard_events: &Receiver<ShardEvent>,
) -> Result<(), MasterError> {
    loop {
        match shard_events.recv_timeout(shutdown::POLL_INTERVAL) {
            Ok(ShardEvent::Failed(e)) => {
                error!(error = %e, "a shard failed");
                return Err(e);
            }
            Ok(ShardEvent::Bound(_) | ShardEvent::Ready) | Err(RecvTimeoutError::Timeout) => {}
            // Shards only end once stopped, and one that fails says so first.
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        if shutdown.is_triggered() {
            info!("shutting down");
            return Ok(());
        }
        if shared.stop.is_triggered() {
            return Ok(());
        }
    }
}

fn join_all(handles: Vec<glommio::ExecutorJoinHandle<()>>) {
    for handle in handles {
        if let Err(e) = handle.join() {
            error!(error = %e, "a shard thread panicked");
        }
    }
}
