//! The command line: `titan <command>`, parsed with clap, and what each command does.
//!
//! Roles (`master`, `worker`) run until SIGINT or SIGTERM ([`signals`]); the client commands
//! ([`args`]) and the REPL ([`repl`]) talk to a master through [`client::Client`] and print for
//! people or, with `--json`, for scripts. The pieces: arguments in [`args`], what a command does
//! in [`commands`], building submissions from text and files in [`submission`], output in
//! [`render`] and [`json`], the reconnecting connection in [`session`].

use std::io::{self, Write};
use std::net::IpAddr;
use std::time::Duration;

pub mod args;
pub use titan_client as client;
pub mod cluster;
pub mod commands;
pub mod demo;
pub mod error;
pub mod json;
pub mod logs;
pub mod render;
pub mod repl;
pub mod session;
pub mod signals;
pub mod submission;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use titan_auth::{KeyLookup, Want};
use titan_master::{self as master, MasterConfig};
use titan_worker::{self as worker, WorkerConfig};

pub use args::ClientCommand;
pub use error::CliError;

/// Titan: scripts, services and DAGs of them on one Linux host or a few.
#[derive(Debug, Parser)]
#[command(name = "titan", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scheduler (TITAN_PROTO over TCP).
    Master(MasterArgs),
    /// Run a worker: register with the master and run the jobs it sends.
    Worker(WorkerArgs),
    /// A whole local cluster (a master and workers) until Ctrl-C or SIGTERM.
    Up(demo::UpArgs),
    /// Start a cluster on free ports, run the seed's Inception DAG and one-off jobs, print
    /// STATS, stop everything.
    Demo(demo::DemoArgs),
    /// A worker's companion that kills its jobs if the worker dies (started by the worker).
    #[command(name = "__sentinel", hide = true)]
    Sentinel,
    #[command(flatten)]
    Client(ClientCommand),
    /// The interactive shell (`titan>`): the seed's SUBMIT, SUBMIT_DAG, STATS and more; reads
    /// commands from stdin when it is not a terminal.
    Cli(args::ReplArgs),
}

#[derive(Debug, Args)]
pub struct MasterArgs {
    /// TCP port for TITAN_PROTO (0 picks a free port; the ready line shows it).
    #[arg(long, default_value_t = master::DEFAULT_PORT)]
    pub port: u16,
    /// Address to listen on. Only loopback addresses are accepted until TLS lands: keys are
    /// proved without sending them, but requests and replies still travel in clear.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Number of shards (glommio executors); default: the number of CPUs.
    #[arg(long)]
    pub shards: Option<usize>,
    /// Pin shard i to CPU i (only when Titan owns the host).
    #[arg(long)]
    pub pin: bool,
    /// Most connections open at once; past it, the longest-idle client connection is closed to
    /// make room (never a worker's), or the new one is refused when there is none.
    #[arg(long, default_value_t = titan_proto::limits::MAX_CONNECTIONS as u64, value_parser = clap::value_parser!(u64).range(2..=1_000_000))]
    pub max_connections: u64,
    /// Close a connection that stalls in the middle of a frame for this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub stall_timeout_ms: u64,
    /// Workers heartbeat this often; five missed beats make a worker dead (at least 50 ms, so a
    /// briefly busy host does not lose its workers).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub heartbeat_ms: u64,
    /// First retry delay of a failed job; it doubles per attempt (with jitter) up to the maximum.
    #[arg(long, default_value_t = 1000)]
    pub backoff_base_ms: u64,
    /// Longest retry delay.
    #[arg(long, default_value_t = 60_000)]
    pub backoff_max_ms: u64,
    /// First restart delay of a service that exited; it doubles per quick exit up to
    /// --backoff-max-ms (a service restarts until stopped).
    #[arg(long, default_value_t = 100)]
    pub service_restart_ms: u64,
    /// Crash-loop guard: a service that exits after this many starts within
    /// --crash-loop-window-ms is not restarted (it ends DEAD with the reason); 0 disables it.
    #[arg(long, default_value_t = 5)]
    pub crash_loop_starts: u32,
    /// The window of the crash-loop guard.
    #[arg(long, default_value_t = 10_000)]
    pub crash_loop_window_ms: u64,
    /// Most workers self-scaling may reach (spawned children included); default: the CPUs.
    #[arg(long)]
    pub max_workers: Option<u32>,
    /// Spawn a child worker when runnable jobs found no free slot for this long.
    #[arg(long, default_value_t = 5_000)]
    pub scale_after_ms: u64,
    /// Retire a spawned child worker idle for this long.
    #[arg(long, default_value_t = 45_000)]
    pub idle_timeout_ms: u64,
    /// UDP port where workers stream job output (0 picks a free port; the ready line shows it).
    #[arg(long, default_value_t = master::DEFAULT_LOG_PORT)]
    pub log_port: u16,
    /// Where the write-ahead log lives (it survives restarts and `kill -9`).
    #[arg(long, default_value = master::DEFAULT_DATA_DIR)]
    pub data_dir: std::path::PathBuf,
    /// Keep state in memory only: no write-ahead log (a restart loses every job). The data
    /// directory then holds only the access file.
    #[arg(long, conflicts_with = "data_dir")]
    pub memory_only: bool,
    /// The access file with every role's key, created with fresh keys (mode 0600) if missing;
    /// default: `access` in the data directory.
    #[arg(long, env = "TITAN_ACCESS_FILE", value_name = "PATH")]
    pub access_file: Option<std::path::PathBuf>,
    /// How the log reaches the disk: `group` (one synchronous write per batch) or `per-record`.
    #[arg(long, value_enum, default_value_t = WalSync::Group)]
    pub wal_sync: WalSync,
    /// Under load, the least microseconds between two log writes, so more records share each
    /// write (a quiet log writes at once; 0: write whenever the previous write is done).
    #[arg(long, default_value_t = titan_wal::limits::DEFAULT_BATCH_WINDOW.as_micros() as u64,
          value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub wal_batch_window_us: u64,
    /// Size of each log segment file in MiB (at least 12: a segment holds the largest record).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(12..=4096))]
    pub wal_segment_mb: u64,
    /// Create log segments as they fill instead of preallocating them zero-filled (saves disk
    /// writes on small or short-lived masters; each commit then also updates the file size).
    #[arg(long)]
    pub wal_no_preallocate: bool,
    /// Journal records between snapshots of a shard's state.
    #[arg(long, default_value_t = master::DEFAULT_SNAPSHOT_EVERY)]
    pub snapshot_every: u64,
    /// After a restart, how long dispatch waits for the workers the log knows to come back and
    /// report what they ran meanwhile; past it, their unreported attempts are re-queued.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub adopt_grace_ms: u64,
    /// A log damaged in the middle (acknowledged records corrupt) stops the master; with this
    /// flag it is cut after its last good batch instead, dropping the acknowledged records after
    /// it, once each damaged segment is copied to DATA_DIR/damaged/ (the operator's choice).
    #[arg(long, conflicts_with = "memory_only")]
    pub recover_to_last_good: bool,
    /// Plain jobs a worker may hold beyond its capacity, waiting in its own queue, so that a slot
    /// that frees starts the next one without a round trip to the master: NOOPs always, process
    /// jobs while its processes turn over within --prefetch-below-ms (never a service, SLEEP or
    /// job with a timeout, nor onto a worker running a service). 0 turns it off.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub prefetch: u32,
    /// A worker's processes turn over fast (for --prefetch) while their average run time is
    /// below this and one of them ended less than this long ago.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub prefetch_below_ms: u64,
}

