//! The master shell's routing rules, pure: for everything that reaches a shard from outside (a
//! worker's report, a registration, a departure, a client's request) and for every [`Output`] of
//! a shard's core, where it goes — to which shard's core as which [`Input`], to which worker, to
//! which client, to the journal — and in what order. The master's shards carry the answers out over
//! sockets and their channel mesh; the simulator (`sim`, behind the feature of that name) carries
//! the very same answers out over its virtual network, so it checks these rules, not a copy.
//!
//! A [`Router`] is the view from one shard: the one a worker's connection or a client's request
//! arrived on, or the one whose core emitted an output. The rules:
//! - **Owner routing.** A submission lives on the shard that accepted it; everything about its
//!   jobs afterwards (worker reports, adoptions, cancels, stops, watches) goes to the shard that
//!   owns its DAG, `dag % shards` ([`Router::input`], [`Router::owner`]).
//! - **Adoption before `WorkerUp`.** A worker's registration reaches every shard as that shard's
//!   `Adopt` for each attempt the worker still runs whose job the shard owns, and only then its
//!   `WorkerUp` ([`Router::register`]). A core places no new work on the adopted slots first, and
//!   a core recovering from a restart, which holds every dispatch until the workers it knew are
//!   back, already holds the returning worker's attempts when its `WorkerUp` ends the hold (it
//!   re-queues as lost any attempt nobody reported by then).
//! - **Departures.** A worker whose connection ended, that its home shard declared dead
//!   ([`Route::Disconnect`]) or that scaling retired ([`Command::Retire`]) is lost on every shard
//!   ([`Router::worker_lost`]).
//! - **Outputs** ([`Router::route`]): journal records stay on their shard and come back to it as
//!   `Persisted` once durable ([`confirm_at_once`] when there is no log); replies and notifications
//!   go where their token says ([`ReplyTo`]); dispatches, kills, spawns and retirements go to the
//!   worker's connection, wherever it lives; `Wake` becomes a `Tick` on each named shard.
//!
//! Fan-outs visit shards in ascending order. Only the order per destination shard matters: each
//! shard receives its inputs in the order they were routed (the mesh and the simulated network
//! both keep it per pair of shards).

use std::time::Duration;

use super::ids::{DagId, JobId, Lsn, ShardInfo, WorkerId};
use super::limits::MAX_SHARDS;
use super::model::JobState;
use super::record::Record;
use super::{Ack, Input, KillReason, Output, RequestError, SpawnReason, WorkerInfo};

/// The rules as seen from one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Router {
    shard: ShardInfo,
    /// A rule broken on purpose (simulator builds only).
    #[cfg(feature = "sim")]
    fault: Option<Fault>,
}

/// A rule broken on purpose, so a test can show that the simulator notices when the router
/// changes. Never set outside the simulator.
#[cfg(feature = "sim")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Each shard hears a registration's `WorkerUp` before the worker's adoptions.
    WorkerUpBeforeAdoptions,
    /// Worker reports go to the shard after the job's owner.
    ReportsToWrongShard,
}

#[cfg(feature = "sim")]
impl Fault {
    /// Its name on the simulator's command line (`--router-fault`).
    pub fn name(self) -> &'static str {
        match self {
            Fault::WorkerUpBeforeAdoptions => "worker-up-before-adoptions",
            Fault::ReportsToWrongShard => "reports-to-wrong-shard",
        }
    }
}

#[cfg(feature = "sim")]
impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(name: &str) -> Result<Fault, String> {
        [Fault::WorkerUpBeforeAdoptions, Fault::ReportsToWrongShard]
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| format!("no router fault named {name}"))
    }
}

/// One input for one shard's core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The shard whose core takes it (possibly the router's own).
    pub shard: u32,
    /// The input.
    pub input: Input,
}

/// Where one core output goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Append to this shard's journal; feed `Input::Persisted` back to this shard once the record
    /// is durable (at once without a log: [`confirm_at_once`]).
    Journal {
        /// The record's sequence number.
        lsn: Lsn,
        /// The record.
        record: Record,
    },
    /// Answer a request: a connection's reply slot, or a part of a wait (a watch the core refused).
    Reply {
        /// Where the answer goes.
        to: ReplyTo,
        /// The answer.
        reply: Result<Ack, RequestError>,
    },
    /// A watched job is terminal: answer the part of the wait the token names.
    Notify {
        /// Where the notification goes (a watch comes from a wait, so its token names a wait).
        to: ReplyTo,
        /// The job.
        job: JobId,
        /// Its terminal state.
        state: JobState,
    },
    /// Write a command on the worker's connection, wherever it lives. A worker unknown there is
    /// already gone: drop the command (the cores learn of the loss from `WorkerLost`).
    Worker {
        /// The worker.
        worker: WorkerId,
        /// What to tell it.
        command: Command,
    },
    /// This shard declared the worker dead (missed heartbeats): close its connection, which makes
    /// every shard lose it ([`Router::worker_lost`]).
    Disconnect {
        /// The worker.
        worker: WorkerId,
        /// How long it had been silent.
        silent_for: Duration,
    },
    /// Feed `Input::Tick` to each of these shards: they wait for capacity this shard freed.
    Tick(Shards),
}

