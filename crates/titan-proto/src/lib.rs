//! TITAN_PROTO, the wire format and nothing else: the 8-byte [`Header`] (`Version | OpCode |
//! Flags | Spare | Length`), the incremental decoder ([`RecvBuf`]), the rkyv [`message`] types,
//! the framed connection without IO ([`conn`]), the decoding of each side's frames into typed
//! commands ([`decode`]), named [`limits`] and typed [`ProtoError`]s. The rkyv format is pinned to
//! `unaligned` (Cargo.toml), so a payload is validated and read in place at any offset of a
//! receive buffer (docs/decisions/002).

pub mod codec;
pub mod conn;
pub mod decode;
mod decoder;
mod error;
mod header;
pub mod limits;
pub mod message;

pub use codec::{access, encode_error, encode_frame, encode_raw_frame, EncodeError};
pub use conn::{Conn, ConnConfig, ConnError};
pub use decoder::{Frame, RecvBuf};
pub use error::{ErrorCode, ProtoError};
pub use header::{Header, OpCode, HEADER_LEN, VERSION};
pub use limits::Limits;
