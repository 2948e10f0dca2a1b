//! The worker process: registration, heartbeats, process execution and services.
