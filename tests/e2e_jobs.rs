//! Real jobs end to end: a real master, real workers, real processes, on free loopback ports.

mod support;

use std::time::{Duration, Instant};

use support::{eventually, process_gone, Master, Worker};
use titan::cli::client::Client;
use titan::core::grammar::{parse_dag, parse_one_off};
use titan::core::{JobState, Submission};
use titan::proto::message::client::{JobStatus, Submitted};

fn submit(client: &mut Client, text: &str) -> Submitted {
    client
        .submit(Submission::OneOff(parse_one_off(text).expect("valid job")))
        .expect("accepted")
}

fn submit_dag(client: &mut Client, text: &str) -> Submitted {
    client
        .submit(Submission::Dag(parse_dag(text).expect("valid DAG")))
        .expect("accepted")
}

fn wait_terminal(client: &mut Client, label: &str) -> JobStatus {
    let reply = client
        .wait(&[label.to_string()], support::DEADLINE)
        .expect("wait");
    assert!(!reply.timed_out, "{label} did not finish in time");
    reply.jobs.into_iter().next().expect("one job")
}

fn state_of(client: &mut Client, label: &str) -> JobState {
    client.status(label).expect("status").state
}

#[test]
fn the_seeds_one_off_commands_run_or_wait_visibly() {
    let master = Master::start(&["--shards", "2"]);
    let worker = Worker::start(&master.addr, &[]);
    let mut client = support::connect(&master.addr);
    let calc = submit(&mut client, "RUN|calc.py");
    let delayed = submit(&mut client, "PDF_CONVERT|future_report.pdf|1|8000");
    let email = submit(&mut client, "EMAIL_ALERT|admin@titan.com|1|0");
    let done = wait_terminal(&mut client, &calc.label);
    assert_eq!(done.state, JobState::Completed);
    let output =
        std::fs::read_to_string(worker.workspace.join(&calc.label).join("stdout.log")).unwrap();
    assert!(output.contains("primes"), "calc.py output: {output}");
    // No worker advertises these skills: they wait, visible, and are never dropped.
    assert_eq!(state_of(&mut client, &delayed.label), JobState::Pending);
    assert_eq!(state_of(&mut client, &email.label), JobState::Queued);
    let stats = client.stats_text().unwrap();
    assert!(stats.contains("Execution Queue:   1 jobs"), "{stats}");
    assert!(stats.contains("Delayed (Time):    1 jobs"), "{stats}");
    assert!(
        stats.contains(&format!(" • [{}] Load: ", worker.port())),
        "{stats}"
    );
}

#[test]
fn a_diamond_dag_runs_in_dependency_order() {
    let master = Master::start(&["--shards", "2"]);
    let _worker = Worker::start(&master.addr, &["--capacity", "4"]);
    let mut client = support::connect(&master.addr);
    let dag = "A|RUN|sleep.sh 0.2|1|0|[] ; B|RUN|sleep.sh 0.2|1|0|[A] ; C|RUN|calc.py|1|0|[A] ; D|RUN|calc.py|1|0|[B, C]";
    let reply = submit_dag(&mut client, dag);
    let d = wait_terminal(&mut client, &reply.jobs[3].label);
    assert_eq!(d.state, JobState::Completed);
    let status: Vec<JobStatus> = reply
        .jobs
        .iter()
        .map(|j| client.status(&j.label).unwrap())
        .collect();
    let started = |i: usize| status[i].started_at_us.expect("started");
    let finished = |i: usize| status[i].finished_at_us.expect("finished");
    for (child, parent) in [(1, 0), (2, 0), (3, 1), (3, 2)] {
        assert!(
            started(child) >= finished(parent),
            "{} started at {} before {} finished at {}",
            status[child].label,
            started(child),
            status[parent].label,
            finished(parent)
        );
    }
    assert!(status
        .iter()
        .all(|s| s.state == JobState::Completed && s.attempts == 1));
}

