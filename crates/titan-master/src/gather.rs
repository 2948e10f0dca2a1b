//! Requests that need more than one shard: a job named only by its bare name (the newest across
//! shards wins), job lists, STATS, and waits over several jobs.
//!
//! The shard that received the request (the origin) keeps a [`Gather`] and sends a `Remote`
//! request to every shard involved; each answers with a `Part`. When the last part is in, the
//! origin answers the client (or, for a name, sends the real request to the owner). Requests
//! that name a job by id go straight to its owner shard (`dag % shards`), no gather needed.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use super::mesh::{Part, QueryId, Remote, ShardMsg, ShardStats};
use super::state::Shard;
use titan_core::{Input, JobId, JobRef, JobState, Resolved, Target};
use titan_proto::message::client::{
    ClusterStats, JobList, JobStatus, Persistence, StatsText, WaitReply, WorkerList, WorkerStatus,
};
use titan_proto::{encode_frame, ErrorCode, OpCode};

/// The token of a `Watch` the origin asked another shard's core for: which wait, which job.
/// Bit 63 tells it apart from a connection reply token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchToken {
    pub origin: u32,
    pub query: QueryId,
    pub index: u32,
}

const WATCH_TAG: u64 = 1 << 63;

impl WatchToken {
    pub fn pack(self) -> u64 {
        WATCH_TAG
            | (u64::from(self.query.origin) << 56)
            | (u64::from(self.query.seq) << 24)
            | u64::from(self.index & 0xFF_FFFF)
    }

    pub fn unpack(token: u64) -> Option<WatchToken> {
        if token & WATCH_TAG == 0 {
            return None;
        }
        let origin = ((token >> 56) & 0x7F) as u32;
        let seq = (token >> 24) as u32;
        Some(WatchToken {
            origin,
            query: QueryId { origin, seq },
            index: (token & 0xFF_FFFF) as u32,
        })
    }
}

/// What to do with a job once its bare name is resolved.
#[derive(Clone, Copy, Debug)]
pub enum Then {
    Logs(super::logs::LogsParams),
    Status,
    Cancel,
    Stop,
    Watch { query: QueryId, index: u32 },
}

/// Scaling decisions STATS shows (the most recent, all shards together).
pub const SCALING_EVENTS_SHOWN: usize = 32;

/// How STATS is answered.
#[derive(Clone, Copy, Debug)]
pub enum StatsForm {
    Text,
    Json,
    Workers,
}

pub enum Gather {
    Name {
        token: u64,
        name: Box<str>,
        then: Then,
        best: Option<(u64, u64)>,
    },
    Jobs {
        token: u64,
        limit: u32,
        jobs: Vec<JobStatus>,
        more: bool,
    },
    Stats {
        token: u64,
        form: StatsForm,
        acc: Box<ShardStats>,
    },
    Wait {
        token: u64,
        asked: Vec<String>,
        done: Vec<Option<JobStatus>>,
        error: Option<String>,
    },
}

/// Gathers in progress on this shard, each with the parts it still expects.
#[derive(Default)]
pub struct Gathers {
    next: u32,
    open: HashMap<u32, (Gather, u32)>,
}

impl Shard {
    fn open_gather(&self, gather: Gather, parts: u32) -> QueryId {
        let mut g = self.gathers.borrow_mut();
        g.next = g.next.wrapping_add(1);
        let seq = g.next;
        g.open.insert(seq, (gather, parts));
        QueryId {
            origin: self.index,
            seq,
        }
    }

