//! Running real jobs through the engine: output files, exit codes, signals, start failures,
//! environment, inline scripts and captured output.

mod exec_support;

use exec_support::{config, read, run, TestDir};
use futures_lite::io::{AsyncBufReadExt, BufReader};
use futures_lite::StreamExt;
use std::time::Duration;
use titan::worker::exec::{
    JobSpec, LaunchError, OutputMode, ProcessEngine, Program, ResolveError, StartError,
    Termination, WaitStatus, STDERR_FILE, STDOUT_FILE,
};

fn perm(name: &str, args: &[&str]) -> Program {
    Program::perm_file(name, args.iter().map(|s| s.to_string()).collect())
}

fn inline_sh(name: &str, body: &str) -> Program {
    Program::Inline {
        name: name.into(),
        bytes: body.as_bytes().to_vec(),
        args: Vec::new(),
    }
}

#[test]
fn stdout_and_stderr_land_in_the_workspace_and_exit_codes_are_reported() {
    let dir = TestDir::new("run-fail");
    let config = config(&dir);
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let job = engine
            .launch(JobSpec::new("j-fail", "j-fail", perm("fail.sh", &[])))
            .unwrap();
        let started = job.started().await.expect("fail.sh starts");
        let outcome = job.outcome().await;
        assert!(
            matches!(outcome.termination, Termination::Exited { code: 3 }),
            "{outcome:?}"
        );
        assert_eq!(outcome.wait_status, Some(WaitStatus::Code(3)));
        assert_eq!(outcome.exit_code(), Some(3));
        assert!(!outcome.succeeded());
        assert_eq!(outcome.pid, Some(started.pid));
        assert_eq!(outcome.started_at, Some(started.started_at));
        assert!(outcome.ended_at >= started.started_at);
        let job_dir = engine.job_dir("j-fail");
        assert_eq!(read(job_dir.join(STDOUT_FILE)), "fail.sh: about to fail\n");
        assert_eq!(
            read(job_dir.join(STDERR_FILE)),
            "fail.sh: failing on purpose with exit status 3\n"
        );
    });
}

#[test]
fn a_python_job_prints_its_result() {
    let dir = TestDir::new("run-calc");
    let config = config(&dir);
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let job = engine
            .launch(JobSpec::new("calc", "calc", perm("calc.py", &["1000"])))
            .unwrap();
        let outcome = job.outcome().await;
        assert!(
            outcome.succeeded(),
            "{outcome:?}: {}",
            read(engine.job_dir("calc").join(STDERR_FILE))
        );
        let out = read(engine.job_dir("calc").join(STDOUT_FILE));
        assert!(
            out.starts_with("calc: 168 primes below 1000, sum 76127"),
            "{out}"
        );
    });
}

#[test]
fn a_process_killed_by_a_signal_reports_the_signal() {
    let dir = TestDir::new("run-signal");
    let config = config(&dir);
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let job = engine
            .launch(JobSpec::new(
                "sig",
                "sig",
                inline_sh("die.sh", "kill -USR1 $$\nsleep 5\n"),
            ))
            .unwrap();
        let outcome = job.outcome().await;
        assert!(
            matches!(outcome.termination, Termination::Signaled { signal } if signal == libc_sigusr1()),
            "{outcome:?}"
        );
        assert_eq!(
            outcome.wait_status,
            Some(WaitStatus::Signal(libc_sigusr1()))
        );
    });
}

fn libc_sigusr1() -> i32 {
    nix::sys::signal::Signal::SIGUSR1 as i32
}

#[test]
fn start_failures_are_outcomes_with_the_reason() {
    let dir = TestDir::new("run-missing");
    let config = config(&dir);
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let job = engine
            .launch(JobSpec::new("m", "m", perm("foo.py", &[])))
            .unwrap();
        assert_eq!(job.started().await, None);
        let outcome = job.outcome().await;
        let Termination::FailedToStart { error } = &outcome.termination else {
            panic!("{outcome:?}")
        };
        assert!(
            matches!(error, StartError::Resolve(ResolveError::NotFound { .. })),
            "{error:?}"
        );
        assert!(
            error.to_string().ends_with("perm_files/foo.py not found"),
            "{error}"
        );
        assert!(!error.retryable());
        assert_eq!(outcome.pid, None);

        let job = engine
            .launch(JobSpec::new("t", "t", perm("../../etc/passwd", &[])))
            .unwrap();
        let outcome = job.outcome().await;
        assert!(
            matches!(
                outcome.termination,
                Termination::FailedToStart {
                    error: StartError::Resolve(ResolveError::Traversal { .. })
                }
            ),
            "{outcome:?}"
        );

        // An exec failure (a trusted program that does not exist) is a spawn error.
        let job = engine
            .launch(JobSpec::new(
                "x",
                "x",
                Program::trusted("/nonexistent/prog", Vec::new()),
            ))
            .unwrap();
        let outcome = job.outcome().await;
        assert!(
            matches!(
                outcome.termination,
                Termination::FailedToStart {
                    error: StartError::Spawn { .. }
                }
            ),
            "{outcome:?}"
        );
        assert_eq!(engine.jobs_in_flight(), 0);
    });
}

