//! The real `titan` binary's submitting commands (`submit`, `dag`) and `stats`, against a real
//! master (and real workers where jobs must run) on free loopback ports: what they print, what
//! reaches the master, and their exit statuses. The commands about submitted jobs are in
//! `cli_jobs.rs`.

mod support;

use serde_json::json;
use support::{
    dag_id, dead_addr, eventually, job_json, processes_in, submitted_id, titan, titan_command,
    titan_with_stdin, wait_running, Master, Worker,
};

const INCEPTION: &str = "START_DASH|DEPLOY|server_dashboard.py|1|0|[] ; WORKER_A|DEPLOY|Worker.jar|8081|1|2|[START_DASH] ; WORKER_B|DEPLOY|Worker.jar|8082|1|2|[START_DASH] ; RUN_CALC|RUN|calc.py|2|0|[WORKER_A, WORKER_B] ; WORKER_C|DEPLOY|Worker.jar|8083|1|5|[RUN_CALC]";

/// STATS of a master with no workers and no jobs, byte for byte.
const EMPTY_STATS: &str = "--- TITAN SYSTEM MONITOR ---\n\
Active Workers:    0\n\
Execution Queue:   0 jobs\n\
Delayed (Time):    0 jobs\n\
Blocked (DAG):     0 jobs\n\
Dead Letter (DLQ): 0 jobs\n\
-------------------------------\n\
[INFO] No workers currently connected.\n";

fn state(master: &str, id: &str) -> String {
    job_json(master, id)["state"]
        .as_str()
        .expect("a state name")
        .to_string()
}

/// A worker of capacity 4 running one long job, plus jobs nobody runs: two queued for a skill no
/// worker has, one delayed, one blocked behind a queued one.
fn known_state(master: &Master) -> Worker {
    let worker = Worker::start(&master.addr, &["--capacity", "4"]);
    let addr = master.addr.as_str();
    submitted_id(&titan(addr, &["submit", "SLEEP|60000"]));
    submitted_id(&titan(addr, &["submit", "EMAIL_ALERT|admin@titan.com|1|0"]));
    submitted_id(&titan(addr, &["submit", "NOOP||1|60000"]));
    titan(
        addr,
        &["dag", "A|EMAIL_ALERT|a@b.c|1|0|[] ; B|NOOP||1|0|[A]"],
    )
    .ok();
    wait_running(addr, 1);
    worker
}

#[test]
fn stats_prints_the_masters_text_exactly() {
    let master = Master::start(&["--shards", "2"]);
    assert_eq!(titan(&master.addr, &["stats"]).ok().stdout, EMPTY_STATS);

    let worker = known_state(&master);
    let expected = format!(
        "--- TITAN SYSTEM MONITOR ---\n\
         Active Workers:    1\n\
         Execution Queue:   2 jobs\n\
         Delayed (Time):    1 jobs\n\
         Blocked (DAG):     1 jobs\n\
         Dead Letter (DLQ): 0 jobs\n\
         -------------------------------\n\
         Worker Status:\n \
         • [{}] Load: 1/4 (25%)    | Skills: [GENERAL]\n",
        worker.port()
    );
    assert_eq!(titan(&master.addr, &["stats"]).ok().stdout, expected);
}

#[test]
fn stats_json_is_one_value() {
    let master = Master::start(&["--shards", "2"]);
    let worker = known_state(&master);
    let v = titan(&master.addr, &["stats", "--json"]).ok().json();
    assert_eq!(
        (
            &v["active_workers"],
            &v["queued"],
            &v["delayed"],
            &v["blocked"],
            &v["dlq"],
            &v["running"],
            &v["shards"],
            &v["persistence"]
        ),
        (
            &json!(1),
            &json!(2),
            &json!(1),
            &json!(1),
            &json!(0),
            &json!(1),
            &json!(2),
            &json!("wal")
        ),
        "{v}"
    );
    let w = &v["workers"][0];
    assert_eq!(w["port"], worker.port());
    assert_eq!((&w["capacity"], &w["running"]), (&json!(4), &json!(1)));
    assert_eq!(w["skills"], json!(["GENERAL"]));
    assert_eq!(w["services"], json!([]));
}

