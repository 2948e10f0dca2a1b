//! Running what the master sends, and reporting how each attempt went.
//!
//! `NOOP` completes on the spot and `SLEEP` on a timer, both without a process (they exist to
//! measure the scheduler). `RUN`, inline scripts and `DEPLOY` run as processes through the
//! engine; a `DEPLOY` is reported ready once it runs and, when it has a port, once the port
//! accepts connections. `DEPLOY` of `Worker.jar` (or `worker`) starts a child `titan worker` on
//! the given port (Inception). Reports go to the current session's outbox; while the master is
//! unreachable they are dropped — the master re-queued those attempts when it lost this worker,
//! and on re-registration it is told which attempts still run.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::{Latency, Shares, TaskQueueHandle};
use tracing::{debug, info, warn};

use super::children::ChildTemplate;
use super::exec::{self, Job, OutputMode, ProcessEngine, Program, Termination};
use crate::drain::drain_output;
use titan_core::{JobId, JobKind, Outcome, WorkerId};
use titan_logs::{AttemptKey, LogShipper, ShipperConfig};
use titan_proto::message::worker::{AttemptRef, JobFinished, JobStarted, RunJob, ServiceState};
use titan_proto::{encode_frame, OpCode};
use titan_runtime::outbox::{Notify, Outbox};

/// How long a service with a port may take to accept connections before its deploy fails.
pub const SERVICE_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a service's port may stay taken before its deploy is refused (see
/// `Jobs::launch_once_port_frees`).
pub const PORT_FREE_GRACE: Duration = Duration::from_secs(1);
const PORT_FREE_POLL: Duration = Duration::from_millis(25);

/// File names that make a `DEPLOY` start a child worker instead of a script.
pub const INCEPTION_FILES: [&str; 2] = ["Worker.jar", "worker"];

/// How an attempt is stopped early.
enum Control {
    Process(Job),
    Timer(Rc<Notify>),
}

struct Running {
    attempt: u32,
    control: Control,
    /// A service that reported ready: said again after every registration, since the report
    /// can die with the master before it is journaled (its children would then wait for ever).
    ready: bool,
}

pub struct Jobs {
    engine: ProcessEngine,
    running: RefCell<HashMap<u64, Running>>,
    /// Attempts dropped before their process started (see `drop_unstarted`): not reported.
    dropped: RefCell<HashSet<(u64, u32)>>,
    link: RefCell<Option<Rc<Outbox>>>,
    worker_id: Cell<Option<u32>>,
    children: ChildTemplate,
    /// Ephemeral child workers spawned for scaling, by ticket.
    scaled: RefCell<HashMap<u64, Job>>,
    /// Streams job output lines to the master (once registered, when it takes logs).
    shipper: RefCell<Option<LogShipper>>,
    /// Where job output is drained: below the default queue's shares, so a job printing a flood
    /// of output never delays job reports and new jobs.
    drains: TaskQueueHandle,
    /// Recent attempt reports, sent or not. A report written to the socket can still die with
    /// the master before it is journaled, so every registration lists these attempts (the
    /// master adopts the ones it lost track of) and re-sends the reports right after (a master
    /// that already has them ignores them as stale). Without this, a lost report would make the
    /// job run again once the adoption grace ends.
    reports: RefCell<VecDeque<(Instant, AttemptRef, Vec<u8>)>>,
    /// This process's identity on every registration (a restarted master waits for it by this).
    instance: u64,
}

/// Reports kept at most; older ones are dropped first.
pub const MAX_RETAINED_REPORTS: usize = 10_000;

/// How long a report is kept: a master that stays away longer re-queues attempts it lost the
/// report of (at-least-once), as it does for any attempt no worker accounts for.
pub const REPORT_RETENTION: Duration = Duration::from_secs(60);

/// Shares of the output-draining task queue (the default queue has 1000).
const DRAIN_SHARES: usize = 100;

impl Jobs {
    pub fn new(engine: ProcessEngine, children: ChildTemplate) -> Jobs {
        Jobs {
            engine,
            running: RefCell::new(HashMap::new()),
            dropped: RefCell::default(),
            link: RefCell::new(None),
            worker_id: Cell::new(None),
            children,
            scaled: RefCell::new(HashMap::new()),
            shipper: RefCell::new(None),
            reports: RefCell::new(VecDeque::new()),
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
        }
    }

