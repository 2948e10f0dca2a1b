//! Command resolution: from what a job asks to run ([`Program`]) to the exact argv to execute
//! ([`LaunchPlan`]), with a typed error for everything that must not run.
//!
//! The rules: a `RUN` file lives under `perm_files/` and may not escape it (no absolute paths, no
//! `..`, no symlink that resolves outside); an inline script is a plain file name in the job's
//! workspace; the extension picks the interpreter (`.py` → `python3 -u`, `.sh` → `sh`, `.jar` →
//! `java -jar`), anything else must be an executable file. The name checks and the interpreter
//! choice are pure functions (the master can reuse them at submit time); [`Resolver::resolve`]
//! adds the file-system lookups (canonicalize, stat, PATH search), which the engine runs on a
//! launcher thread, never on the executor.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// The longest file or directory name accepted (the Linux `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;
/// The longest relative path accepted for a `perm_files/` entry.
pub const MAX_PATH_LEN: usize = 1024;
/// The largest inline script accepted (the wire's frame limit is 10 MiB; leave room for the rest).
pub const MAX_INLINE_SCRIPT_BYTES: usize = 8 << 20;
/// The most arguments a job may pass to its program.
pub const MAX_ARGS: usize = 1024;

/// What a job asks to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// `RUN|file args…`: a file under `perm_files/` (a relative path; subdirectories allowed).
    PermFile { name: String, args: Vec<String> },
    /// An inline script sent with the job: written to the job's workspace as `name` (a plain file
    /// name), then run by its extension like a `perm_files/` entry.
    Inline {
        name: String,
        bytes: Vec<u8>,
        args: Vec<String>,
    },
    /// A program the worker itself chose (a child `titan worker`, `/bin/true` in benchmarks).
    /// Never build this from user input: it bypasses every check above.
    Trusted {
        program: PathBuf,
        args: Vec<OsString>,
    },
}

impl Program {
    /// `RUN|name args…` from `perm_files/`.
    pub fn perm_file(name: impl Into<String>, args: Vec<String>) -> Self {
        Self::PermFile {
            name: name.into(),
            args,
        }
    }

    /// A trusted program with its arguments.
    pub fn trusted(program: impl Into<PathBuf>, args: Vec<OsString>) -> Self {
        Self::Trusted {
            program: program.into(),
            args,
        }
    }
}

/// How a file is run, chosen by its extension (ASCII case-insensitive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpreter {
    /// `.py`: `python3 -u file args…` (unbuffered, so output reaches the log as it is printed).
    Python,
    /// `.sh`: `sh file args…`.
    Shell,
    /// `.jar`: `java -jar file args…`.
    Java,
    /// Anything else: the file itself, which must be executable.
    Direct,
}

impl Interpreter {
    /// The interpreter for a file name.
    pub fn for_file(name: &str) -> Self {
        let ext = Path::new(name)
            .extension()
            .and_then(OsStr::to_str)
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("py") => Self::Python,
            Some("sh") => Self::Shell,
            Some("jar") => Self::Java,
            _ => Self::Direct,
        }
    }

    /// The program looked up on PATH and the flags placed before the file, if any.
    fn command(self) -> Option<(&'static str, &'static [&'static str])> {
        match self {
            Self::Python => Some(("python3", &["-u"])),
            Self::Shell => Some(("sh", &[])),
            Self::Java => Some(("java", &["-jar"])),
            Self::Direct => None,
        }
    }
}

/// Why a job's program cannot run. Every variant is a permanent error for that job: retrying
/// the same job on the same worker fails the same way.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("empty file name")]
    EmptyName,
    #[error("file name {name:?} is longer than {max} bytes")]
    NameTooLong { name: String, max: usize },
    #[error("file name {name:?} contains a NUL byte")]
    NulInName { name: String },
    #[error("absolute path {name:?} rejected: files must be inside {root}")]
    AbsolutePath { name: String, root: PathBuf },
    #[error("path {name:?} rejected: `..` and `.` components may not be used to leave {root}")]
    Traversal { name: String, root: PathBuf },
    #[error("{name:?} is not a plain file name (no `/`, `.` or `..`)")]
    NotAFileName { name: String },
    #[error("{path} resolves to {resolved}, outside {root}")]
    EscapesRoot {
        path: PathBuf,
        resolved: PathBuf,
        root: PathBuf,
    },
    #[error("{} not found", path.display())]
    NotFound { path: PathBuf },
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{} is not executable (and has no .py, .sh or .jar extension)", path.display())]
    NotExecutable { path: PathBuf },
    #[error("no JVM found: `java` is not on PATH, needed to run {file}")]
    NoJvm { file: String },
    #[error("`{interpreter}` is not on PATH, needed to run {file}")]
    InterpreterNotFound {
        interpreter: &'static str,
        file: String,
    },
    #[error("{count} arguments exceed the limit of {max}")]
    TooManyArgs { count: usize, max: usize },
    #[error("inline script of {len} bytes exceeds the limit of {max}")]
    InlineTooLarge { len: usize, max: usize },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
}

