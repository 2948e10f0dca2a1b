//! `titan logs ID [-f]` and the REPL's `LOGS ID`: a job's output.
//!
//! The master keeps a bounded ring of each attempt's recent lines, streamed over UDP. When it
//! holds an attempt's whole output the lines come from there; otherwise the complete files are
//! fetched from the worker that ran the attempt. `-f` follows the latest attempt live (the master
//! holds each request until there is news), then prints the job's final state and exits 0 only
//! when it COMPLETED. Stdout lines go to stdout and stderr lines to stderr.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::args::{parse_job_ref, MasterAddr};
use super::client::fetch_output_file;
use super::commands::{EXIT_FAILED, EXIT_OK};
use super::error::CliError;
use super::session::Session;
use titan_core::{JobRef, JobState};
use titan_proto::message::logs::{LogLine, LogsReply, LogsRequest};

/// How long the master may hold a follower's request before answering "nothing new".
const FOLLOW_WAIT: Duration = Duration::from_secs(2);

/// Lines asked for per request.
const PAGE_LINES: u32 = 5_000;

/// After a job ended, how long a follower waits for lines still in flight (UDP may deliver the
/// last datagrams after the job's report).
const TAIL_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub master: MasterAddr,
    /// TSK-17, dag-5:NAME, or a bare NAME (its most recent job).
    #[arg(value_name = "ID", value_parser = parse_job_ref)]
    pub id: JobRef,
    /// Follow the output live until the job ends, then print its final state.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Print one JSON value (the whole output so far) instead of the raw output.
    #[arg(long, conflicts_with = "follow")]
    pub json: bool,
}

/// A job's whole output so far: (stdout, stderr, the reply that said where it came from, notes).
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub reply: LogsReply,
    /// Said on stderr: where the output came from when it is not complete.
    pub notes: Vec<String>,
}

fn request(id: &JobRef, attempt: u32, cursor: u64, wait: Duration) -> LogsRequest {
    LogsRequest {
        job: id.to_string(),
        attempt,
        cursor,
        max_lines: PAGE_LINES,
        wait_ms: wait.as_millis() as u32,
    }
}

fn ask(session: &mut Session, req: &LogsRequest) -> Result<LogsReply, CliError> {
    let timeout = Duration::from_millis(u64::from(req.wait_ms)) + Duration::from_secs(10);
    session.call_with_timeout(timeout, |c| c.logs(req))
}

fn append(lines: &[LogLine], stdout: &mut Vec<u8>, stderr: &mut Vec<u8>) {
    for line in lines {
        let out = if line.stream == 2 {
            &mut *stderr
        } else {
            &mut *stdout
        };
        out.extend_from_slice(&line.bytes);
        out.extend_from_slice(&line.terminator);
    }
}

/// The latest attempt's whole output so far.
pub fn collect(session: &mut Session, id: &JobRef) -> Result<Output, CliError> {
    let first = ask(session, &request(id, 0, 0, Duration::ZERO))?;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut notes = Vec::new();
    if first.complete || first.worker_addr.is_none() {
        // The ring has it all (or it is all there is): page through it.
        let mut reply = first;
        loop {
            append(&reply.lines, &mut stdout, &mut stderr);
            if reply.lines.is_empty() {
                break;
            }
            reply = ask(
                session,
                &request(id, reply.attempt, reply.next_cursor, Duration::ZERO),
            )?;
        }
        if !reply.complete && reply.attempt > 0 && reply.state.is_terminal() {
            notes.push(if reply.lost == 0 && reply.skipped == 0 {
                // Nothing was dropped: the attempt most likely never ran (a file that could not
                // be started, say), and the reason is the job's last error.
                format!(
                    "no output was recorded for {}'s last attempt; `titan status {}` shows why it ended",
                    reply.label, reply.label
                )
            } else {
                format!(
                    "the master kept only part of {}'s output ({} lines lost, {} evicted) and the worker that ran it is unknown",
                    reply.label, reply.lost, reply.skipped
                )
            });
        }
        return Ok(Output {
            stdout,
            stderr,
            reply,
            notes,
        });
    }
    let worker = first.worker_addr.clone().unwrap_or_default();
    let fetched = match &first.ticket {
        Some(ticket) => (
            fetch_output_file(&worker, ticket, 1),
            fetch_output_file(&worker, ticket, 2),
        ),
        None => {
            let none = || Err(no_ticket());
            (none(), none())
        }
    };
    match fetched {
        (Ok(out), Ok(err)) => Ok(Output {
            stdout: out,
            stderr: err,
            reply: first,
            notes,
        }),
        (Err(e), _) | (_, Err(e)) => {
            notes.push(format!("could not fetch the complete output from worker {worker} ({e}); showing the lines the master kept"));
            append(&first.lines, &mut stdout, &mut stderr);
            Ok(Output {
                stdout,
                stderr,
                reply: first,
                notes,
            })
        }
    }
}