    /// Reports go to this outbox from now on, and output lines to the master's log port.
    pub fn link(&self, outbox: Rc<Outbox>, worker_id: u32, log_addr: Option<SocketAddr>) {
        self.expire_reports();
        for (_, _, frame) in self.reports.borrow().iter() {
            outbox.push(|out| out.extend_from_slice(frame));
        }
        // Ready services again, after the registration that lists them (a master that has the
        // readiness ignores it; one that lost it with a crash releases the children now).
        for (&job, running) in self.running.borrow().iter().filter(|(_, r)| r.ready) {
            let msg = ServiceState::Ready {
                job: JobId(job),
                attempt: running.attempt,
            };
            outbox.push(|out| {
                if let Err(e) = encode_frame(out, OpCode::ServiceState, &msg) {
                    warn!(job, error = %e, "could not encode a service's readiness");
                }
            });
        }
        *self.link.borrow_mut() = Some(outbox);
        self.worker_id.set(Some(worker_id));
        let mut shipper = self.shipper.borrow_mut();
        match (log_addr, shipper.as_ref()) {
            (Some(_), Some(existing)) => existing.set_worker(WorkerId(worker_id)),
            (Some(addr), None) => {
                match LogShipper::new(ShipperConfig::new(addr, WorkerId(worker_id))) {
                    Ok(new) => *shipper = Some(new),
                    Err(e) => {
                        warn!(error = %e, "cannot stream job output to the master; files only")
                    }
                }
            }
            (None, _) => *shipper = None,
        }
    }

    /// Counts `attempt` of `job` as running here, not yet ready.
    fn track(&self, job: u64, attempt: u32, control: Control) {
        let running = Running {
            attempt,
            control,
            ready: false,
        };
        self.running.borrow_mut().insert(job, running);
    }

    pub fn unlink(&self) {
        *self.link.borrow_mut() = None;
        self.drop_unstarted();
    }

    /// Drops, unreported, the attempts whose launch still waits for a slot (prefetched ones):
    /// with the connection gone, a master that is still up has re-queued them already, and a
    /// restarted one re-queues every attempt its workers do not list. Left in the queue they
    /// would start here while running elsewhere too. A launch a process thread already took
    /// runs and reports as usual.
    fn drop_unstarted(&self) {
        let mut running = self.running.borrow_mut();
        let mut withdrawn = Vec::new();
        for (&job, r) in running.iter() {
            if let Control::Process(process) = &r.control {
                if process.pid().is_none() && process.withdraw() {
                    withdrawn.push((job, r.attempt));
                }
            }
        }
        for (job, attempt) in withdrawn {
            debug!(job, attempt, "dropped a launch that had not started");
            running.remove(&job);
            self.dropped.borrow_mut().insert((job, attempt));
        }
    }

    pub fn running(&self) -> usize {
        self.running.borrow().len()
    }

