//! A blocking TITAN_PROTO client: one long-lived connection, typed requests and replies.
//!
//! Every connection to a master authenticates first with a [`Credential`] (a role and its
//! key): find one with [`auth::KeyLookup`] (`--access-file`, `TITAN_KEY`, `TITAN_ACCESS_FILE`,
//! then `titan_data/access`), the way the CLI, the load generator and the dashboard do.
//!
//! The CLI, the REPL, the load generator and the tests talk to the master through this. It is
//! deliberately plain (std sockets, one request at a time unless the caller pipelines with
//! [`Client::send`] / [`Client::recv`]): a client's cost is the round trip, not the code. Frames
//! travel through [`BlockingConn`], the blocking driver of the one framed-connection type.

mod blocking;

pub use blocking::{BlockingConn, RecvError};
/// Keys and roles: finding a key ([`auth::KeyLookup`]), the access file, the roles.
pub use titan_auth as auth;
pub use titan_auth::{Credential, Role};

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::de::Pool;
use rkyv::rancor::{self, Strategy};
use rkyv::{Archive, Deserialize};

use titan_core::model::{JobState, Submission};
use titan_proto::codec::FrameSerializer;
use titan_proto::conn::{ConnConfig, Gate};
use titan_proto::limits::HANDSHAKE_TIMEOUT;
use titan_proto::message::client::*;
use titan_proto::message::logs::{FileChunk, FileRequest, LogsReply, LogsRequest, Ticket};
use titan_proto::message::ArchivedErrorReply;
use titan_proto::{
    self as proto, ConnError, EncodeError, ErrorCode, Frame, Header, OpCode, ProtoError,
};

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the master at {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("cannot authenticate with {addr}: {source}")]
    Auth { addr: String, source: ConnError },
    #[error(transparent)]
    Key(#[from] titan_auth::AuthError),
    #[error("connection to the master failed: {0}")]
    Io(#[from] io::Error),
    #[error("the master closed the connection")]
    Closed,
    #[error("bad frame from the master: {0}")]
    Protocol(#[from] ProtoError),
    #[error("{message}")]
    Server {
        code: Option<ErrorCode>,
        message: String,
    },
    #[error("expected {expected} in reply, got {got}")]
    UnexpectedReply { expected: OpCode, got: OpCode },
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl From<RecvError> for ClientError {
    fn from(e: RecvError) -> ClientError {
        match e {
            RecvError::Closed | RecvError::ClosedMidFrame { .. } => ClientError::Closed,
            RecvError::Io(e) => ClientError::Io(e),
            RecvError::Conn(e) => e.into(),
        }
    }
}

impl From<ConnError> for ClientError {
    fn from(e: ConnError) -> ClientError {
        match e {
            ConnError::Frame(e) => ClientError::Protocol(e),
            // A client sets no stall rule; its read timeout is what ends a wait.
            other => ClientError::Io(io::Error::new(io::ErrorKind::TimedOut, other)),
        }
    }
}

impl ClientError {
    /// The server's error code, when the master answered with an `Error` frame.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => *code,
            _ => None,
        }
    }
}

/// A reply frame, owned.
#[derive(Debug)]
pub struct Reply {
    pub header: Header,
    pub payload: Vec<u8>,
}

pub struct Client {
    conn: BlockingConn<TcpStream>,
}

impl Client {
    /// Connects to the master at `addr` and proves `credential` (mutually: the master proves
    /// it holds the same key).
    pub fn connect(addr: &str, credential: &Credential) -> Result<Client, ClientError> {
        Client::connect_with_key(addr, || Ok(credential.clone()))
    }

    /// Like [`Client::connect`], asking for the key only once the master answered: a master
    /// that is down is reported as such even when no key could be found.
    pub fn connect_with_key(
        addr: &str,
        credential: impl FnOnce() -> Result<Credential, ClientError>,
    ) -> Result<Client, ClientError> {
        let stream = connect_stream(addr)?;
        let gate = Gate::client(credential()?, titan_auth::Nonce::random()?, Instant::now());
        let mut conn = BlockingConn::with_gate(stream, &ConnConfig::client(), gate);
        let auth_err = |source| ClientError::Auth {
            addr: addr.to_string(),
            source,
        };
        // A peer that is not a master would leave the handshake waiting for ever.
        conn.get_ref().set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        conn.handshake().map_err(|e| match e {
            RecvError::Conn(e) => auth_err(e),
            other => ClientError::from(other),
        })?;
        conn.get_ref().set_read_timeout(None)?;
        Ok(Client { conn })
    }

    /// A connection without a handshake, to a worker's port (whose requests carry tickets).
    pub fn connect_unauthenticated(addr: &str) -> Result<Client, ClientError> {
        let stream = connect_stream(addr)?;
        Ok(Client {
            conn: BlockingConn::new(stream, &ConnConfig::client()),
        })
    }

    /// The role this connection proved (`None` for an unauthenticated one).
    pub fn role(&self) -> Option<Role> {
        self.conn.role()
    }

    /// Bounds how long a reply may take (`None`: wait forever).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.conn.get_ref().set_read_timeout(timeout)
    }

    /// Whether the master has closed this connection, checked without blocking and without
    /// consuming bytes. A connection left idle while the master restarted is closed; one with
    /// nothing to read is open. If the socket cannot be put back into blocking mode it is reported
    /// closed, since it is no longer usable for blocking calls.
    pub fn peer_closed(&self) -> bool {
        let stream = self.conn.get_ref();
        if stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut byte = [0u8; 1];
        let closed = match stream.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
        stream.set_nonblocking(false).is_err() || closed
    }

    /// Queues a request without sending it (pipelining); `flush` sends everything queued.
    pub fn send<T>(&mut self, opcode: OpCode, msg: &T) -> Result<(), ClientError>
    where
        T: for<'a, 'b> rkyv::Serialize<FrameSerializer<'a, 'b>>,
    {
        Ok(self.conn.send(opcode, msg)?)
    }

    /// Queues a request whose payload is empty.
    pub fn send_empty(&mut self, opcode: OpCode) -> Result<(), ClientError> {
        Ok(self.conn.send_raw(opcode, &[])?)
    }

    pub fn flush(&mut self) -> Result<(), ClientError> {
        Ok(self.conn.flush()?)
    }

    /// The next reply frame, copied out; an `Error` frame becomes `ClientError::Server`.
    pub fn recv(&mut self) -> Result<Reply, ClientError> {
        owned_reply(self.conn.recv()?)
    }

    /// The next reply if it has already been read from the socket whole, without blocking or a
    /// system call: a pipelining caller drains these before it writes again, so one write carries
    /// the requests that replace a whole batch of replies.
    pub fn recv_buffered(&mut self) -> Result<Option<Reply>, ClientError> {
        self.conn.recv_buffered()?.map(owned_reply).transpose()
    }

    /// Sends one request and decodes its reply as `T`.
    pub fn call<Req, T>(
        &mut self,
        opcode: OpCode,
        msg: &Req,
        expect: OpCode,
    ) -> Result<T, ClientError>
    where
        Req: for<'a, 'b> rkyv::Serialize<FrameSerializer<'a, 'b>>,
        T: Archive,
        T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::BoxedError>>
            + Deserialize<T, Strategy<Pool, rancor::BoxedError>>,
    {
        self.send(opcode, msg)?;
        self.flush()?;
        decode_frame(self.conn.recv()?, expect)
    }

    fn call_empty<T>(&mut self, opcode: OpCode, expect: OpCode) -> Result<T, ClientError>
    where
        T: Archive,
        T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::BoxedError>>
            + Deserialize<T, Strategy<Pool, rancor::BoxedError>>,
    {
        self.send_empty(opcode)?;
        self.flush()?;
        decode_frame(self.conn.recv()?, expect)
    }

    pub fn submit(&mut self, submission: Submission) -> Result<Submitted, ClientError> {
        let opcode = match submission {
            Submission::OneOff(_) => OpCode::SubmitJob,
            Submission::Dag(_) => OpCode::SubmitDag,
        };
        self.call(opcode, &SubmitRequest { submission }, OpCode::Ack)
    }

    pub fn status(&mut self, job: &str) -> Result<JobStatus, ClientError> {
        self.call(
            OpCode::GetJobStatus,
            &JobQuery {
                job: job.to_string(),
            },
            OpCode::Data,
        )
    }

    pub fn jobs(&mut self, state: Option<JobState>, limit: u32) -> Result<JobList, ClientError> {
        self.call(
            OpCode::ListJobs,
            &ListJobsRequest { state, limit },
            OpCode::Data,
        )
    }

    pub fn cancel(&mut self, job: &str) -> Result<Cancelled, ClientError> {
        self.call(
            OpCode::CancelJob,
            &JobQuery {
                job: job.to_string(),
            },
            OpCode::Ack,
        )
    }

    pub fn stop(&mut self, job: &str) -> Result<Stopped, ClientError> {
        self.call(
            OpCode::Stop,
            &JobQuery {
                job: job.to_string(),
            },
            OpCode::Ack,
        )
    }

    /// Waits (on the master) until every job is terminal or `timeout` passes.
    pub fn wait(&mut self, jobs: &[String], timeout: Duration) -> Result<WaitReply, ClientError> {
        let request = WaitRequest {
            jobs: jobs.to_vec(),
            timeout_ms: timeout.as_millis() as u64,
        };
        self.call(OpCode::WaitJobs, &request, OpCode::Data)
    }

    pub fn stats_text(&mut self) -> Result<String, ClientError> {
        self.call_empty::<StatsText>(OpCode::Stats, OpCode::Data)
            .map(|s| s.text)
    }

    pub fn stats(&mut self) -> Result<ClusterStats, ClientError> {
        self.call_empty(OpCode::StatsJson, OpCode::Data)
    }

    pub fn workers(&mut self) -> Result<WorkerList, ClientError> {
        self.call_empty(OpCode::ListWorkers, OpCode::Data)
    }
}

