//! The trust boundary, tried the way a hostile local user would: peers that skip the handshake,
//! replay one, or hold the wrong key; each role asking for what it may not do; an impostor on
//! the master's port; tickets forged, for another job, or missing at the worker's port; job
//! processes looking for the keys; and the quick start finding its keys with no extra step.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use support::{
    client_key, credential, scratch_dir, titan, titan_bin, titan_command, Master, Proc, Worker,
    DEADLINE,
};
use titan::auth::{AccessFile, Credential, Role};
use titan::client::{fetch_output_file, Client, ClientError};
use titan::core::grammar::parse_one_off;
use titan::core::Submission;
use titan::proto::message::auth::{Challenge, Welcome, AUTH_SCHEME};
use titan::proto::message::logs::{LogsReply, LogsRequest, Ticket};
use titan::proto::message::worker::{Heartbeat, Register};
use titan::proto::message::Ping;
use titan::proto::{encode_frame, encode_raw_frame, ErrorCode, Header, OpCode, HEADER_LEN};

/// Reads one whole frame off a raw stream: its opcode and payload.
fn read_frame(stream: &mut TcpStream) -> Option<(OpCode, Vec<u8>)> {
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).ok()?;
    let header = Header::decode(&header, u32::MAX).ok()?;
    let mut payload = vec![0u8; header.len as usize];
    stream.read_exact(&mut payload).ok()?;
    Some((header.opcode, payload))
}

/// The code and message of an `Error` frame's payload.
fn error_of(payload: &[u8]) -> (u16, String) {
    let e =
        titan::proto::access::<titan::proto::message::ArchivedErrorReply>(OpCode::Error, payload)
            .unwrap();
    (e.code.to_native(), e.message.as_str().to_string())
}

fn assert_closed(stream: &mut TcpStream) {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the master to close, got {other:?}"),
    }
}

