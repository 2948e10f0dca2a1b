//! Exact-output tests of the renderers.

use super::*;
use titan_proto::message::client::JobLabel;

/// 2023-11-14T22:13:20.000000Z, in microseconds.
const T0: u64 = 1_700_000_000_000_000;

pub(crate) fn job(label: &str, state: JobState) -> JobStatus {
    JobStatus {
        id: 4_294_967_296,
        label: label.into(),
        state,
        kind: "RUN".into(),
        spec: "RUN|calc.py|1|0".into(),
        skill: "GENERAL".into(),
        priority: 1,
        attempts: 1,
        failures: 0,
        retries: 3,
        crashes: 0,
        worker: Some(1 << 16 | 2),
        worker_port: Some(8080),
        ready: false,
        submitted_at_us: T0,
        started_at_us: Some(T0 + 5),
        finished_at_us: None,
        state_since_us: T0 + 5,
        last_error: None,
        deps: Vec::new(),
    }
}

pub(crate) fn worker(port: u16, running: u32, services: &[&str]) -> WorkerStatus {
    WorkerStatus {
        id: 1 << 16 | u32::from(port - 8080),
        port,
        running,
        capacity: 4,
        skills: vec!["GENERAL".into()],
        parent: None,
        ephemeral: false,
        services: services.iter().map(|s| s.to_string()).collect(),
        silent_for_ms: 400,
    }
}