#[test]
fn bad_requests_are_refused_at_launch() {
    let dir = TestDir::new("run-refuse");
    let mut config = config(&dir);
    config.max_jobs = 1;
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        for bad in ["../x", "a/b", "", ".."] {
            let err = engine
                .launch(JobSpec::new("j", bad, perm("fail.sh", &[])))
                .unwrap_err();
            assert!(
                matches!(err, LaunchError::BadWorkspaceName(_)),
                "{bad:?}: {err:?}"
            );
        }
        let err = engine
            .launch(JobSpec::new("j", "j", perm("fail.sh", &[])).with_env("A=B", "x"))
            .unwrap_err();
        assert!(matches!(err, LaunchError::BadEnv { .. }), "{err:?}");

        let first = engine
            .launch(JobSpec::new("j1", "j1", perm("sleep.sh", &["30"])))
            .unwrap();
        let err = engine
            .launch(JobSpec::new("j2", "j2", perm("fail.sh", &[])))
            .unwrap_err();
        assert!(
            matches!(err, LaunchError::TooManyJobs { limit: 1 }),
            "{err:?}"
        );
        first.cancel();
        first.outcome().await;
        engine.shutdown().await;
        let err = engine
            .launch(JobSpec::new("j3", "j3", perm("fail.sh", &[])))
            .unwrap_err();
        assert!(matches!(err, LaunchError::ShuttingDown), "{err:?}");
    });
}

#[test]
fn jobs_see_their_id_workspace_and_extra_environment() {
    let dir = TestDir::new("run-env");
    let config = config(&dir);
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let script =
            "echo \"id=$TITAN_JOB_ID\"\necho \"ws=$TITAN_WORKSPACE\"\necho \"pwd=$(pwd)\"\n\
                      echo \"perm=$TITAN_PERM_FILES\"\necho \"extra=$EXTRA\"\necho \"args=$*\"\n";
        let program = Program::Inline {
            name: "env.sh".into(),
            bytes: script.as_bytes().to_vec(),
            args: vec!["one".into(), "two words".into()],
        };
        let spec = JobSpec::new("dag-1:ENV", "dag-1:ENV", program).with_env("EXTRA", "42");
        let outcome = engine.launch(spec).unwrap().outcome().await;
        assert!(outcome.succeeded(), "{outcome:?}");
        let job_dir = engine.job_dir("dag-1:ENV");
        let out = read(job_dir.join(STDOUT_FILE));
        let ws = job_dir.display().to_string();
        assert!(out.contains("id=dag-1:ENV\n"), "{out}");
        assert!(out.contains(&format!("ws={ws}\n")), "{out}");
        assert!(
            out.contains(&format!(
                "pwd={}\n",
                job_dir.canonicalize().unwrap().display()
            )),
            "{out}"
        );
        assert!(out.contains("perm=/"), "{out}");
        assert!(out.contains("extra=42\n"), "{out}");
        assert!(out.contains("args=one two words\n"), "{out}");
        assert!(
            job_dir.join("env.sh").is_file(),
            "the inline script stays in the workspace"
        );
    });
}

#[test]
fn inline_executables_run_directly() {
    let dir = TestDir::new("run-inline-exec");
    let config = config(&dir);
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let program = inline_sh("tool", "#!/bin/sh\necho direct \"$1\"\nexit 7\n");
        let program = match program {
            Program::Inline { name, bytes, .. } => Program::Inline {
                name,
                bytes,
                args: vec!["x".into()],
            },
            other => other,
        };
        let outcome = engine
            .launch(JobSpec::new("d", "d", program))
            .unwrap()
            .outcome()
            .await;
        assert_eq!(outcome.exit_code(), Some(7), "{outcome:?}");
        assert_eq!(read(engine.job_dir("d").join(STDOUT_FILE)), "direct x\n");
    });
}

#[test]
fn captured_output_is_read_line_by_line() {
    let dir = TestDir::new("run-capture");
    let config = config(&dir);
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let spec = JobSpec::new("cap", "cap", perm("lines.py", &["2000"]))
            .with_output(OutputMode::Capture);
        let job = engine.launch(spec).unwrap();
        job.started().await.expect("started");
        let output = job.take_output().expect("capture mode gives the read ends");
        assert!(job.take_output().is_none(), "taken once");
        let stderr = glommio::spawn_local(async move {
            BufReader::new(output.stderr)
                .lines()
                .map(|l| l.unwrap())
                .collect::<Vec<_>>()
                .await
        });
        let mut lines = BufReader::new(output.stdout).lines();
        let mut count = 0;
        while let Some(line) = lines.next().await {
            count += 1;
            assert_eq!(line.unwrap(), format!("line {count}"));
        }
        assert_eq!(count, 2000);
        assert_eq!(stderr.await, vec!["lines.py: wrote 2000 lines".to_string()]);
        assert!(job.outcome().await.succeeded());
        // The engine creates both files before the start and leaves their bytes to the caller.
        for file in [STDOUT_FILE, STDERR_FILE] {
            assert_eq!(read(engine.job_dir("cap").join(file)), "", "{file}");
        }
    });
}

#[test]
fn a_dropped_engine_handle_lets_running_jobs_finish() {
    let dir = TestDir::new("run-drop");
    let config = config(&dir);
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let job = engine
            .launch(JobSpec::new("s", "s", perm("sleep.sh", &["0.2"])))
            .unwrap();
        drop(engine);
        let outcome = job.outcome().await;
        assert!(outcome.succeeded(), "{outcome:?}");
        assert!(
            outcome.duration >= Duration::from_millis(200),
            "{outcome:?}"
        );
    });
}
