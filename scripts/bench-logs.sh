#!/usr/bin/env bash
# Does a job printing 100 MB slow scheduling? NOOP submit → completed throughput with no other
# load, then again while a job prints ~100 MB (9,000,000 lines) that the worker drains to its
# files and streams to the master over UDP; with jobs at the worker's priority and at nice 10
# (`titan worker --job-nice 10`, the default). Usage: scripts/bench-logs.sh [rounds]
source "$(dirname "$0")/lib.sh"
rounds=${1:-3}
TITAN_LOG=warn "$bin/titan" master --port 0 --log-port 0 --shards 1 --data-dir "$tmp/data" >"$tmp/master.out" 2>/dev/null &
addr=$(wait_addr "$tmp/master.out")
machine_line
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
