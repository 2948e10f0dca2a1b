//! The REPL's language: one line in, one [`ReplCommand`] out (or nothing for a blank line or a
//! `#` comment), with typed errors. Pure, so the seed's strings are tested verbatim.
//!
//! A line is a command word (any case) and the rest of the line. `SUBMIT` and `SUBMIT_DAG` take
//! the rest as seed-syntax text, parsed here with the shared grammar; the other commands take
//! whitespace-separated arguments.

use std::fmt;

use titan_core::grammar::{self, GrammarError};
use titan_core::ids::{JobRef, JobRefError};
use titan_core::model::{JobState, Submission, UnknownState};

use crate::cli::args::DEFAULT_JOBS_LIMIT;

/// A parsed REPL line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplCommand {
    /// `SUBMIT TYPE|DATA[|PRIORITY[|DELAY_MS]]`, or `SUBMIT_DAG line ; line ...`.
    Submit(Submission),
    /// `STATS`
    Stats,
    /// `STATUS ID`
    Status(JobRef),
    /// `JOBS [STATE] [LIMIT]`
    Jobs {
        /// Only jobs in this state.
        state: Option<JobState>,
        /// At most this many.
        limit: u32,
    },
    /// `CANCEL ID`
    Cancel(JobRef),
    /// `STOP ID`
    Stop(JobRef),
    /// `LOGS ID`
    Logs(JobRef),
    /// `WORKERS`
    Workers,
    /// `HELP`
    Help,
    /// `EXIT` or `QUIT`
    Exit,
}

/// One REPL command's spelling, arguments and purpose, for HELP and usage errors.
pub struct CommandHelp {
    /// The command word.
    pub word: &'static str,
    /// Its arguments.
    pub args: &'static str,
    /// One line on what it does.
    pub about: &'static str,
}

/// Every REPL command, in the order HELP lists them.
pub const COMMANDS: &[CommandHelp] = &[
    CommandHelp {
        word: "SUBMIT",
        args: "TYPE|DATA[|PRIORITY[|DELAY_MS]]",
        about: "submit one job (e.g. SUBMIT RUN|calc.py); prints its id",
    },
    CommandHelp {
        word: "SUBMIT_DAG",
        args: "ID|TYPE|DATA|PRIORITY|DELAY_MS|[DEPS] ; ...",
        about: "submit a DAG; prints each job's full id",
    },
    CommandHelp {
        word: "STATS",
        args: "",
        about: "the cluster monitor: workers, queues, services",
    },
    CommandHelp {
        word: "STATUS",
        args: "ID",
        about: "one job (TSK-17, dag-5:NAME, dag-5, or NAME)",
    },
    CommandHelp {
        word: "JOBS",
        args: "[STATE] [LIMIT]",
        about: "recent jobs, newest first",
    },
    CommandHelp {
        word: "CANCEL",
        args: "ID",
        about: "cancel a job and what depends on it",
    },
    CommandHelp {
        word: "STOP",
        args: "ID",
        about: "stop a service (DEPLOY job) for good",
    },
    CommandHelp {
        word: "LOGS",
        args: "ID",
        about: "a job's output (its latest attempt)",
    },
    CommandHelp {
        word: "WORKERS",
        args: "",
        about: "the connected workers",
    },
    CommandHelp {
        word: "HELP",
        args: "",
        about: "this list",
    },
    CommandHelp {
        word: "EXIT",
        args: "",
        about: "leave (also QUIT, or Ctrl-D)",
    },
];

/// Why a REPL line is not a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplError {
    /// The first word is no command.
    #[error("unknown command {word:?} (type HELP for the list)")]
    UnknownCommand {
        /// The word as typed.
        word: String,
    },
    /// A required argument is absent.
    #[error("{word} needs {args}: {}", usage(word))]
    MissingArgument {
        /// The command.
        word: &'static str,
        /// What is missing.
        args: &'static str,
    },
    /// More arguments than the command takes.
    #[error("unexpected {text:?} after {word}: {}", usage(word))]
    UnexpectedArgument {
        /// The command.
        word: &'static str,
        /// The extra text.
        text: String,
    },
    /// The job or DAG text does not parse.
    #[error(transparent)]
    Grammar(#[from] GrammarError),
    /// A job reference does not parse.
    #[error(transparent)]
    JobRef(#[from] JobRefError),
    /// `JOBS` got a word that is neither a state nor a number.
    #[error("{0}; JOBS takes a state (QUEUED, RUNNING, DEAD, ...) and/or a limit")]
    State(#[from] UnknownState),
}

fn usage(word: &str) -> Usage<'_> {
    Usage(word)
}

/// Formats `usage: WORD ARGS` for a command word.
struct Usage<'a>(&'a str);

