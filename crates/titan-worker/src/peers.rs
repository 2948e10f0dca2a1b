//! The worker's own port: it is reserved for the worker's lifetime (so two workers cannot claim
//! the same port in STATS), answers `Ping`, and serves the output files of the jobs it ran
//! (`GetLogs` with a [`FileRequest`]): the complete record of a job's output, for `titan logs`
//! when the master's ring no longer holds all of it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures_lite::future;
use glommio::io::BufferedFile;
use glommio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::exec::resolve::check_file_name;
use crate::exec::{STDERR_FILE, STDOUT_FILE};
use titan_proto::message::logs::{ArchivedFileRequest, FileChunk, FileRequest};
use titan_proto::message::ArchivedPing;
use titan_proto::{self as proto, ErrorCode, Limits, OpCode, ProtoError, RecvBuf};
use titan_runtime::outbox::Outbox;
use titan_runtime::shutdown::Shutdown;
use titan_runtime::stream::{self, read_some, SharedStream};

/// Largest piece of a file one reply carries.
pub const MAX_FILE_CHUNK: u32 = 1024 * 1024;

pub async fn serve(listener: TcpListener, shutdown: Shutdown, workspace: Rc<PathBuf>) {
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(conn)) => {
                glommio::spawn_local(peer(conn, shutdown.clone(), workspace.clone())).detach();
            }
            Some(Err(e)) => {
                debug!(error = %e, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

async fn peer(conn: TcpStream, shutdown: Shutdown, workspace: Rc<PathBuf>) {
    let stream: SharedStream = Rc::new(RefCell::new(conn));
    let outbox = Outbox::new();
    let writer = glommio::spawn_local(stream::write_loop(stream.clone(), outbox.clone()));
    let mut recv = RecvBuf::new(Limits::default());
    let mut pending = Vec::new();
    'read: loop {
        let read = {
            let spare = recv.spare_mut();
            future::or(async { Some(read_some(&stream, spare).await) }, async {
                shutdown.wait().await;
                None
            })
            .await
        };
        match read {
            Some(Ok(n)) if n > 0 => recv.commit(n),
            _ => break,
        }
        loop {
            let result = match recv.next_frame() {
                Ok(None) => break,
                Ok(Some(frame)) if frame.header.opcode == OpCode::GetLogs => {
                    // Reading a file awaits; the request is copied out of the receive buffer.
                    match proto::access::<ArchivedFileRequest>(OpCode::GetLogs, frame.payload) {
                        Ok(r) => {
                            let request = FileRequest {
                                job_dir: r.job_dir.as_str().to_string(),
                                stream: r.stream,
                                offset: r.offset.to_native(),
                                max_bytes: r.max_bytes.to_native(),
                            };
                            // Its place in the reply order is kept while the file is read.
                            pending.push((outbox.reserve(), request));
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                Ok(Some(frame)) => answer(frame.header.opcode, frame.payload, &outbox),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                outbox.reply(|out| proto::encode_error(out, e.code(), &e.to_string()));
                break 'read;
            }
        }
        for (slot, request) in pending.drain(..) {
            let reply = read_file(&workspace, &request).await;
            outbox.complete(slot, |out| match reply {
                Ok(chunk) => {
                    if let Err(e) = proto::encode_frame(out, OpCode::Data, &chunk) {
                        proto::encode_error(out, ErrorCode::Internal, &e.to_string());
                    }
                }
                Err(message) => proto::encode_error(out, ErrorCode::NotFound, &message),
            });
        }
    }
    outbox.close();
    writer.await;
    let _ = stream::close(&stream).await;
}

fn answer(opcode: OpCode, payload: &[u8], outbox: &Outbox) -> Result<(), ProtoError> {
    match opcode {
        OpCode::Ping => {
            proto::access::<ArchivedPing>(opcode, payload)?;
            outbox.reply(|out| {
                let _ = proto::encode_raw_frame(out, OpCode::Pong, payload);
            });
            Ok(())
        }
        _ => Err(ProtoError::UnexpectedFrame {
            opcode,
            reason: "a worker's port only answers Ping",
        }),
    }
}

/// A piece of `stdout.log` or `stderr.log` of a job this worker ran.
async fn read_file(workspace: &Path, request: &FileRequest) -> Result<FileChunk, String> {
    check_file_name(&request.job_dir)
        .map_err(|e| format!("bad job directory {:?}: {e}", request.job_dir))?;
    let name = match request.stream {
        1 => STDOUT_FILE,
        2 => STDERR_FILE,
        other => return Err(format!("unknown stream {other} (1 = stdout, 2 = stderr)")),
    };
    let path = workspace.join(&request.job_dir).join(name);
    let file = BufferedFile::open(&path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let size = file
        .file_size()
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let want =
        u64::from(request.max_bytes.min(MAX_FILE_CHUNK)).min(size.saturating_sub(request.offset));
    let bytes = if want == 0 {
        Vec::new()
    } else {
        let read = file
            .read_at(request.offset, want as usize)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        read.to_vec()
    };
    let _ = file.close().await;
    Ok(FileChunk { bytes, size })
}
