//! Cancels, timeouts and clean-up: the whole process group goes, SIGKILL follows SIGTERM after
//! the grace period, nothing is left running or unreaped.

mod exec_support;

use exec_support::{config, is_running, proc_state, read, run, wait_until, TestDir};
use std::path::Path;
use std::time::{Duration, Instant};
use titan::worker::exec::{JobSpec, Leftovers, ProcessEngine, Program, Termination};

/// Plenty for a process to die after SIGKILL or for a script to start, even on a loaded host.
const EVENT_DEADLINE: Duration = Duration::from_secs(10);

fn spawn_child(args: &[&str]) -> Program {
    Program::perm_file(
        "spawn_child.sh",
        args.iter().map(|s| s.to_string()).collect(),
    )
}

/// Waits for spawn_child.sh (or a script like it) to write `child.pid` and returns that pid.
async fn child_pid(job_dir: &Path) -> u32 {
    let file = job_dir.join("child.pid");
    wait_until("child.pid", EVENT_DEADLINE, || file.exists()).await;
    read(&file).trim().parse().expect("a pid in child.pid")
}

async fn assert_gone(pid: u32, what: &str) {
    wait_until(what, EVENT_DEADLINE, || !is_running(pid)).await;
}

#[test]
fn cancel_kills_the_whole_process_group() {
    let dir = TestDir::new("kill-group");
    let config = config(&dir);
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let spec =
            JobSpec::new("g", "g", spawn_child(&[])).with_kill_grace(Duration::from_secs(30));
        let job = engine.launch(spec).unwrap();
        let leader = job.started().await.unwrap().pid;
        let child = child_pid(&engine.job_dir("g")).await;
        assert!(is_running(child), "the script's child runs");
        assert_ne!(child, leader);

        job.cancel();
        job.cancel(); // idempotent
        let outcome = job.outcome().await;
        assert!(
            matches!(
                outcome.termination,
                Termination::Cancelled { escalated: false }
            ),
            "SIGTERM suffices: {outcome:?}"
        );
        assert_eq!(outcome.pid, Some(leader));
        assert_eq!(proc_state(leader), None, "the leader is reaped");
        assert_gone(child, "the child to die with its group").await;
    });
}

#[test]
fn a_process_ignoring_sigterm_gets_sigkill_after_the_grace() {
    let dir = TestDir::new("kill-escalate");
    let config = config(&dir);
    let grace = Duration::from_millis(300);
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let spec = JobSpec::new("i", "i", spawn_child(&["--ignore-term"])).with_kill_grace(grace);
        let job = engine.launch(spec).unwrap();
        job.started().await.unwrap();
        let child = child_pid(&engine.job_dir("i")).await;

        let cancelled_at = Instant::now();
        job.cancel();
        let outcome = job.outcome().await;
        let took = cancelled_at.elapsed();
        assert!(
            matches!(
                outcome.termination,
                Termination::Cancelled { escalated: true }
            ),
            "{outcome:?}"
        );
        assert!(took >= grace, "SIGKILL only after the grace: {took:?}");
        assert_gone(child, "the TERM-ignoring child to be SIGKILLed").await;
    });
}

#[test]
fn a_timeout_kills_the_group_and_reports_timed_out() {
    let dir = TestDir::new("kill-timeout");
    let config = config(&dir);
    let timeout = Duration::from_millis(400);
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let spec = JobSpec::new("t", "t", spawn_child(&[])).with_timeout(timeout);
        let job = engine.launch(spec).unwrap();
        let child = child_pid(&engine.job_dir("t")).await;
        let outcome = job.outcome().await;
        assert!(
            matches!(outcome.termination, Termination::TimedOut { timeout: t, escalated: false } if t == timeout),
            "{outcome:?}"
        );
        assert!(outcome.duration >= timeout, "{outcome:?}");
        assert_gone(child, "the child to die on timeout").await;

        // The same with a process that ignores SIGTERM: SIGKILL after the grace.
        let spec = JobSpec::new("t2", "t2", spawn_child(&["--ignore-term"]))
            .with_timeout(timeout)
            .with_kill_grace(Duration::from_millis(200));
        let job = engine.launch(spec).unwrap();
        let child = child_pid(&engine.job_dir("t2")).await;
        let outcome = job.outcome().await;
        assert!(
            matches!(
                outcome.termination,
                Termination::TimedOut {
                    escalated: true,
                    ..
                }
            ),
            "{outcome:?}"
        );
        assert!(
            outcome.duration >= timeout + Duration::from_millis(200),
            "{outcome:?}"
        );
        assert_gone(child, "the TERM-ignoring child to die on timeout").await;
    });
}