/// The master named a worker without a ticket to read from it (an older master).
fn no_ticket() -> super::client::ClientError {
    super::client::ClientError::Server {
        code: None,
        message: "the master gave no ticket to read the worker's files".into(),
    }
}

/// Runs `titan logs`; returns the exit status.
pub fn run(session: &mut Session, args: &LogsArgs) -> Result<u8, CliError> {
    if args.follow {
        return follow(session, &args.id);
    }
    let output = collect(session, &args.id)?;
    for note in &output.notes {
        eprintln!("note: {note}");
    }
    if args.json {
        let value = json!({
            "job": output.reply.label,
            "attempt": output.reply.attempt,
            "state": output.reply.state,
            "stdout": String::from_utf8_lossy(&output.stdout),
            "stderr": String::from_utf8_lossy(&output.stderr),
            "lost_lines": output.reply.lost,
            "notes": output.notes,
        });
        println!("{value}");
        return Ok(EXIT_OK);
    }
    io::stdout()
        .write_all(&output.stdout)
        .and_then(|()| io::stdout().flush())
        .map_err(CliError::Output)?;
    io::stderr()
        .write_all(&output.stderr)
        .map_err(CliError::Output)?;
    Ok(EXIT_OK)
}

fn follow(session: &mut Session, id: &JobRef) -> Result<u8, CliError> {
    let (mut attempt, mut cursor) = (0u32, 0u64);
    let mut ended_at: Option<Instant> = None;
    loop {
        let reply = ask(session, &request(id, attempt, cursor, FOLLOW_WAIT))?;
        if reply.attempt != attempt {
            if attempt != 0 {
                eprintln!("--- {} attempt {} ---", reply.label, reply.attempt);
            }
            attempt = reply.attempt;
        }
        if reply.skipped > 0 {
            eprintln!(
                "[{} lines not shown: the master's buffer moved on; `titan logs {}` has them all]",
                reply.skipped, reply.label
            );
        }
        let (mut out, mut err) = (Vec::new(), Vec::new());
        append(&reply.lines, &mut out, &mut err);
        io::stdout()
            .write_all(&out)
            .and_then(|()| io::stdout().flush())
            .map_err(CliError::Output)?;
        io::stderr().write_all(&err).map_err(CliError::Output)?;
        cursor = reply.next_cursor;
        if !reply.lines.is_empty() {
            continue;
        }
        if reply.state.is_terminal() {
            let since = *ended_at.get_or_insert_with(Instant::now);
            if reply.ended || reply.attempt == 0 || since.elapsed() >= TAIL_GRACE {
                if reply.lost > 0 {
                    eprintln!(
                        "[{} lines were lost on the way; `titan logs {}` has them all]",
                        reply.lost, reply.label
                    );
                }
                let detail = match (&reply.last_error, reply.state) {
                    (Some(e), s) if s != JobState::Completed => format!(": {e}"),
                    _ => String::new(),
                };
                eprintln!("--- {} {}{} ---", reply.label, reply.state, detail);
                return Ok(if reply.state == JobState::Completed {
                    EXIT_OK
                } else {
                    EXIT_FAILED
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
