//! Worker ↔ master messages.
//!
//! | opcode | direction | message |
//! |---|---|---|
//! | `Register` | worker → master | [`Register`], answered by `Ack` [`Registered`] |
//! | `Heartbeat` | worker → master | [`Heartbeat`] (about once a second; no reply) |
//! | `Run`, `Deploy` | master → worker | [`RunJob`] (`Deploy` for services) |
//! | `KillJob` | master → worker | [`KillJob`] |
//! | `JobStarted` | worker → master | [`JobStarted`] |
//! | `JobComplete` | worker → master | [`JobFinished`] |
//! | `ServiceState` | worker → master | [`ServiceState`] |
//! | `SpawnWorker` | master → worker | [`SpawnChild`] (scaling: start an ephemeral child worker) |
//! | `KillWorker` | master → worker | [`Retire`] (the worker stops its jobs and exits) |
//!
//! After `Register`, a connection is the worker's for its lifetime: the master pushes jobs and
//! kills on it and the worker pushes reports, with no replies either way.

use rkyv::{Archive, Deserialize, Serialize};

use titan_core::model::{JobSpec, Outcome};
use titan_core::{JobId, KillReason, WorkerId};

use super::KeyBytes;

/// The first frame of a worker connection.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Register {
    /// The port the worker listens on (shown in STATS; also identifies it to people).
    pub port: u16,
    pub capacity: u32,
    pub skills: Vec<String>,
    pub pid: u32,
    /// The worker that spawned this one, if any.
    pub parent: Option<WorkerId>,
    /// Spawned by scaling: may be retired when idle.
    pub ephemeral: bool,
    /// The ticket of the master's spawn request that created this worker.
    pub spawn_ticket: Option<u64>,
    /// Attempts still running from before a reconnect.
    pub running: Vec<AttemptRef>,
    /// This worker process's identity: random, the same on each of its registrations.
    pub instance: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct AttemptRef {
    pub job: JobId,
    pub attempt: u32,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Registered {
    pub worker: WorkerId,
    /// How often the master expects a heartbeat.
    pub heartbeat_ms: u32,
    /// The master's UDP log port (on the master's address); 0 when it takes no logs.
    pub log_port: u16,
    /// Seals the headers of this worker's log datagrams (derived from the master's secret).
    pub log_key: KeyBytes,
    /// Checks the tickets clients bring to this worker's port (see `titan_auth::ticket`).
    pub ticket_key: KeyBytes,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Heartbeat {
    /// Attempts running on the worker now.
    pub running: u32,
}

/// A job attempt to run. `label` names the job to people and its workspace directory.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RunJob {
    pub job: JobId,
    pub attempt: u32,
    pub label: String,
    pub spec: JobSpec,
    /// Seals the attempt's log lines; `None` for jobs that print nothing (NOOP, SLEEP).
    pub log_key: Option<KeyBytes>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct KillJob {
    pub job: JobId,
    pub attempt: u32,
    pub reason: KillReason,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct JobStarted {
    pub job: JobId,
    pub attempt: u32,
    pub pid: u32,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct JobFinished {
    pub job: JobId,
    pub attempt: u32,
    pub outcome: Outcome,
    pub duration_us: u64,
    /// Lines the attempt printed on stdout and stderr, as shipped over UDP: the master learns
    /// how many to expect even when the end-of-stream datagrams are lost.
    pub stdout_lines: u64,
    pub stderr_lines: u64,
}

/// A service's news. Only `Ready` exists so far: the process runs and its port (if any) accepts
/// connections. Crashes are reported as `JobFinished`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum ServiceState {
    Ready { job: JobId, attempt: u32 },
}

/// Master → worker (`SpawnWorker`): start a child worker for scaling. The child registers with
/// `spawn_ticket = ticket`, `ephemeral = true` and this worker as its parent.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SpawnChild {
    pub ticket: u64,
}

/// Master → worker (`KillWorker`): the worker is retired; it stops its jobs and exits.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Retire {
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `AttemptRef` as it was before ids were typed.
    #[derive(Archive, Serialize)]
    struct RawAttemptRef {
        job: u64,
        attempt: u32,
    }

    #[test]
    fn typed_ids_archive_to_the_bytes_of_their_integers() {
        let typed = rkyv::to_bytes::<rkyv::rancor::Error>(&AttemptRef {
            job: JobId(0x0102_0304_0506_0708),
            attempt: 9,
        })
        .unwrap();
        let raw = rkyv::to_bytes::<rkyv::rancor::Error>(&RawAttemptRef {
            job: 0x0102_0304_0506_0708,
            attempt: 9,
        })
        .unwrap();
        assert_eq!(typed.as_slice(), raw.as_slice());
    }
}
