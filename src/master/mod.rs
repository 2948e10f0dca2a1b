//! The master process: glommio executors (one per shard), listeners and connections.
