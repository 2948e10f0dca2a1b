//! Shared helpers for integration tests: start real `titan` processes on free loopback ports,
//! wait for events with deadlines (never fixed sleeps), and clean up every process on drop.
//!
//! Every process a test starts proves a key: masters get `--access-file` with the test
//! binary's one access file ([`access_file`]), workers, commands and the load generator find it
//! through `TITAN_ACCESS_FILE`, and in-process clients connect with [`connect`].

#![allow(dead_code)]

pub mod durability;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod keys;
pub use keys::*;

/// How long any single expected event may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn titan_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_titan"))
}

/// The `titan-loadgen` binary next to `titan`. `cargo test --workspace` builds it; when a test
/// runs alone from the `titan` package, it is built here once.
pub fn loadgen_bin() -> PathBuf {
    let path = titan_bin().with_file_name("titan-loadgen");
    if !path.exists() {
        let release = titan_bin().parent().is_some_and(|d| d.ends_with("release"));
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-p", "titan-loadgen"]);
        if release {
            cargo.arg("--release");
        }
        let status = cargo
            .status()
            .expect("running cargo to build titan-loadgen");
        assert!(status.success(), "building titan-loadgen failed");
    }
    path
}

/// A child process killed (SIGKILL) and reaped when dropped, whose stdout lines are available.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawning a test process");
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line containing `needle` and returns it.
    pub fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line containing {needle:?} within {DEADLINE:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, signal).expect("signalling a test process");
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("polling a test process") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process {} did not exit within {DEADLINE:?}",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Small, not preallocated log segments (tests start many short-lived masters) and a fresh data
/// directory, unless the test chose its own (`--data-dir`) or none (`--memory-only`).
fn wal_args(extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--wal-segment-mb".to_string(),
        "16".to_string(),
        "--wal-no-preallocate".to_string(),
    ];
    if !extra
        .iter()
        .any(|a| *a == "--data-dir" || *a == "--memory-only")
    {
        args.extend([
            "--data-dir".to_string(),
            scratch_dir("data").display().to_string(),
        ]);
    }
    args
}

/// A master on a free loopback port.
pub struct Master {
    pub proc: Proc,
    pub addr: String,
}

impl Master {
    pub fn start(extra: &[&str]) -> Master {
        let mut cmd = Command::new(titan_bin());
        cmd.args([
            "master",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--log-port",
            "0",
        ])
        .args(wal_args(extra))
        .args(access_args(extra))
        .args(extra);
        cmd.env("TITAN_LOG", test_log_level());
        let mut proc = Proc::spawn(cmd);
        let line = proc.wait_line("titan master ready on ");
        let addr = line
            .split_whitespace()
            .find(|w| w.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("no address in ready line {line:?}"))
            .to_string();
        Master { proc, addr }
    }
}

/// Runs `titan-loadgen` to completion and returns (success, stdout).
pub fn loadgen(args: &[&str]) -> (bool, String) {
    let out = with_keys(&mut Command::new(loadgen_bin()))
        .args(args)
        .output()
        .expect("running titan-loadgen");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The repository's `perm_files/`.
pub fn perm_files() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("perm_files")
}

/// A fresh directory for one test (under cargo's per-target temp dir, which is on the same
/// file system as the build and much faster to create files in than /tmp on these hosts).
pub fn scratch_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch dir");
    dir
}

/// A worker registered with a master, on a free port, with its own workspace.
pub struct Worker {
    pub proc: Proc,
    pub addr: String,
    pub workspace: PathBuf,
}

