//! The [`Core`] itself: its state, the `handle` / `poll_output` / `poll_timeout` loop, output
//! gating on persistence, timers and the dispatch pass. The transitions live in `lifecycle.rs`,
//! worker liveness in `liveness.rs`, scaling in `scaling.rs`, history in `history.rs`, queries in
//! `query.rs`.
//!
//! One `handle(now, input)` applies the input, fires every deadline due at `now`, runs one dispatch
//! pass over the skills whose queues or workers changed, prunes history and, when it freed capacity
//! other shards wait for, emits a `Wake`. Outputs that acknowledge something to a client are held in
//! `gated` until `Persisted` covers every journal record emitted before them (raft's `Ready`), and
//! so are kills. A dispatch waits only for the records that made its job ready and for its
//! worker's registration, not for its own `Dispatched` record (see `adopt.rs` for why that is safe).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::adopt::Adoption;
use super::config::CoreConfig;
use super::history::{DeadLetter, Finished, Totals};
use super::ids::{DagId, JobId, Lsn, ShardInfo, Time, WorkerId};
use super::io::{Input, Output};
use super::limits::MAX_SHARDS;
use super::load::LoadTable;
use super::model::{JobSpec, JobState};
use super::queues::{ReadyEntry, ReadyQueues, Skills, TimerEntry, TimerKind, Timers};
use super::record::Record;
use super::scaling::Scaling;
use super::store::{flags, DagState, IdMap, JobStore};
use super::workers::{Directory, Placement, Prefetch};

/// The scheduler state machine of one shard. See the module docs of [`crate`].
pub struct Core {
    pub(super) cfg: CoreConfig,
    pub(super) shard: ShardInfo,
    pub(super) load: Arc<LoadTable>,
    pub(super) rng: SmallRng,
    pub(super) now: Time,
    pub(super) next_k: u64,
    pub(super) next_lsn: u64,
    pub(super) persisted: Lsn,
    pub(super) out: VecDeque<Output>,
    pub(super) gated: VecDeque<(Lsn, Output)>,
    pub(super) jobs: JobStore,
    pub(super) dags: BTreeMap<DagId, DagState>,
    pub(super) names: HashMap<Box<str>, JobId>,
    pub(super) errors: IdMap<JobId, Box<str>>,
    /// Recent start times of each live service, for the crash-loop guard (not in snapshots: after
    /// a recovery the window starts empty).
    pub(super) service_starts: IdMap<JobId, VecDeque<Time>>,
    pub(super) skills: Skills,
    pub(super) ready: ReadyQueues,
    pub(super) timers: Timers,
    pub(super) dir: Directory,
    pub(super) watchers: BTreeMap<JobId, Vec<u64>>,
    pub(super) watcher_count: usize,
    pub(super) history: VecDeque<Finished>,
    pub(super) history_jobs: usize,
    pub(super) dlq: VecDeque<DeadLetter>,
    pub(super) counts: [usize; 9],
    pub(super) totals: Totals,
    pub(super) scaling: Scaling,
    /// This handle released reservations (other shards may be waiting for them).
    pub(super) freed: bool,
    /// This shard's hungry bit is set in the load table.
    pub(super) hungry: bool,
    /// Applying journal records: no outputs, no reservations.
    pub(super) replaying: bool,
    /// Recovery ended (or live input arrived): journal records may no longer be replayed.
    pub(super) live: bool,
    /// The latest record time seen by replay (records of several old shards may interleave).
    pub(super) replay_clock: Time,
    /// Recovered attempts waiting for their workers, and reports from unregistered workers.
    pub(super) adoption: Adoption,
    /// Worker instances this shard's log says are registered (journaled joins minus leaves).
    pub(super) known_workers: BTreeSet<u64>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("shard", &self.shard)
            .field("now", &self.now)
            .field("jobs", &self.jobs.len())
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A core for `shard`, sharing `load` with the other shards, with randomness seeded by `seed`.
    ///
    /// # Panics
    /// When `shard` is malformed (`index >= count`, or `count` above `MAX_SHARDS`): a shell bug.
    pub fn new(config: CoreConfig, shard: ShardInfo, load: Arc<LoadTable>, seed: u64) -> Core {
        assert!(
            shard.count >= 1 && shard.count <= MAX_SHARDS && shard.index < shard.count,
            "bad {shard:?}"
        );
        let first_lsn = config.first_lsn.max(1);
        Core {
            next_k: config.first_dag_k,
            next_lsn: first_lsn,
            persisted: Lsn(first_lsn - 1),
            cfg: config,
            shard,
            load,
            rng: SmallRng::seed_from_u64(seed),
            now: Time::ZERO,
            out: VecDeque::new(),
            gated: VecDeque::new(),
            jobs: JobStore::default(),
            dags: BTreeMap::new(),
            names: HashMap::new(),
            errors: IdMap::default(),
            service_starts: IdMap::default(),
            skills: Skills::new(),
            ready: ReadyQueues::default(),
            timers: Timers::default(),
            dir: Directory::default(),
            watchers: BTreeMap::new(),
            watcher_count: 0,
            history: VecDeque::new(),
            history_jobs: 0,
            dlq: VecDeque::new(),
            counts: [0; 9],
            totals: Totals::default(),
            scaling: Scaling::default(),
            freed: false,
            hungry: false,
            replaying: false,
            live: false,
            replay_clock: Time::ZERO,
            adoption: Adoption::default(),
            known_workers: BTreeSet::new(),
        }
    }

