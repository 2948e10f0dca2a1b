//! Starting one shard: bind the shared port, join the mesh, recover the shard's state from its
//! log, start the shard's tasks, and accept connections until the master stops.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::future;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::net::TcpListener;
use tracing::{debug, error, info, warn};

use super::connection::{self, ConnectionGuard};
use super::logs::LogSide;
use super::mesh::{Mesh, ShardMsg};
use super::persist::Persistence;
use super::shard::Shard;
use super::{recovery, MasterError, ShardEvent, Shared};
use titan_core::{Core, ShardInfo};
use titan_logs::{LogSink, SinkConfig, SinkKeys};
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
    match start(index, addr, &shared, mesh, &events).await {
        Ok(Some(started)) => {
            let _ = events.send(ShardEvent::Ready);
            run(index, started).await;
        }
        // The master stopped while this shard waited for the others to recover.
        Ok(None) => {}
        Err(e) => {
            let _ = events.send(ShardEvent::Failed(e));
        }
    }
}

/// A shard ready to accept: its listener, itself, and the tasks that keep its log.
struct Started {
    listener: TcpListener,
    shard: Rc<Shard>,
    wal_tasks: Vec<glommio::Task<()>>,
    shutdown: Shutdown,
}

/// Binds, joins the mesh, recovers the shard's state and starts its tasks. `None`: the master
/// stopped meanwhile.
async fn start(
    index: usize,
    addr: SocketAddr,
    shared: &Shared,
    mesh: Option<MeshBuilder<ShardMsg, Full>>,
    events: &crossbeam_channel::Sender<ShardEvent>,
) -> Result<Option<Started>, MasterError> {
    let listener = TcpListener::bind(addr).map_err(|e| MasterError::Bind {
        shard: index,
        addr,
        source: e.into(),
    })?;
    let bound = listener.local_addr().map_err(|e| MasterError::Bind {
        shard: index,
        addr,
        source: e.into(),
    })?;
    // Shard 0 owns the log sink; its port is published before any shard serves workers.
    let logs = match index {
        0 => Some(open_log_sink(addr, shared)?),
        _ => None,
    };
    // Joining waits for every shard, so it comes after this shard reported its address (the next
    // shard is only started once this one is bound).
    let _ = events.send(ShardEvent::Bound(bound));
    let (senders, receivers) = join_mesh(index, mesh).await?;
    let mesh = Mesh::new(senders, shared.config.shards);
    // Recover this shard's state before building anything that serves.
    let Some((core, persistence)) = recover(index, shared).await? else {
        return Ok(None);
    };
    let shard = Shard::new(
        index as u32,
        shared.clone(),
        mesh.clone(),
        core,
        logs,
        persistence.clone(),
    );
    let wal_tasks = persistence
        .iter()
        .flat_map(|p| {
            [
                glommio::spawn_local(p.clone().pump(shard.clone())),
                glommio::spawn_local(p.clone().snapshots(shard.clone())),
            ]
        })
        .collect();
    if let Some(logs) = &shard.logs {
        serve_log_sink(logs);
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
    Ok(Some(Started {
        listener,
        shard,
        wal_tasks,
        shutdown,
    }))
}

/// Accepts until the master stops, then writes what is pending and releases the log (its lock
/// and files) before the executor ends.
async fn run(index: usize, started: Started) {
    let Started {
        listener,
        shard,
        wal_tasks,
        shutdown,
    } = started;
    accept_loop(index, &listener, &shard, &shutdown).await;
    debug!(shard = index, "shard stopped accepting");
    // Awaited, so the tasks' handles on the log are gone and it can be closed properly. A
    // snapshot cut short leaves a temporary file that the next start removes.
    for task in wal_tasks {
        task.cancel().await;
    }
    if let Some(p) = shard.wal.take() {
        p.close().await;
    }
}

fn open_log_sink(addr: SocketAddr, shared: &Shared) -> Result<LogSide, MasterError> {
    let log_addr = SocketAddr::new(addr.ip(), shared.config.log_port);
    let keys = SinkKeys::new(shared.auth.secret.clone());
    let sink =
        LogSink::bind(log_addr, SinkConfig::default(), keys).map_err(|e| MasterError::LogBind {
            addr: log_addr,
            reason: e.to_string(),
        })?;
    shared
        .log_port
        .store(sink.local_addr().port(), Ordering::Release);
    Ok(LogSide::new(sink))
}

/// Runs the log sink below scheduling: under a flood of output the sink falls behind (and counts
/// what the full socket buffer drops) rather than slowing jobs down.
fn serve_log_sink(logs: &LogSide) {
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

type MeshEnds = (Option<Senders<ShardMsg>>, Option<Receivers<ShardMsg>>);

async fn join_mesh(
    index: usize,
    mesh: Option<MeshBuilder<ShardMsg, Full>>,
) -> Result<MeshEnds, MasterError> {
    let Some(builder) = mesh else {
        return Ok((None, None));
    };
    match builder.join().await {
        Ok((senders, receivers)) if senders.peer_id() == index => {
            Ok((Some(senders), Some(receivers)))
        }
        Ok((senders, _)) => {
            let peer = senders.peer_id();
            error!(
                shard = index,
                peer, "mesh peer id differs from the shard index"
            );
            Err(MasterError::ShardLost { shard: index })
        }
        Err(e) => {
            error!(shard = index, error = %e, "could not join the shard mesh");
            Err(MasterError::ShardLost { shard: index })
        }
    }
}

/// The shard's core, rebuilt from its log when it keeps one. `None`: the master stopped while
/// waiting for the other shards.
async fn recover(
    index: usize,
    shared: &Shared,
) -> Result<Option<(Core, Option<Rc<Persistence>>)>, MasterError> {
    let seed = shared.config.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let shard_info = ShardInfo {
        index: index as u32,
        count: shared.config.shards as u32,
    };
    let config = shared.config.core.clone();
    let mut core = Core::new(config, shard_info, shared.load.clone(), seed);
    let Some(generation) = &shared.generation else {
        return Ok(Some((core, None)));
    };
    let dir = generation.shard_dir(index as u32);
    let (journal, recovered) =
        recovery::open_shard(&dir, shared.config.wal.clone(), &mut core).await?;
    info!(
        shard = index,
        snapshot = recovered.snapshot,
        records = recovered.records,
        rejected = recovered.rejected,
        damage = ?recovered.damage,
        "recovered"
    );
    // Recovery ends — and the wait for the known workers starts — only once every shard has
    // replayed its log: a worker may connect to any shard, and no shard may give up on it while
    // another still replays.
    if !all_shards_recovered(shared).await {
        return Ok(None);
    }
    if recovered.replayed {
        core.finish_recovery(crate::timer::Clock::default().now());
    }
    let persistence = Persistence::new(journal, shared.config.snapshot_every);
    Ok(Some((core, Some(persistence))))
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
