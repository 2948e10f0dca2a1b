#!/usr/bin/env bash
# Does a job printing 100 MB slow scheduling? NOOP submit → completed throughput with no other
# load, then again while a job prints ~100 MB (9,000,000 lines) that the worker drains to its
# files and streams to the master over UDP; with jobs at the worker's priority and at nice 10
# (`titan worker --job-nice 10`). Usage: scripts/bench-logs.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release -q
bin=$PWD/target/release
tmp=$(mktemp -d -p "$PWD/target")
cleanup() { pkill -f "$bin/titan (master|worker)" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
wait_addr() {
  local found
  for _ in $(seq 200); do
    found=$(grep -o '127.0.0.1:[0-9]*' "$1" 2>/dev/null | head -1) && [ -n "$found" ] && { echo "$found"; return; }
    sleep 0.05
  done
  echo "no address in $1" >&2; exit 1
}
TITAN_LOG=warn "$bin/titan" master --port 0 --log-port 0 --shards 1 --data-dir "$tmp/data" >"$tmp/master.out" 2>/dev/null &
addr=$(wait_addr "$tmp/master.out")
echo "machine: $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
for nice in 0 10; do
  pkill -f "$bin/titan worker" 2>/dev/null || true
  rm -f "$tmp/worker.out"
  PATH=/usr/bin:/bin TITAN_LOG=warn "$bin/titan" worker --port 0 --master "$addr" --capacity 16 --job-nice "$nice" \
    --workspace "$tmp/ws" --perm-files "$PWD/perm_files" >"$tmp/worker.out" 2>/dev/null &
  wait_addr "$tmp/worker.out" >/dev/null
  for round in $(seq "$rounds"); do
    echo "nice$nice quiet r$round $("$bin/titan-loadgen" e2e --addr "$addr" --jobs 100000 --depth 512 --json)"
    job=$("$bin/titan" submit 'RUN|lines.py 9000000' --master "$addr")
    until "$bin/titan" status "$job" --master "$addr" --json | grep -q '"RUNNING"'; do sleep 0.01; done
    echo "nice$nice printing r$round $("$bin/titan-loadgen" e2e --addr "$addr" --jobs 100000 --depth 512 --json)"
    echo "nice$nice job-state-after r$round $("$bin/titan" status "$job" --master "$addr" --json | grep -o '"state":"[A-Z_]*"')"
    "$bin/titan" wait "$job" --master "$addr" >/dev/null
    echo "nice$nice output r$round $(wc -c <"$tmp/ws/$job/stdout.log") bytes"
  done
done
echo "log totals $("$bin/titan" stats --json --master "$addr" | grep -o '"logs":{[^}]*}')"
