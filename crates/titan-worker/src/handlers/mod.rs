//! The job-handler registry: which code runs each kind of job on this worker, and the skills the
//! worker advertises because of it.
//!
//! A [`Handler`] serves one skill and turns an attempt into a [`Start`]: done at once (`NOOP`, a
//! refusal), a timer (`SLEEP`), a process through the engine (`RUN`, `RUN_INLINE`, `DEPLOY`,
//! Inception), or [`Work`] inside the worker (the ops kinds to come: e-mail, PDF, database
//! cleanup). The shell carries the start out; the handler does no IO of its own before that.
//!
//! Dispatch looks at the [`JobKind`] first, so a built-in kind costs one `match` and one
//! virtual call; only a `Skill` job is matched by name, against the few skill handlers there are.

mod builtin;
mod work;

use std::time::Duration;

use titan_core::{JobKind, JobSpec, Outcome, WorkerId, GENERAL};

use crate::children::ChildTemplate;
use crate::exec;
use crate::ledger::{Attempt, Watch};
pub use builtin::{Inception, Noop, Process, Service, Sleep, INCEPTION_FILES};
pub use work::{Work, WorkContext, WorkFailure, WorkOutput, WorkResult};

/// Runs the jobs of one skill.
pub trait Handler {
    /// The skill a worker advertises for this handler: `GENERAL` for the built-in kinds, the
    /// TYPE for a skill job's handler.
    fn skill(&self) -> &str;

    /// How `job` starts. Called on the executor for every attempt: it must not block, and it
    /// should allocate no more than the start needs (NOOP runs at ~100k jobs/s).
    fn start(&self, job: Assignment) -> Start;
}

/// An attempt the master assigned to this worker.
#[derive(Debug)]
pub struct Assignment {
    pub attempt: Attempt,
    /// Names the job to people, and its directory in the workspace.
    pub label: String,
    pub spec: JobSpec,
    /// This worker's id at the master, once registered (a child worker names its parent by it).
    pub worker: Option<WorkerId>,
}

impl Assignment {
    /// The job's timeout, if it has one.
    pub fn timeout(&self) -> Option<Duration> {
        self.spec
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms.get())))
    }
}

/// How an attempt starts.
pub enum Start {
    /// It ended before it began: `NOOP`'s success, or a refusal the handler can tell at once
    /// (an `Outcome::Rejected` is not retried, an `Outcome::Error` is).
    Done(Outcome),
    /// It succeeds after this long on the worker's timer, with no process (`SLEEP`).
    Timer(Duration),
    /// It runs as a process through the engine.
    Process(ProcessStart),
    /// It runs inside the worker.
    Work(Work),
}

/// A process to launch, and what to watch once it runs.
#[derive(Debug)]
pub struct ProcessStart {
    pub spec: exec::JobSpec,
    /// `Bounded` (the engine enforces the spec's timeout) or `Service`.
    pub watch: Watch,
}

/// The handlers of one worker. See the module documentation.
pub struct Registry {
    /// The built-in kinds, when the worker takes `GENERAL` jobs.
    general: Option<Builtin>,
    /// Handlers of skill jobs, found by their TYPE.
    skills: Vec<Box<dyn Handler>>,
    /// Skills advertised at registration, in order.
    advertised: Vec<String>,
}

/// The handlers of the kinds every worker that takes `GENERAL` jobs runs.
struct Builtin {
    noop: Noop,
    sleep: Sleep,
    process: Process,
    service: Service,
    inception: Inception,
}

impl Registry {
    /// The handlers of a worker told to offer `skills` (`--skills`): the built-in kinds when
    /// `GENERAL` is among them. Every skill given is advertised, with a handler or not (a skill
    /// job without one fails with "no handler for ... on this worker").
    pub fn new(skills: &[String], children: ChildTemplate) -> Registry {
        let general = skills.iter().any(|s| s == GENERAL).then(|| Builtin {
            noop: Noop,
            sleep: Sleep,
            process: Process,
            service: Service,
            inception: Inception::new(children),
        });
        Registry {
            general,
            skills: Vec::new(),
            advertised: skills.to_vec(),
        }
    }

    /// Adds the handler of a skill job TYPE (replacing one of the same skill), and advertises
    /// its skill.
    pub fn with_handler(mut self, handler: Box<dyn Handler>) -> Registry {
        let skill = handler.skill().to_string();
        self.skills.retain(|h| h.skill() != skill);
        self.skills.push(handler);
        if !self.advertised.contains(&skill) {
            self.advertised.push(skill);
        }
        self
    }

    /// The handler of `kind` on this worker, if it has one.
    pub fn handler_for(&self, kind: &JobKind) -> Option<&dyn Handler> {
        if let JobKind::Skill { name, .. } = kind {
            return self
                .skills
                .iter()
                .find(|h| h.skill() == &**name)
                .map(|h| &**h);
        }
        let general = self.general.as_ref()?;
        Some(match kind {
            JobKind::Noop => &general.noop,
            JobKind::Sleep { .. } => &general.sleep,
            JobKind::Run { .. } | JobKind::RunInline { .. } => &general.process,
            JobKind::Deploy { file, .. } if INCEPTION_FILES.contains(&&**file) => {
                &general.inception
            }
            JobKind::Deploy { .. } => &general.service,
            JobKind::Skill { .. } => return None,
        })
    }