    /// Sends a request about one job to the shard that owns it, resolving a bare name first.
    pub fn route(&self, token: u64, job: JobRef, then: Then) {
        let owner = match &job {
            JobRef::Task(dag) | JobRef::Dag(dag) | JobRef::DagJob(dag, _) => dag.owner(self.count),
            JobRef::Name(name) => {
                let query = self.open_gather(
                    Gather::Name {
                        token,
                        name: name.clone(),
                        then,
                        best: None,
                    },
                    self.count,
                );
                for shard in 0..self.count {
                    self.send_to(
                        shard,
                        ShardMsg::Request {
                            token,
                            query: Some(query),
                            request: Remote::LookupName(name.clone()),
                        },
                    );
                }
                return;
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
        let query = self.open_gather(
            Gather::Jobs {
                token,
                limit,
                jobs: Vec::new(),
                more: false,
            },
            self.count,
        );
        for shard in 0..self.count {
            self.send_to(
                shard,
                ShardMsg::Request {
                    token,
                    query: Some(query),
                    request: Remote::ListJobs { state, limit },
                },
            );
        }
    }

    pub fn gather_stats(&self, token: u64, form: StatsForm) {
        let query = self.open_gather(
            Gather::Stats {
                token,
                form,
                acc: Box::default(),
            },
            self.count,
        );
        for shard in 0..self.count {
            self.send_to(
                shard,
                ShardMsg::Request {
                    token,
                    query: Some(query),
                    request: Remote::Stats,
                },
            );
        }
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
            let watch = WatchToken {
                origin: self.index,
                query,
                index: index as u32,
            };
            self.route(
                watch.pack(),
                job,
                Then::Watch {
                    query,
                    index: index as u32,
                },
            );
        }
        let shard = self.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(timeout).await;
            let open = shard.gathers.borrow_mut().open.remove(&query.seq);
            if let Some((gather, _)) = open {
                shard.finish(gather, true);
            }
        })
        .detach();
    }

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
                match resolved {
                    Some(Resolved::Job(id)) => self.handle(Input::Cancel {
                        token,
                        target: Target::Job(id),
                    }),
                    Some(Resolved::Dag(dag)) => self.handle(Input::Cancel {
                        token,
                        target: Target::Dag(dag),
                    }),
                    None => self.deliver(
                        token,
                        error_frame(ErrorCode::NotFound, &format!("unknown job {job}")),
                    ),
                }
            }
            Remote::Stop(job) => match self.resolve_job(&job) {
                Ok(id) => self.handle(Input::Stop { token, job: id }),
                Err(frame) => self.deliver(token, frame),
            },
            Remote::Watch { job, index } => {
                let resolved = self.core.borrow().resolve(&job);
                match (resolved, query) {
                    (Some(Resolved::Job(id)), _) => self.handle(Input::Watch { token, job: id }),
                    (_, Some(query)) => {
                        let status = Err(format!("unknown job {job}"));
                        self.send_to(
                            query.origin,
                            ShardMsg::Part {
                                query,
                                part: Part::Watched {
                                    index,
                                    status: Box::new(status),
                                },
                            },
                        );
                    }
                    (_, None) => {}
                }
            }
            Remote::LookupName(name) => {
                let hit = self
                    .core
                    .borrow()
                    .lookup_name(&name)
                    .map(|h| (h.submitted.0, h.job.0));
                self.answer(query, Part::Name(hit));
            }
            Remote::ListJobs { state, limit } => {
                let (jobs, more) = {
                    let core = self.core.borrow();
                    let views = core.jobs(state, limit as usize + 1);
                    let more = views.len() > limit as usize;
                    (
                        views
                            .iter()
                            .take(limit as usize)
                            .map(|v| self.status_of(v))
                            .collect(),
                        more,
                    )
                };
                self.answer(query, Part::Jobs { jobs, more });
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

    fn shard_stats(&self) -> ShardStats {
        let core = self.core.borrow();
        let stats = core.stats();
        let mut by_state = [0u64; 9];
        for (i, n) in stats.by_state.iter().enumerate() {
            by_state[i] = *n as u64;
        }
        let mut services = Vec::new();
        let mut silent_for = Vec::new();
        for worker in core.workers() {
            if worker.home {
                silent_for.push((worker.id, worker.silent_for));
            }
            for job in core.services_on(worker.id) {
                if let Some(label) = core.label(job) {
                    services.push((worker.id, label.to_string()));
                }
            }
        }
        ShardStats {
            by_state,
            dlq: stats.dlq as u64,
            totals: stats.totals,
            services,
            silent_for,
            scaling: self.scaling.borrow().iter().cloned().collect(),
            logs: self.logs.as_ref().map(|l| l.totals()),
            degraded: self
                .degraded()
                .map(|d| format!("shard {}: {}", self.index, d.cause)),
        }
    }

    /// A part of a gather arrived; finishes the gather when it was the last.
    pub fn on_part(&self, query: QueryId, part: Part) {
        let finished = {
            let mut gathers = self.gathers.borrow_mut();
            let Some((gather, left)) = gathers.open.get_mut(&query.seq) else {
                return;
            };
            merge(gather, part);
            *left -= 1;
            if *left > 0 {
                return;
            }
            gathers.open.remove(&query.seq).map(|(g, _)| g)
        };
        if let Some(gather) = finished {
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
                Some((_, job)) => {
                    self.route(token, JobRef::DagJob(JobId(job).dag(), name), then);
                }
                None => {
                    let message = format!("no job named {name}");
                    match then {
                        Then::Watch { query, index } => self.send_to(
                            query.origin,
                            ShardMsg::Part {
                                query,
                                part: Part::Watched {
                                    index,
                                    status: Box::new(Err(message)),
                                },
                            },
                        ),
                        _ => self.deliver(token, error_frame(ErrorCode::NotFound, &message)),
                    }
                }
            },
            Gather::Jobs {
                token,
                limit,
                mut jobs,
                more,
            } => {
                jobs.sort_by_key(|j| std::cmp::Reverse((j.submitted_at_us, j.id)));
                let mut more = more || jobs.len() > limit as usize;
                jobs.truncate(limit as usize);
                // The list must fit in one frame (jobs with inline scripts carry them in their
                // spec): past that, the oldest are left out and `truncated` says so.
                let fit = fitting_in_a_frame(&jobs);
                if fit < jobs.len() {
                    jobs.truncate(fit);
                    more = true;
                }
                self.deliver(
                    token,
                    data_frame(&JobList {
                        jobs,
                        truncated: more,
                    }),
                );
            }
            Gather::Stats { token, form, acc } => {
                let stats = self.cluster_stats(*acc);
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
                ..
            } => {
                let frame = match error {
                    Some(e) => error_frame(ErrorCode::NotFound, &e),
                    None => {
                        let pending = asked
                            .iter()
                            .zip(&done)
                            .filter(|(_, d)| d.is_none())
                            .map(|(a, _)| a.clone())
                            .collect();
                        data_frame(&WaitReply {
                            jobs: done.into_iter().flatten().collect(),
                            pending,
                            timed_out,
                        })
                    }
                };
                self.deliver(token, frame);
            }
        }
    }

    /// `memory-only`, `wal`, or why a shard cannot write its log (changes are refused).
    fn persistence_label(&self, degraded: Option<&str>) -> Persistence {
        match (self.has_wal(), degraded) {
            (false, _) => Persistence::MemoryOnly,
            (true, None) => Persistence::Wal,
            (true, Some(cause)) => Persistence::Failing {
                cause: cause.to_string(),
            },
        }
    }

    fn cluster_stats(&self, acc: ShardStats) -> ClusterStats {
        let core = self.core.borrow();
        let mut scaling = acc.scaling;
        scaling.sort_by_key(|e| e.at_us);
        let keep_from = scaling.len().saturating_sub(SCALING_EVENTS_SHOWN);
        scaling.drain(..keep_from);
        let count = |s: JobState| acc.by_state[s as usize];
        let workers = core
            .workers()
            .iter()
            .map(|w| WorkerStatus {
                id: w.id.0,
                port: w.port,
                running: w.running,
                capacity: w.capacity,
                skills: w.skills.iter().map(|s| s.to_string()).collect(),
                parent: w.parent.map(|p| p.0),
                ephemeral: w.ephemeral,
                services: acc
                    .services
                    .iter()
                    .filter(|(id, _)| *id == w.id)
                    .map(|(_, l)| l.clone())
                    .collect(),
                silent_for_ms: acc
                    .silent_for
                    .iter()
                    .find(|(id, _)| *id == w.id)
                    .map_or(w.silent_for, |&(_, d)| d)
                    .as_millis() as u64,
            })
            .collect::<Vec<_>>();
        ClusterStats {
            active_workers: workers.len() as u32,
            queued: count(JobState::Queued),
            delayed: count(JobState::Pending) + count(JobState::Failed),
            blocked: count(JobState::Blocked),
            dlq: acc.dlq,
            running: count(JobState::Running),
            completed: acc.totals.completed,
            cancelled: acc.totals.cancelled,
            upstream_failed: acc.totals.upstream_failed,
            shards: self.count,
            persistence: self.persistence_label(acc.degraded.as_deref()),
            workers,
            scaling,
            logs: acc.logs.unwrap_or_default(),
        }
    }
}