#[test]
fn submit_prints_the_job_id_and_the_master_holds_the_parsed_spec() {
    let master = Master::start(&["--shards", "2"]);
    let addr = master.addr.as_str();
    let id = submitted_id(&titan(addr, &["submit", "RUN|calc.py|1|0"]));
    let job = job_json(addr, &id);
    assert_eq!(job["label"], id.as_str());
    assert_eq!(
        (&job["kind"], &job["spec"], &job["skill"], &job["priority"]),
        (
            &json!("RUN"),
            &json!("RUN|calc.py|1|0"),
            &json!("GENERAL"),
            &json!(1)
        )
    );
    // No worker: it waits, queued.
    assert_eq!(
        (&job["state"], &job["retries"]),
        (&json!("QUEUED"), &json!(3))
    );

    // Defaults and the other fields of the seed's one-off syntax.
    let short = submitted_id(&titan(addr, &["submit", "RUN|calc.py"]));
    assert_eq!(job_json(addr, &short)["spec"], "RUN|calc.py|1|0");
    let pdf = submitted_id(&titan(
        addr,
        &["submit", "PDF_CONVERT|future_report.pdf|3|8000"],
    ));
    let job = job_json(addr, &pdf);
    assert_eq!(
        (&job["state"], &job["skill"], &job["priority"]),
        (&json!("PENDING"), &json!("PDF_CONVERT"), &json!(3))
    );
}

#[test]
fn submit_timeout_and_retries_reach_the_spec() {
    let master = Master::start(&["--shards", "2"]);
    let worker = Worker::start(&master.addr, &[]);
    let addr = master.addr.as_str();
    let id = submitted_id(&titan(
        addr,
        &[
            "submit",
            "RUN|sleep.sh 30",
            "--timeout",
            "300ms",
            "--retries",
            "0",
        ],
    ));
    // The attempt is killed at its timeout; with no retries left the job is dead at once.
    let run = titan(addr, &["wait", &id]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stdout, format!("{id}  DEAD  (timed out)\n"));
    let job = job_json(addr, &id);
    assert_eq!(
        (&job["retries"], &job["attempts"], &job["failures"]),
        (&json!(0), &json!(1), &json!(1)),
        "{job}"
    );
    let ran_ms =
        (job["finished_at_us"].as_u64().unwrap() - job["started_at_us"].as_u64().unwrap()) / 1000;
    assert!((300..30_000).contains(&ran_ms), "killed after {ran_ms} ms");
    eventually("the timed-out script's processes to be gone", || {
        processes_in(&worker.workspace).is_empty().then_some(())
    });
}

#[test]
fn submit_file_sends_the_script_bytes_inline() {
    let master = Master::start(&["--shards", "2"]);
    let addr = master.addr.as_str();
    let path = support::scratch_dir("submit-file").join("local.py");
    std::fs::write(&path, "print('hello from inline')\n").unwrap();
    let run = titan(
        addr,
        &[
            "submit",
            "--file",
            path.to_str().unwrap(),
            "--priority",
            "-2",
            "--delay-ms",
            "250",
            "--json",
        ],
    );
    run.ok();
    let v = run.json();
    let id = v["label"].as_str().expect("a label").to_string();
    assert!(id.starts_with("TSK-"), "{v}");
    assert_eq!(
        v["jobs"],
        json!([{ "id": v["jobs"][0]["id"], "label": id }])
    );
    let job = job_json(addr, &id);
    assert_eq!(
        (&job["kind"], &job["priority"], &job["state"]),
        (&json!("RUN_INLINE"), &json!(-2), &json!("PENDING")),
        "{job}"
    );
    // The spec shows the script's bytes in the seed's base64 form, named after the file.
    let spec = job["spec"].as_str().unwrap();
    assert_eq!(
        spec,
        "RUN_INLINE|local.py:cHJpbnQoJ2hlbGxvIGZyb20gaW5saW5lJykK|-2|250"
    );
    // Once its delay is over it waits, queued, for a worker.
    eventually("the delay to pass", || {
        (state(addr, &id) == "QUEUED").then_some(())
    });
}

