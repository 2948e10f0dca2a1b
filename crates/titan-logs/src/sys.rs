//! Socket buffer sizes, which neither `std` nor glommio set: the only `unsafe` of log streaming.

use nix::libc;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Which kernel buffer of a socket.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Buffer {
    Send,
    Receive,
}

impl Buffer {
    fn option(self) -> libc::c_int {
        match self {
            Buffer::Send => libc::SO_SNDBUF,
            Buffer::Receive => libc::SO_RCVBUF,
        }
    }
}

/// Asks for a socket buffer of `bytes` (Linux caps it at `net.core.[rw]mem_max` and doubles it);
/// returns the size the kernel reports afterwards.
pub(crate) fn set_buffer(socket: BorrowedFd<'_>, which: Buffer, bytes: usize) -> io::Result<usize> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the descriptor is borrowed, hence open; the option value is a live c_int whose
    // size is passed along.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            which.option(),
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    buffer(socket, which)
}

/// The socket buffer size the kernel reports.
pub(crate) fn buffer(socket: BorrowedFd<'_>, which: Buffer) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: as above; `value` and `len` are live and `len` holds the size of `value`.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            which.option(),
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(value).unwrap_or(0))
}
