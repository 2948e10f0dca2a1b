//! The scheduler as a pure, deterministic state machine: jobs, DAGs, priorities, delays, retries,
//! the dead-letter queue, services, placement, worker liveness, scaling and recovery. No IO: time
//! comes in with every input, effects go out as [`Output`] values (quinn-proto's and raft-rs's
//! shape: `handle(now, input)`, `poll_output()`, `poll_timeout()`). Also here: the journal
//! records and snapshots ([`Record`], [`Snapshot`]), the seed's text [`grammar`], the master's
//! shard [`router`], and (feature `sim`) a seeded cluster simulator. The long form is [`design`].

mod adopt;
pub mod base64;
mod config;
pub mod dag;
mod dag_ids;
pub mod design;
mod directory;
mod dispatch;
pub mod grammar;
mod history;
mod id_map;
pub mod ids;
mod input;
mod job_store;
mod lifecycle;
pub mod limits;
mod liveness;
pub mod load;
mod machine;
pub mod model;
mod outbox;
mod output;
mod placement;
mod query;
mod ready_queues;
pub mod record;
mod replay;
mod requests;
mod restore;
mod retries;
pub mod router;
mod scaling;
#[cfg(feature = "sim")]
pub mod sim;
mod skills;
pub mod snapshot;
mod timers;
mod waiting_room;

pub use config::CoreConfig;
pub use history::{DeadLetter, Totals};
pub use ids::*;
pub use input::{Input, Target, WorkerInfo};
pub use load::{Load, LoadTable, WorkerIdAllocator};
pub use machine::Core;
pub use model::*;
pub use output::{Ack, KillReason, Output, RequestError, SpawnReason};
pub use query::{DagView, JobView, NameHit, Resolved, Stats, WorkerView};
pub use record::{DecodeError, EncodeError, EndCause, Next, Record};
pub use replay::ReplayError;
pub use restore::{Absorbed, RestoreError};
pub use snapshot::{Snapshot, SnapshotDecodeError, SubmissionImage, SNAPSHOT_FORMAT};

#[cfg(test)]
mod tests;
