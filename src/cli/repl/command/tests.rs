//! REPL parsing: the seed's strings verbatim (copied from DESIGN.md §1), case-insensitive command
//! words, arguments and typed errors.

use super::*;
use titan_core::dag::DagError;
use titan_core::grammar::{Field, FieldProblem};
use titan_core::ids::{DagId, NameProblem};
use titan_core::model::{JobKind, DEFAULT_RETRIES};

/// DESIGN.md §1, verbatim.
const SEED_LINES: [&str; 5] = [
    "SUBMIT_DAG START_DASH|DEPLOY|server_dashboard.py|1|0|[] ; WORKER_A|DEPLOY|Worker.jar|8081|1|2|[START_DASH] ; WORKER_B|DEPLOY|Worker.jar|8082|1|2|[START_DASH] ; RUN_CALC|RUN|calc.py|2|0|[WORKER_A, WORKER_B] ; WORKER_C|DEPLOY|Worker.jar|8083|1|5|[RUN_CALC]",
    "SUBMIT RUN|calc.py",
    "SUBMIT PDF_CONVERT|future_report.pdf|1|8000",
    "SUBMIT EMAIL_ALERT|admin@titan.com|1|0",
    "STATS",
];

fn parse(line: &str) -> ReplCommand {
    parse_line(line)
        .unwrap_or_else(|e| panic!("{line:?}: {e}"))
        .unwrap_or_else(|| panic!("{line:?} parsed to nothing"))
}

fn one_off(line: &str) -> titan_core::model::JobSpec {
    match parse(line) {
        ReplCommand::Submit(Submission::OneOff(spec)) => spec,
        other => panic!("{line:?} gave {other:?}"),
    }
}

#[test]
fn the_seed_dag_parses_verbatim() {
    let ReplCommand::Submit(Submission::Dag(jobs)) = parse(SEED_LINES[0]) else {
        panic!("not a DAG");
    };
    let names: Vec<&str> = jobs.iter().map(|j| &*j.name).collect();
    assert_eq!(
        names,
        ["START_DASH", "WORKER_A", "WORKER_B", "RUN_CALC", "WORKER_C"]
    );
    assert_eq!(
        jobs[2].spec.kind,
        JobKind::Deploy {
            file: "Worker.jar".into(),
            port: Some(8082)
        }
    );
    assert_eq!(
        jobs[3].deps,
        vec![Box::from("WORKER_A"), Box::from("WORKER_B")]
    );
    assert_eq!((jobs[4].spec.delay_ms, jobs[3].spec.priority), (5, 2));
}

#[test]
fn the_seed_one_offs_parse_verbatim() {
    let calc = one_off(SEED_LINES[1]);
    assert_eq!(
        calc.kind,
        JobKind::Run {
            file: "calc.py".into(),
            args: Box::new([])
        }
    );
    assert_eq!(
        (calc.priority, calc.delay_ms, calc.retries),
        (1, 0, DEFAULT_RETRIES)
    );

    let pdf = one_off(SEED_LINES[2]);
    assert_eq!(pdf.skill(), "PDF_CONVERT");
    assert_eq!((pdf.priority, pdf.delay_ms), (1, 8000));

    let mail = one_off(SEED_LINES[3]);
    assert_eq!(
        mail.kind,
        JobKind::Skill {
            name: "EMAIL_ALERT".into(),
            data: "admin@titan.com".into()
        }
    );
    assert_eq!(parse(SEED_LINES[4]), ReplCommand::Stats);
}

#[test]
fn command_words_are_case_insensitive() {
    assert_eq!(parse("stats"), ReplCommand::Stats);
    assert_eq!(parse("Stats"), ReplCommand::Stats);
    assert_eq!(parse("  sTaTs  "), ReplCommand::Stats);
    assert_eq!(one_off("submit RUN|calc.py"), one_off("SUBMIT RUN|calc.py"));
    assert_eq!(
        one_off("Submit\trun|calc.py"),
        one_off("SUBMIT RUN|calc.py")
    );
    assert_eq!(
        parse(&SEED_LINES[0].replacen("SUBMIT_DAG", "submit_dag", 1)),
        parse(SEED_LINES[0])
    );
    assert_eq!(parse("workers"), ReplCommand::Workers);
    assert_eq!(parse("help"), ReplCommand::Help);
    assert_eq!(parse("quit"), ReplCommand::Exit);
    assert_eq!(parse("Exit"), ReplCommand::Exit);
}

