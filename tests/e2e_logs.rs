//! Job output end to end: streamed live over UDP to the master, followed with `titan logs -f`,
//! and fetched whole from the worker when the master's bounded ring no longer holds it.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use support::{eventually, titan_bin, Master, Worker};
use titan::cli::client::Client;
use titan::core::grammar::parse_one_off;
use titan::core::{JobState, Submission};

fn submit(client: &mut Client, text: &str) -> String {
    client
        .submit(Submission::OneOff(parse_one_off(text).unwrap()))
        .unwrap()
        .label
}

#[test]
fn logs_follow_shows_lines_as_they_come_then_the_exit_status() {
    let master = Master::start(&["--shards", "2"]);
    let _worker = Worker::start(&master.addr, &[]);
    let mut client = support::connect(&master.addr);
    let job = submit(&mut client, "RUN|lines.py 10 100");
    let mut follower = support::with_keys(&mut Command::new(titan_bin()))
        .args(["logs", "-f", &job, "--master", &master.addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(follower.stdout.take().unwrap());
    let mut seen = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if seen.is_empty() {
            // The first line arrives while the job still runs (it prints for a second).
            let state = client.status(&job).unwrap().state;
            assert_eq!(
                state,
                JobState::Running,
                "the first line came only after the job ended"
            );
        }
        seen.push((line, Instant::now()));
    }
    let lines: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
    let expected: Vec<String> = (1..=10).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected);
    // Lines came spread over the job's run, not in one burst at the end.
    let spread = seen.last().unwrap().1 - seen.first().unwrap().1;
    assert!(
        spread.as_millis() >= 500,
        "all lines arrived within {spread:?}"
    );
    let status = follower.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut follower.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("--- {job} COMPLETED ---")),
        "{stderr}"
    );
}

#[test]
fn a_million_lines_are_all_kept_and_returned_while_the_master_stays_bounded() {
    let master = Master::start(&["--shards", "2"]);
    let worker = Worker::start(&master.addr, &[]);
    let mut client = support::connect(&master.addr);
    let rss_before = support::rss_kib(master.proc.pid());
    let job = submit(&mut client, "RUN|lines.py 1000000");
    let done = client
        .wait(std::slice::from_ref(&job), support::DEADLINE)
        .unwrap();
    assert_eq!(done.jobs[0].state, JobState::Completed);
    // The worker's file is the complete record.
    let file = std::fs::read_to_string(worker.workspace.join(&job).join("stdout.log")).unwrap();
    assert_eq!(file.lines().count(), 1_000_000);
    assert_eq!(file.lines().last(), Some("line 1000000"));
    // Every line streamed is either received or counted lost (1,000,000 on stdout, 1 on stderr).
    let logs = eventually("the master to account for every line", || {
        let logs = client.stats().unwrap().logs;
        (logs.lines + logs.lines_lost == 1_000_001).then_some(logs)
    });
    eprintln!(
        "lines received {}, lost {}, evicted {}",
        logs.lines, logs.lines_lost, logs.lines_evicted
    );
    // The master kept a bounded ring, not the million lines.
    let rss_after = support::rss_kib(master.proc.pid());
    assert!(
        rss_after < rss_before + 64 * 1024,
        "master RSS grew from {rss_before} to {rss_after} KiB"
    );
    // `titan logs` returns every line, fetched from the worker.
    let out = support::with_keys(&mut Command::new(titan_bin()))
        .args(["logs", &job, "--master", &master.addr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout,
        file.as_bytes(),
        "titan logs differs from the worker's file"
    );
}
