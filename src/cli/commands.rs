//! The client commands: each operation as a function over a [`Session`] returning the text to
//! print, shared by the subcommands (`titan submit`, ...) and the REPL, and [`run`], which executes
//! one subcommand and turns the result into output and an exit status.
//!
//! Exit statuses: 0 success, 1 failure (an error, or for `wait` a job that did not complete), and
//! for `wait` 2 on timeout or error, so a script can tell "the job failed" from "we don't know".

use std::io::{self, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use titan_core::ids::JobRef;
use titan_core::model::{JobState, Submission};
use titan_proto::message::client::WaitReply;

use super::args::{ClientCommand, DagArgs, SubmitArgs, WaitArgs};
use super::error::CliError;
use super::session::Session;
use super::submission::{self, InlineOptions};
use super::{json, render};

/// Longest single `WaitJobs` request; longer waits are several requests in a row, so a master
/// restart or a lost connection is noticed within this time.
pub const WAIT_ROUND: Duration = Duration::from_secs(30);
/// How much longer than the requested wait the client lets the master take to reply.
pub const WAIT_REPLY_MARGIN: Duration = Duration::from_secs(10);

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: the command failed, or a waited-for job did not complete.
pub const EXIT_FAILED: u8 = 1;
/// Exit status of `wait` when it timed out or could not find out.
pub const EXIT_UNKNOWN: u8 = 2;

/// Runs one subcommand: prints its output on stdout and any error on stderr, returns the exit
/// status.
pub fn run(command: ClientCommand) -> u8 {
    let failure_status = match command {
        ClientCommand::Wait(_) => EXIT_UNKNOWN,
        _ => EXIT_FAILED,
    };
    let master = command.master();
    let mut session = Session::new(master.addr.clone(), master.keys());
    let result = execute(&mut session, command);
    match result.and_then(|(text, status)| print(&text).map(|()| status)) {
        Ok(status) => status,
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => failure_status,
        Err(e) => {
            eprintln!("error: {e}");
            failure_status
        }
    }
}

/// Runs one subcommand: its output and its exit status when it did not fail.
fn execute(session: &mut Session, command: ClientCommand) -> Result<(String, u8), CliError> {
    let text = match command {
        ClientCommand::Submit(args) => submit(session, build_submit(&args)?, args.json),
        ClientCommand::Dag(args) => submit(session, build_dag(&args)?, args.json),
        ClientCommand::Stats(args) => stats(session, args.json),
        ClientCommand::Status(args) => status(session, &args.id, args.json),
        ClientCommand::Jobs(args) => jobs(session, args.state, args.limit, args.json),
        ClientCommand::Cancel(args) => cancel(session, &args.id, args.json),
        ClientCommand::Stop(args) => stop(session, &args.id, args.json),
        ClientCommand::Workers(args) => workers(session, args.json),
        ClientCommand::Wait(args) => return run_wait(session, &args),
        ClientCommand::Logs(args) => {
            return super::logs::run(session, &args).map(|status| (String::new(), status))
        }
    }?;
    Ok((text, EXIT_OK))
}

fn print(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CliError::Output)
}

/// The submission `titan submit` describes: the text form, or `--file`'s script.
pub fn build_submit(args: &SubmitArgs) -> Result<Submission, CliError> {
    match (&args.file, &args.job) {
        (Some(path), _) => submission::read_inline_file(
            path,
            &InlineOptions {
                priority: args.priority,
                delay_ms: args.delay_ms,
                spec: args.spec,
            },
        ),
        (None, Some(text)) => submission::one_off(text, &args.spec),
        // clap requires one of the two; an empty text gets the grammar's "TYPE missing" error.
        (None, None) => submission::one_off("", &args.spec),
    }
}

