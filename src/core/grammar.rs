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

use std::fmt::{self, Write as _};

use super::base64;
use super::dag::{self, DagError};
use super::ids::{check_name, NameProblem};
use super::limits::{MAX_ARGS, MAX_DATA_LEN, MAX_DELAY_MS, MAX_INLINE_BYTES, MAX_NAME_LEN};
use super::model::{DagJobSpec, JobKind, JobSpec, DEFAULT_PRIORITY};

/// A field of the text syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The line as a whole (field count).
    Line,
    /// A DAG job's `ID`.
    Id,
    /// `TYPE`.
    Type,
    /// `DATA` (or `FILE` for DEPLOY).
    Data,
    /// DEPLOY's `PORT`.
    Port,
    /// `PRIORITY`.
    Priority,
    /// `DELAY_MS`.
    DelayMs,
    /// `[DEPS]`.
    Deps,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Line => "line",
            Field::Id => "field ID",
            Field::Type => "field TYPE",
            Field::Data => "field DATA",
            Field::Port => "field PORT",
            Field::Priority => "field PRIORITY",
            Field::DelayMs => "field DELAY_MS",
            Field::Deps => "field DEPS",
        })
    }
}

/// What is wrong with a file name given to RUN, RUN_INLINE or DEPLOY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    /// No file name.
    #[error("the file name is empty")]
    Empty,
    /// Starts with `/`.
    #[error("absolute paths are not allowed (files come from perm_files/)")]
    Absolute,
    /// Has a `..` component.
    #[error("'..' would escape perm_files/")]
    ParentDir,
    /// Contains a NUL byte.
    #[error("the file name contains a NUL byte")]
    Nul,
    /// Contains whitespace (arguments are separated by whitespace).
    #[error("the file name contains whitespace")]
    Whitespace,
    /// An inline script name must be a plain file name.
    #[error("an inline script name may not contain '/'")]
    NotAFileName,
    /// Longer than [`MAX_NAME_LEN`] times 4.
    #[error("the file name is too long")]
    TooLong,
}

