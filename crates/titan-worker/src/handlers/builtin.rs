//! The handlers of the built-in kinds, all serving `GENERAL`: `NOOP` and `SLEEP` run inside the
//! worker with no process (they exist to measure the scheduler); `RUN` and `RUN_INLINE` are
//! processes; `DEPLOY` is a service process, ready once it runs and, with a port, once the port
//! accepts connections; `DEPLOY` of `Worker.jar` (or `worker`) starts a child `titan worker` on
//! the given port (Inception).

use std::time::Duration;

use titan_core::{JobKind, Outcome, GENERAL};

use super::{Assignment, Handler, ProcessStart, Start};
use crate::children::{current_exe, ChildTemplate};
use crate::exec::{self, OutputMode, Program};
use crate::ledger::Watch;

/// File names that make a `DEPLOY` start a child worker instead of a script.
pub const INCEPTION_FILES: [&str; 2] = ["Worker.jar", "worker"];

/// `NOOP`: succeeds on arrival.
pub struct Noop;

/// `SLEEP|ms`: succeeds after `ms` on the worker's timer.
pub struct Sleep;

/// `RUN|file args` and `RUN_INLINE|name:BASE64`: a process, killed at the job's timeout.
pub struct Process;

/// `DEPLOY|file[|port]`: a service process (no timeout).
pub struct Service;

/// `DEPLOY|Worker.jar|port`: a child worker on `port`, registering with the same master.
pub struct Inception {
    children: ChildTemplate,
}

impl Handler for Noop {
    fn skill(&self) -> &str {
        GENERAL
    }

    fn start(&self, _: Assignment) -> Start {
        Start::Done(Outcome::Exited { code: 0 })
    }
}

impl Handler for Sleep {
    fn skill(&self) -> &str {
        GENERAL
    }

    fn start(&self, job: Assignment) -> Start {
        match job.spec.kind {
            JobKind::Sleep { ms } => Start::Timer(Duration::from_millis(u64::from(ms))),
            ref other => wrong_kind("SLEEP", other),
        }
    }
}

impl Handler for Process {
    fn skill(&self) -> &str {
        GENERAL
    }

    fn start(&self, job: Assignment) -> Start {
        let timeout = job.timeout();
        let Assignment {
            attempt,
            label,
            spec,
            ..
        } = job;
        let program = match spec.kind {
            JobKind::Run { file, args } => Program::perm_file(
                file.to_string(),
                args.iter().map(|a| a.to_string()).collect(),
            ),
            JobKind::RunInline { name, bytes } => Program::Inline {
                name: name.to_string(),
                bytes: bytes.into_vec(),
                args: Vec::new(),
            },
            ref other => return wrong_kind("process", other),
        };
        let mut spec = process_spec(label, attempt.attempt, program);
        if let Some(timeout) = timeout {
            spec = spec.with_timeout(timeout);
        }
        Start::Process(ProcessStart {
            spec,
            watch: Watch::Bounded,
        })
    }
}

impl Handler for Service {
    fn skill(&self) -> &str {
        GENERAL
    }

    fn start(&self, job: Assignment) -> Start {
        match job.spec.kind {
            JobKind::Deploy { ref file, port } => {
                let program = Program::perm_file(file.to_string(), Vec::new());
                service(job.label, job.attempt.attempt, program, port)
            }
            ref other => wrong_kind("service", other),
        }
    }
}

impl Inception {
    pub fn new(children: ChildTemplate) -> Inception {
        Inception { children }
    }
}

impl Handler for Inception {
    fn skill(&self) -> &str {
        GENERAL
    }

    fn start(&self, job: Assignment) -> Start {
        let port = match job.spec.kind {
            JobKind::Deploy {
                port: Some(port), ..
            } => port,
            JobKind::Deploy { port: None, .. } => {
                let message = "a worker deploy needs a port (ID|DEPLOY|Worker.jar|PORT|...)";
                return Start::Done(Outcome::Error {
                    message: message.into(),
                });
            }
            ref other => return wrong_kind("Inception", other),
        };
        let parent = job.worker.map(|w| w.0);
        let program = Program::trusted(current_exe(), self.children.args(port, parent));
        match service(job.label, job.attempt.attempt, program, Some(port)) {
            // The child registers with this worker's key; no other job gets one.
            Start::Process(mut start) => {
                start.spec = self.children.with_key(start.spec);
                Start::Process(start)
            }
            other => other,
        }
    }
}

/// A process of attempt `attempt` of the job `label`, its output captured.
fn process_spec(label: String, attempt: u32, program: Program) -> exec::JobSpec {
    let dir = label.clone();
    exec::JobSpec::new(label, dir, program)
        .with_env("TITAN_ATTEMPT", attempt.to_string())
        .with_output(OutputMode::Capture)
}

/// A service process: no timeout (it may live for ever), and its port in its environment.
fn service(label: String, attempt: u32, program: Program, port: Option<u16>) -> Start {
    let mut spec = process_spec(label, attempt, program);
    if let Some(port) = port {
        spec = spec
            .with_env("TITAN_PORT", port.to_string())
            .with_env("PORT", port.to_string());
    }
    Start::Process(ProcessStart {
        spec,
        watch: Watch::Service { port },
    })
}

/// A handler was given a kind it does not serve: a bug in the registry, reported as the
/// attempt's error rather than a panic.
fn wrong_kind(handler: &str, kind: &JobKind) -> Start {
    let message = format!("the {handler} handler cannot run {}", kind.type_name());
    Start::Done(Outcome::Error {
        message: message.into(),
    })
}
