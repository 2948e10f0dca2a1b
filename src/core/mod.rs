//! The scheduler core: a deterministic state machine with no IO (see docs/ARCHITECTURE.md).

pub mod base64;
pub mod dag;
pub mod grammar;
pub mod ids;
pub mod limits;
pub mod model;

pub use ids::*;
pub use model::*;
