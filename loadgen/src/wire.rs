//! Blocking frame IO over a `std::net::TcpStream`, shared by every mode.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use titan::proto::message::{ArchivedErrorReply, ArchivedPing, Ping};
use titan::proto::{access, encode_frame, Header, Limits, OpCode, ProtoError, RecvBuf};

/// A frame copied out of the receive buffer: the load generator checks replies after reading
/// them, so it owns them (the server is what must be zero-copy, not the tool measuring it).
#[derive(Debug)]
pub struct OwnedFrame {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// Reads frames from a blocking stream.
pub struct FrameReader {
    pub stream: TcpStream,
    buf: RecvBuf,
}

impl FrameReader {
    pub fn new(stream: TcpStream) -> FrameReader {
        FrameReader {
            stream,
            buf: RecvBuf::new(Limits::default()),
        }
    }

    /// The next frame, or `None` at a clean end of stream.
    pub fn next(&mut self) -> io::Result<Option<OwnedFrame>> {
        loop {
            match self.buf.next_frame() {
                Ok(Some(f)) => {
                    return Ok(Some(OwnedFrame {
                        header: f.header,
                        payload: f.payload.to_vec(),
                    }))
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            let n = self.stream.read(self.buf.spare_mut())?;
            if n == 0 {
                return if self.buf.buffered() == 0 {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "stream ended inside a frame",
                    ))
                };
            }
            self.buf.commit(n);
        }
    }

    /// Calls `f` for every whole frame available after at most one read; returns how many.
    pub fn drain_with(&mut self, mut f: impl FnMut(Header, &[u8])) -> io::Result<usize> {
        let n = self.stream.read(self.buf.spare_mut())?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        self.buf.commit(n);
        let mut count = 0;
        loop {
            match self.buf.next_frame() {
                Ok(Some(frame)) => {
                    f(frame.header, frame.payload);
                    count += 1;
                }
                Ok(None) => return Ok(count),
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }
}

pub fn connect(addr: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    Ok(stream)
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
