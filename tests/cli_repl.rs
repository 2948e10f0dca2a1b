//! `titan cli` with commands piped on stdin, against a scripted master ([`cli_fake`]): the seed's
//! strings verbatim, no prompt noise, exit statuses, and reconnecting after a lost connection.

mod cli_fake;

use cli_fake::{dead_addr, repl_with, sample_stats, FakeMaster};
use titan::core::grammar::{parse_dag, parse_one_off};
use titan::core::model::Submission;
use titan::proto::OpCode;

/// DESIGN.md §1, verbatim.
const SEED: &str = "\
SUBMIT_DAG START_DASH|DEPLOY|server_dashboard.py|1|0|[] ; WORKER_A|DEPLOY|Worker.jar|8081|1|2|[START_DASH] ; WORKER_B|DEPLOY|Worker.jar|8082|1|2|[START_DASH] ; RUN_CALC|RUN|calc.py|2|0|[WORKER_A, WORKER_B] ; WORKER_C|DEPLOY|Worker.jar|8083|1|5|[RUN_CALC]
SUBMIT RUN|calc.py
SUBMIT PDF_CONVERT|future_report.pdf|1|8000
SUBMIT EMAIL_ALERT|admin@titan.com|1|0
STATS
";

#[test]
fn piped_stats_prints_only_the_stats_text() {
    let fake = FakeMaster::start();
    let run = fake.repl("STATS\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, sample_stats().render_text());
    assert_eq!(run.stderr, "");
}

#[test]
fn the_seed_commands_work_verbatim() {
    let fake = FakeMaster::start();
    let run = fake.repl(SEED);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stderr, "");
    let expected = format!(
        "dag-5:START_DASH\ndag-5:WORKER_A\ndag-5:WORKER_B\ndag-5:RUN_CALC\ndag-5:WORKER_C\n\
         TSK-17\nTSK-17\nTSK-17\n{}",
        sample_stats().render_text()
    );
    assert_eq!(run.stdout, expected);
    assert_eq!(
        fake.opcodes(),
        [
            OpCode::SubmitDag,
            OpCode::SubmitJob,
            OpCode::SubmitJob,
            OpCode::SubmitJob,
            OpCode::Stats
        ]
    );
    let requests = fake.requests();
    let lines: Vec<&str> = SEED.lines().collect();
    assert_eq!(
        requests[0].submission(),
        Submission::Dag(parse_dag(lines[0].trim_start_matches("SUBMIT_DAG ")).unwrap())
    );
    for (request, line) in requests[1..4].iter().zip(&lines[1..4]) {
        let text = line.trim_start_matches("SUBMIT ");
        assert_eq!(
            request.submission(),
            Submission::OneOff(parse_one_off(text).unwrap())
        );
    }
}

#[test]
fn lower_case_commands_comments_and_blank_lines() {
    let fake = FakeMaster::start();
    let run = fake.repl("# a script\n\nsubmit run|calc.py\n   \nstatus tsk-17\nworkers\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.starts_with("TSK-17\nJob:        TSK-17 "),
        "{run:?}"
    );
    assert_eq!(
        fake.opcodes(),
        [OpCode::SubmitJob, OpCode::GetJobStatus, OpCode::ListWorkers]
    );
}

#[test]
fn any_failed_line_makes_the_exit_status_non_zero_and_the_rest_still_runs() {
    let fake = FakeMaster::start();
    let run = fake.repl("STATUS TSK-404\nSUBMIT RUN|/etc/passwd\nCANCEL TSK-17\n");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stdout, "cancelled TSK-17: 2 jobs\n");
    assert_eq!(
        run.stderr,
        "error: line 1: no job TSK-404\n\
         error: line 2: job line 1: field DATA: absolute paths are not allowed (files come from perm_files/)\n"
    );
}

#[test]
fn exit_stops_reading() {
    let fake = FakeMaster::start();
    let run = fake.repl("EXIT\nSTATS\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "");
    assert!(fake.requests().is_empty());
}

#[test]
fn a_lost_connection_is_reported_and_the_next_command_reconnects() {
    let fake = FakeMaster::start();
    // The fake closes the connection instead of answering TSK-999.
    let run = fake.repl("STATUS TSK-999\nSTATS\n");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "error: line 1: the master closed the connection\n\
             (the connection to {} was lost; the next command reconnects)\n",
            fake.addr
        )
    );
    assert_eq!(run.stdout, sample_stats().render_text());
    assert_eq!(fake.opcodes(), [OpCode::GetJobStatus, OpCode::Stats]);
}

#[test]
fn an_unreachable_master_fails_every_command_but_help_still_works() {
    let run = repl_with(&["cli", "--master", &dead_addr()], "STATS\nHELP\n");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.starts_with("Commands (any case):\n"), "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: line 1: cannot connect to the master at "),
        "{run:?}"
    );
}

#[test]
fn a_session_reconnects_when_the_master_closed_an_idle_connection() {
    use std::time::{Duration, Instant};
    use titan::cli::session::Session;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut session = Session::new(listener.local_addr().unwrap().to_string());
    assert!(
        session.connect().unwrap(),
        "the first connect opens a connection"
    );
    let (first, _) = listener.accept().unwrap();
    assert!(!session.connect().unwrap(), "an open connection is kept");
    drop(first);
    // The close reaches the client asynchronously: poll for it, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !session.connect().unwrap() {
        assert!(
            Instant::now() < deadline,
            "the closed connection was never noticed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let (_second, _) = listener.accept().unwrap();
    assert!(!session.connect().unwrap());
}
