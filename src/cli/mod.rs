//! The command line: `titan <command>`, parsed with clap, and what each command does.
//!
//! Roles (`master`, and later `worker`) run until stopped; the client commands ([`args`]) and the
//! REPL ([`repl`]) talk to a master through [`client::Client`] and print for people or, with
//! `--json`, for scripts. The pieces: arguments in [`args`], what a command does in [`commands`],
//! building submissions from text and files in [`submission`], output in [`render`] and [`json`],
//! the reconnecting connection in [`session`].

use std::io::{self, Write};
use std::net::IpAddr;
use std::time::Duration;

pub mod args;
pub mod client;
pub mod commands;
pub mod error;
pub mod json;
pub mod render;
pub mod repl;
pub mod session;
pub mod submission;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::master::{self, MasterConfig};

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
    #[command(flatten)]
    Client(ClientCommand),
    /// The interactive shell (`titan>`): the seed's SUBMIT, SUBMIT_DAG, STATS and more; reads
    /// commands from stdin when it is not a terminal.
    Cli(args::ReplArgs),
}

#[derive(Debug, Args)]
pub struct MasterArgs {
    /// TCP port for TITAN_PROTO (0 picks a free port; the ready line shows it).
    #[arg(long, default_value_t = 9090)]
    pub port: u16,
    /// Address to listen on. Only loopback addresses are accepted until token authentication lands.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Number of shards (glommio executors); default: the number of CPUs.
    #[arg(long)]
    pub shards: Option<usize>,
    /// Pin shard i to CPU i (only when Titan owns the host).
    #[arg(long)]
    pub pin: bool,
    /// Close a connection that stalls in the middle of a frame for this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub stall_timeout_ms: u64,
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Master(args) => run_master(args),
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

fn run_master(args: MasterArgs) -> anyhow::Result<()> {
    if !args.bind.is_loopback() {
        bail!(
            "refusing to listen on {}: binding beyond loopback requires a shared token, \
             which this build does not implement yet",
            args.bind
        );
    }
    let mut config = MasterConfig::new(args.bind, args.port);
    if let Some(shards) = args.shards {
        config.shards = shards;
    }
    config.pin = args.pin;
    config.stall_timeout = Duration::from_millis(args.stall_timeout_ms.max(1));
    master::run(config).context("master failed")
}

#[cfg(test)]
mod tests;
