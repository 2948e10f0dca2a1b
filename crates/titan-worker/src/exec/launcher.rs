//! Launching one job, on a process thread (never the executor): create the workspace
//! directory, resolve the program (canonicalize, stat, PATH search), write an inline script,
//! create the log files (and the socket pairs when output is captured), fork/exec in a new process group, open a pidfd and
//! register it with the pool's epoll. Also the signalling helpers shared with the supervisor.

use super::completion::{Captured, NotLaunched, Spawned};
use super::outcome::StartError;
use super::resolve::{Program, Resolver};
use super::spec::{ChildAffinity, OutputMode, STDERR_FILE, STDOUT_FILE};
use super::sys;
use nix::sys::signal::Signal;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Variables removed from every job's environment: the keys the worker itself was given.
pub const SCRUBBED_ENV: [&str; 2] = [titan_auth::ENV_KEY, titan_auth::ENV_ACCESS_FILE];

/// One job for a launcher thread.
#[derive(Debug)]
pub(crate) struct LaunchRequest {
    pub token: u64,
    pub job_id: String,
    /// Absolute path of the job's workspace directory.
    pub job_dir: PathBuf,
    pub program: Program,
    pub env: Vec<(String, String)>,
    pub output: OutputMode,
    /// Set by a cancel; a request still queued is then skipped.
    pub cancelled: Arc<AtomicBool>,
}

/// What launching needs besides the request.
#[derive(Debug)]
pub(crate) struct LauncherContext {
    pub resolver: Resolver,
    /// `/dev/null`, opened once: each job's stdin is a duplicate (cheaper than an `open`).
    pub dev_null: File,
    /// Absolute `perm_files/`, exported to jobs as `TITAN_PERM_FILES`.
    pub perm_files: PathBuf,
    pub affinity: ChildAffinity,
    pub sentinel: Option<std::sync::Arc<super::sentinel::Sentinel>>,
    pub job_nice: i32,
}

/// Prepares and starts one job's process.
/// `epoll` is where the pidfd is registered, under the request's token.
pub(crate) fn launch(
    context: &LauncherContext,
    epoll: BorrowedFd<'_>,
    request: LaunchRequest,
) -> Result<Spawned, NotLaunched> {
    if request.cancelled.load(Ordering::Acquire) {
        return Err(NotLaunched::Cancelled);
    }
    let dir = &request.job_dir;
    std::fs::create_dir_all(dir).map_err(|e| workspace_error(dir, e))?;
    let plan = context
        .resolver
        .resolve(&request.program, dir)
        .map_err(|e| NotLaunched::Failed(e.into()))?;
    if let Some(script) = &plan.inline {
        write_script(&script.path, &script.bytes, script.executable)
            .map_err(|e| workspace_error(&script.path, e))?;
    }
    let (stdout, stderr, captured) = open_output(dir, request.output)?;
    let mut command = Command::new(&plan.program);
    command
        .args(&plan.args)
        .current_dir(dir)
        .process_group(0)
        .stdin(dev_null(context, dir)?)
        .stdout(stdout)
        .stderr(stderr)
        .env("TITAN_JOB_ID", &request.job_id)
        .env("TITAN_WORKSPACE", dir)
        .env("TITAN_PERM_FILES", &context.perm_files);
    // A job never inherits the worker's keys; a child worker gets its key in `request.env`.
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    command.envs(request.env.iter().map(|(k, v)| (k, v)));
    // Timestamps from just before the fork: the process may run (and the thread be preempted)
    // before `spawn` returns, and a duration must never come out shorter than the real one.
    let (started, started_wall) = (Instant::now(), SystemTime::now());
    let child = command.spawn().map_err(|e| {
        NotLaunched::Failed(StartError::Spawn {
            program: plan.program.clone(),
            source: Arc::new(e),
        })
    })?;
    // Dropping the command closes the parent's copies of the child's ends of the sockets, so
    // that the reader sees EOF when the job's processes are done.
    drop(command);
    let pid = child.id();
    if let Some(sentinel) = &context.sentinel {
        sentinel.track(pid);
    }
    let pidfd = match watch(epoll, pid, request.token) {
        Ok(pidfd) => pidfd,
        Err(error) => {
            kill_and_reap(child);
            return Err(NotLaunched::Failed(StartError::Watch {
                pid,
                source: Arc::new(error),
            }));
        }
    };
    Ok(Spawned {
        child,
        pidfd,
        pid,
        started,
        started_wall,
        output: captured,
    })
}

