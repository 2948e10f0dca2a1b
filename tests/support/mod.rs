//! Shared helpers for integration tests: start real `titan` processes on free loopback ports,
//! wait for events with deadlines (never fixed sleeps), and clean up every process on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// A master on a free loopback port.
pub struct Master {
    pub proc: Proc,
    pub addr: String,
}

impl Master {
    pub fn start(extra: &[&str]) -> Master {
        let mut cmd = Command::new(titan_bin());
        cmd.args(["master", "--port", "0", "--bind", "127.0.0.1"])
            .args(extra);
        cmd.env("TITAN_LOG", "warn");
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
    let out = Command::new(loadgen_bin())
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
        cmd.arg("--perm-files")
            .arg(perm_files())
            .arg("--workspace")
            .arg(&workspace)
            .args(extra);
        // The system interpreters: a version manager's shims on PATH can add a third of a
        // second to every python start.
        cmd.env("PATH", "/usr/bin:/bin").env("TITAN_LOG", "warn");
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

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
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
