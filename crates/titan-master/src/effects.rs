//! Turning the core's outputs into frames and messages: the one place where a scheduling
//! decision becomes an effect.

use tracing::{info, warn};

use super::gather::WatchToken;
use super::mesh::{Part, ShardMsg};
use super::state::Shard;
use titan_core::{Ack, Core, Input, JobId, JobRef, KillReason, Output, RequestError, WorkerId};
use titan_proto::message::client::{Cancelled, JobLabel, Stopped, Submitted};
use titan_proto::message::client::{ScalingAction, ScalingEvent};
use titan_proto::message::worker::{KillJob, Retire, RunJob, SpawnChild};
use titan_proto::{encode_frame, ErrorCode, OpCode};

impl Shard {
    pub(super) fn apply(&self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                // Nothing to write until the write-ahead log exists; `handle` confirms them.
                Output::Journal { .. } => {}
                Output::Reply { token, reply } => self.on_reply(token, reply),
                Output::Notify { token, job, .. } => {
                    let status = self
                        .job_status(job)
                        .ok_or_else(|| format!("job {job} was pruned"));
                    self.watched(token, status);
                }
                Output::Dispatch {
                    worker,
                    job,
                    attempt,
                } => self.dispatch(worker, job, attempt),
                Output::Kill {
                    worker,
                    job,
                    attempt,
                    reason,
                } => self.kill(worker, job, attempt, reason),
                // Closing the connection makes every shard lose the worker (`on_conn_closed`).
                Output::WorkerDead { worker, silent_for } => {
                    warn!(%worker, ?silent_for, "worker missed its heartbeats; declaring it dead");
                    self.drop_worker(worker);
                }
                Output::SpawnWorker {
                    parent,
                    ticket,
                    reason,
                } => {
                    let why = format!(
                        "{} {} job(s) waited {:?} with no free slot",
                        reason.queued, reason.skill, reason.waiting
                    );
                    info!(%parent, ticket, reason = %why, "scaling up: asking a worker to spawn a child");
                    self.record_scaling(ScalingAction::Spawn, parent, why);
                    let mut frame = Vec::new();
                    if encode_frame(&mut frame, OpCode::SpawnWorker, &SpawnChild { ticket }).is_ok()
                    {
                        self.to_worker(parent, frame);
                    }
                }
                Output::RetireWorker { worker, idle_for } => {
                    let why = format!("idle for {idle_for:?}");
                    info!(%worker, reason = %why, "scaling down: retiring an idle ephemeral worker");
                    self.record_scaling(ScalingAction::Retire, worker, why.clone());
                    let mut frame = Vec::new();
                    if encode_frame(&mut frame, OpCode::KillWorker, &Retire { reason: why }).is_ok()
                    {
                        self.to_worker(worker, frame);
                    }
                    // Closing its connection (after the frame is written) makes every shard lose it.
                    self.drop_worker(worker);
                }
                Output::Wake { shards } => {
                    for shard in
                        (0..self.count).filter(|s| shards & (1 << s) != 0 && *s != self.index)
                    {
                        self.mesh.send(shard, ShardMsg::Input(Input::Tick));
                    }
                }
            }
        }
    }

    fn on_reply(&self, token: u64, reply: Result<Ack, RequestError>) {
        if let Some(watch) = WatchToken::unpack(token) {
            // A watch the core refused (unknown job): that part of the wait is answered now.
            let status = match reply {
                Err(e) => Err(e.to_string()),
                Ok(_) => Err("unexpected acknowledgement of a watch".to_string()),
            };
            self.send_to(
                watch.origin,
                ShardMsg::Part {
                    query: watch.query,
                    part: Part::Watched {
                        index: watch.index,
                        status: Box::new(status),
                    },
                },
            );
            return;
        }
        let mut frame = Vec::new();
        match reply {
            Ok(ack) => {
                let core = self.core.borrow();
                encode_ack(&core, ack, &mut frame);
            }
            Err(e) => {
                let text = error_text(&self.core.borrow(), &e);
                titan_proto::encode_error(&mut frame, request_error_code(&e), &text)
            }
        }
        self.deliver(token, frame);
    }

    fn watched(&self, token: u64, status: Result<titan_proto::message::client::JobStatus, String>) {
        if let Some(watch) = WatchToken::unpack(token) {
            self.send_to(
                watch.origin,
                ShardMsg::Part {
                    query: watch.query,
                    part: Part::Watched {
                        index: watch.index,
                        status: Box::new(status),
                    },
                },
            );
        }
    }

    fn dispatch(&self, worker: WorkerId, job: JobId, attempt: u32) {
        let mut frame = Vec::new();
        {
            let core = self.core.borrow();
            let (Some(spec), Some(label)) = (core.spec(job), core.label(job)) else {
                return;
            };
            let opcode = if spec.is_service() {
                OpCode::Deploy
            } else {
                OpCode::Run
            };
            let run = RunJob {
                job,
                attempt,
                label: label.to_string(),
                spec: spec.clone(),
            };
            if let Err(e) = encode_frame(&mut frame, opcode, &run) {
                // A spec that cannot be framed (an inline script over the frame limit) fails the
                // attempt instead of being dropped silently.
                drop(core);
                let outcome = titan_core::Outcome::Error {
                    message: e.to_string().into(),
                };
                let duration = std::time::Duration::ZERO;
                self.handle(Input::JobFinished {
                    job,
                    attempt,
                    worker,
                    outcome,
                    duration,
                });
                return;
            }
        }
        self.to_worker(worker, frame);
    }

    fn kill(&self, worker: WorkerId, job: JobId, attempt: u32, reason: KillReason) {
        let mut frame = Vec::new();
        if encode_frame(
            &mut frame,
            OpCode::KillJob,
            &KillJob {
                job,
                attempt,
                reason,
            },
        )
        .is_ok()
        {
            self.to_worker(worker, frame);
        }
    }

    fn record_scaling(&self, action: ScalingAction, worker: WorkerId, reason: String) {
        let worker_port = self.workers.borrow().get(&worker).map(|h| h.port);
        let event = ScalingEvent {
            at_us: self.clock.now().0,
            action,
            worker: worker.0,
            worker_port,
            reason,
        };
        let mut log = self.scaling.borrow_mut();
        if log.len() == super::gather::SCALING_EVENTS_SHOWN {
            log.pop_front();
        }
        log.push_back(event);
    }

    /// Closes the connection of a worker that lives on this shard (or asks its home shard to).
    pub(super) fn drop_worker(&self, worker: WorkerId) {
        let home = self.workers.borrow().get(&worker).copied();
        match home {
            Some(h) if h.shard != self.index => {
                self.mesh.send(h.shard, ShardMsg::DropWorker { worker })
            }
            Some(h) => {
                if let Some(conn) = h.conn {
                    if let Some(entry) = self.conns.borrow().get(conn) {
                        entry.outbox.close();
                    }
                }
            }
            None => {}
        }
    }
}

