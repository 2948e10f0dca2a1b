//! The worker's pure core: which attempt of which job runs here, what was reported and must be
//! said again after a reconnection, whether each service is ready, and when each timer is due.
//!
//! It does no IO: no glommio, no clock, no socket. Time is an argument of every event, events
//! come in through `on_*` methods, and effects go out through [`Comm`], which the shell (`jobs`)
//! implements with the outbox, the process engine and its timer task, and the tests with a
//! recorder. The process handle `P` and the pending launch `L` are the shell's; the core only
//! keeps them and hands them back.
//!
//! The rules, each tested in `tests.rs`:
//! - one attempt of a job runs here at a time: a dispatch of the running attempt is ignored, a
//!   newer one supersedes the older, which is stopped (a sleeping one ends `Killed` at once, one
//!   waiting for its port is dropped unreported);
//! - every attempt that ends is reported once, and the report is retained ([`RetainedReports`]);
//!   while the master is away reports are retained but not sent;
//! - a registration sends the retained reports again, then announces every ready service again
//!   (a readiness can die with the master before it is journaled; its children would then wait
//!   for ever); the registration itself lists the running and retained attempts;
//! - losing the master withdraws the launches that have not started (prefetched ones): a master
//!   still up has re-queued them, a restarted one re-queues what no worker lists, so left queued
//!   they would run twice; they end unreported. Started attempts run on and report later;
//! - `SLEEP` ends on its deadline; a service's port that is taken gets [`PORT_FREE_GRACE`], polled
//!   every [`PORT_FREE_POLL`], then the deploy is refused; a service with a port is ready once the
//!   port accepts a connection, probed on `PortProbe`'s schedule until
//!   [`SERVICE_READY_TIMEOUT`], when it is killed and its deploy fails saying why.

mod comm;
mod reports;
mod services;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracing::debug;

use titan_core::{JobId, Outcome};
use titan_proto::message::worker::JobFinished;

pub use comm::{Admission, Attempt, Comm, OutputLines, Report, Watch};
pub use reports::{RetainedReports, MAX_RETAINED_REPORTS, REPORT_RETENTION};
use services::Readiness;
pub use services::{PORT_FREE_GRACE, PORT_FREE_POLL, SERVICE_READY_TIMEOUT};

/// The attempt of a job that runs here.
struct Entry<P, L> {
    attempt: u32,
    /// When the attempt began here (attempts without a process are timed from it).
    began: Instant,
    /// When its timer is due (its key in `Ledger::timers`), if it has one.
    due: Option<Instant>,
    activity: Activity<P, L>,
}

enum Activity<P, L> {
    /// `SLEEP`: succeeds when its timer is due.
    Sleeping,
    /// A service waiting for another process to release its port.
    AwaitingPort { port: u16, launch: L },
    /// A process (or work) the shell watches.
    Launched(Launched<P>),
}

struct Launched<P> {
    handle: P,
    started: bool,
    watch: Watching,
    /// How the attempt ends whatever its handle reports: set when the worker stopped it for a
    /// reason the handle's own ending (cancelled) would hide.
    verdict: Option<Outcome>,
}

enum Watching {
    Bounded,
    /// Stopped when its timer fires.
    TimeLimit,
    Service(Readiness),
}

/// See the module documentation.
pub struct Ledger<P, L> {
    running: BTreeMap<JobId, Entry<P, L>>,
    /// Launches withdrawn at a link loss whose end has not arrived yet: it goes unreported.
    /// Bounded by the launches the engine queues.
    withdrawn: BTreeSet<Attempt>,
    reports: RetainedReports,
    /// One per entry with a timer, ordered by when it is due.
    timers: BTreeSet<(Instant, JobId)>,
    /// Registered with a master: reports are sent, not only retained.
    linked: bool,
}

impl<P, L> Default for Ledger<P, L> {
    fn default() -> Self {
        Ledger {
            running: BTreeMap::new(),
            withdrawn: BTreeSet::new(),
            reports: RetainedReports::default(),
            timers: BTreeSet::new(),
            linked: false,
        }
    }
}

impl<P, L> Ledger<P, L> {
    /// Attempts running here (sleeping, waiting for a port, launched).
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// When `on_tick` is next due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// What a registration lists: the attempts running here and those whose report is
    /// retained, in order, each once.
    pub fn running_attempts(&mut self, now: Instant) -> Vec<Attempt> {
        self.reports.expire(now);
        let mut attempts: Vec<Attempt> = self
            .running
            .iter()
            .map(|(&job, e)| Attempt::new(job, e.attempt))
            .chain(self.reports.attempts())
            .collect();
        attempts.sort();
        attempts.dedup();
        attempts
    }

