//! The sentinel: a small companion process that kills a worker's jobs when the worker dies.
//!
//! A worker that is SIGKILLed (or crashes) cannot kill its jobs, and the master re-queues those
//! attempts elsewhere: left alone, the orphans would finish a second time. So every worker starts
//! one sentinel (`titan __sentinel`), whose stdin is the read end of a pipe only the worker can
//! write to. The engine writes a record when it starts a job's process group and another when it
//! has reaped the group's leader; when the worker dies, by any means, the kernel closes the pipe,
//! the sentinel reads EOF and SIGKILLs every group still recorded, then exits. On a clean
//! shutdown the worker has already stopped its jobs and the sentinel finds nothing to kill.
//!
//! Why not `PR_SET_PDEATHSIG`: it must be set in the child between fork and exec, which costs
//! the vfork fast path, and glommio pins ~6 MB of IO buffers that the kernel then copies on
//! every fork (measured: 5 ms per `/bin/true` job instead of 2). It would also only cover each
//! group's leader, where the sentinel kills whole groups.
//!
//! A group is forgotten only after its leader was reaped, so while recorded its id cannot be
//! reused (a zombie leader or a live member holds it).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{killpg, signal, SigHandler, Signal};
use nix::unistd::Pid;
use tracing::warn;

/// One record: `+` or `-`, then the process-group id, little-endian. Records are far smaller
/// than `PIPE_BUF`, so each write is atomic even from several threads.
const RECORD_LEN: usize = 5;

/// How long a worker that stops waits for its sentinel to finish (it has nothing left to kill
/// after a clean stop and exits at once), so that it is reaped rather than left a zombie in a
/// process that embeds workers.
const SENTINEL_EXIT_WAIT: Duration = Duration::from_secs(1);

/// The worker's end: records groups for the sentinel to kill if the worker dies.
#[derive(Debug)]
pub struct Sentinel {
    // Fields drop in order: the pipe closes (the sentinel's cue to finish) before the process
    // is waited for.
    pipe: OwnedFd,
    _process: SentinelProcess,
}

/// The sentinel's process, reaped when dropped (waiting up to [`SENTINEL_EXIT_WAIT`]).
#[derive(Debug)]
struct SentinelProcess(Child);

impl Sentinel {
    /// Starts `program args…` (normally this binary with `__sentinel`) as the sentinel.
    pub fn start(program: &Path, args: &[&str]) -> io::Result<Sentinel> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // The worker must never block on the sentinel; a full pipe means a record is lost (and
        // said so), not that a job waits.
        fcntl(write.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        // Its own process group: when this worker is itself a job (an Inception child), its
        // parent kills the worker's group, and the sentinel must outlive that to kill the jobs.
        let child = Command::new(program)
            .args(args)
            .process_group(0)
            .stdin(Stdio::from(File::from(read)))
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Sentinel {
            pipe: write,
            _process: SentinelProcess(child),
        })
    }

    pub fn track(&self, group: u32) {
        self.send(b'+', group);
    }

    pub fn untrack(&self, group: u32) {
        self.send(b'-', group);
    }

    fn send(&self, op: u8, group: u32) {
        let g = group.to_le_bytes();
        let record = [op, g[0], g[1], g[2], g[3]];
        if !matches!(nix::unistd::write(&self.pipe, &record), Ok(RECORD_LEN)) {
            warn!(group, "the sentinel lost track of a job's process group");
        }
    }
}

impl Drop for SentinelProcess {
    /// Runs once the pipe is closed. A sentinel that does not finish in time is left to init.
    fn drop(&mut self) {
        let deadline = Instant::now() + SENTINEL_EXIT_WAIT;
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The sentinel process: reads records from stdin until EOF, then SIGKILLs every group still
/// recorded. Termination signals are ignored: a Ctrl-C that reaches the whole foreground group
/// must not take the sentinel down before the worker it guards.
pub fn run_sentinel() -> i32 {
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: installing SIG_IGN runs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let mut live = HashSet::new();
    let mut stdin = io::stdin().lock();
    let mut buf = [0u8; 4096];
    let mut pending = Vec::with_capacity(RECORD_LEN);
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &byte in &buf[..n] {
            pending.push(byte);
            if pending.len() == RECORD_LEN {
                let group = u32::from_le_bytes([pending[1], pending[2], pending[3], pending[4]]);
                match pending[0] {
                    b'+' => {
                        live.insert(group);
                    }
                    b'-' => {
                        live.remove(&group);
                    }
                    _ => {}
                }
                pending.clear();
            }
        }
    }
    for group in live {
        if let Ok(pid) = i32::try_from(group) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    0
}
