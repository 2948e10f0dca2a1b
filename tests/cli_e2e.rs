//! End to end through the `titan` CLI: a real master, real workers and real job processes on free
//! loopback ports, driven only by `titan` commands as a user or a script would.

mod support;

use serde_json::{json, Value};
use support::{
    eventually, free_port, group_gone, job_json, process_gone, processes_in, submitted_id, titan,
    titan_command, KillLeftovers, Master, Run, Worker,
};

/// The full ids a successful `dag` printed, one per line.
fn dag_jobs(run: &Run) -> Vec<String> {
    run.ok();
    run.stdout.lines().map(str::to_string).collect()
}

fn us(job: &Value, field: &str) -> u64 {
    job[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {job}"))
}

#[test]
fn a_noop_job_submitted_then_waited_for_completes() {
    let master = Master::start(&["--shards", "2"]);
    let _worker = Worker::start(&master.addr, &[]);
    let addr = master.addr.as_str();
    let id = submitted_id(&titan(addr, &["submit", "NOOP"]));
    let run = titan(addr, &["wait", &id]);
    run.ok();
    assert_eq!(run.stdout, format!("{id}  COMPLETED\n"));
    let job = job_json(addr, &id);
    assert_eq!(
        (&job["state"], &job["attempts"], &job["kind"]),
        (&json!("COMPLETED"), &json!(1), &json!("NOOP"))
    );
}

#[test]
fn a_diamond_dag_from_a_file_runs_in_dependency_order() {
    let master = Master::start(&["--shards", "2"]);
    let _worker = Worker::start(&master.addr, &["--capacity", "4"]);
    let addr = master.addr.as_str();
    let file = support::scratch_dir("diamond").join("diamond.dag");
    std::fs::write(
        &file,
        "# A diamond: B and C after A, D after both.\n\
         \n\
         A|SLEEP|50|1|0|[]\n\
         B|RUN|sleep.sh 0.1|1|0|[A]\n\
         \n\
         C|RUN|calc.py 1000|1|0|[A]\n\
         # D waits for both branches.\n\
         D|RUN|calc.py 10|1|0|[B, C]\n",
    )
    .unwrap();
    let ids = dag_jobs(&titan(addr, &["dag", "-f", file.to_str().unwrap()]));
    assert_eq!(ids.len(), 4, "{ids:?}");
    let run = titan(addr, &["wait", &ids[3]]);
    run.ok();
    let jobs: Vec<Value> = ids.iter().map(|id| job_json(addr, id)).collect();
    for job in &jobs {
        assert_eq!(
            (&job["state"], &job["attempts"]),
            (&json!("COMPLETED"), &json!(1)),
            "{job}"
        );
    }
    for (child, parent) in [(1, 0), (2, 0), (3, 1), (3, 2)] {
        let (started, parent_done) = (
            us(&jobs[child], "started_at_us"),
            us(&jobs[parent], "finished_at_us"),
        );
        assert!(
            started >= parent_done,
            "{} started at {started} before {} finished at {parent_done}",
            ids[child],
            ids[parent]
        );
    }
}

#[test]
fn a_failing_script_with_one_retry_dies_and_its_descendants_never_run() {
    let master = Master::start(&["--shards", "2", "--backoff-base-ms", "50"]);
    let worker = Worker::start(&master.addr, &[]);
    let addr = master.addr.as_str();
    let ids = dag_jobs(&titan(
        addr,
        &[
            "dag",
            "X|RUN|fail.sh|1|0|[] ; Y|RUN|calc.py|1|0|[X] ; Z|NOOP||1|0|[Y]",
            "--retries",
            "1",
        ],
    ));
    let (x, y, z) = (&ids[0], &ids[1], &ids[2]);
    let run = titan(addr, &["wait", x]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stdout, format!("{x}  DEAD  (exited with code 3)\n"));
    assert_eq!(run.stderr, "error: 1 of 1 jobs did not complete\n");
    let job = job_json(addr, x);
    assert_eq!(
        (&job["attempts"], &job["failures"], &job["retries"]),
        (&json!(2), &json!(2), &json!(1)),
        "{job}"
    );
    let stderr = std::fs::read_to_string(worker.workspace.join(x).join("stderr.log")).unwrap();
    assert!(stderr.contains("failing on purpose"), "{stderr}");

    let stats = titan(addr, &["stats", "--json"]).ok().json();
    assert_eq!(stats["dlq"], 1, "{stats}");
    let text = titan(addr, &["stats"]).ok().stdout.clone();
    assert!(text.contains("\nDead Letter (DLQ): 1 jobs\n"), "{text}");

    let run = titan(addr, &["wait", y, z, "--json"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let v = run.json();
    let states: Vec<(&Value, &Value, &Value)> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (&j["label"], &j["state"], &j["attempts"]))
        .collect();
    assert_eq!(
        states,
        [
            (&json!(y), &json!("UPSTREAM_FAILED"), &json!(0)),
            (&json!(z), &json!("UPSTREAM_FAILED"), &json!(0))
        ]
    );
}

#[test]
fn wait_with_a_timeout_lists_the_unfinished_job_as_pending() {
    let master = Master::start(&["--shards", "2"]);
    let _worker = Worker::start(&master.addr, &[]);
    let addr = master.addr.as_str();
    let id = submitted_id(&titan(addr, &["submit", "SLEEP|60000"]));
    let started = std::time::Instant::now();
    let run = titan(addr, &["wait", &id, "--timeout", "200ms", "--json"]);
    let waited = started.elapsed();
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(
        run.json(),
        json!({ "jobs": [], "pending": [id], "timed_out": true })
    );
    assert!(
        waited >= std::time::Duration::from_millis(200),
        "gave up after {waited:?}"
    );
    let run = titan(addr, &["wait", &id, "--timeout", "50ms"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(run.stdout, format!("{id}  (not finished)\n"));
    assert_eq!(job_json(addr, &id)["state"], "RUNNING");
}

#[test]
fn submit_file_runs_the_inline_script_on_a_worker() {
    let master = Master::start(&["--shards", "2"]);
    let worker = Worker::start(&master.addr, &[]);
    let dir = support::scratch_dir("inline");
    std::fs::write(
        dir.join("x.sh"),
        "#!/bin/sh\necho \"inline script ran as $TITAN_JOB_ID\"\npwd\n",
    )
    .unwrap();
    // A relative path, resolved against the CLI's working directory.
    let run = Run::from(
        titan_command(&["submit", "--file", "./x.sh", "--master", &master.addr])
            .current_dir(&dir)
            .output()
            .unwrap(),
    );
    let id = submitted_id(&run);
    titan(&master.addr, &["wait", &id]).ok();
    let job_dir = worker.workspace.join(&id);
    let out = std::fs::read_to_string(job_dir.join("stdout.log")).unwrap();
    let job_dir = job_dir.canonicalize().unwrap();
    assert_eq!(
        out,
        format!("inline script ran as {id}\n{}\n", job_dir.display())
    );
}

#[test]
fn cancel_kills_a_running_job_and_its_whole_process_group() {
    let master = Master::start(&["--shards", "2"]);
    let worker = Worker::start(&master.addr, &[]);
    let addr = master.addr.as_str();
    let id = submitted_id(&titan(addr, &["submit", "RUN|spawn_child.sh"]));
    let pid_file = worker.workspace.join(&id).join("child.pid");
    let child: u32 = eventually("the job's child process to start", || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    // Field 5 of /proc/PID/stat, after the command in parentheses, is the process group.
    let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap();
    let group: u32 = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse().ok())
        .expect("a process group in /proc/PID/stat");
    assert_eq!(job_json(addr, &id)["state"], "RUNNING");
    assert!(!group_gone(group));

    let run = titan(addr, &["cancel", &id]);
    run.ok();
    assert_eq!(run.stdout, format!("cancelled {id}: 1 job\n"));
    let run = titan(addr, &["wait", &id]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stdout, format!("{id}  CANCELLED\n"));
    eventually("the job's process group to be gone", || {
        (group_gone(group) && process_gone(child)).then_some(())
    });
    eventually("the worker's slot to be free", || {
        let stats = titan(addr, &["stats", "--json"]).ok().json();
        (stats["workers"][0]["running"] == 0).then_some(())
    });
}

#[test]
fn workers_lists_every_worker_with_its_port_and_capacity() {
    let master = Master::start(&["--shards", "2"]);
    let a = Worker::start(&master.addr, &["--capacity", "2"]);
    let b = Worker::start(
        &master.addr,
        &["--capacity", "3", "--skills", "GENERAL,GPU"],
    );
    let addr = master.addr.as_str();
    let v = titan(addr, &["workers", "--json"]).ok().json();
    let mut listed: Vec<(u64, u64, Value)> = v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["port"].as_u64().unwrap(),
                w["capacity"].as_u64().unwrap(),
                w["skills"].clone(),
            )
        })
        .collect();
    listed.sort_by_key(|(port, ..)| *port);
    let mut expected = vec![
        (u64::from(a.port()), 2, json!(["GENERAL"])),
        (u64::from(b.port()), 3, json!(["GENERAL", "GPU"])),
    ];
    expected.sort_by_key(|(port, ..)| *port);
    assert_eq!(listed, expected);

    let run = titan(addr, &["workers"]);
    run.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{run:?}");
    for (port, load, skills) in [
        (a.port(), "0/2", "GENERAL"),
        (b.port(), "0/3", "GENERAL,GPU"),
    ] {
        let port = port.to_string();
        let row: Vec<&str> = lines
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cells| cells.get(1) == Some(&port.as_str()))
            .unwrap_or_else(|| panic!("no row for port {port}: {run:?}"));
        assert_eq!(row[2..7], [load, "(0%)", skills, "-", "-"], "{run:?}");
    }
}

