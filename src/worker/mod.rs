//! The worker process: registration, heartbeats, process execution and services.
//!
//! [`exec`] is the process-execution engine (command resolution, spawning off the executor
//! thread, reaping, kill and timeout, port probes); the network shell builds on it.

pub mod exec;
