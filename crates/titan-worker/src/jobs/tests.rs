//! The shell on a real executor and engine, read from the outbox as a master would: NOOP, SLEEP
//! on the timer task, a kill, a skill without a handler, and skill jobs run as in-worker work
//! (files in the workspace, output lines, permanent failure, the job's timeout).

use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::{LocalExecutorBuilder, Placement};
use rkyv::rancor;

use super::Jobs;
use crate::children::ChildTemplate;
use crate::exec::{EngineConfig, ProcessEngine, STDOUT_FILE};
use crate::handlers::{Assignment, Handler, Registry, Start, Work, WorkFailure};
use titan_core::JobId;
use titan_core::{JobKind, JobSpec, Outcome};
use titan_proto::conn::{Conn, ConnConfig};
use titan_proto::message::worker::{ArchivedJobFinished, JobFinished, RunJob};
use titan_proto::OpCode;
use titan_runtime::outbox::Outbox;

/// How long any wait in these tests may take before it fails.
const WAIT: Duration = Duration::from_secs(20);

/// A private directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("titan-jobs-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a test directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `NOTE|text`: writes `note.txt` in its directory, prints two lines and a warning, and fails
/// for good when the text is `fail`.
struct Note;

impl Handler for Note {
    fn skill(&self) -> &str {
        "NOTE"
    }

    fn start(&self, job: Assignment) -> Start {
        let JobKind::Skill { data, .. } = job.spec.kind else {
            return Start::Done(Outcome::Error {
                message: "not a NOTE".into(),
            });
        };
        Start::Work(Work::new(job.label, None, move |mut context| async move {
            let path = context.dir.join("note.txt");
            let text = data.to_string();
            glommio::executor()
                .spawn_blocking(move || std::fs::write(path, text))
                .await
                .map_err(|e| WorkFailure::Transient(e.to_string()))?;
            let out = &mut context.output;
            let wrote = async {
                out.stdout("wrote note.txt").await?;
                out.stdout(&data).await?;
                out.stderr("a warning").await
            };
            wrote
                .await
                .map_err(|e| WorkFailure::Transient(e.to_string()))?;
            match &*data {
                "fail" => Err(WorkFailure::Permanent("no relay".into())),
                _ => Ok(()),
            }
        }))
    }
}

/// `HANG|`: work that never ends by itself.
struct Hang;

impl Handler for Hang {
    fn skill(&self) -> &str {
        "HANG"
    }

    fn start(&self, job: Assignment) -> Start {
        let limit = job.timeout();
        Start::Work(Work::new(job.label, limit, |_| future::pending()))
    }
}

/// The worker side under test and the master's view of it.
struct Rig {
    jobs: Rc<Jobs>,
    engine: ProcessEngine,
    outbox: Rc<Outbox>,
    recv: Conn,
    finished: Vec<JobFinished>,
    started: Vec<u64>,
    workspace: PathBuf,
}

impl Rig {
    fn new(dir: &TempDir) -> Rig {
        let workspace = dir.0.join("workspace");
        let engine =
            ProcessEngine::start(EngineConfig::new(&dir.0, &workspace)).expect("start the engine");
        let skills = vec![titan_core::GENERAL.to_string()];
        let key = titan_auth::Credential::new(
            titan_auth::Role::Worker,
            titan_auth::Secret::from_bytes([1; 32]),
        );
        let children =
            ChildTemplate::new("127.0.0.1:1".into(), &dir.0, &workspace, 1, skills, 0, key);
        let registry = Registry::new(&children.skills, children.clone())
            .with_handler(Box::new(Note))
            .with_handler(Box::new(Hang));
        let jobs = Rc::new(Jobs::with_registry(engine.clone(), children, registry));
        let outbox = Outbox::new(Default::default());
        jobs.link(outbox.clone(), 1, None, &[0; 32]);
        Rig {
            jobs,
            engine,
            outbox,
            recv: Conn::new(&ConnConfig::client()),
            finished: Vec::new(),
            started: Vec::new(),
            workspace,
        }
    }

    fn start(&self, job: u64, kind: JobKind, timeout_ms: Option<u32>) {
        let mut spec = JobSpec::new(kind);
        spec.timeout_ms = timeout_ms.and_then(std::num::NonZeroU32::new);
        let label = format!("job-{job}");
        self.jobs.start(RunJob {
            job: JobId(job),
            attempt: 1,
            label,
            spec,
            log_key: None,
        });
    }