/// The submission `titan dag` describes: the text form, or the file given with `-f`.
pub fn build_dag(args: &DagArgs) -> Result<Submission, CliError> {
    match (&args.file, &args.dag) {
        (Some(path), _) => submission::read_dag_file(path, &args.spec),
        (None, text) => submission::dag_text(text.as_deref().unwrap_or(""), &args.spec),
    }
}

/// Submits; the text is the assigned id(s), one per line.
pub fn submit(
    session: &mut Session,
    submission: Submission,
    as_json: bool,
) -> Result<String, CliError> {
    let reply = session.call(move |c| c.submit(submission))?;
    Ok(if as_json {
        json::line(&json::submitted(&reply))
    } else {
        render::submitted(&reply)
    })
}

/// The STATS text exactly as the master rendered it, or the structured form.
pub fn stats(session: &mut Session, as_json: bool) -> Result<String, CliError> {
    if as_json {
        let stats = session.call(|c| c.stats())?;
        Ok(json::line(&json::stats(&stats)))
    } else {
        session.call(|c| c.stats_text())
    }
}

pub fn status(session: &mut Session, id: &JobRef, as_json: bool) -> Result<String, CliError> {
    let job = session.call(|c| c.status(&id.to_string()))?;
    Ok(if as_json {
        json::line(&json::status(&job))
    } else {
        render::status_block(&job)
    })
}

pub fn jobs(
    session: &mut Session,
    state: Option<JobState>,
    limit: u32,
    as_json: bool,
) -> Result<String, CliError> {
    let list = session.call(|c| c.jobs(state, limit))?;
    Ok(if as_json {
        json::line(&json::job_list(&list))
    } else {
        render::jobs_table(&list, now_us())
    })
}

pub fn cancel(session: &mut Session, id: &JobRef, as_json: bool) -> Result<String, CliError> {
    let target = id.to_string();
    let reply = session.call(|c| c.cancel(&target))?;
    Ok(if as_json {
        json::line(&json::cancelled(&reply))
    } else {
        render::cancelled(&target, &reply)
    })
}

pub fn stop(session: &mut Session, id: &JobRef, as_json: bool) -> Result<String, CliError> {
    let reply = session.call(|c| c.stop(&id.to_string()))?;
    Ok(if as_json {
        json::line(&json::stopped(&reply))
    } else {
        render::stopped(&reply)
    })
}

pub fn workers(session: &mut Session, as_json: bool) -> Result<String, CliError> {
    let list = session.call(|c| c.workers())?;
    Ok(if as_json {
        json::line(&json::worker_list(&list))
    } else {
        render::workers_table(&list)
    })
}

/// How a `wait` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitVerdict {
    /// Every job COMPLETED.
    Completed,
    /// At least this many jobs ended in another terminal state.
    Failed { jobs: usize },
    /// Time ran out with this many jobs not yet terminal (and none failed).
    TimedOut { unfinished: usize },
}

impl WaitVerdict {
    /// A job that ended badly decides the verdict even if others are still running: waiting
    /// longer could not make the result a success.
    pub fn of(reply: &WaitReply) -> WaitVerdict {
        let failed = reply
            .jobs
            .iter()
            .filter(|j| j.state.is_terminal() && j.state != JobState::Completed)
            .count();
        // The master lists unfinished jobs by id in `pending`; a non-terminal status in `jobs`
        // would count too.
        let unfinished =
            reply.pending.len() + reply.jobs.iter().filter(|j| !j.state.is_terminal()).count();
        match (failed, unfinished) {
            (0, 0) => WaitVerdict::Completed,
            (0, unfinished) => WaitVerdict::TimedOut { unfinished },
            (jobs, _) => WaitVerdict::Failed { jobs },
        }
    }

    pub fn exit_status(self) -> u8 {
        match self {
            WaitVerdict::Completed => EXIT_OK,
            WaitVerdict::Failed { .. } => EXIT_FAILED,
            WaitVerdict::TimedOut { .. } => EXIT_UNKNOWN,
        }
    }
}

