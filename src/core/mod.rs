//! The scheduler core: a deterministic state machine with no IO (see docs/ARCHITECTURE.md).

pub mod base64;
mod config;
pub mod dag;
pub mod grammar;
mod history;
pub mod ids;
mod io;
mod lifecycle;
pub mod limits;
mod liveness;
pub mod load;
mod machine;
pub mod model;
mod query;
mod queues;
pub mod record;
mod replay;
mod requests;
mod scaling;
pub mod sim;
mod store;
mod workers;

pub use config::CoreConfig;
pub use history::{DeadLetter, Totals};
pub use ids::*;
pub use io::*;
pub use load::{Load, LoadTable, WorkerIdAllocator};
pub use machine::Core;
pub use model::*;
pub use query::{DagView, JobView, NameHit, Resolved, Stats, WorkerView};
pub use record::{EndCause, Next, Record};
pub use replay::ReplayError;

#[cfg(test)]
mod tests;
