//! Client requests: each frame is decoded once into a [`ToMaster`] value, checked against the
//! role its connection proved (`titan_auth::Role::permits`), then applied by a small function
//! per request: to the core, the owner shard or a gather.
//!
//! Every request that is not answered on the spot reserves its place in the connection's reply
//! order first, so replies leave in request order however long each takes.

use std::rc::Rc;
use std::time::Duration;

use rkyv::string::ArchivedString;
use rkyv::vec::ArchivedVec;

use super::conns::{reply_token, ConnKey};
use super::gather::{StatsForm, Then};
use super::logs::LogsParams;
use super::shard::Shard;
use titan_auth::Role;
use titan_core::model::ArchivedSubmission;
use titan_core::{Input, JobRef, Submission};
use titan_proto::decode::{self, ClientRequest, ToMaster};
use titan_proto::message::logs::ArchivedLogsRequest;
use titan_proto::{self as proto, ErrorCode, Frame, OpCode, ProtoError};
use titan_runtime::outbox::Outbox;

/// Most jobs one `jobs` listing returns.
pub const MAX_LIST_LIMIT: u32 = 10_000;

/// Most jobs one `wait` may name.
pub const MAX_WAIT_JOBS: usize = 10_000;

/// Longest a `wait` may last.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// The connection a frame came on: where its reply goes.
#[derive(Clone, Copy)]
pub(super) struct Origin<'a> {
    pub conn: ConnKey,
    pub outbox: &'a Outbox,
}

impl Origin<'_> {
    /// Answers at once with an error (the request changed nothing).
    fn refuse(&self, code: ErrorCode, message: &str) {
        self.outbox
            .reply(|out| proto::encode_error(out, code, message));
    }
}

impl Shard {
    /// Handles one frame from a connection, which proved `role`. An error closes the
    /// connection after its reply; a request the role may not make is refused with a reply
    /// that says which key would do, and the connection stays usable.
    pub fn on_frame(
        self: &Rc<Shard>,
        conn: ConnKey,
        outbox: &Rc<Outbox>,
        frame: Frame<'_>,
        role: Option<Role>,
    ) -> Result<(), ProtoError> {
        let from = Origin { conn, outbox };
        let opcode = frame.header.opcode;
        let decoded = ToMaster::decode(frame)?;
        let operation = match &decoded {
            ToMaster::Client(request) => request.operation(),
            ToMaster::Worker(report) => report.operation(),
        };
        // Every master connection has a handshake gate, so a frame comes with a role.
        let role = role.ok_or(ProtoError::UnexpectedFrame {
            opcode,
            reason: "the connection did not authenticate",
        })?;
        if let Err(refusal) = role.permits(operation) {
            from.refuse(ErrorCode::Forbidden, &refusal.to_string());
            return Ok(());
        }
        match decoded {
            ToMaster::Client(request) => self.on_request(from, request),
            ToMaster::Worker(report) => self.on_report(from, report),
        }
    }

    fn on_request(
        self: &Rc<Shard>,
        from: Origin<'_>,
        request: ClientRequest<'_>,
    ) -> Result<(), ProtoError> {
        match request {
            ClientRequest::Ping { payload } => from.outbox.reply(|out| {
                // A valid ping's payload always fits in a frame: it arrived in one.
                let _ = proto::encode_raw_frame(out, OpCode::Pong, payload);
            }),
            ClientRequest::Submit(submission) => self.on_submit(from, submission)?,
            ClientRequest::Status { job } => self.on_job_request(from, job, Then::Status),
            ClientRequest::Cancel { job } => self.on_job_request(from, job, Then::Cancel),
            ClientRequest::Stop { job } => self.on_job_request(from, job, Then::Stop),
            ClientRequest::ListJobs { state, limit } => {
                let limit = limit.clamp(1, MAX_LIST_LIMIT);
                self.gather_jobs(self.reply_slot(from), state, limit);
            }
            ClientRequest::Wait { jobs, timeout } => self.on_wait(from, jobs, timeout),
            ClientRequest::Logs(request) => self.on_logs(from, request),
            ClientRequest::Stats => self.gather_stats(self.reply_slot(from), StatsForm::Text),
            ClientRequest::StatsJson => self.gather_stats(self.reply_slot(from), StatsForm::Json),
            ClientRequest::ListWorkers => {
                self.gather_stats(self.reply_slot(from), StatsForm::Workers)
            }
        }
        Ok(())
    }

    /// Reserves the request's place in its connection's reply order; the token names it.
    fn reply_slot(&self, from: Origin<'_>) -> u64 {
        reply_token(self.index, from.conn, from.outbox.reserve())
    }

    fn on_submit(&self, from: Origin<'_>, archived: &ArchivedSubmission) -> Result<(), ProtoError> {
        if let Some(degraded) = self.degraded() {
            from.refuse(ErrorCode::Unavailable, &unavailable(&degraded));
            return Ok(());
        }
        let opcode = match archived {
            ArchivedSubmission::OneOff(_) => OpCode::SubmitJob,
            ArchivedSubmission::Dag(_) => OpCode::SubmitDag,
        };
        // The one copy of the submission: out of the receive buffer into the core's storage.
        let submission: Submission = decode::owned(opcode, archived)?;
        self.handle(Input::Submit {
            token: self.reply_slot(from),
            submission,
        });
        Ok(())
    }

    /// A request about one job or DAG, named as the user typed it.
    fn on_job_request(&self, from: Origin<'_>, job: &str, then: Then) {
        match job.parse::<JobRef>() {
            Ok(job) => self.route(self.reply_slot(from), job, then),
            Err(e) => from.refuse(ErrorCode::Rejected, &e.to_string()),
        }
    }

    fn on_logs(&self, from: Origin<'_>, request: &ArchivedLogsRequest) {
        let params = LogsParams {
            attempt: request.attempt.to_native(),
            cursor: request.cursor.to_native(),
            max_lines: request.max_lines.to_native(),
            wait_ms: request.wait_ms.to_native(),
        };
        self.on_job_request(from, request.job.as_str(), Then::Logs(params));
    }

    fn on_wait(
        self: &Rc<Shard>,
        from: Origin<'_>,
        names: &ArchivedVec<ArchivedString>,
        timeout: Duration,
    ) {
        if names.is_empty() || names.len() > MAX_WAIT_JOBS {
            let message = format!("wait needs between 1 and {MAX_WAIT_JOBS} jobs");
            from.refuse(ErrorCode::Rejected, &message);
            return;
        }
        let mut jobs = Vec::with_capacity(names.len());
        for text in names.iter() {
            match text.as_str().parse::<JobRef>() {
                Ok(job) => jobs.push((text.as_str().to_string(), job)),
                Err(e) => {
                    from.refuse(ErrorCode::Rejected, &e.to_string());
                    return;
                }
            }
        }
        self.gather_wait(self.reply_slot(from), jobs, timeout.min(MAX_WAIT));
    }
}

/// The message of a change refused because the shard's log cannot be written.
pub fn unavailable(degraded: &super::persist::Degraded) -> String {
    format!(
        "the master cannot write its log ({}); nothing was changed. Reads still work; retry once the disk is fixed",
        degraded.cause
    )
}
