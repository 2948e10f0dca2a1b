#!/usr/bin/env bash
# Scheduler and process-job numbers for issue 4, with their baselines, in one run:
#   NOOP submit → completed throughput (worker capacity 4, 16 and 256; capacity 4 also with
#   --prefetch 0, the baseline for prefetching) and master CPU per job,
#   single NOOP job latency, DAG hand-off over a 1,000-node chain,
#   /bin/true jobs against a bare spawn-and-wait loop at the same concurrency (ext4 and tmpfs),
#   and against that loop doing each job's workspace, output files and process group.
# Usage: scripts/bench-jobs.sh [rounds]
source "$(dirname "$0")/lib.sh"
rounds=${1:-2}
shm=$(mktemp -d -p /dev/shm)
on_exit='rm -rf "$shm"'
mkdir -p "$tmp/pf" && cp /bin/true "$tmp/pf/true"
# start_cluster CAPACITY WORKSPACE PERM_FILES [MASTER ARGS...] -> sets $addr and $master_pid
start_cluster() {
  stop_titan
  rm -rf "$2" "$tmp/data" && mkdir -p "$2"
  TITAN_LOG=warn "$bin/titan" master --port 0 --log-port 0 --shards 1 --data-dir "$tmp/data" "${@:4}" >"$tmp/master.out" 2>"$tmp/master.err" &
  master_pid=$!
  addr=$(wait_addr "$tmp/master.out")
  PATH=/usr/bin:/bin TITAN_LOG=warn "$bin/titan" worker --port 0 --master "$addr" --capacity "$1" \
    --workspace "$2" --perm-files "$3" >"$tmp/worker.out" 2>"$tmp/worker.err" &
  wait_addr "$tmp/worker.out" >/dev/null
}

lg() { "$bin/titan-loadgen" "$@" --json; }
machine_line
for round in $(seq "$rounds"); do
  start_cluster 4 "$tmp/ws" "$PWD/perm_files"
  echo "noop-e2e cap4 r$round $(lg e2e --addr "$addr" --jobs 200000 --depth 512 --master-pid "$master_pid")"
  echo "noop-latency r$round $(lg e2e --addr "$addr" --latency 2000)"
  echo "dag-chain-1000 r$round $(lg dag --addr "$addr" --chain 1000)"
  start_cluster 4 "$tmp/ws" "$PWD/perm_files" --prefetch 0
  echo "noop-e2e cap4 prefetch-off r$round $(lg e2e --addr "$addr" --jobs 200000 --depth 512 --master-pid "$master_pid")"
  start_cluster 16 "$tmp/ws" "$PWD/perm_files"
  echo "noop-e2e cap16 r$round $(lg e2e --addr "$addr" --jobs 300000 --depth 512 --master-pid "$master_pid")"
  start_cluster 256 "$tmp/ws" "$PWD/perm_files"
  echo "noop-e2e cap256 r$round $(lg e2e --addr "$addr" --jobs 300000 --depth 512 --master-pid "$master_pid")"
  echo "bare-spawn t4 r$round $(lg spawn --count 3000 --threads 4)"
  # The same loop doing the per-job work every Titan job gets (own directory as cwd, output
  # files, own process group): the ceiling for any orchestrator keeping those promises.
  rm -rf "$tmp/sws" "$shm/sws"
  echo "bare-spawn-workspace t4 ext4 r$round $(lg spawn --count 3000 --threads 4 --workspace "$tmp/sws")"
  echo "bare-spawn-workspace t4 tmpfs r$round $(lg spawn --count 3000 --threads 4 --workspace "$shm/sws")"
  start_cluster 4 "$tmp/ws" "$tmp/pf"
  echo "true-e2e cap4 ext4 r$round $(lg e2e --addr "$addr" --jobs 3000 --kind true)"
  start_cluster 4 "$shm/ws" "$tmp/pf"
  echo "true-e2e cap4 tmpfs r$round $(lg e2e --addr "$addr" --jobs 3000 --kind true)"
  start_cluster 4 "$shm/ws" "$tmp/pf" --prefetch 0
  echo "true-e2e cap4 tmpfs prefetch-off r$round $(lg e2e --addr "$addr" --jobs 3000 --kind true)"
done
