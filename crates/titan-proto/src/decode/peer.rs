//! What a client asks of a worker's own port.

use super::unexpected;
use crate::codec::access;
use crate::decoder::Frame;
use crate::error::ProtoError;
use crate::header::OpCode;
use crate::message::logs::ArchivedFileRequest;
use crate::message::ArchivedPing;

/// One request to a worker's port, borrowing its frame.
#[derive(Debug)]
pub enum PeerRequest<'a> {
    /// A liveness probe; the `Pong` carries `payload` back unchanged.
    Ping { payload: &'a [u8] },
    /// A piece of a job's output file (`GetLogs`).
    ReadFile(&'a ArchivedFileRequest),
}

impl<'a> PeerRequest<'a> {
    pub fn decode(frame: Frame<'a>) -> Result<PeerRequest<'a>, ProtoError> {
        let (opcode, payload) = (frame.header.opcode, frame.payload);
        match opcode {
            OpCode::Ping => {
                access::<ArchivedPing>(opcode, payload)?;
                Ok(PeerRequest::Ping { payload })
            }
            OpCode::GetLogs => Ok(PeerRequest::ReadFile(access::<ArchivedFileRequest>(
                opcode, payload,
            )?)),
            _ => Err(unexpected(
                frame,
                "a worker's port only answers Ping and reads output files",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_refused, frame, payload, GARBAGE};
    use super::*;
    use crate::message::logs::FileRequest;
    use crate::message::Ping;

    #[test]
    fn pings_and_file_reads_decode_and_nothing_else() {
        let ping = payload(
            OpCode::Ping,
            &Ping {
                nonce: 1,
                data: vec![],
            },
        );
        assert!(matches!(
            PeerRequest::decode(frame(OpCode::Ping, &ping)),
            Ok(PeerRequest::Ping { payload }) if payload == &ping[..]
        ));
        let request = FileRequest {
            job_dir: "TSK-1".into(),
            stream: 1,
            offset: 0,
            max_bytes: 10,
            ticket: crate::message::logs::Ticket {
                worker: titan_core::WorkerId(1),
                job_dir: "TSK-1".into(),
                expires_unix_ms: 0,
                tag: crate::message::KeyBytes([0; 32]),
            },
        };
        let bytes = payload(OpCode::GetLogs, &request);
        assert!(matches!(
            PeerRequest::decode(frame(OpCode::GetLogs, &bytes)),
            Ok(PeerRequest::ReadFile(r)) if r.job_dir.as_str() == "TSK-1"
        ));
        let others = [OpCode::SubmitJob, OpCode::Stats, OpCode::Run];
        assert_refused(PeerRequest::decode, &others, &[], false);
        let requests = [OpCode::Ping, OpCode::GetLogs];
        assert_refused(PeerRequest::decode, &requests, GARBAGE, true);
    }
}
