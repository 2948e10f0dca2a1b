//! Carrying out the core's outputs where the router sends them, as frames and messages: the one
//! place where a scheduling decision becomes an effect.

use tracing::{info, warn};

use super::mesh::{Part, QueryId, ShardMsg};
use super::shard::Shard;
use titan_core::router::{Command, ReplyTo, Route};
use titan_core::{Ack, Core, Input, JobId, JobKind, JobRef, Output, RequestError, WorkerId};
use titan_proto::message::client::{
    Cancelled, JobLabel, JobStatus, ScalingAction, ScalingEvent, Stopped, Submitted,
};
use titan_proto::message::worker::{KillJob, Retire, RunJob, SpawnChild};
use titan_proto::{encode_frame, ErrorCode, OpCode};

impl Shard {
    /// Carries out a batch of outputs, each where the router sends it. Journal records were
    /// appended already (`Shard::handle`).
    pub(super) fn apply(&self, outputs: Vec<Output>) {
        for output in outputs {
            match self.router.route(output) {
                Route::Journal { .. } => {}
                Route::Reply { to, reply } => self.on_reply(to, reply),
                Route::Notify { to, job, .. } => {
                    let status = self
                        .job_status(job)
                        .ok_or_else(|| format!("job {job} was pruned"));
                    self.watched(to, status);
                }
                Route::Worker { worker, command } => self.command(worker, command),
                // Closing the connection makes every shard lose the worker (`on_conn_closed`).
                Route::Disconnect { worker, silent_for } => {
                    warn!(%worker, ?silent_for, "worker missed its heartbeats; declaring it dead");
                    self.drop_worker(worker);
                }
                Route::Tick(shards) => {
                    for shard in shards {
                        self.mesh.send(shard, ShardMsg::Input(Input::Tick));
                    }
                }
            }
        }
    }

    fn command(&self, worker: WorkerId, command: Command) {
        match command {
            Command::Run { job, attempt } => self.dispatch(worker, job, attempt),
            Command::Kill {
                job,
                attempt,
                reason,
            } => {
                let kill = KillJob {
                    job,
                    attempt,
                    reason,
                };
                self.encode_to_worker(worker, OpCode::KillJob, &kill);
            }
            Command::Spawn { ticket, reason } => {
                let why = format!(
                    "{} {} job(s) waited {:?} with no free slot",
                    reason.queued, reason.skill, reason.waiting
                );
                info!(%worker, ticket, reason = %why, "scaling up: asking a worker to spawn a child");
                self.record_scaling(ScalingAction::Spawn, worker, why);
                self.encode_to_worker(worker, OpCode::SpawnWorker, &SpawnChild { ticket });
            }
            Command::Retire { idle_for } => {
                let why = format!("idle for {idle_for:?}");
                info!(%worker, reason = %why, "scaling down: retiring an idle ephemeral worker");
                self.record_scaling(ScalingAction::Retire, worker, why.clone());
                self.encode_to_worker(worker, OpCode::KillWorker, &Retire { reason: why });
                // Closing its connection (after the frame is written) makes every shard lose it.
                self.drop_worker(worker);
            }
        }
    }

    fn encode_to_worker<T>(&self, worker: WorkerId, opcode: OpCode, msg: &T)
    where
        T: for<'a, 'b> rkyv::Serialize<titan_proto::codec::FrameSerializer<'a, 'b>>,
    {
        let mut frame = Vec::new();
        if encode_frame(&mut frame, opcode, msg).is_ok() {
            self.to_worker(worker, frame);
        }
    }

    fn on_reply(&self, to: ReplyTo, reply: Result<Ack, RequestError>) {
        let token = match to {
            ReplyTo::Connection(t) => t.pack(),
            ReplyTo::Wait(_) => {
                // A watch the core refused (unknown job): that part of the wait is answered now.
                let status = match reply {
                    Err(e) => Err(e.to_string()),
                    Ok(_) => Err("unexpected acknowledgement of a watch".to_string()),
                };
                return self.watched(to, status);
            }
        };
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

    /// A part of a wait is answered (watches come only from waits).
    fn watched(&self, to: ReplyTo, status: Result<JobStatus, String>) {
        if let ReplyTo::Wait(watch) = to {
            let query = QueryId {
                origin: watch.origin,
                seq: watch.seq,
            };
            let part = Part::Watched {
                index: watch.index,
                status: Box::new(status),
            };
            self.send_to(watch.origin, ShardMsg::Part { query, part });
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
            // One HMAC per dispatch of a job that may print; NOOP and SLEEP print nothing.
            let prints = !matches!(spec.kind, JobKind::Noop | JobKind::Sleep { .. });
            let run = RunJob {
                job,
                attempt,
                label: label.to_string(),
                spec: spec.clone(),
                log_key: prints.then(|| self.shared.auth.attempt_key(job, attempt)),
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

    fn record_scaling(&self, action: ScalingAction, worker: WorkerId, reason: String) {
        self.scaling.record(ScalingEvent {
            at_us: self.clock.now().0,
            action,
            worker: worker.0,
            worker_port: self.directory.port(worker),
            reason,
        });
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
