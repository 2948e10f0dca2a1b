//! The handshake between two sans-IO connections, bytes carried by hand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use titan_auth::{AccessFile, Credential, Nonce, Role, ServerKeys};

use super::super::{Conn, ConnConfig, ConnError, ProgressRule, Transport};
use super::Gate;
use crate::error::ErrorCode;
use crate::header::OpCode;

fn keys(file: &AccessFile) -> Arc<ServerKeys> {
    Arc::new(ServerKeys::from_access(file).unwrap())
}

fn credential(file: &AccessFile, role: Role) -> Credential {
    Credential::new(role, file.key(role).unwrap().clone())
}

fn server(keys: Arc<ServerKeys>, now: Instant) -> Conn {
    let config = ConnConfig::server(ProgressRule::NoProgressFor(Duration::from_secs(10)));
    let gate = Gate::server(keys, Nonce::random().unwrap(), now);
    Conn::with_layers(&config, Transport::Plaintext, gate)
}

fn client(credential: Credential, now: Instant) -> Conn {
    let gate = Gate::client(credential, Nonce::random().unwrap(), now);
    Conn::with_layers(&ConnConfig::client(), Transport::Plaintext, gate)
}

/// What `from` has to send, taken as the socket would carry it.
fn take(from: &mut Conn) -> Vec<u8> {
    let mut wire = Vec::new();
    from.outgoing.take_transmit(&mut wire);
    from.outgoing.on_written();
    wire
}

fn feed(to: &mut Conn, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let room = to.recv_room();
        let n = room.len().min(rest.len());
        room[..n].copy_from_slice(&rest[..n]);
        to.on_received(n, Instant::now()).unwrap();
        rest = &rest[n..];
    }
}

/// Carries bytes both ways until neither side has any; returns the opcodes the server's
/// application received.
fn pump(server: &mut Conn, client: &mut Conn) -> Result<Vec<OpCode>, ConnError> {
    let mut got = Vec::new();
    loop {
        let to_client = take(server);
        feed(client, &to_client);
        client.has_frame()?;
        let to_server = take(client);
        feed(server, &to_server);
        while let Some(frame) = server.next_frame()? {
            got.push(frame.header.opcode);
        }
        if to_client.is_empty() && to_server.is_empty() {
            return Ok(got);
        }
    }
}

fn push_stats(conn: &mut Conn) {
    conn.outgoing
        .push(|out| drop(crate::encode_raw_frame(out, OpCode::Stats, &[])));
}

#[test]
fn a_client_proves_its_role_and_its_held_frames_follow() {
    let file = AccessFile::generate().unwrap();
    let now = Instant::now();
    for role in Role::ALL {
        let mut s = server(keys(&file), now);
        let mut c = client(credential(&file, role), now);
        push_stats(&mut c);
        assert!(!c.is_open() && !s.is_open());
        assert_eq!(pump(&mut s, &mut c), Ok(vec![OpCode::Stats]), "{role}");
        assert_eq!(s.incoming.role(), Some(role));
        assert_eq!(c.incoming.role(), Some(role));
        assert_eq!(
            s.incoming.stall_deadline(),
            None,
            "no handshake deadline once open"
        );
    }
}

#[test]
fn a_frame_before_the_handshake_gets_unauthorized() {
    let file = AccessFile::generate().unwrap();
    let mut s = server(keys(&file), Instant::now());
    let mut raw = Vec::new();
    crate::encode_raw_frame(&mut raw, OpCode::Stats, &[]).unwrap();
    feed(&mut s, &raw);
    let err = s.next_frame().unwrap_err();
    assert_eq!(
        err,
        ConnError::Unauthenticated {
            opcode: OpCode::Stats
        }
    );
    assert_eq!(err.reply_code(), Some(ErrorCode::Unauthorized));
}

#[test]
fn a_wrong_key_and_a_replayed_hello_fail() {
    let file = AccessFile::generate().unwrap();
    let other = AccessFile::generate().unwrap();
    let now = Instant::now();
    let mut s = server(keys(&file), now);
    let mut c = client(credential(&other, Role::Client), now);
    assert_eq!(
        pump(&mut s, &mut c),
        Err(ConnError::AuthFailed { role: Role::Client })
    );

    // A Hello recorded from a good handshake does not answer another challenge.
    let mut s1 = server(keys(&file), now);
    let mut c1 = client(credential(&file, Role::Client), now);
    feed(&mut c1, &take(&mut s1));
    c1.has_frame().unwrap();
    let hello = take(&mut c1);
    feed(&mut s1, &hello);
    assert_eq!(s1.next_frame(), Ok(None));
    assert!(s1.is_open(), "the recorded handshake was good");
    let mut s2 = server(keys(&file), now);
    let _challenge = take(&mut s2);
    feed(&mut s2, &hello);
    assert_eq!(
        s2.next_frame().unwrap_err(),
        ConnError::AuthFailed { role: Role::Client }
    );
}

#[test]
fn a_server_without_the_key_is_refused_before_the_client_sends_anything_else() {
    let file = AccessFile::generate().unwrap();
    let impostor = AccessFile::generate().unwrap();
    let now = Instant::now();
    let mut c = client(credential(&file, Role::Worker), now);
    push_stats(&mut c);
    // The impostor answers with its own key for the same role.
    let mut fake = server(keys(&impostor), now);
    feed(&mut c, &take(&mut fake));
    c.has_frame().unwrap();
    let hello = take(&mut c);
    // Relaying the Hello to a server of another key fails there; a server that accepts any
    // Hello still cannot make the Welcome proof.
    feed(&mut fake, &hello);
    assert!(matches!(
        fake.next_frame(),
        Err(ConnError::AuthFailed { .. })
    ));
    let mut forged = Vec::new();
    let welcome = crate::message::auth::Welcome { proof: [7; 32] };
    crate::encode_frame(&mut forged, OpCode::Welcome, &welcome).unwrap();
    feed(&mut c, &forged);
    assert_eq!(
        c.has_frame().unwrap_err(),
        ConnError::ServerUnproven { role: Role::Worker }
    );
    assert!(take(&mut c).is_empty(), "the held frame never leaves");
}

#[test]
fn the_client_reports_the_servers_refusal_and_both_sides_time_out() {
    let file = AccessFile::generate().unwrap();
    let now = Instant::now();
    let mut c = client(credential(&file, Role::Client), now);
    let mut error = Vec::new();
    crate::encode_error(&mut error, ErrorCode::TooManyConnections, "full");
    feed(&mut c, &error);
    assert!(matches!(
        c.has_frame(),
        Err(ConnError::Refused { code: Some(ErrorCode::TooManyConnections), ref message }) if message == "full"
    ));
    let s = server(keys(&file), now);
    let limit = crate::limits::HANDSHAKE_TIMEOUT;
    assert_eq!(s.incoming.stall_deadline(), Some(now + limit));
    assert_eq!(s.incoming.check_progress(now + limit / 2), Ok(()));
    assert!(matches!(
        s.incoming.check_progress(now + limit),
        Err(ConnError::HandshakeTimeout { .. })
    ));
}