/// `--wal-sync` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WalSync {
    Group,
    PerRecord,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Port this worker listens on and is known by in STATS (0 picks a free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// The master, HOST:PORT.
    #[arg(long, env = "TITAN_MASTER", default_value = "127.0.0.1:9090")]
    pub master: String,
    /// Jobs run at once.
    #[arg(long, default_value_t = 4)]
    pub capacity: u32,
    /// Skills advertised, comma-separated; jobs of another TYPE name a skill.
    #[arg(long, value_delimiter = ',', default_value = "GENERAL")]
    pub skills: Vec<String>,
    /// Where RUN and DEPLOY files come from.
    #[arg(long, default_value = "perm_files")]
    pub perm_files: std::path::PathBuf,
    /// Where each job gets its directory (cwd, stdout.log, stderr.log).
    #[arg(long, default_value = "titan_workspace")]
    pub workspace: std::path::PathBuf,
    /// Milliseconds between SIGTERM and SIGKILL when a job is killed.
    #[arg(long, default_value_t = 5000)]
    pub kill_grace_ms: u64,
    /// The worker that started this one (set by Inception).
    #[arg(long)]
    pub parent: Option<u32>,
    /// Spawned by scaling: may be retired when idle (set by the spawning worker).
    #[arg(long)]
    pub ephemeral: bool,
    /// The master's spawn ticket this worker answers (set by the spawning worker).
    #[arg(long)]
    pub spawn_ticket: Option<u64>,
    /// Run jobs at this niceness (0 to 19): when jobs saturate the host, the master and the
    /// workers keep the CPU they need to schedule (an idle host still gives jobs all of it).
    /// 0 leaves jobs at the worker's own priority.
    #[arg(long, default_value_t = titan_worker::DEFAULT_JOB_NICE, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub job_nice: i32,
    /// The access file holding the worker key; without it: `TITAN_KEY` (worker:HEX),
    /// `TITAN_ACCESS_FILE`, then `titan_data/access` here (where a master started here keeps
    /// it).
    #[arg(long, value_name = "PATH")]
    pub access_file: Option<std::path::PathBuf>,
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Master(args) => run_master(args),
        Command::Worker(args) => run_worker(args),
        Command::Up(args) => Ok(demo::up(args)?),
        Command::Demo(args) => Ok(demo::demo(args)?),
        Command::Sentinel => std::process::exit(worker::exec::run_sentinel()),
        Command::Client(command) => exit_with(commands::run(command)),
        Command::Cli(args) => exit_with(repl::run(args)),
    }
}