    /// Applies one input at time `now` (earlier times than already seen are treated as the latest).
    pub fn handle(&mut self, now: Time, input: Input) {
        if !self.live {
            // A fresh core starts here; a shell that replayed the journal and forgot to say so
            // must not run silently either.
            self.end_recovery(now, self.replaying);
        }
        self.now = self.now.max(now);
        // Deadlines that passed come first, so an input sees the state the clock says (and replay,
        // which fires them before each record, sees the same).
        self.fire_timers();
        match input {
            Input::Submit { token, submission } => self.on_submit(token, submission),
            Input::Cancel { token, target } => self.on_cancel(token, target),
            Input::Stop { token, job } => self.on_stop(token, job),
            Input::Watch { token, job } => self.on_watch(token, job),
            Input::WorkerUp(info) => self.on_worker_up(info),
            Input::Heartbeat { worker } => self.on_heartbeat(worker),
            Input::WorkerLost { worker } => self.on_worker_lost(worker),
            Input::JobStarted {
                job,
                attempt,
                worker,
            } => self.on_job_started(job, attempt, worker),
            Input::JobFinished {
                job,
                attempt,
                worker,
                outcome,
                duration,
            } => self.on_job_finished(job, attempt, worker, outcome, duration),
            Input::ServiceReady {
                job,
                attempt,
                worker,
            } => self.on_service_ready(job, attempt, worker),
            Input::Adopt {
                worker,
                job,
                attempt,
            } => self.on_adopt(worker, job, attempt),
            Input::Persisted { lsn } => self.on_persisted(lsn),
            Input::Tick => self.ready.mark_all_waiting(),
        }
        self.advance();
    }