#[test]
fn leftovers_of_a_finished_job_are_killed_unless_asked_to_leave_them() {
    let dir = TestDir::new("kill-leftovers");
    let config = config(&dir);
    let script =
        "sleep 600 &\necho $! > child.pid.tmp && mv child.pid.tmp child.pid\necho started\n";
    let program = Program::Inline {
        name: "bg.sh".into(),
        bytes: script.as_bytes().to_vec(),
        args: Vec::new(),
    };
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let outcome = engine
            .launch(JobSpec::new("k", "k", program.clone()))
            .unwrap()
            .outcome()
            .await;
        assert!(outcome.succeeded(), "{outcome:?}");
        let child = child_pid(&engine.job_dir("k")).await;
        assert_gone(child, "the backgrounded child of a finished job").await;

        let spec = JobSpec::new("l", "l", program).with_leftovers(Leftovers::Leave);
        let outcome = engine.launch(spec).unwrap().outcome().await;
        assert!(outcome.succeeded(), "{outcome:?}");
        let child = child_pid(&engine.job_dir("l")).await;
        assert!(is_running(child), "Leftovers::Leave keeps it");
        // This test started it, so it ends it, by pid.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    });
}

#[test]
fn a_cancel_right_after_launch_leaves_nothing_running() {
    let dir = TestDir::new("kill-early");
    let config = config(&dir);
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        for n in 0..20 {
            let name = format!("e{n}");
            let job = engine
                .launch(JobSpec::new(
                    &name,
                    &name,
                    Program::perm_file("sleep.sh", vec!["30".into()]),
                ))
                .unwrap();
            job.cancel();
            let outcome = job.outcome().await;
            assert!(
                matches!(outcome.termination, Termination::Cancelled { .. }),
                "{outcome:?}"
            );
            if let Some(pid) = outcome.pid {
                assert_eq!(proc_state(pid), None, "a started one is reaped");
            }
        }
        assert_eq!(engine.jobs_in_flight(), 0);
    });
}

#[test]
fn shutdown_cancels_every_job_and_waits() {
    let dir = TestDir::new("kill-shutdown");
    let config = config(&dir);
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let mut jobs = Vec::new();
        for n in 0..3 {
            let name = format!("s{n}");
            jobs.push(
                engine
                    .launch(JobSpec::new(&name, &name, spawn_child(&[])))
                    .unwrap(),
            );
        }
        let mut children = Vec::new();
        for n in 0..3 {
            children.push(child_pid(&engine.job_dir(&format!("s{n}"))).await);
        }
        engine.shutdown().await;
        assert_eq!(engine.jobs_in_flight(), 0);
        for job in &jobs {
            let outcome = job.try_outcome().expect("ended by shutdown");
            assert!(
                matches!(outcome.termination, Termination::Cancelled { .. }),
                "{outcome:?}"
            );
        }
        for child in children {
            assert_gone(child, "children of shut-down jobs").await;
        }
    });
}

#[test]
fn jobs_still_running_when_the_executor_ends_are_killed_and_reaped() {
    let dir = TestDir::new("kill-teardown");
    let config = config(&dir);
    let (leader, child) = run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let job = engine
            .launch(JobSpec::new("d", "d", spawn_child(&["--ignore-term"])))
            .unwrap();
        let leader = job.started().await.unwrap().pid;
        let child = child_pid(&engine.job_dir("d")).await;
        (leader, child)
        // The executor ends here with the job still running.
    });
    let deadline = Instant::now() + EVENT_DEADLINE;
    while proc_state(leader).is_some() || is_running(child) {
        assert!(
            Instant::now() < deadline,
            "leader {leader} or child {child} survived teardown"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
