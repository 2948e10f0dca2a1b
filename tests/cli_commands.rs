//! The real `titan` binary's client subcommands against a scripted master ([`cli_fake`]): what
//! they send, what they print, and their exit statuses.

mod cli_fake;

use cli_fake::{dead_addr, job, sample_stats, scratch_dir, titan_command, FakeMaster, Run};
use titan::core::grammar::{parse_dag, parse_one_off};
use titan::core::model::{JobKind, JobState, Submission};
use titan::proto::message::client::{JobQuery, ListJobsRequest, WaitRequest};
use titan::proto::OpCode;

const INCEPTION: &str = "START_DASH|DEPLOY|server_dashboard.py|1|0|[] ; WORKER_A|DEPLOY|Worker.jar|8081|1|2|[START_DASH] ; WORKER_B|DEPLOY|Worker.jar|8082|1|2|[START_DASH] ; RUN_CALC|RUN|calc.py|2|0|[WORKER_A, WORKER_B] ; WORKER_C|DEPLOY|Worker.jar|8083|1|5|[RUN_CALC]";

fn ok(run: &Run) {
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stderr, "", "{run:?}");
}

fn one_json(run: &Run) -> serde_json::Value {
    let mut values = serde_json::Deserializer::from_str(&run.stdout).into_iter();
    let value = values.next().expect("one JSON value").expect("valid JSON");
    assert!(values.next().is_none(), "more than one value: {run:?}");
    value
}

#[test]
fn stats_prints_the_masters_text_exactly() {
    let fake = FakeMaster::start();
    let run = fake.titan(&["stats"]);
    ok(&run);
    assert_eq!(run.stdout, sample_stats().render_text());
    assert!(run
        .stdout
        .ends_with("Persistence:       memory only (a master restart loses all jobs)\n"));
    assert_eq!(fake.opcodes(), [OpCode::Stats]);
}

#[test]
fn stats_json_is_one_value() {
    let fake = FakeMaster::start();
    let run = fake.titan(&["stats", "--json"]);
    ok(&run);
    let v = one_json(&run);
    assert_eq!(v["blocked"], 3);
    assert_eq!(v["workers"][0]["services"][1], "dag-5:START_DASH");
    assert_eq!(fake.opcodes(), [OpCode::StatsJson]);
}

#[test]
fn submit_prints_the_job_id_and_sends_the_parsed_spec() {
    let fake = FakeMaster::start();
    let run = fake.titan(&["submit", "RUN|calc.py|1|0"]);
    ok(&run);
    assert_eq!(run.stdout, "TSK-17\n");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header.opcode, OpCode::SubmitJob);
    assert_eq!(
        requests[0].submission(),
        Submission::OneOff(parse_one_off("RUN|calc.py|1|0").unwrap())
    );
}

#[test]
fn submit_timeout_and_retries_reach_the_spec() {
    let fake = FakeMaster::start();
    let run = fake.titan(&["submit", "NOOP", "--timeout", "2m", "--retries", "0"]);
    ok(&run);
    let Submission::OneOff(spec) = fake.requests()[0].submission() else {
        panic!("not a one-off");
    };
    assert_eq!(spec.timeout_ms.map(|t| t.get()), Some(120_000));
    assert_eq!(spec.retries, 0);
}

#[test]
fn submit_file_sends_the_script_bytes_inline() {
    let fake = FakeMaster::start();
    let path = scratch_dir("submit-file").join("local.py");
    std::fs::write(&path, "print('hello from inline')\n").unwrap();
    let path_arg = path.to_str().unwrap();
    let run = fake.titan(&[
        "submit",
        "--file",
        path_arg,
        "--priority",
        "-2",
        "--delay-ms",
        "250",
        "--json",
    ]);
    ok(&run);
    let v = one_json(&run);
    assert_eq!(v["label"], "TSK-17");
    assert_eq!(v["jobs"][0]["label"], "TSK-17");
    let Submission::OneOff(spec) = fake.requests()[0].submission() else {
        panic!("not a one-off");
    };
    assert_eq!(
        spec.kind,
        JobKind::RunInline {
            name: "local.py".into(),
            bytes: b"print('hello from inline')\n".to_vec().into()
        }
    );
    assert_eq!((spec.priority, spec.delay_ms), (-2, 250));
}

