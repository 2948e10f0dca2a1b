//! Requests one shard runs for another (or for itself): the owner of a job answers its status,
//! cancels, stops, watches or reads its logs; every shard answers name lookups, job lists and
//! STATS with its part of a gather.

use super::frames::{data_frame, error_frame};
use super::mesh::{Part, QueryId, Remote, ShardMsg};
use super::shard::Shard;
use titan_core::{Input, JobId, JobRef, JobState, Resolved, Target};
use titan_proto::ErrorCode;

impl Shard {
    /// Runs a request for another shard (or this one) and answers it.
    pub fn on_remote_request(&self, token: u64, query: Option<QueryId>, request: Remote) {
        // A change this shard cannot journal is refused before it touches the core.
        if matches!(request, Remote::Cancel(_) | Remote::Stop(_)) {
            if let Some(degraded) = self.degraded() {
                let message = super::requests::unavailable(&degraded);
                return self.deliver(token, error_frame(ErrorCode::Unavailable, &message));
            }
        }
        match request {
            Remote::Status(job) => {
                let frame = match self.resolve_job(&job) {
                    Ok(id) => match self.job_status(id) {
                        Some(status) => data_frame(&status),
                        None => error_frame(ErrorCode::NotFound, &format!("unknown job {job}")),
                    },
                    Err(frame) => frame,
                };
                self.deliver(token, frame);
            }
            Remote::Cancel(job) => {
                let resolved = self.core.borrow().resolve(&job);
                let target = match resolved {
                    Some(Resolved::Job(id)) => Target::Job(id),
                    Some(Resolved::Dag(dag)) => Target::Dag(dag),
                    None => {
                        let frame = error_frame(ErrorCode::NotFound, &format!("unknown job {job}"));
                        return self.deliver(token, frame);
                    }
                };
                self.handle(Input::Cancel { token, target });
            }
            Remote::Stop(job) => match self.resolve_job(&job) {
                Ok(id) => self.handle(Input::Stop { token, job: id }),
                Err(frame) => self.deliver(token, frame),
            },
            Remote::Watch { job, index } => self.watch(token, query, job, index),
            Remote::LookupName(name) => {
                let hit = self
                    .core
                    .borrow()
                    .lookup_name(&name)
                    .map(|h| (h.submitted.0, h.job.0));
                self.answer(query, Part::Name(hit));
            }
            Remote::ListJobs { state, limit } => {
                let part = self.jobs_part(state, limit);
                self.answer(query, part);
            }
            Remote::Stats => {
                let stats = self.shard_stats();
                self.answer(query, Part::Stats(Box::new(stats)));
            }
            Remote::Logs { job, params } => match self.resolve_job(&job) {
                Ok(id) => self.logs_for(token, id, params),
                Err(frame) => self.deliver(token, frame),
            },
        }
    }

    /// Parks a watch in the core (its token names the wait's part), or answers that part now.
    fn watch(&self, token: u64, query: Option<QueryId>, job: JobRef, index: u32) {
        let resolved = self.core.borrow().resolve(&job);
        match (resolved, query) {
            (Some(Resolved::Job(id)), _) => self.handle(Input::Watch { token, job: id }),
            (_, Some(query)) => {
                let part = Part::Watched {
                    index,
                    status: Box::new(Err(format!("unknown job {job}"))),
                };
                self.send_to(query.origin, ShardMsg::Part { query, part });
            }
            (_, None) => {}
        }
    }

    /// This shard's newest `limit` jobs (in `state`, if given), and whether it has more.
    fn jobs_part(&self, state: Option<JobState>, limit: u32) -> Part {
        let core = self.core.borrow();
        let views = core.jobs(state, limit as usize + 1);
        let more = views.len() > limit as usize;
        let jobs = views
            .iter()
            .take(limit as usize)
            .map(|v| self.status_of(v))
            .collect();
        Part::Jobs { jobs, more }
    }

    fn answer(&self, query: Option<QueryId>, part: Part) {
        if let Some(query) = query {
            self.send_to(query.origin, ShardMsg::Part { query, part });
        }
    }

    /// A job id for a reference that must name exactly one job.
    fn resolve_job(&self, job: &JobRef) -> Result<JobId, Vec<u8>> {
        match self.core.borrow().resolve(job) {
            Some(Resolved::Job(id)) => Ok(id),
            Some(Resolved::Dag(dag)) => Err(error_frame(
                ErrorCode::Rejected,
                &format!("{dag} is a whole DAG; name one of its jobs as {dag}:NAME (or list them with `titan jobs`)"),
            )),
            None => Err(error_frame(ErrorCode::NotFound, &format!("unknown job {job}"))),
        }
    }
}