#[test]
fn a_peer_that_skips_the_handshake_gets_one_error_and_a_close() {
    let master = Master::start(&["--shards", "1"]);
    for opcode in [OpCode::Stats, OpCode::Register, OpCode::SubmitJob] {
        let mut stream = TcpStream::connect(&master.addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let (first, _) = read_frame(&mut stream).expect("the challenge");
        assert_eq!(first, OpCode::Challenge);
        let mut frame = Vec::new();
        encode_raw_frame(&mut frame, opcode, &[]).unwrap();
        stream.write_all(&frame).unwrap();
        let (op, payload) = read_frame(&mut stream).expect("an error");
        assert_eq!(op, OpCode::Error);
        let (code, message) = error_of(&payload);
        assert_eq!(code, ErrorCode::Unauthorized as u16, "{message}");
        assert!(message.starts_with("authenticate first"), "{message}");
        assert_closed(&mut stream);
    }
}

#[test]
fn a_recorded_handshake_does_not_open_another_connection() {
    let master = Master::start(&["--shards", "1"]);
    let key = client_key();
    // Record a good Hello (answering one challenge), as someone watching the wire would.
    let mut first = TcpStream::connect(&master.addr).unwrap();
    first.set_read_timeout(Some(DEADLINE)).unwrap();
    let (_, challenge) = read_frame(&mut first).unwrap();
    let challenge = titan::proto::access::<titan::proto::message::auth::ArchivedChallenge>(
        OpCode::Challenge,
        &challenge,
    )
    .unwrap();
    let client_nonce = titan::auth::Nonce([5; 32]);
    let server_nonce = titan::auth::Nonce(challenge.nonce);
    let hello = titan::proto::message::auth::Hello {
        role: Role::Client.to_wire(),
        nonce: client_nonce.0,
        proof: titan::auth::handshake::proof(
            key.proof_key(),
            titan::auth::handshake::Party::Client,
            Role::Client,
            &server_nonce,
            &client_nonce,
        ),
    };
    let mut recorded = Vec::new();
    encode_frame(&mut recorded, OpCode::Hello, &hello).unwrap();
    first.write_all(&recorded).unwrap();
    assert_eq!(
        read_frame(&mut first).unwrap().0,
        OpCode::Welcome,
        "the original works"
    );
    // Replayed on a new connection (a fresh challenge), it is refused.
    let mut replay = TcpStream::connect(&master.addr).unwrap();
    replay.set_read_timeout(Some(DEADLINE)).unwrap();
    assert_eq!(read_frame(&mut replay).unwrap().0, OpCode::Challenge);
    replay.write_all(&recorded).unwrap();
    let (op, payload) = read_frame(&mut replay).unwrap();
    assert_eq!(op, OpCode::Error);
    let (code, message) = error_of(&payload);
    assert_eq!(code, ErrorCode::Unauthorized as u16);
    assert!(
        message.contains("does not match this master's client key"),
        "{message}"
    );
    assert_closed(&mut replay);
}

#[test]
fn a_wrong_key_is_refused_with_a_clear_error() {
    let master = Master::start(&["--shards", "1"]);
    let stranger = AccessFile::generate().unwrap();
    let wrong = Credential::new(Role::Client, stranger.client.unwrap());
    match Client::connect(&master.addr, &wrong) {
        Err(ClientError::Auth { source, .. }) => {
            let text = source.to_string();
            assert!(
                text.contains("does not match this master's client key"),
                "{text}"
            );
        }
        other => panic!(
            "expected an authentication error, got {:?}",
            other.map(|_| ())
        ),
    }
    // The CLI says the same.
    let out = titan_command(&["stats", "--master", &master.addr])
        .env(
            "TITAN_KEY",
            Credential::new(Role::ReadOnly, stranger.read_only.unwrap()).to_env_value(),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("cannot authenticate with") && stderr.contains("read-only key"),
        "{stderr}"
    );
}

/// A `Register` a role may not send.
fn register() -> Register {
    Register {
        port: 1,
        capacity: 1,
        skills: vec!["GENERAL".into()],
        pid: 1,
        parent: None,
        ephemeral: false,
        spawn_ticket: None,
        running: Vec::new(),
        instance: 1,
    }
}

fn forbidden(result: Result<impl std::fmt::Debug, ClientError>) -> String {
    match result {
        Err(ClientError::Server {
            code: Some(ErrorCode::Forbidden),
            message,
        }) => message,
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

fn ping(client: &mut Client) {
    let reply: Ping = client
        .call(
            OpCode::Ping,
            &Ping {
                nonce: 9,
                data: vec![1],
            },
            OpCode::Pong,
        )
        .expect("the connection is still usable");
    assert_eq!(reply.nonce, 9);
}

fn send_raw<T>(client: &mut Client, opcode: OpCode, msg: &T) -> Result<(), ClientError>
where
    T: for<'a, 'b> rkyv::Serialize<titan::proto::codec::FrameSerializer<'a, 'b>>,
{
    client.send(opcode, msg)?;
    client.flush()?;
    client.recv().map(|_| ())
}

#[test]
fn each_role_is_refused_what_it_may_not_do_and_its_connection_stays_usable() {
    let master = Master::start(&["--shards", "2"]);
    let submission = || Submission::OneOff(parse_one_off("NOOP").unwrap());

    let mut read_only = Client::connect(&master.addr, &credential(Role::ReadOnly)).unwrap();
    let ro = "this connection authenticated with the read-only key: it may read (stats, workers, \
              status, jobs, logs, wait), not";
    let message = forbidden(read_only.submit(submission()));
    assert_eq!(message, format!("{ro} submit; use a client key"));
    assert_eq!(
        forbidden(read_only.cancel("TSK-0")),
        format!("{ro} cancel; use a client key")
    );
    assert_eq!(
        forbidden(read_only.stop("TSK-0")),
        format!("{ro} stop; use a client key")
    );
    let message = forbidden(send_raw(&mut read_only, OpCode::Register, &register()));
    assert_eq!(message, format!("{ro} register; use a worker key"));
    assert!(read_only
        .stats_text()
        .unwrap()
        .contains("TITAN SYSTEM MONITOR"));
    read_only.workers().unwrap();
    read_only.jobs(None, 5).unwrap();
    ping(&mut read_only);

    let mut client = Client::connect(&master.addr, &credential(Role::Client)).unwrap();
    let cl = "this connection authenticated with the client key: it may submit, cancel, stop and \
              read, not";
    let message = forbidden(send_raw(&mut client, OpCode::Register, &register()));
    assert_eq!(message, format!("{cl} register; use a worker key"));
    let message = forbidden(send_raw(
        &mut client,
        OpCode::Heartbeat,
        &Heartbeat { running: 0 },
    ));
    assert_eq!(message, format!("{cl} heartbeat; use a worker key"));
    let label = client.submit(submission()).unwrap().label;
    client.status(&label).unwrap();
    ping(&mut client);

    let mut worker = Client::connect(&master.addr, &credential(Role::Worker)).unwrap();
    let wk = "this connection authenticated with the worker key: it may register, heartbeat and \
              report, not";
    assert_eq!(
        forbidden(worker.stats_text()),
        format!("{wk} read stats; use a client or read-only key")
    );
    assert_eq!(
        forbidden(worker.submit(submission())),
        format!("{wk} submit; use a client key")
    );
    assert_eq!(
        forbidden(worker.status(&label)),
        format!("{wk} read a job's status; use a client or read-only key")
    );
    let logs = LogsRequest {
        job: label.clone(),
        attempt: 0,
        cursor: 0,
        max_lines: 1,
        wait_ms: 0,
    };
    assert!(forbidden(worker.logs(&logs)).ends_with("not read logs; use a client or read-only key"));
    ping(&mut worker);

    // The CLI with the read-only key prints the refusal and fails.
    let out = titan_command(&["cancel", &label, "--master", &master.addr])
        .env("TITAN_KEY", credential(Role::ReadOnly).to_env_value())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: {ro} cancel; use a client key\n")
    );
}

/// A process on the master's port that does not hold the worker key: it challenges, takes the
/// worker's Hello, and answers with a Welcome it cannot prove. Reports what each connection
/// sent after its Hello.
fn impostor(listener: TcpListener, connections: usize) -> Vec<Vec<OpCode>> {
    let mut seen = Vec::new();
    for _ in 0..connections {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut out = Vec::new();
        let challenge = Challenge {
            scheme: AUTH_SCHEME,
            nonce: [3; 32],
        };
        encode_frame(&mut out, OpCode::Challenge, &challenge).unwrap();
        stream.write_all(&out).unwrap();
        let (hello, _) = read_frame(&mut stream).expect("the worker's hello");
        assert_eq!(hello, OpCode::Hello);
        out.clear();
        encode_frame(&mut out, OpCode::Welcome, &Welcome { proof: [4; 32] }).unwrap();
        stream.write_all(&out).unwrap();
        let mut after = Vec::new();
        while let Some((op, _)) = read_frame(&mut stream) {
            after.push(op);
        }
        seen.push(after);
    }
    seen
}

#[test]
fn a_worker_refuses_an_impostor_master_and_sends_it_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fake = std::thread::spawn(move || impostor(listener, 2));
    let workspace = scratch_dir("impostor-ws");
    let mut cmd = std::process::Command::new(titan_bin());
    cmd.args(["worker", "--port", "0", "--master", &addr, "--workspace"])
        .arg(&workspace)
        .env("TITAN_LOG", support::test_log_level());
    support::with_keys(&mut cmd);
    let worker = Proc::spawn(cmd);
    // Two sessions (the worker retries): neither registers, sends a report or anything else.
    let seen = fake.join().expect("the impostor");
    assert_eq!(
        seen,
        vec![Vec::<OpCode>::new(); 2],
        "the worker sent frames to an impostor"
    );
    drop(worker);
}

/// A job that printed lines on `worker`, finished, and the logs reply the master gives for it.
fn finished_job(master: &Master) -> (String, LogsReply) {
    let mut client = support::connect(&master.addr);
    let job = client
        .submit(Submission::OneOff(parse_one_off("RUN|lines.py 5").unwrap()))
        .unwrap()
        .label;
    client.wait(std::slice::from_ref(&job), DEADLINE).unwrap();
    let reply = client
        .logs(&LogsRequest {
            job: job.clone(),
            attempt: 0,
            cursor: 0,
            max_lines: 100,
            wait_ms: 0,
        })
        .unwrap();
    (job, reply)
}

fn refused_at_the_port(worker: &str, ticket: &Ticket, why: &str) {
    match fetch_output_file(worker, ticket, 1) {
        Err(ClientError::Server {
            code: Some(ErrorCode::Forbidden),
            message,
        }) => assert!(message.contains(why), "{message}"),
        other => panic!("expected a refusal ({why}), got {other:?}"),
    }
}

#[test]
fn the_worker_port_serves_files_only_with_a_valid_ticket_for_that_job() {
    let master = Master::start(&["--shards", "2"]);
    let worker = Worker::start(&master.addr, &[]);
    let (job, reply) = finished_job(&master);
    let ticket = reply
        .ticket
        .clone()
        .expect("a reply naming a worker carries a ticket");
    assert_eq!(reply.worker_addr.as_deref(), Some(worker.addr.as_str()));
    assert_eq!(ticket.job_dir, job);
    let bytes = fetch_output_file(&worker.addr, &ticket, 1).expect("the ticket opens the file");
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        "line 1\nline 2\nline 3\nline 4\nline 5\n"
    );

    let mut forged = ticket.clone();
    forged.tag.0[0] ^= 1;
    refused_at_the_port(&worker.addr, &forged, "MAC does not match");
    let mut longer = ticket.clone();
    longer.expires_unix_ms += 3_600_000;
    refused_at_the_port(&worker.addr, &longer, "MAC does not match");
    let (other_job, other) = finished_job(&master);
    let mut other_dir = ticket.clone();
    other_dir.job_dir = other_job.clone();
    refused_at_the_port(&worker.addr, &other_dir, "MAC does not match");
    let mut other_worker = other.ticket.clone().unwrap();
    other_worker.worker.0 += 1;
    refused_at_the_port(&worker.addr, &other_worker, "the ticket is for worker");
    // A valid ticket asked for another directory than its own.
    let mut client = Client::connect_unauthenticated(&worker.addr).unwrap();
    let request = titan::proto::message::logs::FileRequest {
        job_dir: other_job,
        stream: 1,
        offset: 0,
        max_bytes: 1024,
        ticket: ticket.clone(),
    };
    let asked: Result<titan::proto::message::logs::FileChunk, _> =
        client.call(OpCode::GetLogs, &request, OpCode::Data);
    assert!(
        forbidden(asked).contains(&format!("the ticket is for job directory {job:?}")),
        "a ticket opens only its own job's directory"
    );
}

