//! Command resolution against real directories: each interpreter rule and each rejection.

mod exec_support;

use exec_support::{perm_files, TestDir};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use titan::worker::exec::{Program, ResolveError, Resolver};

const SYSTEM_PATH: &str = "/usr/bin:/bin";

fn run_file(name: &str, args: &[&str]) -> Program {
    Program::perm_file(name, args.iter().map(|s| s.to_string()).collect())
}

fn os(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

fn job_dir() -> PathBuf {
    PathBuf::from("/nonexistent/job")
}

/// A scratch perm_files root with a few files, beside a directory outside it.
fn scratch_root(dir: &TestDir) -> PathBuf {
    let root = dir.root.join("perm_files");
    std::fs::create_dir_all(root.join("tools")).unwrap();
    std::fs::write(root.join("tools/hello.sh"), "echo hello\n").unwrap();
    std::fs::write(root.join("data.txt"), "not a program\n").unwrap();
    std::fs::write(root.join("Worker.jar"), "PK").unwrap();
    let tool = root.join("tool");
    std::fs::write(&tool, "#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let outside = dir.root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.sh"), "echo secret\n").unwrap();
    root
}

#[test]
fn python_files_run_unbuffered_with_python3() {
    let plan = Resolver::new(perm_files(), SYSTEM_PATH)
        .resolve(&run_file("calc.py", &["1000"]), &job_dir())
        .unwrap();
    assert_eq!(plan.program, Path::new("/usr/bin/python3"));
    let calc = perm_files().canonicalize().unwrap().join("calc.py");
    assert_eq!(
        plan.args,
        vec!["-u".into(), calc.into_os_string(), "1000".into()]
    );
    assert!(plan.inline.is_none());
}

#[test]
fn shell_files_run_with_sh_and_subdirectories_are_allowed() {
    let dir = TestDir::new("resolve-sh");
    let root = scratch_root(&dir);
    let plan = Resolver::new(&root, SYSTEM_PATH)
        .resolve(&run_file("tools/hello.sh", &["a", "b c"]), &job_dir())
        .unwrap();
    assert!(plan.program.ends_with("sh"), "{:?}", plan.program);
    let script = root.canonicalize().unwrap().join("tools/hello.sh");
    assert_eq!(
        plan.args,
        vec![script.into_os_string(), "a".into(), "b c".into()]
    );
}

#[test]
fn jar_files_run_with_java_or_fail_clearly_without_a_jvm() {
    let dir = TestDir::new("resolve-jar");
    let root = scratch_root(&dir);
    // A PATH with sh and python3 but no java.
    let no_java = dir.root.join("bin");
    std::fs::create_dir_all(&no_java).unwrap();
    std::os::unix::fs::symlink("/bin/sh", no_java.join("sh")).unwrap();
    let err = Resolver::new(&root, no_java.as_os_str())
        .resolve(&run_file("Worker.jar", &[]), &job_dir())
        .unwrap_err();
    assert!(
        matches!(&err, ResolveError::NoJvm { file } if file == "Worker.jar"),
        "{err:?}"
    );
    assert!(err.to_string().contains("no JVM"), "{err}");

    // With a `java` on PATH (a stand-in: resolution only needs an executable file), the plan
    // is `java -jar FILE args…`.
    let with_java = dir.root.join("jvm");
    std::fs::create_dir_all(&with_java).unwrap();
    let java = with_java.join("java");
    std::fs::write(&java, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&java, std::fs::Permissions::from_mode(0o755)).unwrap();
    let plan = Resolver::new(&root, with_java.as_os_str())
        .resolve(&run_file("Worker.jar", &["--port", "8081"]), &job_dir())
        .unwrap();
    assert_eq!(plan.program, java);
    let jar = root.canonicalize().unwrap().join("Worker.jar");
    assert_eq!(
        plan.args,
        vec![
            "-jar".into(),
            jar.into_os_string(),
            "--port".into(),
            "8081".into()
        ]
    );
}

#[test]
fn other_files_run_directly_only_when_executable() {
    let dir = TestDir::new("resolve-direct");
    let root = scratch_root(&dir);
    let resolver = Resolver::new(&root, SYSTEM_PATH);
    let plan = resolver
        .resolve(&run_file("tool", &["x"]), &job_dir())
        .unwrap();
    assert_eq!(plan.program, root.canonicalize().unwrap().join("tool"));
    assert_eq!(plan.args, os(&["x"]));
    let err = resolver
        .resolve(&run_file("data.txt", &[]), &job_dir())
        .unwrap_err();
    assert!(matches!(err, ResolveError::NotExecutable { .. }), "{err:?}");
    let err = resolver
        .resolve(&run_file("tools", &[]), &job_dir())
        .unwrap_err();
    assert!(matches!(err, ResolveError::NotAFile { .. }), "{err:?}");
}

