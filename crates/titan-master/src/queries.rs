//! Requests that need more than one shard, or another shard: a job named by id goes to the shard
//! that owns it (the router's owner rule); a job named only by its bare name is looked up on every
//! shard first (the newest hit wins); job lists, STATS and waits over several jobs gather parts
//! from every shard involved.
//!
//! The shard that received the request (the origin) opens a gather ([`super::gather`]) and sends
//! a `Remote` request to every shard involved; each answers with a `Part` ([`super::remote`]).
//! When the last part is in, the origin answers the client (or, for a name, sends the real
//! request to the owner).

use std::rc::Rc;
use std::time::Duration;

use super::frames::{data_frame, error_frame};
use super::gather::{jobs_reply, wait_reply, Gather, StatsForm, Then};
use super::mesh::{Part, QueryId, Remote, ShardMsg};
use super::shard::Shard;
use super::stats::cluster_stats;
use titan_core::router::WatchToken;
use titan_core::{JobId, JobRef, JobState};
use titan_proto::message::client::{StatsText, WorkerList};
use titan_proto::ErrorCode;

impl Shard {
    fn open_gather(&self, gather: Gather, parts: u32) -> QueryId {
        QueryId {
            origin: self.index,
            seq: self.gathers.open(gather, parts),
        }
    }

    /// Opens `gather` and sends `request` to every shard, each to answer with a part.
    fn ask_every_shard(&self, token: u64, gather: Gather, request: impl Fn() -> Remote) {
        let query = self.open_gather(gather, self.count);
        for shard in 0..self.count {
            let request = request();
            let query = Some(query);
            self.send_to(
                shard,
                ShardMsg::Request {
                    token,
                    query,
                    request,
                },
            );
        }
    }

    /// Sends a request about one job to the shard that owns it, resolving a bare name first.
    pub fn route(&self, token: u64, job: JobRef, then: Then) {
        let owner = match &job {
            JobRef::Task(dag) | JobRef::Dag(dag) | JobRef::DagJob(dag, _) => {
                self.router.owner(*dag)
            }
            JobRef::Name(name) => {
                let gather = Gather::Name {
                    token,
                    name: name.clone(),
                    then,
                    best: None,
                };
                return self.ask_every_shard(token, gather, || Remote::LookupName(name.clone()));
            }
        };
        let (request, query) = match then {
            Then::Logs(params) => (Remote::Logs { job, params }, None),
            Then::Status => (Remote::Status(job), None),
            Then::Cancel => (Remote::Cancel(job), None),
            Then::Stop => (Remote::Stop(job), None),
            Then::Watch { query, index } => (Remote::Watch { job, index }, Some(query)),
        };
        self.send_to(
            owner,
            ShardMsg::Request {
                token,
                query,
                request,
            },
        );
    }

    /// Asks every shard for its jobs and answers with the newest `limit`.
    pub fn gather_jobs(&self, token: u64, state: Option<JobState>, limit: u32) {
        let gather = Gather::Jobs {
            token,
            limit,
            jobs: Vec::new(),
            more: false,
        };
        self.ask_every_shard(token, gather, || Remote::ListJobs { state, limit });
    }

    pub fn gather_stats(&self, token: u64, form: StatsForm) {
        let gather = Gather::Stats {
            token,
            form,
            acc: Box::default(),
        };
        self.ask_every_shard(token, gather, || Remote::Stats);
    }

    /// Watches every job; answers when all are terminal or after `timeout`.
    pub fn gather_wait(
        self: &Rc<Shard>,
        token: u64,
        jobs: Vec<(String, JobRef)>,
        timeout: Duration,
    ) {
        let asked: Vec<String> = jobs.iter().map(|(text, _)| text.clone()).collect();
        let parts = jobs.len();
        let gather = Gather::Wait {
            token,
            done: vec![None; parts],
            asked,
            error: None,
        };
        let query = self.open_gather(gather, parts as u32);
        for (index, (_, job)) in jobs.into_iter().enumerate() {
            let index = index as u32;
            let watch = WatchToken {
                origin: self.index,
                seq: query.seq,
                index,
            };
            self.route(watch.pack(), job, Then::Watch { query, index });
        }
        let shard = self.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(timeout).await;
            if let Some(gather) = shard.gathers.expire(query.seq) {
                shard.finish(gather, true);
            }
        })
        .detach();
    }

    /// A part of a gather arrived; finishes the gather when it was the last.
    pub fn on_part(&self, query: QueryId, part: Part) {
        if let Some(gather) = self.gathers.on_part(query.seq, part) {
            self.finish(gather, false);
        }
    }

    fn finish(&self, gather: Gather, timed_out: bool) {
        match gather {
            Gather::Name {
                token,
                name,
                then,
                best,
            } => match best {
                Some((_, job)) => self.route(token, JobRef::DagJob(JobId(job).dag(), name), then),
                None => self.unknown_name(token, &name, then),
            },
            Gather::Jobs {
                token,
                limit,
                jobs,
                more,
            } => self.deliver(token, data_frame(&jobs_reply(jobs, limit, more))),
            Gather::Stats { token, form, acc } => {
                let stats = {
                    let core = self.core.borrow();
                    cluster_stats(*acc, &core.workers(), self.count, self.wal.is_on())
                };
                let frame = match form {
                    StatsForm::Text => data_frame(&StatsText {
                        text: stats.render_text(),
                    }),
                    StatsForm::Json => data_frame(&stats),
                    StatsForm::Workers => data_frame(&WorkerList {
                        workers: stats.workers,
                    }),
                };
                self.deliver(token, frame);
            }
            Gather::Wait {
                token,
                asked,
                done,
                error,
            } => {
                let frame = match wait_reply(asked, done, error, timed_out) {
                    Ok(reply) => data_frame(&reply),
                    Err(e) => error_frame(ErrorCode::NotFound, &e),
                };
                self.deliver(token, frame);
            }
        }
    }

    /// No shard knows the name: the client hears so (or the wait, for that one of its jobs).
    fn unknown_name(&self, token: u64, name: &str, then: Then) {
        let message = format!("no job named {name}");
        match then {
            Then::Watch { query, index } => {
                let part = Part::Watched {
                    index,
                    status: Box::new(Err(message)),
                };
                self.send_to(query.origin, ShardMsg::Part { query, part });
            }
            _ => self.deliver(token, error_frame(ErrorCode::NotFound, &message)),
        }
    }
}