/// Runs a script printing the key variables on the master's workers, and checks they are unset.
fn assert_jobs_see_no_keys(master: &str) {
    let dir = scratch_dir("env-job");
    let script = dir.join("env.py");
    std::fs::write(
        &script,
        "import os\nprint('TITAN_KEY', os.environ.get('TITAN_KEY'))\n\
         print('TITAN_ACCESS_FILE', os.environ.get('TITAN_ACCESS_FILE'))\n",
    )
    .unwrap();
    let script = script.display().to_string();
    let job = support::submitted_id(&titan(master, &["submit", "--file", &script]));
    let done = titan(master, &["wait", &job, "--timeout", "20s"]);
    assert_eq!(done.code, Some(0), "{done:?}");
    let logs = titan(master, &["logs", &job]);
    assert_eq!(
        logs.stdout, "TITAN_KEY None\nTITAN_ACCESS_FILE None\n",
        "{logs:?}"
    );
}

#[test]
fn job_processes_never_see_the_keys() {
    // A worker that found its key through TITAN_ACCESS_FILE...
    let master = Master::start(&["--shards", "1"]);
    let _worker = Worker::start(&master.addr, &[]);
    assert_jobs_see_no_keys(&master.addr);
    // ...and one given it as TITAN_KEY.
    let master = Master::start(&["--shards", "1"]);
    let mut cmd = std::process::Command::new(titan_bin());
    cmd.args([
        "worker",
        "--port",
        "0",
        "--master",
        &master.addr,
        "--workspace",
    ])
    .arg(scratch_dir("env-ws"))
    .env("PATH", "/usr/bin:/bin")
    .env("TITAN_LOG", support::test_log_level())
    .env("TITAN_KEY", credential(Role::Worker).to_env_value())
    .env_remove("TITAN_ACCESS_FILE");
    let mut worker = Proc::spawn(cmd);
    worker.wait_line("titan worker ready on ");
    assert_jobs_see_no_keys(&master.addr);
}