/// Waits for jobs (without a timeout: as long as it takes), in rounds of at most [`WAIT_ROUND`].
pub fn wait(
    session: &mut Session,
    ids: &[JobRef],
    timeout: Option<Duration>,
) -> Result<WaitReply, CliError> {
    let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let round = deadline.map_or(WAIT_ROUND, |d| {
            d.saturating_duration_since(Instant::now()).min(WAIT_ROUND)
        });
        let reply =
            session.call_with_timeout(round + WAIT_REPLY_MARGIN, |c| c.wait(&names, round))?;
        let all_terminal =
            reply.pending.is_empty() && reply.jobs.iter().all(|j| j.state.is_terminal());
        let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
        // A reply that is neither complete nor timed out would make this loop spin; take it as
        // final instead.
        if all_terminal || out_of_time || !reply.timed_out {
            return Ok(reply);
        }
    }
}

/// `titan wait`: the text (or JSON) and the exit status; the verdict goes to stderr.
fn run_wait(session: &mut Session, args: &WaitArgs) -> Result<(String, u8), CliError> {
    let reply = wait(session, &args.ids, args.timeout)?;
    let verdict = WaitVerdict::of(&reply);
    let total = reply.jobs.len() + reply.pending.len();
    match verdict {
        WaitVerdict::Completed => {}
        WaitVerdict::Failed { jobs } => {
            eprintln!("error: {jobs} of {total} jobs did not complete")
        }
        WaitVerdict::TimedOut { unfinished } => eprintln!(
            "error: timed out with {unfinished} of {total} jobs unfinished{}",
            args.timeout
                .map(|t| format!(" after {}", humantime(t)))
                .unwrap_or_default()
        ),
    }
    let text = if args.json {
        json::line(&json::wait_reply(&reply))
    } else {
        render::wait_lines(&reply)
    };
    Ok((text, verdict.exit_status()))
}

fn humantime(d: Duration) -> String {
    render::format_age_ms(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Microseconds since the epoch (the unit of job times), for ages in tables.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use titan_proto::message::client::JobStatus;

    fn reply(states: &[JobState]) -> WaitReply {
        WaitReply {
            jobs: states
                .iter()
                .enumerate()
                .map(|(i, &state)| JobStatus {
                    id: i as u64,
                    label: format!("TSK-{i}"),
                    state,
                    kind: "NOOP".into(),
                    spec: "NOOP||1|0".into(),
                    skill: "GENERAL".into(),
                    priority: 1,
                    attempts: 1,
                    failures: 0,
                    retries: 3,
                    crashes: 0,
                    worker: None,
                    worker_port: None,
                    ready: false,
                    submitted_at_us: 0,
                    started_at_us: None,
                    finished_at_us: None,
                    state_since_us: 0,
                    last_error: None,
                    deps: Vec::new(),
                })
                .collect(),
            pending: Vec::new(),
            timed_out: false,
        }
    }

    #[test]
    fn wait_exits_zero_only_when_every_job_completed() {
        use JobState::*;
        let cases = [
            (vec![Completed, Completed], WaitVerdict::Completed, 0),
            (vec![Completed, Dead], WaitVerdict::Failed { jobs: 1 }, 1),
            (
                vec![Cancelled, UpstreamFailed],
                WaitVerdict::Failed { jobs: 2 },
                1,
            ),
            (vec![Running, Dead], WaitVerdict::Failed { jobs: 1 }, 1),
            (
                vec![Completed, Running],
                WaitVerdict::TimedOut { unfinished: 1 },
                2,
            ),
            (
                vec![Failed, Queued],
                WaitVerdict::TimedOut { unfinished: 2 },
                2,
            ),
        ];
        for (states, verdict, status) in cases {
            let v = WaitVerdict::of(&reply(&states));
            assert_eq!(v, verdict, "{states:?}");
            assert_eq!(v.exit_status(), status, "{states:?}");
        }
    }
}