#[test]
fn traversal_and_absolute_paths_are_rejected() {
    let resolver = Resolver::new(perm_files(), SYSTEM_PATH);
    let err = resolver
        .resolve(&run_file("../../etc/passwd", &[]), &job_dir())
        .unwrap_err();
    assert!(matches!(err, ResolveError::Traversal { .. }), "{err:?}");
    let err = resolver
        .resolve(&run_file("/etc/passwd", &[]), &job_dir())
        .unwrap_err();
    assert!(matches!(err, ResolveError::AbsolutePath { .. }), "{err:?}");
    let err = resolver
        .resolve(&run_file("/bin/sh", &[]), &job_dir())
        .unwrap_err();
    assert!(matches!(err, ResolveError::AbsolutePath { .. }), "{err:?}");
}

#[test]
fn symlinks_resolving_outside_are_rejected_and_inside_ones_allowed() {
    let dir = TestDir::new("resolve-symlink");
    let root = scratch_root(&dir);
    std::os::unix::fs::symlink(dir.root.join("outside/secret.sh"), root.join("escape.sh")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
    std::os::unix::fs::symlink("tools/hello.sh", root.join("alias.sh")).unwrap();
    let resolver = Resolver::new(&root, SYSTEM_PATH);

    let err = resolver
        .resolve(&run_file("escape.sh", &[]), &job_dir())
        .unwrap_err();
    assert!(matches!(err, ResolveError::EscapesRoot { .. }), "{err:?}");
    let err = resolver
        .resolve(&run_file("etc/passwd", &[]), &job_dir())
        .unwrap_err();
    assert!(matches!(err, ResolveError::EscapesRoot { .. }), "{err:?}");

    let plan = resolver
        .resolve(&run_file("alias.sh", &[]), &job_dir())
        .unwrap();
    let target = root.canonicalize().unwrap().join("tools/hello.sh");
    assert_eq!(
        plan.args[0],
        target.into_os_string(),
        "runs the resolved file"
    );
}

#[test]
fn a_missing_file_names_its_path() {
    let resolver = Resolver::new("perm_files", SYSTEM_PATH);
    let err = resolver
        .resolve(&run_file("foo.py", &[]), &job_dir())
        .unwrap_err();
    assert!(matches!(err, ResolveError::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), "perm_files/foo.py not found");
}

#[test]
fn inline_scripts_go_to_the_job_directory_under_a_plain_name() {
    let resolver = Resolver::new(perm_files(), SYSTEM_PATH);
    let inline = |name: &str| Program::Inline {
        name: name.into(),
        bytes: b"print('hi')\n".to_vec(),
        args: vec!["1".into()],
    };
    let plan = resolver.resolve(&inline("x.py"), &job_dir()).unwrap();
    assert_eq!(plan.program, Path::new("/usr/bin/python3"));
    assert_eq!(
        plan.args,
        vec![
            "-u".into(),
            job_dir().join("x.py").into_os_string(),
            "1".into()
        ]
    );
    let script = plan.inline.expect("bytes to write");
    assert_eq!(script.path, job_dir().join("x.py"));
    assert!(!script.executable);

    let plan = resolver.resolve(&inline("tool"), &job_dir()).unwrap();
    assert_eq!(plan.program, job_dir().join("tool"));
    assert!(plan.inline.expect("bytes to write").executable);

    for bad in ["../x.py", "/tmp/x.py", "a/b.py", "..", ""] {
        let err = resolver.resolve(&inline(bad), &job_dir()).unwrap_err();
        assert!(
            matches!(
                err,
                ResolveError::NotAFileName { .. } | ResolveError::EmptyName
            ),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn trusted_programs_are_taken_as_given() {
    let plan = Resolver::new(perm_files(), SYSTEM_PATH)
        .resolve(&Program::trusted("/bin/true", os(&["x"])), &job_dir())
        .unwrap();
    assert_eq!(plan.program, Path::new("/bin/true"));
    assert_eq!(plan.args, os(&["x"]));
}
