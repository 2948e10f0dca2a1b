//! The byte seam of a connection: the [`Transport`] between the socket and the frames. It has
//! one variant today (plaintext); TLS arrives as a second (see the module doc of [`super`]),
//! and every driver gets it without a change of its own. The other seam, the handshake
//! [`Gate`](super::Gate) between the frames and the application, is in `gate.rs`.

use super::ConnError;
use crate::decoder::RecvBuf;

/// How bytes on the socket relate to the frame bytes.
#[derive(Debug)]
pub enum Transport {
    /// The socket carries the frames as they are.
    Plaintext,
}

impl Transport {
    /// Where the receive side stages what the socket delivers.
    pub(super) fn staging(&self) -> Staging {
        match self {
            Transport::Plaintext => Staging::Direct,
        }
    }

    /// `n` bytes were read into the room `staging` gave out: turn them into frame bytes in
    /// `plain`. A plaintext transport read them straight into `plain` already.
    pub(super) fn on_received(
        &mut self,
        staging: &mut Staging,
        n: usize,
        plain: &mut RecvBuf,
    ) -> Result<(), ConnError> {
        match (self, staging) {
            (Transport::Plaintext, Staging::Direct) => {
                plain.commit(n);
                Ok(())
            }
        }
    }

    /// Moves the frame bytes in `ready` into `wire` as the socket must carry them. `wire` is
    /// empty; a plaintext transport swaps the buffers, so nothing is copied.
    pub(super) fn seal(&mut self, ready: &mut Vec<u8>, wire: &mut Vec<u8>) {
        debug_assert!(wire.is_empty(), "the writer hands back an empty buffer");
        match self {
            Transport::Plaintext => std::mem::swap(ready, wire),
        }
    }
}

/// The receive side's room for socket bytes. Plaintext is read straight into the receive buffer;
/// a TLS transport stages ciphertext in a buffer of its own here.
#[derive(Debug)]
pub(super) enum Staging {
    Direct,
}

impl Staging {
    pub(super) fn room<'a>(&'a mut self, plain: &'a mut RecvBuf) -> &'a mut [u8] {
        match self {
            Staging::Direct => plain.spare_mut(),
        }
    }
}