/// What a shard tells a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run this attempt (a service is deployed); its spec is `Core::spec(job)`.
    Run {
        /// The job.
        job: JobId,
        /// The attempt number its reports must echo.
        attempt: u32,
    },
    /// Kill this attempt's process group.
    Kill {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: u32,
        /// Why.
        reason: KillReason,
    },
    /// Spawn a child worker, whose registration carries `ticket`.
    Spawn {
        /// Correlates the child's registration.
        ticket: u64,
        /// Why scaling wants it.
        reason: SpawnReason,
    },
    /// Shut down (idle and ephemeral); then close its connection, which makes every shard lose it
    /// ([`Router::worker_lost`]).
    Retire {
        /// How long it had been idle.
        idle_for: Duration,
    },
}

/// A set of shards (bit `i` is shard `i`), iterated in ascending order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shards(u64);

impl Iterator for Shards {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let shard = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(shard)
    }
}

impl Router {
    /// The rules as seen from `shard`.
    pub fn new(shard: ShardInfo) -> Router {
        Router {
            shard,
            #[cfg(feature = "sim")]
            fault: None,
        }
    }

    /// The same router with one rule broken (simulator builds only).
    #[cfg(feature = "sim")]
    pub fn with_fault(self, fault: Option<Fault>) -> Router {
        Router { fault, ..self }
    }

    /// The shard this router sees from.
    pub fn shard(&self) -> ShardInfo {
        self.shard
    }

    /// The shard that owns `dag`: every request and report about its jobs goes there.
    pub fn owner(&self, dag: DagId) -> u32 {
        dag.owner(self.shard.count)
    }

    /// Where an input that reached this shard from outside goes: reports and adoptions about an
    /// attempt, cancels, stops and watches to the shard owning the job's DAG; a submission (which
    /// the accepting shard's core numbers), heartbeats (the connection's shard is the worker's
    /// home), departures, confirmations and ticks stay here.
    pub fn input(&self, input: Input) -> Delivery {
        let shard = match &input {
            Input::JobStarted { job, .. }
            | Input::JobFinished { job, .. }
            | Input::ServiceReady { job, .. } => self.report_owner(job.dag()),
            Input::Adopt { job, .. } | Input::Stop { job, .. } | Input::Watch { job, .. } => {
                self.owner(job.dag())
            }
            Input::Cancel { target, .. } => self.owner(target.dag()),
            Input::Submit { .. }
            | Input::WorkerUp(_)
            | Input::Heartbeat { .. }
            | Input::WorkerLost { .. }
            | Input::Persisted { .. }
            | Input::Tick => self.shard.index,
        };
        Delivery { shard, input }
    }

    fn report_owner(&self, dag: DagId) -> u32 {
        #[cfg(feature = "sim")]
        if self.fault == Some(Fault::ReportsToWrongShard) {
            return (self.owner(dag) + 1) % self.shard.count;
        }
        self.owner(dag)
    }

    /// What a worker's registration on this shard (its home) sends, in order: for each shard, an
    /// `Adopt` for every attempt the worker lists whose job that shard owns, then the shard's
    /// `WorkerUp` (with `home` set on this shard only).
    pub fn register(
        &self,
        info: &WorkerInfo,
        attempts: impl IntoIterator<Item = (JobId, u32)>,
    ) -> Vec<Delivery> {
        let attempts: Vec<(JobId, u32)> = attempts.into_iter().collect();
        let count = self.shard.count as usize;
        let mut out = Vec::with_capacity(attempts.len() + count);
        for shard in 0..self.shard.count {
            let adopts = attempts
                .iter()
                .filter(|(job, _)| self.owner(job.dag()) == shard)
                .map(|&(job, attempt)| Delivery {
                    shard,
                    input: Input::Adopt {
                        worker: info.id,
                        job,
                        attempt,
                    },
                });
            let up = Delivery {
                shard,
                input: Input::WorkerUp(WorkerInfo {
                    home: shard == self.shard.index,
                    ..info.clone()
                }),
            };
            #[cfg(feature = "sim")]
            if self.fault == Some(Fault::WorkerUpBeforeAdoptions) {
                out.push(up);
                out.extend(adopts);
                continue;
            }
            out.extend(adopts);
            out.push(up);
        }
        out
    }

    /// A worker is gone (its connection ended, it was declared dead or retired): every shard
    /// loses it, this one included.
    pub fn worker_lost(&self, worker: WorkerId) -> impl Iterator<Item = Delivery> {
        (0..self.shard.count).map(move |shard| Delivery {
            shard,
            input: Input::WorkerLost { worker },
        })
    }

