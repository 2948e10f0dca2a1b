//! The reports of attempts that ended here, kept for a while after they were sent.
//!
//! A report written to the socket can still die with the master before it is journaled, so
//! every registration lists these attempts (the master adopts the ones it lost track of) and
//! sends the reports again right after (a master that already has them ignores them as stale).
//! Without this, a lost report would make the job run again once the adoption grace ends.
//! Both limits are named here; the oldest report goes first.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use titan_proto::message::worker::JobFinished;

use super::Attempt;

/// Reports kept at most; older ones are dropped first.
pub const MAX_RETAINED_REPORTS: usize = 10_000;

/// How long a report is kept: a master that stays away longer re-queues attempts it lost the
/// report of (at-least-once), as it does for any attempt no worker accounts for.
pub const REPORT_RETENTION: Duration = Duration::from_secs(60);

/// Recent reports, oldest first, each with the time it was made.
#[derive(Debug, Default)]
pub struct RetainedReports {
    reports: VecDeque<(Instant, JobFinished)>,
}

impl RetainedReports {
    /// Keeps `report`, made at `now`, dropping what is too old or too many.
    pub fn push(&mut self, now: Instant, report: JobFinished) {
        self.expire(now);
        if self.reports.len() == MAX_RETAINED_REPORTS {
            self.reports.pop_front();
        }
        self.reports.push_back((now, report));
    }

    /// Drops the reports older than [`REPORT_RETENTION`] at `now`.
    pub fn expire(&mut self, now: Instant) {
        while self
            .reports
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > REPORT_RETENTION)
        {
            self.reports.pop_front();
        }
    }

    /// The reports kept, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &JobFinished> {
        self.reports.iter().map(|(_, report)| report)
    }

    /// The attempts the kept reports are about.
    pub fn attempts(&self) -> impl Iterator<Item = Attempt> + '_ {
        self.iter().map(|r| Attempt::new(r.job, r.attempt))
    }
}