fn merge(gather: &mut Gather, part: Part) {
    match (gather, part) {
        (Gather::Name { best, .. }, Part::Name(hit))
            if hit.is_some_and(|h| best.is_none_or(|b| h > b)) =>
        {
            *best = hit;
        }
        (
            Gather::Jobs { jobs, more, .. },
            Part::Jobs {
                jobs: part,
                more: part_more,
            },
        ) => {
            jobs.extend(part);
            *more |= part_more;
        }
        (Gather::Stats { acc, .. }, Part::Stats(part)) => {
            for (total, n) in acc.by_state.iter_mut().zip(part.by_state) {
                *total += n;
            }
            acc.dlq += part.dlq;
            acc.totals.completed += part.totals.completed;
            acc.totals.cancelled += part.totals.cancelled;
            acc.totals.upstream_failed += part.totals.upstream_failed;
            acc.totals.dead += part.totals.dead;
            acc.services.extend(part.services);
            acc.silent_for.extend(part.silent_for);
            acc.scaling.extend(part.scaling);
            if part.logs.is_some() {
                acc.logs = part.logs;
            }
            if acc.degraded.is_none() {
                acc.degraded = part.degraded;
            }
        }
        (Gather::Wait { done, error, .. }, Part::Watched { index, status }) => match *status {
            Ok(s) => {
                if let Some(slot) = done.get_mut(index as usize) {
                    *slot = Some(s);
                }
            }
            Err(e) => {
                error.get_or_insert(e);
            }
        },
        // A part of the wrong kind cannot happen (parts answer the gather that asked).
        _ => {}
    }
}

