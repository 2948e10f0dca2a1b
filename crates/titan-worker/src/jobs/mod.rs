//! The worker's job shell: thin IO around the [`Ledger`] (the pure core) and the handler
//! [`Registry`].
//!
//! It feeds the ledger what happens — a dispatch or a kill from the master, a registration or a
//! lost connection, a process that started or ended, a probe's answer, the time — and carries
//! out what the ledger decides: frames to the current session's outbox, a cancel through the
//! engine, a timer, a probe. Each dispatched attempt goes to the handler of its kind, and the
//! shell runs the [`Start`] it returns: processes in `process`, work inside the worker in
//! `work`. It also starts the child workers scaling asks for, which are not jobs.
//!
//! Jobs outlive sessions: while the master is unreachable attempts run on and their reports
//! are retained; on re-registration the worker lists them and sends the reports again.

mod process;
#[cfg(test)]
mod tests;
mod work;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::{Latency, Shares, TaskQueueHandle};
use tracing::{debug, info, warn};

use crate::children::ChildTemplate;
use crate::exec::{self, Job, ProcessEngine};
use crate::handlers::{self, Assignment, ProcessStart, Registry, Start};
use crate::ledger::{Admission, Attempt, Comm, Ledger, OutputLines, Report};
use titan_auth::KeyBytes;
use titan_core::{JobId, Outcome, WorkerId};
use titan_logs::{LogShipper, ShipperConfig};
use titan_proto::message::worker::{AttemptRef, JobStarted, RunJob, ServiceState};
use titan_proto::{encode_frame, OpCode};
use titan_runtime::outbox::{Notify, Outbox};

/// Shares of the output-draining task queue (the default queue has 1000).
const DRAIN_SHARES: usize = 100;

/// How the shell stops an attempt early.
pub(crate) enum Control {
    Process(Job),
    /// Work inside the worker: notified, its task drops the work.
    Work(Rc<Notify>),
}

/// The ledger as the shell instantiates it.
type WorkerLedger = Ledger<Control, ProcessStart>;

pub struct Jobs {
    engine: ProcessEngine,
    ledger: RefCell<WorkerLedger>,
    registry: Registry,
    link: RefCell<Option<Rc<Outbox>>>,
    worker_id: Cell<Option<u32>>,
    children: ChildTemplate,
    /// Ephemeral child workers spawned for scaling, by ticket.
    scaled: RefCell<HashMap<u64, Job>>,
    /// Streams job output lines to the master (once registered, when it takes logs).
    shipper: RefCell<Option<LogShipper>>,
    /// The log keys of attempts whose output is not drained yet (from their `RunJob`): taken
    /// when the drain starts, dropped when the attempt ends or is withdrawn without one.
    log_keys: RefCell<HashMap<Attempt, KeyBytes>>,
    /// Where job output is drained: below the default queue's shares, so a job printing a flood
    /// of output never delays job reports and new jobs.
    drains: TaskQueueHandle,
    /// This process's identity on every registration (a restarted master waits for it by this).
    instance: u64,
    /// The task that calls the ledger's `on_tick`, and the deadline it sleeps towards.
    ticker: Ticker,
}

/// A timer task runs while the ledger has deadlines; it is started on the first one.
#[derive(Default)]
struct Ticker {
    /// What the running task sleeps towards; `None` when no task runs.
    due: Cell<Option<Instant>>,
    /// Wakes the task when an earlier deadline comes.
    rearm: Notify,
}

impl Jobs {
    /// A worker's jobs, with the handlers its skills call for.
    pub fn new(engine: ProcessEngine, children: ChildTemplate) -> Jobs {
        let registry = Registry::new(&children.skills, children.clone());
        Jobs::with_registry(engine, children, registry)
    }

    pub fn with_registry(
        engine: ProcessEngine,
        children: ChildTemplate,
        registry: Registry,
    ) -> Jobs {
        Jobs {
            engine,
            ledger: RefCell::default(),
            registry,
            link: RefCell::new(None),
            worker_id: Cell::new(None),
            children,
            scaled: RefCell::new(HashMap::new()),
            shipper: RefCell::new(None),
            log_keys: RefCell::default(),
            // std's hasher keys are random per process: a random id without another dependency.
            instance: {
                use std::hash::{BuildHasher, Hasher};
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u32(std::process::id());
                h.finish()
            },
            drains: glommio::executor().create_task_queue(
                Shares::Static(DRAIN_SHARES),
                Latency::NotImportant,
                "job-output",
            ),
            ticker: Ticker::default(),
        }
    }

