//! Blocking frame IO over a `std::net::TcpStream`, shared by every mode. Frames are read through
//! the client library's [`BlockingConn`], the blocking driver of the one framed-connection type;
//! the modes only encode what they send (`frag` writes deliberately broken bytes of its own).
//!
//! Every connection proves the key [`use_credential`] set (once, at start) before the mode
//! sends its first frame; the `echo` baseline takes no key (`ping --no-auth`).

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Instant;

use titan_client::auth::{Credential, Nonce};
use titan_client::{BlockingConn, RecvError};
use titan_proto::conn::{ConnConfig, Gate};
use titan_proto::limits::HANDSHAKE_TIMEOUT;
use titan_proto::message::{ArchivedErrorReply, ArchivedPing, Ping};
use titan_proto::{access, encode_frame, ConnError, Header, OpCode, ProtoError};

/// A frame copied out of the receive buffer: the load generator checks replies after reading
/// them, so it owns them (the server is what must be zero-copy, not the tool measuring it).
#[derive(Debug)]
pub struct OwnedFrame {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// Reads frames from a blocking stream.
pub struct FrameReader {
    conn: BlockingConn<TcpStream>,
}

impl FrameReader {
    pub fn new(stream: TcpStream) -> FrameReader {
        FrameReader {
            conn: BlockingConn::new(stream, &ConnConfig::client()),
        }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.conn.get_mut()
    }

    /// The next frame, or `None` at a clean end of stream.
    pub fn next(&mut self) -> io::Result<Option<OwnedFrame>> {
        match self.conn.recv() {
            Ok(frame) => Ok(Some(OwnedFrame {
                header: frame.header,
                payload: frame.payload.to_vec(),
            })),
            Err(RecvError::Closed) => Ok(None),
            Err(RecvError::ClosedMidFrame { .. }) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream ended inside a frame",
            )),
            Err(RecvError::Io(e)) => Err(e),
            Err(RecvError::Conn(e)) => Err(invalid(e)),
        }
    }

    /// Calls `f` for every whole frame available after at most one read; returns how many.
    pub fn drain_with(&mut self, mut f: impl FnMut(Header, &[u8])) -> io::Result<usize> {
        match self.conn.fill() {
            Ok(()) => {}
            Err(RecvError::Closed | RecvError::ClosedMidFrame { .. }) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ))
            }
            Err(RecvError::Io(e)) => return Err(e),
            Err(RecvError::Conn(e)) => return Err(invalid(e)),
        }
        let mut count = 0;
        while let Some(frame) = self.conn.recv_buffered().map_err(invalid)? {
            f(frame.header, frame.payload);
            count += 1;
        }
        Ok(count)
    }
}

fn invalid(e: ConnError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The key every connection proves (`None`: no handshake, for the `echo` baseline).
static CREDENTIAL: OnceLock<Option<Credential>> = OnceLock::new();

/// Sets the key of every connection this process opens; called once, before any.
pub fn use_credential(credential: Option<Credential>) {
    let _ = CREDENTIAL.set(credential);
}

/// The key connections prove, if any.
pub fn credential() -> Option<&'static Credential> {
    CREDENTIAL.get().and_then(Option::as_ref)
}

/// A connection to `addr`, its handshake done (with the key set by [`use_credential`]), ready
/// for raw frames.
pub fn connect(addr: &str) -> io::Result<TcpStream> {
    let stream = connect_raw(addr)?;
    if let Some(credential) = credential() {
        handshake(&stream, credential)?;
    }
    Ok(stream)
}

/// A connection without a handshake (to see what the server does with one that skips it).
pub fn connect_raw(addr: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Answers the server's challenge on `stream` and checks its proof. The server sends nothing
/// after its `Welcome` until asked, so nothing is read past the handshake.
fn handshake(stream: &TcpStream, credential: &Credential) -> io::Result<()> {
    let nonce = Nonce::random().map_err(io::Error::other)?;
    let gate = Gate::client(credential.clone(), nonce, Instant::now());
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut conn = BlockingConn::with_gate(stream, &ConnConfig::client(), gate);
    conn.handshake().map_err(|e| match e {
        RecvError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::PermissionDenied, other),
    })?;
    stream.set_read_timeout(None)
}

pub fn push_ping(out: &mut Vec<u8>, nonce: u64, data: &[u8]) {
    let ping = Ping {
        nonce,
        data: data.to_vec(),
    };
    encode_frame(out, OpCode::Ping, &ping).expect("load generator pings are small");
}

/// Checks that a frame is the `Pong` answering `nonce` with `data`; says what differs if not.
pub fn check_pong(header: Header, payload: &[u8], nonce: u64, data: &[u8]) -> Result<(), String> {
    if header.opcode != OpCode::Pong {
        return Err(format!(
            "expected Pong for nonce {nonce}, got {} ({})",
            header.opcode,
            describe(header, payload)
        ));
    }
    let ping: &ArchivedPing =
        access(OpCode::Pong, payload).map_err(|e: ProtoError| e.to_string())?;
    if ping.nonce.to_native() != nonce {
        return Err(format!(
            "Pong out of order: nonce {} where {nonce} was due",
            ping.nonce.to_native()
        ));
    }
    if ping.data.as_slice() != data {
        return Err(format!("Pong for nonce {nonce} carries different bytes"));
    }
    Ok(())
}

/// A short description of a frame, for error messages.
pub fn describe(header: Header, payload: &[u8]) -> String {
    if header.opcode == OpCode::Error {
        if let Ok(e) = access::<ArchivedErrorReply>(OpCode::Error, payload) {
            return format!("Error code {}: {}", e.code.to_native(), e.message);
        }
    }
    format!("{} frame of {} bytes", header.opcode, payload.len())
}

/// Error code of an `Error` frame, if it is one.
pub fn error_code(frame: &OwnedFrame) -> Option<u16> {
    if frame.header.opcode != OpCode::Error {
        return None;
    }
    access::<ArchivedErrorReply>(OpCode::Error, &frame.payload)
        .ok()
        .map(|e| e.code.to_native())
}

pub fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes)
}