    /// Waits for the report of `job`.
    async fn report(&mut self, job: u64) -> JobFinished {
        let deadline = Instant::now() + WAIT;
        loop {
            self.read();
            if let Some(i) = self.finished.iter().position(|f| f.job == JobId(job)) {
                return self.finished.remove(i);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no report for job {job} within {WAIT:?}");
            future::or(self.outbox.writable.wait(), glommio::timer::sleep(left)).await;
        }
    }

    fn read(&mut self) {
        let mut bytes = Vec::new();
        self.outbox.take_transmit(&mut bytes);
        self.outbox.on_written();
        let mut rest = &bytes[..];
        loop {
            let room = self.recv.recv_room();
            let n = room.len().min(rest.len());
            room[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            self.recv
                .on_received(n, Instant::now())
                .expect("bytes accepted");
            self.take_frames();
            if rest.is_empty() {
                break;
            }
        }
    }

    fn take_frames(&mut self) {
        while let Some(frame) = self.recv.next_frame().expect("a well-formed frame") {
            match frame.header.opcode {
                OpCode::JobComplete => {
                    let archived = titan_proto::access::<ArchivedJobFinished>(
                        OpCode::JobComplete,
                        frame.payload,
                    )
                    .expect("a JobFinished");
                    let report = rkyv::deserialize::<JobFinished, rancor::Error>(archived)
                        .expect("deserialize");
                    self.finished.push(report);
                }
                OpCode::JobStarted => {
                    let started = titan_proto::access::<
                        titan_proto::message::worker::ArchivedJobStarted,
                    >(OpCode::JobStarted, frame.payload)
                    .expect("a JobStarted");
                    self.started.push(started.job.0.to_native());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// Runs `body` on a fresh executor with a rig in a private directory.
fn with_rig<F>(body: impl FnOnce(Rig) -> F + Send + 'static)
where
    F: Future<Output = Rig> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let dir = TempDir::new();
            let rig = body(Rig::new(&dir)).await;
            rig.engine.shutdown().await;
        })
        .expect("start an executor")
        .join()
        .expect("the test's executor");
}

#[test]
fn noop_sleep_and_a_kill_report_through_the_outbox() {
    with_rig(|mut rig| async move {
        rig.start(1, JobKind::Noop, None);
        assert_eq!(rig.report(1).await.outcome, Outcome::Exited { code: 0 });
        rig.start(2, JobKind::Sleep { ms: 20 }, None);
        rig.start(3, JobKind::Sleep { ms: 60_000 }, None);
        assert_eq!(rig.jobs.running(), 2);
        let slept = rig.report(2).await;
        assert_eq!(slept.outcome, Outcome::Exited { code: 0 });
        assert!(slept.duration_us >= 20_000, "{slept:?}");
        rig.jobs.kill(3, 1);
        assert_eq!(rig.report(3).await.outcome, Outcome::Killed);
        let listed: Vec<u64> = rig
            .jobs
            .running_attempts()
            .iter()
            .map(|a| a.job.0)
            .collect();
        assert_eq!(listed, [1, 2, 3], "all three reports are retained");
        rig
    });
}

#[test]
fn a_skill_without_a_handler_fails_as_before() {
    with_rig(|mut rig| async move {
        let gpu = JobKind::Skill {
            name: "GPU".into(),
            data: "x".into(),
        };
        rig.start(1, gpu, None);
        let message = "no handler for GPU on this worker".into();
        assert_eq!(rig.report(1).await.outcome, Outcome::Error { message });
        rig
    });
}

#[test]
fn work_writes_its_files_and_output_and_fails_for_good_when_told() {
    with_rig(|mut rig| async move {
        assert_eq!(rig.jobs.skills(), ["GENERAL", "NOTE", "HANG"]);
        let note = |data: &str| JobKind::Skill {
            name: "NOTE".into(),
            data: data.into(),
        };
        rig.start(1, note("hello"), None);
        let done = rig.report(1).await;
        assert_eq!(done.outcome, Outcome::Exited { code: 0 });
        assert_eq!((done.stdout_lines, done.stderr_lines), (2, 1));
        assert_eq!(rig.started, [1], "work is news when it begins");
        let dir = rig.workspace.join("job-1");
        let note_text = std::fs::read_to_string(dir.join("note.txt")).expect("note.txt");
        assert_eq!(note_text, "hello");
        let stdout = std::fs::read_to_string(dir.join(STDOUT_FILE)).expect("stdout.log");
        assert_eq!(stdout, "wrote note.txt\nhello\n");

        rig.start(2, note("fail"), None);
        let message = "no relay".into();
        assert_eq!(rig.report(2).await.outcome, Outcome::Rejected { message });
        rig
    });
}

#[test]
fn work_is_stopped_at_the_job_timeout_or_on_a_kill() {
    with_rig(|mut rig| async move {
        let hang = || JobKind::Skill {
            name: "HANG".into(),
            data: "".into(),
        };
        rig.start(1, hang(), Some(30));
        assert_eq!(rig.report(1).await.outcome, Outcome::TimedOut);
        rig.start(2, hang(), None);
        rig.jobs.kill(2, 1);
        assert_eq!(rig.report(2).await.outcome, Outcome::Killed);
        assert_eq!(rig.jobs.running(), 0);
        rig
    });
}
