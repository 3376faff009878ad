#!/usr/bin/env bash
# Builds the libFuzzer harnesses (SPUSH_FUZZ=ON, clang) and runs each one after the other for
# SECONDS on a copy of its seed corpus (BUILD_DIR/fuzz-corpus/<name>, made fresh from
# fuzz/corpus/<name>, which is never modified); prints one line per harness and exits 1 when one
# found a crash, a leak, a timeout or an out-of-memory, naming the input it left in
# BUILD_DIR/fuzz-artifacts/. With RUNS, a harness stops after RUNS executions or SECONDS,
# whichever comes first. See docs/BUILDING.md, "Fuzzing".
#   fuzz/run.sh [SECONDS_PER_HARNESS (10)] [BUILD_DIR (build-fuzz)] [RUNS (no limit)]
set -euo pipefail
secs=${1:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$root/build-fuzz}
case "$build" in /*) ;; *) build=$PWD/$build ;; esac
runs=${3:--1}
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "fuzz/run.sh: SECONDS must be a whole number, got '$secs'"; exit 2; }
[[ "$runs" =~ ^(-1|[0-9]+)$ ]] || { echo "fuzz/run.sh: RUNS must be a whole number, got '$runs'"; exit 2; }

# Longest input per harness (libFuzzer -max_len): enough for every seed and a few records.
declare -A max_len=([idx]=32768 [cifar]=16384 [settings]=4096 [topology]=8192
                    [checkpoint]=16384 [header]=128 [codec]=8192 [wire_rows]=8192)
# libFuzzer dictionaries: fp32 values the compressor never sends, for the codec harnesses.
declare -A dict=([codec]=floats.dict [wire_rows]=floats.dict)

cmake -S "$root" -B "$build" -G Ninja -DSPUSH_FUZZ=ON -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build.configure.log" 2>&1 ||
  { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)"

export OMP_NUM_THREADS=1  # the cpu backend's row loops: one thread, two fuzzers never share cores
failed=0
mkdir -p "$build/fuzz-artifacts" "$build/fuzz-logs"
printf '%-20s %12s %9s %8s %8s  %s\n' harness executions exec/s seconds corpus result
for src in "$root"/fuzz/*_fuzzer.cpp; do
  name=$(basename "$src" _fuzzer.cpp)
  bin=$build/fuzz/${name}_fuzzer
  corpus=$build/fuzz-corpus/$name
  log=$build/fuzz-logs/$name.log
  rm -rf "$corpus"
  mkdir -p "$corpus"
  cp "$root/fuzz/corpus/$name"/* "$corpus"/
  rm -f "$build/fuzz-artifacts/$name"-*
  opts=()
  [ -n "${dict[$name]:-}" ] && opts+=(-dict="$root/fuzz/${dict[$name]}")
  rc=0
  t0=$SECONDS
  "$bin" -max_total_time="$secs" -runs="$runs" -max_len="${max_len[$name]:-4096}" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 "${opts[@]}" \
    -artifact_prefix="$build/fuzz-artifacts/$name-" "$corpus" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  files=$(find "$corpus" -type f | wc -l)
  artifact=$(find "$build/fuzz-artifacts" -name "$name-*" -type f | head -1)
  if [ "$rc" -eq 0 ] && [ -z "$artifact" ]; then
    result=ok
  else
    failed=1
    result="FAILED (exit $rc): input ${artifact:-none}, log $log"
  fi
  printf '%-20s %12s %9s %8s %8s  %s\n' "${name}_fuzzer" "${execs:-?}" "${speed:-?}" \
    "$((SECONDS - t0))" "$files" "$result"
done
if [ "$failed" -ne 0 ]; then
  echo "fuzz/run.sh: a harness failed; reproduce with: BUILD_DIR/fuzz/<name>_fuzzer INPUT"
  exit 1
fi