#[test]
fn bad_input_is_rejected_before_anything_is_sent() {
    let fake = FakeMaster::start();
    let run = fake.titan(&["submit", "RUN|../../etc/passwd"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: job line 1: field DATA: '..' would escape perm_files/\n"
    );
    let run = fake.titan(&["dag", "A|RUN|a.py|1|0|[B] ; B|RUN|b.py|1|0|[A]"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.starts_with("error: dependency cycle: "),
        "{run:?}"
    );
    let run = fake.titan(&["submit", "--file", "/nonexistent/x.sh"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: cannot read /nonexistent/x.sh: "),
        "{run:?}"
    );
    assert!(fake.requests().is_empty());
}

#[test]
fn dag_prints_each_full_id_in_order() {
    let fake = FakeMaster::start();
    let run = fake.titan(&["dag", INCEPTION]);
    ok(&run);
    assert_eq!(
        run.stdout,
        "dag-5:START_DASH\ndag-5:WORKER_A\ndag-5:WORKER_B\ndag-5:RUN_CALC\ndag-5:WORKER_C\n"
    );
    assert_eq!(
        fake.requests()[0].submission(),
        Submission::Dag(parse_dag(INCEPTION).unwrap())
    );
    assert_eq!(fake.opcodes(), [OpCode::SubmitDag]);
}

#[test]
fn dag_file_is_read_and_its_errors_name_the_file_line() {
    let fake = FakeMaster::start();
    let dir = scratch_dir("dag-file");
    let good = dir.join("inception.dag");
    let text = INCEPTION.replace(" ; ", "\n");
    std::fs::write(&good, format!("# Inception\n\n{text}\n")).unwrap();
    let run = fake.titan(&["dag", "-f", good.to_str().unwrap(), "--json"]);
    ok(&run);
    let v = one_json(&run);
    assert_eq!(v["label"], "dag-5");
    assert_eq!(v["jobs"].as_array().map(Vec::len), Some(5));

    let bad = dir.join("bad.dag");
    std::fs::write(
        &bad,
        "# line 1\nA|RUN|a.py|1|0|[]\n\nB|RUN|b.py|1|0|[A, NOPE]\n",
    )
    .unwrap();
    let run = fake.titan(&["dag", "--file", bad.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "error: {}: job line 4: \"B\" depends on unknown job \"NOPE\"\n",
            bad.display()
        )
    );
    assert_eq!(fake.requests().len(), 1, "the bad file was not sent");
}

#[test]
fn dag_file_from_stdin() {
    let fake = FakeMaster::start();
    let run = cli_fake::repl_with(
        &["dag", "-f", "-", "--master", &fake.addr],
        "A|NOOP||1|0|[]\nB|NOOP||1|0|[A]\n",
    );
    ok(&run);
    assert_eq!(run.stdout, "dag-5:A\ndag-5:B\n");
}

#[test]
fn status_prints_a_block_or_one_json_value() {
    let fake = FakeMaster::start();
    let run = fake.titan(&["status", "dag-5:RUN_CALC"]);
    ok(&run);
    assert!(
        run.stdout.starts_with(&format!(
            "Job:        dag-5:RUN_CALC (id {})\nState:      RUNNING (since ",
            17u64 << 24
        )),
        "{run:?}"
    );
    assert!(run.stdout.contains("\nWorker:     W0.1 on port 8080\n"));
    let run = fake.titan(&["status", "tsk-3", "--json"]);
    ok(&run);
    let v = one_json(&run);
    assert_eq!(
        v,
        serde_json::to_value(job("TSK-3", JobState::Running)).unwrap()
    );
    // References are sent in their canonical spelling.
    let sent: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.decode::<JobQuery>().job)
        .collect();
    assert_eq!(sent, ["dag-5:RUN_CALC", "TSK-3"]);
}

#[test]
fn a_master_error_goes_to_stderr_with_status_1() {
    let fake = FakeMaster::start();
    let run = fake.titan(&["status", "TSK-404"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, "error: no job TSK-404\n");
}

#[test]
fn an_unreachable_master_is_an_error() {
    let addr = dead_addr();
    let run = Run::from(
        titan_command(&["stats", "--master", &addr])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .starts_with(&format!("error: cannot connect to the master at {addr}: ")),
        "{run:?}"
    );
}

#[test]
fn titan_master_env_sets_the_default_address() {
    let fake = FakeMaster::start();
    let run = Run::from(
        titan_command(&["workers", "--json"])
            .env("TITAN_MASTER", &fake.addr)
            .output()
            .unwrap(),
    );
    ok(&run);
    assert_eq!(one_json(&run)["workers"][1]["port"], 8081);
}

#[test]
fn jobs_and_workers_print_tables() {
    let fake = FakeMaster::start();
    let run = fake.titan(&["jobs", "--state", "running", "--limit", "5"]);
    ok(&run);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{run:?}");
    assert!(lines[0].starts_with("JOB             STATE    TYPE  PRI  TRIES  WORKER  AGE"));
    assert!(lines[1].starts_with("dag-5:RUN_CALC  RUNNING  RUN   1    1      8080    "));
    let sent: ListJobsRequest = fake.requests()[0].decode();
    assert_eq!(sent.state, Some(JobState::Running));
    assert_eq!(sent.limit, 5);

    let run = fake.titan(&["jobs", "--json"]);
    ok(&run);
    let v = one_json(&run);
    assert_eq!(v["jobs"][1]["state"], "QUEUED");
    assert_eq!(v["truncated"], false);

    let run = fake.titan(&["workers"]);
    ok(&run);
    assert!(run
        .stdout
        .starts_with("WORKER  PORT  LOAD       SKILLS   PARENT  SERVICES"));
    assert!(run.stdout.contains("dag-5:WORKER_A,dag-5:START_DASH"));
}

#[test]
fn cancel_and_stop_report_what_happened() {
    let fake = FakeMaster::start();
    let run = fake.titan(&["cancel", "dag-5"]);
    ok(&run);
    assert_eq!(run.stdout, "cancelled dag-5: 2 jobs\n");
    let run = fake.titan(&["stop", "WORKER_A", "--json"]);
    ok(&run);
    assert_eq!(run.stdout, "{\"label\":\"WORKER_A\"}\n");
    assert_eq!(fake.opcodes(), [OpCode::CancelJob, OpCode::Stop]);
}

#[test]
fn wait_exit_statuses_distinguish_success_failure_and_timeout() {
    let fake = FakeMaster::start();
    let run = fake.titan(&["wait", "TSK-1", "dag-5:A"]);
    ok(&run);
    assert_eq!(run.stdout, "TSK-1    COMPLETED\ndag-5:A  COMPLETED\n");

    let run = fake.titan(&["wait", "TSK-1", "FAIL_JOB"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        run.stdout,
        "TSK-1     COMPLETED\nFAIL_JOB  DEAD  (exited with code 1)\n"
    );
    assert_eq!(run.stderr, "error: 1 of 2 jobs did not complete\n");

    let run = fake.titan(&["wait", "SLOW_JOB", "--timeout", "100ms", "--json"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    let v = one_json(&run);
    assert_eq!(v["timed_out"], true);
    assert_eq!(v["jobs"], serde_json::json!([]));
    assert_eq!(v["pending"], serde_json::json!(["SLOW_JOB"]));
    assert_eq!(
        run.stderr,
        "error: timed out with 1 of 1 jobs unfinished after 100ms\n"
    );
    let last: WaitRequest = fake.requests().last().unwrap().decode();
    assert!(last.timeout_ms <= 100, "{last:?}");

    let run = Run::from(
        titan_command(&["wait", "TSK-1", "--master", &dead_addr()])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, Some(2), "{run:?}");
}

#[test]
fn usage_errors_exit_2_without_contacting_the_master() {
    let fake = FakeMaster::start();
    for args in [
        &["submit", "RUN|a.py", "--priority", "3"][..],
        &["submit"][..],
        &["dag", "A|NOOP||1|0|[]", "-f", "x.dag"][..],
        &["status", "a b"][..],
        &["jobs", "--state", "DONE"][..],
        &["wait"][..],
        &["wait", "TSK-1", "--timeout", "1.5s"][..],
    ] {
        let run = fake.titan(args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stderr.starts_with("error: "), "{args:?}: {run:?}");
    }
    assert!(fake.requests().is_empty());
}