    /// Reports go to this outbox from now on, and output lines to the master's log port, their
    /// headers sealed with `log_key`.
    pub fn link(
        self: &Rc<Jobs>,
        outbox: Rc<Outbox>,
        worker_id: u32,
        log_addr: Option<SocketAddr>,
        log_key: &KeyBytes,
    ) {
        *self.link.borrow_mut() = Some(outbox);
        self.worker_id.set(Some(worker_id));
        self.with_ledger(|ledger, comm| ledger.on_registered(Instant::now(), comm));
        let mut shipper = self.shipper.borrow_mut();
        match (log_addr, shipper.as_ref()) {
            (Some(_), Some(existing)) => existing.set_worker(WorkerId(worker_id), log_key),
            (Some(addr), None) => {
                let config = ShipperConfig::new(addr, WorkerId(worker_id), *log_key);
                match LogShipper::new(config) {
                    Ok(new) => *shipper = Some(new),
                    Err(e) => {
                        warn!(error = %e, "cannot stream job output to the master; files only")
                    }
                }
            }
            (None, _) => *shipper = None,
        }
    }

    /// The master is gone: reports are only retained until the next registration.
    pub fn unlink(self: &Rc<Jobs>) {
        *self.link.borrow_mut() = None;
        self.with_ledger(|ledger, comm| ledger.on_link_lost(comm));
        // Launches withdrawn with the link never drain: their keys go with them.
        let live = self.ledger.borrow_mut().running_attempts(Instant::now());
        self.log_keys
            .borrow_mut()
            .retain(|attempt, _| live.contains(attempt));
    }

    pub fn running(&self) -> usize {
        self.ledger.borrow().running()
    }

    /// This worker process's identity (see `Register::instance`).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The skills this worker advertises: those of its handlers.
    pub fn skills(&self) -> Vec<String> {
        self.registry.skills().to_vec()
    }

    /// The attempts a registration lists: running here, or ended with their report retained.
    pub fn running_attempts(&self) -> Vec<AttemptRef> {
        let attempts = self.ledger.borrow_mut().running_attempts(Instant::now());
        attempts.into_iter().map(Attempt::to_wire).collect()
    }

    /// Starts an attempt. Everything that goes wrong is reported as the attempt's outcome.
    pub fn start(self: &Rc<Jobs>, run: RunJob) {
        let RunJob {
            job,
            attempt,
            label,
            spec,
            log_key,
        } = run;
        let attempt = Attempt::new(job, attempt);
        if let Some(key) = log_key {
            self.log_keys.borrow_mut().insert(attempt, key.0);
        }
        let now = Instant::now();
        if self.with_ledger(|ledger, comm| ledger.on_run(now, attempt, comm))
            == Admission::Duplicate
        {
            debug!(
                job = job.0,
                attempt.attempt, "dispatch of an attempt already running here"
            );
            return;
        }
        let Some(handler) = self.registry.handler_for(&spec.kind) else {
            return self.finish_now(now, attempt, handlers::no_handler(&spec.kind));
        };
        let assignment = Assignment {
            attempt,
            label,
            spec,
            worker: self.worker_id.get().map(WorkerId),
        };
        match handler.start(assignment) {
            Start::Done(outcome) => self.finish_now(now, attempt, outcome),
            Start::Timer(length) => {
                self.with_ledger(|ledger, comm| ledger.on_sleep(now, attempt, length, comm))
            }
            Start::Process(process) => self.start_process(now, attempt, process),
            Start::Work(work) => self.start_work(now, attempt, work),
        }
    }

    /// Kills an attempt if it still runs here; its report follows when it has stopped.
    pub fn kill(self: &Rc<Jobs>, job: u64, attempt: u32) {
        let target = Attempt::new(JobId(job), attempt);
        if !self.with_ledger(|ledger, comm| ledger.on_kill(Instant::now(), target, comm)) {
            debug!(job, attempt, "kill for an attempt that is not running here");
        }
    }

    /// Starts an ephemeral child worker for scaling. It is not a job: nothing is reported when
    /// it ends (the master sees it register and disconnect).
    pub fn spawn_child_worker(self: &Rc<Jobs>, ticket: u64) {
        let spec = self.children.scaled(ticket, self.worker_id.get());
        match self.engine.launch(spec) {
            Ok(child) => {
                info!(ticket, "spawned a child worker for scaling");
                self.scaled.borrow_mut().insert(ticket, child.clone());
                let jobs = self.clone();
                glommio::spawn_local(async move {
                    let outcome = child.outcome().await;
                    debug!(ticket, ?outcome.termination, "scaled child worker ended");
                    jobs.scaled.borrow_mut().remove(&ticket);
                })
                .detach();
            }
            Err(e) => warn!(ticket, error = %e, "could not spawn a child worker"),
        }
    }

    /// An attempt that ended without running anything.
    fn finish_now(self: &Rc<Jobs>, now: Instant, attempt: Attempt, outcome: Outcome) {
        let lines = OutputLines::default();
        self.with_ledger(|ledger, comm| {
            ledger.on_finished(now, attempt, outcome, Duration::ZERO, lines, comm)
        });
    }

