//! The seed's text grammar, shared by the CLI and the master: parsing one-off and DAG submissions
//! into [`JobSpec`]s and printing them back to the same syntax.
//!
//! - one-off: `TYPE|DATA[|PRIORITY[|DELAY_MS]]`, and `DEPLOY|FILE[|PORT[|PRIORITY[|DELAY_MS]]]`;
//!   `NOOP` may omit its (empty) DATA;
//! - DAG job: `ID|TYPE|DATA|PRIORITY|DELAY_MS|[DEP, DEP]`, and `ID|DEPLOY|FILE|PORT|PRIORITY|DELAY_MS|[DEPS]`;
//!   jobs are separated by `;`; an empty PRIORITY or DELAY_MS means the default; an empty DEPS
//!   field means `[]`.
//!
//! Fields are trimmed; built-in TYPEs (RUN, RUN_INLINE, DEPLOY, NOOP, SLEEP) are case-insensitive;
//! any other TYPE is a skill name and is kept as written. File names are checked lexically here
//! (relative, no `..`, no NUL); the worker still resolves symlinks at run time. Timeouts and retry
//! counts are not part of the seed's grammar, so printing omits them: round trips hold for every
//! spec the grammar can express. Errors carry the 1-based job line, the job's ID, the field and the
//! reason; a DAG with any error is rejected whole.

mod errors;
mod print;
mod rules;

pub use errors::{Field, FieldProblem, GrammarError, PathProblem};
pub use print::{format_dag, format_dag_job, format_one_off};
pub use rules::{check_path, check_spec};

use rules::{check_skill_type, range_problem, Builtin};

use super::base64;
use super::dag;
use super::ids::check_name;
use super::limits::{MAX_ARGS, MAX_DATA_LEN, MAX_DELAY_MS, MAX_INLINE_BYTES};
use super::model::{DagJobSpec, JobKind, JobSpec, DEFAULT_PRIORITY};
/// Where the errors of one line point.
struct Line<'a> {
    line: usize,
    id: Option<&'a str>,
}

impl Line<'_> {
    fn err(&self, field: Field, problem: FieldProblem) -> GrammarError {
        GrammarError::Field {
            line: self.line,
            id: self.id.map(str::to_string),
            field,
            problem,
        }
    }
}

/// Parses a one-off submission (`TYPE|DATA[|PRIORITY[|DELAY_MS]]`, or the DEPLOY form with PORT).
pub fn parse_one_off(text: &str) -> Result<JobSpec, GrammarError> {
    let at = Line { line: 1, id: None };
    let fields: Vec<&str> = text.split('|').map(str::trim).collect();
    let ty = fields[0];
    if ty.is_empty() {
        return Err(at.err(Field::Type, FieldProblem::Missing));
    }
    let deploy = Builtin::of(ty) == Some(Builtin::Deploy);
    let max = if deploy { 5 } else { 4 };
    if fields.len() > max {
        return Err(at.err(
            Field::Line,
            FieldProblem::TooManyFields {
                found: fields.len(),
                max,
            },
        ));
    }
    let data = match fields.get(1) {
        Some(d) => *d,
        None if Builtin::of(ty) == Some(Builtin::Noop) => "",
        None => return Err(at.err(Field::Data, FieldProblem::Missing)),
    };
    let (port, rest) = if deploy {
        (fields.get(2).copied(), 3)
    } else {
        (None, 2)
    };
    let kind = parse_kind(&at, ty, data, port, false)?;
    let priority = parse_priority(&at, fields.get(rest).copied())?;
    let delay_ms = parse_delay(&at, fields.get(rest + 1).copied())?;
    Ok(JobSpec {
        priority,
        delay_ms,
        ..JobSpec::new(kind)
    })
}

/// Parses a DAG submission (`line ; line ; ...`) and validates its structure; any error rejects it whole.
pub fn parse_dag(text: &str) -> Result<Vec<DagJobSpec>, GrammarError> {
    let mut jobs = Vec::new();
    for (i, line) in text.split(';').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        jobs.push(parse_dag_line(i + 1, line)?);
    }
    dag::validate(&jobs)?;
    Ok(jobs)
}

/// Parses one DAG job line; `line` is its 1-based position, used in errors.
pub fn parse_dag_line(line: usize, text: &str) -> Result<DagJobSpec, GrammarError> {
    let fields: Vec<&str> = text.split('|').map(str::trim).collect();
    let id = fields[0];
    let at = Line {
        line,
        id: (!id.is_empty()).then_some(id),
    };
    let Some(&ty) = fields.get(1).filter(|t| !t.is_empty()) else {
        return Err(at.err(Field::Type, FieldProblem::Missing));
    };
    let with_port = Builtin::of(ty) == Some(Builtin::Deploy) && fields.len() == 7;
    let want = if with_port { 7 } else { 6 };
    if fields.len() > want {
        return Err(at.err(
            Field::Line,
            FieldProblem::TooManyFields {
                found: fields.len(),
                max: want,
            },
        ));
    }
    let order: &[Field] = if with_port {
        &[
            Field::Id,
            Field::Type,
            Field::Data,
            Field::Port,
            Field::Priority,
            Field::DelayMs,
            Field::Deps,
        ]
    } else {
        &[
            Field::Id,
            Field::Type,
            Field::Data,
            Field::Priority,
            Field::DelayMs,
            Field::Deps,
        ]
    };
    if let Some(&missing) = order.get(fields.len()) {
        return Err(at.err(missing, FieldProblem::Missing));
    }
    let (port, p) = if with_port {
        (Some(fields[3]), 4)
    } else {
        (None, 3)
    };
    let kind = parse_kind(&at, ty, fields[2], port, true)?;
    let priority = parse_priority(&at, Some(fields[p]))?;
    let delay_ms = parse_delay(&at, Some(fields[p + 1]))?;
    let deps = parse_deps(&at, fields[p + 2])?;
    Ok(DagJobSpec {
        name: id.into(),
        spec: JobSpec {
            priority,
            delay_ms,
            ..JobSpec::new(kind)
        },
        deps,
    })
}

