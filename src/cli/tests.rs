//! The command line as clap parses it: every client command and flag, and `master` unchanged.

use std::time::Duration;

use clap::Parser;

use super::args::{ClientCommand, DEFAULT_JOBS_LIMIT, DEFAULT_MASTER};
use super::*;
use titan_core::ids::{DagId, JobRef};
use titan_core::model::JobState;

fn parse(args: &[&str]) -> Command {
    let argv = std::iter::once("titan").chain(args.iter().copied());
    Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .command
}

fn client(args: &[&str]) -> ClientCommand {
    match parse(args) {
        Command::Client(c) => c,
        other => panic!("{args:?} gave {other:?}"),
    }
}

fn rejected(args: &[&str]) -> clap::error::ErrorKind {
    let argv = std::iter::once("titan").chain(args.iter().copied());
    Cli::try_parse_from(argv)
        .map(|cli| panic!("{args:?} parsed to {cli:?}"))
        .unwrap_err()
        .kind()
}

#[test]
fn master_still_parses_with_its_defaults() {
    let Command::Master(m) = parse(&["master"]) else {
        panic!("not master");
    };
    assert_eq!(
        (m.port, m.bind.to_string(), m.pin),
        (9090, "127.0.0.1".into(), false)
    );
}

#[test]
fn submit_takes_text_or_a_file_with_its_options() {
    let ClientCommand::Submit(s) = client(&["submit", "RUN|calc.py|1|0", "--json"]) else {
        panic!();
    };
    assert_eq!(s.job.as_deref(), Some("RUN|calc.py|1|0"));
    assert!(s.json && s.file.is_none());

    let ClientCommand::Submit(s) = client(&[
        "submit",
        "--file",
        "./local.py",
        "--priority",
        "-1",
        "--delay-ms",
        "8000",
        "--timeout",
        "30s",
        "--retries",
        "5",
        "--master",
        "10.0.0.1:9999",
    ]) else {
        panic!();
    };
    assert_eq!(s.file.as_deref(), Some(std::path::Path::new("./local.py")));
    assert_eq!((s.priority, s.delay_ms), (Some(-1), Some(8000)));
    assert_eq!(s.spec.timeout, Some(Duration::from_secs(30)));
    assert_eq!(s.spec.retries, Some(5));
    assert_eq!(s.master.addr, "10.0.0.1:9999");
}

#[test]
fn submit_rejects_conflicting_or_missing_input() {
    use clap::error::ErrorKind::*;
    assert_eq!(rejected(&["submit"]), MissingRequiredArgument);
    assert_eq!(
        rejected(&["submit", "NOOP", "--file", "x.sh"]),
        ArgumentConflict
    );
    assert_eq!(
        rejected(&["submit", "NOOP", "--priority", "2"]),
        ArgumentConflict
    );
    assert_eq!(
        rejected(&["submit", "NOOP", "--delay-ms", "2"]),
        ArgumentConflict
    );
    assert_eq!(
        rejected(&["submit", "NOOP", "--retries", "300"]),
        ValueValidation
    );
    assert_eq!(
        rejected(&["submit", "NOOP", "--timeout", "soon"]),
        ValueValidation
    );
}

#[test]
fn dag_takes_text_or_a_file() {
    let ClientCommand::Dag(d) = client(&["dag", "A|NOOP||1|0|[]"]) else {
        panic!();
    };
    assert_eq!(d.dag.as_deref(), Some("A|NOOP||1|0|[]"));
    let ClientCommand::Dag(d) = client(&["dag", "-f", "x.dag", "--retries", "1"]) else {
        panic!();
    };
    assert_eq!(d.file.as_deref(), Some(std::path::Path::new("x.dag")));
    assert_eq!(d.spec.retries, Some(1));
    assert_eq!(
        rejected(&["dag", "A|NOOP||1|0|[]", "-f", "x.dag"]),
        clap::error::ErrorKind::ArgumentConflict
    );
    assert_eq!(
        rejected(&["dag"]),
        clap::error::ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn read_commands_take_ids_states_and_json() {
    let ClientCommand::Status(s) = client(&["status", "dag-5:RUN_CALC", "--json"]) else {
        panic!();
    };
    assert_eq!(s.id, JobRef::DagJob(DagId(5), "RUN_CALC".into()));
    assert!(s.json);
    let ClientCommand::Jobs(j) = client(&["jobs", "--state", "dead"]) else {
        panic!();
    };
    assert_eq!(
        (j.state, j.limit, j.json),
        (Some(JobState::Dead), DEFAULT_JOBS_LIMIT, false)
    );
    let ClientCommand::Wait(w) = client(&["wait", "TSK-1", "dag-2", "B", "--timeout", "60s"])
    else {
        panic!();
    };
    assert_eq!(
        w.ids,
        [
            JobRef::Task(DagId(1)),
            JobRef::Dag(DagId(2)),
            JobRef::Name("B".into())
        ]
    );
    assert_eq!(w.timeout, Some(Duration::from_secs(60)));
    for cmd in ["stats", "workers"] {
        assert!(matches!(
            client(&[cmd, "--json"]),
            ClientCommand::Stats(a) | ClientCommand::Workers(a) if a.json
        ));
    }
    assert!(matches!(
        client(&["cancel", "TSK-3"]),
        ClientCommand::Cancel(_)
    ));
    assert!(matches!(
        client(&["stop", "WORKER_A"]),
        ClientCommand::Stop(_)
    ));
    assert_eq!(
        rejected(&["status", "TSK-"]),
        clap::error::ErrorKind::ValueValidation
    );
    assert_eq!(
        rejected(&["wait"]),
        clap::error::ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn the_master_address_defaults_to_loopback_9090() {
    // TITAN_MASTER, when the test runner has it set, legitimately overrides the default.
    let expected = std::env::var("TITAN_MASTER").unwrap_or_else(|_| DEFAULT_MASTER.into());
    assert_eq!(client(&["stats"]).master().addr, expected);
    let Command::Cli(r) = parse(&["cli"]) else {
        panic!("not cli");
    };
    assert_eq!(r.master.addr, expected);
}
