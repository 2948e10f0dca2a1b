//! Why a client command failed: [`CliError`], one enum for the subcommands and the REPL.

use std::io;
use std::path::PathBuf;

use titan_core::grammar::{Field, FieldProblem, GrammarError};

use super::client::ClientError;

/// A failed client command. Each variant says what the user can fix.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Starting or running a local cluster (`titan up`, `titan demo`) failed.
    #[error("{0}")]
    Local(String),
    /// The master could not be reached, answered with an error, or the connection broke.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A one-off job or a DAG given as text did not parse.
    #[error(transparent)]
    Grammar(#[from] GrammarError),
    /// A DAG file did not parse; line numbers in `source` are lines of the file.
    #[error("{}: {source}", path.display())]
    DagFile {
        /// The file as given.
        path: PathBuf,
        /// What is wrong, at which file line.
        source: GrammarError,
    },
    /// A file given with `--file` or `-f` could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file as given.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A file is larger than what may be sent.
    #[error("{} is {len} bytes; at most {max} may be sent", path.display())]
    FileTooLarge {
        /// The file as given.
        path: PathBuf,
        /// Its size (at least).
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The `--file` script, or the options given with it, cannot form a valid job.
    #[error("{}: {field}: {problem}", path.display())]
    InlineScript {
        /// The file as given.
        path: PathBuf,
        /// The offending field (DATA for the file name).
        field: Field,
        /// What is wrong.
        problem: FieldProblem,
    },
    /// `--timeout` outside what a job spec can hold.
    #[error("--timeout must be between 1ms and {max_ms}ms, got {given_ms}ms")]
    TimeoutRange {
        /// The requested timeout.
        given_ms: u128,
        /// The largest timeout a spec holds.
        max_ms: u32,
    },
    /// Writing the output failed (for example, the reader of a pipe went away).
    #[error("cannot write the output: {0}")]
    Output(io::Error),
}

impl CliError {
    /// Whether the connection to the master is gone: the REPL then reconnects on the next command.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            CliError::Client(
                ClientError::Io(_)
                    | ClientError::Closed
                    | ClientError::Protocol(_)
                    | ClientError::UnexpectedReply { .. }
                    | ClientError::Auth { .. }
            )
        )
    }
}
