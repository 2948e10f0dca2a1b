//! Starting one shard: bind the shared port, join the mesh, start the shard's tasks, accept.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::future;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::net::TcpListener;
use tracing::{debug, error, warn};

use super::connection::{self, ConnectionGuard};
use super::mesh::{Mesh, ShardMsg};
use super::shutdown::Shutdown;
use super::state::Shard;
use super::{MasterError, Shared};

/// Pause after a failed accept (e.g. out of file descriptors) before trying again, so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

pub(crate) async fn serve(
    index: usize,
    addr: SocketAddr,
    shared: Shared,
    mesh: Option<MeshBuilder<ShardMsg, Full>>,
    events: crossbeam_channel::Sender<Result<SocketAddr, MasterError>>,
) {
    let listener = match TcpListener::bind(addr).and_then(|l| l.local_addr().map(|a| (l, a))) {
        Ok((listener, bound)) => {
            let _ = events.send(Ok(bound));
            listener
        }
        Err(e) => {
            let _ = events.send(Err(MasterError::Bind {
                shard: index,
                addr,
                source: e.into(),
            }));
            return;
        }
    };
    // Joining waits for every shard, so it comes after this shard reported its address (the
    // next shard is only started once this one is bound).
    let (senders, receivers) = match mesh {
        Some(builder) => match builder.join().await {
            Ok((senders, receivers)) if senders.peer_id() == index => {
                (Some(senders), Some(receivers))
            }
            Ok((senders, _)) => {
                error!(
                    shard = index,
                    peer = senders.peer_id(),
                    "mesh peer id differs from the shard index"
                );
                let _ = events.send(Err(MasterError::ShardLost { shard: index }));
                return;
            }
            Err(e) => {
                error!(shard = index, error = %e, "could not join the shard mesh");
                let _ = events.send(Err(MasterError::ShardLost { shard: index }));
                return;
            }
        },
        None => (None, None),
    };
    let mesh = Mesh::new(senders, shared.config.shards);
    let seed = shared.config.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let shard = Shard::new(index as u32, shared.clone(), mesh.clone(), seed);
    let shutdown = Shutdown::default();
    glommio::spawn_local(shutdown.clone().follow(shared.stop.clone())).detach();
    glommio::spawn_local(mesh.flush_backlog()).detach();
    glommio::spawn_local(shard.clone().run_timer()).detach();
    if let Some(mut receivers) = receivers {
        for (_, stream) in receivers.streams() {
            let shard = shard.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = stream.recv().await {
                    shard.on_shard_msg(msg);
                }
            })
            .detach();
        }
    }
    accept_loop(index, &listener, &shard, &shutdown).await;
    debug!(shard = index, "shard stopped accepting");
}

async fn accept_loop(index: usize, listener: &TcpListener, shard: &Rc<Shard>, shutdown: &Shutdown) {
    let shared = &shard.shared;
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let open = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
                let guard = ConnectionGuard::new(shared.connections.clone());
                let over_limit = open > shared.config.max_connections;
                let task =
                    connection::serve(stream, shard.clone(), shutdown.clone(), guard, over_limit);
                glommio::spawn_local(task).detach();
            }
            Some(Err(e)) => {
                warn!(shard = index, error = %e, "accept failed");
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
