//! `titan demo` and `titan up`: whole local clusters as child processes, and nothing left behind.

mod support;

use std::process::Command;

use nix::sys::signal::Signal;
use support::{eventually, perm_files, processes_mentioning, scratch_dir, titan_bin, Proc};

#[test]
fn demo_runs_the_inception_dag_prints_stats_and_leaves_nothing_running() {
    let workspace = scratch_dir("demo");
    let out = Command::new(titan_bin())
        .arg("demo")
        .arg("--perm-files")
        .arg(perm_files())
        .arg("--workspace")
        .arg(&workspace)
        .env("PATH", "/usr/bin:/bin")
        .env("TITAN_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("titan> SUBMIT_DAG START_DASH|DEPLOY|server_dashboard.py|"),
        "{stdout}"
    );
    assert!(
        stdout.contains("--- TITAN SYSTEM MONITOR ---\nActive Workers:    4\n"),
        "{stdout}"
    );
    // The DAG's id depends on the shard the demo's connection landed on.
    for service in ["START_DASH", "WORKER_A", "WORKER_B", "WORKER_C"] {
        let listed = stdout
            .lines()
            .any(|l| l.contains("⚙️ Service ID: dag-") && l.ends_with(&format!(":{service}")));
        assert!(listed, "{service} missing: {stdout}");
    }
    assert!(stdout.contains("nothing left running"));
    let needle = workspace.display().to_string();
    eventually("every process of the demo to be gone", || {
        processes_mentioning(&needle).is_empty().then_some(())
    });
}

#[test]
fn up_runs_a_cluster_until_sigterm_then_stops_all_of_it() {
    let workspace = scratch_dir("up");
    let data = scratch_dir("up-data");
    let mut cmd = Command::new(titan_bin());
    cmd.args(["up", "--workers", "2"])
        .arg("--perm-files")
        .arg(perm_files())
        .arg("--workspace")
        .arg(&workspace)
        .arg("--data-dir")
        .arg(&data)
        .env("PATH", "/usr/bin:/bin")
        .env("TITAN_LOG", "warn");
    let mut up = Proc::spawn(cmd);
    let ready = up.wait_line("titan up: master on ");
    let master = ready
        .split_whitespace()
        .nth(4)
        .unwrap()
        .trim_end_matches(',')
        .to_string();
    // The cluster works: a job runs on it (with the keys its master created in its data dir).
    let access = data.join("access");
    let submit = Command::new(titan_bin())
        .args(["submit", "RUN|calc.py", "--master", &master])
        .env("TITAN_ACCESS_FILE", &access)
        .env_remove("TITAN_KEY")
        .output()
        .unwrap();
    assert!(submit.status.success());
    let id = String::from_utf8_lossy(&submit.stdout).trim().to_string();
    let wait = Command::new(titan_bin())
        .args(["wait", &id, "--master", &master])
        .env("TITAN_ACCESS_FILE", &access)
        .env_remove("TITAN_KEY")
        .output()
        .unwrap();
    assert!(
        wait.status.success(),
        "{}",
        String::from_utf8_lossy(&wait.stdout)
    );
    up.signal(Signal::SIGTERM);
    assert!(up.wait_exit().success());
    let needle = workspace.display().to_string();
    eventually("every process of the cluster to be gone", || {
        processes_mentioning(&needle).is_empty().then_some(())
    });
    assert!(
        std::net::TcpStream::connect(&master).is_err(),
        "the master still listens"
    );
}
