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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
