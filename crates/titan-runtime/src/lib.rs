//! Process plumbing shared by the master and the worker: glommio executors, framed connections
//! whose reader and writer run as separate tasks ([`conn`], [`outbox`]), and the shutdown a role
//! is given and passes on to its tasks ([`shutdown`]).

pub mod conn;
pub mod outbox;
pub mod shutdown;

/// Memory glommio registers for IO per executor. RLIMIT_MEMLOCK is small on shared hosts
/// (8 MiB here) and several Titan processes run side by side, so this stays modest.
pub const EXECUTOR_IO_MEMORY: usize = 512 * 1024;

/// Submission ring depth per executor.
pub const EXECUTOR_RING_DEPTH: usize = 128;