    /// The skills this worker advertises.
    pub fn skills(&self) -> &[String] {
        &self.advertised
    }
}

/// The outcome of an attempt no handler here runs (the master only sends a worker the skills it
/// advertises, so this is a skill given with `--skills` that has no handler).
pub fn no_handler(kind: &JobKind) -> Outcome {
    Outcome::Error {
        message: format!("no handler for {} on this worker", kind.type_name()).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use titan_core::JobId;

    fn children() -> ChildTemplate {
        let dir = Path::new("/tmp");
        let key = titan_auth::Credential::new(
            titan_auth::Role::Worker,
            titan_auth::Secret::from_bytes([1; 32]),
        );
        ChildTemplate::new("127.0.0.1:1".into(), dir, dir, 1, vec![], 0, key)
    }

    fn skills(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    struct Echo;

    impl Handler for Echo {
        fn skill(&self) -> &str {
            "ECHO"
        }
        fn start(&self, _: Assignment) -> Start {
            Start::Done(Outcome::Exited { code: 7 })
        }
    }

    fn assignment(kind: JobKind) -> Assignment {
        Assignment {
            attempt: Attempt::new(JobId(1), 1),
            label: "job-1".into(),
            spec: JobSpec::new(kind),
            worker: None,
        }
    }

    fn start(registry: &Registry, kind: JobKind) -> Option<Start> {
        let handler = registry.handler_for(&kind)?;
        Some(handler.start(assignment(kind)))
    }

    fn deploy(file: &str, port: Option<u16>) -> JobKind {
        JobKind::Deploy {
            file: file.into(),
            port,
        }
    }

    #[test]
    fn built_in_kinds_dispatch_by_kind_and_serve_general() {
        let registry = Registry::new(&skills(&["GENERAL"]), children());
        let kinds = [
            JobKind::Noop,
            JobKind::Sleep { ms: 5 },
            JobKind::Run {
                file: "a.sh".into(),
                args: Box::new([]),
            },
            deploy("srv.py", Some(8000)),
            deploy("Worker.jar", Some(8001)),
        ];
        for kind in kinds {
            let handler = registry.handler_for(&kind).expect("a built-in handler");
            assert_eq!(handler.skill(), GENERAL, "{kind:?}");
        }
        assert!(matches!(
            start(&registry, JobKind::Noop),
            Some(Start::Done(Outcome::Exited { code: 0 }))
        ));
        assert!(matches!(
            start(&registry, JobKind::Sleep { ms: 5 }),
            Some(Start::Timer(d)) if d == Duration::from_millis(5)
        ));
    }

    #[test]
    fn deploys_are_services_and_worker_jar_is_inception() {
        let registry = Registry::new(&skills(&["GENERAL"]), children());
        let Some(Start::Process(service)) = start(&registry, deploy("srv.py", Some(8000))) else {
            panic!("a deploy is a process");
        };
        assert_eq!(service.watch, Watch::Service { port: Some(8000) });
        assert!(service.spec.env.contains(&("PORT".into(), "8000".into())));
        assert_eq!(service.spec.timeout, None);
        let Some(Start::Process(child)) = start(&registry, deploy("worker", Some(8001))) else {
            panic!("Inception is a process");
        };
        assert!(matches!(child.spec.program, exec::Program::Trusted { .. }));
        let Some(Start::Done(Outcome::Error { message })) =
            start(&registry, deploy("Worker.jar", None))
        else {
            panic!("a worker deploy without a port is refused");
        };
        assert!(message.contains("needs a port"), "{message}");
    }

    #[test]
    fn skill_jobs_find_their_handler_by_name_and_are_advertised() {
        let registry =
            Registry::new(&skills(&["GENERAL", "GPU"]), children()).with_handler(Box::new(Echo));
        assert_eq!(registry.skills(), ["GENERAL", "GPU", "ECHO"]);
        let echo = JobKind::Skill {
            name: "ECHO".into(),
            data: "hi".into(),
        };
        assert!(matches!(
            start(&registry, echo),
            Some(Start::Done(Outcome::Exited { code: 7 }))
        ));
        let gpu = JobKind::Skill {
            name: "GPU".into(),
            data: String::new().into(),
        };
        assert!(registry.handler_for(&gpu).is_none());
        assert_eq!(
            no_handler(&gpu),
            Outcome::Error {
                message: "no handler for GPU on this worker".into()
            }
        );
    }

    #[test]
    fn without_general_the_built_in_kinds_have_no_handler() {
        let registry = Registry::new(&skills(&["GPU"]), children());
        assert_eq!(registry.skills(), ["GPU"]);
        assert!(registry.handler_for(&JobKind::Noop).is_none());
    }
}
