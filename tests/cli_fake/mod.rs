//! A scripted stand-in for the master, speaking real TITAN_PROTO on a free loopback port, so the
//! real `titan` binary's client commands and REPL can be tested before the master's request
//! handling exists. It records every request frame and answers from a fixed script:
//!
//! - `Stats` / `StatsJson`: [`sample_stats`] (text rendered by `ClusterStats::render_text`);
//! - `SubmitJob`: `TSK-17`; `SubmitDag`: `dag-5:<NAME>` for each job;
//! - `GetJobStatus`: the job as asked, `RUNNING`; `TSK-404` gets a `NotFound` error; `TSK-999`
//!   gets no reply at all: the connection is closed (a master going away);
//! - `ListJobs`, `ListWorkers`, `CancelJob` (2 jobs), `Stop`;
//! - `WaitJobs`: names containing `FAIL` are `DEAD`, names containing `SLOW` stay pending until the
//!   timeout (capped, so tests stay fast), everything else `COMPLETED`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::de::Pool;
use rkyv::rancor::{self, Strategy};
use rkyv::{Archive, Deserialize};
use titan::cli::client::{decode_reply, Reply};
use titan::core::model::{JobState, Submission};
use titan::proto::message::client::*;
use titan::proto::message::ErrorReply;
use titan::proto::{encode_frame, ErrorCode, Header, Limits, OpCode, RecvBuf};

/// Longest a scripted `wait` holds its reply for a `SLOW` job.
const SLOW_WAIT_CAP: Duration = Duration::from_millis(200);

/// One request frame as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub header: Header,
    pub payload: Vec<u8>,
}

impl Request {
    /// Decodes the payload as `T`.
    pub fn decode<T>(&self) -> T
    where
        T: Archive,
        T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::BoxedError>>
            + Deserialize<T, Strategy<Pool, rancor::BoxedError>>,
    {
        let reply = Reply {
            header: self.header,
            payload: self.payload.clone(),
        };
        decode_reply(&reply, self.header.opcode).expect("a valid request payload")
    }

    pub fn submission(&self) -> Submission {
        self.decode::<SubmitRequest>().submission
    }
}

pub struct FakeMaster {
    pub addr: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeMaster {
    /// Listens on a free loopback port; each connection is served on its own thread.
    pub fn start() -> FakeMaster {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve(stream, &log));
            }
        });
        FakeMaster { addr, requests }
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn opcodes(&self) -> Vec<OpCode> {
        self.requests().iter().map(|r| r.header.opcode).collect()
    }

    /// Runs `titan ARGS --master ADDR` to completion.
    pub fn titan(&self, args: &[&str]) -> Run {
        let mut cmd = titan_command(args);
        cmd.args(["--master", &self.addr]);
        Run::from(cmd.output().expect("running titan"))
    }

    /// Runs `titan cli --master ADDR` with `input` on stdin.
    pub fn repl(&self, input: &str) -> Run {
        repl_with(&["cli", "--master", &self.addr], input)
    }
}

/// `titan` with a clean environment for the master address.
pub fn titan_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_titan"));
    cmd.args(args)
        .env_remove("TITAN_MASTER")
        .env("TITAN_HISTORY", "")
        .env("TITAN_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

/// Runs `titan ARGS` with `input` on stdin.
pub fn repl_with(args: &[&str], input: &str) -> Run {
    let mut cmd = titan_command(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning titan");
    let mut stdin = child.stdin.take().expect("stdin was piped");
    stdin.write_all(input.as_bytes()).expect("writing stdin");
    drop(stdin);
    Run::from(child.wait_with_output().expect("waiting for titan"))
}

/// What a finished `titan` printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
        }
    }
}

/// A fresh scratch directory for files a test hands to `titan`.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("titan-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    dir
}

/// An address where nothing listens.
pub fn dead_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

