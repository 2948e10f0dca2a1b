//! Spoofed log datagrams: before the trust boundary, any local process could send the master's
//! log port datagrams naming a running job, and its lines replaced the job's real ones in
//! `titan logs`. Now a datagram's lines must be sealed with the key of their own attempt (which
//! only the worker running it was given) and its header with the sending worker's key: a
//! stranger, a worker writing into another worker's job, and a datagram of the old format are
//! all dropped and counted, and the job's real lines are what `titan logs` shows.

mod support;

use std::net::UdpSocket;

use support::{eventually, scratch_dir, titan, Master, Worker, DEADLINE};
use titan::auth::{AccessFile, MasterSecret, SealKey, Secret};
use titan::core::{JobId, JobState, WorkerId};
use titan::logs::{AttemptKey, DatagramWriter, LineFlags, Stream};
use titan::proto::message::logs::LogsRequest;

/// The master's UDP log address, from its ready line.
fn log_addr(master: &Master) -> String {
    let line = master
        .proc
        .seen
        .iter()
        .find(|l| l.contains("logs on udp "))
        .expect("the ready line");
    let addr = line.split("logs on udp ").nth(1).unwrap();
    addr.trim_end_matches(')').to_string()
}

/// A datagram claiming lines 0..3 of `target` say "SPOOFED", its lines sealed with
/// `lines_key` and its header, from `worker`, with `header_key`.
fn spoof(
    target: AttemptKey,
    worker: WorkerId,
    lines_key: &SealKey,
    header_key: &SealKey,
) -> Vec<u8> {
    let mut writer = DatagramWriter::new(1400);
    for seq in 0..3 {
        let key = target.stream(Stream::Stdout);
        assert!(writer.push_line(lines_key, key, seq, LineFlags::empty(), b"SPOOFED"));
    }
    writer.seal(header_key, worker, 0x5eed, 0).to_vec()
}

/// The same claim in the datagram format of before (version 1, no seals).
fn unsealed_v1(target: AttemptKey, worker: WorkerId) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"TLOG");
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&worker.0.to_be_bytes());
    out.extend_from_slice(&7u32.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&target.job.0.to_be_bytes());
    out.extend_from_slice(&target.attempt.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.push(0);
    out.extend_from_slice(&7u16.to_be_bytes());
    out.extend_from_slice(b"SPOOFED");
    out
}

#[test]
fn spoofed_datagrams_are_dropped_counted_and_never_replace_a_jobs_lines() {
    let master = Master::start(&["--shards", "2"]);
    let _worker = Worker::start(&master.addr, &[]);
    let mut client = support::connect(&master.addr);
    // A job that prints only once the spoofing is over (the test creates its marker file).
    let dir = scratch_dir("spoof");
    let marker = dir.join("go");
    let script = dir.join("real.py");
    std::fs::write(
        &script,
        format!(
            "import os, time\nwhile not os.path.exists({:?}):\n    time.sleep(0.01)\n\
             print('real 1')\nprint('real 2')\nprint('real 3')\n",
            marker.display().to_string()
        ),
    )
    .unwrap();
    let job = support::submitted_id(&titan(
        &master.addr,
        &["submit", "--file", &script.display().to_string()],
    ));
    let status = eventually("the job to run", || {
        let s = client.status(&job).unwrap();
        (s.state == JobState::Running).then_some(s)
    });
    let target = AttemptKey::new(JobId(status.id), status.attempts);
    let worker = WorkerId(status.worker.expect("a running job has a worker"));

    // A stranger (no key of this master); a worker sealing with the key of a job it runs (the
    // test holds the master's secret, so it can make that key, and even the real worker's
    // header key); the old unsealed format.
    let stranger = MasterSecret::new(&Secret::random().unwrap());
    let file = AccessFile::load(support::access_file()).unwrap();
    let ours = MasterSecret::new(file.master.as_ref().unwrap());
    let other_job = SealKey::new(&ours.attempt_log_key(status.id + 1, 1));
    let header = SealKey::new(&ours.worker_log_key(worker.0));
    let datagrams = [
        spoof(
            target,
            worker,
            &SealKey::new(&stranger.attempt_log_key(target.job.0, target.attempt)),
            &SealKey::new(&stranger.worker_log_key(worker.0)),
        ),
        spoof(target, worker, &other_job, &header),
        unsealed_v1(target, worker),
    ];
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for datagram in &datagrams {
        socket.send_to(datagram, log_addr(&master)).unwrap();
    }
    let logs = eventually("the master to count the spoofed datagrams", || {
        let logs = client.stats().unwrap().logs;
        (logs.unauthenticated_datagrams + logs.invalid_datagrams >= 3).then_some(logs)
    });
    assert_eq!(
        (logs.unauthenticated_datagrams, logs.invalid_datagrams),
        (2, 1),
        "{logs:?}"
    );

    std::fs::write(&marker, b"").unwrap();
    let done = client.wait(std::slice::from_ref(&job), DEADLINE).unwrap();
    assert_eq!(done.jobs[0].state, JobState::Completed, "{done:?}");
    // The master's own ring holds the job's real lines, all of them.
    let reply = eventually("the ring to hold the whole output", || {
        let request = LogsRequest {
            job: job.clone(),
            attempt: 0,
            cursor: 0,
            max_lines: 100,
            wait_ms: 0,
        };
        let reply = client.logs(&request).unwrap();
        reply.complete.then_some(reply)
    });
    let lines: Vec<String> = reply
        .lines
        .iter()
        .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
        .collect();
    assert_eq!(lines, ["real 1", "real 2", "real 3"]);
    let shown = titan(&master.addr, &["logs", &job]).ok().stdout.clone();
    assert_eq!(shown, "real 1\nreal 2\nreal 3\n");
    let stats = titan(&master.addr, &["stats", "--json"]).ok().json();
    assert_eq!(stats["logs"]["unauthenticated_datagrams"], 2, "{stats}");
}