#[test]
fn a_failing_job_retries_with_backoff_then_dies_and_its_descendants_never_run() {
    let master = Master::start(&["--shards", "2", "--backoff-base-ms", "100"]);
    let _worker = Worker::start(&master.addr, &[]);
    let mut client = support::connect(&master.addr);
    let started = Instant::now();
    let reply = submit_dag(
        &mut client,
        "X|RUN|fail.sh|1|0|[] ; Y|RUN|calc.py|1|0|[X] ; Z|RUN|calc.py|1|0|[Y]",
    );
    let z = wait_terminal(&mut client, &reply.jobs[2].label);
    let elapsed = started.elapsed();
    assert_eq!(z.state, JobState::UpstreamFailed);
    assert_eq!(
        state_of(&mut client, &reply.jobs[1].label),
        JobState::UpstreamFailed
    );
    let x = client.status(&reply.jobs[0].label).unwrap();
    assert_eq!(
        (x.state, x.attempts, x.failures),
        (JobState::Dead, 4, 4),
        "{x:?}"
    );
    assert!(
        x.last_error.as_deref().unwrap_or_default().contains('3'),
        "exit code 3 reported: {x:?}"
    );
    // Backoffs of 100, 200 and 400 ms, each shortened by at most 50% jitter.
    assert!(
        elapsed >= Duration::from_millis(350),
        "three retries took only {elapsed:?}"
    );
    let stats = client.stats().unwrap();
    assert_eq!(stats.dlq, 1);
    assert!(client
        .stats_text()
        .unwrap()
        .contains("Dead Letter (DLQ): 1 jobs"));
}

