# Shared set-up of the bench scripts (source it first): release binaries in $bin, a scratch
# directory $tmp under target/ (removed on exit, with every titan master and worker started from
# $bin) holding the run's access file ($TITAN_ACCESS_FILE), and wait_addr FILE, which prints the first 127.0.0.1:PORT a ready line wrote to FILE.
# A script adds its own clean-up commands to $on_exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[1]}")/.."
cargo build --release -q
bin=$PWD/target/release
tmp=$(mktemp -d -p "$PWD/target")
# One access file for the run: the master creates it, workers and the load generator read it.
export TITAN_ACCESS_FILE=$tmp/access
on_exit=""
cleanup() {
  eval "$on_exit"
  pkill -f "$bin/titan (master|worker)" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# Stops every titan master and worker started from $bin and waits until they are gone (a master
# still shutting down would otherwise compete with the next one for memory and locks).
stop_titan() {
  pkill -f "$bin/titan (master|worker)" 2>/dev/null || true
  for _ in $(seq 200); do
    pgrep -f "$bin/titan (master|worker)" >/dev/null || return 0
    sleep 0.05
  done
  pkill -9 -f "$bin/titan (master|worker)" 2>/dev/null || true
}

wait_addr() {
  local found
  for _ in $(seq 600); do
    found=$(grep -o '127.0.0.1:[0-9]*' "$1" 2>/dev/null | head -1) && [ -n "$found" ] && { echo "$found"; return; }
    sleep 0.05
  done
  echo "no address in $1" >&2
  cat "${1%.out}.err" >&2 2>/dev/null || true
  exit 1
}

machine_line() {
  echo "machine: $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
}
