//! How the scheduler core works, the long form of the crate's documentation: jobs, DAGs,
//! priorities, delays, retries, the dead-letter queue, services, placement, worker liveness and
//! scaling decisions, as a deterministic state machine with no IO.
//!
//! Nothing here reads a clock, touches a socket or file, spawns a thread or awaits. Time comes in
//! with every input ([`Time`], microseconds since the epoch, made non-decreasing by the shell),
//! randomness (retry jitter) comes from a `SmallRng` seeded by the constructor, and every effect
//! goes out as an owned [`Output`] value. The shape is quinn-proto's and raft-rs's:
//!
//! ```text
//! let mut core = Core::new(config, ShardInfo { index, count }, load_table.clone(), seed);
//! core.handle(now, Input::Submit { token, submission });   // any input, any number of times
//! while let Some(output) = core.poll_output() { ... }       // or core.drain_outputs()
//! if let Some(deadline) = core.poll_timeout() { ... }       // call handle(deadline, Input::Tick)
//! ```
//!
//! # Sharding
//! The master runs one `Core` per shard. A whole submission (a DAG, or a one-off job, which is a
//! DAG of one) lives on one shard: shard `index` of `count` allocates [`DagId`]s `k * count + index`
//! (`k` from `CoreConfig::first_dag_k`), so the owner of any id is `dag % count` and a submit is
//! never forwarded. A [`JobId`] is `dag << 24 | index` ([`limits::MAX_DAG_JOBS`] jobs per DAG), so
//! JobId order is submission order, which is the FIFO tie-break among equal priorities. Workers are
//! shared: every shard learns every worker from `WorkerUp` broadcasts, and their load lives in one
//! lock-free [`LoadTable`] (atomics, reservation by compare-and-swap) shared through an `Arc`.
//! A [`WorkerId`] is `generation << 16 | slot`, assigned by the shell ([`WorkerIdAllocator`]);
//! generations make every load operation on a reused slot safe against stale reports. When a shard
//! frees capacity that another shard is waiting for, it emits [`Output::Wake`]; the shell sends
//! those shards `Input::Tick`.
//!
//! # Durability
//! Every state change a core needs to rebuild itself is an [`Output::Journal`] record ([`Record`],
//! an rkyv archive: [`Record::encode`] / [`Record::decode`]) with a strictly increasing [`Lsn`].
//! Replies and watch notifications are held until `Input::Persisted { lsn }` covers every record
//! emitted before them (raft's `Ready`), so no acknowledgement precedes its fsync and replies leave
//! in request order. Kills go through the same gate, so a kill never overtakes the dispatch it
//! follows. A dispatch waits only for the records that made its job ready (its submission, its
//! parents' completions, its previous attempt's end) and for its worker's `WorkerJoined` record —
//! not for its own `Dispatched` record, so a worker slot turns over without an fsync per job. A
//! crash can therefore lose the record of an attempt that is running; the worker reports it on
//! re-registration and the recovered master adopts it, and a recovered master dispatches nothing
//! until every worker its log knows is back (or `adopt_grace` ends), so the lost attempt's number
//! is never handed out twice. Without a WAL the shell feeds
//! `Persisted` back at once.
//!
//! [`Core::snapshot`] is an image of the live state (jobs with specs, states, attempts and due
//! times, DAG graphs, history, DLQ, names, counters, `next_dag_k`, the last LSN, the known worker
//! instances; not the worker directory) as a
//! [`Snapshot`] ([`Snapshot::encode`] / [`Snapshot::decode`]). Recovery after a restart is:
//!
//! ```text
//! let mut core = Core::restore(config, shard, load, seed, snapshot)?;   // or Core::new(..)
//! for record in records_after_the_snapshot { core.replay(record)?; }     // or replay_bytes(payload)
//! core.finish_recovery(now);
//! ```
//!
//! Records are applied at their own times, each submission's in order; records of different
//! submissions may come in any order, so a master restarted with another `--shards` feeds every old
//! shard's records to their new owners (`record.dag().owner(count)`) interleaved, after giving every
//! new core every old snapshot ([`Core::absorb`] keeps what it owns). A bad record or snapshot is a
//! typed [`ReplayError`] / [`RestoreError`], never a panic. New DagIds pass every id recovered or
//! ever handed out before a snapshot, plus `recovery_dag_skip` for ids a crash may have lost.
//!
//! Attempts that were RUNNING stay RUNNING without a worker for `adopt_grace`: workers keep their
//! processes, re-register (new [`WorkerId`]s) and report each attempt with `Input::Adopt`; a report
//! the core holds makes the attempt live on that worker with its slot reserved, no new dispatch;
//! one it cannot account for gets `Output::Kill` with [`KillReason::Orphaned`]; attempts nobody
//! reported are re-queued as lost when the grace ends. A job runs twice only when its worker (or
//! the master's unpersisted record of it) really lost it. See `adopt.rs`, `replay.rs`,
//! `snapshot.rs`, `restore.rs`.
//!
//! # Layout
//! A `Core` is a small struct of parts, each owning its state behind methods (the persistence
//! gate, the job store, the DAG waiting room, placement, the worker directory, history, adoption,
//! scaling, ...; `machine.rs` lists them with their modules). `handle` passes each input to an
//! `on_*` function that combines the parts: client requests in `requests.rs`, worker reports and
//! attempt endings in `lifecycle.rs`, worker registration and loss in `liveness.rs`, adoption in
//! `adopt.rs`; `dispatch.rs` runs the placement pass that ends every `handle`.
//!
//! # Decisions (see the module docs of each file for more)
//! - States follow DESIGN.md: PENDING (delay), BLOCKED (dependencies), QUEUED, RUNNING, COMPLETED,
//!   FAILED (backoff before a retry), DEAD (dead-letter queue), CANCELLED, UPSTREAM_FAILED.
//! - Ready jobs wait in one queue per skill (highest priority first, then submission order), so a
//!   job whose skill no worker has stays QUEUED and never blocks others. A job's skill is its TYPE
//!   for skill jobs and `GENERAL` for built-ins; a worker takes only the skills it advertises.
//! - Placement is least connections over the load table: fewest reservations relative to
//!   capacity among alive workers with the skill and a free slot, lowest `WorkerId` on ties.
//! - A DAG child's delay counts from the moment its dependencies are met. A service (DEPLOY)
//!   releases its dependants when it reports ready and stays RUNNING while it lives; any exit it was
//!   not asked for is FAILED and it restarts after `service_restart_base * 2^(n-1)` (capped at
//!   `backoff_max`, no jitter; a run that was ready for `service_stable_after` resets `n`), however
//!   many times, unless it started `crash_loop_starts` times within `crash_loop_window` (the
//!   crash-loop guard): then it is DEAD with that reason. `Stop` kills it and it ends CANCELLED.
//! - An attempt the worker refused (`Outcome::Rejected`, e.g. a service's port taken by another
//!   process) makes the job DEAD at once: a retry cannot fix it.
//! - Failed attempts retry after `base * 2^(n-1)` capped at `backoff_max`, minus up to
//!   `backoff_jitter_percent` of seeded jitter; after `retries` retries the job is DEAD and its
//!   unreleased descendants UPSTREAM_FAILED. Descendants of a cancelled job are CANCELLED.
//! - Cancel, stop and timeouts end the attempt at once and emit `Kill`; the attempt's slot stays
//!   reserved until the worker reports that attempt (or is lost), so capacity is never over-committed
//!   and a late report never revives a job. Reports for attempts a shard does not hold are stale and
//!   ignored: a job never completes twice.
//! - A lost worker (disconnect, retirement, or missed heartbeats on its home shard) has its
//!   reservations released and its live attempts re-queued at once, counted against `crash_limit`
//!   separately from retries.
//! - Scaling: each shard asks for a child worker (`SpawnWorker`) when a skill's backlog has had no
//!   free slot for `spawn_after`, bounded globally by `max_workers` through the load table; idle
//!   ephemeral workers are retired by their home shard after `idle_timeout`, never the last one.
//! - Memory is bounded: finished submissions are pruned (oldest first, whole submissions) past
//!   `history_limit` jobs or `history_max_age`; the DLQ keeps `dlq_limit` entries and counts
//!   evictions; live jobs are capped by `max_live_jobs`. A queued NOOP job costs about 160 bytes.
//! - No decision iterates a hash map: hash maps (with an id hasher) serve lookups only;
//!   directories are `BTreeMap`s and listings are sorted.
//!
//! The grammar of the seed's text syntax lives in [`grammar`]; the master shell's routing rules
//! (which shard, worker or client each input and output goes to, and in what order) live in
//! [`router`]; the seeded cluster simulator that checks the core's invariants under faults (worker
//! and master crashes included), carrying out the same router's answers, lives in `sim`.

// The items the text above links to.
#[allow(unused_imports)]
use crate::*;
