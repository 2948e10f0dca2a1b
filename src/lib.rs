//! Titan: a job orchestrator for Linux hosts.
//!
//! The crate is layered; dependencies point down this list only:
//!
//! - [`proto`]: TITAN_PROTO, the wire format (header, incremental decoder, rkyv messages).
//! - [`core`]: the scheduler as a deterministic state machine with no IO.
//! - [`wal`]: the write-ahead log (records, segments, group commit, recovery, snapshots).
//! - [`master`]: the glommio shell around the core: listeners, connections, WAL writes.
//! - [`worker`]: registration, heartbeats, process execution, services.
//! - [`logs`]: live job output over UDP: worker-side drain and shipper, master-side sink and rings.
//! - [`cli`]: the REPL, subcommands and rendering.
//! - [`runtime`]: glommio plumbing shared by master and worker (connections, signals).

pub mod cli;
pub mod core;
pub mod logs;
pub mod master;
pub mod proto;
pub mod runtime;
pub mod wal;
pub mod worker;
