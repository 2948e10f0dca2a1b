//! The keys of integration tests: one access file per test binary, shared by every master it
//! starts, and the ways tests hand its keys to processes and clients.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use titan::auth::{AccessFile, Credential, KeyLookup, Role, Want};
use titan::client::Client;

use super::DEADLINE;

/// The access file of every master this test binary starts (created once, with fresh keys).
pub fn access_file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("access-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let file = AccessFile::generate().expect("fresh keys");
        assert!(file.create_new(&path).expect("writing the access file"));
        path
    })
}

/// The key of `role` from [`access_file`].
pub fn credential(role: Role) -> Credential {
    let file = AccessFile::load(access_file()).expect("reading the access file");
    Credential::new(role, file.key(role).expect("every role has a key").clone())
}

/// The client key from [`access_file`] (what commands find through `TITAN_ACCESS_FILE`).
pub fn client_key() -> Credential {
    let lookup = KeyLookup {
        flag: Some(access_file().to_path_buf()),
        ..KeyLookup::default()
    };
    lookup.credential(Want::Client).expect("the client key")
}

/// A client of the master at `addr`, authenticated with the client key.
pub fn connect(addr: &str) -> Client {
    Client::connect(addr, &client_key()).expect("connecting to the master")
}

/// Points a child process at [`access_file`] (and away from any key of the test's own
/// environment).
pub fn with_keys(cmd: &mut Command) -> &mut Command {
    cmd.env("TITAN_ACCESS_FILE", access_file())
        .env_remove("TITAN_KEY")
}

/// A raw connection to the master at `addr` whose handshake is done with `credential`, ready
/// for hand-made frames. The master sends nothing after its `Welcome` until asked.
pub fn authenticated_stream(addr: &str, credential: &Credential) -> std::net::TcpStream {
    use titan::proto::conn::{ConnConfig, Gate};
    let stream = std::net::TcpStream::connect(addr).expect("connecting to the master");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let nonce = titan::auth::Nonce::random().unwrap();
    let gate = Gate::client(credential.clone(), nonce, Instant::now());
    let mut conn = titan::client::BlockingConn::with_gate(&stream, &ConnConfig::client(), gate);
    conn.handshake().expect("the handshake");
    stream
}

/// `--access-file` with the test binary's access file, unless the test chose its own.
pub(super) fn access_args(extra: &[&str]) -> Vec<String> {
    if extra.contains(&"--access-file") {
        return Vec::new();
    }
    vec![
        "--access-file".to_string(),
        access_file().display().to_string(),
    ]
}
