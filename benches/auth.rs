//! What authentication costs a connection (issue 14's bound: at most 1 ms): the handshake's
//! proofs alone, both sides in memory, and over real loopback TCP a loop of connect, handshake,
//! ping and close against its baseline twin, the same loop without a handshake, served by the
//! same blocking server thread. The handshake is once per connection; no frame after it pays.
//!
//! Run: `cargo bench --bench auth`

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use titan::auth::{AccessFile, Credential, Nonce, Role, ServerKeys};
use titan::client::BlockingConn;
use titan::proto::conn::{Conn, ConnConfig, Gate, ProgressRule, Transport};
use titan::proto::message::Ping;
use titan::proto::OpCode;

fn server_config() -> ConnConfig {
    ConnConfig::server(ProgressRule::NoProgressFor(Duration::from_secs(10)))
}

fn server_gate(keys: &Arc<ServerKeys>) -> Gate {
    Gate::server(keys.clone(), Nonce::random().unwrap(), Instant::now())
}

fn client_gate(credential: &Credential) -> Gate {
    Gate::client(credential.clone(), Nonce::random().unwrap(), Instant::now())
}

/// Moves what `from` has to send into `to`.
fn carry(from: &mut Conn, to: &mut Conn) {
    let mut wire = Vec::new();
    from.outgoing.take_transmit(&mut wire);
    from.outgoing.on_written();
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let room = to.recv_room();
        let n = room.len().min(rest.len());
        room[..n].copy_from_slice(&rest[..n]);
        to.on_received(n, Instant::now()).unwrap();
        rest = &rest[n..];
    }
    to.has_frame().unwrap();
}

/// The whole handshake between two sans-IO connections: nonces, proofs, frames, no socket.
fn handshake_in_memory(c: &mut Criterion) {
    let file = AccessFile::generate().unwrap();
    let keys = Arc::new(ServerKeys::from_access(&file).unwrap());
    let credential = Credential::new(Role::Client, file.client.clone().unwrap());
    c.bench_function("auth/handshake_in_memory", |b| {
        b.iter(|| {
            let mut server =
                Conn::with_layers(&server_config(), Transport::Plaintext, server_gate(&keys));
            let mut client = Conn::with_layers(
                &ConnConfig::client(),
                Transport::Plaintext,
                client_gate(&credential),
            );
            carry(&mut server, &mut client);
            carry(&mut client, &mut server);
            carry(&mut server, &mut client);
            assert!(server.is_open() && client.is_open());
        })
    });
}

/// Serves connections one at a time: the handshake (when `keys` is given), then Pongs.
fn serve(listener: TcpListener, keys: Option<Arc<ServerKeys>>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        let _ = stream.set_nodelay(true);
        let gate = keys.as_ref().map_or(Gate::Open, server_gate);
        let mut conn = BlockingConn::with_gate(stream, &server_config(), gate);
        let _ = conn.flush();
        while let Ok(frame) = conn.recv() {
            let payload = frame.payload.to_vec();
            let _ = conn.send_raw(OpCode::Pong, &payload);
            if conn.flush().is_err() {
                break;
            }
        }
    }
}

/// One connection's life: connect, the handshake (with `credential`), one ping, close.
fn connect_and_ping(addr: &str, credential: Option<&Credential>) -> io::Result<()> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let gate = credential.map_or(Gate::Open, client_gate);
    let mut conn = BlockingConn::with_gate(stream, &ConnConfig::client(), gate);
    conn.handshake().map_err(io::Error::other)?;
    let ping = Ping {
        nonce: 1,
        data: Vec::new(),
    };
    conn.send(OpCode::Ping, &ping).map_err(io::Error::other)?;
    conn.flush()?;
    let frame = conn.recv().map_err(io::Error::other)?;
    assert_eq!(frame.header.opcode, OpCode::Pong);
    Ok(())
}

/// A server thread on a free loopback port, with or without keys.
fn server(keys: Option<Arc<ServerKeys>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || serve(listener, keys));
    addr
}

fn connect_auth_ping(c: &mut Criterion) {
    let file = AccessFile::generate().unwrap();
    let keys = Arc::new(ServerKeys::from_access(&file).unwrap());
    let credential = Credential::new(Role::Client, file.client.clone().unwrap());
    let plain = server(None);
    let authenticated = server(Some(keys));
    let mut g = c.benchmark_group("auth");
    g.sample_size(30);
    g.bench_function("connect_ping_plain", |b| {
        b.iter(|| connect_and_ping(&plain, None).unwrap())
    });
    g.bench_function("connect_auth_ping", |b| {
        b.iter(|| connect_and_ping(&authenticated, Some(&credential)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, handshake_in_memory, connect_auth_ping);
criterion_main!(benches);