    /// This worker process's identity (see `Register::instance`).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    pub fn running_attempts(&self) -> Vec<AttemptRef> {
        let mut attempts: Vec<AttemptRef> = self
            .running
            .borrow()
            .iter()
            .map(|(&job, r)| AttemptRef {
                job: JobId(job),
                attempt: r.attempt,
            })
            .collect();
        self.expire_reports();
        attempts.extend(self.reports.borrow().iter().map(|(_, a, _)| *a));
        attempts.sort_by_key(|a| (a.job, a.attempt));
        attempts.dedup();
        attempts
    }

    fn send(
        &self,
        opcode: OpCode,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<usize, titan_proto::EncodeError>,
    ) {
        if let Some(outbox) = self.link.borrow().as_ref() {
            outbox.push(|out| {
                if let Err(e) = encode(out) {
                    warn!(%opcode, error = %e, "could not encode a report");
                }
            });
        }
    }

    /// Reports an attempt that produced no output (no process, or it never started).
    fn report_finished(&self, job: u64, attempt: u32, outcome: Outcome, duration: Duration) {
        self.report_finished_with_lines(job, attempt, outcome, duration, (0, 0));
    }

    fn report_finished_with_lines(
        &self,
        job: u64,
        attempt: u32,
        outcome: Outcome,
        duration: Duration,
        lines: (u64, u64),
    ) {
        let msg = JobFinished {
            job: JobId(job),
            attempt,
            outcome,
            duration_us: duration.as_micros() as u64,
            stdout_lines: lines.0,
            stderr_lines: lines.1,
        };
        let mut frame = Vec::new();
        if let Err(e) = encode_frame(&mut frame, OpCode::JobComplete, &msg) {
            warn!(job, attempt, error = %e, "could not encode a report");
            return;
        }
        if let Some(outbox) = self.link.borrow().as_ref() {
            outbox.push(|out| out.extend_from_slice(&frame));
        }
        self.expire_reports();
        let mut reports = self.reports.borrow_mut();
        if reports.len() == MAX_RETAINED_REPORTS {
            reports.pop_front();
        }
        let attempt = AttemptRef {
            job: JobId(job),
            attempt,
        };
        reports.push_back((Instant::now(), attempt, frame));
    }

    fn expire_reports(&self) {
        let mut reports = self.reports.borrow_mut();
        while reports
            .front()
            .is_some_and(|(at, _, _)| at.elapsed() > REPORT_RETENTION)
        {
            reports.pop_front();
        }
    }

    /// Starts an attempt. Everything that goes wrong is reported as the attempt's outcome.
    pub fn start(self: &Rc<Jobs>, run: RunJob) {
        let RunJob {
            job: JobId(job),
            attempt,
            label,
            spec,
        } = run;
        if self
            .running
            .borrow()
            .get(&job)
            .is_some_and(|r| r.attempt == attempt)
        {
            // The attempt this worker already runs (the master adopted it, then sent it again).
            debug!(job, attempt, "dispatch of an attempt already running here");
            return;
        }
        if let Some(previous) = self.running.borrow().get(&job) {
            // A new attempt of a job whose old attempt still runs here: the master gave up on
            // the old one (it was re-queued), so it must not finish twice.
            debug!(
                job,
                old = previous.attempt,
                new = attempt,
                "superseded attempt"
            );
            self.cancel_control(&previous.control);
        }
        let timeout = spec
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms.get())));
        // A service may live for ever (no timeout); `Some(port)` when it must open a port.
        let service_port = match spec.kind {
            JobKind::Deploy { port, .. } => Some(port),
            _ => None,
        };
        let program = match spec.kind {
            JobKind::Noop => {
                self.report_finished(job, attempt, Outcome::Exited { code: 0 }, Duration::ZERO);
                return;
            }
            JobKind::Sleep { ms } => {
                self.start_timer(job, attempt, Duration::from_millis(u64::from(ms)));
                return;
            }
            JobKind::Skill { name, .. } => {
                let message = format!("no handler for {name} on this worker");
                self.report_finished(
                    job,
                    attempt,
                    Outcome::Error {
                        message: message.into(),
                    },
                    Duration::ZERO,
                );
                return;
            }
            JobKind::Run { file, args } => Program::perm_file(
                file.to_string(),
                args.iter().map(|a| a.to_string()).collect(),
            ),
            JobKind::RunInline { name, bytes } => Program::Inline {
                name: name.to_string(),
                bytes: bytes.into_vec(),
                args: Vec::new(),
            },
            JobKind::Deploy { ref file, port } if INCEPTION_FILES.contains(&&**file) => {
                match port {
                    Some(port) => self.child_worker(port),
                    None => {
                        let message =
                            "a worker deploy needs a port (ID|DEPLOY|Worker.jar|PORT|...)";
                        self.report_finished(
                            job,
                            attempt,
                            Outcome::Error {
                                message: message.into(),
                            },
                            Duration::ZERO,
                        );
                        return;
                    }
                }
            }
            JobKind::Deploy { file, .. } => Program::perm_file(file.to_string(), Vec::new()),
        };
        let dir = label.clone();
        let mut exec_spec = exec::JobSpec::new(label, dir.clone(), program)
            .with_env("TITAN_ATTEMPT", attempt.to_string())
            .with_output(OutputMode::Capture);
        if let (Some(t), None) = (timeout, service_port) {
            exec_spec = exec_spec.with_timeout(t);
        }
        if let Some(Some(port)) = service_port {
            exec_spec = exec_spec
                .with_env("TITAN_PORT", port.to_string())
                .with_env("PORT", port.to_string());
            if matches!(exec::port_in_use(port), Ok(true)) {
                self.launch_once_port_frees(job, attempt, port, exec_spec, dir);
                return;
            }
        }
        self.launch(job, attempt, exec_spec, dir, service_port);
    }

    /// A service's port is taken. It may be a previous run of this very service still dying (a
    /// redeploy after its worker died races the sentinel's kill), so the port gets
    /// [`PORT_FREE_GRACE`]; then the attempt is refused, which the master does not retry. The
    /// wait can be cancelled like any attempt.
    fn launch_once_port_frees(
        self: &Rc<Jobs>,
        job: u64,
        attempt: u32,
        port: u16,
        exec_spec: exec::JobSpec,
        dir: String,
    ) {
        let cancel = Rc::new(Notify::default());
        let control = Control::Timer(cancel.clone());
        self.track(job, attempt, control);
        let jobs = self.clone();
        glommio::spawn_local(async move {
            let began = Instant::now();
            // Some(true): the port freed; Some(false): still taken; None: cancelled.
            let freed = future::or(
                async {
                    while began.elapsed() < PORT_FREE_GRACE {
                        glommio::timer::sleep(PORT_FREE_POLL).await;
                        if !matches!(exec::port_in_use(port), Ok(true)) {
                            return Some(true);
                        }
                    }
                    Some(false)
                },
                async {
                    cancel.wait().await;
                    None
                },
            )
            .await;
            if !jobs.forget(job, attempt) {
                return; // superseded by a newer attempt, which reports for the job
            }
            let outcome = match freed {
                Some(true) => {
                    jobs.launch(job, attempt, exec_spec, dir, Some(Some(port)));
                    return;
                }
                Some(false) => {
                    warn!(
                        job,
                        port, "service port already in use; refusing the deploy"
                    );
                    Outcome::Rejected {
                        message: format!("port {port} is already in use by another process").into(),
                    }
                }
                None => Outcome::Killed,
            };
            jobs.report_finished(job, attempt, outcome, began.elapsed());
        })
        .detach();
    }

    fn launch(
        self: &Rc<Jobs>,
        job: u64,
        attempt: u32,
        exec_spec: exec::JobSpec,
        dir: String,
        service_port: Option<Option<u16>>,
    ) {
        match self.engine.launch(exec_spec) {
            Ok(process) => {
                self.track(job, attempt, Control::Process(process.clone()));
                glommio::spawn_local(self.clone().watch(job, attempt, process, dir, service_port))
                    .detach();
            }
            Err(e) => self.report_finished(
                job,
                attempt,
                Outcome::Error {
                    message: e.to_string().into(),
                },
                Duration::ZERO,
            ),
        }
    }

    /// `titan worker` on `port`, registering with the same master, as this worker's child.
    fn child_worker(&self, port: u16) -> Program {
        let exe = std::env::current_exe().unwrap_or_else(|_| "titan".into());
        Program::trusted(exe, self.children.args(port, self.worker_id.get()))
    }

    /// Starts an ephemeral child worker for scaling: a free port, this worker's capacity and
    /// skills, and the master's ticket so the master can match it to its decision. It is not a
    /// job: nothing is reported when it ends (the master sees it register and disconnect).
    pub fn spawn_child_worker(self: &Rc<Jobs>, ticket: u64) {
        let exe = std::env::current_exe().unwrap_or_else(|_| "titan".into());
        let mut args = self.children.args(0, self.worker_id.get());
        args.extend([
            "--ephemeral".into(),
            "--spawn-ticket".into(),
            ticket.to_string().into(),
        ]);
        args.extend([
            "--capacity".into(),
            self.children.capacity.to_string().into(),
        ]);
        args.extend(["--skills".into(), self.children.skills.join(",").into()]);
        let name = format!("scale-{ticket}");
        match self.engine.launch(exec::JobSpec::new(
            name.clone(),
            name,
            Program::trusted(exe, args),
        )) {
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

    async fn watch(
        self: Rc<Jobs>,
        job: u64,
        attempt: u32,
        process: Job,
        dir: String,
        service: Option<Option<u16>>,
    ) {
        let mut drain = None;
        // Set when the deploy failed for a reason the process's own ending would hide.
        let mut failed = None;
        if let Some(started) = process.started().await {
            // The job blocks once a socket buffer fills: start draining before anything else.
            if let Some(output) = process.take_output() {
                drain = Some(self.drain(output, &dir, JobId(job), attempt));
            }
            // The news of a start usually rides along with the exit (the engine delays it):
            // the finished report then follows at once and says everything the start notice
            // would, so a short job costs the master one frame, not two.
            if service.is_some() || !process.has_exited() {
                let msg = JobStarted {
                    job: JobId(job),
                    attempt,
                    pid: started.pid,
                };
                self.send(OpCode::JobStarted, |out| {
                    encode_frame(out, OpCode::JobStarted, &msg)
                });
            }
            if let Some(port) = service {
                failed = self.await_service_ready(job, attempt, &process, port).await;
            }
        }
        let outcome = process.outcome().await;
        let lines = match drain {
            Some(task) => task.await.unwrap_or_default(),
            None => (0, 0),
        };
        if self.dropped.borrow_mut().remove(&(job, attempt)) {
            return;
        }
        self.forget(job, attempt);
        self.report_finished_with_lines(
            job,
            attempt,
            failed.unwrap_or_else(|| outcome_of(&outcome.termination)),
            outcome.duration,
            lines,
        );
    }

    /// Drains a job's output into its files and the shipper; resolves to the lines of each
    /// stream once every process of the job closed them.
    fn drain(
        &self,
        output: exec::CapturedOutput,
        dir: &str,
        job: JobId,
        attempt: u32,
    ) -> glommio::task::JoinHandle<(u64, u64)> {
        let dir = self.engine.job_dir(dir);
        let shipper = self.shipper.borrow().clone();
        let task = async move {
            let key = AttemptKey::new(job, attempt);
            let report = drain_output(output, &dir, key, shipper.as_ref()).await;
            for (stream, r) in [("stdout", &report.stdout), ("stderr", &report.stderr)] {
                if let Some(e) = &r.error {
                    warn!(%job, stream, error = %e, "job output could not be fully saved");
                }
            }
            (report.stdout.records, report.stderr.records)
        };
        match glommio::spawn_local_into(task, self.drains) {
            Ok(handle) => handle.detach(),
            Err(e) => unreachable!("the drain queue belongs to this executor: {e}"),
        }
    }

    /// A service is ready when it runs and, with a port, once the port accepts connections; a
    /// port that never opens fails the deploy clearly: the process is killed and the returned
    /// outcome says why.
    async fn await_service_ready(
        &self,
        job: u64,
        attempt: u32,
        process: &Job,
        port: Option<u16>,
    ) -> Option<Outcome> {
        if let Some(port) = port {
            let deadline = Instant::now() + SERVICE_READY_TIMEOUT;
            let ready = future::or(
                async { Some(exec::wait_port_ready(port, deadline).await) },
                async {
                    process.outcome().await;
                    None
                },
            )
            .await;
            match ready {
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    warn!(job, port, error = %e, "service never opened its port; killing it");
                    process.cancel();
                    let message = format!("deploy failed: {e}").into();
                    return Some(Outcome::Error { message });
                }
                None => return None,
            }
        }
        if let Some(running) = self.running.borrow_mut().get_mut(&job) {
            if running.attempt == attempt {
                running.ready = true;
            }
        }
        let msg = ServiceState::Ready {
            job: JobId(job),
            attempt,
        };
        self.send(OpCode::ServiceState, |out| {
            encode_frame(out, OpCode::ServiceState, &msg)
        });
        None
    }

    fn start_timer(self: &Rc<Jobs>, job: u64, attempt: u32, duration: Duration) {
        let cancel = Rc::new(Notify::default());
        self.track(job, attempt, Control::Timer(cancel.clone()));
        let jobs = self.clone();
        glommio::spawn_local(async move {
            let started = Instant::now();
            let finished = future::or(
                async {
                    glommio::timer::sleep(duration).await;
                    true
                },
                async {
                    cancel.wait().await;
                    false
                },
            )
            .await;
            jobs.forget(job, attempt);
            let outcome = if finished {
                Outcome::Exited { code: 0 }
            } else {
                Outcome::Killed
            };
            jobs.report_finished(job, attempt, outcome, started.elapsed());
        })
        .detach();
    }

    /// Removes `attempt` of `job` from the running set if it is the job's current attempt here
    /// (a newer attempt of the same job may have replaced it); returns whether it was.
    fn forget(&self, job: u64, attempt: u32) -> bool {
        let mut running = self.running.borrow_mut();
        let current = running.get(&job).is_some_and(|r| r.attempt == attempt);
        if current {
            running.remove(&job);
        }
        current
    }

    /// Kills an attempt if it still runs here; its report follows when it has stopped.
    pub fn kill(&self, job: u64, attempt: u32) {
        let running = self.running.borrow();
        match running.get(&job) {
            Some(r) if r.attempt == attempt => self.cancel_control(&r.control),
            _ => debug!(job, attempt, "kill for an attempt that is not running here"),
        }
    }

    fn cancel_control(&self, control: &Control) {
        match control {
            Control::Process(process) => process.cancel(),
            Control::Timer(cancel) => cancel.notify(),
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
