//! Cross-shard traffic: what shards tell each other, and how it travels.
//!
//! Shards share nothing mutable but the load table; everything else crosses a glommio channel
//! mesh (bounded SPSC channels between every pair of executors). Which shard gets what is the
//! router's decision (`titan_core::router`); the mesh only carries it. Outputs are carried out
//! synchronously inside `Shard::handle`, so sending must never wait: [`Mesh::send`] tries the
//! channel and, when it is full, parks the message in a per-peer backlog that a flusher task
//! drains with awaiting sends. Order per peer is kept either way, which the router's ordering
//! rules (a worker's adoptions before its `WorkerUp`) rely on.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use glommio::channels::channel_mesh::Senders;
use glommio::{GlommioError, ResourceType};

use titan_core::{Input, JobRef, JobState, Totals, WorkerId, WorkerInfo};
use titan_proto::message::client::{JobStatus, LogTotals, ScalingEvent};
use titan_runtime::outbox::Notify;

/// Messages queued per mesh channel before senders fall back to the backlog.
pub const MESH_CHANNEL_CAPACITY: usize = 4096;

/// A request a shard runs on behalf of another (the owner of the job, or every shard).
#[derive(Clone, Debug)]
pub enum Remote {
    /// Answer with the job's status.
    Status(JobRef),
    /// Cancel the job or DAG.
    Cancel(JobRef),
    /// Stop the service.
    Stop(JobRef),
    /// Report when the job is terminal (part `index` of wait `query`).
    Watch { job: JobRef, index: u32 },
    /// Which job of this name was submitted last here?
    LookupName(Box<str>),
    /// Jobs of this shard, newest first.
    ListJobs { state: Option<JobState>, limit: u32 },
    /// Counts and hosted services of this shard.
    Stats,
    /// The job's output (this shard owns the job; shard 0 holds the lines).
    Logs {
        job: JobRef,
        params: super::logs::LogsParams,
    },
}

/// One shard's answer to a gathered query.
#[derive(Debug)]
pub enum Part {
    /// A name lookup: (submitted µs, job id) of this shard's newest job of that name.
    Name(Option<(u64, u64)>),
    Jobs {
        jobs: Vec<JobStatus>,
        more: bool,
    },
    Stats(Box<ShardStats>),
    /// A watched job finished (its status then), or could not be watched (the error text).
    Watched {
        index: u32,
        status: Box<Result<JobStatus, String>>,
    },
}

/// What one shard contributes to STATS.
#[derive(Debug, Default)]
pub struct ShardStats {
    pub by_state: [u64; 9],
    pub dlq: u64,
    /// Cumulative counts (finished jobs are pruned from history, these are not).
    pub totals: Totals,
    /// (worker, service label) pairs for services this shard owns.
    pub services: Vec<(WorkerId, String)>,
    /// (worker, time since its last heartbeat) for the workers whose home this shard is: only
    /// the home shard hears heartbeats, so only its figure is current.
    pub silent_for: Vec<(WorkerId, std::time::Duration)>,
    /// This shard's recent scaling decisions.
    pub scaling: Vec<ScalingEvent>,
    /// The log sink's counters (shard 0 only).
    pub logs: Option<LogTotals>,
    /// Why this shard cannot write its log, if it cannot.
    pub degraded: Option<String>,
}

/// Identifies a gather in progress on its origin shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueryId {
    pub origin: u32,
    pub seq: u32,
}

/// Everything that crosses between shards.
#[derive(Debug)]
pub enum ShardMsg {
    /// Feed this input to your core (worker reports, losses, ticks).
    Input(Input),
    /// A worker registered on `home_shard`.
    WorkerUp {
        info: WorkerInfo,
        home_shard: u32,
        addr: std::net::SocketAddr,
    },
    /// Write this frame to the worker's connection, which lives on your shard.
    ToWorker { worker: WorkerId, frame: Vec<u8> },
    /// Disconnect this worker (its home is your shard).
    DropWorker { worker: WorkerId },
    /// Fill the reply slot named by this token with this frame.
    Reply { token: u64, frame: Vec<u8> },
    /// Run this request; answer the slot in `token` directly (`Reply`) or as part of `query`.
    Request {
        token: u64,
        query: Option<QueryId>,
        request: Remote,
    },
    /// A part of a gathered answer.
    Part { query: QueryId, part: Part },
    /// To shard 0: an attempt's line totals and the worker that has its files.
    LogEnd {
        job: titan_core::JobId,
        attempt: u32,
        stdout: u64,
        stderr: u64,
        worker: std::net::SocketAddr,
    },
    /// To shard 0: answer a `GetLogs` (the owner resolved the job).
    LogsRead {
        token: u64,
        params: super::logs::LogsParams,
        info: Box<super::logs::LogsInfo>,
    },
}

/// This shard's ends of the mesh.
pub struct Mesh {
    senders: Option<Senders<ShardMsg>>,
    backlog: RefCell<Vec<VecDeque<ShardMsg>>>,
    pub backlog_ready: Notify,
}

impl Mesh {
    pub fn new(senders: Option<Senders<ShardMsg>>, shards: usize) -> Rc<Mesh> {
        Rc::new(Mesh {
            senders,
            backlog: RefCell::new((0..shards).map(|_| VecDeque::new()).collect()),
            backlog_ready: Notify::default(),
        })
    }

    /// Sends without waiting. A message to this very shard is a bug of the caller.
    pub fn send(&self, peer: u32, msg: ShardMsg) {
        let Some(senders) = &self.senders else {
            debug_assert!(false, "mesh send with a single shard");
            return;
        };
        let mut backlog = self.backlog.borrow_mut();
        let queue = &mut backlog[peer as usize];
        if queue.is_empty() {
            match senders.try_send_to(peer as usize, msg) {
                Ok(()) => return,
                Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) => queue.push_back(msg),
                // Closed: the peer shard is gone, which only happens while the process stops.
                Err(_) => return,
            }
        } else {
            queue.push_back(msg);
        }
        drop(backlog);
        self.backlog_ready.notify();
    }

    /// Drains backlogs with awaiting sends; runs as one task per shard.
    pub async fn flush_backlog(self: Rc<Mesh>) {
        let Some(senders) = &self.senders else {
            return;
        };
        loop {
            self.backlog_ready.wait().await;
            loop {
                let next = {
                    let mut backlog = self.backlog.borrow_mut();
                    backlog
                        .iter_mut()
                        .enumerate()
                        .find_map(|(peer, q)| q.pop_front().map(|m| (peer, m)))
                };
                let Some((peer, msg)) = next else {
                    break;
                };
                if senders.send_to(peer, msg).await.is_err() {
                    // The peer's receiver is gone: the process is shutting down.
                    return;
                }
            }
        }
    }
}
