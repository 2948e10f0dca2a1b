//! The worker's own port: it is reserved for the worker's lifetime (so two workers cannot claim
//! the same port in STATS), answers `Ping`, and serves the output files of the jobs it ran
//! (`GetLogs` with a [`FileRequest`]): the complete record of a job's output, for `titan logs`
//! when the master's ring no longer holds all of it.
//!
//! The worker holds no client key, so a file is served only to a request that carries a
//! ticket the master issued for this worker and that job directory, unexpired ([`Tickets`];
//! see `titan_auth::ticket`). The dashboard and artifact downloads read files the same way.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_lite::future;
use glommio::io::BufferedFile;
use glommio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::exec::resolve::check_file_name;
use crate::exec::{STDERR_FILE, STDOUT_FILE};
use titan_auth::{Claims, KeyBytes, TicketKey};
use titan_proto::conn::{ConnConfig, ProgressRule};
use titan_proto::decode::PeerRequest;
use titan_proto::message::logs::{ArchivedFileRequest, FileChunk};
use titan_proto::{self as proto, ConnError, ErrorCode, OpCode};
use titan_runtime::conn::Connection;
use titan_runtime::outbox::Outbox;
use titan_runtime::shutdown::Shutdown;

/// Largest piece of a file one reply carries.
pub const MAX_FILE_CHUNK: u32 = 1024 * 1024;

/// What tickets are checked against: this worker's id and ticket key, from its latest
/// registration (a re-registration, with a new id or a new master, replaces them).
#[derive(Default)]
pub struct Tickets {
    current: RefCell<Option<(u32, TicketKey)>>,
}

impl Tickets {
    pub fn set(&self, worker: u32, key: &KeyBytes) {
        *self.current.borrow_mut() = Some((worker, TicketKey::new(key)));
    }