#[test]
fn bad_input_names_the_line_and_reason_and_nothing_of_it_is_queued() {
    let master = Master::start(&["--shards", "2"]);
    let _worker = Worker::start(&master.addr, &[]);
    let addr = master.addr.as_str();
    let file = support::scratch_dir("bad-dag").join("bad.dag");
    std::fs::write(&file, "# c\nA|NOOP||1|0|[]\nB|NOOP||high|0|[A]\n").unwrap();
    let file_arg = file.to_str().unwrap();
    let cases: [(&[&str], String); 5] = [
        (
            &["submit", "RUN|../../etc/passwd"],
            "error: job line 1: field DATA: '..' would escape perm_files/\n".into(),
        ),
        (
            &["dag", "A|RUN|calc.py|1|0|[B] ; B|RUN|calc.py|1|0|[A]"],
            "error: dependency cycle: A -> B -> A\n".into(),
        ),
        (
            &["dag", "A|RUN|calc.py|1|0|[] ; B|RUN|calc.py|1|0|[NOPE]"],
            "error: job line 2: \"B\" depends on unknown job \"NOPE\"\n".into(),
        ),
        (
            &["dag", "A|NOOP||1|0|[] ; A|NOOP||1|0|[]"],
            "error: job line 2: id \"A\" is already used by job line 1\n".into(),
        ),
        (
            &["dag", "-f", file_arg],
            format!(
                "error: {file_arg}: job line 3 (B): field PRIORITY: not an integer: \"high\"\n"
            ),
        ),
    ];
    for (args, stderr) in cases {
        let run = titan(addr, args);
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
        assert_eq!(run.stdout, "", "{args:?}");
        assert_eq!(run.stderr, stderr, "{args:?}");
    }
    assert_eq!(
        titan(addr, &["jobs", "--json"]).ok().json(),
        json!({ "jobs": [], "truncated": false })
    );
    let stats = titan(addr, &["stats", "--json"]).ok().json();
    assert_eq!(
        (&stats["queued"], &stats["blocked"], &stats["running"]),
        (&json!(0), &json!(0), &json!(0))
    );
}

