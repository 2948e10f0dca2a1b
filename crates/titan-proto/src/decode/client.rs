//! What a client asks of the master.

use std::time::Duration;

use rkyv::string::ArchivedString;
use rkyv::vec::ArchivedVec;

use titan_auth::{Operation, ReadOp};
use titan_core::model::{ArchivedSubmission, JobState};

use super::{native, unexpected};
use crate::codec::access;
use crate::decoder::Frame;
use crate::error::ProtoError;
use crate::header::OpCode;
use crate::message::client::{
    ArchivedJobQuery, ArchivedListJobsRequest, ArchivedSubmitRequest, ArchivedWaitRequest,
};
use crate::message::logs::ArchivedLogsRequest;
use crate::message::ArchivedPing;

/// One client request, borrowing its frame.
#[derive(Debug)]
pub enum ClientRequest<'a> {
    /// A liveness probe; the `Pong` carries `payload` back unchanged.
    Ping {
        payload: &'a [u8],
    },
    /// A one-off job (`SubmitJob`) or a DAG (`SubmitDag`); the kind matches the opcode.
    Submit(&'a ArchivedSubmission),
    /// One job's state.
    Status {
        job: &'a str,
    },
    Cancel {
        job: &'a str,
    },
    /// Stop a service for good.
    Stop {
        job: &'a str,
    },
    /// The newest jobs, optionally in one state.
    ListJobs {
        state: Option<JobState>,
        limit: u32,
    },
    /// Reply once the jobs are terminal or `timeout` passed.
    Wait {
        jobs: &'a ArchivedVec<ArchivedString>,
        timeout: Duration,
    },
    /// A page of a job's output.
    Logs(&'a ArchivedLogsRequest),
    /// The STATS text.
    Stats,
    /// STATS as data.
    StatsJson,
    ListWorkers,
}

impl<'a> ClientRequest<'a> {
    /// What the request asks of the master, as far as roles are concerned.
    pub fn operation(&self) -> Operation {
        match self {
            ClientRequest::Ping { .. } => Operation::Ping,
            ClientRequest::Submit(_) => Operation::Submit,
            ClientRequest::Cancel { .. } => Operation::Cancel,
            ClientRequest::Stop { .. } => Operation::Stop,
            ClientRequest::Status { .. } => Operation::Read(ReadOp::Status),
            ClientRequest::ListJobs { .. } => Operation::Read(ReadOp::Jobs),
            ClientRequest::Wait { .. } => Operation::Read(ReadOp::Wait),
            ClientRequest::Logs(_) => Operation::Read(ReadOp::Logs),
            ClientRequest::Stats | ClientRequest::StatsJson => Operation::Read(ReadOp::Stats),
            ClientRequest::ListWorkers => Operation::Read(ReadOp::Workers),
        }
    }

    pub fn decode(frame: Frame<'a>) -> Result<ClientRequest<'a>, ProtoError> {
        let (opcode, payload) = (frame.header.opcode, frame.payload);
        let request = match opcode {
            OpCode::Ping => {
                access::<ArchivedPing>(opcode, payload)?;
                ClientRequest::Ping { payload }
            }
            OpCode::SubmitJob | OpCode::SubmitDag => {
                let request = access::<ArchivedSubmitRequest>(opcode, payload)?;
                let one_off = matches!(request.submission, ArchivedSubmission::OneOff(_));
                if one_off != (opcode == OpCode::SubmitJob) {
                    return Err(unexpected(
                        frame,
                        "a DAG goes with SubmitDag, one job with SubmitJob",
                    ));
                }
                ClientRequest::Submit(&request.submission)
            }
            OpCode::GetJobStatus => ClientRequest::Status {
                job: job_query(frame)?,
            },
            OpCode::CancelJob => ClientRequest::Cancel {
                job: job_query(frame)?,
            },
            OpCode::Stop => ClientRequest::Stop {
                job: job_query(frame)?,
            },
            OpCode::ListJobs => {
                let request = access::<ArchivedListJobsRequest>(opcode, payload)?;
                ClientRequest::ListJobs {
                    state: request.state.as_ref().map(native),
                    limit: request.limit.to_native(),
                }
            }
            OpCode::WaitJobs => {
                let request = access::<ArchivedWaitRequest>(opcode, payload)?;
                ClientRequest::Wait {
                    jobs: &request.jobs,
                    timeout: Duration::from_millis(request.timeout_ms.to_native()),
                }
            }
            OpCode::GetLogs => ClientRequest::Logs(access::<ArchivedLogsRequest>(opcode, payload)?),
            OpCode::Stats => ClientRequest::Stats,
            OpCode::StatsJson => ClientRequest::StatsJson,
            OpCode::ListWorkers => ClientRequest::ListWorkers,
            _ => return Err(unexpected(frame, "not a request the master serves")),
        };
        Ok(request)
    }
}

fn job_query(frame: Frame<'_>) -> Result<&str, ProtoError> {
    let query = access::<ArchivedJobQuery>(frame.header.opcode, frame.payload)?;
    Ok(query.job.as_str())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_refused, frame, payload, GARBAGE};
    use super::*;
    use crate::message::client::{JobQuery, ListJobsRequest, SubmitRequest, WaitRequest};
    use crate::message::logs::LogsRequest;
    use crate::message::Ping;
    use titan_core::model::{DagJobSpec, JobKind, JobSpec, Submission};

    fn one_off() -> SubmitRequest {
        SubmitRequest {
            submission: Submission::OneOff(JobSpec::new(JobKind::Noop)),
        }
    }

    fn dag() -> SubmitRequest {
        SubmitRequest {
            submission: Submission::Dag(vec![DagJobSpec {
                name: "A".into(),
                spec: JobSpec::new(JobKind::Noop),
                deps: vec![],
            }]),
        }
    }

    #[test]
    fn each_request_decodes_to_its_variant() {
        let ping = payload(
            OpCode::Ping,
            &Ping {
                nonce: 3,
                data: vec![1, 2],
            },
        );
        assert!(matches!(
            ClientRequest::decode(frame(OpCode::Ping, &ping)),
            Ok(ClientRequest::Ping { payload }) if payload == &ping[..]
        ));
        let submit = payload(OpCode::SubmitJob, &one_off());
        assert!(matches!(
            ClientRequest::decode(frame(OpCode::SubmitJob, &submit)),
            Ok(ClientRequest::Submit(ArchivedSubmission::OneOff(_)))
        ));
        let submit = payload(OpCode::SubmitDag, &dag());
        assert!(matches!(
            ClientRequest::decode(frame(OpCode::SubmitDag, &submit)),
            Ok(ClientRequest::Submit(ArchivedSubmission::Dag(jobs))) if jobs.len() == 1
        ));
        let query = payload(
            OpCode::CancelJob,
            &JobQuery {
                job: "TSK-4".into(),
            },
        );
        for (opcode, want) in [
            (OpCode::GetJobStatus, "status"),
            (OpCode::CancelJob, "cancel"),
            (OpCode::Stop, "stop"),
        ] {
            let got = match ClientRequest::decode(frame(opcode, &query)) {
                Ok(ClientRequest::Status { job: "TSK-4" }) => "status",
                Ok(ClientRequest::Cancel { job: "TSK-4" }) => "cancel",
                Ok(ClientRequest::Stop { job: "TSK-4" }) => "stop",
                other => panic!("{opcode}: {other:?}"),
            };
            assert_eq!(got, want);
        }
        let list = payload(
            OpCode::ListJobs,
            &ListJobsRequest {
                state: Some(JobState::Dead),
                limit: 7,
            },
        );
        assert!(matches!(
            ClientRequest::decode(frame(OpCode::ListJobs, &list)),
            Ok(ClientRequest::ListJobs {
                state: Some(JobState::Dead),
                limit: 7
            })
        ));
        let wait = payload(
            OpCode::WaitJobs,
            &WaitRequest {
                jobs: vec!["a".into(), "b".into()],
                timeout_ms: 1500,
            },
        );
        assert!(matches!(
            ClientRequest::decode(frame(OpCode::WaitJobs, &wait)),
            Ok(ClientRequest::Wait { jobs, timeout })
                if jobs.len() == 2 && timeout == Duration::from_millis(1500)
        ));
        let logs = LogsRequest {
            job: "X".into(),
            attempt: 0,
            cursor: 5,
            max_lines: 10,
            wait_ms: 0,
        };
        let logs = payload(OpCode::GetLogs, &logs);
        assert!(matches!(
            ClientRequest::decode(frame(OpCode::GetLogs, &logs)),
            Ok(ClientRequest::Logs(r)) if r.cursor.to_native() == 5
        ));
        for (opcode, name) in [
            (OpCode::Stats, "Stats"),
            (OpCode::StatsJson, "StatsJson"),
            (OpCode::ListWorkers, "ListWorkers"),
        ] {
            let got = ClientRequest::decode(frame(opcode, &[])).unwrap();
            assert_eq!(format!("{got:?}"), name);
        }
    }

    #[test]
    fn a_submission_must_match_its_opcode() {
        let submit = payload(OpCode::SubmitDag, &dag());
        assert!(matches!(
            ClientRequest::decode(frame(OpCode::SubmitJob, &submit)),
            Err(ProtoError::UnexpectedFrame {
                opcode: OpCode::SubmitJob,
                ..
            })
        ));
    }

    #[test]
    fn frames_a_client_does_not_send_are_unexpected() {
        let opcodes = [OpCode::Ack, OpCode::Run, OpCode::Pong, OpCode::Error];
        assert_refused(ClientRequest::decode, &opcodes, &[], false);
    }

    #[test]
    fn invalid_payloads_are_typed_errors() {
        let opcodes = [
            OpCode::Ping,
            OpCode::SubmitJob,
            OpCode::SubmitDag,
            OpCode::GetJobStatus,
            OpCode::CancelJob,
            OpCode::Stop,
            OpCode::ListJobs,
            OpCode::WaitJobs,
            OpCode::GetLogs,
        ];
        assert_refused(ClientRequest::decode, &opcodes, GARBAGE, true);
    }
}
