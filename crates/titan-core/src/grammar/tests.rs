//! Tests of the seed grammar: the seed's own strings, every error path, and print/parse round trips.

use proptest::prelude::*;

use super::*;
use crate::dag::DagError;

const INCEPTION: &str = "START_DASH|DEPLOY|server_dashboard.py|1|0|[] ; WORKER_A|DEPLOY|Worker.jar|8081|1|2|[START_DASH] ; WORKER_B|DEPLOY|Worker.jar|8082|1|2|[START_DASH] ; RUN_CALC|RUN|calc.py|2|0|[WORKER_A, WORKER_B] ; WORKER_C|DEPLOY|Worker.jar|8083|1|5|[RUN_CALC]";

fn field_err(e: GrammarError) -> (usize, Option<String>, Field, FieldProblem) {
    match e {
        GrammarError::Field {
            line,
            id,
            field,
            problem,
        } => (line, id, field, problem),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn seed_inception_dag_parses() {
    let jobs = parse_dag(INCEPTION).unwrap();
    assert_eq!(jobs.len(), 5);
    assert_eq!(&*jobs[0].name, "START_DASH");
    assert_eq!(
        jobs[0].spec.kind,
        JobKind::Deploy {
            file: "server_dashboard.py".into(),
            port: None
        }
    );
    assert_eq!(
        jobs[1].spec.kind,
        JobKind::Deploy {
            file: "Worker.jar".into(),
            port: Some(8081)
        }
    );
    assert_eq!(jobs[1].spec.delay_ms, 2);
    assert_eq!(jobs[3].spec.priority, 2);
    assert_eq!(
        jobs[3].deps,
        vec![Box::from("WORKER_A"), Box::from("WORKER_B")]
    );
    assert_eq!(jobs[4].spec.delay_ms, 5);
    assert_eq!(parse_dag(&format_dag(&jobs)).unwrap(), jobs);
}

#[test]
fn seed_one_offs_parse() {
    let calc = parse_one_off("RUN|calc.py").unwrap();
    assert_eq!(
        calc.kind,
        JobKind::Run {
            file: "calc.py".into(),
            args: Box::new([])
        }
    );
    assert_eq!((calc.priority, calc.delay_ms, calc.retries), (1, 0, 3));

    let pdf = parse_one_off("PDF_CONVERT|future_report.pdf|1|8000").unwrap();
    assert_eq!(
        pdf.kind,
        JobKind::Skill {
            name: "PDF_CONVERT".into(),
            data: "future_report.pdf".into()
        }
    );
    assert_eq!((pdf.priority, pdf.delay_ms), (1, 8000));
    assert_eq!(pdf.skill(), "PDF_CONVERT");

    let mail = parse_one_off("EMAIL_ALERT|admin@titan.com|1|0").unwrap();
    assert_eq!(
        mail.kind,
        JobKind::Skill {
            name: "EMAIL_ALERT".into(),
            data: "admin@titan.com".into()
        }
    );
}

#[test]
fn built_ins_are_case_insensitive_and_trimmed() {
    let s = parse_one_off("  run | calc.py  --fast 3 | 5 | 10 ").unwrap();
    assert_eq!(
        s.kind,
        JobKind::Run {
            file: "calc.py".into(),
            args: vec![Box::from("--fast"), "3".into()].into()
        }
    );
    assert_eq!((s.priority, s.delay_ms), (5, 10));
    assert_eq!(parse_one_off("noop").unwrap().kind, JobKind::Noop);
    assert_eq!(parse_one_off("NOOP|").unwrap().kind, JobKind::Noop);
    assert_eq!(
        parse_one_off("Sleep|250").unwrap().kind,
        JobKind::Sleep { ms: 250 }
    );
    let d = parse_one_off("deploy|web.py|8080|2|0").unwrap();
    assert_eq!(
        d.kind,
        JobKind::Deploy {
            file: "web.py".into(),
            port: Some(8080)
        }
    );
    assert_eq!(
        parse_one_off("DEPLOY|web.py").unwrap().kind,
        JobKind::Deploy {
            file: "web.py".into(),
            port: None
        }
    );
}

#[test]
fn inline_scripts_decode_base64() {
    let s = parse_one_off("RUN_INLINE|hello.py:cHJpbnQoMSk=|2").unwrap();
    assert_eq!(
        s.kind,
        JobKind::RunInline {
            name: "hello.py".into(),
            bytes: b"print(1)".to_vec().into()
        }
    );
    assert_eq!(format_one_off(&s), "RUN_INLINE|hello.py:cHJpbnQoMSk=|2|0");
    let (_, _, field, problem) = field_err(parse_one_off("RUN_INLINE|hello.py:***").unwrap_err());
    assert_eq!(field, Field::Data);
    assert!(matches!(problem, FieldProblem::Base64(_)));
    let (_, _, _, problem) = field_err(parse_one_off("RUN_INLINE|cHJpbnQoMSk=").unwrap_err());
    assert_eq!(problem, FieldProblem::MissingInlineName);
    let (_, _, _, problem) =
        field_err(parse_one_off("RUN_INLINE|a/b.py:cHJpbnQoMSk=").unwrap_err());
    assert_eq!(
        problem,
        FieldProblem::Path {
            problem: PathProblem::NotAFileName
        }
    );
}

#[test]
fn path_traversal_is_rejected_at_parse_time() {
    for (text, want) in [
        ("RUN|../../etc/passwd", PathProblem::ParentDir),
        ("RUN|/etc/passwd", PathProblem::Absolute),
        ("RUN|a/../../b.sh", PathProblem::ParentDir),
        ("DEPLOY|..", PathProblem::ParentDir),
        ("RUN|a\0b", PathProblem::Nul),
    ] {
        let (line, _, field, problem) = field_err(parse_one_off(text).unwrap_err());
        assert_eq!(
            (line, field, problem),
            (1, Field::Data, FieldProblem::Path { problem: want }),
            "{text}"
        );
    }
    let msg = parse_one_off("RUN|../../etc/passwd")
        .unwrap_err()
        .to_string();
    assert_eq!(msg, "job line 1: field DATA: '..' would escape perm_files/");
    let (_, _, _, problem) = field_err(parse_one_off("RUN|").unwrap_err());
    assert_eq!(problem, FieldProblem::Empty);
}

#[test]
fn one_off_field_errors_name_the_field() {
    let cases: &[(&str, Field)] = &[
        ("", Field::Type),
        ("RUN", Field::Data),
        ("RUN|a.py|high", Field::Priority),
        ("RUN|a.py|1|-5", Field::DelayMs),
        ("RUN|a.py|1|0|9", Field::Line),
        ("DEPLOY|a.py|0", Field::Port),
        ("DEPLOY|a.py|70000", Field::Port),
        ("NOOP|data", Field::Data),
        ("SLEEP|soon", Field::Data),
        ("BAD TYPE|x", Field::Type),
        ("run_Inline|x", Field::Data),
        ("RUN|a.py|99999999999", Field::Priority),
    ];
    for (text, want) in cases {
        let (line, id, field, _) = field_err(parse_one_off(text).unwrap_err());
        assert_eq!((line, id, field), (1, None, *want), "{text:?}");
    }
}

#[test]
fn dag_line_errors_carry_line_and_id() {
    let err = parse_dag("A|NOOP||1|0|[] ; B|RUN|x.py|high|0|[A]").unwrap_err();
    assert_eq!(
        err.to_string(),
        "job line 2 (B): field PRIORITY: not an integer: \"high\""
    );
    let (line, id, field, _) = field_err(parse_dag("A|NOOP||1|0|[] ; B|RUN|x.py|1|0").unwrap_err());
    assert_eq!((line, id.as_deref(), field), (2, Some("B"), Field::Deps));
    let (_, _, field, problem) = field_err(parse_dag("A|NOOP||1|0|A").unwrap_err());
    assert_eq!((field, problem), (Field::Deps, FieldProblem::NotBracketed));
    let (_, _, field, _) = field_err(parse_dag("A|RUN|x.py|1|0|[] |extra").unwrap_err());
    assert_eq!(field, Field::Line);
    let (_, _, field, _) = field_err(parse_dag("A").unwrap_err());
    assert_eq!(field, Field::Type);
    let (_, _, field, _) = field_err(parse_dag("A|NOOP||1|0|[B,]").unwrap_err());
    assert_eq!(field, Field::Deps);
}

#[test]
fn dag_structure_errors_reject_the_whole_dag() {
    assert!(matches!(
        parse_dag("A|NOOP||1|0|[Z]"),
        Err(GrammarError::Dag(DagError::UnknownDependency { .. }))
    ));
    assert!(matches!(
        parse_dag("A|NOOP||1|0|[] ; A|NOOP||1|0|[]"),
        Err(GrammarError::Dag(DagError::DuplicateId { line: 2, .. }))
    ));
    let err = parse_dag("A|NOOP||1|0|[B] ; B|NOOP||1|0|[A]").unwrap_err();
    assert!(err.to_string().starts_with("dependency cycle: "), "{err}");
    assert!(matches!(
        parse_dag(" ; "),
        Err(GrammarError::Dag(DagError::Empty))
    ));
    assert!(matches!(
        parse_dag("|NOOP||1|0|[]"),
        Err(GrammarError::Dag(DagError::BadId { .. }))
    ));
}

#[test]
fn deps_may_be_listed_before_their_jobs() {
    let jobs = parse_dag("B|NOOP||1|0|[A] ; A|NOOP||1|0|[]").unwrap();
    assert_eq!(jobs[0].deps, vec![Box::from("A")]);
    let jobs = parse_dag("A|NOOP||||").unwrap();
    assert_eq!((jobs[0].spec.priority, jobs[0].spec.delay_ms), (1, 0));
}

#[test]
fn check_spec_rejects_unprintable_programmatic_specs() {
    let spec = JobSpec::new(JobKind::Skill {
        name: "X".into(),
        data: "a;b".into(),
    });
    assert!(check_spec(&spec, false).is_ok());
    assert!(check_spec(&spec, true).is_err());
    let spec = JobSpec::new(JobKind::Skill {
        name: "run".into(),
        data: "".into(),
    });
    assert!(matches!(
        check_spec(&spec, false),
        Err((Field::Type, FieldProblem::Reserved { .. }))
    ));
}

fn arb_word() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,12}".prop_filter("not a dot dir or built-in", |w| {
        w != ".." && w != "." && Builtin::of(w).is_none()
    })
}