/// A TCP connection to `addr` (the first of its addresses that accepts), without delay.
fn connect_stream(addr: &str) -> Result<TcpStream, ClientError> {
    let connect_err = |source| ClientError::Connect {
        addr: addr.to_string(),
        source,
    };
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing");
    for sock in addr.to_socket_addrs().map_err(connect_err)? {
        match TcpStream::connect_timeout(&sock, CONNECT_TIMEOUT) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(connect_err(last))
}

/// Validates a reply frame and deserializes it into an owned `T`.
pub fn decode_reply<T>(reply: &Reply, expect: OpCode) -> Result<T, ClientError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::BoxedError>>
        + Deserialize<T, Strategy<Pool, rancor::BoxedError>>,
{
    let frame = Frame {
        header: reply.header,
        payload: &reply.payload,
    };
    decode_frame(frame, expect)
}

/// Validates a reply frame where it lies in the receive buffer and deserializes it into an
/// owned `T` (the one copy); an `Error` frame becomes `ClientError::Server`.
fn decode_frame<T>(frame: Frame<'_>, expect: OpCode) -> Result<T, ClientError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::BoxedError>>
        + Deserialize<T, Strategy<Pool, rancor::BoxedError>>,
{
    if frame.header.opcode == OpCode::Error {
        return Err(server_error(frame.payload));
    }
    if frame.header.opcode != expect {
        return Err(ClientError::UnexpectedReply {
            expected: expect,
            got: frame.header.opcode,
        });
    }
    let archived = proto::access::<T::Archived>(expect, frame.payload)?;
    rkyv::deserialize::<T, rancor::BoxedError>(archived).map_err(|e| {
        ClientError::Protocol(ProtoError::InvalidPayload {
            opcode: expect,
            reason: e.to_string(),
        })
    })
}

/// A reply copied out of the receive buffer, or the server's error.
fn owned_reply(frame: Frame<'_>) -> Result<Reply, ClientError> {
    match frame.header.opcode {
        OpCode::Error => Err(server_error(frame.payload)),
        _ => Ok(Reply {
            header: frame.header,
            payload: frame.payload.to_vec(),
        }),
    }
}

fn server_error(payload: &[u8]) -> ClientError {
    match proto::access::<ArchivedErrorReply>(OpCode::Error, payload) {
        Ok(e) => ClientError::Server {
            code: ErrorCode::from_u16(e.code.to_native()),
            message: e.message.as_str().to_string(),
        },
        Err(e) => ClientError::Protocol(e),
    }
}

impl Client {
    /// A page of a job's output from the master (see [`LogsRequest`]).
    pub fn logs(&mut self, request: &LogsRequest) -> Result<LogsReply, ClientError> {
        self.call(OpCode::GetLogs, request, OpCode::Data)
    }
}

/// Largest piece of a file asked for at once.
pub const FILE_CHUNK: u32 = 1024 * 1024;

/// Reads one of a job's output files (`stream` 1 = stdout, 2 = stderr) from the worker that
/// ran it, whole, in pieces, with the `ticket` the master issued for it.
pub fn fetch_output_file(
    worker: &str,
    ticket: &Ticket,
    stream: u8,
) -> Result<Vec<u8>, ClientError> {
    let mut client = Client::connect_unauthenticated(worker)?;
    let mut bytes = Vec::new();
    loop {
        let request = FileRequest {
            job_dir: ticket.job_dir.clone(),
            stream,
            offset: bytes.len() as u64,
            max_bytes: FILE_CHUNK,
            ticket: ticket.clone(),
        };
        let chunk: FileChunk = client.call(OpCode::GetLogs, &request, OpCode::Data)?;
        let done =
            chunk.bytes.is_empty() || bytes.len() as u64 + chunk.bytes.len() as u64 >= chunk.size;
        bytes.extend_from_slice(&chunk.bytes);
        if done {
            return Ok(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use titan_proto::message::ErrorReply;

    /// A master stand-in that writes `frames` in one write once the client is connected, then
    /// holds the connection open until the test ends.
    fn serve_once(frames: Vec<u8>) -> (String, std::sync::mpsc::Receiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (written, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(&frames).unwrap();
            written.send(()).unwrap();
            // Keep the connection open until the client is done with it.
            let _ = stream.read(&mut [0u8; 1]);
        });
        (addr, wait)
    }

    #[test]
    fn recv_buffered_hands_out_what_one_read_brought_and_never_blocks() {
        let mut frames = Vec::new();
        for _ in 0..3 {
            proto::encode_raw_frame(&mut frames, OpCode::Ack, &[]).unwrap();
        }
        let error = ErrorReply {
            code: ErrorCode::NotFound as u16,
            message: "no such job".into(),
        };
        proto::encode_frame(&mut frames, OpCode::Error, &error).unwrap();
        let total = frames.len();
        let (addr, written) = serve_once(frames);
        let mut client = Client::connect_unauthenticated(&addr).unwrap();
        // Nothing read yet: no reply, and no wait for one (a blocking read would time out).
        client.set_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(client.recv_buffered().unwrap().is_none());
        written.recv().unwrap();
        // Once all four frames sit in the socket buffer, one read takes them all.
        let mut peeked = vec![0u8; total + 1];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while client.conn.get_ref().peek(&mut peeked).unwrap() < total {
            assert!(
                std::time::Instant::now() < deadline,
                "the frames never arrived"
            );
            std::thread::yield_now();
        }
        assert_eq!(client.recv().unwrap().header.opcode, OpCode::Ack);
        for _ in 0..2 {
            let reply = client.recv_buffered().unwrap().expect("buffered");
            assert_eq!(reply.header.opcode, OpCode::Ack);
        }
        match client.recv_buffered() {
            Err(ClientError::Server { code, message }) => {
                assert_eq!(
                    (code, message.as_str()),
                    (Some(ErrorCode::NotFound), "no such job")
                );
            }
            other => panic!("expected the server's error, got {other:?}"),
        }
        assert!(client.recv_buffered().unwrap().is_none());
    }
}
