//! One shard's state and the loop that drives its core.
//!
//! `Shard` owns the shard's [`Core`], its connections and its view of where workers live. Every
//! input goes through [`Shard::handle`]: feed the core, take its outputs, carry them out
//! ([`super::effects`]), and — with no write-ahead log yet — confirm every journal record at
//! once (`Persisted`), which releases the replies the core was holding. All of this is
//! synchronous: no `RefCell` borrow is ever held across an await.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::gather::Gathers;
use super::mesh::{ConnKey, Mesh, ShardMsg, Token, SLOT_MASK};
use super::persist::Persistence;
use super::Shared;
use titan_core::{Core, Input, Lsn, Output, Time, WorkerId};
use titan_proto::message::client::ScalingEvent;
use titan_runtime::outbox::{Notify, Outbox};

/// Wall-clock time for the core, in microseconds since the epoch, never going backwards.
#[derive(Default)]
pub struct Clock {
    last: Cell<u64>,
}

impl Clock {
    pub fn now(&self) -> Time {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let now = wall.max(self.last.get());
        self.last.set(now);
        Time(now)
    }
}

/// A connection known to the shard.
pub struct ConnEntry {
    pub outbox: Rc<Outbox>,
    /// The peer's address.
    pub peer: Option<std::net::SocketAddr>,
    /// Set once the peer registered as a worker.
    pub worker: Option<WorkerId>,
    /// When bytes last arrived from the peer.
    pub last_active: std::time::Instant,
}

/// The shard's connections, addressed by `ConnKey` (index plus generation, so a key of a closed
/// connection never reaches the connection that reused its index).
#[derive(Default)]
pub struct Conns {
    entries: Vec<Option<ConnEntry>>,
    generations: Vec<u16>,
    free: Vec<u16>,
}

impl Conns {
    pub fn insert(&mut self, entry: ConnEntry) -> Option<ConnKey> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u16::try_from(self.entries.len()).ok()?;
                self.entries.push(None);
                self.generations.push(0);
                i
            }
        };
        let generation = self.generations[index as usize].wrapping_add(1);
        self.generations[index as usize] = generation;
        self.entries[index as usize] = Some(entry);
        Some(ConnKey { index, generation })
    }

    pub fn get(&self, key: ConnKey) -> Option<&ConnEntry> {
        let i = key.index as usize;
        (self.generations.get(i) == Some(&key.generation))
            .then(|| self.entries[i].as_ref())
            .flatten()
    }

    pub fn get_mut(&mut self, key: ConnKey) -> Option<&mut ConnEntry> {
        let i = key.index as usize;
        if self.generations.get(i) != Some(&key.generation) {
            return None;
        }
        self.entries[i].as_mut()
    }

    /// The client connection (not a worker's) that has waited longest since it last sent
    /// anything, owes no reply, and has been quiet for at least `min_idle`.
    pub fn oldest_idle_client(&self, min_idle: std::time::Duration) -> Option<ConnKey> {
        let now = std::time::Instant::now();
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, e.as_ref()?)))
            .filter(|(_, e)| {
                e.worker.is_none()
                    && e.outbox.in_flight() == 0
                    && now.duration_since(e.last_active) >= min_idle
            })
            .min_by_key(|(_, e)| e.last_active)
            .map(|(i, _)| ConnKey {
                index: i as u16,
                generation: self.generations[i],
            })
    }

    pub fn remove(&mut self, key: ConnKey) -> Option<ConnEntry> {
        let i = key.index as usize;
        if self.generations.get(i) != Some(&key.generation) {
            return None;
        }
        let entry = self.entries[i].take();
        if entry.is_some() {
            self.free.push(key.index);
        }
        entry
    }
}

/// Where a known worker lives and how to show it.
#[derive(Clone, Copy, Debug)]
pub struct WorkerHome {
    pub shard: u32,
    pub port: u16,
    /// Where the worker listens (its connection's peer address, with its registered port):
    /// clients fetch job output files from there.
    pub addr: std::net::SocketAddr,
    /// Its connection, when it lives on this shard.
    pub conn: Option<ConnKey>,
}

