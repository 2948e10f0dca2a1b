//! The real `titan` binary's commands about jobs already submitted and the cluster (`status`,
//! `jobs`, `workers`, `cancel`, `stop`, `wait`), against a real master and real workers on free
//! loopback ports: what they print, their errors and their exit statuses.

mod support;

use serde_json::{json, Value};
use support::{
    dag_id, dead_addr, eventually, free_port, job_json, processes_in, submitted_id, titan,
    titan_command, wait_running, Master, Run, Worker,
};
use titan::core::ids::WorkerId;

fn state(master: &str, id: &str) -> String {
    job_json(master, id)["state"]
        .as_str()
        .expect("a state name")
        .to_string()
}

#[test]
fn status_prints_a_block_or_one_json_value() {
    let master = Master::start(&["--shards", "2"]);
    let worker = Worker::start(&master.addr, &[]);
    let addr = master.addr.as_str();
    let run = titan(addr, &["dag", "LONG|SLEEP|60000|1|0|[]"]);
    let label = format!("{}:LONG", dag_id(&run, &["LONG"]));
    wait_running(addr, 1);
    let job = job_json(addr, &label);
    let workers = titan(addr, &["workers", "--json"]).ok().json();
    let worker_id = WorkerId(workers["workers"][0]["id"].as_u64().unwrap() as u32);

    let run = titan(addr, &["status", &label]);
    run.ok();
    assert!(
        run.stdout.starts_with(&format!(
            "Job:        {label} (id {})\nState:      RUNNING (since ",
            job["id"]
        )),
        "{run:?}"
    );
    for line in [
        "Kind:       SLEEP\n".to_string(),
        "Spec:       SLEEP|60000|1|0\n".to_string(),
        format!("Worker:     {worker_id} on port {}\n", worker.port()),
        "Finished:   -\n".to_string(),
        "Deps:       -\n".to_string(),
    ] {
        assert!(run.stdout.contains(&line), "no {line:?} in {run:?}");
    }
    // The bare name means the most recent job of that name.
    assert_eq!(titan(addr, &["status", "LONG"]).ok().stdout, run.stdout);

    // A reference in any case reaches the master in its canonical spelling.
    let id = submitted_id(&titan(addr, &["submit", "EMAIL_ALERT|admin@titan.com|1|0"]));
    let run = titan(addr, &["status", &id.to_lowercase(), "--json"]);
    run.ok();
    let v = run.json();
    let mut client = support::connect(addr);
    let direct = serde_json::to_value(client.status(&id).unwrap()).unwrap();
    assert_eq!(v, direct);
    assert_eq!((&v["label"], &v["state"]), (&json!(id), &json!("QUEUED")));
}

#[test]
fn a_master_error_goes_to_stderr_with_status_1() {
    let master = Master::start(&["--shards", "2"]);
    for (args, message) in [
        (&["status", "TSK-404"][..], "unknown job TSK-404"),
        (&["status", "NOPE"][..], "no job named NOPE"),
        (&["cancel", "TSK-404"][..], "unknown job TSK-404"),
    ] {
        let run = titan(&master.addr, args);
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
        assert_eq!(run.stdout, "", "{args:?}");
        assert_eq!(run.stderr, format!("error: {message}\n"), "{args:?}");
    }
}