    /// Whether `request` may read its job directory at `now_unix_ms`; the refusal says why.
    fn check(&self, request: &ArchivedFileRequest, now_unix_ms: u64) -> Result<(), String> {
        let current = self.current.borrow();
        let Some((me, key)) = current.as_ref() else {
            return Err(
                "this worker has not registered with a master yet: it has no ticket key".into(),
            );
        };
        let ticket = &request.ticket;
        let worker = titan_proto::decode::native::<titan_core::WorkerId, _>(&ticket.worker).0;
        if worker != *me {
            return Err(format!(
                "the ticket is for worker {worker}; this is worker {me}"
            ));
        }
        let job_dir = ticket.job_dir.as_str();
        if job_dir != request.job_dir.as_str() {
            return Err(format!(
                "the ticket is for job directory {job_dir:?}, not {:?}",
                request.job_dir.as_str()
            ));
        }
        let claims = Claims {
            worker,
            job_dir,
            expires_unix_ms: ticket.expires_unix_ms.to_native(),
        };
        key.check(&claims, &ticket.tag.0, now_unix_ms)
            .map_err(|e| e.to_string())
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub async fn serve(
    listener: TcpListener,
    shutdown: Shutdown,
    workspace: Rc<PathBuf>,
    tickets: Rc<Tickets>,
) {
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(conn)) => {
                let peer = peer(conn, shutdown.clone(), workspace.clone(), tickets.clone());
                glommio::spawn_local(peer).detach();
            }
            Some(Err(e)) => {
                debug!(error = %e, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

/// One peer's requests, answered in order. A file read awaits with its request still borrowed
/// from the receive buffer: nothing else reads this connection meanwhile.
async fn peer(stream: TcpStream, shutdown: Shutdown, workspace: Rc<PathBuf>, tickets: Rc<Tickets>) {
    // Peers get the server's in-flight bound and byte budget; no stall rule yet (as before).
    let config = ConnConfig::server(ProgressRule::Unlimited);
    let mut conn = Connection::new(stream, &config, shutdown);
    let outbox = conn.outbox().clone();
    'read: while conn.fill().await.is_ok() {
        loop {
            let answered = match conn.next_frame() {
                Ok(None) => break,
                Ok(Some(frame)) => match PeerRequest::decode(frame) {
                    Ok(request) => {
                        answer(request, &outbox, &workspace, &tickets).await;
                        Ok(())
                    }
                    Err(e) => Err(ConnError::from(e)),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = answered {
                if let Some(code) = e.reply_code() {
                    outbox.reply(|out| proto::encode_error(out, code, &e.to_string()));
                }
                break 'read;
            }
        }
    }
    conn.finish().await;
}

async fn answer(request: PeerRequest<'_>, outbox: &Outbox, workspace: &Path, tickets: &Tickets) {
    match request {
        PeerRequest::Ping { payload } => outbox.reply(|out| {
            let _ = proto::encode_raw_frame(out, OpCode::Pong, payload);
        }),
        PeerRequest::ReadFile(request) => {
            if let Err(why) = tickets.check(request, unix_ms()) {
                let message = format!("not allowed to read {:?}: {why}", request.job_dir.as_str());
                outbox.reply(|out| proto::encode_error(out, ErrorCode::Forbidden, &message));
                return;
            }
            let reply = read_file(workspace, request).await;
            outbox.reply(|out| match reply {
                Ok(chunk) => {
                    if let Err(e) = proto::encode_frame(out, OpCode::Data, &chunk) {
                        proto::encode_error(out, ErrorCode::Internal, &e.to_string());
                    }
                }
                Err(message) => proto::encode_error(out, ErrorCode::NotFound, &message),
            });
        }
    }
}

/// A piece of `stdout.log` or `stderr.log` of a job this worker ran.
async fn read_file(workspace: &Path, request: &ArchivedFileRequest) -> Result<FileChunk, String> {
    let job_dir = request.job_dir.as_str();
    check_file_name(job_dir).map_err(|e| format!("bad job directory {job_dir:?}: {e}"))?;
    let name = match request.stream {
        1 => STDOUT_FILE,
        2 => STDERR_FILE,
        other => return Err(format!("unknown stream {other} (1 = stdout, 2 = stderr)")),
    };
    let path = workspace.join(job_dir).join(name);
    let file = BufferedFile::open(&path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let size = file
        .file_size()
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let offset = request.offset.to_native();
    let want = u64::from(request.max_bytes.to_native().min(MAX_FILE_CHUNK))
        .min(size.saturating_sub(offset));
    let bytes = if want == 0 {
        Vec::new()
    } else {
        let read = file
            .read_at(offset, want as usize)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        read.to_vec()
    };
    let _ = file.close().await;
    Ok(FileChunk { bytes, size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use titan_core::WorkerId;
    use titan_proto::message::logs::{FileRequest, Ticket};
    use titan_proto::message::KeyBytes as WireKey;

    const KEY: KeyBytes = [9; 32];

    fn ticket(worker: u32, job_dir: &str, expires_unix_ms: u64, key: &KeyBytes) -> Ticket {
        let claims = Claims {
            worker,
            job_dir,
            expires_unix_ms,
        };
        Ticket {
            worker: WorkerId(worker),
            job_dir: job_dir.into(),
            expires_unix_ms,
            tag: WireKey(TicketKey::new(key).sign(&claims)),
        }
    }

    /// Checks a request for `job_dir` carrying `ticket` at `now`.
    fn check(tickets: &Tickets, job_dir: &str, ticket: Ticket, now: u64) -> Result<(), String> {
        let request = FileRequest {
            job_dir: job_dir.into(),
            stream: 1,
            offset: 0,
            max_bytes: 1,
            ticket,
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&request).unwrap();
        let archived = proto::access::<ArchivedFileRequest>(OpCode::GetLogs, &bytes).unwrap();
        tickets.check(archived, now)
    }

    #[test]
    fn a_ticket_opens_its_own_directory_on_its_own_worker_until_it_expires() {
        let tickets = Tickets::default();
        let good = ticket(5, "TSK-1", 1_000, &KEY);
        let err = check(&tickets, "TSK-1", good.clone(), 0).unwrap_err();
        assert!(err.contains("not registered"), "{err}");
        tickets.set(5, &KEY);
        assert_eq!(check(&tickets, "TSK-1", good.clone(), 999), Ok(()));
        let err = check(&tickets, "TSK-1", good.clone(), 1_200).unwrap_err();
        assert!(err.starts_with("the ticket expired 200 ms ago"), "{err}");
        let err = check(&tickets, "TSK-2", good.clone(), 0).unwrap_err();
        assert_eq!(
            err,
            "the ticket is for job directory \"TSK-1\", not \"TSK-2\""
        );
        let err = check(&tickets, "TSK-2", ticket(5, "TSK-2", 1_000, &[1; 32]), 0).unwrap_err();
        assert!(err.contains("MAC does not match"), "forged: {err}");
        let err = check(&tickets, "TSK-1", ticket(6, "TSK-1", 1_000, &KEY), 0).unwrap_err();
        assert_eq!(err, "the ticket is for worker 6; this is worker 5");
        // A new registration (another id and key) retires the tickets of the old one.
        tickets.set(7, &[2; 32]);
        assert!(check(&tickets, "TSK-1", good, 0).is_err());
    }
}
