//! Turning what a user typed into a [`Submission`]: one-off text, a local script sent inline
//! (`--file`), DAG text, and DAG files whose error messages point at the file's own lines.
//!
//! Everything is parsed on the client first, so errors come back at once with the line and field
//! at fault; the master validates again, since it never trusts a client's parser. The text
//! functions are pure; only [`read_inline_file`] and [`read_dag_file`] touch the file system.

use std::fs::File;
use std::io::{self, Read};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use titan_core::dag::{self, DagError};
use titan_core::grammar::{self, Field, FieldProblem, GrammarError};
use titan_core::limits::MAX_INLINE_BYTES;
use titan_core::model::{DagJobSpec, JobKind, JobSpec, Submission, DEFAULT_PRIORITY};

use super::args::SpecOptions;
use super::error::CliError;

/// Largest DAG file read. Far above what fits one frame; it only keeps a wrong path (a disk image,
/// `/dev/zero`) from being read into memory whole.
pub const MAX_DAG_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Sets the spec fields the text syntax cannot express.
pub fn apply_options(spec: &mut JobSpec, options: &SpecOptions) -> Result<(), CliError> {
    if let Some(timeout) = options.timeout {
        let ms = timeout.as_millis();
        spec.timeout_ms = Some(u32::try_from(ms).ok().and_then(NonZeroU32::new).ok_or(
            CliError::TimeoutRange {
                given_ms: ms,
                max_ms: u32::MAX,
            },
        )?);
    }
    if let Some(retries) = options.retries {
        spec.retries = retries;
    }
    Ok(())
}

/// A one-off job from text (`TYPE|DATA[|PRIORITY[|DELAY_MS]]`).
pub fn one_off(text: &str, options: &SpecOptions) -> Result<Submission, CliError> {
    let mut spec = grammar::parse_one_off(text)?;
    apply_options(&mut spec, options)?;
    Ok(Submission::OneOff(spec))
}

/// A DAG from text (jobs separated by `;`); errors name the job's position in the text.
pub fn dag_text(text: &str, options: &SpecOptions) -> Result<Submission, CliError> {
    let mut jobs = grammar::parse_dag(text)?;
    for job in &mut jobs {
        apply_options(&mut job.spec, options)?;
    }
    Ok(Submission::Dag(jobs))
}

/// A DAG from a file's text: jobs are separated by newlines or `;`, blank lines and lines whose
/// first non-blank character is `#` are skipped, and every line number in an error is a line of
/// the file (1-based), so an editor can jump to it.
pub fn dag_file_text(text: &str) -> Result<Vec<DagJobSpec>, GrammarError> {
    let mut jobs = Vec::new();
    // The file line of each job, by the job's index in `jobs`.
    let mut file_lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for piece in line.split(';').filter(|p| !p.trim().is_empty()) {
            jobs.push(grammar::parse_dag_line(i + 1, piece)?);
            file_lines.push(i + 1);
        }
    }
    dag::validate(&jobs).map_err(|e| GrammarError::Dag(to_file_lines(e, &file_lines)))?;
    Ok(jobs)
}

/// Rewrites the job positions in a DAG error (1-based indices into the submission) as file lines.
fn to_file_lines(error: DagError, file_lines: &[usize]) -> DagError {
    let at = |position: usize| {
        position
            .checked_sub(1)
            .and_then(|i| file_lines.get(i))
            .copied()
            .unwrap_or(position)
    };
    match error {
        DagError::BadId { line, id, problem } => DagError::BadId {
            line: at(line),
            id,
            problem,
        },
        DagError::DuplicateId {
            line,
            id,
            first_line,
        } => DagError::DuplicateId {
            line: at(line),
            id,
            first_line: at(first_line),
        },
        DagError::SelfDependency { line, id } => DagError::SelfDependency { line: at(line), id },
        DagError::DuplicateDependency { line, id, dep } => DagError::DuplicateDependency {
            line: at(line),
            id,
            dep,
        },
        DagError::UnknownDependency { line, id, dep } => DagError::UnknownDependency {
            line: at(line),
            id,
            dep,
        },
        other @ (DagError::Empty
        | DagError::TooManyJobs { .. }
        | DagError::TooManyEdges { .. }
        | DagError::Cycle { .. }) => other,
    }
}

/// Reads a DAG file (`-` is stdin) and parses it with [`dag_file_text`].
pub fn read_dag_file(path: &Path, options: &SpecOptions) -> Result<Submission, CliError> {
    let bytes = if path == Path::new("-") {
        read_limited(io::stdin().lock(), path, MAX_DAG_FILE_BYTES)?
    } else {
        read_file_limited(path, MAX_DAG_FILE_BYTES)?
    };
    let text = String::from_utf8(bytes).map_err(|e| CliError::ReadFile {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()),
    })?;
    let mut jobs = dag_file_text(&text).map_err(|source| CliError::DagFile {
        path: path.to_path_buf(),
        source,
    })?;
    for job in &mut jobs {
        apply_options(&mut job.spec, options)?;
    }
    Ok(Submission::Dag(jobs))
}

/// Where an inline script's scheduling fields come from (`--priority`, `--delay-ms`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InlineOptions {
    /// Priority; the default when `None`.
    pub priority: Option<i32>,
    /// Delay in milliseconds; none when `None`.
    pub delay_ms: Option<u32>,
    /// Timeout and retries.
    pub spec: SpecOptions,
}

/// A `RUN_INLINE` job from a script's bytes; `path`'s file name names the job and picks the
/// interpreter on the worker.
pub fn inline_script(
    path: &Path,
    bytes: Vec<u8>,
    options: &InlineOptions,
) -> Result<Submission, CliError> {
    let bad = |field, problem| CliError::InlineScript {
        path: path.to_path_buf(),
        field,
        problem,
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad(Field::Data, FieldProblem::MissingInlineName))?;
    let mut spec = JobSpec {
        priority: options.priority.unwrap_or(DEFAULT_PRIORITY),
        delay_ms: options.delay_ms.unwrap_or(0),
        ..JobSpec::new(JobKind::RunInline {
            name: name.into(),
            bytes: bytes.into(),
        })
    };
    grammar::check_spec(&spec, false).map_err(|(field, problem)| bad(field, problem))?;
    apply_options(&mut spec, &options.spec)?;
    Ok(Submission::OneOff(spec))
}

/// Reads a local script (at most [`MAX_INLINE_BYTES`]) and builds its `RUN_INLINE` job.
pub fn read_inline_file(path: &Path, options: &InlineOptions) -> Result<Submission, CliError> {
    let bytes = read_file_limited(path, MAX_INLINE_BYTES as u64)?;
    inline_script(path, bytes, options)
}

fn read_file_limited(path: &Path, max: u64) -> Result<Vec<u8>, CliError> {
    let read_err = |source| CliError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    if len > max {
        return Err(too_large(path, len, max));
    }
    read_limited(file, path, max)
}

/// Reads at most `max` bytes; one byte more means the source is too large (a file may grow
/// between the size check and the read, and stdin has no size).
fn read_limited(source: impl Read, path: &Path, max: u64) -> Result<Vec<u8>, CliError> {
    let mut bytes = Vec::new();
    source
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| CliError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > max {
        return Err(too_large(path, bytes.len() as u64, max));
    }
    Ok(bytes)
}

fn too_large(path: &Path, len: u64, max: u64) -> CliError {
    CliError::FileTooLarge {
        path: PathBuf::from(path),
        len,
        max,
    }
}

#[cfg(test)]
mod tests;
