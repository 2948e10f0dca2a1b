//! Attempts that run inside the worker ([`Work`]): the job's directory is prepared on a blocking
//! thread (as the engine's process threads do for a process), the output streams are socket
//! pairs drained exactly like a process's, and the task races the ledger's cancel.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures_lite::future;
use glommio::net::UnixStream;

use super::{Control, Jobs};
use crate::exec::{CapturedOutput, STDERR_FILE, STDOUT_FILE};
use crate::handlers::{Work, WorkContext, WorkFailure, WorkOutput};
use crate::ledger::{Attempt, OutputLines, Watch};
use titan_core::Outcome;
use titan_runtime::outbox::Notify;

impl Jobs {
    /// Begins a work attempt: the ledger counts it as launched (and started: there is no
    /// process to wait for) and the task runs it.
    pub(super) fn start_work(self: &Rc<Jobs>, now: Instant, attempt: Attempt, work: Work) {
        let cancel = Rc::new(Notify::default());
        let watch = match work.time_limit {
            Some(limit) => Watch::TimeLimit(limit),
            None => Watch::Bounded,
        };
        let control = Control::Work(cancel.clone());
        self.with_ledger(|ledger, comm| {
            ledger.on_launched(now, attempt, control, watch, comm);
            ledger.on_started(now, attempt, 0, false, comm);
        });
        glommio::spawn_local(self.clone().run_work(attempt, work, cancel)).detach();
    }

    async fn run_work(self: Rc<Jobs>, attempt: Attempt, work: Work, cancel: Rc<Notify>) {
        let began = Instant::now();
        let dir = self.engine.job_dir(&work.dir);
        let (outcome, lines) = match prepare(dir.clone()).await {
            Ok(file_errors) => self.run_in(attempt, dir, file_errors, work, &cancel).await,
            Err(e) => {
                let message = format!("cannot prepare workspace {}: {e}", dir.display());
                let outcome = Outcome::Error {
                    message: message.into(),
                };
                (outcome, OutputLines::default())
            }
        };
        let ran = began.elapsed();
        self.with_ledger(|ledger, comm| {
            ledger.on_finished(Instant::now(), attempt, outcome, ran, lines, comm)
        });
    }

    /// Runs the work in its prepared directory until it ends or is cancelled, then waits for
    /// its output to be drained.
    async fn run_in(
        &self,
        attempt: Attempt,
        dir: PathBuf,
        file_errors: [Option<Arc<io::Error>>; 2],
        work: Work,
        cancel: &Notify,
    ) -> (Outcome, OutputLines) {
        let pairs = UnixStream::pair().and_then(|out| UnixStream::pair().map(|err| (out, err)));
        let ((stdout, stdout_end), (stderr, stderr_end)) = match pairs {
            Ok(pairs) => pairs,
            Err(e) => {
                let message = format!("cannot capture the job's output: {e}");
                let outcome = Outcome::Error {
                    message: message.into(),
                };
                return (outcome, OutputLines::default());
            }
        };
        let captured = CapturedOutput {
            stdout: stdout_end,
            stderr: stderr_end,
            file_errors,
        };
        let drain = self.drain(captured, dir.clone(), attempt);
        let context = WorkContext {
            attempt,
            dir,
            output: WorkOutput::new(stdout, stderr),
        };
        let task = work.begin(context);
        // A cancel drops the task, and the output ends with it.
        let outcome = future::or(async { WorkFailure::outcome(task.await) }, async {
            cancel.wait().await;
            Outcome::Killed
        })
        .await;
        (outcome, drain.await.unwrap_or_default())
    }
}

/// Creates the job's directory and empties its log files, on a blocking thread. The files'
/// errors are the drain's to report (it tries again when output comes).
async fn prepare(dir: PathBuf) -> io::Result<[Option<Arc<io::Error>>; 2]> {
    glommio::executor()
        .spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            let create = |name: &str| File::create(Path::new(&dir).join(name)).err().map(Arc::new);
            Ok([create(STDOUT_FILE), create(STDERR_FILE)])
        })
        .await
}
