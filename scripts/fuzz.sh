#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for MINUTES minutes each, one after the other, nice'd,
# starting from the committed seeds (fuzz/corpus/<target>/) and a working corpus kept in
# fuzz/work/ (not committed). With FUZZ_RUNS=N each target stops after N executions instead.
# Prints each target's executions; a crash input is copied to fuzz/regressions/<target>/, where
# tests/fuzz_seeds.rs replays it in the normal suite (fix it, keep the file).
# Needs cargo-fuzz (`cargo install cargo-fuzz`); works on stable with RUSTC_BOOTSTRAP=1.
# No sanitizer: the code is safe Rust, and uninstrumented runs go several times faster.
# FUZZ_ARGS adds libFuzzer flags (e.g. FUZZ_ARGS=-max_len=1024).
# Usage: scripts/fuzz.sh MINUTES [target...]
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
minutes=${1:?usage: scripts/fuzz.sh MINUTES [target...]}
shift
if [ "$minutes" -lt 1 ] 2>/dev/null && [ -z "${FUZZ_RUNS:-}" ]; then
  echo "MINUTES must be at least 1 (libFuzzer takes 0 for no limit)" >&2
  exit 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//')
fi
export RUSTC_BOOTSTRAP=1
limit=(-max_total_time=$((minutes * 60)))
if [ -n "${FUZZ_RUNS:-}" ]; then
  limit=(-runs="$FUZZ_RUNS")
fi
status=0
for target in "${targets[@]}"; do
  mkdir -p "work/$target" "artifacts/$target"
  log="work/$target.log"
  nice cargo fuzz run -s none -a "$target" "work/$target" "corpus/$target" -- \
    "${limit[@]}" -print_final_stats=1 -timeout=10 ${FUZZ_ARGS:-} >"$log" 2>&1
  code=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  echo "$target: ${runs:-?} executions, exit $code"
  if [ $code -ne 0 ]; then
    status=1
    mkdir -p "regressions/$target"
    for crash in artifacts/"$target"/*; do
      [ -f "$crash" ] && cp "$crash" "regressions/$target/" && echo "  crash input: $crash"
    done
    tail -30 "$log"
  fi
done
exit $status
