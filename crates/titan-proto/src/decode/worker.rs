//! What a worker reports to its master ([`WorkerReport`]) and what a master tells its worker
//! ([`MasterCommand`]).

use std::time::Duration;

use titan_auth::Operation;
use titan_core::{JobId, KillReason, WorkerId};

use super::{native, unexpected};
use crate::codec::access;
use crate::decoder::Frame;
use crate::error::{ErrorCode, ProtoError};
use crate::header::OpCode;
use crate::message::worker::{
    ArchivedHeartbeat, ArchivedJobFinished, ArchivedJobStarted, ArchivedKillJob, ArchivedRegister,
    ArchivedRegistered, ArchivedRetire, ArchivedRunJob, ArchivedServiceState, ArchivedSpawnChild,
};
use crate::message::{ArchivedErrorReply, KeyBytes};

/// One report of a worker, borrowing its frame.
#[derive(Debug)]
pub enum WorkerReport<'a> {
    /// The first frame of a worker connection.
    Register(&'a ArchivedRegister),
    Heartbeat {
        running: u32,
    },
    JobStarted {
        job: JobId,
        attempt: u32,
        pid: u32,
    },
    /// An attempt ended (its outcome is copied by whoever keeps it).
    JobFinished(&'a ArchivedJobFinished),
    /// A service is running and its port (if any) accepts connections.
    ServiceReady {
        job: JobId,
        attempt: u32,
    },
}

impl<'a> WorkerReport<'a> {
    /// What the report asks of the master, as far as roles are concerned.
    pub fn operation(&self) -> Operation {
        match self {
            WorkerReport::Register(_) => Operation::Register,
            WorkerReport::Heartbeat { .. } => Operation::Heartbeat,
            WorkerReport::JobStarted { .. }
            | WorkerReport::JobFinished(_)
            | WorkerReport::ServiceReady { .. } => Operation::Report,
        }
    }

    /// The opcodes only a worker sends.
    pub const OPCODES: &'static [OpCode] = &[
        OpCode::Register,
        OpCode::Heartbeat,
        OpCode::JobStarted,
        OpCode::JobComplete,
        OpCode::ServiceState,
    ];

    pub fn decode(frame: Frame<'a>) -> Result<WorkerReport<'a>, ProtoError> {
        let (opcode, payload) = (frame.header.opcode, frame.payload);
        let report = match opcode {
            OpCode::Register => {
                WorkerReport::Register(access::<ArchivedRegister>(opcode, payload)?)
            }
            OpCode::Heartbeat => WorkerReport::Heartbeat {
                running: access::<ArchivedHeartbeat>(opcode, payload)?
                    .running
                    .to_native(),
            },
            OpCode::JobStarted => {
                let m = access::<ArchivedJobStarted>(opcode, payload)?;
                WorkerReport::JobStarted {
                    job: native(&m.job),
                    attempt: m.attempt.to_native(),
                    pid: m.pid.to_native(),
                }
            }
            OpCode::JobComplete => {
                WorkerReport::JobFinished(access::<ArchivedJobFinished>(opcode, payload)?)
            }
            OpCode::ServiceState => match access::<ArchivedServiceState>(opcode, payload)? {
                ArchivedServiceState::Ready { job, attempt } => WorkerReport::ServiceReady {
                    job: native(job),
                    attempt: attempt.to_native(),
                },
            },
            _ => return Err(unexpected(frame, "not a worker report")),
        };
        Ok(report)
    }
}

/// One command of a master to its worker, borrowing its frame.
#[derive(Debug)]
pub enum MasterCommand<'a> {
    /// The `Ack` of the worker's `Register`.
    Registered {
        worker: WorkerId,
        heartbeat: Duration,
        /// The master's UDP log port; 0 when it takes no logs.
        log_port: u16,
        /// Seals this worker's datagram headers.
        log_key: KeyBytes,
        /// Checks the tickets clients bring to the worker's port.
        ticket_key: KeyBytes,
    },
    /// Run a job attempt (`Run`), or deploy a service (`Deploy`).
    Run(&'a ArchivedRunJob),
    KillJob {
        job: JobId,
        attempt: u32,
        reason: KillReason,
    },
    /// Start an ephemeral child worker that registers with `ticket`.
    SpawnChild { ticket: u64 },
    /// Stop every job and exit. Obeyed even when the reason cannot be read: the decision is
    /// in the opcode.
    Retire { reason: Option<&'a str> },
    /// The master refused the worker (an `Error` frame); the message may be unreadable.
    Refused {
        code: Option<ErrorCode>,
        message: Option<&'a str>,
    },
}

impl<'a> MasterCommand<'a> {
    pub fn decode(frame: Frame<'a>) -> Result<MasterCommand<'a>, ProtoError> {
        let (opcode, payload) = (frame.header.opcode, frame.payload);
        let command = match opcode {
            OpCode::Ack => {
                let r = access::<ArchivedRegistered>(opcode, payload)?;
                MasterCommand::Registered {
                    worker: native(&r.worker),
                    heartbeat: Duration::from_millis(u64::from(r.heartbeat_ms.to_native())),
                    log_port: r.log_port.to_native(),
                    log_key: KeyBytes(r.log_key.0),
                    ticket_key: KeyBytes(r.ticket_key.0),
                }
            }
            OpCode::Run | OpCode::Deploy => {
                MasterCommand::Run(access::<ArchivedRunJob>(opcode, payload)?)
            }
            OpCode::KillJob => {
                let k = access::<ArchivedKillJob>(opcode, payload)?;
                MasterCommand::KillJob {
                    job: native(&k.job),
                    attempt: k.attempt.to_native(),
                    reason: native(&k.reason),
                }
            }
            OpCode::SpawnWorker => MasterCommand::SpawnChild {
                ticket: access::<ArchivedSpawnChild>(opcode, payload)?
                    .ticket
                    .to_native(),
            },
            OpCode::KillWorker => MasterCommand::Retire {
                reason: access::<ArchivedRetire>(opcode, payload)
                    .ok()
                    .map(|r| r.reason.as_str()),
            },
            OpCode::Error => {
                let reply = access::<ArchivedErrorReply>(opcode, payload).ok();
                MasterCommand::Refused {
                    code: reply.and_then(|e| ErrorCode::from_u16(e.code.to_native())),
                    message: reply.map(|e| e.message.as_str()),
                }
            }
            _ => return Err(unexpected(frame, "not something a master sends a worker")),
        };
        Ok(command)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_refused, frame, payload, GARBAGE};
    use super::*;
    use crate::message::worker::{
        AttemptRef, Heartbeat, JobFinished, JobStarted, KillJob, Register, Registered, Retire,
        RunJob, ServiceState, SpawnChild,
    };
    use crate::message::ErrorReply;
    use titan_core::model::{JobKind, JobSpec, Outcome};

    const JOB: JobId = JobId(0x0500_0003);

    #[test]
    fn each_report_decodes_to_its_variant() {
        let register = Register {
            port: 8080,
            capacity: 4,
            skills: vec!["GENERAL".into()],
            pid: 1,
            parent: Some(WorkerId(9)),
            ephemeral: false,
            spawn_ticket: None,
            running: vec![AttemptRef {
                job: JOB,
                attempt: 2,
            }],
            instance: 77,
        };
        let bytes = payload(OpCode::Register, &register);
        match WorkerReport::decode(frame(OpCode::Register, &bytes)) {
            Ok(WorkerReport::Register(r)) => {
                assert_eq!(
                    r.parent.as_ref().map(native::<WorkerId, _>),
                    Some(WorkerId(9))
                );
                assert_eq!(native::<JobId, _>(&r.running[0].job), JOB);
            }
            other => panic!("{other:?}"),
        }
        let bytes = payload(OpCode::Heartbeat, &Heartbeat { running: 3 });
        assert!(matches!(
            WorkerReport::decode(frame(OpCode::Heartbeat, &bytes)),
            Ok(WorkerReport::Heartbeat { running: 3 })
        ));
        let started = JobStarted {
            job: JOB,
            attempt: 1,
            pid: 42,
        };
        let bytes = payload(OpCode::JobStarted, &started);
        assert!(matches!(
            WorkerReport::decode(frame(OpCode::JobStarted, &bytes)),
            Ok(WorkerReport::JobStarted {
                job: JOB,
                attempt: 1,
                pid: 42
            })
        ));
        let finished = JobFinished {
            job: JOB,
            attempt: 1,
            outcome: Outcome::Exited { code: 3 },
            duration_us: 10,
            stdout_lines: 1,
            stderr_lines: 0,
        };
        let bytes = payload(OpCode::JobComplete, &finished);
        match WorkerReport::decode(frame(OpCode::JobComplete, &bytes)) {
            Ok(WorkerReport::JobFinished(m)) => {
                let outcome: Outcome =
                    super::super::owned(OpCode::JobComplete, &m.outcome).unwrap();
                assert_eq!(outcome, Outcome::Exited { code: 3 });
            }
            other => panic!("{other:?}"),
        }
        let ready = ServiceState::Ready {
            job: JOB,
            attempt: 5,
        };
        let bytes = payload(OpCode::ServiceState, &ready);
        assert!(matches!(
            WorkerReport::decode(frame(OpCode::ServiceState, &bytes)),
            Ok(WorkerReport::ServiceReady {
                job: JOB,
                attempt: 5
            })
        ));
    }

    #[test]
    fn each_command_decodes_to_its_variant() {
        let registered = Registered {
            worker: WorkerId(0x0001_0002),
            heartbeat_ms: 1000,
            log_port: 9091,
            log_key: KeyBytes([1; 32]),
            ticket_key: KeyBytes([2; 32]),
        };
        let bytes = payload(OpCode::Ack, &registered);
        assert!(matches!(
            MasterCommand::decode(frame(OpCode::Ack, &bytes)),
            Ok(MasterCommand::Registered { worker: WorkerId(0x0001_0002), heartbeat, log_port: 9091, log_key, ticket_key })
                if heartbeat == Duration::from_secs(1) && log_key.0 == [1; 32] && ticket_key.0 == [2; 32]
        ));
        let run = RunJob {
            job: JOB,
            attempt: 1,
            label: "TSK-5".into(),
            spec: JobSpec::new(JobKind::Noop),
            log_key: None,
        };
        let bytes = payload(OpCode::Run, &run);
        for opcode in [OpCode::Run, OpCode::Deploy] {
            match MasterCommand::decode(frame(opcode, &bytes)) {
                Ok(MasterCommand::Run(r)) => {
                    assert_eq!(r.label.as_str(), "TSK-5");
                    let copy: RunJob = super::super::owned(opcode, r).unwrap();
                    assert_eq!(copy, run);
                }
                other => panic!("{other:?}"),
            }
        }
        let kill = KillJob {
            job: JOB,
            attempt: 2,
            reason: KillReason::Cancelled,
        };
        let bytes = payload(OpCode::KillJob, &kill);
        assert!(matches!(
            MasterCommand::decode(frame(OpCode::KillJob, &bytes)),
            Ok(MasterCommand::KillJob {
                job: JOB,
                attempt: 2,
                reason: KillReason::Cancelled
            })
        ));
        let bytes = payload(OpCode::SpawnWorker, &SpawnChild { ticket: 12 });
        assert!(matches!(
            MasterCommand::decode(frame(OpCode::SpawnWorker, &bytes)),
            Ok(MasterCommand::SpawnChild { ticket: 12 })
        ));
        let retire = Retire {
            reason: "idle".into(),
        };
        let bytes = payload(OpCode::KillWorker, &retire);
        assert!(matches!(
            MasterCommand::decode(frame(OpCode::KillWorker, &bytes)),
            Ok(MasterCommand::Retire {
                reason: Some("idle")
            })
        ));
        let error = ErrorReply {
            code: ErrorCode::Unavailable as u16,
            message: "full".into(),
        };
        let bytes = payload(OpCode::Error, &error);
        assert!(matches!(
            MasterCommand::decode(frame(OpCode::Error, &bytes)),
            Ok(MasterCommand::Refused {
                code: Some(ErrorCode::Unavailable),
                message: Some("full")
            })
        ));
    }

    #[test]
    fn a_retire_or_refusal_is_obeyed_even_unreadable() {
        assert!(matches!(
            MasterCommand::decode(frame(OpCode::KillWorker, GARBAGE)),
            Ok(MasterCommand::Retire { reason: None })
        ));
        assert!(matches!(
            MasterCommand::decode(frame(OpCode::Error, GARBAGE)),
            Ok(MasterCommand::Refused {
                code: None,
                message: None
            })
        ));
    }

    #[test]
    fn wrong_opcodes_are_unexpected_and_bad_payloads_invalid() {
        let not_reports = [OpCode::Ping, OpCode::SubmitJob, OpCode::Run, OpCode::Ack];
        assert_refused(WorkerReport::decode, &not_reports, &[], false);
        let not_commands = [OpCode::Register, OpCode::Heartbeat, OpCode::SubmitJob];
        assert_refused(MasterCommand::decode, &not_commands, &[], false);
        assert_refused(WorkerReport::decode, WorkerReport::OPCODES, GARBAGE, true);
        let commands = [
            OpCode::Ack,
            OpCode::Run,
            OpCode::Deploy,
            OpCode::KillJob,
            OpCode::SpawnWorker,
        ];
        assert_refused(MasterCommand::decode, &commands, GARBAGE, true);
    }
}
