//! The vocabulary between the ledger and the shell: attempts, the reports the master is sent,
//! what a launched attempt is watched for, and [`Comm`], the effects the shell carries out.

use std::time::{Duration, Instant};

use titan_core::JobId;
use titan_proto::message::worker::{AttemptRef, JobFinished};

/// One attempt of one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempt {
    pub job: JobId,
    pub attempt: u32,
}

impl Attempt {
    pub fn new(job: JobId, attempt: u32) -> Attempt {
        Attempt { job, attempt }
    }

    /// The attempt as the worker protocol names it.
    pub fn to_wire(self) -> AttemptRef {
        AttemptRef {
            job: self.job,
            attempt: self.attempt,
        }
    }
}

/// Lines an attempt printed on stdout and stderr (as shipped to the master's log port).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputLines {
    pub stdout: u64,
    pub stderr: u64,
}

/// What the core tells the master.
#[derive(Debug, PartialEq, Eq)]
pub enum Report<'a> {
    /// The attempt's process started (`pid` 0: work done inside the worker).
    Started { attempt: Attempt, pid: u32 },
    /// A service runs and its port, if it has one, accepts connections.
    Ready(Attempt),
    /// The attempt ended.
    Finished(&'a JobFinished),
}

/// The effects of the core's decisions, carried out by the shell (or recorded by a test).
/// None of them may call back into the core before returning.
pub trait Comm<P, L> {
    /// Sends a report to the master (only called while registered).
    fn send(&mut self, report: Report<'_>);
    /// Stops a launched attempt early; its end still arrives through `on_finished`.
    fn cancel(&mut self, handle: &P);
    /// Takes back a launch that has not started; false when it has (or cannot be taken back).
    fn withdraw(&mut self, handle: &P) -> bool;
    /// Whether another process holds `port` now.
    fn port_in_use(&mut self, port: u16) -> bool;
    /// Launches a service whose port has freed; the shell then calls `on_launched` (or
    /// `on_finished` when the launch fails).
    fn launch(&mut self, attempt: Attempt, launch: L);
    /// Tries once to connect to a starting service's port, giving up at `deadline`; the result
    /// comes back through `on_probe`.
    fn probe(&mut self, attempt: Attempt, port: u16, deadline: Instant);
    /// The earliest deadline is now `at`: `on_tick` is due then.
    fn wake_at(&mut self, at: Instant);
}

/// Whether a dispatched attempt should start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Start,
    /// The attempt already runs here (the master adopted it, then sent it again).
    Duplicate,
}

/// What the core watches over once an attempt is launched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// Ends by itself (a process's own timeout is the engine's); stopped only on request.
    Bounded,
    /// Work whose time limit nothing else enforces: stopped after this long, and reported
    /// `TimedOut`.
    TimeLimit(Duration),
    /// A long-running service: ready once it runs and, with a port, once the port accepts
    /// connections.
    Service { port: Option<u16> },
}