pub struct Shard {
    /// This shard itself, for tasks spawned from `&self` methods.
    me: std::rc::Weak<Shard>,
    pub index: u32,
    pub count: u32,
    pub shared: Shared,
    pub core: RefCell<Core>,
    pub clock: Clock,
    pub conns: RefCell<Conns>,
    /// Every worker any shard registered, with its home shard. Used for lookups only.
    pub workers: RefCell<HashMap<WorkerId, WorkerHome>>,
    pub mesh: Rc<Mesh>,
    pub gathers: RefCell<Gathers>,
    /// The log sink and its index (shard 0 only).
    pub logs: Option<super::logs::LogSide>,
    /// The shard's write-ahead log; `None` when state is kept in memory only.
    persistence: RefCell<Option<Rc<Persistence>>>,
    /// This shard's recent scaling decisions (bounded).
    pub scaling: RefCell<VecDeque<ScalingEvent>>,
    /// Wakes the timer task when the core's next deadline moved earlier.
    pub timer: Notify,
    armed: Cell<Option<Time>>,
}

impl Shard {
    pub fn new(
        index: u32,
        shared: Shared,
        mesh: Rc<Mesh>,
        core: Core,
        logs: Option<super::logs::LogSide>,
        persistence: Option<Rc<Persistence>>,
    ) -> Rc<Shard> {
        let count = shared.config.shards as u32;
        Rc::new_cyclic(|me| Shard {
            me: me.clone(),
            index,
            count,
            shared,
            core: RefCell::new(core),
            clock: Clock::default(),
            conns: RefCell::new(Conns::default()),
            workers: RefCell::new(HashMap::new()),
            mesh,
            gathers: RefCell::new(Gathers::default()),
            logs,
            persistence: RefCell::new(persistence),
            scaling: RefCell::new(VecDeque::new()),
            timer: Notify::default(),
            armed: Cell::new(None),
        })
    }

    /// An owning handle to this shard (for spawning tasks).
    pub fn rc(&self) -> Rc<Shard> {
        // The shard's executor holds the only strong references; none of its tasks outlive it.
        self.me
            .upgrade()
            .expect("a shard outlives the tasks that use it")
    }

    /// Feeds one input to the core and carries out everything it decided.
    pub fn handle(&self, input: Input) {
        let now = self.clock.now();
        let mut outputs = {
            let mut core = self.core.borrow_mut();
            core.handle(now, input);
            core.drain_outputs().collect::<Vec<_>>()
        };
        let persistence = self.persistence.borrow().clone();
        match persistence {
            // Records go to the log; the pump confirms them once they are durable.
            Some(p) => {
                for output in &outputs {
                    if let Output::Journal { lsn, record } = output {
                        p.append(*lsn, record);
                    }
                }
                self.apply(outputs);
            }
            // Without a log a record is "durable" as soon as it exists; confirming it releases
            // the replies that wait for it, which may journal more (never unboundedly).
            None => loop {
                let last_journaled = outputs.iter().rev().find_map(|o| match o {
                    Output::Journal { lsn, .. } => Some(*lsn),
                    _ => None,
                });
                self.apply(std::mem::take(&mut outputs));
                let Some(lsn) = last_journaled else {
                    break;
                };
                outputs = self.persisted(lsn, now);
            },
        }
        self.rearm_timer();
    }

    /// Why changes are refused right now (the log cannot be written), if they are.
    pub fn degraded(&self) -> Option<super::persist::Degraded> {
        self.persistence
            .borrow()
            .as_ref()
            .and_then(|p| p.degraded())
    }

    pub fn has_wal(&self) -> bool {
        self.persistence.borrow().is_some()
    }

    /// Hands the log over for closing at shutdown.
    pub fn take_persistence(&self) -> Option<Rc<Persistence>> {
        self.persistence.borrow_mut().take()
    }

    fn persisted(&self, lsn: Lsn, now: Time) -> Vec<Output> {
        let mut core = self.core.borrow_mut();
        core.handle(now, Input::Persisted { lsn });
        core.drain_outputs().collect()
    }

