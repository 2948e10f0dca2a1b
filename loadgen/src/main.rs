//! `titan-loadgen`: load generation and protocol torture tests for Titan.
//!
//! Every mode prints a human summary, or with `--json` exactly one JSON object, and exits
//! non-zero when any reply was wrong.

mod echo;
mod frag;
mod jobs;
mod ping;
mod report;
mod wire;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "titan-loadgen",
    version,
    about = "Load generator and protocol torture tests for Titan"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    /// The access file holding a client key; without it: `TITAN_KEY` (ROLE:HEX),
    /// `TITAN_ACCESS_FILE`, then `titan_data/access` here.
    #[arg(long, global = true, value_name = "PATH")]
    access_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Ping/Pong round trips: latency and throughput, closed or open loop.
    Ping(ping::PingArgs),
    /// Decoder torture test: split, coalesced and bad frames; every reply checked.
    Frag(frag::FragArgs),
    /// A minimal blocking echo server speaking TITAN_PROTO: the baseline for `ping`.
    Echo(echo::EchoArgs),
    /// Acknowledged submits: throughput and ack latency (jobs queue if no worker takes them).
    Submit(jobs::SubmitArgs),
    /// Jobs submitted → completed through real workers: throughput, master CPU per job, latency.
    E2e(jobs::E2eArgs),
    /// A chain of NOOP jobs: the hand-off from a completed parent to its child.
    Dag(jobs::DagArgs),
    /// The baseline for process jobs: a bare spawn-and-wait loop.
    Spawn(jobs::SpawnArgs),
}

/// Finds the key the mode's connections prove, unless it makes none to a master.
fn set_up_key(cli: &Cli) -> anyhow::Result<()> {
    let keyless = match &cli.mode {
        Mode::Echo(_) | Mode::Spawn(_) => true,
        Mode::Ping(args) => args.no_auth,
        _ => false,
    };
    let credential = if keyless {
        None
    } else {
        let lookup = titan_client::auth::KeyLookup::from_env(cli.access_file.clone());
        Some(lookup.credential(titan_client::auth::Want::Client)?)
    };
    wire::use_credential(credential);
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = set_up_key(&cli) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let outcome = match cli.mode {
        Mode::Ping(args) => ping::run(args),
        Mode::Frag(args) => frag::run(args),
        Mode::Echo(args) => echo::run(args),
        Mode::Submit(args) => jobs::submit(args),
        Mode::E2e(args) => jobs::e2e(args),
        Mode::Dag(args) => jobs::dag(args),
        Mode::Spawn(args) => jobs::spawn(args),
    };
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