/// Ends the process with `status` unless it is 0. The client commands print their own errors, and
/// `wait` needs statuses other than 1, which an `Err` returned to `main` cannot carry.
fn exit_with(status: u8) -> anyhow::Result<()> {
    if status == 0 {
        return Ok(());
    }
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    std::process::exit(i32::from(status))
}

fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    if args.capacity == 0 {
        bail!("--capacity must be at least 1");
    }
    let credential = KeyLookup::from_env(args.access_file.clone())
        .credential(Want::Worker)
        .context("a worker needs the worker key")?;
    let listen = std::net::SocketAddr::new(args.bind, args.port);
    let mut config = WorkerConfig::new(listen, args.master, credential);
    config.capacity = args.capacity;
    config.skills = args
        .skills
        .iter()
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect();
    for skill in &config.skills {
        titan_core::ids::check_name(skill)
            .with_context(|| format!("--skills: {skill:?} is not a skill name"))?;
    }
    config.perm_files = args.perm_files;
    config.workspace = args.workspace;
    config.kill_grace = Duration::from_millis(args.kill_grace_ms);
    config.parent = args.parent;
    config.ephemeral = args.ephemeral;
    config.spawn_ticket = args.spawn_ticket;
    config.job_nice = args.job_nice;
    let master = config.master.clone();
    let announce = move |ready: worker::Ready| {
        println!(
            "titan worker ready on {} (worker {}, master {master})",
            ready.addr, ready.worker
        );
    };
    signals::run_role(
        "worker",
        |shutdown, ready| worker::run(config, shutdown, ready),
        announce,
    )
    .context("worker failed")
}

fn run_master(args: MasterArgs) -> anyhow::Result<()> {
    if !args.bind.is_loopback() {
        bail!(
            "refusing to listen on {}: beyond loopback, requests and replies would travel in \
             clear; that needs TLS, which this build does not implement yet",
            args.bind
        );
    }
    let mut config = MasterConfig::new(args.bind, args.port);
    if let Some(shards) = args.shards {
        config.shards = shards;
    }
    config.pin = args.pin;
    config.stall_timeout = Duration::from_millis(args.stall_timeout_ms.max(1));
    config.max_connections = args.max_connections as usize;
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_ms);
    config.core.heartbeat_timeout = config.heartbeat_interval * 5;
    config.core.backoff_base = Duration::from_millis(args.backoff_base_ms);
    config.core.backoff_max = Duration::from_millis(args.backoff_max_ms.max(args.backoff_base_ms));
    config.core.service_restart_base = Duration::from_millis(args.service_restart_ms);
    config.core.adopt_grace = Duration::from_millis(args.adopt_grace_ms);
    config.core.crash_loop_starts = args.crash_loop_starts;
    config.core.crash_loop_window = Duration::from_millis(args.crash_loop_window_ms);
    config.core.max_workers = args
        .max_workers
        .unwrap_or(master::default_shards() as u32)
        .max(1);
    config.log_port = args.log_port;
    config.data_dir = (!args.memory_only).then(|| args.data_dir.clone());
    config.access_file = Some(
        args.access_file
            .clone()
            .unwrap_or_else(|| args.data_dir.join(titan_auth::ACCESS_FILE_NAME)),
    );
    config.wal.recover_to_last_good = args
        .recover_to_last_good
        .then(|| master::damaged_copies_dir(&args.data_dir));
    config.wal.segment_bytes = args.wal_segment_mb << 20;
    config.wal.preallocate = !args.wal_no_preallocate;
    config.wal.commit_mode = match args.wal_sync {
        WalSync::Group => titan_wal::CommitMode::Group,
        WalSync::PerRecord => titan_wal::CommitMode::PerRecord,
    };
    config.snapshot_every = args.snapshot_every;
    config.wal.batch_window = Duration::from_micros(args.wal_batch_window_us);
    config.core.spawn_after = Duration::from_millis(args.scale_after_ms);
    // Look for backlogs often enough that a decision comes soon after the threshold passes.
    config.core.scaling_interval =
        (config.core.spawn_after / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    config.core.idle_timeout = Duration::from_millis(args.idle_timeout_ms);
    config.core.prefetch = args.prefetch;
    config.core.prefetch_below = Duration::from_millis(args.prefetch_below_ms);
    signals::run_role(
        "master",
        |shutdown, ready| master::run(config, shutdown, ready),
        |ready: master::Ready| {
            // The log address as IP:PORT even for IPv6, as the line always read.
            println!(
                "titan master ready on {} ({} shards, logs on udp {}:{})",
                ready.addr,
                ready.shards,
                ready.log_addr.ip(),
                ready.log_addr.port()
            );
        },
    )
    .context("master failed")
}

#[cfg(test)]
mod tests;
