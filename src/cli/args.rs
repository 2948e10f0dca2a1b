//! The client commands' arguments (clap): `submit`, `dag`, `stats`, `status`, `jobs`, `cancel`,
//! `stop`, `workers`, `wait` and the REPL's `cli`, with the value parsers they share (durations,
//! job references, states).
//!
//! Values that the master would reject are parsed here already (job references, state names,
//! durations), so a typo fails at once with clap's usage message instead of after a round trip.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Subcommand};

use titan_auth::KeyLookup;
use titan_core::ids::{JobRef, JobRefError};
use titan_core::model::{JobState, UnknownState};

/// Where the master listens when neither `--master` nor `TITAN_MASTER` says otherwise.
pub const DEFAULT_MASTER: &str = "127.0.0.1:9090";
/// Rows `titan jobs` asks for when `--limit` is not given.
pub const DEFAULT_JOBS_LIMIT: u32 = 50;

/// The commands that talk to a running master.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Submit one job in the seed's syntax (`RUN|calc.py|1|0`), or a local script with --file;
    /// prints the job id.
    Submit(SubmitArgs),
    /// Submit a DAG (`A|RUN|a.py|1|0|[] ; B|RUN|b.py|1|0|[A]`) or a DAG file (-f); prints each
    /// job's full id, one per line.
    Dag(DagArgs),
    /// Print the cluster's STATS (the seed's layout).
    Stats(ReadArgs),
    /// Show one job: TSK-17, dag-5:NAME, dag-5, or a bare NAME (its most recent job).
    Status(JobArgs),
    /// List jobs, newest first.
    Jobs(JobsArgs),
    /// Cancel a job (and what depends on it) in any non-terminal state.
    Cancel(JobArgs),
    /// Stop a service (a DEPLOY job) for good.
    Stop(JobArgs),
    /// List the connected workers.
    Workers(ReadArgs),
    /// Wait until jobs finish. Exit status: 0 when every job COMPLETED, 1 when any ended
    /// otherwise, 2 on timeout or error.
    Wait(WaitArgs),
    /// Print a job's output (its latest attempt); -f follows it live until the job ends.
    Logs(super::logs::LogsArgs),
}

impl ClientCommand {
    /// The master this command talks to.
    pub fn master(&self) -> &MasterAddr {
        match self {
            ClientCommand::Submit(a) => &a.master,
            ClientCommand::Dag(a) => &a.master,
            ClientCommand::Stats(a) | ClientCommand::Workers(a) => &a.master,
            ClientCommand::Status(a) | ClientCommand::Cancel(a) | ClientCommand::Stop(a) => {
                &a.master
            }
            ClientCommand::Jobs(a) => &a.master,
            ClientCommand::Wait(a) => &a.master,
            ClientCommand::Logs(a) => &a.master,
        }
    }
}

/// The master to talk to, and the key to prove.
#[derive(Debug, Clone, Args)]
pub struct MasterAddr {
    /// The master's address.
    #[arg(
        id = "master_addr",
        long = "master",
        env = "TITAN_MASTER",
        default_value = DEFAULT_MASTER,
        value_name = "HOST:PORT"
    )]
    pub addr: String,
    /// The access file holding the client (or read-only) key; without it: `TITAN_KEY`
    /// (ROLE:HEX), `TITAN_ACCESS_FILE`, then `titan_data/access` here.
    #[arg(id = "client_access_file", long = "access-file", value_name = "PATH")]
    pub access_file: Option<PathBuf>,
}

impl MasterAddr {
    /// Where this command looks for its key.
    pub fn keys(&self) -> KeyLookup {
        KeyLookup::from_env(self.access_file.clone())
    }
}

