//! Printing specs back to the seed's syntax (the canonical forms the parser reads back unchanged).

use std::fmt::Write as _;

use crate::base64;
use crate::model::{DagJobSpec, JobKind, JobSpec};

/// Prints a one-off spec in the canonical `TYPE|DATA|PRIORITY|DELAY_MS` form (DEPLOY with PORT).
pub fn format_one_off(spec: &JobSpec) -> String {
    let mut s = String::new();
    s.push_str(spec.kind.type_name());
    s.push('|');
    write_data(&mut s, &spec.kind);
    if let JobKind::Deploy { port, .. } = &spec.kind {
        s.push('|');
        if let Some(p) = port {
            let _ = write!(s, "{p}");
        }
    }
    let _ = write!(s, "|{}|{}", spec.priority, spec.delay_ms);
    s
}

/// Prints one DAG job line (`ID|TYPE|DATA|PRIORITY|DELAY_MS|[DEPS]`, DEPLOY in the 7-field form).
pub fn format_dag_job(job: &DagJobSpec) -> String {
    let mut s = String::new();
    let _ = write!(s, "{}|{}|", job.name, job.spec.kind.type_name());
    write_data(&mut s, &job.spec.kind);
    if let JobKind::Deploy { port, .. } = &job.spec.kind {
        s.push('|');
        if let Some(p) = port {
            let _ = write!(s, "{p}");
        }
    }
    let _ = write!(
        s,
        "|{}|{}|[{}]",
        job.spec.priority,
        job.spec.delay_ms,
        job.deps.join(", ")
    );
    s
}

/// Prints a DAG as job lines joined by ` ; `.
pub fn format_dag(jobs: &[DagJobSpec]) -> String {
    jobs.iter()
        .map(format_dag_job)
        .collect::<Vec<_>>()
        .join(" ; ")
}

fn write_data(s: &mut String, kind: &JobKind) {
    match kind {
        JobKind::Run { file, args } => {
            s.push_str(file);
            for a in args.iter() {
                s.push(' ');
                s.push_str(a);
            }
        }
        JobKind::RunInline { name, bytes } => {
            s.push_str(name);
            s.push(':');
            s.push_str(&base64::encode(bytes));
        }
        JobKind::Deploy { file, .. } => s.push_str(file),
        JobKind::Noop => {}
        JobKind::Sleep { ms } => {
            let _ = write!(s, "{ms}");
        }
        JobKind::Skill { data, .. } => s.push_str(data),
    }
}