/// Why one field did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    /// The field is required but absent.
    #[error("missing")]
    Missing,
    /// More `|`-separated fields than the form allows.
    #[error("{found} fields, at most {max} allowed")]
    TooManyFields {
        /// Fields found.
        found: usize,
        /// The most this form takes.
        max: usize,
    },
    /// Not an integer.
    #[error("not an integer: {text:?}")]
    NotAnInteger {
        /// The text as given.
        text: String,
    },
    /// An integer outside the allowed range.
    #[error("{text} is outside {min}..={max}")]
    OutOfRange {
        /// The text as given.
        text: String,
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// The job type needs data.
    #[error("empty; this job type needs data")]
    Empty,
    /// NOOP takes no data.
    #[error("NOOP takes no data, found {text:?}")]
    Unexpected {
        /// The text as given.
        text: String,
    },
    /// A bad file name.
    #[error("{problem}")]
    Path {
        /// What is wrong.
        problem: PathProblem,
    },
    /// A bad skill or id name.
    #[error("{problem}")]
    Name {
        /// What is wrong.
        problem: NameProblem,
    },
    /// A skill TYPE that spells a built-in type in another case.
    #[error("{name:?} is a built-in type name")]
    Reserved {
        /// The name as given.
        name: String,
    },
    /// `RUN_INLINE` data without `name:`.
    #[error("expected name:BASE64")]
    MissingInlineName,
    /// Invalid base64.
    #[error("{0}")]
    Base64(#[from] base64::Base64Error),
    /// Longer than allowed.
    #[error("{len} bytes, at most {max} allowed")]
    TooLong {
        /// Length found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Too many RUN arguments.
    #[error("{count} arguments, at most {max} allowed")]
    TooManyArgs {
        /// Arguments found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// DEPS not written as `[A, B]`.
    #[error("expected [DEP, DEP, ...]")]
    NotBracketed,
    /// A text field contains a separator character (`|`, or `;` inside a DAG) or whitespace where
    /// none is allowed, so it could not be printed back.
    #[error("contains {ch:?}, which the syntax uses as a separator")]
    Separator {
        /// The offending character.
        ch: char,
    },
}

/// A submission text that did not parse. Nothing of it may be queued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// One field of one job line is wrong.
    #[error("job line {line}{}: {field}: {problem}", id.as_ref().map(|i| format!(" ({i})")).unwrap_or_default())]
    Field {
        /// 1-based job line (1 for a one-off).
        line: usize,
        /// The job's ID when the line has one.
        id: Option<String>,
        /// Which field.
        field: Field,
        /// What is wrong.
        problem: FieldProblem,
    },
    /// The lines parsed but the DAG's structure is invalid.
    #[error(transparent)]
    Dag(#[from] DagError),
}

/// Checks a spec built by code rather than parsed (e.g. by the master from an rkyv message): the
/// same lexical rules the parser enforces, so every accepted spec is safe and prints back.
pub fn check_spec(spec: &JobSpec, in_dag: bool) -> Result<(), (Field, FieldProblem)> {
    let seps: &[char] = if in_dag { &['|', ';'] } else { &['|'] };
    let no_seps = |field, s: &str| match s.chars().find(|c| seps.contains(c)) {
        Some(ch) => Err((field, FieldProblem::Separator { ch })),
        None => Ok(()),
    };
    if spec.delay_ms > MAX_DELAY_MS {
        return Err((
            Field::DelayMs,
            range_problem(spec.delay_ms, 0, MAX_DELAY_MS),
        ));
    }
    match &spec.kind {
        JobKind::Run { file, args } => {
            check_path(file, false)
                .map_err(|problem| (Field::Data, FieldProblem::Path { problem }))?;
            if args.len() > MAX_ARGS {
                return Err((
                    Field::Data,
                    FieldProblem::TooManyArgs {
                        count: args.len(),
                        max: MAX_ARGS,
                    },
                ));
            }
            for arg in args.iter() {
                if arg.is_empty() || arg.chars().any(char::is_whitespace) {
                    return Err((Field::Data, FieldProblem::Separator { ch: ' ' }));
                }
                no_seps(Field::Data, arg)?;
            }
            no_seps(Field::Data, file)
        }
        JobKind::RunInline { name, bytes } => {
            check_path(name, true)
                .map_err(|problem| (Field::Data, FieldProblem::Path { problem }))?;
            if name.contains(':') {
                return Err((Field::Data, FieldProblem::Separator { ch: ':' }));
            }
            if bytes.len() > MAX_INLINE_BYTES {
                return Err((
                    Field::Data,
                    FieldProblem::TooLong {
                        len: bytes.len(),
                        max: MAX_INLINE_BYTES,
                    },
                ));
            }
            no_seps(Field::Data, name)
        }
        JobKind::Deploy { file, port } => {
            check_path(file, false)
                .map_err(|problem| (Field::Data, FieldProblem::Path { problem }))?;
            if *port == Some(0) {
                return Err((Field::Port, range_problem(0, 1, 65535)));
            }
            no_seps(Field::Data, file)
        }
        JobKind::Noop => Ok(()),
        JobKind::Sleep { ms } if *ms > MAX_DELAY_MS => {
            Err((Field::Data, range_problem(*ms, 0, MAX_DELAY_MS)))
        }
        JobKind::Sleep { .. } => Ok(()),
        JobKind::Skill { name, data } => {
            check_skill_type(name).map_err(|p| (Field::Type, p))?;
            if data.len() > MAX_DATA_LEN {
                return Err((
                    Field::Data,
                    FieldProblem::TooLong {
                        len: data.len(),
                        max: MAX_DATA_LEN,
                    },
                ));
            }
            no_seps(Field::Data, data)
        }
    }
}

fn range_problem(value: impl fmt::Display, min: i64, max: impl Into<i64>) -> FieldProblem {
    FieldProblem::OutOfRange {
        text: value.to_string(),
        min,
        max: max.into(),
    }
}

fn check_skill_type(name: &str) -> Result<(), FieldProblem> {
    check_name(name).map_err(|problem| FieldProblem::Name { problem })?;
    if Builtin::of(name).is_some() {
        return Err(FieldProblem::Reserved {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Lexical file-name check: relative, no `..` component, no NUL, no whitespace, not empty.
pub fn check_path(path: &str, plain_name: bool) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.len() > MAX_NAME_LEN * 4 {
        return Err(PathProblem::TooLong);
    }
    if path.contains('\0') {
        return Err(PathProblem::Nul);
    }
    if path.chars().any(char::is_whitespace) {
        return Err(PathProblem::Whitespace);
    }
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    if path.split('/').any(|c| c == "..") {
        return Err(PathProblem::ParentDir);
    }
    if plain_name && (path.contains('/') || path == ".") {
        return Err(PathProblem::NotAFileName);
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Builtin {
    Run,
    RunInline,
    Deploy,
    Noop,
    Sleep,
}

impl Builtin {
    fn of(ty: &str) -> Option<Builtin> {
        [
            ("RUN", Builtin::Run),
            ("RUN_INLINE", Builtin::RunInline),
            ("DEPLOY", Builtin::Deploy),
            ("NOOP", Builtin::Noop),
            ("SLEEP", Builtin::Sleep),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(ty))
        .map(|(_, b)| b)
    }
}

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

#[cfg(test)]
#[path = "grammar_tests.rs"]
mod tests;