    /// Where one of this shard's core outputs goes.
    pub fn route(&self, output: Output) -> Route {
        match output {
            Output::Journal { lsn, record } => Route::Journal { lsn, record },
            Output::Reply { token, reply } => Route::Reply {
                to: ReplyTo::unpack(token),
                reply,
            },
            Output::Notify { token, job, state } => Route::Notify {
                to: ReplyTo::unpack(token),
                job,
                state,
            },
            Output::Dispatch {
                worker,
                job,
                attempt,
            } => Route::Worker {
                worker,
                command: Command::Run { job, attempt },
            },
            Output::Kill {
                worker,
                job,
                attempt,
                reason,
            } => Route::Worker {
                worker,
                command: Command::Kill {
                    job,
                    attempt,
                    reason,
                },
            },
            Output::SpawnWorker {
                parent,
                ticket,
                reason,
            } => Route::Worker {
                worker: parent,
                command: Command::Spawn { ticket, reason },
            },
            Output::RetireWorker { worker, idle_for } => Route::Worker {
                worker,
                command: Command::Retire { idle_for },
            },
            Output::WorkerDead { worker, silent_for } => Route::Disconnect { worker, silent_for },
            // A core never wakes itself (it runs its own dispatch pass); the mask says who waits.
            Output::Wake { shards } => Route::Tick(Shards(shards & !(1 << self.shard.index))),
        }
    }
}

/// The durability rule without a write-ahead log: a record is durable as soon as it exists. Once
/// a batch of outputs is carried out, the shell feeds this back to the same core (for the batch's
/// last record); it releases the replies held for those records and may journal more, so the
/// shell repeats until a batch journals nothing. `None`: the batch journaled nothing.
pub fn confirm_at_once(outputs: &[Output]) -> Option<Input> {
    outputs.iter().rev().find_map(|o| match o {
        Output::Journal { lsn, .. } => Some(Input::Persisted { lsn: *lsn }),
        _ => None,
    })
}

/// The bits of a reply slot that travel in a [`ReplyToken`].
pub const SLOT_MASK: u64 = 0xFF_FFFF;

/// Bit 63 tells a [`WatchToken`] from a [`ReplyToken`].
const WATCH_TAG: u64 = 1 << 63;

// A reply token keeps shard indexes in bits 56..63, below the watch tag.
const _: () = assert!(MAX_SHARDS <= 128);

/// The reply slot `slot` of connection `conn` on shard `shard`, packed into the `u64` token the
/// core echoes in its `Reply`: whichever shard's core answers, the answer finds the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyToken {
    /// The shard holding the connection.
    pub shard: u32,
    /// The connection's place in that shard's table (index and generation, 32 bits).
    pub conn: u32,
    /// The low 24 bits of the reserved reply slot ([`SLOT_MASK`]); the connection restores the
    /// rest, sound while fewer than 2^24 replies are in flight on it.
    pub slot: u32,
}

impl ReplyToken {
    /// The token as the core carries it.
    pub fn pack(self) -> u64 {
        (u64::from(self.shard & 0x7F) << 56)
            | (u64::from(self.conn) << 24)
            | (u64::from(self.slot) & SLOT_MASK)
    }
}

/// Part `index` of the wait `seq` that shard `origin` opened: the token of a `Watch` the wait
/// asked some shard's core for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchToken {
    /// The shard holding the wait.
    pub origin: u32,
    /// The wait, among that shard's open ones.
    pub seq: u32,
    /// Which of the wait's jobs (24 bits).
    pub index: u32,
}

impl WatchToken {
    /// The token as the core carries it.
    pub fn pack(self) -> u64 {
        WATCH_TAG
            | (u64::from(self.origin & 0x7F) << 56)
            | (u64::from(self.seq) << 24)
            | u64::from(self.index & 0xFF_FFFF)
    }
}

/// What a token the core echoes names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyTo {
    /// A connection's reply slot.
    Connection(ReplyToken),
    /// A part of a wait.
    Wait(WatchToken),
}

impl ReplyTo {
    /// Reads a token.
    pub fn unpack(token: u64) -> ReplyTo {
        let shard = ((token >> 56) & 0x7F) as u32;
        let middle = (token >> 24) as u32;
        let low = (token & SLOT_MASK) as u32;
        if token & WATCH_TAG == 0 {
            ReplyTo::Connection(ReplyToken {
                shard,
                conn: middle,
                slot: low,
            })
        } else {
            ReplyTo::Wait(WatchToken {
                origin: shard,
                seq: middle,
                index: low,
            })
        }
    }

    /// The token again.
    pub fn pack(self) -> u64 {
        match self {
            ReplyTo::Connection(t) => t.pack(),
            ReplyTo::Wait(w) => w.pack(),
        }
    }

    /// The shard that must carry the answer out (the connection's, or the wait's).
    pub fn shard(self) -> u32 {
        match self {
            ReplyTo::Connection(t) => t.shard,
            ReplyTo::Wait(w) => w.origin,
        }
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
