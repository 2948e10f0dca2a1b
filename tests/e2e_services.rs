//! Services (DEPLOY) with real processes: restarts after their delay, the crash-loop guard, STOP,
//! readiness by port, a port taken by another process, redeploys when a worker dies, and a killed
//! child worker's jobs re-queued.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{eventually, free_port, process_gone, scratch_dir, Master, Worker};
use titan::cli::client::Client;
use titan::core::grammar::{parse_dag, parse_one_off};
use titan::core::{JobState, Submission};
use titan::proto::message::client::JobStatus;

fn submit(client: &mut Client, text: &str) -> String {
    let spec = parse_one_off(text).expect("valid job");
    client.submit(Submission::OneOff(spec)).unwrap().label
}

fn submit_dag(client: &mut Client, text: &str) -> Vec<String> {
    let dag = parse_dag(text).expect("valid DAG");
    let submitted = client.submit(Submission::Dag(dag)).unwrap();
    submitted.jobs.into_iter().map(|j| j.label).collect()
}

fn status(client: &mut Client, label: &str) -> JobStatus {
    client.status(label).expect("status")
}

/// A `perm_files/` directory of test scripts; each script appends its pid to `starts.txt` in
/// the returned directory when it starts.
struct Scripts {
    perm: PathBuf,
    starts: PathBuf,
}

impl Scripts {
    fn new() -> Scripts {
        let perm = scratch_dir("services-perm");
        let starts = perm.join("starts.txt");
        let s = Scripts { perm, starts };
        let log = s.starts.display().to_string();
        // `exec`: the pid written is the pid that runs (and that the test kills).
        s.write("svc.sh", &format!("echo $$ >> {log}\nexec sleep 600\n"));
        s.write("crash.sh", &format!("echo $$ >> {log}\nexit 1\n"));
        s.write(
            "web.py",
            &format!(
                "import os, socket, sys, time\n\
                 with open({log:?}, 'a') as f: f.write(f'{{os.getpid()}}\\n')\n\
                 time.sleep(float(os.environ.get('WEB_DELAY', '0')))\n\
                 with open('listening_at', 'w') as f: f.write(repr(time.time()))\n\
                 s = socket.socket()\n\
                 s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                 s.bind(('127.0.0.1', int(os.environ['PORT'])))\n\
                 s.listen()\n\
                 while True:\n    s.accept()[0].close()\n"
            ),
        );
        s.write(
            "slow_web.sh",
            "WEB_DELAY=0.7 exec python3 -u \"$(dirname \"$0\")/web.py\"\n",
        );
        s.write(
            "dependant.py",
            "import time\nwith open('started_at', 'w') as f: f.write(repr(time.time()))\n",
        );
        s
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.perm.join(name), text).unwrap();
    }

    /// The pids written so far, in start order.
    fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(&self.starts)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn worker(&self, master: &Master, extra: &[&str]) -> Worker {
        let perm = self.perm.display().to_string();
        let mut args = vec!["--perm-files", perm.as_str()];
        args.extend_from_slice(extra);
        Worker::start(&master.addr, &args)
    }
}

/// A master started with `master_args`, the test scripts, one worker running them, a client.
struct Setup {
    master: Master,
    scripts: Scripts,
    worker: Worker,
    client: Client,
}

fn setup(master_args: &[&str]) -> Setup {
    let master = Master::start(master_args);
    let scripts = Scripts::new();
    let worker = scripts.worker(&master, &[]);
    let client = support::connect(&master.addr);
    Setup {
        master,
        scripts,
        worker,
        client,
    }
}