#[test]
fn bad_input_is_rejected_before_anything_is_sent() {
    let master = Master::start(&["--shards", "2"]);
    let addr = master.addr.as_str();
    let run = titan(addr, &["submit", "RUN|../../etc/passwd"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: job line 1: field DATA: '..' would escape perm_files/\n"
    );
    let run = titan(addr, &["dag", "A|RUN|a.py|1|0|[B] ; B|RUN|b.py|1|0|[A]"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.starts_with("error: dependency cycle: "),
        "{run:?}"
    );
    let run = titan(addr, &["submit", "--file", "/nonexistent/x.sh"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: cannot read /nonexistent/x.sh: "),
        "{run:?}"
    );
    let jobs = titan(addr, &["jobs", "--json"]).ok().json();
    assert_eq!(jobs, json!({ "jobs": [], "truncated": false }));
}

#[test]
fn dag_prints_each_full_id_in_order() {
    let master = Master::start(&["--shards", "2"]);
    let addr = master.addr.as_str();
    let run = titan(addr, &["dag", INCEPTION]);
    let names = ["START_DASH", "WORKER_A", "WORKER_B", "RUN_CALC", "WORKER_C"];
    let dag = dag_id(&run, &names);
    let calc = job_json(addr, &format!("{dag}:RUN_CALC"));
    assert_eq!(
        (&calc["state"], &calc["priority"], &calc["deps"]),
        (
            &json!("BLOCKED"),
            &json!(2),
            &json!(["WORKER_A", "WORKER_B"])
        )
    );
    assert_eq!(
        job_json(addr, &format!("{dag}:WORKER_C"))["spec"],
        "DEPLOY|Worker.jar|8083|1|5"
    );
    // No worker: the root waits queued, everything else blocked.
    assert_eq!(state(addr, &format!("{dag}:START_DASH")), "QUEUED");
    let stats = titan(addr, &["stats", "--json"]).ok().json();
    assert_eq!(
        (&stats["queued"], &stats["blocked"]),
        (&json!(1), &json!(4))
    );
    // The same DAG again is a new run with its own id.
    let again = dag_id(&titan(addr, &["dag", INCEPTION]), &names);
    assert_ne!(again, dag);
}

#[test]
fn dag_file_is_read_and_its_errors_name_the_file_line() {
    let master = Master::start(&["--shards", "2"]);
    let addr = master.addr.as_str();
    let dir = support::scratch_dir("dag-file");
    let good = dir.join("inception.dag");
    let text = INCEPTION.replace(" ; ", "\n");
    std::fs::write(&good, format!("# Inception\n\n{text}\n")).unwrap();
    let run = titan(addr, &["dag", "-f", good.to_str().unwrap(), "--json"]);
    run.ok();
    let v = run.json();
    let label = v["label"].as_str().expect("a label");
    assert!(label.starts_with("dag-"), "{v}");
    let jobs: Vec<&str> = v["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["label"].as_str().unwrap())
        .collect();
    assert_eq!(jobs.len(), 5, "{v}");
    assert_eq!(jobs[3], format!("{label}:RUN_CALC"));

    let bad = dir.join("bad.dag");
    std::fs::write(
        &bad,
        "# line 1\nA|RUN|a.py|1|0|[]\n\nB|RUN|b.py|1|0|[A, NOPE]\n",
    )
    .unwrap();
    let run = titan(addr, &["dag", "--file", bad.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "error: {}: job line 4: \"B\" depends on unknown job \"NOPE\"\n",
            bad.display()
        )
    );
    let listed = titan(addr, &["jobs", "--json"]).ok().json();
    assert_eq!(
        listed["jobs"].as_array().map(Vec::len),
        Some(5),
        "only the good file's jobs reached the master: {listed}"
    );
}

#[test]
fn dag_file_from_stdin() {
    let master = Master::start(&["--shards", "2"]);
    let cmd = titan_command(&["dag", "-f", "-", "--master", &master.addr]);
    let run = titan_with_stdin(cmd, "A|NOOP||1|0|[]\nB|NOOP||1|0|[A]\n");
    let dag = dag_id(&run, &["A", "B"]);
    assert_eq!(
        job_json(&master.addr, &format!("{dag}:B"))["deps"],
        json!(["A"])
    );
}

#[test]
fn usage_errors_exit_2_without_contacting_the_master() {
    let master = Master::start(&["--shards", "2"]);
    let nobody = dead_addr();
    for args in [
        &["submit", "RUN|a.py", "--priority", "3"][..],
        &["submit"][..],
        &["dag", "A|NOOP||1|0|[]", "-f", "x.dag"][..],
        &["status", "a b"][..],
        &["jobs", "--state", "DONE"][..],
        &["wait"][..],
        &["wait", "TSK-1", "--timeout", "1.5s"][..],
    ] {
        // Against an address where nothing listens the command would fail to connect (exit 1,
        // or 2 for wait, saying so) if it tried.
        for addr in [master.addr.as_str(), nobody.as_str()] {
            let run = titan(addr, args);
            assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
            assert!(run.stderr.starts_with("error: "), "{args:?}: {run:?}");
            assert!(!run.stderr.contains("cannot connect"), "{args:?}: {run:?}");
        }
    }
    let jobs = titan(&master.addr, &["jobs", "--json"]).ok().json();
    assert_eq!(jobs["jobs"], json!([]));
}

#[test]
fn a_worker_with_an_invalid_skill_name_stops_at_once() {
    let out = support::titan_command(&[
        "worker",
        "--skills",
        "GENERAL,a b",
        "--master",
        &dead_addr(),
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--skills: \"A B\" is not a skill name"),
        "{stderr}"
    );
}