    /// The core's next deadline, for the timer task.
    pub fn next_deadline(&self) -> Option<Time> {
        let deadline = self.core.borrow_mut().poll_timeout();
        self.armed.set(deadline);
        deadline
    }

    fn rearm_timer(&self) {
        let next = self.core.borrow_mut().poll_timeout();
        let earlier = match (next, self.armed.get()) {
            (Some(n), Some(a)) => n < a,
            (Some(_), None) => true,
            _ => false,
        };
        if earlier {
            self.armed.set(next);
            self.timer.notify();
        }
    }

    /// Runs the core's deadlines: sleeps until the next one (or until it moves), then ticks.
    pub async fn run_timer(self: Rc<Shard>) {
        loop {
            match self.next_deadline() {
                None => self.timer.wait().await,
                Some(deadline) => {
                    let now = self.clock.now();
                    if deadline > now {
                        let wait = Duration::from_micros(deadline.0 - now.0);
                        futures_lite::future::or(glommio::timer::sleep(wait), self.timer.wait())
                            .await;
                        continue;
                    }
                    self.handle(Input::Tick);
                }
            }
        }
    }

    /// Sends a message to another shard, or handles it here when `shard` is this one.
    pub fn send_to(&self, shard: u32, msg: ShardMsg) {
        if shard == self.index {
            self.on_shard_msg(msg);
        } else {
            self.mesh.send(shard, msg);
        }
    }

    /// Sends a message to every other shard.
    pub fn broadcast(&self, make: impl Fn() -> ShardMsg) {
        for shard in (0..self.count).filter(|&s| s != self.index) {
            self.mesh.send(shard, make());
        }
    }

    /// Fills the reply slot named by `token`, here or on the shard that owns the connection.
    pub fn deliver(&self, token: u64, frame: Vec<u8>) {
        let t = Token::unpack(token);
        if t.shard != self.index {
            self.mesh.send(t.shard, ShardMsg::Reply { token, frame });
            return;
        }
        let outbox = self.conns.borrow().get(t.conn).map(|c| c.outbox.clone());
        if let Some(outbox) = outbox {
            outbox.complete_wrapped(t.slot, SLOT_MASK, |out| out.extend_from_slice(&frame));
        }
    }

    /// Writes a frame to a worker's connection, wherever it lives.
    pub fn to_worker(&self, worker: WorkerId, frame: Vec<u8>) {
        let home = self.workers.borrow().get(&worker).copied();
        match home {
            Some(WorkerHome {
                conn: Some(conn), ..
            }) => {
                let outbox = self.conns.borrow().get(conn).map(|c| c.outbox.clone());
                if let Some(outbox) = outbox {
                    outbox.push(|out| out.extend_from_slice(&frame));
                }
            }
            Some(WorkerHome {
                shard, conn: None, ..
            }) if shard != self.index => {
                self.mesh.send(shard, ShardMsg::ToWorker { worker, frame });
            }
            // Unknown or already gone: the core learns of the loss through `WorkerLost`.
            _ => {}
        }
    }

    /// Handles a message from another shard (or from this one, short-circuited).
    pub fn on_shard_msg(&self, msg: ShardMsg) {
        match msg {
            ShardMsg::Input(input) => self.on_remote_input(input),
            ShardMsg::WorkerUp {
                info,
                home_shard,
                addr,
            } => self.on_remote_worker_up(info, home_shard, addr),
            ShardMsg::ToWorker { worker, frame } => self.to_worker(worker, frame),
            ShardMsg::DropWorker { worker } => self.drop_worker(worker),
            ShardMsg::Reply { token, frame } => self.deliver(token, frame),
            ShardMsg::Request {
                token,
                query,
                request,
            } => self.on_remote_request(token, query, request),
            ShardMsg::Part { query, part } => self.on_part(query, part),
            ShardMsg::LogEnd {
                job,
                attempt,
                stdout,
                stderr,
                worker,
            } => self.on_log_end(job, attempt, stdout, stderr, worker),
            ShardMsg::LogsRead {
                token,
                params,
                info,
            } => self.read_logs(token, params, *info),
        }
    }
}