#[test]
fn the_quick_start_finds_its_keys_in_the_working_directory() {
    // As the README's three terminals: master, worker and CLI started from one directory, with
    // no key given anywhere. The master (memory-only here) keeps just its access file there.
    let cwd = scratch_dir("quick-start");
    let bare = |args: &[&str]| {
        let mut cmd = std::process::Command::new(titan_bin());
        cmd.args(args)
            .current_dir(&cwd)
            .env_remove("TITAN_KEY")
            .env_remove("TITAN_ACCESS_FILE")
            .env_remove("TITAN_MASTER")
            .env("TITAN_LOG", support::test_log_level());
        cmd
    };
    let mut master = Proc::spawn({
        let mut cmd = bare(&["master", "--port", "0", "--log-port", "0", "--memory-only"]);
        cmd.args(["--shards", "1"]);
        cmd
    });
    let line = master.wait_line("titan master ready on ");
    let addr = line.split_whitespace().nth(4).unwrap().to_string();
    let access = cwd.join("titan_data").join("access");
    let entries: Vec<_> = std::fs::read_dir(cwd.join("titan_data"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "a memory-only master's data dir holds only the access file"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&access).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&access).unwrap();
    assert!(text.contains("titan-access 1\n") && text.contains("read-only = "));
    let mut worker = Proc::spawn({
        let mut cmd = bare(&["worker", "--port", "0", "--master", &addr, "--workspace"]);
        cmd.arg(cwd.join("ws"))
            .arg("--perm-files")
            .arg(support::perm_files());
        cmd
    });
    worker.wait_line("titan worker ready on ");
    let stats = bare(&["stats", "--master", &addr]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&stats.stdout).contains("Active Workers:    1"),
        "{stats:?}"
    );
    // A restarted master keeps its keys: the file is read, not replaced, and the CLI still
    // gets in with it.
    drop(worker);
    drop(master);
    let mut again = Proc::spawn(bare(&[
        "master",
        "--port",
        "0",
        "--log-port",
        "0",
        "--memory-only",
    ]));
    let line = again.wait_line("titan master ready on ");
    let addr = line.split_whitespace().nth(4).unwrap().to_string();
    assert_eq!(std::fs::read_to_string(&access).unwrap(), text);
    let stats = bare(&["stats", "--master", &addr]).output().unwrap();
    assert_eq!(stats.status.code(), Some(0), "{stats:?}");
}
