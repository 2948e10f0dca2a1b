//! The [`Core`] itself: the parts it is made of, the `handle` / `poll_output` / `poll_timeout`
//! loop, the recovery phase, the output wrappers that mute replay, and the moves of a job into the
//! ready queues (directly or through a timer).
//!
//! One `handle(now, input)` fires every deadline due at `now`, applies the input through its
//! `on_*` function, fires what the input made due, runs one dispatch pass over the skills whose
//! queues or workers changed (`dispatch.rs`), prunes history and, when it freed capacity other
//! shards wait for, emits a `Wake`. The parts own their state and keep their own invariants; the
//! `on_*` functions in the other modules combine them:
//!
//! | part | type | module |
//! |---|---|---|
//! | outputs and the persistence gate | [`Outbox`] | `outbox.rs` |
//! | jobs, per-state counts, last errors | [`JobStore`] | `job_store.rs` |
//! | DAG graphs, dependency counters, names | [`WaitingRoom`] | `waiting_room.rs` |
//! | delays, backoffs, timeouts | [`Timers`] | `timers.rs` |
//! | ready queues, load table, wake-ups | [`Placement`] | `placement.rs` |
//! | known workers, heartbeats, reservations | [`Directory`] | `directory.rs` |
//! | backoff jitter, crash-loop guard | [`Retries`] | `retries.rs` |
//! | parked watches | [`Watchers`] | `requests.rs` |
//! | finished submissions, DLQ, totals | [`History`] | `history.rs` |
//! | adoption after a restart, known workers | [`Adoption`] | `adopt.rs` |
//! | spawn requests, next scaling check | [`Scaling`] | `scaling.rs` |
//! | DagId allocation | [`DagIds`] | `dag_ids.rs` |

use std::sync::Arc;

use super::adopt::Adoption;
use super::config::CoreConfig;
use super::dag_ids::DagIds;
use super::directory::Directory;
use super::history::History;
use super::ids::{JobId, Lsn, ShardInfo, Time};
use super::input::Input;
use super::job_store::JobStore;
use super::limits::MAX_SHARDS;
use super::load::LoadTable;
use super::model::{JobSpec, JobState};
use super::outbox::Outbox;
use super::output::Output;
use super::placement::Placement;
use super::ready_queues::ReadyEntry;
use super::record::Record;
use super::requests::Watchers;
use super::retries::Retries;
use super::scaling::Scaling;
use super::skills::Skills;
use super::timers::{TimerEntry, TimerKind, Timers};
use super::waiting_room::WaitingRoom;

/// The scheduler state machine of one shard. See the module docs of [`crate`].
pub struct Core {
    pub(super) cfg: CoreConfig,
    pub(super) shard: ShardInfo,
    /// The time of the latest input (during replay: of the record being applied).
    pub(super) now: Time,
    pub(super) phase: Phase,
    pub(super) dag_ids: DagIds,
    pub(super) outbox: Outbox,
    pub(super) jobs: JobStore,
    pub(super) room: WaitingRoom,
    pub(super) timers: Timers,
    pub(super) skills: Skills,
    pub(super) placement: Placement,
    pub(super) workers: Directory,
    pub(super) retries: Retries,
    pub(super) watchers: Watchers,
    pub(super) history: History,
    pub(super) adoption: Adoption,
    pub(super) scaling: Scaling,
}