/// A `Data` frame with `msg`.
/// How many of `jobs` (from the first) fit in one reply frame, by a generous estimate of each
/// one's archived size.
fn fitting_in_a_frame(jobs: &[JobStatus]) -> usize {
    /// The fixed-size fields, string headers and the frame header, rounded up.
    const FIXED: usize = 256;
    let budget = titan_proto::limits::MAX_FRAME_LEN as usize / 10 * 9;
    let mut used = 0;
    jobs.iter()
        .position(|j| {
            used += FIXED
                + j.label.len()
                + j.kind.len()
                + j.spec.len()
                + j.skill.len()
                + j.last_error.as_ref().map_or(0, |e| e.len())
                + j.deps.iter().map(|d| d.len() + 8).sum::<usize>();
            used > budget
        })
        .unwrap_or(jobs.len())
}

pub fn data_frame<T>(msg: &T) -> Vec<u8>
where
    T: for<'a, 'b> rkyv::Serialize<titan_proto::codec::FrameSerializer<'a, 'b>>,
{
    let mut frame = Vec::new();
    if let Err(e) = encode_frame(&mut frame, OpCode::Data, msg) {
        frame.clear();
        titan_proto::encode_error(&mut frame, ErrorCode::Internal, &e.to_string());
    }
    frame
}

pub fn error_frame(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut frame = Vec::new();
    titan_proto::encode_error(&mut frame, code, message);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_tokens_round_trip_and_differ_from_reply_tokens() {
        let w = WatchToken {
            origin: 5,
            query: QueryId {
                origin: 5,
                seq: 0xDEAD_BEEF,
            },
            index: 77,
        };
        assert_eq!(WatchToken::unpack(w.pack()), Some(w));
        let reply = super::super::mesh::Token {
            shard: 63,
            conn: super::super::mesh::ConnKey {
                index: 1,
                generation: 2,
            },
            slot: 3,
        };
        assert_eq!(WatchToken::unpack(reply.pack()), None);
    }

    #[test]
    fn a_job_list_is_cut_to_what_one_frame_holds() {
        let job = |spec_len: usize| JobStatus {
            kind: "RUN_INLINE".into(),
            spec: "x".repeat(spec_len),
            ..JobStatus::sample()
        };
        let big: Vec<_> = (0..20).map(|_| job(1 << 20)).collect();
        let fit = fitting_in_a_frame(&big);
        assert_eq!(fit, 8);
        let frame = data_frame(&JobList {
            jobs: big[..fit].to_vec(),
            truncated: true,
        });
        assert_eq!(frame[1], OpCode::Data as u8, "the cut list encodes");
        let small: Vec<_> = (0..1000).map(|_| job(100)).collect();
        assert_eq!(fitting_in_a_frame(&small), 1000);
    }
}