fn read_f64(path: &Path) -> f64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_service_killed_five_times_is_restarted_each_time_after_its_delay() {
    // The guard is raised so that five quick kills are not a crash loop.
    let Setup {
        master: _master,
        scripts,
        worker: _worker,
        mut client,
    } = setup(&[
        "--shards",
        "2",
        "--service-restart-ms",
        "50",
        "--crash-loop-starts",
        "10",
    ]);
    let svc = submit(&mut client, "DEPLOY|svc.sh");
    eventually("the service to be ready", || {
        status(&mut client, &svc).ready.then_some(())
    });
    for kill_no in 1..=5u32 {
        let pids = eventually("the service's pid", || {
            let p = scripts.pids();
            (p.len() == kill_no as usize).then_some(p)
        });
        let pid = *pids.last().unwrap();
        let killed_at = Instant::now();
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        eventually("the restart", || {
            (scripts.pids().len() == kill_no as usize + 1).then_some(())
        });
        // The n-th quick exit waits 50 ms * 2^(n-1) before the restart (no jitter for services).
        let delay = Duration::from_millis(50 << (kill_no - 1));
        let took = killed_at.elapsed();
        assert!(
            took >= delay,
            "restart {kill_no} after {took:?} < {delay:?}"
        );
        assert!(process_gone(pid as u32));
    }
    let s = eventually("the sixth run to be ready", || {
        Some(status(&mut client, &svc)).filter(|s| s.ready)
    });
    assert_eq!((s.state, s.attempts), (JobState::Running, 6));
    assert_eq!(s.last_error.as_deref(), Some("killed by signal 9"));
    let pids = scripts.pids();
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 6, "{pids:?}");
}

#[test]
fn a_crash_looping_service_ends_dead_with_the_reason() {
    // Defaults: restarts after 100, 200, 400, 800 ms; five starts within 10 s is a crash loop.
    let Setup {
        master: _master,
        scripts,
        worker: _worker,
        mut client,
    } = setup(&["--shards", "1"]);
    let dag = submit_dag(
        &mut client,
        "S|DEPLOY|crash.sh|1|0|[] ; AFTER|RUN|dependant.py|1|0|[S]",
    );
    let reply = client.wait(&dag, support::DEADLINE).unwrap();
    assert!(!reply.timed_out);
    let s = status(&mut client, &dag[0]);
    assert_eq!((s.state, s.attempts), (JobState::Dead, 5));
    let error = s.last_error.unwrap_or_default();
    assert!(
        error.starts_with("crash loop: 5 starts within 10s") && error.contains("code 1"),
        "{error}"
    );
    assert_eq!(scripts.pids().len(), 5);
    // A service without a port counts as done for its dependants once it runs: the first run
    // released AFTER, which is not undone by the later crash loop.
    assert_eq!(status(&mut client, &dag[1]).state, JobState::Completed);
}

#[test]
fn a_stopped_service_stays_stopped() {
    let Setup {
        master: _master,
        scripts,
        worker: _worker,
        mut client,
    } = setup(&["--shards", "2", "--service-restart-ms", "10"]);
    let svc = submit(&mut client, "DEPLOY|svc.sh");
    eventually("the service to be ready", || {
        status(&mut client, &svc).ready.then_some(())
    });
    let pid = scripts.pids()[0];
    client.stop(&svc).unwrap();
    eventually("the process to end", || {
        process_gone(pid as u32).then_some(())
    });
    let s = status(&mut client, &svc);
    assert_eq!((s.state, s.attempts), (JobState::Cancelled, 1));
    // A restart would have come 10 ms after the exit; the job is terminal, so none can.
    let reply = client.wait(std::slice::from_ref(&svc), support::DEADLINE);
    assert_eq!(reply.unwrap().jobs[0].state, JobState::Cancelled);
    assert_eq!(scripts.pids(), vec![pid]);
}

#[test]
fn dependants_of_a_service_wait_until_its_port_accepts_connections() {
    let Setup {
        master: _master,
        scripts: _,
        worker,
        mut client,
    } = setup(&["--shards", "2"]);
    let port = free_port();
    let dag = submit_dag(
        &mut client,
        &format!("WEB|DEPLOY|slow_web.sh|{port}|1|0|[] ; USER|RUN|dependant.py|1|0|[WEB]"),
    );
    let reply = client
        .wait(std::slice::from_ref(&dag[1]), support::DEADLINE)
        .unwrap();
    assert_eq!(reply.jobs[0].state, JobState::Completed);
    // The service writes `listening_at` just before it binds, 0.7 s after it starts.
    let listening = read_f64(&worker.workspace.join(&dag[0]).join("listening_at"));
    let started = read_f64(&worker.workspace.join(&dag[1]).join("started_at"));
    assert!(
        started >= listening,
        "the dependant started {:.3} s before the port opened",
        listening - started
    );
    assert!(status(&mut client, &dag[0]).ready);
}

