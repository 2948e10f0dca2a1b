//! The launcher threads: everything that blocks on the way to a running process, off the
//! executor. Per job: create the workspace directory, resolve the program (canonicalize, stat,
//! PATH search), write an inline script, open the log files (or socket pairs), fork/exec in a
//! new process group, open a pidfd and register it with the reaper, then hand the child to the
//! executor through the completion queue.
//!
//! Why threads of our own rather than glommio's `spawn_blocking`: its pool has one thread by
//! default and also runs glommio's own blocking file operations; the launcher count is a knob of
//! the engine, and a spawn never waits behind an unrelated `rename`.

use super::completion::{Completion, CompletionQueue, NotLaunched, Spawned};
use super::outcome::StartError;
use super::reaper::ReaperHandle;
use super::resolve::{Program, Resolver};
use super::spec::{ChildAffinity, OutputMode, STDERR_FILE, STDOUT_FILE};
use super::sys;
use crossbeam_channel::Receiver;
use nix::sys::signal::Signal;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

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

/// What every launcher thread shares.
#[derive(Debug)]
pub(crate) struct LauncherContext {
    pub resolver: Resolver,
    /// Absolute `perm_files/`, exported to jobs as `TITAN_PERM_FILES`.
    pub perm_files: PathBuf,
    pub reaper: Arc<ReaperHandle>,
    pub queue: Arc<CompletionQueue>,
    pub affinity: ChildAffinity,
}

/// Starts `count` launcher threads; they exit when every sender of `requests` is gone.
pub(crate) fn start_launchers(
    count: usize,
    context: Arc<LauncherContext>,
    requests: Receiver<LaunchRequest>,
) -> io::Result<()> {
    for n in 0..count {
        let context = context.clone();
        let requests = requests.clone();
        std::thread::Builder::new()
            .name(format!("titan-launch-{n}"))
            .spawn(move || run(&context, &requests))?;
    }
    Ok(())
}

fn run(context: &LauncherContext, requests: &Receiver<LaunchRequest>) {
    if context.affinity == ChildAffinity::AllCpus {
        if let Err(error) = sys::allow_all_cpus() {
            tracing::warn!(%error, "launcher: cannot widen CPU affinity; jobs inherit the executor's");
        }
    }
    while let Ok(request) = requests.recv() {
        let token = request.token;
        let result = launch(context, request);
        if let Err(items) = context
            .queue
            .push(vec![Completion::Launched { token, result }])
        {
            // The engine is gone: nobody will watch this process, so end it here.
            for item in items {
                if let Completion::Launched {
                    result: Ok(spawned),
                    ..
                } = item
                {
                    kill_and_reap(spawned.child);
                }
            }
        }
    }
}

/// Prepares and starts one job's process.
fn launch(context: &LauncherContext, request: LaunchRequest) -> Result<Spawned, NotLaunched> {
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
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .env("TITAN_JOB_ID", &request.job_id)
        .env("TITAN_WORKSPACE", dir)
        .env("TITAN_PERM_FILES", &context.perm_files)
        .envs(request.env.iter().map(|(k, v)| (k, v)));
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
    let pidfd = match watch(context, pid, request.token) {
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

fn watch(context: &LauncherContext, pid: u32, token: u64) -> io::Result<OwnedFd> {
    let pidfd = sys::pidfd_open(pid)?;
    context.reaper.watch(pidfd.as_fd(), token)?;
    Ok(pidfd)
}

type Output = (Stdio, Stdio, Option<(UnixStream, UnixStream)>);

fn open_output(dir: &Path, mode: OutputMode) -> Result<Output, NotLaunched> {
    match mode {
        OutputMode::Files => {
            let stdout = create_log(&dir.join(STDOUT_FILE))?;
            let stderr = create_log(&dir.join(STDERR_FILE))?;
            Ok((stdout.into(), stderr.into(), None))
        }
        OutputMode::Capture => {
            let (out_read, out_write) = UnixStream::pair().map_err(|e| workspace_error(dir, e))?;
            let (err_read, err_write) = UnixStream::pair().map_err(|e| workspace_error(dir, e))?;
            // The job only writes; shutting our read ends' write side makes that explicit.
            let _ = out_read.shutdown(std::net::Shutdown::Write);
            let _ = err_read.shutdown(std::net::Shutdown::Write);
            Ok((
                OwnedFd::from(out_write).into(),
                OwnedFd::from(err_write).into(),
                Some((out_read, err_read)),
            ))
        }
    }
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
    let Ok(raw) = i32::try_from(pid) else { return };
    let pid = nix::unistd::Pid::from_raw(raw);
    let _ = nix::sys::signal::killpg(pid, signal);
    let _ = nix::sys::signal::kill(pid, signal);
}