    /// Runs one ledger event. Its effects are carried out as the ledger makes them, except
    /// those that must wait until the ledger is released (see [`Deferred`]).
    fn with_ledger<R>(
        self: &Rc<Jobs>,
        event: impl FnOnce(&mut WorkerLedger, &mut Effects<'_>) -> R,
    ) -> R {
        let mut effects = Effects {
            jobs: self,
            deferred: Vec::new(),
        };
        let result = event(&mut self.ledger.borrow_mut(), &mut effects);
        for deferred in effects.deferred {
            match deferred {
                Deferred::Ticker => {
                    glommio::spawn_local(self.clone().run_ticker()).detach();
                }
                Deferred::Probe(attempt, port, deadline) => self.probe(attempt, port, deadline),
                Deferred::Launch(attempt, start) => self.launch(Instant::now(), attempt, start),
            }
        }
        result
    }

    async fn run_ticker(self: Rc<Jobs>) {
        loop {
            let Some(at) = self.ledger.borrow().next_deadline() else {
                self.ticker.due.set(None);
                return;
            };
            self.ticker.due.set(Some(at));
            let wait = at.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                future::or(glommio::timer::sleep(wait), self.ticker.rearm.wait()).await;
            }
            self.with_ledger(|ledger, comm| ledger.on_tick(Instant::now(), comm));
        }
    }

    /// One attempt to connect to a starting service's port; the answer goes to the ledger.
    fn probe(self: &Rc<Jobs>, attempt: Attempt, port: u16, deadline: Instant) {
        let jobs = self.clone();
        glommio::spawn_local(async move {
            let left = deadline.saturating_duration_since(Instant::now());
            let result = if left.is_zero() {
                Err(std::io::ErrorKind::TimedOut.to_string())
            } else {
                exec::connect_once(port, left)
                    .await
                    .map_err(|e| e.to_string())
            };
            jobs.with_ledger(|ledger, comm| ledger.on_probe(Instant::now(), attempt, result, comm));
        })
        .detach();
    }

    /// Pushes a report to the current session's outbox, if there is one.
    fn send(&self, report: Report<'_>) {
        if let Report::Finished(finished) = report {
            // An attempt that ended before its drain started leaves its key behind.
            let attempt = Attempt::new(finished.job, finished.attempt);
            self.log_keys.borrow_mut().remove(&attempt);
        }
        let link = self.link.borrow();
        let Some(outbox) = link.as_ref() else {
            return;
        };
        outbox.push(|out| {
            let encoded = match report {
                Report::Started { attempt, pid } => {
                    let msg = JobStarted {
                        job: attempt.job,
                        attempt: attempt.attempt,
                        pid,
                    };
                    encode_frame(out, OpCode::JobStarted, &msg)
                }
                Report::Ready(attempt) => {
                    let msg = ServiceState::Ready {
                        job: attempt.job,
                        attempt: attempt.attempt,
                    };
                    encode_frame(out, OpCode::ServiceState, &msg)
                }
                Report::Finished(finished) => encode_frame(out, OpCode::JobComplete, finished),
            };
            if let Err(e) = encoded {
                warn!(?report, error = %e, "could not encode a report");
            }
        });
    }
}

/// The ledger's effects, carried out while it is borrowed: none may call back into it.
struct Effects<'a> {
    jobs: &'a Rc<Jobs>,
    /// What must wait until the ledger is released. Empty, and so not allocated, for most events.
    deferred: Vec<Deferred>,
}

/// An effect carried out once the ledger is released: glommio runs a spawned task at once, up
/// to its first wait, and a launch reports back to the ledger.
enum Deferred {
    /// Start the timer task.
    Ticker,
    Probe(Attempt, u16, Instant),
    Launch(Attempt, ProcessStart),
}

impl Comm<Control, ProcessStart> for Effects<'_> {
    fn send(&mut self, report: Report<'_>) {
        self.jobs.send(report);
    }

    fn cancel(&mut self, handle: &Control) {
        match handle {
            Control::Process(process) => process.cancel(),
            Control::Work(cancel) => cancel.notify(),
        }
    }

    fn withdraw(&mut self, handle: &Control) -> bool {
        match handle {
            // A launch a process thread already took runs and reports as usual.
            Control::Process(process) => process.pid().is_none() && process.withdraw(),
            Control::Work(_) => false,
        }
    }

    fn port_in_use(&mut self, port: u16) -> bool {
        matches!(exec::port_in_use(port), Ok(true))
    }

    fn launch(&mut self, attempt: Attempt, launch: ProcessStart) {
        self.deferred.push(Deferred::Launch(attempt, launch));
    }

    fn probe(&mut self, attempt: Attempt, port: u16, deadline: Instant) {
        self.deferred.push(Deferred::Probe(attempt, port, deadline));
    }

    /// Keeps one timer task running while the ledger has deadlines.
    fn wake_at(&mut self, at: Instant) {
        let ticker = &self.jobs.ticker;
        match ticker.due.get() {
            None => {
                ticker.due.set(Some(at));
                self.deferred.push(Deferred::Ticker);
            }
            Some(due) if at < due => ticker.rearm.notify(),
            Some(_) => {}
        }
    }
}