/// The exact process to start. `inline` is set when a script must first be written to the job's
/// workspace (at `path`, which `args` already refers to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchPlan {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub inline: Option<InlineScript>,
}

/// Script bytes to write before launching, and whether to mark them executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlineScript {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub executable: bool,
}

/// Checks a `perm_files/` entry name without touching the file system: relative, made only of
/// normal components, within the length limits. Symlinks are checked later by [`Resolver`].
pub fn check_perm_name(name: &str, root: &Path) -> Result<(), ResolveError> {
    check_common(name, MAX_PATH_LEN)?;
    let path = Path::new(name);
    if path.is_absolute() {
        return Err(ResolveError::AbsolutePath {
            name: name.to_owned(),
            root: root.to_owned(),
        });
    }
    for component in path.components() {
        match component {
            Component::Normal(part) if part.len() <= MAX_NAME_LEN => {}
            Component::Normal(_) => {
                return Err(ResolveError::NameTooLong {
                    name: name.to_owned(),
                    max: MAX_NAME_LEN,
                })
            }
            // `a/./b` is harmless but never needed; rejecting it keeps the rule simple to state.
            _ => {
                return Err(ResolveError::Traversal {
                    name: name.to_owned(),
                    root: root.to_owned(),
                })
            }
        }
    }
    Ok(())
}

/// Checks a plain file name (inline scripts, workspace directories): one normal component.
pub fn check_file_name(name: &str) -> Result<(), ResolveError> {
    check_common(name, MAX_NAME_LEN)?;
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(part)), None) if part == OsStr::new(name) => Ok(()),
        _ => Err(ResolveError::NotAFileName {
            name: name.to_owned(),
        }),
    }
}