impl Worker {
    pub fn start(master: &str, extra: &[&str]) -> Worker {
        let workspace = scratch_dir("workspace");
        let mut cmd = Command::new(titan_bin());
        cmd.args(["worker", "--port", "0", "--master", master]);
        // A short grace keeps kill tests quick, unless the test asks for its own.
        if !extra.contains(&"--kill-grace-ms") {
            cmd.args(["--kill-grace-ms", "500"]);
        }
        if !extra.contains(&"--perm-files") {
            cmd.arg("--perm-files").arg(perm_files());
        }
        cmd.arg("--workspace").arg(&workspace).args(extra);
        // The system interpreters: a version manager's shims on PATH can add a third of a
        // second to every python start.
        cmd.env("PATH", "/usr/bin:/bin")
            .env("TITAN_LOG", test_log_level());
        if !extra.contains(&"--access-file") {
            with_keys(&mut cmd);
        }
        let mut proc = Proc::spawn(cmd);
        let line = proc.wait_line("titan worker ready on ");
        let addr = line
            .split_whitespace()
            .nth(4)
            .unwrap_or_default()
            .to_string();
        Worker {
            proc,
            addr,
            workspace,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("worker address has a port")
    }
}

/// Polls `check` until it returns `Some`, failing the test after [`DEADLINE`].
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a process is gone (or a zombie nobody reaped yet).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Whether no live process remains in process group `pgid`.
pub fn group_gone(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    !entries.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // Fields after the command: state, ppid, pgrp, ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.first() != Some(&"Z")
            && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
    })
}

/// Live processes whose command line mentions `needle` or whose working directory is under it.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id().to_string();
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| e.file_name().to_string_lossy() != me)
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let cwd = std::fs::read_link(e.path().join("cwd"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            (!zombie && (cmdline.contains(needle) || cwd.starts_with(needle)))
                .then(|| format!("{cmdline} (cwd {cwd})"))
        })
        .collect()
}

impl Master {
    /// A master on a given loopback port: a restart on the port an earlier master had, so that
    /// clients holding its address reconnect. Wait for [`port_quiet`] before reusing a port.
    pub fn start_on(port: u16, extra: &[&str]) -> Master {
        Master::launch(port, None, &wal_args(extra), extra)
    }

    /// A master started in `cwd` with the default data directory (`titan_data`, relative), as a
    /// user who types `titan master` gets.
    pub fn start_in(cwd: &Path, port: u16) -> Master {
        Master::launch(port, Some(cwd), &[], &["--wal-no-preallocate"])
    }

    fn launch(port: u16, cwd: Option<&Path>, wal: &[String], extra: &[&str]) -> Master {
        let mut cmd = Command::new(titan_bin());
        cmd.args(["master", "--bind", "127.0.0.1", "--log-port", "0", "--port"])
            .arg(port.to_string())
            .args(wal)
            .args(access_args(extra))
            .args(extra);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        cmd.env("TITAN_LOG", test_log_level());
        let mut proc = Proc::spawn(cmd);
        let line = proc.wait_line("titan master ready on ");
        // Port 0 means any: the ready line names the one taken.
        let addr = line
            .split_whitespace()
            .nth(4)
            .unwrap_or_default()
            .to_string();
        Master { proc, addr }
    }

    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("master address has a port")
    }
}

/// What a finished `titan` command printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts a clean success: exit status 0 and nothing on stderr.
    pub fn ok(&self) -> &Run {
        assert_eq!(self.code, Some(0), "{self:#?}");
        assert_eq!(self.stderr, "", "{self:#?}");
        self
    }

    /// The one JSON value stdout holds (failing when there are none or several).
    pub fn json(&self) -> serde_json::Value {
        let mut values = serde_json::Deserializer::from_str(&self.stdout).into_iter();
        let value = values
            .next()
            .unwrap_or_else(|| panic!("no JSON value: {self:#?}"))
            .unwrap_or_else(|e| panic!("invalid JSON ({e}): {self:#?}"));
        assert!(
            values.next().is_none(),
            "more than one JSON value: {self:#?}"
        );
        value
    }
}

impl From<std::process::Output> for Run {
    fn from(out: std::process::Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
        }
    }
}

/// `titan ARGS` with no master address from the environment, no REPL history file and stdin
/// closed, and the test binary's keys; callers add `--master` or `TITAN_MASTER`.
pub fn titan_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(titan_bin());
    with_keys(&mut cmd);
    cmd.args(args)
        .env_remove("TITAN_MASTER")
        .env("TITAN_HISTORY", "")
        .env("TITAN_LOG", test_log_level())
        .stdin(Stdio::null());
    cmd
}

/// Runs `titan ARGS --master ADDR` to completion.
pub fn titan(master: &str, args: &[&str]) -> Run {
    let out = titan_command(args)
        .args(["--master", master])
        .output()
        .expect("running titan");
    Run::from(out)
}

