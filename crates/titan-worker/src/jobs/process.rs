//! Attempts that run as processes: the launch through the engine (after the ledger's wait when
//! a service's port is taken), the task that watches each process start and end, and the drain
//! of its output into its files and the master's log port.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use tracing::warn;

use super::{Control, Jobs};
use crate::drain::drain_output;
use crate::exec::{self, Job, Termination};
use crate::handlers::ProcessStart;
use crate::ledger::{Attempt, OutputLines, Watch};
use titan_core::Outcome;
use titan_logs::AttemptKey;

impl Jobs {
    /// Launches a process attempt, unless its service's port is taken: the ledger then waits
    /// for the port and hands the launch back.
    pub(super) fn start_process(
        self: &Rc<Jobs>,
        now: Instant,
        attempt: Attempt,
        start: ProcessStart,
    ) {
        if let Watch::Service { port: Some(port) } = start.watch {
            if matches!(exec::port_in_use(port), Ok(true)) {
                self.with_ledger(|ledger, comm| {
                    ledger.on_port_busy(now, attempt, port, start, comm)
                });
                return;
            }
        }
        self.launch(now, attempt, start);
    }

    pub(super) fn launch(self: &Rc<Jobs>, now: Instant, attempt: Attempt, start: ProcessStart) {
        let dir = self.engine.job_dir(&start.spec.workspace_dir);
        match self.engine.launch(start.spec) {
            Ok(process) => {
                let control = Control::Process(process.clone());
                self.with_ledger(|ledger, comm| {
                    ledger.on_launched(now, attempt, control, start.watch, comm)
                });
                glommio::spawn_local(self.clone().watch(attempt, process, dir)).detach();
            }
            Err(e) => {
                let outcome = Outcome::Error {
                    message: e.to_string().into(),
                };
                self.finish_now(now, attempt, outcome);
            }
        }
    }

    /// Follows a launched process until it ends, telling the ledger of its start and its end.
    async fn watch(self: Rc<Jobs>, attempt: Attempt, process: Job, dir: PathBuf) {
        let mut drain = None;
        if let Some(started) = process.started().await {
            // The job blocks once a socket buffer fills: start draining before anything else.
            if let Some(output) = process.take_output() {
                drain = Some(self.drain(output, dir, attempt));
            }
            let exited = process.has_exited();
            self.with_ledger(|ledger, comm| {
                ledger.on_started(Instant::now(), attempt, started.pid, exited, comm)
            });
        }
        let outcome = process.outcome().await;
        let lines = match drain {
            Some(task) => task.await.unwrap_or_default(),
            None => OutputLines::default(),
        };
        let ended = outcome_of(&outcome.termination);
        self.with_ledger(|ledger, comm| {
            ledger.on_finished(
                Instant::now(),
                attempt,
                ended,
                outcome.duration,
                lines,
                comm,
            )
        });
    }

    /// Drains an attempt's output into its files in `dir` and the shipper; resolves to the
    /// lines of each stream once every writer closed them.
    pub(super) fn drain(
        &self,
        output: exec::CapturedOutput,
        dir: PathBuf,
        attempt: Attempt,
    ) -> glommio::task::JoinHandle<OutputLines> {
        // Lines are shipped only with the attempt's key: without one they stay in the files.
        let log_key = self.log_keys.borrow_mut().remove(&attempt);
        let shipper = match (self.shipper.borrow().as_ref(), log_key) {
            (Some(shipper), Some(key)) => Some(shipper.for_attempt(&key)),
            _ => None,
        };
        let task = async move {
            let key = AttemptKey::new(attempt.job, attempt.attempt);
            let report = drain_output(output, &dir, key, shipper.as_ref()).await;
            for (stream, r) in [("stdout", &report.stdout), ("stderr", &report.stderr)] {
                if let Some(e) = &r.error {
                    let job = attempt.job;
                    warn!(%job, stream, error = %e, "job output could not be fully saved");
                }
            }
            OutputLines {
                stdout: report.stdout.records,
                stderr: report.stderr.records,
            }
        };
        match glommio::spawn_local_into(task, self.drains) {
            Ok(handle) => handle.detach(),
            Err(e) => unreachable!("the drain queue belongs to this executor: {e}"),
        }
    }
}

/// The core's view of how a process ended.
fn outcome_of(termination: &Termination) -> Outcome {
    match termination {
        Termination::Exited { code } => Outcome::Exited { code: *code },
        Termination::Signaled { signal } => Outcome::Signaled { signal: *signal },
        Termination::TimedOut { .. } => Outcome::TimedOut,
        Termination::Cancelled { .. } => Outcome::Killed,
        Termination::FailedToStart { error } => Outcome::Error {
            message: error.to_string().into(),
        },
        Termination::StatusLost { error } => Outcome::Error {
            message: format!("exit status lost: {error}").into(),
        },
    }
}
