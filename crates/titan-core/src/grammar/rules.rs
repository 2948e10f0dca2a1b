//! The lexical rules every spec obeys, whether parsed or built by code: safe relative file names,
//! valid skill names, sizes within the named limits, and no separator characters in text fields, so
//! that every accepted spec is safe to run and prints back to the same syntax.

use std::fmt;

use super::errors::{Field, FieldProblem, PathProblem};
use crate::ids::check_name;
use crate::limits::{MAX_ARGS, MAX_DATA_LEN, MAX_DELAY_MS, MAX_INLINE_BYTES, MAX_NAME_LEN};
use crate::model::{JobKind, JobSpec};

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

pub(super) fn range_problem(
    value: impl fmt::Display,
    min: i64,
    max: impl Into<i64>,
) -> FieldProblem {
    FieldProblem::OutOfRange {
        text: value.to_string(),
        min,
        max: max.into(),
    }
}

pub(super) fn check_skill_type(name: &str) -> Result<(), FieldProblem> {
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
pub(super) enum Builtin {
    Run,
    RunInline,
    Deploy,
    Noop,
    Sleep,
}

impl Builtin {
    pub(super) fn of(ty: &str) -> Option<Builtin> {
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
