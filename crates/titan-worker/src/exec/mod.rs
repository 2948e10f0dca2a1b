//! The worker's process-execution engine: it turns a job's program ([`Program`]) into a running
//! process and reports how that process ended ([`Outcome`]), without ever blocking the glommio
//! executor that uses it.
//!
//! Layout: [`resolve`] decides what to execute (pure checks plus file-system lookups); the
//! `pool` of process threads starts queued jobs (`launcher`: workspace, log files, fork/exec in a
//! new process group) and learns of exits through pidfds and epoll; `completion` carries both
//! kinds of event back to the executor, where `engine` dispatches them to each job's supervisor
//! (`job`), which enforces timeouts and cancels (SIGTERM, then SIGKILL after a grace period) and
//! reaps. [`probe`] holds the port checks services need.

mod completion;
mod engine;
mod job;
mod launcher;
mod outcome;
mod pool;
pub mod probe;
pub mod resolve;
pub mod sentinel;
mod spec;
mod sys;

pub use engine::{EngineError, ProcessEngine};
pub use job::{CapturedOutput, Job, Started};
pub use launcher::SCRUBBED_ENV;
pub use outcome::{LaunchError, Outcome, StartError, Termination, WaitStatus};
pub use probe::{connect_once, port_in_use, wait_port_ready, PortNotReady, PortProbe, ProbeNext};
pub use resolve::{Interpreter, LaunchPlan, Program, ResolveError, Resolver};
pub use sentinel::{run_sentinel, Sentinel};
pub use spec::{
    ChildAffinity, EngineConfig, JobSpec, Leftovers, OutputMode, DEFAULT_KILL_GRACE,
    DEFAULT_LAUNCH_NOTICE_DELAY, DEFAULT_MAX_JOBS, DEFAULT_PROCESS_THREADS, STDERR_FILE,
    STDOUT_FILE,
};
