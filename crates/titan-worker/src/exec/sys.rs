//! The few Linux system calls the engine needs that `std` and `nix` do not wrap: `pidfd_open`,
//! epoll, eventfd and `sched_setaffinity`. Every `unsafe` block of the engine lives here, behind
//! safe functions that return owned file descriptors and `io::Result`.

use nix::libc;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Returns `Ok(value)` for a non-negative syscall result, the `errno` error otherwise.
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens a pidfd for `pid` (close-on-exec). It becomes readable when the process exits.
///
/// The caller must be the parent of `pid` and must not have reaped it yet: only then is the pid
/// guaranteed to still name the same process.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new descriptor or -1.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) })?;
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Creates a close-on-exec epoll instance.
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with a flag argument.
    let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }.into())?;
    // SAFETY: a fresh descriptor from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Registers (or, with `rearm`, re-enables) `fd` in `epoll` for one readable event carrying `token`.
pub(crate) fn epoll_watch_once(
    epoll: BorrowedFd<'_>,
    fd: BorrowedFd<'_>,
    token: u64,
    rearm: bool,
) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLONESHOT) as u32,
        u64: token,
    };
    let op = if rearm {
        libc::EPOLL_CTL_MOD
    } else {
        libc::EPOLL_CTL_ADD
    };
    // SAFETY: both descriptors are borrowed, hence open; `event` outlives the call.
    check(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd.as_raw_fd(), &mut event) }.into())?;
    Ok(())
}

/// Registers `fd` level-triggered (the process pool's work eventfd).
pub(crate) fn epoll_watch(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: as above.
    check(
        unsafe {
            libc::epoll_ctl(
                epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut event,
            )
        }
        .into(),
    )?;
    Ok(())
}

/// The most events one `epoll_wait` returns. Small on purpose: the process threads share one
/// epoll, and a thread that takes few events leaves the rest to its idle siblings.
const EPOLL_BATCH: usize = 8;

/// Waits (blocking; for at most `timeout`, rounded up to whole milliseconds, when given) for
/// events and stores the tokens of those that fired (none after a timeout). `EINTR` is retried.
pub(crate) fn epoll_wait(
    epoll: BorrowedFd<'_>,
    tokens: &mut Vec<u64>,
    timeout: Option<std::time::Duration>,
) -> io::Result<()> {
    let timeout_ms = match timeout {
        None => -1,
        Some(t) => {
            libc::c_int::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(libc::c_int::MAX)
        }
    };
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; EPOLL_BATCH];
    loop {
        // SAFETY: `events` is a valid writable array of EPOLL_BATCH entries.
        let ret = unsafe {
            libc::epoll_wait(
                epoll.as_raw_fd(),
                events.as_mut_ptr(),
                EPOLL_BATCH as libc::c_int,
                timeout_ms,
            )
        };
        match check(ret.into()) {
            Ok(n) => {
                tokens.clear();
                // `epoll_event` is packed: read the field by value, never by reference.
                tokens.extend(events[..n as usize].iter().map(|e| e.u64));
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Creates a close-on-exec, non-blocking eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) }.into())?;
    // SAFETY: a fresh descriptor from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Resets an eventfd's counter (non-blocking; an already-zero counter is fine).
pub(crate) fn eventfd_drain(fd: BorrowedFd<'_>) {
    let mut value: u64 = 0;
    // SAFETY: reads 8 bytes into a live u64 from an open descriptor. EAGAIN (counter already
    // zero, another thread drained it) is the only expected error and needs no handling.
    let _ = unsafe { libc::read(fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
}

/// Adds one to an eventfd's counter, making it readable.
pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an open descriptor.
    let ret = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    check(ret as libc::c_long).map(|_| ())
}

/// Sends one byte on a connected socket without raising SIGPIPE if the peer is gone.
/// A full buffer (`EAGAIN`) is fine: the reader has a wake-up pending already.
pub(crate) fn send_wake_byte(socket: BorrowedFd<'_>) -> io::Result<()> {
    let byte = 1u8;
    // SAFETY: sends one byte from a live local to an open descriptor.
    let ret = unsafe {
        libc::send(
            socket.as_raw_fd(),
            (&byte as *const u8).cast(),
            1,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    match check(ret as libc::c_long) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

/// Lets the calling thread run on every CPU the process may use (the kernel intersects the mask
/// with the cpuset). Threads spawned from a pinned glommio executor inherit its single-CPU
/// affinity, and so would every job they fork; this undoes that for the process threads.
pub(crate) fn allow_all_cpus() -> io::Result<()> {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: cpu < CPU_SETSIZE, the size of the set.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the given size.
    let ret = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    check(ret.into()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn pidfd_becomes_readable_when_the_child_exits() {
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pidfd = pidfd_open(child.id()).unwrap();
        let epoll = epoll_create().unwrap();
        epoll_watch_once(epoll.as_fd(), pidfd.as_fd(), 42, false).unwrap();
        let mut tokens = Vec::new();
        epoll_wait(epoll.as_fd(), &mut tokens, None).unwrap();
        assert_eq!(tokens, vec![42]);
        assert!(
            child.try_wait().unwrap().is_some(),
            "readable pidfd means exited"
        );
    }

    #[test]
    fn eventfd_wakes_epoll() {
        let epoll = epoll_create().unwrap();
        let efd = eventfd().unwrap();
        epoll_watch(epoll.as_fd(), efd.as_fd(), 7).unwrap();
        eventfd_signal(efd.as_fd()).unwrap();
        let mut tokens = Vec::new();
        epoll_wait(epoll.as_fd(), &mut tokens, None).unwrap();
        assert_eq!(tokens, vec![7]);
        sys_drain_then_timeout(&epoll, &efd);
    }

    fn sys_drain_then_timeout(epoll: &OwnedFd, efd: &OwnedFd) {
        eventfd_drain(efd.as_fd());
        let mut tokens = vec![1];
        let began = std::time::Instant::now();
        let wait = std::time::Duration::from_micros(1500);
        epoll_wait(epoll.as_fd(), &mut tokens, Some(wait)).unwrap();
        assert!(tokens.is_empty(), "a timeout reports no events");
        assert!(began.elapsed() >= wait, "rounded up, never down");
    }
}
