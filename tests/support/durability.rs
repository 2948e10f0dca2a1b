//! Helpers for the durability tests: kill and restart masters on their data directory, and find
//! the log's shard directories and segments.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use super::{eventually, port_quiet, Master};

pub fn kill9(mut master: Master) -> u16 {
    let port = master.port();
    master.proc.signal(Signal::SIGKILL);
    master.proc.wait_exit();
    eventually("the dead master's sockets to close", || {
        port_quiet(port).then_some(())
    });
    port
}

pub fn restart(port: u16, data: &Path, extra: &[&str]) -> Master {
    let data = data.display().to_string();
    let mut args = vec!["--data-dir", data.as_str()];
    args.extend_from_slice(extra);
    Master::start_on(port, &args)
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(".wal"))
    });
    files.sort();
    files
}

pub fn shard_dirs(data: &Path) -> Vec<PathBuf> {
    let wal = data.join("wal");
    let mut dirs = Vec::new();
    for generation in std::fs::read_dir(&wal)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
    {
        for shard in std::fs::read_dir(generation.path()).unwrap().flatten() {
            dirs.push(shard.path());
        }
    }
    dirs.sort();
    dirs
}

/// The end of the records in a segment (what follows is zeros).
pub fn used_len(path: &Path) -> usize {
    std::fs::read(path)
        .unwrap()
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1)
}

/// A test that cannot set up what it needs (a loop mount, a FUSE mount): under `CI=true` that is
/// a failure, since CI runs as root with everything installed and must not pass by skipping;
/// elsewhere the test is skipped with the reason printed.
pub fn cannot_set_up(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("cannot set up {what}; under CI=true a test that cannot run fails");
    }
    eprintln!("SKIPPED: cannot set up {what}");
}
