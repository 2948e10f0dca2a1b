//! The real `titan master` on a free port, driven by the real `titan-loadgen` and raw sockets.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{loadgen, Master, DEADLINE};
use titan::proto::{Header, OpCode};

#[test]
fn frag_torture_passes_against_the_real_master() {
    let master = Master::start(&["--shards", "2"]);
    let (ok, out) = loadgen(&[
        "frag",
        "--addr",
        &master.addr,
        "--frames",
        "30000",
        "--seed",
        "7",
        "--json",
    ]);
    assert!(ok, "frag failed: {out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(report["frames_verified"], 30000);
    assert_eq!(report["checks_failed"], 0);
    assert!(
        report["checks"].as_array().is_some_and(|c| c.len() >= 8),
        "{report}"
    );
}

#[test]
fn pipelined_pings_come_back_in_order_over_several_connections() {
    let master = Master::start(&["--shards", "2"]);
    let (ok, out) = loadgen(&[
        "ping",
        "--addr",
        &master.addr,
        "--connections",
        "4",
        "--depth",
        "32",
        "--count",
        "20000",
        "--json",
    ]);
    assert!(ok, "ping failed: {out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(report["frames"], 20000);
    assert_eq!(report["errors"], 0);
}

#[test]
fn a_connection_stalled_mid_frame_is_closed_after_the_timeout() {
    let master = Master::start(&["--shards", "1", "--stall-timeout-ms", "200"]);
    let mut stream = support::authenticated_stream(&master.addr, &support::client_key());
    let mut partial = Header::new(OpCode::Ping, 1000).encode().to_vec();
    partial.extend_from_slice(&[0; 10]);
    stream.write_all(&partial).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server should close, not answer");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "closed before the stall timeout"
    );
}

#[test]
fn an_idle_connection_between_frames_is_kept_open() {
    let master = Master::start(&["--shards", "1", "--stall-timeout-ms", "100"]);
    let mut stream = support::authenticated_stream(&master.addr, &support::client_key());
    // Idle (no partial frame) for several stall timeouts: the connection must survive. Waiting
    // here is the point of the test: idleness is the input, not a stand-in for an event.
    std::thread::sleep(Duration::from_millis(400));
    let mut ping = Vec::new();
    titan::proto::encode_frame(
        &mut ping,
        OpCode::Ping,
        &titan::proto::message::Ping {
            nonce: 1,
            data: vec![],
        },
    )
    .unwrap();
    stream.write_all(&ping).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).expect("a Pong after idling");
    assert_eq!(header[1], OpCode::Pong as u8);
}

#[test]
fn sigterm_and_sigint_stop_the_master_cleanly() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut master = Master::start(&["--shards", "2"]);
        let _open = TcpStream::connect(&master.addr).unwrap();
        master.proc.signal(signal);
        let status = master.proc.wait_exit();
        assert!(status.success(), "{signal:?}: exit status {status:?}");
    }
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    // A plain listener without SO_REUSEPORT holds the port, so the master's bind must fail.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port().to_string();
    let mut master = std::process::Command::new(support::titan_bin());
    let out = support::with_keys(&mut master)
        .args([
            "master",
            "--port",
            &port,
            "--shards",
            "1",
            "--log-port",
            "0",
            "--memory-only",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not listen"), "stderr: {stderr}");
}

#[test]
fn non_loopback_bind_is_refused_without_a_token() {
    let out = std::process::Command::new(support::titan_bin())
        .args(["master", "--port", "0", "--bind", "0.0.0.0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to listen"));
}

#[test]
fn a_client_that_half_closes_still_gets_every_reply() {
    // `nc -N` style: send the requests, shut the sending side, read until the master closes.
    // Submits are answered only once their log record is durable, after the peer's EOF.
    use titan::core::grammar::parse_one_off;
    use titan::core::Submission;
    use titan::proto::message::client::SubmitRequest;
    use titan::proto::HEADER_LEN;
    let master = Master::start(&["--shards", "1"]);
    let mut stream = support::authenticated_stream(&master.addr, &support::client_key());
    let mut frames = Vec::new();
    const N: usize = 50;
    for _ in 0..N {
        let submission = Submission::OneOff(parse_one_off("NOOP").unwrap());
        titan::proto::encode_frame(
            &mut frames,
            OpCode::SubmitJob,
            &SubmitRequest { submission },
        )
        .unwrap();
    }
    stream.write_all(&frames).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut replies = Vec::new();
    stream.read_to_end(&mut replies).expect("replies, then EOF");
    let mut acks = 0;
    let mut pos = 0;
    while pos + HEADER_LEN <= replies.len() {
        assert_eq!(
            replies[pos + 1],
            OpCode::Ack as u8,
            "reply {acks} is not an Ack"
        );
        let len = u32::from_be_bytes(replies[pos + 4..pos + 8].try_into().unwrap()) as usize;
        pos += HEADER_LEN + len;
        acks += 1;
    }
    assert_eq!((acks, pos), (N, replies.len()));
}

#[test]
fn idle_connections_cannot_lock_out_clients_or_workers() {
    // Connections left open and idle up to the limit: the next client and a worker still get in,
    // because the master closes the longest-idle client connections to make room.
    let master = Master::start(&["--shards", "1", "--max-connections", "6"]);
    let idle: Vec<TcpStream> = (0..6)
        .map(|_| support::authenticated_stream(&master.addr, &support::client_key()))
        .collect();
    let stats = support::eventually("a client to get in past idle connections", || {
        let out = support::titan_command(&["stats", "--master", &master.addr])
            .output()
            .unwrap();
        out.status.success().then_some(out)
    });
    assert!(String::from_utf8_lossy(&stats.stdout).contains("TITAN SYSTEM MONITOR"));
    let _worker = support::Worker::start(&master.addr, &[]);
    // Some of the idle ones were closed by the master (a read sees EOF at once).
    let closed = idle
        .into_iter()
        .filter(|s| {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut byte = [0u8; 1];
            matches!((&*s).read(&mut byte), Ok(0))
        })
        .count();
    assert!(closed >= 1, "no idle connection was closed");
}
