//! The scheduler core: a deterministic state machine with no IO (see docs/ARCHITECTURE.md).
