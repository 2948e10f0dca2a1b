//! Tests of submission building: the seed's strings, `--file` scripts, DAG files and their line
//! numbers, options the text cannot express.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use titan_core::grammar::PathProblem;

const INCEPTION: &str = "START_DASH|DEPLOY|server_dashboard.py|1|0|[] ; WORKER_A|DEPLOY|Worker.jar|8081|1|2|[START_DASH] ; WORKER_B|DEPLOY|Worker.jar|8082|1|2|[START_DASH] ; RUN_CALC|RUN|calc.py|2|0|[WORKER_A, WORKER_B] ; WORKER_C|DEPLOY|Worker.jar|8083|1|5|[RUN_CALC]";

/// A fresh scratch file path under the system temp directory.
fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "titan-cli-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn line_of(e: &GrammarError) -> Vec<usize> {
    match e {
        GrammarError::Field { line, .. } => vec![*line],
        GrammarError::Dag(DagError::DuplicateId {
            line, first_line, ..
        }) => vec![*first_line, *line],
        GrammarError::Dag(
            DagError::UnknownDependency { line, .. }
            | DagError::SelfDependency { line, .. }
            | DagError::DuplicateDependency { line, .. }
            | DagError::BadId { line, .. },
        ) => vec![*line],
        other => panic!("no line in {other:?}"),
    }
}

#[test]
fn seed_one_offs_become_one_off_submissions() {
    for text in [
        "RUN|calc.py",
        "PDF_CONVERT|future_report.pdf|1|8000",
        "EMAIL_ALERT|admin@titan.com|1|0",
    ] {
        let sub = one_off(text, &SpecOptions::default()).unwrap();
        assert_eq!(
            sub,
            Submission::OneOff(grammar::parse_one_off(text).unwrap())
        );
    }
}

#[test]
fn options_set_timeout_and_retries() {
    let options = SpecOptions {
        timeout: Some(Duration::from_secs(30)),
        retries: Some(0),
    };
    let Submission::OneOff(spec) = one_off("RUN|calc.py|2|10", &options).unwrap() else {
        panic!("expected a one-off");
    };
    assert_eq!(spec.timeout_ms, NonZeroU32::new(30_000));
    assert_eq!((spec.retries, spec.priority, spec.delay_ms), (0, 2, 10));
}

#[test]
fn timeouts_outside_a_spec_are_rejected() {
    for timeout in [
        Duration::ZERO,
        Duration::from_millis(u64::from(u32::MAX) + 1),
    ] {
        let options = SpecOptions {
            timeout: Some(timeout),
            retries: None,
        };
        let err = one_off("NOOP", &options).unwrap_err();
        assert!(matches!(err, CliError::TimeoutRange { .. }), "{err:?}");
    }
}

#[test]
fn dag_text_is_the_seed_grammar_and_options_reach_every_job() {
    let options = SpecOptions {
        timeout: None,
        retries: Some(7),
    };
    let Submission::Dag(jobs) = dag_text(INCEPTION, &options).unwrap() else {
        panic!("expected a DAG");
    };
    assert_eq!(jobs.len(), 5);
    assert!(jobs.iter().all(|j| j.spec.retries == 7));
    let plain = grammar::parse_dag(INCEPTION).unwrap();
    assert_eq!(
        jobs.iter().map(|j| &j.name).collect::<Vec<_>>(),
        plain.iter().map(|j| &j.name).collect::<Vec<_>>()
    );
}

#[test]
fn dag_file_splits_on_newlines_and_semicolons_and_skips_comments() {
    let text = [
        "# the seed's Inception DAG, one job per line",
        "START_DASH|DEPLOY|server_dashboard.py|1|0|[]",
        "",
        "WORKER_A|DEPLOY|Worker.jar|8081|1|2|[START_DASH] ; WORKER_B|DEPLOY|Worker.jar|8082|1|2|[START_DASH]",
        "   # an indented comment",
        "RUN_CALC|RUN|calc.py|2|0|[WORKER_A, WORKER_B];",
        "\tWORKER_C|DEPLOY|Worker.jar|8083|1|5|[RUN_CALC]\r",
    ]
    .join("\n");
    let jobs = dag_file_text(&text).unwrap();
    assert_eq!(jobs, grammar::parse_dag(INCEPTION).unwrap());
}

#[test]
fn dag_file_field_errors_name_the_file_line() {
    let text = "# header\n\nA|RUN|a.py|1|0|[]\n# comment\nB|RUN|b.py|x|0|[A]\n";
    let err = dag_file_text(text).unwrap_err();
    assert_eq!(line_of(&err), [5]);
    assert!(
        err.to_string()
            .starts_with("job line 5 (B): field PRIORITY"),
        "{err}"
    );
}