fn check_common(name: &str, max_len: usize) -> Result<(), ResolveError> {
    if name.is_empty() {
        return Err(ResolveError::EmptyName);
    }
    if name.len() > max_len {
        return Err(ResolveError::NameTooLong {
            name: name.to_owned(),
            max: max_len,
        });
    }
    if name.contains('\0') {
        return Err(ResolveError::NulInName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Finds `program` in the `:`-separated `search_path` (empty entries, which would mean the
/// current directory, are skipped). Returns the first regular, executable match.
pub fn find_on_path(program: &str, search_path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(search_path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Resolves programs against one `perm_files/` root and one PATH.
#[derive(Clone, Debug)]
pub struct Resolver {
    perm_files: PathBuf,
    search_path: OsString,
}

impl Resolver {
    pub fn new(perm_files: impl Into<PathBuf>, search_path: impl Into<OsString>) -> Self {
        Self {
            perm_files: perm_files.into(),
            search_path: search_path.into(),
        }
    }

    /// Turns `program` into a launch plan for a job whose workspace directory is `job_dir`.
    /// Touches the file system (canonicalize, stat, PATH search) but writes nothing.
    pub fn resolve(&self, program: &Program, job_dir: &Path) -> Result<LaunchPlan, ResolveError> {
        match program {
            Program::PermFile { name, args } => {
                check_args(args.len())?;
                let file = self.perm_file(name)?;
                self.plan(name, file, args, None)
            }
            Program::Inline { name, bytes, args } => {
                check_args(args.len())?;
                check_file_name(name)?;
                if bytes.len() > MAX_INLINE_SCRIPT_BYTES {
                    return Err(ResolveError::InlineTooLarge {
                        len: bytes.len(),
                        max: MAX_INLINE_SCRIPT_BYTES,
                    });
                }
                let path = job_dir.join(name);
                let script = InlineScript {
                    path: path.clone(),
                    bytes: bytes.clone(),
                    executable: Interpreter::for_file(name) == Interpreter::Direct,
                };
                self.plan(name, path, args, Some(script))
            }
            Program::Trusted { program, args } => Ok(LaunchPlan {
                program: program.clone(),
                args: args.clone(),
                inline: None,
            }),
        }
    }

    /// The canonical path of a `perm_files/` entry, checked to stay inside the root.
    fn perm_file(&self, name: &str) -> Result<PathBuf, ResolveError> {
        check_perm_name(name, &self.perm_files)?;
        let root = self
            .perm_files
            .canonicalize()
            .map_err(|e| io_error(&self.perm_files, e))?;
        let path = self.perm_files.join(name);
        let resolved = path.canonicalize().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ResolveError::NotFound { path: path.clone() },
            _ => io_error(&path, e),
        })?;
        if !resolved.starts_with(&root) || resolved == root {
            return Err(ResolveError::EscapesRoot {
                path,
                resolved,
                root,
            });
        }
        let meta = std::fs::metadata(&resolved).map_err(|e| io_error(&resolved, e))?;
        if !meta.is_file() {
            return Err(ResolveError::NotAFile { path });
        }
        if Interpreter::for_file(name) == Interpreter::Direct
            && meta.permissions().mode() & 0o111 == 0
        {
            return Err(ResolveError::NotExecutable { path });
        }
        Ok(resolved)
    }

    fn plan(
        &self,
        name: &str,
        file: PathBuf,
        args: &[String],
        inline: Option<InlineScript>,
    ) -> Result<LaunchPlan, ResolveError> {
        let interpreter = Interpreter::for_file(name);
        let user_args = args.iter().map(OsString::from);
        let Some((command, flags)) = interpreter.command() else {
            return Ok(LaunchPlan {
                program: file,
                args: user_args.collect(),
                inline,
            });
        };
        let program =
            find_on_path(command, &self.search_path).ok_or_else(|| match interpreter {
                Interpreter::Java => ResolveError::NoJvm {
                    file: name.to_owned(),
                },
                _ => ResolveError::InterpreterNotFound {
                    interpreter: command,
                    file: name.to_owned(),
                },
            })?;
        let args = flags
            .iter()
            .map(OsString::from)
            .chain(std::iter::once(file.into_os_string()))
            .chain(user_args)
            .collect();
        Ok(LaunchPlan {
            program,
            args,
            inline,
        })
    }
}

fn check_args(count: usize) -> Result<(), ResolveError> {
    if count > MAX_ARGS {
        return Err(ResolveError::TooManyArgs {
            count,
            max: MAX_ARGS,
        });
    }
    Ok(())
}

fn io_error(path: &Path, error: io::Error) -> ResolveError {
    ResolveError::Io {
        path: path.to_owned(),
        source: Arc::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        PathBuf::from("perm_files")
    }

    #[test]
    fn interpreter_follows_the_extension() {
        assert_eq!(Interpreter::for_file("calc.py"), Interpreter::Python);
        assert_eq!(Interpreter::for_file("CALC.PY"), Interpreter::Python);
        assert_eq!(Interpreter::for_file("x.sh"), Interpreter::Shell);
        assert_eq!(Interpreter::for_file("Worker.jar"), Interpreter::Java);
        assert_eq!(Interpreter::for_file("tool"), Interpreter::Direct);
        assert_eq!(Interpreter::for_file("archive.tar.gz"), Interpreter::Direct);
        assert_eq!(Interpreter::for_file(".py"), Interpreter::Direct);
    }

    #[test]
    fn perm_names_reject_escapes() {
        assert!(check_perm_name("calc.py", &root()).is_ok());
        assert!(check_perm_name("tools/calc.py", &root()).is_ok());
        assert!(matches!(
            check_perm_name("../../etc/passwd", &root()),
            Err(ResolveError::Traversal { .. })
        ));
        assert!(matches!(
            check_perm_name("tools/../../x", &root()),
            Err(ResolveError::Traversal { .. })
        ));
        assert!(matches!(
            check_perm_name("./calc.py", &root()),
            Err(ResolveError::Traversal { .. })
        ));
        assert!(matches!(
            check_perm_name("/etc/passwd", &root()),
            Err(ResolveError::AbsolutePath { .. })
        ));
        assert!(matches!(
            check_perm_name("", &root()),
            Err(ResolveError::EmptyName)
        ));
        assert!(matches!(
            check_perm_name("a\0b", &root()),
            Err(ResolveError::NulInName { .. })
        ));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            check_perm_name(&long, &root()),
            Err(ResolveError::NameTooLong { .. })
        ));
    }

    #[test]
    fn file_names_are_single_components() {
        assert!(check_file_name("job-42").is_ok());
        assert!(check_file_name("dag-7:BUILD").is_ok());
        for bad in ["a/b", "..", ".", "/x", "x/", "", "a\0"] {
            assert!(check_file_name(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn error_messages_name_the_file() {
        let missing = ResolveError::NotFound {
            path: root().join("foo.py"),
        };
        assert_eq!(missing.to_string(), "perm_files/foo.py not found");
        let jvm = ResolveError::NoJvm {
            file: "Worker.jar".into(),
        };
        assert!(jvm.to_string().contains("no JVM"));
    }

    proptest::proptest! {
        /// Whatever a client sends, an accepted `perm_files/` name is relative and made only of
        /// normal components, so joining it to the root cannot leave the root lexically (symlinks
        /// are the resolver's business); an accepted file name is exactly one such component.
        #[test]
        fn accepted_names_stay_inside(name in "[a-z./0-9_ -]{0,40}") {
            if check_perm_name(&name, &root()).is_ok() {
                let joined = root().join(&name);
                proptest::prop_assert!(joined.starts_with(root()));
                proptest::prop_assert!(Path::new(&name)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_))));
            }
            if check_file_name(&name).is_ok() {
                proptest::prop_assert!(!name.contains('/'));
                proptest::prop_assert!(name != "." && name != "..");
                proptest::prop_assert!(check_perm_name(&name, &root()).is_ok());
            }
        }
    }

    #[test]
    fn path_search_skips_empty_entries_and_finds_sh() {
        assert!(find_on_path("sh", OsStr::new("::/nonexistent:/bin:/usr/bin")).is_some());
        assert!(find_on_path("sh", OsStr::new("")).is_none());
        assert!(find_on_path("definitely-not-a-program", OsStr::new("/bin:/usr/bin")).is_none());
    }
}
