#!/usr/bin/env bash
# The headline numbers of two builds side by side, alternating A and B in every round so that a
# drifting machine load hits both alike: ping p50 (1 connection, depth 1, memory-only master),
# NOOP submit -> completed (worker capacity 4 and 16, log on) with the master's CPU per job,
# DAG hand-off p50 over a 500-node chain, and durable acknowledged submits (2 connections x 64).
# Each build uses its own titan-loadgen (the wire version may differ between them).
# Usage: scripts/bench-compare.sh A_DIR B_DIR [rounds]   (each dir holds titan and titan-loadgen)
# Prints one line per measurement and a median per metric and build at the end.
set -euo pipefail
a=$(realpath "$1"); b=$(realpath "$2"); rounds=${3:-3}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d -p "$PWD/target")
results=$tmp/results
# Builds with keys (issue 14) find them here; older builds ignore the variable.
export TITAN_ACCESS_FILE=$tmp/access
cleanup() { pkill -f "$a/titan (master|worker)" 2>/dev/null || true; pkill -f "$b/titan (master|worker)" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

wait_addr() {
  for _ in $(seq 600); do
    found=$(grep -o '127.0.0.1:[0-9]*' "$1" 2>/dev/null | head -1) && [ -n "$found" ] && { echo "$found"; return; }
    sleep 0.05
  done
  echo "no address in $1" >&2; cat "${1%.out}.err" >&2 2>/dev/null || true; exit 1
}
stop() {
  pkill -f "$1/titan (master|worker)" 2>/dev/null || true
  for _ in $(seq 200); do pgrep -f "$1/titan (master|worker)" >/dev/null || return 0; sleep 0.05; done
  pkill -9 -f "$1/titan (master|worker)" 2>/dev/null || true
}
# cluster BIN CAPACITY MASTER-ARGS... -> $addr, $master_pid (CAPACITY 0: no worker)
cluster() {
  local bin=$1 cap=$2; shift 2
  stop "$bin"; rm -rf "$tmp/data" "$tmp/ws"; mkdir -p "$tmp/ws"
  TITAN_LOG=warn "$bin/titan" master --port 0 --log-port 0 --shards 1 "$@" >"$tmp/master.out" 2>"$tmp/master.err" &
  master_pid=$!
  addr=$(wait_addr "$tmp/master.out")
  if [ "$cap" -gt 0 ]; then
    rm -f "$tmp/worker.out"
    PATH=/usr/bin:/bin TITAN_LOG=warn "$bin/titan" worker --port 0 --master "$addr" --capacity "$cap" \
      --workspace "$tmp/ws" --perm-files "$PWD/perm_files" >"$tmp/worker.out" 2>"$tmp/worker.err" &
    wait_addr "$tmp/worker.out" >/dev/null
  fi
}
# record BUILD METRIC VALUE
record() { echo "$1 $2 $3" | tee -a "$results"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d'+sys.argv[1]))" "$1"; }

measure() { # BUILD_LABEL BIN
  local label=$1 bin=$2 lg="$2/titan-loadgen" out
  cluster "$bin" 0 --memory-only
  out=$("$lg" ping --addr "$addr" --duration 3s --connections 1 --depth 1 --json)
  record "$label" ping_c1d1_p50_us "$(echo "$out" | field "['latency']['p50_us']")"
  for cap in 4 16; do
    cluster "$bin" "$cap" --data-dir "$tmp/data"
    out=$("$lg" e2e --addr "$addr" --jobs 200000 --depth 512 --master-pid "$master_pid" --json)
    record "$label" "noop_cap${cap}_jobs_per_s" "$(echo "$out" | field "['jobs_per_sec']")"
    record "$label" "noop_cap${cap}_master_us_per_job" "$(echo "$out" | field "['master_cpu_us_per_job']")"
  done
  out=$("$lg" dag --addr "$addr" --chain 500 --json)
  record "$label" dag_hop_p50_us "$(echo "$out" | field "['hop']['p50_us']")"
  cluster "$bin" 0 --data-dir "$tmp/data"
  out=$("$lg" submit --addr "$addr" --count 200000 --connections 2 --depth 64 --json)
  record "$label" durable_acks_per_s "$(echo "$out" | field "['jobs_per_sec']")"
  record "$label" durable_ack_p99_us "$(echo "$out" | field "['latency']['p99_us']")"
  stop "$bin"
}

echo "machine: $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "A=$a B=$b rounds=$rounds"
for round in $(seq "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then measure A "$a"; measure B "$b"; else measure B "$b"; measure A "$a"; fi
done
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$results" <<'EOF'
import sys, statistics, collections
vals = collections.defaultdict(list)
for line in open(sys.argv[1]):
    build, metric, value = line.split()
    vals[(metric, build)].append(float(value))
metrics = sorted({m for m, _ in vals})
print(f"{'metric':34} {'A median':>12} {'B median':>12} {'B/A':>7}")
for m in metrics:
    a, b = statistics.median(vals[(m, 'A')]), statistics.median(vals[(m, 'B')])
    print(f"{m:34} {a:12.1f} {b:12.1f} {b / a if a else float('nan'):7.3f}")
EOF