impl fmt::Display for Usage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match COMMANDS.iter().find(|c| c.word == self.0) {
            Some(c) if c.args.is_empty() => write!(f, "usage: {}", c.word),
            Some(c) => write!(f, "usage: {} {}", c.word, c.args),
            None => write!(f, "usage: {}", self.0),
        }
    }
}

/// Parses one line; `Ok(None)` for a blank line or a `#` comment.
pub fn parse_line(line: &str) -> Result<Option<ReplCommand>, ReplError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (line, ""),
    };
    let command = match word.to_ascii_uppercase().as_str() {
        "SUBMIT" => {
            let text = required(rest, "SUBMIT", "a job")?;
            ReplCommand::Submit(Submission::OneOff(grammar::parse_one_off(text)?))
        }
        "SUBMIT_DAG" => {
            let text = required(rest, "SUBMIT_DAG", "a DAG")?;
            ReplCommand::Submit(Submission::Dag(grammar::parse_dag(text)?))
        }
        "STATS" => no_args(rest, "STATS", ReplCommand::Stats)?,
        "STATUS" => ReplCommand::Status(one_ref(rest, "STATUS")?),
        "JOBS" => parse_jobs(rest)?,
        "CANCEL" => ReplCommand::Cancel(one_ref(rest, "CANCEL")?),
        "STOP" => ReplCommand::Stop(one_ref(rest, "STOP")?),
        "LOGS" => ReplCommand::Logs(one_ref(rest, "LOGS")?),
        "WORKERS" => no_args(rest, "WORKERS", ReplCommand::Workers)?,
        "HELP" | "?" => ReplCommand::Help,
        "EXIT" | "QUIT" => no_args(rest, "EXIT", ReplCommand::Exit)?,
        _ => {
            return Err(ReplError::UnknownCommand {
                word: word.to_string(),
            })
        }
    };
    Ok(Some(command))
}

fn required<'a>(
    rest: &'a str,
    word: &'static str,
    args: &'static str,
) -> Result<&'a str, ReplError> {
    if rest.is_empty() {
        Err(ReplError::MissingArgument { word, args })
    } else {
        Ok(rest)
    }
}

fn no_args(rest: &str, word: &'static str, command: ReplCommand) -> Result<ReplCommand, ReplError> {
    if rest.is_empty() {
        Ok(command)
    } else {
        Err(ReplError::UnexpectedArgument {
            word,
            text: rest.to_string(),
        })
    }
}

fn one_ref(rest: &str, word: &'static str) -> Result<JobRef, ReplError> {
    let mut args = rest.split_whitespace();
    let id = args.next().ok_or(ReplError::MissingArgument {
        word,
        args: "a job id",
    })?;
    if let Some(extra) = args.next() {
        return Err(ReplError::UnexpectedArgument {
            word,
            text: extra.to_string(),
        });
    }
    Ok(id.parse()?)
}

fn parse_jobs(rest: &str) -> Result<ReplCommand, ReplError> {
    let mut state = None;
    let mut limit = None;
    for arg in rest.split_whitespace() {
        if limit.is_none() && arg.bytes().all(|b| b.is_ascii_digit()) {
            limit = Some(arg.parse().map_err(|_| ReplError::UnexpectedArgument {
                word: "JOBS",
                text: arg.to_string(),
            })?);
        } else if state.is_none() && limit.is_none() {
            state = Some(arg.parse::<JobState>()?);
        } else {
            return Err(ReplError::UnexpectedArgument {
                word: "JOBS",
                text: arg.to_string(),
            });
        }
    }
    Ok(ReplCommand::Jobs {
        state,
        limit: limit.unwrap_or(DEFAULT_JOBS_LIMIT),
    })
}

/// The HELP text.
pub fn help_text() -> String {
    let width = COMMANDS
        .iter()
        .map(|c| c.word.len() + 1 + c.args.len())
        .max()
        .unwrap_or(0);
    let mut s = String::from("Commands (any case):\n");
    for c in COMMANDS {
        let spelled = format!("{} {}", c.word, c.args);
        s.push_str(&format!("  {:<width$}  {}\n", spelled.trim_end(), c.about));
    }
    s.push_str("Blank lines and lines starting with '#' are ignored.\n");
    s
}

#[cfg(test)]
mod tests;