/// Where a core is in its life: recovery applies journal records with every output muted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Nothing applied yet.
    Fresh,
    /// Applying snapshots and journal records: no outputs, no reservations. `clock` is the latest
    /// record time seen (records of several old shards may interleave).
    Replaying { clock: Time },
    /// Recovery ended (or live input arrived): journal records may no longer be replayed.
    Live,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("shard", &self.shard)
            .field("now", &self.now)
            .field("jobs", &self.jobs.len())
            .field("counts", &self.jobs.counts())
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
        Core {
            dag_ids: DagIds::new(shard, config.first_dag_k),
            outbox: Outbox::new(config.first_lsn),
            placement: Placement::new(load, &config),
            cfg: config,
            shard,
            now: Time::ZERO,
            phase: Phase::Fresh,
            jobs: JobStore::default(),
            room: WaitingRoom::default(),
            timers: Timers::default(),
            skills: Skills::new(),
            workers: Directory::default(),
            retries: Retries::new(seed),
            watchers: Watchers::default(),
            history: History::default(),
            adoption: Adoption::default(),
            scaling: Scaling::default(),
        }
    }

    /// Applies one input at time `now` (earlier times than already seen are treated as the latest).
    pub fn handle(&mut self, now: Time, input: Input) {
        if self.phase != Phase::Live {
            // A fresh core starts here; a shell that replayed the journal and forgot to say so
            // must not run silently either.
            self.end_recovery(now, self.replaying());
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
            Input::Persisted { lsn } => self.outbox.persisted(lsn),
            Input::Tick => self.placement.retry_all(),
        }
        self.advance();
    }

    /// The next output, in emission order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outbox.pop()
    }

    /// Drains every queued output at once (batch-friendly form of `poll_output`).
    pub fn drain_outputs(&mut self) -> std::collections::vec_deque::Drain<'_, Output> {
        self.outbox.drain()
    }

    /// The earliest deadline at which the shell must call `handle(now, Input::Tick)`.
    pub fn poll_timeout(&mut self) -> Option<Time> {
        while let Some(t) = self.timers.peek().copied() {
            if t.is_live(&self.jobs) {
                break;
            }
            self.timers.pop();
        }
        let candidates = [
            self.timers.peek().map(|t| t.due),
            self.workers
                .next_heartbeat_deadline(self.cfg.heartbeat_timeout),
            self.scaling.next_check(),
            self.history.next_expiry(self.cfg.history_max_age),
            self.adoption.deadline(),
        ];
        candidates.into_iter().flatten().min()
    }

    /// The spec of a stored job (read it when carrying out a `Dispatch`).
    pub fn spec(&self, job: JobId) -> Option<&JobSpec> {
        self.jobs.slot_of(job).map(|s| &self.jobs.at(s).spec)
    }

    /// The shared load table this core reserves from.
    pub fn load_table(&self) -> &Arc<LoadTable> {
        self.placement.load()
    }

    /// The time of the latest input.
    pub fn now(&self) -> Time {
        self.now
    }

    /// The last LSN handed out (the next record gets this plus one).
    pub fn last_lsn(&self) -> Lsn {
        self.outbox.last_lsn()
    }

    /// The `k` the next submission on this shard will use (persist it with snapshots).
    pub fn next_dag_k(&self) -> u64 {
        self.dag_ids.next_k()
    }

    /// Everything an input made due, then the dispatch pass, pruning and wake-ups.
    fn advance(&mut self) {
        self.fire_timers();
        if self.adoption.grace_over(self.now) {
            self.end_adoption_grace();
        }
        self.fire_heartbeats();
        if self.scaling.next_check().is_some_and(|t| t <= self.now) {
            self.scaling_check();
        }
        self.dispatch();
        self.prune_history();
        self.wake_others();
    }

    // ---- outputs (muted while replaying) -------------------------------------------------------

    /// Applying journal records: no outputs, no reservations.
    pub(super) fn replaying(&self) -> bool {
        matches!(self.phase, Phase::Replaying { .. })
    }

    /// Queues a journal record with the next LSN.
    pub(super) fn journal(&mut self, record: Record) {
        if !self.replaying() {
            self.outbox.journal(record);
        }
    }

    /// Queues an effect that needs no durability.
    pub(super) fn emit(&mut self, output: Output) {
        if !self.replaying() {
            self.outbox.emit(output);
        }
    }

    /// Queues an acknowledgement, held until every record emitted so far is persisted.
    pub(super) fn ack(&mut self, output: Output) {
        if !self.replaying() {
            self.outbox.ack(output);
        }
    }

    /// Queues an effect that needs the records up to `need` durable (see [`Outbox::after`]).
    pub(super) fn send_after(&mut self, need: Lsn, output: Output) {
        if !self.replaying() {
            self.outbox.after(need, output);
        }
    }

    // ---- into the ready queues -----------------------------------------------------------------

    /// Moves the job in `slot` to `state` now.
    pub(super) fn set_state(&mut self, slot: u32, state: JobState) {
        self.jobs.set_state(slot, state, self.now);
    }

    /// QUEUED now: into its skill's ready queue. Replay only sets the state; `finish_recovery`
    /// builds the queues once from every QUEUED job (cheaper, and no stale duplicates).
    pub(super) fn enqueue(&mut self, slot: u32) {
        self.set_state(slot, JobState::Queued);
        if self.replaying() {
            return;
        }
        let job = self.jobs.at(slot);
        let entry = ReadyEntry {
            priority: job.spec.priority,
            slot,
            id: job.id,
            // Every record that made it runnable was journaled before this call.
            need: self.outbox.last_lsn(),
            attempt: job.attempt,
        };
        self.placement.enqueue(job.skill, entry);
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

    fn fire_timers(&mut self) {
        while let Some(t) = self.timers.pop_due(self.now) {
            if !t.is_live(&self.jobs) {
                continue;
            }
            match t.kind {
                TimerKind::Delay | TimerKind::Backoff => self.enqueue(t.slot),
                TimerKind::Timeout => self.on_timeout(t.slot),
            }
        }
    }
}
