//! TITAN_PROTO: the wire format and nothing else.
//!
//! A frame is an 8-byte [`Header`] (`Version | OpCode | Flags | Spare | Length`, the length a
//! big-endian `u32`) followed by `Length` bytes of payload, an rkyv archive of one of the
//! [`message`] types. This module owns the header, the incremental decoder over a receive buffer
//! ([`RecvBuf`]), the encoder ([`encode_frame`]), the message types, the named [`limits`] and the
//! typed [`ProtoError`]s, the framed connection without IO ([`conn`]) and the decoding of each
//! side's frames into typed commands ([`decode`]). It does no IO: the master, the worker, the
//! CLI and the load generator drive it from their own sockets.
//!
//! Alignment: the rkyv format is pinned to `little_endian`, `unaligned` and `pointer_width_32`
//! in Cargo.toml. With `unaligned` every archived type has alignment 1, so a payload can be
//! validated and read in place wherever it sits in the receive buffer; no per-frame copy is ever
//! needed to satisfy alignment (see docs/ARCHITECTURE.md, "Alignment").

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
