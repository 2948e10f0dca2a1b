//! `titan up` (a local cluster until Ctrl-C) and `titan demo` (the seed's walkthrough, start to
//! finish, on free ports, leaving nothing running).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use super::client::Client;
use super::cluster::{free_port, ClusterLayout, LocalCluster};
use super::error::CliError;
use super::signals;
use titan_auth::{KeyLookup, Want};
use titan_core::grammar::{parse_dag, parse_one_off};
use titan_core::{JobState, Submission};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Workers to start.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// The master's port: the default is the one client commands use when not told otherwise.
    #[arg(long, default_value_t = titan_master::DEFAULT_PORT)]
    pub port: u16,
    /// The UDP port where workers stream job output.
    #[arg(long, default_value_t = titan_master::DEFAULT_LOG_PORT)]
    pub log_port: u16,
    #[command(flatten)]
    pub layout: LayoutArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub layout: LayoutArgs,
}

#[derive(Debug, Args)]
pub struct LayoutArgs {
    /// Where RUN and DEPLOY files come from.
    #[arg(long, default_value = "perm_files")]
    pub perm_files: PathBuf,
    /// Where jobs run.
    #[arg(long, default_value = "titan_workspace")]
    pub workspace: PathBuf,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 4)]
    pub capacity: u32,
    /// The master's data directory (its write-ahead log); `titan demo` uses a fresh one inside
    /// the workspace and removes it afterwards.
    #[arg(long, default_value = titan_master::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

impl LayoutArgs {
    fn layout(&self) -> Result<ClusterLayout, CliError> {
        if !self.perm_files.is_dir() {
            return Err(CliError::Local(format!(
                "{} is not a directory: run from the repository root or pass --perm-files",
                self.perm_files.display()
            )));
        }
        let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        Ok(ClusterLayout {
            perm_files: absolute(&self.perm_files),
            workspace: absolute(&self.workspace),
            worker_capacity: self.capacity.max(1),
            data_dir: absolute(&self.data_dir),
            master_flags: Vec::new(),
            master_port: 0,
            log_port: 0,
        })
    }
}

/// Runs a master and workers until SIGINT or SIGTERM, then stops all of them.
pub fn up(args: UpArgs) -> Result<(), CliError> {
    signals::install_handlers().map_err(|e| CliError::Local(e.to_string()))?;
    let mut layout = args.layout.layout()?;
    layout.master_port = args.port;
    layout.log_port = args.log_port;
    let mut cluster = LocalCluster::start(args.workers, &layout)?;
    let ports: Vec<&str> = cluster.workers.iter().map(|w| w.addr.as_str()).collect();
    println!(
        "titan up: master on {}, {} workers on {}; Ctrl-C stops everything",
        cluster.master.addr,
        ports.len(),
        ports.join(", ")
    );
    let crashed = loop {
        if signals::wait_signal(Duration::from_millis(200)).is_some() {
            break None;
        }
        if let Some(what) = cluster.exited() {
            break Some(what);
        }
    };
    let killed = cluster.stop();
    if !killed.is_empty() {
        eprintln!("had to kill: {}", killed.join(", "));
    }
    match crashed {
        Some(what) => Err(CliError::Local(format!(
            "{what}; stopped the rest of the cluster"
        ))),
        None => {
            println!("titan up: stopped");
            Ok(())
        }
    }
}

/// How long the demo waits for its DAG before giving up.
const DEMO_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts a cluster, runs the seed's Inception DAG and one-off commands, prints STATS, stops.
pub fn demo(args: DemoArgs) -> Result<(), CliError> {
    let mut layout = args.layout.layout()?;
    // The demo starts from nothing and leaves nothing: its log lives and dies with it.
    layout.data_dir = layout
        .workspace
        .join(format!(".demo-data-{}", std::process::id()));
    let (dash, a, b, c) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let dag = format!(
        "START_DASH|DEPLOY|server_dashboard.py|{dash}|1|0|[] ; \
         WORKER_A|DEPLOY|Worker.jar|{a}|1|2|[START_DASH] ; \
         WORKER_B|DEPLOY|Worker.jar|{b}|1|2|[START_DASH] ; \
         RUN_CALC|RUN|calc.py|2|0|[WORKER_A, WORKER_B] ; \
         WORKER_C|DEPLOY|Worker.jar|{c}|1|5|[RUN_CALC]"
    );
    let one_offs = [
        "RUN|calc.py",
        "PDF_CONVERT|future_report.pdf|1|8000",
        "EMAIL_ALERT|admin@titan.com|1|0",
    ];
    let mut cluster = LocalCluster::start(1, &layout)?;
    println!(
        "titan demo: master on {}, worker on {}",
        cluster.master.addr, cluster.workers[0].addr
    );
    let result = run_demo(&cluster.master.addr, &layout.access_file(), &dag, &one_offs);
    let crashed = cluster.exited();
    let killed = cluster.stop();
    let _ = std::fs::remove_dir_all(&layout.data_dir);
    result?;
    if let Some(what) = crashed {
        return Err(CliError::Local(what));
    }
    if !killed.is_empty() {
        return Err(CliError::Local(format!(
            "did not stop in time and had to be killed: {}",
            killed.join(", ")
        )));
    }
    println!("titan demo: cluster stopped, nothing left running");
    Ok(())
}

fn run_demo(
    master: &str,
    access_file: &std::path::Path,
    dag: &str,
    one_offs: &[&str],
) -> Result<(), CliError> {
    let keys = KeyLookup {
        flag: Some(access_file.to_path_buf()),
        ..KeyLookup::default()
    };
    let credential = keys
        .credential(Want::Client)
        .map_err(super::client::ClientError::from)?;
    let mut client = Client::connect(master, &credential)?;
    println!("\ntitan> SUBMIT_DAG {dag}");
    let submitted = client.submit(Submission::Dag(parse_dag(dag)?))?;
    for job in &submitted.jobs {
        println!("{}", job.label);
    }
    for text in one_offs {
        println!("titan> SUBMIT {text}");
        let reply = client.submit(Submission::OneOff(parse_one_off(text)?))?;
        println!("{}", reply.label);
    }
    let label = |name: &str| format!("{}:{name}", submitted.label);
    let calc = client.wait(&[label("RUN_CALC")], DEMO_TIMEOUT)?;
    match calc.jobs.first() {
        Some(job) if job.state == JobState::Completed => {}
        Some(job) => {
            return Err(CliError::Local(format!(
                "RUN_CALC ended {}: {:?}",
                job.state, job.last_error
            )))
        }
        None => return Err(CliError::Local("RUN_CALC did not finish in time".into())),
    }
    // WORKER_C is a service: it never finishes; it is done once it runs and its child worker
    // has registered (four workers in all).
    let deadline = Instant::now() + DEMO_TIMEOUT;
    loop {
        let worker_c = client.status(&label("WORKER_C"))?;
        let stats = client.stats()?;
        if worker_c.ready && stats.active_workers >= 4 {
            break;
        }
        if worker_c.state.is_terminal() || Instant::now() > deadline {
            return Err(CliError::Local(format!(
                "WORKER_C did not come up: {} {:?}",
                worker_c.state, worker_c.last_error
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("titan> STATS");
    print!("{}", client.stats_text()?);
    Ok(())
}
