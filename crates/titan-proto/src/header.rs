//! The fixed 8-byte frame header and the operation codes.
//!
//! Opcodes keep the Java original's numbers for the same operations (see
//! `shared/reference/java-original.md`); operations the original did not have take numbers from
//! `0x20..0x4F`, a range it never used. The version is 5: version 1 was the original's text
//! protocol, whose payloads Titan cannot read, so a v1 peer gets a clear `WrongVersion` error;
//! version 2 was Titan's before a worker's registration carried its instance id; version 3 sent
//! STATS' persistence and scaling actions as strings rather than enums; version 4 had no
//! handshake (a connection's first frame was already a request).

use super::error::ProtoError;

/// The protocol version this build speaks.
pub const VERSION: u8 = 5;

/// Size of the header on the wire.
pub const HEADER_LEN: usize = 8;

/// The header as it travels: version, opcode, flags, spare, big-endian payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub opcode: OpCode,
    pub flags: u8,
    pub len: u32,
}

const _: () = assert!(HEADER_LEN == 1 + 1 + 1 + 1 + std::mem::size_of::<u32>());

impl Header {
    pub fn new(opcode: OpCode, len: u32) -> Header {
        Header {
            opcode,
            flags: 0,
            len,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let len = self.len.to_be_bytes();
        [
            VERSION,
            self.opcode as u8,
            self.flags,
            0,
            len[0],
            len[1],
            len[2],
            len[3],
        ]
    }

    /// Parses a header and checks everything that can be checked before the payload arrives:
    /// version, opcode, flags, spare and the length against `max_len`. Checking the length here
    /// is what keeps a peer from making us reserve memory for a frame we would refuse anyway.
    pub fn decode(bytes: &[u8; HEADER_LEN], max_len: u32) -> Result<Header, ProtoError> {
        if bytes[0] != VERSION {
            return Err(ProtoError::WrongVersion {
                got: bytes[0],
                expected: VERSION,
            });
        }
        let opcode =
            OpCode::from_u8(bytes[1]).ok_or(ProtoError::UnknownOpcode { opcode: bytes[1] })?;
        if bytes[2] != 0 || bytes[3] != 0 {
            return Err(ProtoError::ReservedBits {
                flags: bytes[2],
                spare: bytes[3],
            });
        }
        let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if len > max_len {
            return Err(ProtoError::FrameTooLarge { len, max: max_len });
        }
        Ok(Header {
            opcode,
            flags: bytes[2],
            len,
        })
    }
}

macro_rules! opcodes {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// Every operation of TITAN_PROTO. A byte not listed here is an unknown opcode.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum OpCode {
            $($(#[$doc])* $name = $value,)*
        }

        impl OpCode {
            pub const ALL: &'static [OpCode] = &[$(OpCode::$name,)*];

            pub fn from_u8(byte: u8) -> Option<OpCode> {
                match byte {
                    $($value => Some(OpCode::$name),)*
                    _ => None,
                }
            }
        }
    };
}

opcodes! {
    /// Worker → master: liveness and load.
    Heartbeat = 0x01,
    /// Worker → master: join the cluster (port, capacity, skills, running jobs).
    Register = 0x02,
    /// Client → master: one job.
    SubmitJob = 0x03,
    /// Client → master: a DAG of jobs.
    SubmitDag = 0x04,
    /// Master → worker: start a long-running service.
    Deploy = 0x05,
    /// Master → worker: run a job.
    Run = 0x06,
    /// Client → master: stop a service for good; master → worker: stop it.
    Stop = 0x07,
    /// Client → master: the STATS text.
    Stats = 0x08,
    /// Client → master: STATS as structured data.
    StatsJson = 0x09,
    /// Master → worker: kill a worker (retire an ephemeral child).
    KillWorker = 0x11,
    /// Worker → master: a job attempt ended.
    JobComplete = 0x12,
    /// Worker → master: output lines of a job (over UDP).
    LogStream = 0x15,
    /// Client → master, master → worker: the whole output of a job.
    GetLogs = 0x16,
    /// Worker → master: a batch of output lines (over UDP).
    LogBatch = 0x17,
    /// A success reply with a payload specific to the request.
    Ack = 0x50,
    /// An error reply: an [`crate::message::ErrorReply`].
    Error = 0x51,
    /// A data reply (logs, listings).
    Data = 0x52,
    /// Client → master: one job's state.
    GetJobStatus = 0x55,
    /// Client → master: cancel a job.
    CancelJob = 0x56,
    /// Liveness probe; the reply is `Pong` with the same payload.
    Ping = 0x20,
    /// Reply to `Ping`.
    Pong = 0x21,
    /// Client → master: jobs filtered by state.
    ListJobs = 0x22,
    /// Client → master: the workers.
    ListWorkers = 0x23,
    /// Client → master: reply when the jobs reach a terminal state.
    WaitJobs = 0x24,
    /// Worker → master: a job attempt started (pid).
    JobStarted = 0x25,
    /// Worker → master: a service changed state (ready, crashed, restarting, failed).
    ServiceState = 0x26,
    /// Master → worker: cancel (kill) a running attempt.
    KillJob = 0x27,
    /// Master → worker: spawn a child worker.
    SpawnWorker = 0x28,
    /// Client → server: the answer to the `Challenge`: role, nonce, proof.
    Hello = 0x29,
    /// Server → client, the first frame of every connection to a master: a fresh nonce.
    Challenge = 0x2A,
    /// Server → client: the handshake succeeded; the server's own proof.
    Welcome = 0x2B,
}

impl std::fmt::Display for OpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}(0x{:02x})", self, *self as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_every_opcode() {
        for &op in OpCode::ALL {
            let header = Header::new(op, 0x0102_0304);
            let bytes = header.encode();
            assert_eq!(&bytes[4..], &[1, 2, 3, 4], "length is big-endian");
            assert_eq!(Header::decode(&bytes, u32::MAX), Ok(header));
        }
    }

    #[test]
    fn keeps_the_java_numbers() {
        assert_eq!(OpCode::Heartbeat as u8, 0x01);
        assert_eq!(OpCode::SubmitDag as u8, 0x04);
        assert_eq!(OpCode::Stats as u8, 0x08);
        assert_eq!(OpCode::JobComplete as u8, 0x12);
        assert_eq!(OpCode::Error as u8, 0x51);
        assert_eq!(OpCode::CancelJob as u8, 0x56);
    }

    #[test]
    fn rejects_each_bad_field() {
        let good = Header::new(OpCode::Ping, 4).encode();
        let mut bad = good;
        bad[0] = 1;
        assert_eq!(
            Header::decode(&bad, 64),
            Err(ProtoError::WrongVersion {
                got: 1,
                expected: VERSION
            })
        );
        let mut bad = good;
        bad[1] = 0xEE;
        assert_eq!(
            Header::decode(&bad, 64),
            Err(ProtoError::UnknownOpcode { opcode: 0xEE })
        );
        let mut bad = good;
        bad[3] = 7;
        assert_eq!(
            Header::decode(&bad, 64),
            Err(ProtoError::ReservedBits { flags: 0, spare: 7 })
        );
        let big = Header::new(OpCode::Ping, 65).encode();
        assert_eq!(
            Header::decode(&big, 64),
            Err(ProtoError::FrameTooLarge { len: 65, max: 64 })
        );
    }
}
