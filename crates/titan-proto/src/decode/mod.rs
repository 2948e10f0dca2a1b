//! Frames into typed commands: each side of the protocol turns a frame into one enum here, in
//! one place, and applies it in small functions of its own.
//!
//! | receiver | enum | frames |
//! |---|---|---|
//! | master | [`ToMaster`]: [`ClientRequest`] or [`WorkerReport`] | everything a client or a worker sends |
//! | worker session | [`MasterCommand`] | what a master sends its worker |
//! | worker port | [`PeerRequest`] | `Ping` and file reads |
//!
//! Decoding validates the payload (bytecheck) and nothing more: variants borrow the archived
//! message where it lies in the receive buffer, and convert only fixed-size values (ids,
//! numbers, field-less enums) to their native types. Whatever must outlive the frame is copied
//! once by the code that keeps it (a submission into the core, a job spec into the worker's
//! table), with [`owned`]. A frame that is not for this receiver, or whose payload does not
//! validate, is a typed [`ProtoError`], never a panic.

mod client;
mod peer;
mod worker;

pub use client::ClientRequest;
pub use peer::PeerRequest;
pub use worker::{MasterCommand, WorkerReport};

use rkyv::api::high::HighDeserializer;
use rkyv::rancor::{self, Infallible};
use rkyv::Deserialize;

use super::decoder::Frame;
use super::error::ProtoError;
use super::header::OpCode;

/// A frame for the master: a client's request or a worker's report (both arrive on the same
/// port; a connection becomes a worker's with its `Register`).
#[derive(Debug)]
pub enum ToMaster<'a> {
    Client(ClientRequest<'a>),
    Worker(WorkerReport<'a>),
}

impl<'a> ToMaster<'a> {
    pub fn decode(frame: Frame<'a>) -> Result<ToMaster<'a>, ProtoError> {
        if WorkerReport::OPCODES.contains(&frame.header.opcode) {
            WorkerReport::decode(frame).map(ToMaster::Worker)
        } else {
            ClientRequest::decode(frame).map(ToMaster::Client)
        }
    }
}

/// An archived value whose conversion cannot fail (numbers, ids, field-less enums) as its
/// native type.
pub fn native<T, A>(archived: &A) -> T
where
    A: Deserialize<T, HighDeserializer<Infallible>>,
{
    match rkyv::deserialize::<T, Infallible>(archived) {
        Ok(value) => value,
        Err(never) => match never {},
    }
}

/// An owned copy of an archived value, for what must outlive its frame. It can fail only on a
/// layout no validated frame has; that is reported as the frame's `InvalidPayload`.
pub fn owned<T, A>(opcode: OpCode, archived: &A) -> Result<T, ProtoError>
where
    A: Deserialize<T, HighDeserializer<rancor::BoxedError>>,
{
    rkyv::deserialize::<T, rancor::BoxedError>(archived).map_err(|e| ProtoError::InvalidPayload {
        opcode,
        reason: e.to_string(),
    })
}

/// The error for a frame this receiver does not take.
fn unexpected(frame: Frame<'_>, reason: &'static str) -> ProtoError {
    ProtoError::UnexpectedFrame {
        opcode: frame.header.opcode,
        reason,
    }
}

/// Test helpers shared by the decode tests: a frame over an encoded payload.
#[cfg(test)]
mod testing {
    use crate::codec::{encode_frame, FrameSerializer};
    use crate::decoder::Frame;
    use crate::header::{Header, OpCode, HEADER_LEN};

    /// The payload of `msg` encoded as `opcode`.
    pub fn payload<T>(opcode: OpCode, msg: &T) -> Vec<u8>
    where
        T: for<'a, 'b> rkyv::Serialize<FrameSerializer<'a, 'b>>,
    {
        let mut out = Vec::new();
        encode_frame(&mut out, opcode, msg).unwrap();
        out.split_off(HEADER_LEN)
    }

    pub fn frame(opcode: OpCode, payload: &[u8]) -> Frame<'_> {
        Frame {
            header: Header::new(opcode, payload.len() as u32),
            payload,
        }
    }

    /// Bytes that are no valid archive of any message with a string or vector in it.
    pub const GARBAGE: &[u8] = &[0xff; 3];

    /// Asserts that `decode` refuses a frame of each opcode over `payload`: as a payload that
    /// does not validate (`invalid`), or as a frame this receiver does not take.
    pub fn assert_refused<'a, T: std::fmt::Debug>(
        decode: impl Fn(Frame<'a>) -> Result<T, crate::ProtoError>,
        opcodes: &[OpCode],
        payload: &'a [u8],
        invalid: bool,
    ) {
        use crate::ProtoError::{InvalidPayload, UnexpectedFrame};
        for &opcode in opcodes {
            let refused = match decode(frame(opcode, payload)) {
                Err(InvalidPayload { opcode: o, .. }) => invalid && o == opcode,
                Err(UnexpectedFrame { opcode: o, .. }) => !invalid && o == opcode,
                _ => false,
            };
            assert!(refused, "{opcode} (invalid: {invalid})");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{frame, payload};
    use super::*;
    use crate::message::client::JobQuery;
    use crate::message::worker::Heartbeat;

    #[test]
    fn the_master_tells_reports_from_requests_by_opcode() {
        let beat = payload(OpCode::Heartbeat, &Heartbeat { running: 1 });
        assert!(matches!(
            ToMaster::decode(frame(OpCode::Heartbeat, &beat)),
            Ok(ToMaster::Worker(WorkerReport::Heartbeat { running: 1 }))
        ));
        let query = payload(OpCode::GetJobStatus, &JobQuery { job: "A".into() });
        assert!(matches!(
            ToMaster::decode(frame(OpCode::GetJobStatus, &query)),
            Ok(ToMaster::Client(ClientRequest::Status { job: "A" }))
        ));
        assert!(matches!(
            ToMaster::decode(frame(OpCode::Run, &[])),
            Err(ProtoError::UnexpectedFrame {
                opcode: OpCode::Run,
                ..
            })
        ));
    }
}