#[test]
fn dag_file_structure_errors_name_the_file_lines() {
    let unknown = "\n\nA|RUN|a.py|1|0|[]\n\n\nB|RUN|b.py|1|0|[NOPE]\n";
    assert_eq!(line_of(&dag_file_text(unknown).unwrap_err()), [6]);

    let duplicate = "# dup\nA|RUN|a.py|1|0|[]\n\nB|NOOP||1|0|[] ; A|NOOP||1|0|[]\n";
    assert_eq!(line_of(&dag_file_text(duplicate).unwrap_err()), [2, 4]);

    let itself = "#\n#\nA|NOOP||1|0|[A]\n";
    assert_eq!(line_of(&dag_file_text(itself).unwrap_err()), [3]);

    let cycle = "A|NOOP||1|0|[B]\nB|NOOP||1|0|[A]\n";
    assert!(matches!(
        dag_file_text(cycle).unwrap_err(),
        GrammarError::Dag(DagError::Cycle { .. })
    ));
    assert_eq!(
        dag_file_text("# nothing\n\n").unwrap_err(),
        GrammarError::Dag(DagError::Empty)
    );
}

#[test]
fn dag_files_are_read_and_errors_carry_the_path() {
    let path = scratch("dag.txt");
    std::fs::write(&path, "A|NOOP||1|0|[]\nB|NOOP||1|0|[A]\n").unwrap();
    let Submission::Dag(jobs) = read_dag_file(&path, &SpecOptions::default()).unwrap() else {
        panic!("expected a DAG");
    };
    assert_eq!(jobs.len(), 2);

    std::fs::write(&path, "A|NOOP||1|0|[]\nB|NOOP||1|0|[C]\n").unwrap();
    let err = read_dag_file(&path, &SpecOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}: job line 2", path.display())),
        "{text}"
    );

    let missing = path.with_file_name("missing.txt");
    assert!(matches!(
        read_dag_file(&missing, &SpecOptions::default()),
        Err(CliError::ReadFile { .. })
    ));
}

#[test]
fn inline_script_sends_the_bytes_under_the_file_name() {
    let path = scratch("local.py");
    std::fs::write(&path, b"print('hi')\n").unwrap();
    let options = InlineOptions {
        priority: Some(-2),
        delay_ms: Some(500),
        spec: SpecOptions {
            timeout: Some(Duration::from_millis(1500)),
            retries: Some(1),
        },
    };
    let Submission::OneOff(spec) = read_inline_file(&path, &options).unwrap() else {
        panic!("expected a one-off");
    };
    assert_eq!(
        spec.kind,
        JobKind::RunInline {
            name: "local.py".into(),
            bytes: b"print('hi')\n".to_vec().into()
        }
    );
    assert_eq!((spec.priority, spec.delay_ms, spec.retries), (-2, 500, 1));
    assert_eq!(spec.timeout_ms, NonZeroU32::new(1500));

    let defaults = read_inline_file(&path, &InlineOptions::default()).unwrap();
    let Submission::OneOff(spec) = defaults else {
        panic!("expected a one-off");
    };
    assert_eq!((spec.priority, spec.delay_ms, spec.retries), (1, 0, 3));
}

#[test]
fn inline_script_names_must_print_back() {
    let err = inline_script(Path::new("./a:b.sh"), vec![], &InlineOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            CliError::InlineScript {
                problem: FieldProblem::Separator { ch: ':' },
                ..
            }
        ),
        "{err:?}"
    );
    let err = inline_script(Path::new("/"), vec![], &InlineOptions::default()).unwrap_err();
    assert!(matches!(err, CliError::InlineScript { .. }), "{err:?}");
    let err = inline_script(Path::new("x y.sh"), vec![], &InlineOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            CliError::InlineScript {
                problem: FieldProblem::Path {
                    problem: PathProblem::Whitespace
                },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn inline_script_delay_is_bounded() {
    let options = InlineOptions {
        delay_ms: Some(u32::MAX),
        ..InlineOptions::default()
    };
    let err = inline_script(Path::new("a.sh"), vec![], &options).unwrap_err();
    assert!(
        matches!(
            err,
            CliError::InlineScript {
                field: Field::DelayMs,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn oversized_and_missing_scripts_are_typed_errors() {
    let path = scratch("big.sh");
    let file = File::create(&path).unwrap();
    // A sparse file: the size check happens before any byte is read.
    file.set_len(MAX_INLINE_BYTES as u64 + 1).unwrap();
    let err = read_inline_file(&path, &InlineOptions::default()).unwrap_err();
    assert!(
        matches!(err, CliError::FileTooLarge { len, max, .. }
            if len == MAX_INLINE_BYTES as u64 + 1 && max == MAX_INLINE_BYTES as u64),
        "{err:?}"
    );
    let err =
        read_inline_file(&path.with_file_name("nope.sh"), &InlineOptions::default()).unwrap_err();
    assert!(matches!(err, CliError::ReadFile { .. }), "{err:?}");
}

#[test]
fn read_limited_stops_one_byte_past_the_limit() {
    let err = read_limited(&b"12345"[..], Path::new("-"), 4).unwrap_err();
    assert!(
        matches!(err, CliError::FileTooLarge { len: 5, max: 4, .. }),
        "{err:?}"
    );
    assert_eq!(
        read_limited(&b"1234"[..], Path::new("-"), 4).unwrap(),
        b"1234"
    );
}