/// Spec fields the seed's text syntax cannot express.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Args)]
pub struct SpecOptions {
    /// Kill an attempt that runs longer than this (`500ms`, `30s`, `5m`, `2h`; a bare number is
    /// seconds); it then counts as a failed attempt.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Retries after the first attempt before the job goes to the dead-letter queue (default 3).
    #[arg(long, value_name = "N")]
    pub retries: Option<u8>,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub master: MasterAddr,
    /// The job: TYPE|DATA[|PRIORITY[|DELAY_MS]] (DEPLOY|FILE[|PORT[|PRIORITY[|DELAY_MS]]]).
    #[arg(
        value_name = "JOB",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub job: Option<String>,
    /// Send this local script's bytes with the job (RUN_INLINE); its file name, which picks the
    /// interpreter, names the job.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Priority of the --file job (higher runs first; default 1).
    #[arg(
        long,
        conflicts_with = "job",
        allow_hyphen_values = true,
        value_name = "P"
    )]
    pub priority: Option<i32>,
    /// Delay of the --file job, in milliseconds.
    #[arg(long = "delay-ms", conflicts_with = "job", value_name = "D")]
    pub delay_ms: Option<u32>,
    #[command(flatten)]
    pub spec: SpecOptions,
    /// Print the master's reply as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DagArgs {
    #[command(flatten)]
    pub master: MasterAddr,
    /// The DAG: ID|TYPE|DATA|PRIORITY|DELAY_MS|[DEPS] jobs separated by ';'.
    #[arg(
        value_name = "DAG",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub dag: Option<String>,
    /// Read the DAG from FILE ('-' for stdin): jobs separated by newlines or ';', blank lines and
    /// lines starting with '#' skipped; errors name the file's line.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Applied to every job of the DAG.
    #[command(flatten)]
    pub spec: SpecOptions,
    /// Print the master's reply as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A read command with no other arguments.
#[derive(Debug, Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub master: MasterAddr,
    /// Print one JSON value instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A command about one job.
#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub master: MasterAddr,
    /// TSK-17, dag-5:NAME, dag-5, or a bare NAME (its most recent job).
    #[arg(value_name = "ID", value_parser = parse_job_ref)]
    pub id: JobRef,
    /// Print one JSON value instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub master: MasterAddr,
    /// Only jobs in this state (PENDING, BLOCKED, QUEUED, RUNNING, COMPLETED, FAILED, DEAD,
    /// CANCELLED, UPSTREAM_FAILED; any case).
    #[arg(long, value_parser = parse_state, value_name = "STATE")]
    pub state: Option<JobState>,
    /// At most this many jobs (1 or more).
    #[arg(long, default_value_t = DEFAULT_JOBS_LIMIT, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Print one JSON value instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[command(flatten)]
    pub master: MasterAddr,
    /// The jobs to wait for.
    #[arg(value_name = "ID", required = true, num_args = 1.., value_parser = parse_job_ref)]
    pub ids: Vec<JobRef>,
    /// Give up after this long (exit status 2); without it, wait as long as it takes.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Print one JSON value instead of one line per job.
    #[arg(long)]
    pub json: bool,
}

/// `titan cli`: the interactive REPL.
#[derive(Debug, Args)]
pub struct ReplArgs {
    #[command(flatten)]
    pub master: MasterAddr,
}

/// A duration the user typed that did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (examples: 500ms, 30s, 5m, 2h)")]
pub struct DurationError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses `500ms`, `30s`, `5m`, `2h`, or a bare number of seconds.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let t = input.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(err("it does not start with a number"));
    }
    let n: u64 = digits.parse().map_err(|_| err("the number is too large"))?;
    let ms_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(err("the unit is not one of ms, s, m, h")),
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| err("the duration is too long"))
}

/// Parses a job reference (`TSK-17`, `dag-5`, `dag-5:NAME`, `NAME`).
pub fn parse_job_ref(input: &str) -> Result<JobRef, JobRefError> {
    JobRef::from_str(input)
}

/// Parses a state name in any case.
pub fn parse_state(input: &str) -> Result<JobState, UnknownState> {
    JobState::from_str(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_documented_units() {
        let ms = |t: &str| parse_duration(t).map(|d| d.as_millis());
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("30"), Ok(30_000));
        assert_eq!(ms(" 5m "), Ok(300_000));
        assert_eq!(ms("2h"), Ok(7_200_000));
        assert_eq!(ms("0s"), Ok(0));
    }

    #[test]
    fn bad_durations_say_why() {
        for (text, reason) in [
            ("", "it does not start with a number"),
            ("s", "it does not start with a number"),
            ("-1s", "it does not start with a number"),
            ("1.5s", "the unit is not one of ms, s, m, h"),
            ("10 days", "the unit is not one of ms, s, m, h"),
            ("99999999999999999999s", "the number is too large"),
            ("18446744073709551615h", "the duration is too long"),
        ] {
            assert_eq!(parse_duration(text).unwrap_err().reason, reason, "{text}");
        }
    }
}
