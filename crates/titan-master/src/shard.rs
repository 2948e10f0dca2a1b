//! One shard: its [`Core`], the [`Router`] that says where everything goes, and the parts that
//! carry it out — the connection table ([`Conns`]), the worker directory ([`Directory`]), the mesh
//! to the other shards ([`Mesh`]), the gathers in progress ([`Gathers`]), the scaling ring
//! ([`ScalingLog`]), the clock and timer, the write-ahead log ([`Wal`]) and, on shard 0, the log
//! sink ([`LogSide`]).
//!
//! Every input goes through [`Shard::handle`]: feed the core, append its journal records to the
//! write-ahead log (whose pump confirms them with `Persisted` once durable) — or, kept in memory
//! only, confirm them at once, which releases the replies the core was holding — and carry out
//! every output where the router sends it ([`super::effects`]). All of this is synchronous: no
//! borrow is ever held across an await.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use super::conns::Conns;
use super::directory::{Directory, Reach};
use super::gather::Gathers;
use super::logs::LogSide;
use super::mesh::{Mesh, ShardMsg};
use super::persist::{Degraded, Persistence, Wal};
use super::scaling::ScalingLog;
use super::timer::{Clock, Timer};
use super::Shared;
use titan_core::router::{self, Delivery, ReplyTo, Router, SLOT_MASK};
use titan_core::{Core, Input, Output, ShardInfo, Time, WorkerId};

pub struct Shard {
    /// This shard itself, for tasks spawned from `&self` methods.
    me: Weak<Shard>,
    pub index: u32,
    pub count: u32,
    pub router: Router,
    pub shared: Shared,
    pub core: RefCell<Core>,
    pub clock: Clock,
    /// Wakes the timer task when the core's next deadline moved earlier.
    pub timer: Timer,
    pub conns: Conns,
    /// Every worker any shard registered, with its home shard. Used for lookups only.
    pub directory: Directory,
    pub mesh: Rc<Mesh>,
    pub gathers: Gathers,
    /// This shard's recent scaling decisions (bounded).
    pub scaling: ScalingLog,
    /// The log sink and its index (shard 0 only).
    pub logs: Option<LogSide>,
    /// The shard's write-ahead log, unless state is kept in memory only.
    pub wal: Wal,
}

impl Shard {
    pub fn new(
        index: u32,
        shared: Shared,
        mesh: Rc<Mesh>,
        core: Core,
        logs: Option<LogSide>,
        persistence: Option<Rc<Persistence>>,
    ) -> Rc<Shard> {
        let count = shared.config.shards as u32;
        Rc::new_cyclic(|me| Shard {
            me: me.clone(),
            index,
            count,
            router: Router::new(ShardInfo { index, count }),
            shared,
            core: RefCell::new(core),
            clock: Clock::default(),
            timer: Timer::default(),
            conns: Conns::default(),
            directory: Directory::default(),
            mesh,
            gathers: Gathers::default(),
            scaling: ScalingLog::default(),
            logs,
            wal: Wal::new(persistence),
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
        let outputs = self.feed(now, input);
        // Records go to the log first, in LSN order: carrying out the outputs may feed the core
        // again, and the records that produces must come after these.
        if self.wal.append_all(&outputs) {
            // The log's pump confirms the records once they are durable.
            self.apply(outputs);
        } else {
            self.apply_confirming(now, outputs);
        }
        self.timer.moved(self.core.borrow_mut().poll_timeout());
    }

    /// The core's outputs for one input, collected once so no borrow of the core is held while
    /// they are carried out (which may feed the core again).
    fn feed(&self, now: Time, input: Input) -> Vec<Output> {
        let mut core = self.core.borrow_mut();
        core.handle(now, input);
        core.drain_outputs().collect()
    }

    /// Without a log a record is durable as soon as it exists: confirming each batch releases the
    /// replies that wait for it, which may journal more (never unboundedly).
    fn apply_confirming(&self, now: Time, mut outputs: Vec<Output>) {
        loop {
            let confirm = router::confirm_at_once(&outputs);
            self.apply(outputs);
            let Some(input) = confirm else {
                break;
            };
            outputs = self.feed(now, input);
        }
    }

    /// Why changes are refused right now (the log cannot be written), if they are.
    pub fn degraded(&self) -> Option<Degraded> {
        self.wal.degraded()
    }

    /// Hands an input to the core the router chose: this one, or another over the mesh.
    pub fn send_input(&self, Delivery { shard, input }: Delivery) {
        if shard == self.index {
            self.handle(input);
        } else {
            self.mesh.send(shard, ShardMsg::Input(input));
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

    /// Fills the reply slot named by `token` (a connection's), here or on the shard that holds
    /// the connection.
    pub fn deliver(&self, token: u64, frame: Vec<u8>) {
        // Waits are answered in parts (`Part::Watched`), never with a frame.
        let ReplyTo::Connection(t) = ReplyTo::unpack(token) else {
            return;
        };
        if t.shard != self.index {
            self.mesh.send(t.shard, ShardMsg::Reply { token, frame });
            return;
        }
        let conn = super::conns::ConnKey::from_bits(t.conn);
        if let Some(outbox) = self.conns.outbox(conn) {
            outbox.complete_wrapped(t.slot, SLOT_MASK, |out| out.extend_from_slice(&frame));
        }
    }

    /// Writes a frame to a worker's connection, wherever it lives.
    pub fn to_worker(&self, worker: WorkerId, frame: Vec<u8>) {
        match self.directory.reach(worker, self.index) {
            Reach::Here(conn) => {
                if let Some(outbox) = self.conns.outbox(conn) {
                    outbox.push(|out| out.extend_from_slice(&frame));
                }
            }
            Reach::Shard(shard) => self.mesh.send(shard, ShardMsg::ToWorker { worker, frame }),
            // Already gone: the cores learn of the loss through `WorkerLost`.
            Reach::Gone => {}
        }
    }

    /// Closes the connection of a worker (here, or by asking its home shard); the close makes
    /// every shard lose it (`on_conn_closed`).
    pub(super) fn drop_worker(&self, worker: WorkerId) {
        match self.directory.reach(worker, self.index) {
            Reach::Here(conn) => self.conns.close(conn),
            Reach::Shard(shard) => self.mesh.send(shard, ShardMsg::DropWorker { worker }),
            Reach::Gone => {}
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