fn encode_ack(core: &Core, ack: Ack, out: &mut Vec<u8>) {
    let result = match ack {
        Ack::Submitted { dag, jobs, one_off } => {
            let (label, jobs) = if one_off {
                // Built from the id alone: a held ack is encoded once its record is durable,
                // when looking the job up again would mostly miss the cache.
                let label = JobRef::Task(dag).to_string();
                let job = JobLabel {
                    id: dag.job(0).0,
                    label: label.clone(),
                };
                (label, vec![job])
            } else {
                let jobs = (0..jobs)
                    .map(|i| {
                        let id = dag.job(i);
                        let label = core
                            .label(id)
                            .map_or_else(|| id.to_string(), |l| l.to_string());
                        JobLabel { id: id.0, label }
                    })
                    .collect();
                (JobRef::Dag(dag).to_string(), jobs)
            };
            encode_frame(
                out,
                OpCode::Ack,
                &Submitted {
                    dag: dag.0,
                    label,
                    jobs,
                },
            )
        }
        Ack::Cancelled { jobs } => encode_frame(out, OpCode::Ack, &Cancelled { jobs }),
        Ack::Stopped { job } => {
            let label = core
                .label(job)
                .map_or_else(|| job.to_string(), |l| l.to_string());
            encode_frame(out, OpCode::Ack, &Stopped { label })
        }
    };
    if let Err(e) = result {
        out.clear();
        titan_proto::encode_error(out, ErrorCode::Internal, &e.to_string());
    }
}

/// A refusal as the client reads it: jobs named by the labels users know (`TSK-5`, `dag-3:B`),
/// not by the core's internal ids.
fn error_text(core: &Core, e: &RequestError) -> String {
    let (job, rest) = match e {
        RequestError::AlreadyFinished { job, state } => {
            (*job, format!("already finished ({state})"))
        }
        RequestError::NotAService { job } => (*job, "is not a service".to_string()),
        _ => return e.to_string(),
    };
    match core.label(job) {
        Some(label) => format!("job {label} {rest}"),
        None => e.to_string(),
    }
}

/// The wire code for a refused request.
pub fn request_error_code(e: &RequestError) -> ErrorCode {
    match e {
        RequestError::UnknownJob { .. } | RequestError::UnknownDag { .. } => ErrorCode::NotFound,
        RequestError::TooManyLiveJobs { .. } | RequestError::TooManyWatchers { .. } => {
            ErrorCode::Unavailable
        }
        RequestError::WrongShard { .. } => ErrorCode::Internal,
        _ => ErrorCode::Rejected,
    }
}