#[test]
fn job_commands_take_every_reference_form() {
    assert_eq!(
        parse("STATUS TSK-17"),
        ReplCommand::Status(JobRef::Task(DagId(17)))
    );
    assert_eq!(
        parse("status dag-5"),
        ReplCommand::Status(JobRef::Dag(DagId(5)))
    );
    assert_eq!(
        parse("CANCEL dag-5:RUN_CALC"),
        ReplCommand::Cancel(JobRef::DagJob(DagId(5), "RUN_CALC".into()))
    );
    assert_eq!(
        parse("stop WORKER_A"),
        ReplCommand::Stop(JobRef::Name("WORKER_A".into()))
    );
}

#[test]
fn jobs_takes_an_optional_state_and_limit() {
    let jobs = |state, limit| ReplCommand::Jobs { state, limit };
    assert_eq!(parse("JOBS"), jobs(None, DEFAULT_JOBS_LIMIT));
    assert_eq!(
        parse("jobs queued"),
        jobs(Some(JobState::Queued), DEFAULT_JOBS_LIMIT)
    );
    assert_eq!(parse("JOBS 5"), jobs(None, 5));
    assert_eq!(
        parse("JOBS upstream_failed 7"),
        jobs(Some(JobState::UpstreamFailed), 7)
    );
    assert!(matches!(parse_line("JOBS DONE"), Err(ReplError::State(_))));
    assert!(matches!(
        parse_line("JOBS 5 QUEUED"),
        Err(ReplError::UnexpectedArgument { word: "JOBS", .. })
    ));
    assert!(matches!(
        parse_line("JOBS 99999999999"),
        Err(ReplError::UnexpectedArgument { word: "JOBS", .. })
    ));
}

#[test]
fn blank_lines_and_comments_are_nothing() {
    for line in ["", "   ", "\t", "# a comment", "   #STATS"] {
        assert_eq!(parse_line(line), Ok(None), "{line:?}");
    }
}

#[test]
fn unknown_commands_and_bad_arguments_are_typed_errors() {
    assert_eq!(
        parse_line("LOGZ TSK-1"),
        Err(ReplError::UnknownCommand {
            word: "LOGZ".into()
        })
    );
    assert_eq!(
        parse_line("SUBMIT"),
        Err(ReplError::MissingArgument {
            word: "SUBMIT",
            args: "a job"
        })
    );
    assert_eq!(
        parse_line("STATUS"),
        Err(ReplError::MissingArgument {
            word: "STATUS",
            args: "a job id"
        })
    );
    assert_eq!(
        parse_line("STATS now"),
        Err(ReplError::UnexpectedArgument {
            word: "STATS",
            text: "now".into()
        })
    );
    assert_eq!(
        parse_line("CANCEL TSK-1 TSK-2"),
        Err(ReplError::UnexpectedArgument {
            word: "CANCEL",
            text: "TSK-2".into()
        })
    );
    assert!(matches!(
        parse_line("STATUS TSK-x"),
        Err(ReplError::JobRef(e)) if e.reason == NameProblem::BadNumber
    ));
}

#[test]
fn grammar_errors_pass_through_with_their_line_and_field() {
    let err = parse_line("SUBMIT RUN|../../etc/passwd").unwrap_err();
    assert!(
        matches!(
            &err,
            ReplError::Grammar(GrammarError::Field {
                field: Field::Data,
                problem: FieldProblem::Path { .. },
                ..
            })
        ),
        "{err:?}"
    );
    let err = parse_line("SUBMIT_DAG A|RUN|a.py|1|0|[] ; B|RUN|b.py|1|0|[C]").unwrap_err();
    assert_eq!(
        err,
        ReplError::Grammar(GrammarError::Dag(DagError::UnknownDependency {
            line: 2,
            id: "B".into(),
            dep: "C".into()
        }))
    );
    assert_eq!(
        err.to_string(),
        "job line 2: \"B\" depends on unknown job \"C\""
    );
}

#[test]
fn error_messages_show_usage() {
    assert_eq!(
        parse_line("STATUS").unwrap_err().to_string(),
        "STATUS needs a job id: usage: STATUS ID"
    );
    assert_eq!(
        parse_line("WORKERS all").unwrap_err().to_string(),
        "unexpected \"all\" after WORKERS: usage: WORKERS"
    );
    assert_eq!(
        parse_line("frobnicate").unwrap_err().to_string(),
        "unknown command \"frobnicate\" (type HELP for the list)"
    );
}

#[test]
fn help_lists_every_command() {
    let help = help_text();
    for c in COMMANDS {
        assert!(help.contains(c.word), "{} missing from {help}", c.word);
        assert!(
            parse_line(c.word).is_ok()
                || matches!(parse_line(c.word), Err(ReplError::MissingArgument { .. }))
        );
    }
    assert!(help.contains("  SUBMIT TYPE|DATA[|PRIORITY[|DELAY_MS]]"));
}
