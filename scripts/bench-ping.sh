#!/usr/bin/env bash
# Ping latency and throughput of `titan master` beside the baseline echo server, in one run.
# Usage: scripts/bench-ping.sh [duration] [shards]    (builds release binaries first)
source "$(dirname "$0")/lib.sh"
duration=${1:-5s}
shards=${2:-2}
TITAN_LOG=warn "$bin/titan" master --port 0 --log-port 0 --shards "$shards" --memory-only >"$tmp/master.out" &
master_pid=$!
"$bin/titan-loadgen" echo >"$tmp/echo.out" &
echo_pid=$!
on_exit='kill "$echo_pid" 2>/dev/null || true'
master=$(wait_addr "$tmp/master.out")
echo=$(wait_addr "$tmp/echo.out")

machine_line
run() { # label addr args...
  label=$1; addr=$2; shift 2
  printf '%-28s %s\n' "$label" "$("$bin/titan-loadgen" ping --addr "$addr" --duration "$duration" --json "$@")"
}
# Alternate target and baseline so drifting machine load hits both alike.
for round in 1 2 3; do
  run "baseline-echo d1 r$round" "$echo" --connections 1 --depth 1 --no-auth
  run "titan d1 r$round" "$master" --connections 1 --depth 1
done
run "baseline-echo c4 d64" "$echo" --connections 4 --depth 64 --no-auth
run "titan c4 d64" "$master" --connections 4 --depth 64
run "titan c1 d256" "$master" --connections 1 --depth 256
