//! Typed errors of the grammar: which job line, which field, and why.

use std::fmt;

use crate::base64;
use crate::dag::DagError;
use crate::ids::NameProblem;

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
    /// Longer than four times [`MAX_NAME_LEN`](crate::limits::MAX_NAME_LEN).
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
