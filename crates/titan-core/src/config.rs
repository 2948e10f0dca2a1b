//! Tunable settings of one core ([`CoreConfig`]), with defaults taken from the Java original where
//! it had one (3 retries, 45 s idle retirement) and from DESIGN.md otherwise. The shell fills the
//! host-dependent ones (e.g. `max_workers` = number of CPUs); the core reads no environment.

use std::time::Duration;

/// Settings of one [`Core`](super::Core).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreConfig {
    /// The first `k` this shard allocates DagIds from (`k * count + index`); after recovery, one
    /// past the largest `k` seen in the journal.
    pub first_dag_k: u64,
    /// The LSN of the first journal record this core emits (after recovery: last LSN + 1).
    pub first_lsn: u64,
    /// First retry delay; doubles per failed attempt.
    pub backoff_base: Duration,
    /// Largest retry delay before jitter.
    pub backoff_max: Duration,
    /// Jitter as a fraction in percent: the delay is drawn from `[d * (100 - j) / 100, d]`.
    pub backoff_jitter_percent: u8,
    /// Times a job may lose its worker (crash, disconnect) and be re-queued before it is DEAD.
    pub crash_limit: u8,
    /// A service that ran (ready) at least this long before exiting starts a fresh retry budget.
    pub service_stable_after: Duration,
    /// First restart delay of a service that exited; doubles per consecutive exit up to
    /// `backoff_max`, without jitter (a service restarts until stopped or crash-looping).
    pub service_restart_base: Duration,
    /// Crash-loop guard (systemd's default): a service that exits after this many starts within
    /// `crash_loop_window` is not restarted again; it is DEAD with the reason. 0 disables the guard.
    pub crash_loop_starts: u32,
    /// The window of the crash-loop guard.
    pub crash_loop_window: Duration,
    /// A home worker silent for this long is declared dead.
    pub heartbeat_timeout: Duration,
    /// How often scaling (spawn and retire) is considered while there is something to decide.
    pub scaling_interval: Duration,
    /// A skill's backlog must have been waiting this long with no free slot before a spawn.
    pub spawn_after: Duration,
    /// A spawn request that has not registered by then no longer counts against `max_workers`.
    pub spawn_timeout: Duration,
    /// An ephemeral (spawned) worker idle this long is retired by its home shard.
    pub idle_timeout: Duration,
    /// Most workers (alive plus spawning) the cluster grows to; 0 disables spawning.
    pub max_workers: u32,
    /// Terminal jobs kept for queries before whole finished submissions are pruned, oldest first.
    pub history_limit: usize,
    /// Finished submissions older than this are pruned.
    pub history_max_age: Duration,
    /// Dead-letter entries kept; older ones are evicted (and counted).
    pub dlq_limit: usize,
    /// Most non-terminal jobs on this shard; a submission beyond it is refused (retryable).
    pub max_live_jobs: usize,
    /// Most parked `Watch` requests on this shard.
    pub max_watchers: usize,
    /// After recovery, how long attempts that were RUNNING wait for their worker to re-register and
    /// report them (`Input::Adopt`) before they are re-queued as lost, and at most how long
    /// dispatch is held until the known workers are back. Zero re-queues them at once and holds
    /// nothing, so an attempt whose `Dispatched` record the crash lost may then run twice (tests
    /// only; the master uses the default).
    pub adopt_grace: Duration,
    /// DagIds (per shard, in units of `k`) skipped when recovery ends. A submission whose record
    /// was lost in the crash was never acknowledged, but it may have been dispatched, and workers
    /// may still run it under its id: the id must not name another submission. Must exceed the
    /// submissions one shard accepts before their records are durable (the WAL's pending bound).
    pub recovery_dag_skip: u64,
    /// Plain jobs placed on a worker beyond its capacity, waiting in the worker's own queue so
    /// that a slot that frees starts the next one without a round trip to the master: NOOPs at
    /// any time (they hold no slot there), process jobs while the worker's processes turn over
    /// fast (see `prefetch_below`). Never a service, `SLEEP` or a job with a timeout, and never
    /// onto a worker a service holds (see `directory.rs`). 0 turns prefetching off.
    pub prefetch: u32,
    /// A worker's processes turn over fast while the moving average of their run times (as the
    /// worker reports them) is below this and one of them ended less than this long ago.
    pub prefetch_below: Duration,
}

impl Default for CoreConfig {
    fn default() -> CoreConfig {
        CoreConfig {
            first_dag_k: 0,
            first_lsn: 1,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_jitter_percent: 50,
            crash_limit: 3,
            service_stable_after: Duration::from_secs(10),
            service_restart_base: Duration::from_millis(100),
            crash_loop_starts: 5,
            crash_loop_window: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(30),
            scaling_interval: Duration::from_secs(1),
            spawn_after: Duration::from_secs(5),
            spawn_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(45),
            max_workers: 4,
            history_limit: 100_000,
            history_max_age: Duration::from_secs(3600),
            dlq_limit: 10_000,
            max_live_jobs: 4_000_000,
            max_watchers: 100_000,
            adopt_grace: Duration::from_secs(10),
            recovery_dag_skip: 1 << 18,
            prefetch: 16,
            prefetch_below: Duration::from_millis(10),
        }
    }
}
