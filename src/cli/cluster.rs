//! `titan up` and `titan demo`: a whole local cluster as child processes of this binary.
//!
//! The master and the workers are started with `--port 0` and their ready lines read back, so
//! several clusters (and tests) never fight over ports. The master creates its access file in
//! its data directory; the workers are pointed at it (`--access-file`), so they need no key
//! of their own. Stopping sends SIGTERM to the workers
//! first (each stops its jobs, child workers included, and its sentinel follows), then to the
//! master; anything still alive after a deadline gets SIGKILL, so nothing is left behind.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::error::CliError;

/// How long a child may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// One child process and the address from its ready line.
pub struct Member {
    pub name: String,
    pub addr: String,
    child: Child,
}

/// A master and its workers, running as children of this process.
pub struct LocalCluster {
    pub master: Member,
    pub workers: Vec<Member>,
}

/// Where the children's files go.
#[derive(Clone, Debug)]
pub struct ClusterLayout {
    pub perm_files: PathBuf,
    pub workspace: PathBuf,
    pub worker_capacity: u32,
    /// The master's data directory (its write-ahead log).
    pub data_dir: PathBuf,
    /// The master's TCP port and its log sink's UDP port (0: any free one).
    pub master_port: u16,
    pub log_port: u16,
    /// Extra `titan master` flags.
    pub master_flags: Vec<String>,
}

impl ClusterLayout {
    /// The master's access file (created on its first start), which the workers read.
    pub fn access_file(&self) -> PathBuf {
        self.data_dir.join(titan_auth::ACCESS_FILE_NAME)
    }
}

impl LocalCluster {
    pub fn start(workers: usize, layout: &ClusterLayout) -> Result<LocalCluster, CliError> {
        let exe = std::env::current_exe()
            .map_err(|e| CliError::Local(format!("cannot find this program: {e}")))?;
        let mut master_cmd = Command::new(&exe);
        master_cmd
            .args(["master", "--port", &layout.master_port.to_string()])
            .args(["--log-port", &layout.log_port.to_string()])
            .arg("--data-dir")
            .arg(&layout.data_dir)
            .arg("--access-file")
            .arg(layout.access_file())
            .args(&layout.master_flags);
        let master = spawn_member("master", master_cmd, "titan master ready on ")?;
        let mut cluster = LocalCluster {
            master,
            workers: Vec::new(),
        };
        for i in 0..workers {
            let mut cmd = Command::new(&exe);
            cmd.args(["worker", "--port", "0", "--master", &cluster.master.addr])
                .args(["--capacity", &layout.worker_capacity.to_string()])
                .arg("--perm-files")
                .arg(&layout.perm_files)
                .arg("--workspace")
                .arg(&layout.workspace)
                .arg("--access-file")
                .arg(layout.access_file());
            match spawn_member(&format!("worker {}", i + 1), cmd, "titan worker ready on ") {
                Ok(worker) => cluster.workers.push(worker),
                Err(e) => {
                    cluster.stop();
                    return Err(e);
                }
            }
        }
        Ok(cluster)
    }

    /// Stops the workers, then the master; returns the members that had to be killed.
    pub fn stop(mut self) -> Vec<String> {
        let mut killed = stop_all(&mut self.workers);
        killed.extend(stop_all(std::slice::from_mut(&mut self.master)));
        killed
    }

    /// A member that exited on its own (it crashed), if any.
    pub fn exited(&mut self) -> Option<String> {
        let members = std::iter::once(&mut self.master).chain(self.workers.iter_mut());
        for m in members {
            if let Ok(Some(status)) = m.child.try_wait() {
                return Some(format!("{} exited ({status})", m.name));
            }
        }
        None
    }
}

fn spawn_member(name: &str, mut cmd: Command, ready: &str) -> Result<Member, CliError> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::Local(format!("cannot start the {name}: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| CliError::Local(format!("no stdout from the {name}")))?;
    let (tx, rx) = mpsc::channel();
    // The child's stdout stays drained for its whole life, so it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with(ready) => {
                let addr = line[ready.len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                return Ok(Member {
                    name: name.to_string(),
                    addr,
                    child,
                });
            }
            Ok(_) => continue,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CliError::Local(format!(
                    "the {name} did not become ready within {READY_TIMEOUT:?}"
                )));
            }
        }
    }
}

fn stop_all(members: &mut [Member]) -> Vec<String> {
    for m in members.iter() {
        let _ = kill(Pid::from_raw(m.child.id() as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut killed = Vec::new();
    for m in members.iter_mut() {
        loop {
            match m.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = m.child.kill();
                    let _ = m.child.wait();
                    killed.push(m.name.clone());
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
    killed
}

/// A port nobody listens on right now (the kernel's choice for port 0). Another process could
/// take it before it is used; the demo reports such a clash as a failed deploy.
pub fn free_port() -> Result<u16, CliError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| CliError::Local(e.to_string()))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| CliError::Local(e.to_string()))
}
