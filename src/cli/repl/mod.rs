//! `titan cli`: the REPL. Interactive on a terminal (prompt `titan> `, line editing and history
//! with rustyline, a `Connected to HOST:PORT` banner); on a pipe it reads commands from stdin with
//! no prompt, banner or history, so `printf 'STATS\n' | titan cli` prints only the STATS text and
//! exits non-zero when any command failed.
//!
//! The language is in [`command`]; the operations are the subcommands' own
//! ([`crate::cli::commands`]), so `STATS` in the REPL and `titan stats` print the same bytes. A
//! lost connection is reported with the failed command and re-established by the next one; a
//! command is never resent on its own, since a submit whose reply was lost may have been accepted.

mod command;

pub use command::{help_text, parse_line, CommandHelp, ReplCommand, ReplError, COMMANDS};

use std::ffi::OsString;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use rustyline::config::Config;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

use super::args::ReplArgs;
use super::commands::{self, EXIT_FAILED, EXIT_OK};
use super::error::CliError;
use super::session::Session;

/// The interactive prompt (the seed's).
pub const PROMPT: &str = "titan> ";
/// Lines of history kept.
pub const HISTORY_ENTRIES: usize = 1000;
/// The history file's name in `$HOME` when `TITAN_HISTORY` is not set.
pub const HISTORY_FILE: &str = ".titan_history";

/// Runs the REPL until `EXIT`, end of input or (on a pipe) the last line; returns the exit status.
pub fn run(args: ReplArgs) -> u8 {
    let keys = args.master.keys();
    let mut session = Session::new(args.master.addr, keys);
    if io::stdin().is_terminal() {
        interactive(&mut session)
    } else {
        piped(
            &mut session,
            io::stdin().lock(),
            &mut io::stdout().lock(),
            &mut io::stderr().lock(),
        )
    }
}

/// What to do after a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Exit,
}

/// Why one line failed.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// It is not a command.
    #[error(transparent)]
    Parse(#[from] ReplError),
    /// The command failed.
    #[error(transparent)]
    Command(#[from] CliError),
}

/// Runs a command; the text to print and whether to go on.
pub fn execute(session: &mut Session, command: ReplCommand) -> Result<(String, Flow), CliError> {
    let text = match command {
        ReplCommand::Submit(submission) => commands::submit(session, submission, false)?,
        ReplCommand::Stats => commands::stats(session, false)?,
        ReplCommand::Status(id) => commands::status(session, &id, false)?,
        ReplCommand::Jobs { state, limit } => commands::jobs(session, state, limit, false)?,
        ReplCommand::Cancel(id) => commands::cancel(session, &id, false)?,
        ReplCommand::Stop(id) => commands::stop(session, &id, false)?,
        ReplCommand::Logs(id) => {
            let output = super::logs::collect(session, &id)?;
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            for note in &output.notes {
                text.push_str(&format!("note: {note}\n"));
            }
            text
        }
        ReplCommand::Workers => commands::workers(session, false)?,
        ReplCommand::Help => help_text(),
        ReplCommand::Exit => return Ok((String::new(), Flow::Exit)),
    };
    Ok((text, Flow::Continue))
}

/// Parses and runs one line, writing its output to `out`.
pub fn run_line(session: &mut Session, line: &str, out: &mut dyn Write) -> Result<Flow, LineError> {
    let Some(command) = parse_line(line)? else {
        return Ok(Flow::Continue);
    };
    let (text, flow) = execute(session, command)?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CliError::Output)?;
    Ok(flow)
}

