//! A job as a client sees it: the core's `JobView` turned into a `JobStatus` message.

use super::state::Shard;
use crate::core::grammar::format_one_off;
use crate::core::{JobId, JobView, Time};
use crate::proto::message::client::JobStatus;

fn millis(t: Time) -> u64 {
    t.0 / 1000
}

impl Shard {
    /// The status of a job this shard holds.
    pub fn job_status(&self, job: JobId) -> Option<JobStatus> {
        let core = self.core.borrow();
        core.job(job).map(|view| self.status_of(&view))
    }

    pub fn status_of(&self, v: &JobView<'_>) -> JobStatus {
        let worker_port = v
            .worker
            .and_then(|w| self.workers.borrow().get(&w).map(|h| h.port));
        JobStatus {
            id: v.id.0,
            label: v.label.to_string(),
            state: v.state,
            kind: v.spec.kind.type_name().to_string(),
            spec: format_one_off(v.spec),
            skill: v.skill.to_string(),
            priority: v.spec.priority,
            attempts: v.attempts,
            failures: v.failures,
            retries: v.spec.retries,
            crashes: v.crashes,
            worker: v.worker.map(|w| w.0),
            worker_port,
            ready: v.ready,
            submitted_at_ms: millis(v.submitted),
            started_at_ms: v.started_at.map(millis),
            finished_at_ms: v.state.is_terminal().then(|| millis(v.since)),
            state_since_ms: millis(v.since),
            last_error: v.last_error.map(str::to_string),
            deps: v.deps.iter().map(|d| d.to_string()).collect(),
        }
    }
}
