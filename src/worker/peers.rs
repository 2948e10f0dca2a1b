//! The worker's own port: it is reserved for the worker's lifetime (so two workers cannot claim
//! the same port in STATS) and answers `Ping`, so anyone can check a worker is alive.

use std::cell::RefCell;
use std::rc::Rc;

use futures_lite::future;
use glommio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::proto::message::ArchivedPing;
use crate::proto::{self, Limits, OpCode, ProtoError, RecvBuf};
use crate::runtime::outbox::Outbox;
use crate::runtime::shutdown::Shutdown;
use crate::runtime::stream::{self, read_some, SharedStream};

pub async fn serve(listener: TcpListener, shutdown: Shutdown) {
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(conn)) => {
                glommio::spawn_local(peer(conn, shutdown.clone())).detach();
            }
            Some(Err(e)) => {
                debug!(error = %e, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

async fn peer(conn: TcpStream, shutdown: Shutdown) {
    let stream: SharedStream = Rc::new(RefCell::new(conn));
    let outbox = Outbox::new();
    let writer = glommio::spawn_local(stream::write_loop(stream.clone(), outbox.clone()));
    let mut recv = RecvBuf::new(Limits::default());
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
                Ok(Some(frame)) => answer(frame.header.opcode, frame.payload, &outbox),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                outbox.reply(|out| proto::encode_error(out, e.code(), &e.to_string()));
                break 'read;
            }
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
