#!/usr/bin/env bash
# Ping latency and throughput of `titan master` beside the baseline echo server, in one run.
# Usage: scripts/bench-ping.sh [duration] [shards]    (builds release binaries first)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5s}
shards=${2:-2}
cargo build --release -q
bin=target/release
tmp=$(mktemp -d)
cleanup() { kill "${master_pid:-}" "${echo_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

wait_addr() { # file
  local found
  for _ in $(seq 200); do
    found=$(grep -o '127.0.0.1:[0-9]*' "$1" 2>/dev/null | head -1) && [ -n "$found" ] && { echo "$found"; return; }
    sleep 0.05
  done
  echo "no address in $1" >&2; exit 1
}

TITAN_LOG=warn "$bin/titan" master --port 0 --log-port 0 --shards "$shards" >"$tmp/master.out" &
master_pid=$!
"$bin/titan-loadgen" echo >"$tmp/echo.out" &
echo_pid=$!
master=$(wait_addr "$tmp/master.out")
echo=$(wait_addr "$tmp/echo.out")

echo "machine: $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
run() { # label addr args...
  label=$1; addr=$2; shift 2
  printf '%-28s %s\n' "$label" "$("$bin/titan-loadgen" ping --addr "$addr" --duration "$duration" --json "$@")"
}
# Alternate target and baseline so drifting machine load hits both alike.
for round in 1 2 3; do
  run "baseline-echo d1 r$round" "$echo" --connections 1 --depth 1
  run "titan d1 r$round" "$master" --connections 1 --depth 1
done
run "baseline-echo c4 d64" "$echo" --connections 4 --depth 64
run "titan c4 d64" "$master" --connections 4 --depth 64
run "titan c1 d256" "$master" --connections 1 --depth 256
