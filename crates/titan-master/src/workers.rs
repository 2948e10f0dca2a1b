//! The worker side of the protocol: a worker's decoded reports (registration, heartbeats, job
//! reports) turned into inputs. Where they go — the registration to every shard, a report to the
//! shard owning its job — is [`super::membership`]'s and the router's.

use std::time::Duration;

use super::conns::ConnKey;
use super::requests::Origin;
use super::shard::Shard;
use titan_core::{Input, JobId, Outcome, WorkerId};
use titan_proto::decode::{self, WorkerReport};
use titan_proto::message::worker::ArchivedJobFinished;
use titan_proto::{OpCode, ProtoError};

impl Shard {
    pub(super) fn on_report(
        &self,
        from: Origin<'_>,
        report: WorkerReport<'_>,
    ) -> Result<(), ProtoError> {
        match report {
            WorkerReport::Register(m) => self.register(from, m)?,
            WorkerReport::Heartbeat { .. } => {
                let worker = self.registered(from.conn, OpCode::Heartbeat)?;
                self.arrive(Input::Heartbeat { worker });
            }
            WorkerReport::JobStarted { job, attempt, .. } => {
                let worker = self.registered(from.conn, OpCode::JobStarted)?;
                self.arrive(Input::JobStarted {
                    job,
                    attempt,
                    worker,
                });
            }
            WorkerReport::JobFinished(m) => {
                let worker = self.registered(from.conn, OpCode::JobComplete)?;
                self.on_job_finished(worker, m)?;
            }
            WorkerReport::ServiceReady { job, attempt } => {
                let worker = self.registered(from.conn, OpCode::ServiceState)?;
                self.arrive(Input::ServiceReady {
                    job,
                    attempt,
                    worker,
                });
            }
        }
        Ok(())
    }

    /// The worker this connection registered as; a report before `Register` is refused.
    pub(super) fn registered(&self, conn: ConnKey, opcode: OpCode) -> Result<WorkerId, ProtoError> {
        let worker = self.conns.worker(conn);
        worker.ok_or(ProtoError::UnexpectedFrame {
            opcode,
            reason: "a worker must register first",
        })
    }

    fn on_job_finished(&self, worker: WorkerId, m: &ArchivedJobFinished) -> Result<(), ProtoError> {
        // The outcome goes into the core (maybe on another shard): the one copy out of the frame.
        let outcome: Outcome = decode::owned(OpCode::JobComplete, &m.outcome)?;
        let job: JobId = decode::native(&m.job);
        let attempt = m.attempt.to_native();
        let duration = Duration::from_micros(m.duration_us.to_native());
        let worker_addr = self.directory.addr(worker);
        let lines = (m.stdout_lines.to_native(), m.stderr_lines.to_native());
        // An attempt that printed nothing (every NOOP) needs no entry in the sink.
        if let (Some(addr), true) = (worker_addr, lines.0 + lines.1 > 0) {
            self.on_attempt_output_end(job, attempt, lines, addr);
        }
        self.arrive(Input::JobFinished {
            job,
            attempt,
            worker,
            outcome,
            duration,
        });
        Ok(())
    }
}