    /// A dispatch of `attempt`. A different attempt of the same job running here is stopped:
    /// the master gave up on it (it was re-queued), so it must not finish twice.
    pub fn on_run(
        &mut self,
        now: Instant,
        attempt: Attempt,
        comm: &mut impl Comm<P, L>,
    ) -> Admission {
        let previous = match self.running.get(&attempt.job) {
            Some(e) if e.attempt == attempt.attempt => return Admission::Duplicate,
            Some(e) => Attempt::new(attempt.job, e.attempt),
            None => return Admission::Start,
        };
        let Some(old) = self.remove(attempt.job) else {
            return Admission::Start;
        };
        debug!(job = %attempt.job, old = old.attempt, new = attempt.attempt, "superseded attempt");
        match old.activity {
            Activity::Sleeping => {
                let ran = now.saturating_duration_since(old.began);
                self.finish(
                    now,
                    previous,
                    Outcome::Killed,
                    ran,
                    OutputLines::default(),
                    comm,
                );
            }
            // Nothing ran, and the job is the new attempt's to report.
            Activity::AwaitingPort { .. } => {}
            // Its end is reported when it comes, as the old attempt's (the master ignores it).
            Activity::Launched(launched) => comm.cancel(&launched.handle),
        }
        Admission::Start
    }

    /// `attempt` sleeps for `length` and then succeeds (`SLEEP`).
    pub fn on_sleep(
        &mut self,
        now: Instant,
        attempt: Attempt,
        length: Duration,
        comm: &mut impl Comm<P, L>,
    ) {
        self.track(now, attempt, Activity::Sleeping);
        self.arm(attempt.job, now + length, comm);
    }

    /// `attempt` was launched; `handle` stops it.
    pub fn on_launched(
        &mut self,
        now: Instant,
        attempt: Attempt,
        handle: P,
        watch: Watch,
        comm: &mut impl Comm<P, L>,
    ) {
        let watching = match watch {
            Watch::Bounded => Watching::Bounded,
            Watch::TimeLimit(_) => Watching::TimeLimit,
            Watch::Service { port } => Watching::Service(Readiness::Starting { port }),
        };
        let launched = Launched {
            handle,
            started: false,
            watch: watching,
            verdict: None,
        };
        self.track(now, attempt, Activity::Launched(launched));
        if let Watch::TimeLimit(limit) = watch {
            self.arm(attempt.job, now + limit, comm);
        }
    }

    /// `attempt`'s process started as `pid`; `exited` when it has already exited too. The news
    /// of a start usually rides along with the exit (the engine delays it): the finished report
    /// then follows at once and says everything the start would, so a short job costs the master
    /// one frame, not two. A service's start is always reported, and begins its readiness check.
    pub fn on_started(
        &mut self,
        now: Instant,
        attempt: Attempt,
        pid: u32,
        exited: bool,
        comm: &mut impl Comm<P, L>,
    ) {
        let linked = self.linked;
        let Some(launched) = self.launched_mut(attempt) else {
            return; // superseded or withdrawn: it is no longer this job's attempt here
        };
        launched.started = true;
        let is_service = matches!(launched.watch, Watching::Service(_));
        if linked && (is_service || !exited) {
            comm.send(Report::Started { attempt, pid });
        }
        if is_service {
            self.begin_readiness(now, attempt, comm);
        }
    }

    /// `attempt` ended after running `ran`. Withdrawn attempts end unreported; a verdict the
    /// worker reached (a deploy that never opened its port) replaces the outcome.
    pub fn on_finished(
        &mut self,
        now: Instant,
        attempt: Attempt,
        outcome: Outcome,
        ran: Duration,
        lines: OutputLines,
        comm: &mut impl Comm<P, L>,
    ) {
        if self.withdrawn.remove(&attempt) {
            return;
        }
        let outcome = match self.take_current(attempt) {
            Some(Entry {
                activity:
                    Activity::Launched(Launched {
                        verdict: Some(verdict),
                        ..
                    }),
                ..
            }) => verdict,
            _ => outcome,
        };
        self.finish(now, attempt, outcome, ran, lines, comm);
    }

    /// The master asks to stop `attempt`. Returns false when that attempt does not run here.
    pub fn on_kill(&mut self, now: Instant, attempt: Attempt, comm: &mut impl Comm<P, L>) -> bool {
        let Some(entry) = self.current_mut(attempt) else {
            return false;
        };
        if let Activity::Launched(launched) = &entry.activity {
            comm.cancel(&launched.handle); // its end follows through `on_finished`
            return true;
        }
        if let Some(entry) = self.take_current(attempt) {
            let ran = now.saturating_duration_since(entry.began);
            self.finish(
                now,
                attempt,
                Outcome::Killed,
                ran,
                OutputLines::default(),
                comm,
            );
        }
        true
    }

