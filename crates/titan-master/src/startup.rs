//! Starting one shard: bind the shared port, join the mesh, recover the shard's state from its
//! log, start the shard's tasks, and accept connections until the master stops.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::future;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::net::TcpListener;
use tracing::{debug, error, info, warn};

use super::connection::{self, ConnectionGuard};
use super::logs::LogSide;
use super::mesh::{Mesh, ShardMsg};
use super::persist::Persistence;
use super::shard::Shard;
use super::{recovery, MasterError, ShardEvent, Shared};
use titan_core::{Core, ShardInfo};
use titan_logs::{LogSink, SinkConfig};
use titan_runtime::shutdown::Shutdown;

/// Shares of the log sink's task queue (request handling runs in the default queue, 1000).
const LOG_SINK_SHARES: usize = 100;

/// Pause after a failed accept (e.g. out of file descriptors) before trying again, so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

pub(crate) async fn serve(
    index: usize,
    addr: SocketAddr,
    shared: Shared,
    mesh: Option<MeshBuilder<ShardMsg, Full>>,
    events: crossbeam_channel::Sender<ShardEvent>,
) {
    let (listener, bound) =
        match TcpListener::bind(addr).and_then(|l| l.local_addr().map(|a| (l, a))) {
            Ok(bound) => bound,
            Err(e) => {
                let _ = events.send(ShardEvent::Failed(MasterError::Bind {
                    shard: index,
                    addr,
                    source: e.into(),
                }));
                return;
            }
        };
    // Shard 0 owns the log sink; its port is published before any shard serves workers.
    let logs = if index == 0 {
        let log_addr = std::net::SocketAddr::new(addr.ip(), shared.config.log_port);
        match LogSink::bind(log_addr, SinkConfig::default()) {
            Ok(sink) => {
                shared.log_port.store(
                    sink.local_addr().port(),
                    std::sync::atomic::Ordering::Release,
                );
                Some(LogSide::new(sink))
            }
            Err(e) => {
                let _ = events.send(ShardEvent::Failed(MasterError::LogBind {
                    addr: log_addr,
                    reason: e.to_string(),
                }));
                return;
            }
        }
    } else {
        None
    };
    let _ = events.send(ShardEvent::Bound(bound)); // Joining waits for every shard, so it comes after this shard reported its address (the
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
                let _ = events.send(ShardEvent::Failed(MasterError::ShardLost { shard: index }));
                return;
            }
            Err(e) => {
                error!(shard = index, error = %e, "could not join the shard mesh");
                let _ = events.send(ShardEvent::Failed(MasterError::ShardLost { shard: index }));
                return;
            }
        },
        None => (None, None),
    };
    let mesh = Mesh::new(senders, shared.config.shards);
    let seed = shared.config.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // Recover this shard's state before building anything that serves.
    let shard_info = ShardInfo {
        index: index as u32,
        count: shared.config.shards as u32,
    };
    let mut core = Core::new(
        shared.config.core.clone(),
        shard_info,
        shared.load.clone(),
        seed,
    );
    let persistence = match &shared.generation {
        Some(generation) => {
            let dir = generation.shard_dir(index as u32);
            match recovery::open_shard(&dir, shared.config.wal.clone(), &mut core).await {
                Ok((journal, recovered)) => {
                    info!(
                        shard = index,
                        snapshot = recovered.snapshot,
                        records = recovered.records,
                        rejected = recovered.rejected,
                        damage = ?recovered.damage,
                        "recovered"
                    );
                    // Recovery ends — and the wait for the known workers starts — only once every
                    // shard has replayed its log: a worker may connect to any shard, and no shard
                    // may give up on it while another still replays.
                    if !all_shards_recovered(&shared).await {
                        return;
                    }
                    if recovered.replayed {
                        core.finish_recovery(crate::timer::Clock::default().now());
                    }
                    Some(Persistence::new(journal, shared.config.snapshot_every))
                }
                Err(e) => {
                    let _ = events.send(ShardEvent::Failed(e.into()));
                    return;
                }
            }
        }
        None => None,
    };
    let shard = Shard::new(
        index as u32,
        shared.clone(),
        mesh.clone(),
        core,
        logs,
        persistence.clone(),
    );
    let wal_tasks: Vec<_> = persistence
        .iter()
        .flat_map(|p| {
            [
                glommio::spawn_local(p.clone().pump(shard.clone())),
                glommio::spawn_local(p.clone().snapshots(shard.clone())),
            ]
        })
        .collect();
    if let Some(logs) = &shard.logs {
        // Below scheduling: under a flood of output the sink falls behind (and counts what the
        // full socket buffer drops) rather than slowing jobs down.
        let queue = glommio::executor().create_task_queue(
            glommio::Shares::Static(LOG_SINK_SHARES),
            glommio::Latency::NotImportant,
            "log-sink",
        );
        let sink = logs.sink.clone();
        let serve = async move {
            if let Err(e) = sink.serve().await {
                error!(error = %e, "the log sink stopped");
            }
        };
        match glommio::spawn_local_into(serve, queue) {
            Ok(task) => {
                task.detach();
            }
            Err(e) => error!(error = %e, "could not start the log sink"),
        }
    }
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
    let _ = events.send(ShardEvent::Ready);
    accept_loop(index, &listener, &shard, &shutdown).await;
    debug!(shard = index, "shard stopped accepting");
    // Write what is pending and release the log (its lock and files) before the executor ends.
    // Awaited, so the tasks' handles on the log are gone and it can be closed properly. A
    // snapshot cut short leaves a temporary file that the next start removes.
    for task in wal_tasks {
        task.cancel().await;
    }
    drop(persistence);
    if let Some(p) = shard.wal.take() {
        p.close().await;
    }
}

/// A client connection quiet for this long may be closed to make room when the connection limit
/// is reached (the CLI reconnects by itself on its next command).
const EVICT_AFTER_IDLE: Duration = Duration::from_secs(1);

/// At the connection limit, closes this shard's longest-idle client connection (never a
/// worker's, never one owed a reply), so that idle or leaked connections cannot lock out new
/// clients and workers. False when there is none to close.
fn evict_idle_client(shard: &Shard) -> bool {
    let now = std::time::Instant::now();
    let Some(key) = shard.conns.oldest_idle_client(now, EVICT_AFTER_IDLE) else {
        return false;
    };
    let peer = shard.conns.peer(key);
    info!(
        ?peer,
        "connection limit reached: closing the longest-idle client connection"
    );
    shard.conns.close(key);
    true
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
                let over_limit = open > shared.config.max_connections && !evict_idle_client(shard);
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

/// Counts this shard as recovered and waits until every shard is (false: the master is stopping).
async fn all_shards_recovered(shared: &Shared) -> bool {
    let shards = shared.config.shards;
    shared
        .recovered_shards
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    while shared
        .recovered_shards
        .load(std::sync::atomic::Ordering::Acquire)
        < shards
    {
        if shared.stop.is_triggered() {
            return false;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
    true
}