fn serve(mut stream: TcpStream, log: &Mutex<Vec<Request>>) {
    let mut recv = RecvBuf::new(Limits::default());
    let mut out = Vec::new();
    loop {
        loop {
            let request = match recv.next_frame() {
                Ok(Some(frame)) => Request {
                    header: frame.header,
                    payload: frame.payload.to_vec(),
                },
                Ok(None) => break,
                Err(_) => return,
            };
            log.lock().unwrap().push(request.clone());
            if !respond(&request, &mut out) {
                return;
            }
            if stream.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        match stream.read(recv.spare_mut()) {
            Ok(0) | Err(_) => return,
            Ok(n) => recv.commit(n),
        }
    }
}

/// Appends the scripted reply to `out`; false means "close the connection without replying".
fn respond(request: &Request, out: &mut Vec<u8>) -> bool {
    let op = request.header.opcode;
    let encoded = match op {
        OpCode::Stats => encode_frame(
            out,
            OpCode::Data,
            &StatsText {
                text: sample_stats().render_text(),
            },
        ),
        OpCode::StatsJson => encode_frame(out, OpCode::Data, &sample_stats()),
        OpCode::SubmitJob => encode_frame(out, OpCode::Ack, &submitted_one_off()),
        OpCode::SubmitDag => encode_frame(out, OpCode::Ack, &submitted_dag(request.submission())),
        OpCode::GetJobStatus => {
            let query: JobQuery = request.decode();
            match query.job.as_str() {
                "TSK-999" => return false,
                "TSK-404" => encode_frame(
                    out,
                    OpCode::Error,
                    &ErrorReply {
                        code: ErrorCode::NotFound as u16,
                        message: "no job TSK-404".into(),
                    },
                ),
                name => encode_frame(out, OpCode::Data, &job(name, JobState::Running)),
            }
        }
        OpCode::ListJobs => {
            let list = JobList {
                jobs: vec![
                    job("dag-5:RUN_CALC", JobState::Running),
                    job("TSK-17", JobState::Queued),
                ],
                truncated: false,
            };
            encode_frame(out, OpCode::Data, &list)
        }
        OpCode::CancelJob => encode_frame(out, OpCode::Ack, &Cancelled { jobs: 2 }),
        OpCode::Stop => {
            let query: JobQuery = request.decode();
            encode_frame(out, OpCode::Ack, &Stopped { label: query.job })
        }
        OpCode::WaitJobs => {
            let wait: WaitRequest = request.decode();
            encode_frame(out, OpCode::Data, &wait_reply(&wait))
        }
        OpCode::ListWorkers => encode_frame(
            out,
            OpCode::Data,
            &WorkerList {
                workers: sample_stats().workers,
            },
        ),
        other => encode_frame(
            out,
            OpCode::Error,
            &ErrorReply {
                code: ErrorCode::Unsupported as u16,
                message: format!("the fake master does not script {other:?}"),
            },
        ),
    };
    encoded.expect("encoding a scripted reply");
    true
}

fn wait_reply(wait: &WaitRequest) -> WaitReply {
    let slow = wait.jobs.iter().any(|j| j.contains("SLOW"));
    if slow {
        std::thread::sleep(Duration::from_millis(wait.timeout_ms).min(SLOW_WAIT_CAP));
    }
    let (pending, finished): (Vec<&String>, Vec<&String>) =
        wait.jobs.iter().partition(|name| name.contains("SLOW"));
    let jobs = finished
        .into_iter()
        .map(|name| {
            if name.contains("FAIL") {
                let mut j = job(name, JobState::Dead);
                j.last_error = Some("exited with code 1".into());
                j
            } else {
                job(name, JobState::Completed)
            }
        })
        .collect();
    WaitReply {
        jobs,
        pending: pending.into_iter().cloned().collect(),
        timed_out: slow,
    }
}

fn submitted_one_off() -> Submitted {
    Submitted {
        dag: 17,
        label: "TSK-17".into(),
        jobs: vec![JobLabel {
            id: 17 << 24,
            label: "TSK-17".into(),
        }],
    }
}

fn submitted_dag(submission: Submission) -> Submitted {
    let Submission::Dag(jobs) = submission else {
        panic!("SubmitDag carried a one-off");
    };
    Submitted {
        dag: 5,
        label: "dag-5".into(),
        jobs: jobs
            .iter()
            .enumerate()
            .map(|(i, j)| JobLabel {
                id: (5 << 24) + i as u64,
                label: format!("dag-5:{}", j.name),
            })
            .collect(),
    }
}

/// 2023-11-14T22:13:20.000000Z, in microseconds.
pub const T0: u64 = 1_700_000_000_000_000;

pub fn job(label: &str, state: JobState) -> JobStatus {
    JobStatus {
        id: 17 << 24,
        label: label.into(),
        state,
        kind: "RUN".into(),
        spec: "RUN|calc.py|1|0".into(),
        skill: "GENERAL".into(),
        priority: 1,
        attempts: 1,
        failures: 0,
        retries: 3,
        crashes: 0,
        worker: Some(1 << 16),
        worker_port: Some(8080),
        ready: false,
        submitted_at_us: T0,
        started_at_us: Some(T0 + 3),
        finished_at_us: None,
        state_since_us: T0 + 3,
        last_error: None,
        deps: Vec::new(),
    }
}

/// Two workers, one hosting two services, a memory-only master.
pub fn sample_stats() -> ClusterStats {
    let worker = |id: u32, port: u16, running: u32, services: &[&str]| WorkerStatus {
        id,
        port,
        running,
        capacity: 4,
        skills: vec!["GENERAL".into()],
        parent: None,
        ephemeral: false,
        services: services.iter().map(|s| s.to_string()).collect(),
        silent_for_ms: 250,
    };
    ClusterStats {
        active_workers: 2,
        queued: 1,
        delayed: 0,
        blocked: 3,
        dlq: 1,
        running: 1,
        completed: 9,
        cancelled: 0,
        upstream_failed: 0,
        shards: 2,
        persistence: "memory-only".into(),
        workers: vec![
            worker(1 << 16, 8080, 1, &["dag-5:WORKER_A", "dag-5:START_DASH"]),
            worker(1 << 16 | 1, 8081, 0, &[]),
        ],
        scaling: vec![],
    }
}