#[test]
fn cancelling_a_running_shell_job_kills_its_whole_process_group() {
    let master = Master::start(&["--shards", "2"]);
    let worker = Worker::start(&master.addr, &[]);
    let mut client = support::connect(&master.addr);
    let job = submit(&mut client, "RUN|spawn_child.sh");
    let pid_file = worker.workspace.join(&job.label).join("child.pid");
    let child: u32 = eventually("the job's child to start", || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    assert!(!process_gone(child));
    assert_eq!(client.cancel(&job.label).unwrap().jobs, 1);
    assert_eq!(
        wait_terminal(&mut client, &job.label).state,
        JobState::Cancelled
    );
    eventually("the child process to die with its group", || {
        process_gone(child).then_some(())
    });
    // The slot was given back once the worker reported the killed attempt.
    eventually("the worker's slot to be free", || {
        (client.stats().unwrap().workers[0].running == 0).then_some(())
    });
}

#[test]
fn a_job_on_a_worker_killed_by_sigkill_completes_on_the_other_worker_once() {
    let master = Master::start(&["--shards", "2", "--heartbeat-ms", "200"]);
    let mut doomed = Worker::start(&master.addr, &["--capacity", "1"]);
    let marks = support::scratch_dir("marks").join("runs");
    let mut client = support::connect(&master.addr);
    let job = submit(&mut client, &format!("RUN|mark.sh {} 1", marks.display()));
    let first: u32 = eventually("the job to start on the first worker", || {
        let text = std::fs::read_to_string(&marks).ok()?;
        text.lines()
            .next()?
            .strip_prefix("start ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    let _survivor = Worker::start(&master.addr, &[]);
    doomed.proc.signal(nix::sys::signal::Signal::SIGKILL);
    doomed.proc.wait_exit();
    // The job's whole process group (the script and its `sleep`) dies with its worker instead
    // of finishing unsupervised.
    eventually("the orphaned attempt's group to die", || {
        support::group_gone(first).then_some(())
    });
    let done = wait_terminal(&mut client, &job.label);
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(
        (done.attempts, done.crashes, done.failures),
        (2, 1, 0),
        "{done:?}"
    );
    let text = std::fs::read_to_string(&marks).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("done")).count(),
        1,
        "runs recorded: {text}"
    );
}

#[test]
fn least_connections_spreads_eight_long_jobs_four_and_four() {
    let master = Master::start(&["--shards", "2"]);
    let a = Worker::start(&master.addr, &["--capacity", "4"]);
    let b = Worker::start(&master.addr, &["--capacity", "4"]);
    let mut client = support::connect(&master.addr);
    let jobs: Vec<Submitted> = (0..8).map(|_| submit(&mut client, "SLEEP|30000")).collect();
    let loads = eventually("all eight jobs to run", || {
        let stats = client.stats().unwrap();
        let running: u32 = stats.workers.iter().map(|w| w.running).sum();
        (running == 8).then(|| {
            stats
                .workers
                .iter()
                .map(|w| (w.port, w.running))
                .collect::<Vec<_>>()
        })
    });
    let mut expected = vec![(a.port(), 4), (b.port(), 4)];
    let mut loads = loads;
    loads.sort();
    expected.sort();
    assert_eq!(loads, expected);
    for job in &jobs {
        client.cancel(&job.label).unwrap();
    }
}

#[test]
fn bad_input_gets_a_clear_error_and_nothing_of_it_runs() {
    let master = Master::start(&["--shards", "2"]);
    let _worker = Worker::start(&master.addr, &[]);
    let titan = |args: &[&str]| {
        support::with_keys(&mut std::process::Command::new(support::titan_bin()))
            .args(args)
            .env("TITAN_MASTER", &master.addr)
            .output()
            .expect("running titan")
    };
    let cases = [
        ("A|RUN|calc.py|1|0|[] ; B|RUN|calc.py|1|0|[NOPE]", "NOPE"),
        ("A|RUN|calc.py|1|0|[B] ; B|RUN|calc.py|1|0|[A]", "cycle"),
        (
            "A|RUN|calc.py|1|0|[] ; A|RUN|calc.py|1|0|[]",
            "already used",
        ),
        ("A|RUN|calc.py|1|0|[] ; B|RUN|calc.py|high|0|[A]", "line 2"),
        ("A|RUN|../../etc/passwd|1|0|[]", "escape perm_files"),
    ];
    for (dag, expect) in cases {
        let out = titan(&["dag", dag]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{dag} was accepted");
        assert!(
            stderr.to_lowercase().contains(&expect.to_lowercase()),
            "{dag}: error does not mention {expect}: {stderr}"
        );
    }
    let out = titan(&["submit", "RUN|../../etc/passwd"]);
    assert!(!out.status.success());
    let mut client = support::connect(&master.addr);
    assert!(
        client.jobs(None, 100).unwrap().jobs.is_empty(),
        "nothing of the bad input was queued"
    );
}

#[test]
fn stopping_a_python_service_ends_it_with_sigterm_not_the_sigkill_fallback() {
    let master = Master::start(&["--shards", "2"]);
    // A grace longer than the test's deadline: only a SIGTERM the job can see ends it in time.
    let worker = Worker::start(&master.addr, &["--kill-grace-ms", "60000"]);
    let port = support::free_port();
    let mut client = support::connect(&master.addr);
    let service = submit(&mut client, &format!("DEPLOY|server_dashboard.py|{port}"));
    eventually("the service to be ready", || {
        client.status(&service.label).ok().filter(|s| s.ready)
    });
    client.stop(&service.label).unwrap();
    assert_eq!(
        wait_terminal(&mut client, &service.label).state,
        JobState::Cancelled
    );
    let log =
        std::fs::read_to_string(worker.workspace.join(&service.label).join("stdout.log")).unwrap();
    assert!(log.contains("dashboard listening"), "{log}");
    eventually("the port to close", || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
}

#[test]
fn job_nice_lowers_the_priority_of_job_processes() {
    let master = Master::start(&["--shards", "1"]);
    let worker = Worker::start(&master.addr, &["--job-nice", "7"]);
    let mut client = support::connect(&master.addr);
    let script = "#!/bin/sh\nawk '{print $19}' /proc/$$/stat\n";
    let spec = titan::core::JobSpec::new(titan::core::JobKind::RunInline {
        name: "nice.sh".into(),
        bytes: script.as_bytes().into(),
    });
    let job = client.submit(Submission::OneOff(spec)).unwrap().label;
    assert_eq!(wait_terminal(&mut client, &job).state, JobState::Completed);
    let out = std::fs::read_to_string(worker.workspace.join(&job).join("stdout.log")).unwrap();
    assert_eq!(out.trim(), "7");
}

/// With prefetching on, a worker of capacity 1 holds short jobs beyond it (NOOPs at once,
/// `/bin/true` through the worker's launch queue once its processes turn over): every job still
/// completes, and nothing is left queued, running or dead. (Whether a job was prefetched is
/// checked by the core's tests; here it is that the whole path still delivers.)
#[test]
fn prefetched_jobs_all_complete() {
    let master = Master::start(&["--shards", "1", "--prefetch", "8"]);
    let perm = support::scratch_dir("prefetch-perm");
    std::fs::copy("/bin/true", perm.join("true")).expect("copying /bin/true");
    let perm = perm.display().to_string();
    let _worker = Worker::start(&master.addr, &["--capacity", "1", "--perm-files", &perm]);
    for (kind, jobs) in [("noop", "3000"), ("true", "300")] {
        let (ok, out) = support::loadgen(&[
            "e2e",
            "--addr",
            &master.addr,
            "--jobs",
            jobs,
            "--depth",
            "64",
            "--kind",
            kind,
            "--json",
        ]);
        assert!(ok, "loadgen e2e {kind} failed: {out}");
        let report: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON value");
        assert_eq!(report["jobs"].as_u64(), jobs.parse().ok(), "{report}");
    }
    let mut client = support::connect(&master.addr);
    let stats = client.stats().expect("stats");
    assert_eq!(
        (stats.completed, stats.queued, stats.running, stats.dlq),
        (3300, 0, 0, 0),
        "{stats:?}"
    );
}
