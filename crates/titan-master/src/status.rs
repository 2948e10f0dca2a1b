//! A job as a client sees it: the core's `JobView` turned into a `JobStatus` message.

use super::shard::Shard;
use titan_core::grammar::format_one_off;
use titan_core::{JobId, JobView};
use titan_proto::message::client::JobStatus;

impl Shard {
    /// The status of a job this shard holds.
    pub fn job_status(&self, job: JobId) -> Option<JobStatus> {
        let core = self.core.borrow();
        core.job(job).map(|view| self.status_of(&view))
    }

    pub fn status_of(&self, v: &JobView<'_>) -> JobStatus {
        let worker_port = v.worker.and_then(|w| self.directory.port(w));
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
            submitted_at_us: v.submitted.0,
            started_at_us: v.started_at.map(|t| t.0),
            finished_at_us: v.state.is_terminal().then_some(v.since.0),
            state_since_us: v.since.0,
            last_error: v.last_error.map(str::to_string),
            deps: v.deps.iter().map(|d| d.to_string()).collect(),
        }
    }
}