#[test]
fn times_are_rfc3339_utc_with_milliseconds() {
    assert_eq!(format_time_us(0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(format_time_us(T0 + 42), "2023-11-14T22:13:20.000042Z");
    assert_eq!(
        format_time_us(951_782_400_000_000),
        "2000-02-29T00:00:00.000000Z"
    );
    assert_eq!(
        format_time_us(951_868_799_999_999),
        "2000-02-29T23:59:59.999999Z"
    );
    assert_eq!(
        format_time_us(4_102_444_800_000_000),
        "2100-01-01T00:00:00.000000Z"
    );
}

#[test]
fn ages_pick_one_unit() {
    let ages: Vec<String> = [0, 999, 1_000, 59_999, 60_000, 3_600_000, 86_400_000 * 3]
        .into_iter()
        .map(format_age_ms)
        .collect();
    assert_eq!(ages, ["0ms", "999ms", "1s", "59s", "1m", "1h", "3d"]);
}

#[test]
fn submitted_prints_one_id_per_line() {
    let one = Submitted {
        dag: 17,
        label: "TSK-17".into(),
        jobs: vec![JobLabel {
            id: 17 << 24,
            label: "TSK-17".into(),
        }],
    };
    assert_eq!(submitted(&one), "TSK-17\n");
    let dag = Submitted {
        dag: 5,
        label: "dag-5".into(),
        jobs: vec![
            JobLabel {
                id: 5 << 24,
                label: "dag-5:A".into(),
            },
            JobLabel {
                id: (5 << 24) + 1,
                label: "dag-5:B".into(),
            },
        ],
    };
    assert_eq!(submitted(&dag), "dag-5:A\ndag-5:B\n");
    let bare = Submitted {
        jobs: Vec::new(),
        ..one
    };
    assert_eq!(submitted(&bare), "TSK-17\n");
}

#[test]
fn status_block_shows_every_field() {
    let mut j = job("dag-5:RUN_CALC", JobState::Dead);
    j.spec = "RUN_CALC|RUN|calc.py|2|0|[WORKER_A, WORKER_B]".into();
    j.priority = 2;
    j.attempts = 4;
    j.failures = 4;
    j.crashes = 1;
    j.finished_at_us = Some(T0 + 1_234);
    j.state_since_us = T0 + 1_234;
    j.last_error = Some("exited with code 1".into());
    j.deps = vec!["WORKER_A".into(), "WORKER_B".into()];
    let expected = "\
Job:        dag-5:RUN_CALC (id 4294967296)
State:      DEAD (since 2023-11-14T22:13:20.001234Z)
Kind:       RUN
Spec:       RUN_CALC|RUN|calc.py|2|0|[WORKER_A, WORKER_B]
Skill:      GENERAL
Priority:   2
Attempts:   4 (4 failed, 3 retries allowed, 1 lost with their worker)
Worker:     W2.1 on port 8080
Submitted:  2023-11-14T22:13:20.000000Z
Started:    2023-11-14T22:13:20.000005Z
Finished:   2023-11-14T22:13:20.001234Z
Deps:       WORKER_A, WORKER_B
Last error: exited with code 1
";
    assert_eq!(status_block(&j), expected);
}

#[test]
fn status_block_of_a_waiting_service_shows_readiness_and_dashes() {
    let mut j = job("WORKER_A", JobState::Queued);
    j.kind = "DEPLOY".into();
    j.worker = None;
    j.worker_port = None;
    j.started_at_us = None;
    let text = status_block(&j);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[2], "Ready:      no");
    assert!(lines.contains(&"Worker:     -"), "{text}");
    assert!(lines.contains(&"Started:    -"), "{text}");
    assert!(lines.contains(&"Deps:       -"), "{text}");
    assert!(lines.contains(&"Last error: -"), "{text}");
}

#[test]
fn jobs_table_aligns_columns_and_notes_truncation() {
    let mut queued = job("TSK-3", JobState::Queued);
    queued.worker_port = None;
    queued.attempts = 0;
    queued.submitted_at_us = T0 - 5 * 60_000_000;
    queued.spec = format!("RUN_INLINE|x.sh:{}|1|0", "A".repeat(100));
    queued.kind = "RUN_INLINE".into();
    let list = JobList {
        jobs: vec![job("dag-12:RUN_CALC", JobState::Running), queued],
        truncated: true,
    };
    let expected = format!(
        "\
JOB              STATE    TYPE        PRI  TRIES  WORKER  AGE  SPEC
dag-12:RUN_CALC  RUNNING  RUN         1    1      8080    2s   RUN|calc.py|1|0
TSK-3            QUEUED   RUN_INLINE  1    0      -       5m   RUN_INLINE|x.sh:{}…
(2 shown; more jobs match, raise --limit to see them)
",
        "A".repeat(TABLE_SPEC_CHARS - 1 - "RUN_INLINE|x.sh:".len())
    );
    assert_eq!(jobs_table(&list, T0 + 2_500_000), expected);
    let empty = JobList {
        jobs: Vec::new(),
        truncated: false,
    };
    assert_eq!(jobs_table(&empty, T0), "no jobs\n");
}

#[test]
fn workers_table_shows_load_parents_and_services() {
    let mut child = worker(8081, 1, &[]);
    child.parent = Some(1 << 16);
    child.ephemeral = true;
    child.capacity = 3;
    child.silent_for_ms = 1_500;
    let list = WorkerList {
        workers: vec![worker(8080, 0, &["WORKER_A", "START_DASH"]), child],
    };
    let expected = "\
WORKER  PORT  LOAD       SKILLS   PARENT         SERVICES             SEEN
W0.1    8080  0/4 (0%)   GENERAL  -              WORKER_A,START_DASH  400ms ago
W1.1    8081  1/3 (33%)  GENERAL  W0.1 (scaled)  -                    1s ago
";
    assert_eq!(workers_table(&list), expected);
    assert_eq!(
        workers_table(&WorkerList { workers: vec![] }),
        "no workers connected\n"
    );
}

#[test]
fn wait_lines_show_final_states_and_errors() {
    let mut dead = job("dag-5:B", JobState::Dead);
    dead.last_error = Some("exited with code 2".into());
    let mut ok = job("TSK-12", JobState::Completed);
    ok.last_error = Some("an earlier attempt failed".into());
    let reply = WaitReply {
        jobs: vec![ok, dead],
        pending: vec!["dag-5:LONG_NAME".into()],
        timed_out: true,
    };
    assert_eq!(
        wait_lines(&reply),
        "TSK-12           COMPLETED\n\
         dag-5:B          DEAD  (exited with code 2)\n\
         dag-5:LONG_NAME  (not finished)\n"
    );
}

#[test]
fn cancel_and_stop_answers() {
    assert_eq!(
        cancelled("dag-5", &Cancelled { jobs: 3 }),
        "cancelled dag-5: 3 jobs\n"
    );
    assert_eq!(
        cancelled("TSK-1", &Cancelled { jobs: 1 }),
        "cancelled TSK-1: 1 job\n"
    );
    assert_eq!(
        stopped(&Stopped {
            label: "dag-4:WORKER_A".into()
        }),
        "stopped dag-4:WORKER_A\n"
    );
}

#[test]
fn shorten_counts_characters() {
    assert_eq!(shorten("abc", 3), "abc");
    assert_eq!(shorten("abcd", 3), "ab…");
    assert_eq!(shorten("ééééé", 4), "ééé…");
}

#[test]
fn status_shortens_a_long_spec_and_says_how_long_it_was() {
    let spec = format!("RUN_INLINE|x.py:{}", "A".repeat(5000));
    let job = JobStatus {
        spec: spec.clone(),
        ..JobStatus::sample()
    };
    let block = status_block(&job);
    let line = block
        .lines()
        .find(|l| l.starts_with("Spec:"))
        .expect("a Spec line");
    assert!(line.len() < 400, "{line}");
    assert!(
        line.ends_with(&format!("… ({} bytes in all)", spec.len())),
        "{line}"
    );
    let short = status_block(&JobStatus::sample());
    assert!(short.contains("Spec:       NOOP||1|0\n"), "{short}");
}