#[test]
fn a_port_already_in_use_fails_the_deploy_at_once_without_retries() {
    let Setup {
        master: _master,
        scripts,
        worker: _worker,
        mut client,
    } = setup(&["--shards", "2"]);
    let squatter = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let svc = submit(&mut client, &format!("DEPLOY|svc.sh|{port}"));
    let reply = client
        .wait(std::slice::from_ref(&svc), support::DEADLINE)
        .unwrap();
    let s = &reply.jobs[0];
    assert_eq!((s.state, s.attempts), (JobState::Dead, 1));
    assert_eq!(
        s.last_error.as_deref(),
        Some(format!("refused: port {port} is already in use by another process").as_str())
    );
    assert!(scripts.pids().is_empty(), "the script never ran");
    drop(squatter);
}

#[test]
fn a_service_on_a_worker_that_dies_is_redeployed_on_another() {
    let master = Master::start(&["--shards", "2"]);
    let scripts = Scripts::new();
    let mut workers = vec![
        scripts.worker(&master, &["--capacity", "1"]),
        scripts.worker(&master, &["--capacity", "1"]),
    ];
    let mut client = support::connect(&master.addr);
    let port = free_port();
    let svc = submit(&mut client, &format!("DEPLOY|web.py|{port}"));
    let first = eventually("the service to be ready", || {
        Some(status(&mut client, &svc)).filter(|s| s.ready)
    });
    let host = first.worker_port.unwrap();
    let index = workers.iter().position(|w| w.port() == host).unwrap();
    let mut dead = workers.remove(index);
    let old_pid = scripts.pids()[0];
    dead.proc.signal(Signal::SIGKILL);
    dead.proc.wait_exit();
    let moved = eventually("the service to be redeployed and ready", || {
        Some(status(&mut client, &svc)).filter(|s| s.ready && s.attempts == 2)
    });
    assert_eq!(moved.worker_port, Some(workers[0].port()));
    assert_eq!((moved.state, moved.crashes), (JobState::Running, 1));
    eventually("the old process to be gone", || {
        process_gone(old_pid as u32).then_some(())
    });
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("the redeployed port accepts");
}

/// The pid of the `titan worker` listening on `port` (a child started by a DEPLOY).
fn worker_pid_on(port: u16) -> Option<i32> {
    let needle = format!("worker --port {port} ");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        (cmdline.contains(&needle) && !process_gone(pid as u32)).then_some(pid)
    })
}

#[test]
fn killing_a_child_worker_requeues_its_jobs_and_redeploys_it() {
    let master = Master::start(&["--shards", "2"]);
    // Capacity 1: the child worker's DEPLOY holds the parent's only slot, so the sleeps can only
    // run on the child.
    let _parent = Worker::start(&master.addr, &["--capacity", "1"]);
    let mut client = support::connect(&master.addr);
    let port = free_port();
    let child = submit(&mut client, &format!("DEPLOY|Worker.jar|{port}"));
    eventually("the child worker to be ready", || {
        status(&mut client, &child).ready.then_some(())
    });
    let sleeps: Vec<String> = (0..2)
        .map(|_| submit(&mut client, "SLEEP|600000"))
        .collect();
    for job in &sleeps {
        eventually("the sleep to run on the child", || {
            let s = status(&mut client, job);
            (s.state == JobState::Running && s.worker_port == Some(port)).then_some(())
        });
    }
    let pid = eventually("the child's pid", || worker_pid_on(port));
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    // The parent restarts the child on the same port; the lost sleeps run there again.
    for job in &sleeps {
        let s = eventually("the sleep to be re-queued and run again", || {
            Some(status(&mut client, job))
                .filter(|s| s.attempts == 2 && s.state == JobState::Running)
        });
        assert_eq!((s.crashes, s.failures), (1, 0));
    }
    let c = eventually("the child to be back", || {
        Some(status(&mut client, &child)).filter(|s| s.ready && s.attempts == 2)
    });
    assert_eq!(c.last_error.as_deref(), Some("killed by signal 9"));
    assert_ne!(worker_pid_on(port), Some(pid));
}