fn parse_kind(
    at: &Line,
    ty: &str,
    data: &str,
    port: Option<&str>,
    in_dag: bool,
) -> Result<JobKind, GrammarError> {
    if data.len() > MAX_DATA_LEN && Builtin::of(ty) != Some(Builtin::RunInline) {
        return Err(at.err(
            Field::Data,
            FieldProblem::TooLong {
                len: data.len(),
                max: MAX_DATA_LEN,
            },
        ));
    }
    let path_err = |problem| at.err(Field::Data, FieldProblem::Path { problem });
    let kind = match Builtin::of(ty) {
        Some(Builtin::Run) => {
            let mut words = data.split_whitespace();
            let file = words
                .next()
                .ok_or_else(|| at.err(Field::Data, FieldProblem::Empty))?;
            check_path(file, false).map_err(path_err)?;
            let args: Box<[Box<str>]> = words.map(Box::from).collect();
            if args.len() > MAX_ARGS {
                return Err(at.err(
                    Field::Data,
                    FieldProblem::TooManyArgs {
                        count: args.len(),
                        max: MAX_ARGS,
                    },
                ));
            }
            JobKind::Run {
                file: file.into(),
                args,
            }
        }
        Some(Builtin::RunInline) => {
            let (name, coded) = data
                .split_once(':')
                .ok_or_else(|| at.err(Field::Data, FieldProblem::MissingInlineName))?;
            check_path(name.trim(), true).map_err(path_err)?;
            let coded = coded.trim();
            if coded.len() / 4 * 3 > MAX_INLINE_BYTES {
                return Err(at.err(
                    Field::Data,
                    FieldProblem::TooLong {
                        len: coded.len() / 4 * 3,
                        max: MAX_INLINE_BYTES,
                    },
                ));
            }
            let bytes = base64::decode(coded).map_err(|e| at.err(Field::Data, e.into()))?;
            JobKind::RunInline {
                name: name.trim().into(),
                bytes: bytes.into(),
            }
        }
        Some(Builtin::Deploy) => {
            check_path(data, false).map_err(path_err)?;
            JobKind::Deploy {
                file: data.into(),
                port: parse_port(at, port)?,
            }
        }
        Some(Builtin::Noop) if data.is_empty() => JobKind::Noop,
        Some(Builtin::Noop) => {
            return Err(at.err(
                Field::Data,
                FieldProblem::Unexpected {
                    text: data.to_string(),
                },
            ))
        }
        Some(Builtin::Sleep) => JobKind::Sleep {
            ms: parse_u32(at, Field::Data, Some(data), MAX_DELAY_MS)?,
        },
        None => {
            check_skill_type(ty).map_err(|p| at.err(Field::Type, p))?;
            JobKind::Skill {
                name: ty.into(),
                data: data.into(),
            }
        }
    };
    let spec = JobSpec::new(kind);
    check_spec(&spec, in_dag).map_err(|(field, problem)| at.err(field, problem))?;
    Ok(spec.kind)
}

fn parse_port(at: &Line, text: Option<&str>) -> Result<Option<u16>, GrammarError> {
    match text {
        None | Some("") => Ok(None),
        Some(t) => {
            let n = parse_int(at, Field::Port, t)?;
            if !(1..=65535).contains(&n) {
                return Err(at.err(Field::Port, range_problem(t, 1, 65535)));
            }
            Ok(Some(n as u16))
        }
    }
}

fn parse_priority(at: &Line, text: Option<&str>) -> Result<i32, GrammarError> {
    match text {
        None | Some("") => Ok(DEFAULT_PRIORITY),
        Some(t) => {
            let n = parse_int(at, Field::Priority, t)?;
            i32::try_from(n)
                .map_err(|_| at.err(Field::Priority, range_problem(t, i32::MIN.into(), i32::MAX)))
        }
    }
}

fn parse_delay(at: &Line, text: Option<&str>) -> Result<u32, GrammarError> {
    match text {
        None | Some("") => Ok(0),
        t => parse_u32(at, Field::DelayMs, t, MAX_DELAY_MS),
    }
}

fn parse_u32(at: &Line, field: Field, text: Option<&str>, max: u32) -> Result<u32, GrammarError> {
    let t = text.unwrap_or("");
    if t.is_empty() {
        return Err(at.err(field, FieldProblem::Empty));
    }
    let n = parse_int(at, field, t)?;
    if !(0..=i64::from(max)).contains(&n) {
        return Err(at.err(field, range_problem(t, 0, max)));
    }
    Ok(n as u32)
}

fn parse_int(at: &Line, field: Field, t: &str) -> Result<i64, GrammarError> {
    t.parse::<i64>().map_err(|_| {
        at.err(
            field,
            FieldProblem::NotAnInteger {
                text: t.to_string(),
            },
        )
    })
}

fn parse_deps(at: &Line, text: &str) -> Result<Vec<Box<str>>, GrammarError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| at.err(Field::Deps, FieldProblem::NotBracketed))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|d| {
            let d = d.trim();
            check_name(d).map_err(|problem| at.err(Field::Deps, FieldProblem::Name { problem }))?;
            Ok(d.into())
        })
        .collect()
}

#[cfg(test)]
mod tests;