/// Runs a `titan` command to completion with `input` on its stdin.
pub fn titan_with_stdin(mut cmd: Command, input: &str) -> Run {
    use std::io::Write;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning titan");
    let mut stdin = child.stdin.take().expect("stdin was piped");
    // A command that exits early closes its stdin; what it printed still tells the test why.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    Run::from(child.wait_with_output().expect("waiting for titan"))
}

/// A loopback address where nothing listens (a port just bound and released).
pub fn dead_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let addr = listener.local_addr().expect("a bound address").to_string();
    drop(listener);
    addr
}

/// A loopback port free at the time of the call (bound and released), for a service to listen on.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("a bound address").port()
}

/// The live processes whose working directory is `dir` or below it: a worker runs every job (and
/// so every process a job starts, unless it moves away) with its cwd in the job's workspace
/// directory, so this finds what a worker left running.
pub fn processes_in(dir: &std::path::Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            // A zombie has no cwd any more, so it does not count.
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
                && !process_gone(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Whether no TCP socket on `port` still listens or carries a connection: after a master is
/// killed its sockets are released asynchronously (io_uring holds references for a moment),
/// and until then a new master on the port may share it with the dead one's listener, and a
/// client may still see its old connection as open.
pub fn port_quiet(port: u16) -> bool {
    const LISTEN: &str = "0A";
    const ESTABLISHED: &str = "01";
    let hex_port = format!("{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().all(|table| {
        let Ok(text) = std::fs::read_to_string(table) else {
            return true;
        };
        // Fields: sl local_address rem_address st ...; addresses are HEXIP:HEXPORT.
        !text.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(state)) =
                (fields.get(1), fields.get(2), fields.get(3))
            else {
                return false;
            };
            let on_port = |addr: &str| addr.rsplit(':').next() == Some(hex_port.as_str());
            (on_port(local) && (*state == LISTEN || *state == ESTABLISHED))
                || (on_port(remote) && *state == ESTABLISHED)
        })
    })
}

/// The one job id (`TSK-N`) a successful `titan submit` printed.
pub fn submitted_id(run: &Run) -> String {
    run.ok();
    let id = run.stdout.trim_end_matches('\n');
    assert!(
        id.starts_with("TSK-") && !id.contains('\n'),
        "not one job id: {run:?}"
    );
    id.to_string()
}

/// The DAG id (`dag-N`) of the full ids `dag-N:NAME` a successful `titan dag` printed, one per
/// line, after checking they name `names` in order.
pub fn dag_id(run: &Run, names: &[&str]) -> String {
    run.ok();
    let dag = run
        .stdout
        .lines()
        .next()
        .and_then(|l| l.split_once(':'))
        .map(|(dag, _)| dag.to_string())
        .unwrap_or_else(|| panic!("no ids: {run:?}"));
    assert!(dag.starts_with("dag-"), "{run:?}");
    let expected: String = names.iter().map(|n| format!("{dag}:{n}\n")).collect();
    assert_eq!(run.stdout, expected);
    dag
}

/// `titan status ID --json`.
pub fn job_json(master: &str, id: &str) -> serde_json::Value {
    titan(master, &["status", id, "--json"]).ok().json()
}

/// Waits until the first worker runs `n` jobs, as the master counts them (`titan stats --json`).
pub fn wait_running(master: &str, n: u64) {
    eventually(&format!("{n} running jobs"), || {
        let stats = titan(master, &["stats", "--json"]).ok().json();
        (stats["workers"][0]["running"] == n).then_some(())
    });
}

/// On drop, SIGKILLs every process still working under these directories (see [`processes_in`]),
/// again and again until none is left or [`DEADLINE`] passes: a safety net so that a failing
/// test does not leave job processes behind (a worker's sentinel covers its own job groups, but
/// not, for instance, processes that a job's own children started in groups of their own).
pub struct KillLeftovers(pub Vec<PathBuf>);

impl Drop for KillLeftovers {
    fn drop(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            let pids: Vec<u32> = self.0.iter().flat_map(|d| processes_in(d)).collect();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Resident set size of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The log level of processes tests start: `warn`, or `TITAN_TEST_LOG` when debugging a test.
pub fn test_log_level() -> String {
    std::env::var("TITAN_TEST_LOG").unwrap_or_else(|_| "warn".to_string())
}