    /// The next output, in emission order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Drains every queued output at once (batch-friendly form of `poll_output`).
    pub fn drain_outputs(&mut self) -> std::collections::vec_deque::Drain<'_, Output> {
        self.out.drain(..)
    }

    /// The earliest deadline at which the shell must call `handle(now, Input::Tick)`.
    pub fn poll_timeout(&mut self) -> Option<Time> {
        while let Some(t) = self.timers.peek().copied() {
            if self.timer_is_live(&t) {
                break;
            }
            self.timers.pop();
        }
        let candidates = [
            self.timers.peek().map(|t| t.due),
            self.dir.next_heartbeat_deadline(self.cfg.heartbeat_timeout),
            self.scaling.next_check,
            self.history
                .front()
                .map(|f| f.at + self.cfg.history_max_age),
            self.adoption.deadline,
        ];
        candidates.into_iter().flatten().min()
    }

    /// The spec of a stored job (read it when carrying out a `Dispatch`).
    pub fn spec(&self, job: JobId) -> Option<&JobSpec> {
        self.jobs.slot_of(job).map(|s| &self.jobs.at(s).spec)
    }

    /// The shared load table this core reserves from.
    pub fn load_table(&self) -> &Arc<LoadTable> {
        &self.load
    }

    /// The time of the latest input.
    pub fn now(&self) -> Time {
        self.now
    }

    /// The last LSN handed out (the next record gets this plus one).
    pub fn last_lsn(&self) -> Lsn {
        Lsn(self.next_lsn - 1)
    }

    /// The `k` the next submission on this shard will use (persist it with snapshots).
    pub fn next_dag_k(&self) -> u64 {
        self.next_k
    }

    fn advance(&mut self) {
        self.fire_timers();
        if self.adoption.deadline.is_some_and(|t| t <= self.now) {
            self.end_adoption_grace();
        }
        self.fire_heartbeats();
        if self.scaling.next_check.is_some_and(|t| t <= self.now) {
            self.scaling_check();
        }
        self.dispatch();
        self.prune_history();
        self.wake_others();
    }

    // ---- outputs -------------------------------------------------------------------------------

    /// Queues a journal record with the next LSN.
    pub(super) fn journal(&mut self, record: Record) {
        if self.replaying {
            return;
        }
        let lsn = Lsn(self.next_lsn);
        self.next_lsn += 1;
        self.out.push_back(Output::Journal { lsn, record });
    }

    /// Queues an effect that needs no durability.
    pub(super) fn emit(&mut self, output: Output) {
        if !self.replaying {
            self.out.push_back(output);
        }
    }

    /// Queues an acknowledgement, held until every record emitted so far is persisted.
    pub(super) fn ack(&mut self, output: Output) {
        if self.replaying {
            return;
        }
        let need = self.last_lsn();
        if need <= self.persisted && self.gated.is_empty() {
            self.out.push_back(output);
        } else {
            self.gated.push_back((need, output));
        }
    }

    /// Queues an effect that needs the records up to `need` durable, but not the ones emitted
    /// after them (it may overtake held acknowledgements).
    pub(super) fn gate(&mut self, need: Lsn, output: Output) {
        if self.replaying {
            return;
        }
        if need <= self.persisted {
            self.out.push_back(output);
        } else {
            self.gated.push_back((need, output));
        }
    }

    fn on_persisted(&mut self, lsn: Lsn) {
        self.persisted = self.persisted.max(lsn.min(self.last_lsn()));
        while self
            .gated
            .front()
            .is_some_and(|(need, _)| *need <= self.persisted)
        {
            if let Some((_, o)) = self.gated.pop_front() {
                self.out.push_back(o);
            }
        }
    }

    // ---- state bookkeeping ---------------------------------------------------------------------

    /// Moves the job in `slot` to `state`, keeping the per-state counts exact.
    pub(super) fn set_state(&mut self, slot: u32, state: JobState) {
        let job = self.jobs.at_mut(slot);
        self.counts[job.state as usize] -= 1;
        self.counts[state as usize] += 1;
        job.state = state;
        job.since = self.now;
    }

    /// QUEUED now: into its skill's ready queue. Replay only sets the state; `finish_recovery`
    /// builds the queues once from every QUEUED job (cheaper, and no stale duplicates).
    pub(super) fn enqueue(&mut self, slot: u32) {
        self.set_state(slot, JobState::Queued);
        if self.replaying {
            return;
        }
        let job = self.jobs.at(slot);
        let (skill, entry) = (
            job.skill,
            ReadyEntry {
                priority: job.spec.priority,
                slot,
                id: job.id,
                // Every record that made it runnable was journaled before this call.
                need: self.last_lsn(),
                attempt: job.attempt,
            },
        );
        self.ready.push(skill, entry);
    }

    /// Runnable now: PENDING for its delay, else QUEUED.
    pub(super) fn enter_runnable(&mut self, slot: u32) {
        let job = self.jobs.at(slot);
        if job.spec.delay_ms == 0 {
            return self.enqueue(slot);
        }
        let due = self.now.add_millis(u64::from(job.spec.delay_ms));
        let id = job.id;
        self.set_state(slot, JobState::Pending);
        self.timers.push(TimerEntry {
            due,
            id,
            kind: TimerKind::Delay,
            attempt: 0,
            slot,
        });
    }

    // ---- timers --------------------------------------------------------------------------------

    fn timer_is_live(&self, t: &TimerEntry) -> bool {
        let Some(job) = self.jobs.check(t.slot, t.id) else {
            return false;
        };
        match t.kind {
            TimerKind::Delay => job.state == JobState::Pending,
            TimerKind::Backoff => job.state == JobState::Failed && job.attempt == t.attempt,
            TimerKind::Timeout => job.state == JobState::Running && job.attempt == t.attempt,
        }
    }

    fn fire_timers(&mut self) {
        while let Some(t) = self.timers.pop_due(self.now) {
            if !self.timer_is_live(&t) {
                continue;
            }
            match t.kind {
                TimerKind::Delay | TimerKind::Backoff => self.enqueue(t.slot),
                TimerKind::Timeout => self.on_timeout(t.slot),
            }
        }
    }

    // ---- dispatch ------------------------------------------------------------------------------

    /// One placement pass over the skills whose queue or workers changed.
    fn dispatch(&mut self) {
        if self.replaying || self.adoption.holding() {
            return;
        }
        for skill in self.ready.take_dirty() {
            self.dispatch_skill(skill);
        }
        if self.hungry && !self.any_starving() {
            self.load.clear_hungry(self.shard.index);
            self.hungry = false;
        }
    }

    fn dispatch_skill(&mut self, skill: super::store::SkillId) {
        let mut retried = false;
        loop {
            let Some(entry) = self.ready_head(skill) else {
                self.ready.queue(skill).starved_since = None;
                return;
            };
            let prefetch = self.prefetch_for(entry.slot);
            let service = self.jobs.at(entry.slot).spec.is_service();
            match self
                .dir
                .place(skill, &self.load, prefetch, service, self.now)
            {
                Placement::Placed(w) => {
                    self.ready.pop_live(skill);
                    self.start_attempt(entry.slot, w, entry.need);
                }
                Placement::NoWorker => {
                    self.ready.queue(skill).starved_since = None;
                    return;
                }
                Placement::Full if self.shard.count > 1 && !retried => {
                    // Set the hungry bit before the last look, so a release on another shard either
                    // sees the bit (and wakes us) or happened before this retry (which sees the slot).
                    self.load.mark_hungry(self.shard.index);
                    self.hungry = true;
                    retried = true;
                }
                Placement::Full => {
                    let now = self.now;
                    self.ready.queue(skill).starved_since.get_or_insert(now);
                    self.scaling_wanted();
                    return;
                }
            }
        }
    }

    /// How far the job in `slot` may be placed beyond a worker's capacity: only a plain job, whose
    /// wait in a worker's queue changes nothing but when it starts. A service holds its slot for
    /// ever, `SLEEP` runs on the worker's timer whatever its slots, and a timeout's clock starts
    /// at the dispatch. A NOOP holds no slot on the worker at all.
    fn prefetch_for(&self, slot: u32) -> Prefetch {
        let spec = &self.jobs.at(slot).spec;
        let depth = self.cfg.prefetch.min(super::limits::MAX_PREFETCH);
        if depth == 0 || spec.timeout_ms.is_some() {
            return Prefetch::Never;
        }
        match &spec.kind {
            super::model::JobKind::Noop => Prefetch::Always { depth },
            kind if kind.runs_a_process() => Prefetch::WhileShort {
                depth,
                below: self.cfg.prefetch_below,
            },
            _ => Prefetch::Never,
        }
    }

    fn any_starving(&self) -> bool {
        self.ready
            .queues
            .iter()
            .any(|q| q.live > 0 && q.starved_since.is_some())
    }

    /// The best QUEUED entry of `skill`, dropping stale entries on the way.
    fn ready_head(&mut self, skill: super::store::SkillId) -> Option<ReadyEntry> {
        let jobs = &self.jobs;
        let is_live = |e: &ReadyEntry| e.is_live(jobs);
        let q = &mut self.ready.queues[usize::from(skill.0)];
        q.compact_if_needed(is_live);
        while let Some(top) = q.heap.peek().copied() {
            if is_live(&top) {
                return Some(top);
            }
            q.heap.pop();
        }
        None
    }

    /// Sends the job in `slot` to `worker`, whose slot is already reserved, once the records in
    /// `need` (those that made the job ready) and the worker's registration are durable.
    pub(super) fn start_attempt(&mut self, slot: u32, worker: WorkerId, need: Lsn) {
        let floor = self.adoption.take_floor(self.jobs.at(slot).id);
        // Saturating: a corrupt journal may carry any number, and must not make this panic.
        let attempt = self.jobs.at(slot).attempt.max(floor).saturating_add(1);
        let id = self.begin_attempt(slot, worker, attempt);
        // Not held for its own `Dispatched` record: after a crash that lost it, the worker
        // reports the attempt and the recovered master adopts it (`adopt.rs`), and until the
        // workers this log knows are back, the recovered master dispatches nothing.
        let joined = self.dir.get(worker).map_or(Lsn(0), |e| e.joined);
        self.gate(
            need.max(joined),
            Output::Dispatch {
                worker,
                job: id,
                attempt,
            },
        );
    }

    /// Makes `attempt` of the job in `slot` live on `worker` (the reservation is the caller's)
    /// and journals it; returns the job's id.
    pub(super) fn begin_attempt(&mut self, slot: u32, worker: WorkerId, attempt: u32) -> JobId {
        self.set_state(slot, JobState::Running);
        let job = self.jobs.at_mut(slot);
        job.attempt = attempt;
        job.worker = Some(worker);
        job.started_at = self.now;
        job.flags &= !(flags::READY | flags::STARTED);
        let (id, timeout, service) = (job.id, job.spec.timeout_ms, job.spec.is_service());
        if service {
            self.note_service_start(id);
        }
        self.dir.add_attempt(worker, id, attempt, service);
        if let Some(ms) = timeout {
            let due = self.now.add_millis(u64::from(ms.get()));
            self.timers.push(TimerEntry {
                due,
                id,
                kind: TimerKind::Timeout,
                attempt,
                slot,
            });
        }
        self.journal(Record::Dispatched {
            job: id,
            attempt,
            worker,
            at: self.now,
        });
        id
    }

    /// Releases one reservation this shard held on `worker`, and lets its skills try again.
    pub(super) fn release_slot(&mut self, worker: WorkerId, service: bool) {
        if self.replaying {
            return;
        }
        self.load.release(worker, service, self.now);
        self.freed = true;
        if let Some(e) = self.dir.get(worker) {
            for i in 0..e.skills.len() {
                let s = e.skills[i];
                self.ready.mark_dirty(s);
            }
        }
    }

    fn wake_others(&mut self) {
        if !std::mem::take(&mut self.freed) || self.shard.count == 1 {
            return;
        }
        let shards = self.load.take_hungry_except(self.shard.index);
        if shards != 0 {
            self.emit(Output::Wake { shards });
        }
    }
}