#[test]
fn cancel_gives_a_job_that_handles_sigterm_the_chance_to_clean_up() {
    let master = Master::start(&["--shards", "2"]);
    let worker = Worker::start(&master.addr, &[]);
    let dir = support::scratch_dir("graceful");
    std::fs::write(
        dir.join("graceful.py"),
        "import signal, sys, time\n\
         def on_term(*_):\n    print('cleaning up', flush=True)\n    sys.exit(0)\n\
         signal.signal(signal.SIGTERM, on_term)\n\
         print('ready', flush=True)\n\
         time.sleep(600)\n",
    )
    .unwrap();
    let run = Run::from(
        titan_command(&[
            "submit",
            "--file",
            "./graceful.py",
            "--master",
            &master.addr,
        ])
        .current_dir(&dir)
        .output()
        .unwrap(),
    );
    let id = submitted_id(&run);
    let log = worker.workspace.join(&id).join("stdout.log");
    // The whole line: `python3 -u` writes "ready" and its newline separately, and a SIGTERM in
    // between ends the job before the newline.
    eventually("the job to install its handler", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|out| out.contains("ready\n"))
    });
    titan(&master.addr, &["cancel", &id]).ok();
    eventually("the job's processes to be gone", || {
        processes_in(&worker.workspace).is_empty().then_some(())
    });
    let out = std::fs::read_to_string(&log).unwrap();
    assert_eq!(out, "ready\ncleaning up\n", "SIGTERM never reached the job");
}

#[test]
fn a_killed_workers_inception_grandchildren_die_with_it() {
    let master = Master::start(&["--shards", "2"]);
    let addr = master.addr.as_str();
    let leftovers: KillLeftovers;
    // Capacity 1: the child worker takes this worker's only slot, so the grandchild is deployed
    // on the child worker.
    let mut worker = Worker::start(addr, &["--capacity", "1"]);
    leftovers = KillLeftovers(vec![worker.workspace.clone()]);
    let (child_port, grandchild_port) = (free_port(), free_port());
    let ids = dag_jobs(&titan(
        addr,
        &[
            "dag",
            &format!(
                "CHILD|DEPLOY|Worker.jar|{child_port}|1|0|[] ; \
                 GRANDCHILD|DEPLOY|Worker.jar|{grandchild_port}|1|0|[CHILD]"
            ),
        ],
    ));
    eventually("the grandchild worker to be up", || {
        (job_json(addr, &ids[1])["ready"] == true).then_some(())
    });
    worker.proc.signal(nix::sys::signal::Signal::SIGKILL);
    worker.proc.wait_exit();
    eventually("every process under the killed worker to be gone", || {
        processes_in(&leftovers.0[0]).is_empty().then_some(())
    });
}