/// Commands from a pipe or file: no prompt, errors on `err` with their line number, exit status 1
/// when any line failed. Stops at `EXIT`, at the end of input, or when `out` is closed.
pub fn piped(
    session: &mut Session,
    input: impl BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let mut failures = 0usize;
    for (i, line) in input.lines().enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                let _ = writeln!(err, "error: cannot read the input: {e}");
                failures += 1;
                break;
            }
        };
        match run_line(session, &line, out) {
            Ok(Flow::Continue) => {}
            Ok(Flow::Exit) => break,
            Err(LineError::Command(CliError::Output(e))) => {
                let _ = writeln!(err, "error: cannot write the output: {e}");
                failures += 1;
                break;
            }
            Err(e) => {
                failures += 1;
                report(err, Some(i + 1), &e, session.addr());
            }
        }
    }
    if failures > 0 {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// Writes `error: [line N: ]message`, and for a lost connection, that the next command reconnects.
fn report(err: &mut dyn Write, line: Option<usize>, e: &LineError, addr: &str) {
    let at = line.map(|n| format!("line {n}: ")).unwrap_or_default();
    let _ = writeln!(err, "error: {at}{e}");
    if let LineError::Command(c) = e {
        if c.is_connection_lost() {
            let _ = writeln!(
                err,
                "(the connection to {addr} was lost; the next command reconnects)"
            );
        }
    }
}

/// The terminal REPL: banner, prompt, line editing, history. Always exits 0: at a terminal a failed
/// command has been seen by the person who typed it.
fn interactive(session: &mut Session) -> u8 {
    let mut editor = match new_editor() {
        Ok(editor) => editor,
        Err(e) => {
            eprintln!("warning: line editing is unavailable ({e}); reading plain lines");
            return piped(
                session,
                io::stdin().lock(),
                &mut io::stdout(),
                &mut io::stderr(),
            );
        }
    };
    match session.connect() {
        Ok(_) => println!("Connected to {}", session.addr()),
        Err(e) => eprintln!("error: {e}\n(commands will try to connect again)"),
    }
    println!("Type HELP for the commands, EXIT to leave.");
    let history = history_path(std::env::var_os("TITAN_HISTORY"), std::env::var_os("HOME"));
    if let Some(path) = &history {
        load_history(&mut editor, path);
    }
    loop {
        let line = match editor.readline(PROMPT) {
            Ok(line) => line,
            // Ctrl-C drops the line being typed, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: cannot read the terminal: {e}");
                break;
            }
        };
        if !line.trim().is_empty() {
            // Only fails when the history is full of duplicates or disabled; nothing to report.
            let _ = editor.add_history_entry(line.as_str());
        }
        if interactive_line(session, &line) == Flow::Exit {
            break;
        }
    }
    if let Some(path) = &history {
        if let Err(e) = editor.save_history(path) {
            eprintln!(
                "warning: cannot save the history to {}: {e}",
                path.display()
            );
        }
    }
    EXIT_OK
}

/// Runs one typed line; says so when it had to open a new connection first (the banner's failed,
/// or the connection was lost or closed by a restarting master).
fn interactive_line(session: &mut Session, line: &str) -> Flow {
    let mut stderr = io::stderr();
    let command = match parse_line(line) {
        Ok(Some(command)) => command,
        Ok(None) => return Flow::Continue,
        Err(e) => {
            report(&mut stderr, None, &LineError::Parse(e), session.addr());
            return Flow::Continue;
        }
    };
    let needs_master = !matches!(command, ReplCommand::Help | ReplCommand::Exit);
    if needs_master {
        match session.connect() {
            Ok(false) => {}
            Ok(true) => eprintln!("Connected to {}", session.addr()),
            Err(e) => {
                report(&mut stderr, None, &LineError::Command(e), session.addr());
                return Flow::Continue;
            }
        }
    }
    match run_command(session, command) {
        Ok(flow) => flow,
        Err(e) => {
            report(&mut stderr, None, &LineError::Command(e), session.addr());
            Flow::Continue
        }
    }
}

fn run_command(session: &mut Session, command: ReplCommand) -> Result<Flow, CliError> {
    let (text, flow) = execute(session, command)?;
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CliError::Output)?;
    Ok(flow)
}

fn new_editor() -> Result<DefaultEditor, ReadlineError> {
    let config = Config::builder()
        .max_history_size(HISTORY_ENTRIES)?
        .history_ignore_dups(true)?
        .history_ignore_space(true)
        .build();
    DefaultEditor::with_config(config)
}

/// Loads the history; a missing file is the normal first run, anything else is a warning.
fn load_history(editor: &mut DefaultEditor, path: &Path) {
    match editor.load_history(path) {
        Ok(()) => {}
        Err(ReadlineError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => eprintln!(
            "warning: cannot read the history from {}: {e}",
            path.display()
        ),
    }
}

/// Where history lives: `$TITAN_HISTORY` (an empty value turns history off), else
/// `$HOME/.titan_history`, else nowhere.
pub fn history_path(titan_history: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    match titan_history {
        Some(path) if path.is_empty() => None,
        Some(path) => Some(PathBuf::from(path)),
        None => home
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(HISTORY_FILE)),
    }
}

#[cfg(test)]
mod tests;
