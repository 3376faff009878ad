#!/usr/bin/env bash
# Nightly GPU CI in one command, on a machine with an NVIDIA GPU:
#   1. configure and build Release for sm_90 in build-gpu/;
#   2. run the gpu-labelled tests (ctest -L gpu);
#   3. run spush-bench, writing JSON;
#   4. compare with the committed baseline bench/baselines/<device>[-quick].json
#      (bench/compare.py, tolerance 15% unless --tolerance); without a baseline, write one and
#      say so (commit it to start tracking);
#   5. run one spush-gossip averaging job (16 nodes, ResNet-20 size, Sparse-Push top-1 %) on the
#      GPU and on the CPU: the summaries must be identical; reports the time per round;
#   6. print a summary table last.
# Exit status: 0 all good; 1 a test failed, a bench case failed its check or regressed, or the
# GPU gossip run differs from the CPU one;
# 3 configure/build failed. Logs and JSON go to --out (default build-gpu/nightly, or $OUT/nightly).
# Usage: bench/gpu-nightly.sh [--tolerance PCT] [--quick] [--out DIR] [--baseline FILE] [--jobs N]
#                             [--build-dir DIR]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

tolerance=15
quick=""
out="${OUT:+$OUT/nightly}"
out="${out:-build-gpu/nightly}"
baseline=""
build="build-gpu"
jobs="$(nproc)"
while [ $# -gt 0 ]; do
  case "$1" in
    --tolerance) tolerance="$2"; shift 2 ;;
    --quick) quick="--quick"; shift ;;
    --out) out="$2"; shift 2 ;;
    --baseline) baseline="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --build-dir) build="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu-nightly: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"

echo "== configure and build ($build, Release, sm_90)"
if ! cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
     > "$out/configure.log" 2>&1; then
  tail -30 "$out/configure.log"; echo "gpu-nightly: configure failed" >&2; exit 3
fi
if ! grep -q "CUDA *: ON" "$out/configure.log"; then
  echo "gpu-nightly: CUDA was not found; the GPU tests and GPU benchmarks cannot run" >&2; exit 3
fi
if ! cmake --build "$build" -j "$jobs" > "$out/build.log" 2>&1; then
  grep -E "error|FAILED" "$out/build.log" | head -30; echo "gpu-nightly: build failed" >&2; exit 3
fi

gpu_name="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
if [ -z "$gpu_name" ]; then
  echo "gpu-nightly: warning: nvidia-smi sees no GPU; GPU tests will skip and the bench runs CPU cases only"
  gpu_name="no-gpu"
fi
slug="$(echo "$gpu_name" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/-*$//')"
[ -n "$baseline" ] || baseline="bench/baselines/${slug}${quick:+-quick}.json"

echo "== gpu tests (ctest -L gpu)"
ctest --test-dir "$build" -L gpu --output-on-failure --timeout 900 > "$out/ctest-gpu.log" 2>&1
test_rc=$?
tests_line="$(grep -E "tests passed|No tests were found" "$out/ctest-gpu.log" | tail -1)"
skipped="$(grep -c "Skipped" "$out/ctest-gpu.log" || true)"

echo "== spush-bench ${quick}"
"$build/bin/spush-bench" $quick --json "$out/bench.json" > "$out/bench.log" 2>&1
bench_rc=$?

compare_rc=0
compare_note=""
if [ $bench_rc -ne 0 ] || [ ! -f "$out/bench.json" ]; then
  compare_note="spush-bench failed (exit $bench_rc), nothing compared; see $out/bench.log"
elif [ "$gpu_name" = "no-gpu" ]; then
  compare_note="skipped: no GPU, so no GPU timings to compare (and no baseline written)"
elif [ ! -f "$baseline" ]; then
  mkdir -p "$(dirname "$baseline")"
  cp "$out/bench.json" "$baseline"
  compare_note="no baseline existed: wrote $baseline from this run (commit it to track regressions)"
else
  python3 bench/compare.py --baseline "$baseline" --current "$out/bench.json" \
    --tolerance "$tolerance" > "$out/compare.txt" 2>&1
  compare_rc=$?
  compare_note="$(tail -1 "$out/compare.txt")"
fi

echo "== spush-gossip, GPU against CPU"
gossip_args="--nodes 16 --dim 269722 --segments 20 --rounds 500 --print-every 500 --compressor topk --density 0.01"
gossip_rc=0
if [ "$gpu_name" = "no-gpu" ]; then
  gossip_note="skipped: no GPU"
else
  for dev in cuda cpu; do
    "$build/bin/spush-gossip" $gossip_args --device $dev > "$out/gossip-$dev.log" 2>&1 || gossip_rc=1
  done
  gossip_ms() { sed -n 's/^time: .*(\([0-9.]*\) ms per round.*/\1/p' "$out/gossip-$1.log"; }
  if [ $gossip_rc -eq 0 ] && [ -n "$(grep '^summary:' "$out/gossip-cuda.log")" ] &&
     [ "$(grep '^summary:' "$out/gossip-cuda.log")" = "$(grep '^summary:' "$out/gossip-cpu.log")" ]; then
    gossip_note="same trajectory; $(gossip_ms cuda) ms per round on the GPU, $(gossip_ms cpu) on the CPU"
  else
    gossip_rc=1
    gossip_note="GPU and CPU runs differ or failed: see $out/gossip-cuda.log, $out/gossip-cpu.log"
  fi
fi

echo
echo "== details"
[ -f "$out/compare.txt" ] && head -40 "$out/compare.txt"
sed -n '/^Targets/,$p' "$out/bench.log" | head -12
grep -E "FAIL" "$out/bench.log" | head -10
[ $test_rc -ne 0 ] && grep -E "Failed|\*\*\*" "$out/ctest-gpu.log" | head -20

status() { [ "$1" -eq 0 ] && echo "ok" || echo "FAILED ($1)"; }
echo
echo "== summary ($gpu_name)"
printf "%-12s %-10s %s\n" "step" "status" "detail"
printf "%-12s %-10s %s\n" "build" "ok" "$build (Release, sm_90)"
printf "%-12s %-10s %s\n" "gpu tests" "$(status $test_rc)" "${tests_line:-see $out/ctest-gpu.log} (${skipped} skipped lines)"
printf "%-12s %-10s %s\n" "bench" "$(status $bench_rc)" "$out/bench.json"
printf "%-12s %-10s %s\n" "compare" "$(status $compare_rc)" "$compare_note"
printf "%-12s %-10s %s\n" "gossip" "$(status $gossip_rc)" "$gossip_note"
[ $test_rc -eq 0 ] && [ $bench_rc -eq 0 ] && [ $compare_rc -eq 0 ] && [ $gossip_rc -eq 0 ] &&
  ! grep -q "FAIL" "$out/bench.log"
exit $(( $? != 0 ))