fn watch(epoll: BorrowedFd<'_>, pid: u32, token: u64) -> io::Result<OwnedFd> {
    let pidfd = sys::pidfd_open(pid)?;
    sys::epoll_watch_once(epoll, pidfd.as_fd(), token, false)?;
    Ok(pidfd)
}

type Output = (Stdio, Stdio, Option<Captured>);

fn open_output(dir: &Path, mode: OutputMode) -> Result<Output, NotLaunched> {
    match mode {
        OutputMode::Files => {
            let stdout = create_log(&dir.join(STDOUT_FILE))?;
            let stderr = create_log(&dir.join(STDERR_FILE))?;
            Ok((stdout.into(), stderr.into(), None))
        }
        OutputMode::Capture => {
            // The files exist, empty, from the job's start, whatever it prints; the drain opens
            // one only when its stream has bytes. Creating them here, on a process thread, keeps
            // the file system calls of a job that prints nothing off the executor. A file that
            // cannot be created does not stop the job: the drain tries again when output
            // arrives, and reports the error with the job's others.
            let file_errors = [STDOUT_FILE, STDERR_FILE]
                .map(|name| File::create(dir.join(name)).err().map(Arc::new));
            let (out_read, out_write) = UnixStream::pair().map_err(|e| workspace_error(dir, e))?;
            let (err_read, err_write) = UnixStream::pair().map_err(|e| workspace_error(dir, e))?;
            // The job only writes; shutting our read ends' write side makes that explicit.
            let _ = out_read.shutdown(std::net::Shutdown::Write);
            let _ = err_read.shutdown(std::net::Shutdown::Write);
            Ok((
                OwnedFd::from(out_write).into(),
                OwnedFd::from(err_write).into(),
                Some(Captured {
                    stdout: out_read,
                    stderr: err_read,
                    file_errors,
                }),
            ))
        }
    }
}

fn dev_null(context: &LauncherContext, dir: &Path) -> Result<Stdio, NotLaunched> {
    let null = context
        .dev_null
        .try_clone()
        .map_err(|e| workspace_error(dir, e))?;
    Ok(null.into())
}

fn create_log(path: &Path) -> Result<File, NotLaunched> {
    File::create(path).map_err(|e| workspace_error(path, e))
}

fn write_script(path: &Path, bytes: &[u8], executable: bool) -> io::Result<()> {
    let mode = if executable { 0o700 } else { 0o600 };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    // A file reused from an earlier attempt keeps its old mode; set it explicitly.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
}

fn workspace_error(path: &Path, error: io::Error) -> NotLaunched {
    NotLaunched::Failed(StartError::Workspace {
        path: path.to_owned(),
        source: Arc::new(error),
    })
}

/// SIGKILLs a child's process group and waits for it. Only for children nobody else will reap,
/// on a thread that may block.
pub(crate) fn kill_and_reap(mut child: Child) {
    signal_group(child.id(), Signal::SIGKILL);
    let _ = child.wait();
}

/// Sends `signal` to the process group led by `pid` and to `pid` itself (which may have moved to
/// a group of its own). Callers guarantee `pid` is an unreaped child, so neither id can have
/// been reused. A group or process already gone is not an error.
pub(crate) fn signal_group(pid: u32, signal: Signal) {
    let Some(pid) = as_pid(pid) else { return };
    let _ = nix::sys::signal::killpg(pid, signal);
    let _ = nix::sys::signal::kill(pid, signal);
}

/// Sends `signal` to the rest of the process group of an exited (unreaped) leader.
pub(crate) fn signal_leftovers(pid: u32, signal: Signal) {
    if let Some(pid) = as_pid(pid) {
        let _ = nix::sys::signal::killpg(pid, signal);
    }
}

fn as_pid(pid: u32) -> Option<nix::unistd::Pid> {
    i32::try_from(pid).ok().map(nix::unistd::Pid::from_raw)
}