#[test]
fn an_unreachable_master_is_an_error() {
    let addr = dead_addr();
    let run = titan(&addr, &["stats"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr
            .starts_with(&format!("error: cannot connect to the master at {addr}: ")),
        "{run:?}"
    );
}

#[test]
fn titan_master_env_sets_the_default_address() {
    let master = Master::start(&["--shards", "2"]);
    let worker = Worker::start(&master.addr, &[]);
    let run = Run::from(
        titan_command(&["workers", "--json"])
            .env("TITAN_MASTER", &master.addr)
            .output()
            .unwrap(),
    );
    run.ok();
    assert_eq!(run.json()["workers"][0]["port"], worker.port());
}

/// The cells of a table line (no cell in these tables holds a space).
fn cells(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[test]
fn jobs_and_workers_print_tables() {
    let master = Master::start(&["--shards", "2"]);
    let worker = Worker::start(&master.addr, &["--capacity", "4"]);
    let addr = master.addr.as_str();
    let long = submitted_id(&titan(addr, &["submit", "SLEEP|60000"]));
    wait_running(addr, 1);
    let queued = submitted_id(&titan(addr, &["submit", "EMAIL_ALERT|admin@titan.com|1|0"]));
    let port = worker.port().to_string();

    let run = titan(addr, &["jobs", "--state", "running", "--limit", "5"]);
    run.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert_eq!(
        cells(lines[0]),
        ["JOB", "STATE", "TYPE", "PRI", "TRIES", "WORKER", "AGE", "SPEC"]
    );
    let row = cells(lines[1]);
    assert_eq!(
        (row[..6].to_vec(), row[7]),
        (
            vec![long.as_str(), "RUNNING", "SLEEP", "1", "1", port.as_str()],
            "SLEEP|60000|1|0"
        ),
        "{run:?}"
    );

    // Newest first.
    let v = titan(addr, &["jobs", "--json"]).ok().json();
    assert_eq!(v["truncated"], false);
    let listed: Vec<(&Value, &Value)> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (&j["label"], &j["state"]))
        .collect();
    assert_eq!(
        listed,
        [
            (&json!(queued), &json!("QUEUED")),
            (&json!(long), &json!("RUNNING"))
        ]
    );
    let run = titan(addr, &["jobs", "--limit", "1"]);
    run.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{run:?}");
    assert_eq!(cells(lines[1])[0], queued);
    assert_eq!(
        lines[2],
        "(1 shown; more jobs match, raise --limit to see them)"
    );

    let run = titan(addr, &["workers"]);
    run.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert_eq!(
        cells(lines[0]),
        ["WORKER", "PORT", "LOAD", "SKILLS", "PARENT", "SERVICES", "SEEN"]
    );
    assert_eq!(
        cells(lines[1])[1..7],
        [port.as_str(), "1/4", "(25%)", "GENERAL", "-", "-"],
        "{run:?}"
    );
}

#[test]
fn cancel_and_stop_report_what_happened() {
    let master = Master::start(&["--shards", "2"]);
    let worker = Worker::start(&master.addr, &[]);
    let addr = master.addr.as_str();
    // Cancelling a whole DAG: its queued root and the child waiting for it.
    let run = titan(
        addr,
        &["dag", "A|EMAIL_ALERT|a@b.c|1|0|[] ; B|NOOP||1|0|[A]"],
    );
    let dag = dag_id(&run, &["A", "B"]);
    let run = titan(addr, &["cancel", &dag]);
    run.ok();
    assert_eq!(run.stdout, format!("cancelled {dag}: 2 jobs\n"));
    assert_eq!(state(addr, &format!("{dag}:B")), "CANCELLED");
    // Refusals name jobs the way the user does.
    let run = titan(addr, &["cancel", &format!("{dag}:B")]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains(&format!("job {dag}:B already finished (CANCELLED)")),
        "{}",
        run.stderr
    );
    let run = titan(addr, &["stop", &format!("{dag}:A")]);
    assert!(
        run.stderr
            .contains(&format!("job {dag}:A is not a service")),
        "{}",
        run.stderr
    );

    // A service on a free port: listed with its worker until it is stopped.
    let port = free_port();
    let run = titan(
        addr,
        &[
            "dag",
            &format!("DASH|DEPLOY|server_dashboard.py|{port}|1|0|[]"),
        ],
    );
    let dash = format!("{}:DASH", dag_id(&run, &["DASH"]));
    eventually("the dashboard to be ready", || {
        (job_json(addr, &dash)["ready"] == true).then_some(())
    });
    let stats = titan(addr, &["stats"]).ok().stdout.clone();
    assert!(
        stats.contains(&format!(
            " • [{}] Load: 1/4 (25%)    | Skills: [GENERAL]\n    └── \u{2699}\u{fe0f} Service ID: {dash}\n",
            worker.port()
        )),
        "{stats}"
    );
    let workers = titan(addr, &["workers"]).ok().stdout.clone();
    assert!(workers.contains(&format!("  {dash}  ")), "{workers}");
    assert!(!processes_in(&worker.workspace).is_empty());

    let run = titan(addr, &["stop", "DASH", "--json"]);
    run.ok();
    assert_eq!(run.stdout, format!("{{\"label\":\"{dash}\"}}\n"));
    assert_eq!(state(addr, &dash), "CANCELLED");
    eventually("the stopped service's processes to be gone", || {
        processes_in(&worker.workspace).is_empty().then_some(())
    });
}

#[test]
fn wait_exit_statuses_distinguish_success_failure_and_timeout() {
    let master = Master::start(&["--shards", "2"]);
    let _worker = Worker::start(&master.addr, &[]);
    let addr = master.addr.as_str();
    let noop = submitted_id(&titan(addr, &["submit", "NOOP"]));
    let dag = dag_id(&titan(addr, &["dag", "A|NOOP||1|0|[]"]), &["A"]);
    let a = format!("{dag}:A");
    let run = titan(addr, &["wait", &noop, &a]);
    run.ok();
    let w = noop.len().max(a.len());
    assert_eq!(
        run.stdout,
        format!("{noop:<w$}  COMPLETED\n{a:<w$}  COMPLETED\n")
    );

    let fail = submitted_id(&titan(addr, &["submit", "RUN|fail.sh", "--retries", "0"]));
    let run = titan(addr, &["wait", &noop, &fail]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let w = noop.len().max(fail.len());
    assert_eq!(
        run.stdout,
        format!("{noop:<w$}  COMPLETED\n{fail:<w$}  DEAD  (exited with code 3)\n")
    );
    assert_eq!(run.stderr, "error: 1 of 2 jobs did not complete\n");

    let slow = submitted_id(&titan(addr, &["submit", "SLEEP|60000"]));
    let run = titan(addr, &["wait", &slow, "--timeout", "100ms", "--json"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(
        run.json(),
        json!({ "jobs": [], "pending": [slow], "timed_out": true })
    );
    assert_eq!(
        run.stderr,
        "error: timed out with 1 of 1 jobs unfinished after 100ms\n"
    );

    let run = titan(&dead_addr(), &["wait", &noop]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.starts_with("error: cannot connect"), "{run:?}");
}

#[test]
fn workers_seen_is_current_whichever_shard_answers() {
    // Heartbeats reach only a worker's home shard; the others' view of it goes stale. Whichever
    // shard a client lands on, `workers` must report the home shard's figure.
    let master = Master::start(&["--shards", "2", "--heartbeat-ms", "200"]);
    let _workers = [
        Worker::start(&master.addr, &[]),
        Worker::start(&master.addr, &[]),
    ];
    // Long enough for a stale figure (time since registration) to exceed the timeout below.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    // Each command is a new connection, spread over both shards by the kernel.
    for _ in 0..8 {
        let listed = titan(&master.addr, &["workers", "--json"]).ok().json();
        let workers = listed["workers"].as_array().expect("a list of workers");
        assert_eq!(workers.len(), 2, "{workers:?}");
        for w in workers {
            let silent = w["silent_for_ms"].as_u64().expect("silent_for_ms");
            // Five missed 200 ms beats would have made it dead.
            assert!(
                silent < 1000,
                "a live worker reported silent for {silent} ms: {w}"
            );
        }
    }
}