    /// Registered with a master (again): the retained reports go again, then every ready
    /// service is announced again.
    pub fn on_registered(&mut self, now: Instant, comm: &mut impl Comm<P, L>) {
        self.linked = true;
        self.reports.expire(now);
        for report in self.reports.iter() {
            comm.send(Report::Finished(report));
        }
        for (&job, entry) in &self.running {
            if let Activity::Launched(Launched {
                watch: Watching::Service(Readiness::Ready),
                ..
            }) = entry.activity
            {
                comm.send(Report::Ready(Attempt::new(job, entry.attempt)));
            }
        }
    }

    /// The connection to the master is gone: launches that have not started are withdrawn.
    pub fn on_link_lost(&mut self, comm: &mut impl Comm<P, L>) {
        self.linked = false;
        let Ledger {
            running,
            withdrawn,
            timers,
            ..
        } = self;
        running.retain(|&job, entry| {
            let Activity::Launched(launched) = &entry.activity else {
                return true;
            };
            if launched.started || !comm.withdraw(&launched.handle) {
                return true;
            }
            withdrawn.insert(Attempt::new(job, entry.attempt));
            if let Some(at) = entry.due {
                timers.remove(&(at, job));
            }
            false
        });
    }

    /// Time has reached `now`: every timer due fires.
    pub fn on_tick(&mut self, now: Instant, comm: &mut impl Comm<P, L>) {
        while let Some(&(at, job)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(entry) = self.running.get_mut(&job) {
                entry.due = None;
                self.on_due(now, job, comm);
            }
        }
    }

    /// The timer of `job`'s attempt fired.
    fn on_due(&mut self, now: Instant, job: JobId, comm: &mut impl Comm<P, L>) {
        let Some(entry) = self.running.get_mut(&job) else {
            return;
        };
        let attempt = Attempt::new(job, entry.attempt);
        let ran = now.saturating_duration_since(entry.began);
        match &mut entry.activity {
            Activity::Sleeping => {
                self.remove(job);
                let lines = OutputLines::default();
                self.finish(now, attempt, Outcome::Exited { code: 0 }, ran, lines, comm);
            }
            Activity::AwaitingPort { port, .. } => {
                let port = *port;
                self.on_port_poll(now, attempt, port, ran, comm);
            }
            Activity::Launched(launched) => match &mut launched.watch {
                Watching::TimeLimit => {
                    launched.verdict = Some(Outcome::TimedOut);
                    comm.cancel(&launched.handle);
                }
                Watching::Service(_) => self.on_probe_due(now, attempt, comm),
                Watching::Bounded => {}
            },
        }
    }

    /// Reports that `attempt` ended, and keeps the report.
    fn finish(
        &mut self,
        now: Instant,
        attempt: Attempt,
        outcome: Outcome,
        ran: Duration,
        lines: OutputLines,
        comm: &mut impl Comm<P, L>,
    ) {
        let report = JobFinished {
            job: attempt.job,
            attempt: attempt.attempt,
            outcome,
            duration_us: u64::try_from(ran.as_micros()).unwrap_or(u64::MAX),
            stdout_lines: lines.stdout,
            stderr_lines: lines.stderr,
        };
        if self.linked {
            comm.send(Report::Finished(&report));
        }
        self.reports.push(now, report);
    }

    /// Counts `attempt` as this job's attempt here from `now`.
    fn track(&mut self, now: Instant, attempt: Attempt, activity: Activity<P, L>) {
        self.remove(attempt.job);
        let entry = Entry {
            attempt: attempt.attempt,
            began: now,
            due: None,
            activity,
        };
        self.running.insert(attempt.job, entry);
    }

    /// Sets the timer of `job`'s attempt to `at`, replacing the one it had.
    fn arm(&mut self, job: JobId, at: Instant, comm: &mut impl Comm<P, L>) {
        let Some(entry) = self.running.get_mut(&job) else {
            return;
        };
        if let Some(old) = entry.due.replace(at) {
            self.timers.remove(&(old, job));
        }
        self.timers.insert((at, job));
        if self.timers.first() == Some(&(at, job)) {
            comm.wake_at(at);
        }
    }

    fn current_mut(&mut self, attempt: Attempt) -> Option<&mut Entry<P, L>> {
        self.running
            .get_mut(&attempt.job)
            .filter(|e| e.attempt == attempt.attempt)
    }

    fn launched_mut(&mut self, attempt: Attempt) -> Option<&mut Launched<P>> {
        match self.current_mut(attempt) {
            Some(Entry {
                activity: Activity::Launched(launched),
                ..
            }) => Some(launched),
            _ => None,
        }
    }

    /// Removes `attempt` if it is its job's attempt here.
    fn take_current(&mut self, attempt: Attempt) -> Option<Entry<P, L>> {
        self.current_mut(attempt)?;
        self.remove(attempt.job)
    }

    /// Removes `job`'s attempt, and its timer.
    fn remove(&mut self, job: JobId) -> Option<Entry<P, L>> {
        let entry = self.running.remove(&job)?;
        if let Some(at) = entry.due {
            self.timers.remove(&(at, job));
        }
        Some(entry)
    }
}
