//! Titan: a job orchestrator for Linux hosts. This crate is the `titan` binary's command line
//! ([`cli`]: the REPL, subcommands, `titan up` and `titan demo`); each role and layer is a crate
//! of its own in `crates/`, re-exported here under its short name for the binary, tests and
//! benches. The crate graph is the layer map (docs/ARCHITECTURE.md).

pub use titan_auth as auth;
pub use titan_client as client;
pub use titan_core as core;
pub use titan_logs as logs;
pub use titan_master as master;
pub use titan_proto as proto;
pub use titan_runtime as runtime;
pub use titan_wal as wal;
pub use titan_worker as worker;

pub mod cli;
