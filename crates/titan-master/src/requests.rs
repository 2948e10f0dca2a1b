//! Client requests: decode, validate, and hand each to the core, the owner shard or a gather.
//!
//! Every request that is not answered on the spot reserves its place in the connection's reply
//! order first, so replies leave in request order however long each takes.

use std::rc::Rc;
use std::time::Duration;

use rkyv::rancor;

use super::gather::{StatsForm, Then};
use super::mesh::{ConnKey, Token};
use super::state::Shard;
use titan_core::{Input, JobRef, Submission};
use titan_proto::message::client::{
    ArchivedJobQuery, ArchivedListJobsRequest, ArchivedSubmitRequest, ArchivedWaitRequest,
};
use titan_proto::message::logs::ArchivedLogsRequest;
use titan_proto::message::ArchivedPing;
use titan_proto::{self as proto, ErrorCode, Frame, OpCode, ProtoError};
use titan_runtime::outbox::Outbox;

/// Most jobs one `jobs` listing returns.
pub const MAX_LIST_LIMIT: u32 = 10_000;

/// Most jobs one `wait` may name.
pub const MAX_WAIT_JOBS: usize = 10_000;

/// Longest a `wait` may last.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

impl Shard {
    /// Handles one frame from a connection. An error closes the connection after its reply.
    pub fn on_frame(
        self: &Rc<Shard>,
        conn: ConnKey,
        outbox: &Rc<Outbox>,
        frame: Frame<'_>,
    ) -> Result<(), ProtoError> {
        let opcode = frame.header.opcode;
        let payload = frame.payload;
        let slot_token = || Token::new(self.index, conn, outbox.reserve()).pack();
        match opcode {
            OpCode::Ping => {
                proto::access::<ArchivedPing>(opcode, payload)?;
                outbox.reply(|out| {
                    // A valid ping's payload always fits in a frame: it arrived in one.
                    let _ = proto::encode_raw_frame(out, OpCode::Pong, payload);
                });
            }
            OpCode::SubmitJob | OpCode::SubmitDag => {
                let request = proto::access::<ArchivedSubmitRequest>(opcode, payload)?;
                if let Some(degraded) = self.degraded() {
                    reply_error(outbox, ErrorCode::Unavailable, &unavailable(&degraded));
                    return Ok(());
                }
                let submission: Submission = rkyv::deserialize::<_, rancor::BoxedError>(
                    &request.submission,
                )
                .map_err(|e| ProtoError::InvalidPayload {
                    opcode,
                    reason: e.to_string(),
                })?;
                let kind_matches = matches!(
                    (&submission, opcode),
                    (Submission::OneOff(_), OpCode::SubmitJob)
                        | (Submission::Dag(_), OpCode::SubmitDag)
                );
                if !kind_matches {
                    return Err(ProtoError::UnexpectedFrame {
                        opcode,
                        reason: "a DAG goes with SubmitDag, one job with SubmitJob",
                    });
                }
                self.handle(Input::Submit {
                    token: slot_token(),
                    submission,
                });
            }
            OpCode::GetJobStatus | OpCode::CancelJob | OpCode::Stop => {
                let query = proto::access::<ArchivedJobQuery>(opcode, payload)?;
                let then = match opcode {
                    OpCode::GetJobStatus => Then::Status,
                    OpCode::CancelJob => Then::Cancel,
                    _ => Then::Stop,
                };
                match query.job.as_str().parse::<JobRef>() {
                    Ok(job) => self.route(slot_token(), job, then),
                    Err(e) => reply_error(outbox, ErrorCode::Rejected, &e.to_string()),
                }
            }
            OpCode::ListJobs => {
                let request = proto::access::<ArchivedListJobsRequest>(opcode, payload)?;
                let state = request
                    .state
                    .as_ref()
                    .map(rkyv::deserialize::<_, rancor::BoxedError>);
                let state = state.transpose().map_err(|e| ProtoError::InvalidPayload {
                    opcode,
                    reason: e.to_string(),
                })?;
                let limit = request.limit.to_native().clamp(1, MAX_LIST_LIMIT);
                self.gather_jobs(slot_token(), state, limit);
            }
            OpCode::WaitJobs => {
                let request = proto::access::<ArchivedWaitRequest>(opcode, payload)?;
                if request.jobs.is_empty() || request.jobs.len() > MAX_WAIT_JOBS {
                    let message = format!("wait needs between 1 and {MAX_WAIT_JOBS} jobs");
                    reply_error(outbox, ErrorCode::Rejected, &message);
                    return Ok(());
                }
                let mut jobs = Vec::with_capacity(request.jobs.len());
                for text in request.jobs.iter() {
                    match text.as_str().parse::<JobRef>() {
                        Ok(job) => jobs.push((text.as_str().to_string(), job)),
                        Err(e) => {
                            reply_error(outbox, ErrorCode::Rejected, &e.to_string());
                            return Ok(());
                        }
                    }
                }
                let timeout = Duration::from_millis(request.timeout_ms.to_native()).min(MAX_WAIT);
                self.gather_wait(slot_token(), jobs, timeout);
            }
            OpCode::GetLogs => {
                let request = proto::access::<ArchivedLogsRequest>(opcode, payload)?;
                let params = super::logs::LogsParams {
                    attempt: request.attempt.to_native(),
                    cursor: request.cursor.to_native(),
                    max_lines: request.max_lines.to_native(),
                    wait_ms: request.wait_ms.to_native(),
                };
                match request.job.as_str().parse::<JobRef>() {
                    Ok(job) => self.route(slot_token(), job, Then::Logs(params)),
                    Err(e) => reply_error(outbox, ErrorCode::Rejected, &e.to_string()),
                }
            }
            OpCode::Stats => self.gather_stats(slot_token(), StatsForm::Text),
            OpCode::StatsJson => self.gather_stats(slot_token(), StatsForm::Json),
            OpCode::ListWorkers => self.gather_stats(slot_token(), StatsForm::Workers),
            OpCode::Register
            | OpCode::Heartbeat
            | OpCode::JobStarted
            | OpCode::JobComplete
            | OpCode::ServiceState => self.on_worker_frame(conn, outbox, opcode, payload)?,
            _ => {
                return Err(ProtoError::UnexpectedFrame {
                    opcode,
                    reason: "not a request the master serves",
                })
            }
        }
        Ok(())
    }
}

/// The message of a change refused because the shard's log cannot be written.
pub fn unavailable(degraded: &super::persist::Degraded) -> String {
    format!(
        "the master cannot write its log ({}); nothing was changed. Reads still work; retry once the disk is fixed",
        degraded.cause
    )
}

fn reply_error(outbox: &Outbox, code: ErrorCode, message: &str) {
    outbox.reply(|out| titan_proto::encode_error(out, code, message));
}