fn arb_path() -> impl Strategy<Value = String> {
    prop::collection::vec(arb_word(), 1..4).prop_map(|parts| parts.join("/"))
}

fn arb_kind() -> impl Strategy<Value = JobKind> {
    prop_oneof![
        (arb_path(), prop::collection::vec(arb_word(), 0..4)).prop_map(|(f, a)| JobKind::Run {
            file: f.into(),
            args: a.into_iter().map(Box::from).collect()
        }),
        (arb_word(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(n, b)| {
            JobKind::RunInline {
                name: n.into(),
                bytes: b.into(),
            }
        }),
        (arb_path(), prop::option::of(1u16..)).prop_map(|(f, port)| JobKind::Deploy {
            file: f.into(),
            port
        }),
        Just(JobKind::Noop),
        (0..=MAX_DELAY_MS).prop_map(|ms| JobKind::Sleep { ms }),
        (arb_word(), "[A-Za-z0-9@ .,:_-]{0,20}").prop_map(|(n, d)| JobKind::Skill {
            name: n.into(),
            data: d.trim().into()
        }),
    ]
}

fn arb_spec() -> impl Strategy<Value = JobSpec> {
    (arb_kind(), any::<i32>(), 0..=MAX_DELAY_MS).prop_map(|(kind, priority, delay_ms)| JobSpec {
        priority,
        delay_ms,
        ..JobSpec::new(kind)
    })
}

proptest! {
    #[test]
    fn one_off_round_trips(spec in arb_spec()) {
        let text = format_one_off(&spec);
        prop_assert_eq!(parse_one_off(&text).unwrap(), spec, "{}", text);
    }

    #[test]
    fn dag_round_trips(specs in prop::collection::vec(arb_spec(), 1..8), edges in prop::collection::vec((0usize..8, 0usize..8), 0..16)) {
        let mut jobs: Vec<DagJobSpec> = specs.into_iter().enumerate()
            .map(|(i, spec)| DagJobSpec { name: format!("J{i}").into(), spec, deps: Vec::new() })
            .collect();
        let n = jobs.len();
        for (a, b) in edges {
            let (a, b) = (a % n, b % n);
            let (child, parent) = (a.max(b), a.min(b));
            let dep: Box<str> = format!("J{parent}").into();
            if child != parent && !jobs[child].deps.contains(&dep) {
                jobs[child].deps.push(dep);
            }
        }
        let text = format_dag(&jobs);
        prop_assert_eq!(parse_dag(&text).unwrap(), jobs, "{}", text);
    }
}
