#!/usr/bin/env bash
# The durability crash loop, longer than the test suite's 50 cycles: a master with two shards and
# two workers, submits (one-offs and parent → child chains) acknowledged while the master is
# SIGKILLed at random moments, in some cycles together with one or both workers, and restarted on
# its data directory (snapshots every 40 records), N times; then every acknowledged job must
# complete in the master's view, and run exactly once by the jobs' own marks unless it ran on a
# killed worker (then at most once more). Prints the seed (replay with TITAN_TEST_SEED=S) and the
# acknowledged / started / completed counts.
# Usage: scripts/crash-loop.sh [cycles]
set -euo pipefail
cd "$(dirname "$0")/.."
TITAN_CRASH_CYCLES=${1:-500} nice cargo test --release --test e2e_crash_loop \
  kill_9_cycles_lose_no_acknowledged_job_and_run_each_once -- --exact --nocapture 2>&1 |
  grep -E -A3 "seed|acknowledged jobs|test result|panicked"
