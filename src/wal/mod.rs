//! The write-ahead log: record format, segment files, group commit, recovery and snapshots.
