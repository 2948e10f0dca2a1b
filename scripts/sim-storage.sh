#!/usr/bin/env bash
# The storage-fault simulator for N seeds (default 10,000): the real WAL (journal, group commit,
# snapshots, recovery) on a simulated disk that loses unsynced writes at power cuts, tears the
# write in flight, flips bits and fails operations with EIO/ENOSPC. Every acknowledged record
# must survive, or recovery must refuse with a precise error. Prints the totals and the seed of
# any failure (replay one with TITAN_SIM_FIRST=S TITAN_SIM_SEEDS=1).
# Usage: scripts/sim-storage.sh [seeds] [first-seed]
set -euo pipefail
cd "$(dirname "$0")/.."
TITAN_SIM_SEEDS=${1:-10000} TITAN_SIM_FIRST=${2:-0} nice cargo test --release --test wal_sim \
  -- --nocapture 2>&1 | grep -E "storage sim|FAILED|panicked|test result"
