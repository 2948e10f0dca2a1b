#!/usr/bin/env bash
# Durability numbers for issue 5, with their baselines, in one run: acknowledged submits
# through the master (pipelined from titan-loadgen) with group commit at 64, 128 and 512 in
# flight, with one fsync per record, and with no log at all; recovery time of 1,000,000 journal
# records (master killed with SIGKILL, restarted, timed to its ready line); NOOP submit →
# completed with the log and without, at worker capacities 16 and 256, for 200,000 and 1,000,000
# jobs.
# Usage: scripts/bench-wal.sh [submits]
source "$(dirname "$0")/lib.sh"
submits=${1:-300000}
# master NAME ARGS... -> sets $addr $master_pid
master() {
  local name=$1; shift
  rm -f "$tmp/$name.out"
  TITAN_LOG=warn "$bin/titan" master --port 0 --log-port 0 --shards 1 "$@" >"$tmp/$name.out" 2>/dev/null &
  master_pid=$!
  addr=$(wait_addr "$tmp/$name.out")
}
lg() { "$bin/titan-loadgen" "$@" --json; }
machine_line

for round in 1 2; do
  # Group commit at three depths (in flight = 2 x depth): throughput against ack latency.
  for depth in 32 64 256; do
    master group --data-dir "$tmp/d-group-$round-$depth"
    echo "submit group depth2x$depth r$round $(lg submit --addr "$addr" --count "$submits" --connections 2 --depth $depth)"
    kill "$master_pid"; wait "$master_pid" 2>/dev/null || true
  done
  master perrecord --data-dir "$tmp/d-per-$round" --wal-sync per-record
  echo "submit per-record r$round $(lg submit --addr "$addr" --count 20000 --connections 2 --depth 256)"
  kill "$master_pid"; wait "$master_pid" 2>/dev/null || true
  master memory --memory-only
  echo "submit memory-only r$round $(lg submit --addr "$addr" --count "$submits" --connections 2 --depth 256)"
  kill "$master_pid"; wait "$master_pid" 2>/dev/null || true
done

# Recovery: 1,000,000 records (no snapshot in between), SIGKILL, restart, time to ready.
master recover --data-dir "$tmp/d-recover" --snapshot-every 100000000
lg submit --addr "$addr" --count 1000000 --connections 2 --depth 256 >/dev/null
kill -9 "$master_pid"; wait "$master_pid" 2>/dev/null || true
for round in 1 2 3; do
  start=$(date +%s%N)
  master recover --data-dir "$tmp/d-recover" --snapshot-every 100000000
  end=$(date +%s%N)
  echo "recovery of 1000000 records r$round: $(( (end - start) / 1000000 )) ms to ready (process start included)"
  kill -9 "$master_pid"; wait "$master_pid" 2>/dev/null || true
done
du -sh "$tmp/d-recover" | sed 's/^/log size: /'

# NOOP throughput with and without the log, at two worker capacities, for a burst of 200,000
# jobs on a fresh master and for 1,000,000 (steady state: the 100,000-job history window is full
# and pruned, and snapshots come every ~166,000 jobs; the burst also pays for faulting in the
# first snapshot's buffers).
for round in 1 2; do
  for jobs in 200000 1000000; do
    for cap in 16 256; do
      for mode in wal memory; do
        if [ "$mode" = wal ]; then master noop --data-dir "$tmp/d-noop-$round-$jobs-$cap"; else master noop --memory-only; fi
        rm -f "$tmp/worker.out"
        PATH=/usr/bin:/bin TITAN_LOG=warn "$bin/titan" worker --port 0 --master "$addr" --capacity "$cap" \
          --workspace "$tmp/ws" --perm-files "$PWD/perm_files" >"$tmp/worker.out" 2>/dev/null &
        wait_addr "$tmp/worker.out" >/dev/null
        echo "noop-e2e $jobs cap$cap $mode r$round $(lg e2e --addr "$addr" --jobs "$jobs" --depth 512 --master-pid "$master_pid")"
        pkill -f "$bin/titan worker" || true
        kill "$master_pid"; wait "$master_pid" 2>/dev/null || true
      done
    done
  done
done
