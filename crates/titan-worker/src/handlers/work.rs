//! [`Work`]: an attempt a handler runs inside the worker rather than as a process (the ops kinds:
//! sending an e-mail, rendering a PDF, cleaning a database).
//!
//! The work is an async task on the worker's executor; a part that blocks (a database driver, a
//! renderer) goes to a blocking thread (`glommio::executor().spawn_blocking`) and is awaited.
//! It gets its job's directory in the workspace (created, with empty `stdout.log` and
//! `stderr.log`, as for a process) and its output streams, drained like a process's: into the
//! log files and, line by line, to the master. It ends with a [`WorkResult`]: a failure says
//! whether a retry may heal it. A kill drops the task; the job's timeout, if any, is enforced by
//! the worker's core.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use futures_lite::future::BoxedLocal;
use futures_lite::AsyncWriteExt;
use glommio::net::UnixStream;
use titan_core::Outcome;

use crate::ledger::Attempt;

/// How work ended.
pub type WorkResult = Result<(), WorkFailure>;

/// Why work failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkFailure {
    /// A retry may succeed (a relay refused for now, a connection dropped): the job is retried
    /// with its backoff, like a process that exits non-zero.
    #[error("{0}")]
    Transient(String),
    /// A retry cannot succeed (a mailbox that does not exist, a missing source file): the job
    /// is dead at once.
    #[error("{0}")]
    Permanent(String),
}

impl WorkFailure {
    /// The outcome the master is told.
    pub fn outcome(result: WorkResult) -> Outcome {
        match result {
            Ok(()) => Outcome::Exited { code: 0 },
            Err(WorkFailure::Transient(message)) => Outcome::Error {
                message: message.into(),
            },
            Err(WorkFailure::Permanent(message)) => Outcome::Rejected {
                message: message.into(),
            },
        }
    }
}

/// What a work attempt is given when it begins.
pub struct WorkContext {
    pub attempt: Attempt,
    /// The job's directory (absolute), where files it leaves for the user go.
    pub dir: PathBuf,
    pub output: WorkOutput,
}

/// The work's stdout and stderr. Dropped (with the context) when the work ends, which ends the
/// drain of its output.
pub struct WorkOutput {
    stdout: UnixStream,
    stderr: UnixStream,
}

impl WorkOutput {
    pub(crate) fn new(stdout: UnixStream, stderr: UnixStream) -> WorkOutput {
        WorkOutput { stdout, stderr }
    }

    /// Writes one line to stdout (the newline is added).
    pub async fn stdout(&mut self, line: &str) -> io::Result<()> {
        write_line(&mut self.stdout, line).await
    }

    /// Writes one line to stderr (the newline is added).
    pub async fn stderr(&mut self, line: &str) -> io::Result<()> {
        write_line(&mut self.stderr, line).await
    }
}

async fn write_line(stream: &mut UnixStream, line: &str) -> io::Result<()> {
    stream.write_all(line.as_bytes()).await?;
    stream.write_all(b"\n").await
}

/// Work for one attempt: where it keeps its files, how long it may take, and the task itself,
/// created when the attempt begins.
pub struct Work {
    /// The job's directory under the workspace: a plain file name (the job's label).
    pub dir: String,
    /// Stop it after this long and report `TimedOut` (the job's timeout).
    pub time_limit: Option<Duration>,
    task: Box<dyn FnOnce(WorkContext) -> BoxedLocal<WorkResult>>,
}

impl Work {
    pub fn new<F, T>(dir: String, time_limit: Option<Duration>, task: F) -> Work
    where
        F: FnOnce(WorkContext) -> T + 'static,
        T: std::future::Future<Output = WorkResult> + 'static,
    {
        Work {
            dir,
            time_limit,
            task: Box::new(move |context| Box::pin(task(context))),
        }
    }

    /// Begins the work.
    pub(crate) fn begin(self, context: WorkContext) -> BoxedLocal<WorkResult> {
        (self.task)(context)
    }
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Work")
            .field("dir", &self.dir)
            .field("time_limit", &self.time_limit)
            .finish_non_exhaustive()
    }
}
