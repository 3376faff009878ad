#!/usr/bin/env bash
# Nightly GPU check in one command, for the GPU test machine (one H200, 16 cores, no network;
# docs/BENCHMARKS.md, "The nightly GPU run"). Each step runs under a time limit; the limits add
# up to 470 s, so the whole run ends within 8 minutes:
#   step        limit  what
#   configure     40 s cmake, Release, sm_90, from the bundle (--bundle DIR) or system packages
#   build        140 s cmake --build (tests and spush-bench)
#   gpu tests     90 s ctest -L gpu, per-test timeout 60 s: the LargeGpu tests (40 GB of device
#                      memory each) one at a time, the others 6 at a time
#   memcheck      35 s compute-sanitizer --tool memcheck over a fixed subset of the gpu tests
#   racecheck     25 s compute-sanitizer --tool racecheck, smaller subset
#   synccheck     25 s compute-sanitizer --tool synccheck, same subset as racecheck
#   bench         60 s spush-bench --json over the target cases (--bench quick|full for more)
#   targets        -   the target lines of spush-bench: a "missed" target fails the run
#                      (--targets warn: reported only)
#   compare       10 s bench/compare.py against bench/baselines/<gpu>[-<bench>].json (written,
#                      not compared, when missing: commit it)
#   gossip        45 s spush-gossip 16 nodes x 269,722, Sparse-Push top-1 %, on the GPU and on
#                      the CPU: the summaries must be identical
# Without a GPU (or without compute-sanitizer) the GPU steps are skipped and say why. Prints the
# elapsed time of each step as it ends and a summary table last (step, status ok / FAILED /
# skipped, seconds, the key number or the reason); writes every log, spush-bench's JSON and
# nightly.json (the table) to --out.
#
# Usage: bench/gpu-nightly.sh [--bundle DIR] [--out DIR] [--build-dir DIR] [--jobs N]
#            [--bench targets|quick|full] [--quick] [--targets fail|warn] [--tolerance PCT]
#            [--baseline FILE] [--limit-scale N] [--dry-run]
#   --bundle DIR  build from the offline bundle of scripts/make-bundle.sh (default: the
#                 system's packages)
#   --out DIR     logs and results (default build-gpu/nightly, or $OUT/nightly when OUT is set)
#   --build-dir   default build-gpu (build-gpu-bundle with --bundle)
#   --bench MODE  targets (default: the cases of the target lines and their baselines),
#                 quick (spush-bench --quick), full (every case; longer than the 8 minutes)
#   --limit-scale N  multiply every time limit by N (a slower machine than the H200 host, e.g.
#                 a 2-core development machine; the 8-minute budget then does not apply)
#   --dry-run     check the tools and the bundle, print the plan and the commands; build and
#                 run nothing
# Exit status: 0 every step ok or skipped; 1 a step failed (a test, a sanitizer report, a bench
# check, a missed target, a regression, a GPU/CPU difference, a step over its time limit);
# 2 usage error or missing tools; 3 configure or build failed (later steps skipped).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

bundle=""
out="${OUT:+$OUT/nightly}"
out="${out:-build-gpu/nightly}"
build=""
jobs="$(nproc)"
bench_mode="targets"
targets_policy="fail"
tolerance=15
baseline=""
dry_run=0
scale=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle|--out|--build-dir|--jobs|--bench|--targets|--tolerance|--baseline|--limit-scale)
      [ $# -ge 2 ] || { echo "gpu-nightly: $1 needs a value" >&2; exit 2; } ;;
  esac
  case "$1" in
    --bundle) bundle="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --build-dir) build="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --bench) bench_mode="$2"; shift 2 ;;
    --quick) bench_mode="quick"; shift ;;
    --targets) targets_policy="$2"; shift 2 ;;
    --tolerance) tolerance="$2"; shift 2 ;;
    --baseline) baseline="$2"; shift 2 ;;
    --limit-scale) scale="$2"; shift 2 ;;
    --dry-run|--check-only) dry_run=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    *) echo "gpu-nightly: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$bench_mode" in targets|quick|full) ;; *)
  echo "gpu-nightly: --bench '$bench_mode': expected targets, quick or full" >&2; exit 2 ;; esac
case "$targets_policy" in fail|warn) ;; *)
  echo "gpu-nightly: --targets '$targets_policy': expected fail or warn" >&2; exit 2 ;; esac
case "$jobs" in ''|*[!0-9]*) echo "gpu-nightly: --jobs '$jobs' is not a number" >&2; exit 2 ;; esac
case "$scale" in ''|0|*[!0-9]*) echo "gpu-nightly: --limit-scale '$scale' is not a positive integer" >&2; exit 2 ;; esac
if [ -n "$bundle" ]; then
  [ -f "$bundle/bundle.cmake" ] ||
    { echo "gpu-nightly: --bundle $bundle: no bundle.cmake there (scripts/make-bundle.sh DIR)" >&2; exit 2; }
  bundle="$(cd "$bundle" && pwd)"
  build="${build:-build-gpu-bundle}"
fi
build="${build:-build-gpu}"

# ---- time limits (seconds); their sum stays under the 480 s of the whole run ---------------------
declare -A limit=([configure]=40 [build]=140 [gpu tests]=90 [memcheck]=35 [racecheck]=25
                  [synccheck]=25 [bench]=60 [targets]=0 [compare]=10 [gossip]=45)
steps=(configure build "gpu tests" memcheck racecheck synccheck bench targets compare gossip)
total_budget=480
[ "$bench_mode" = quick ] && limit[bench]=120
[ "$bench_mode" = full ] && limit[bench]=600
test_timeout=60
if [ "$scale" -gt 1 ]; then
  for s in "${steps[@]}"; do limit[$s]=$(( ${limit[$s]} * scale )); done
  test_timeout=$((test_timeout * scale))
  total_budget=$((total_budget * scale))
fi

# Sanitizer subsets: executable -> gtest filter (small problems; no LargeGpu test).
declare -A memcheck_set=(
  [test_kernels_topk_gpu]="TopkGpu.BatchedRowsWithLayerSegments:TopkGpu.RandomTablesAndRows:TopkGpu.NaNSetsTheErrorFlag:TopkGpu.InconsistentTablesSetTheErrorFlag"
  [test_kernels_topk_scan_gpu]="TopkScanGpu.MoreSegmentsThanTheSetupBlock:TopkScanGpu.ZeroKForANonEmptySegmentIsRejected"
  [test_kernels_compress_gpu]="CompressGpu.LayeredBatchesMatchTheCpu:CompressGpu.NonFiniteAndOverflowSetTheErrorFlag"
  [test_kernels_mixing_gpu]="MixingGpu.SparseRoundsMatchTheCpu:MixingGpu.DenseRoundsMatchTheCpuIncludingMessagesInX:MixingGpu.InvalidTermsAndUnsortedMessagesSetTheErrorFlag"
  [test_kernels_codec_gpu]="CodecGpu.*"
  [test_kernels_codec_dense_gpu]="CodecDenseGpu.MalformedPayloadsSetTheErrorFlag:CodecDenseGpu.MoreRowsThanTheGridHolds"
  [test_kernels_backend_gpu]="CudaBackend.*"
)
declare -A shared_memory_set=(  # racecheck and synccheck: the kernels with block scans
  [test_kernels_topk_gpu]="TopkGpu.BatchedRowsWithLayerSegments"
  [test_kernels_topk_scan_gpu]="TopkScanGpu.MoreSegmentsThanTheSetupBlock"
  [test_kernels_compress_gpu]="CompressGpu.LayeredBatchesMatchTheCpu"
  [test_kernels_codec_gpu]="CodecGpu.EncodeEqualsCpuBytesAndDecodeRoundTrips"
  [test_kernels_mixing_gpu]="MixingGpu.SparseRoundsMatchTheCpu"
)
targets_filter='^(copy/|topk/n=(134217728|269722)/rows=1/K=1%/normal/|topk_layers/n=269722/rows=16/K=1%/normal/|ef_topk/n=134217728/|qsgd/n=134217728/rows=1/bits=8/|mix_ring/n=269722/)'
gossip_args="--nodes 16 --dim 269722 --segments 20 --rounds 500 --print-every 500 --compressor topk --density 0.01"

# ---- environment ---------------------------------------------------------------------------------
cuda_bin=/usr/local/cuda/bin
sanitizer="$(command -v compute-sanitizer || true)"
[ -z "$sanitizer" ] && [ -x "$cuda_bin/compute-sanitizer" ] && sanitizer="$cuda_bin/compute-sanitizer"
nvcc="$(command -v nvcc || true)"
[ -z "$nvcc" ] && [ -x "$cuda_bin/nvcc" ] && nvcc="$cuda_bin/nvcc"
gpu_name="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | sed -n 1p)"
slug="$(echo "${gpu_name:-no-gpu}" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/-*$//')"
suffix=""
[ "$bench_mode" = full ] || suffix="-$bench_mode"
[ -n "$baseline" ] || baseline="bench/baselines/${slug}${suffix}.json"
cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DSPUSH_BUILD_TESTS=ON
            -DSPUSH_BUILD_BENCH=ON)
[ -n "$bundle" ] && cmake_args+=(-DSPUSH_BUNDLE="$bundle")
set_bench_args() {
  case "$bench_mode" in
    targets) bench_args=(--json "$out/bench.json" "--benchmark_filter=$targets_filter") ;;
    quick) bench_args=(--quick --json "$out/bench.json") ;;
    full) bench_args=(--json "$out/bench.json") ;;
  esac
}
set_bench_args

missing_tools=()
for t in cmake ninja ctest python3; do command -v "$t" >/dev/null || missing_tools+=("$t"); done
budget_sum=0
for s in "${steps[@]}"; do budget_sum=$((budget_sum + ${limit[$s]})); done

if [ $dry_run -eq 1 ]; then
  echo "gpu-nightly --dry-run: nothing is built or run"
  echo "  GPU            : ${gpu_name:-none (nvidia-smi sees no GPU: the GPU steps would be skipped)}"
  echo "  nvcc           : ${nvcc:-not found (CUDA off: the GPU build cannot be made)}"
  echo "  sanitizer      : ${sanitizer:-not found (memcheck, racecheck, synccheck would be skipped)}"
  echo "  bundle         : ${bundle:-none (system packages)}"
  echo "  build / out    : $build / $out"
  echo "  baseline       : $baseline ($( [ -f "$baseline" ] && echo present || echo absent: the run would write it))"
  echo "  time limits    : ${budget_sum} s of the ${total_budget} s budget"
  echo
  printf '%-11s %6s  %s\n' step limit command
  printf '%-11s %5ss  %s\n' configure "${limit[configure]}" "cmake -S . -B $build ${cmake_args[*]}"
  printf '%-11s %5ss  %s\n' build "${limit[build]}" "cmake --build $build -j $jobs"
  printf '%-11s %5ss  %s\n' "gpu tests" "${limit[gpu tests]}" "ctest --test-dir $build -L gpu -E LargeGpu -j 6 --timeout $test_timeout; then -R LargeGpu -j 1"
  for tool in memcheck racecheck synccheck; do
    if [ $tool = memcheck ]; then declare -n set=memcheck_set; else declare -n set=shared_memory_set; fi
    for exe in $(printf '%s\n' "${!set[@]}" | sort); do
      printf '%-11s %5ss  %s\n' "$tool" "${limit[$tool]}" "compute-sanitizer --tool $tool $build/tests/$exe --gtest_filter='${set[$exe]}'"
    done
    unset -n set
  done
  printf '%-11s %5ss  %s\n' bench "${limit[bench]}" "$build/bin/spush-bench ${bench_args[*]}"
  printf '%-11s %5ss  %s\n' targets 0 "the Targets lines of $out/bench.log ($targets_policy on missed)"
  printf '%-11s %5ss  %s\n' compare "${limit[compare]}" "python3 bench/compare.py --baseline $baseline --current $out/bench.json --tolerance $tolerance"
  printf '%-11s %5ss  %s\n' gossip "${limit[gossip]}" "$build/bin/spush-gossip $gossip_args --device cuda|cpu"
  rc=0
  [ ${#missing_tools[@]} -eq 0 ] || { echo "gpu-nightly: missing tools: ${missing_tools[*]}" >&2; rc=2; }
  [ "$budget_sum" -le "$total_budget" ] || echo "gpu-nightly: note: --bench $bench_mode: the limits add up to $budget_sum s, over the $total_budget s budget"
  exit $rc
fi
[ ${#missing_tools[@]} -eq 0 ] || { echo "gpu-nightly: missing tools: ${missing_tools[*]}" >&2; exit 2; }
mkdir -p "$out" || exit 2
out="$(cd "$out" && pwd)"
set_bench_args

# ---- step bookkeeping ------------------------------------------------------------------------------
declare -A st_status st_secs st_detail
run_start=$SECONDS
record() {  # step status seconds detail
  st_status[$1]="$2"; st_secs[$1]="$3"; st_detail[$1]="$4"
  printf '== %-10s %-8s %4s s  %s\n' "$1" "$2" "$3" "$4"
}
skip() { record "$1" skipped 0 "$2"; }
# Runs a command under the step's remaining limit (seconds in $2), output to a log file.
# Sets step_rc (124: over the time limit) and step_secs.
run_limited() {  # limit log cmd...
  local lim="$1" log="$2"; shift 2
  local t0=$SECONDS
  if [ "$lim" -le 0 ]; then step_rc=124; step_secs=0; return; fi
  timeout --kill-after=5 "$lim" "$@" >> "$log" 2>&1
  step_rc=$?
  step_secs=$((SECONDS - t0))
}
have_gpu=0
[ -n "$gpu_name" ] && have_gpu=1

echo "gpu-nightly: $(date -u '+%Y-%m-%d %H:%M UTC'), GPU: ${gpu_name:-none}, bundle: ${bundle:-none (system packages)}, build: $build, out: $out"

# ---- configure and build -------------------------------------------------------------------------
build_ok=0
: > "$out/configure.log"
run_limited "${limit[configure]}" "$out/configure.log" cmake -S . -B "$build" "${cmake_args[@]}"
if [ $step_rc -ne 0 ]; then
  why="exit $step_rc"; [ $step_rc -eq 124 ] && why="over the ${limit[configure]} s limit"
  record configure FAILED "$step_secs" "$why; $(grep -m1 -E 'CMake Error|not found' "$out/configure.log" | cut -c1-90)"
elif ! grep -q "CUDA *: ON" "$out/configure.log"; then
  record configure FAILED "$step_secs" "CUDA is off (no nvcc found): the GPU code cannot be built"
else
  origins="$(grep -E '^--   (fmt|GTest|benchmark|BLAS) ' "$out/configure.log" | awk '{print $2 "=" $4}' | tr '\n' ' ')"
  record configure ok "$step_secs" "${origins}cuDNN $(grep -E '^--   cuDNN' "$out/configure.log" | awk '{print $4, $5}')"
  : > "$out/build.log"
  run_limited "${limit[build]}" "$out/build.log" cmake --build "$build" -j "$jobs"
  if [ $step_rc -eq 0 ]; then
    build_ok=1
    record build ok "$step_secs" "$(grep -c '^\[' "$out/build.log") steps, $(find "$build/tests" -maxdepth 1 -name 'test_*_gpu' -type f | wc -l) gpu test executables"
  else
    why="exit $step_rc"; [ $step_rc -eq 124 ] && why="over the ${limit[build]} s limit"
    record build FAILED "$step_secs" "$why; $(grep -m1 -E 'error|FAILED' "$out/build.log" | cut -c1-90)"
  fi
fi
[ -n "${st_status[build]:-}" ] || skip build "configure failed"

# ---- gpu tests -----------------------------------------------------------------------------------
if [ $build_ok -eq 0 ]; then
  skip "gpu tests" "build failed"
else
  : > "$out/ctest-gpu.log"
  t0=$SECONDS
  run_limited "${limit[gpu tests]}" "$out/ctest-gpu.log" ctest --test-dir "$build" -L gpu -E LargeGpu \
    -j 6 --timeout $test_timeout --output-on-failure
  rc1=$step_rc
  run_limited $(( ${limit[gpu tests]} - (SECONDS - t0) )) "$out/ctest-gpu.log" ctest --test-dir "$build" \
    -L gpu -R LargeGpu -j 1 --timeout $test_timeout --output-on-failure
  rc2=$step_rc
  secs=$((SECONDS - t0))
  # one summary line per ctest pass: "93% tests passed, 3 tests failed out of 45", and with no
  # failure "100% tests passed out of 5" (newer CMake) or "..., 0 tests failed out of 5" (older)
  summaries="$(grep -oE '[0-9]+% tests passed(, [0-9]+ tests? failed)? out of [0-9]+' "$out/ctest-gpu.log")"
  total="$(awk '{s += $NF} END {print s + 0}' <<< "$summaries")"
  failed="$(awk '/ failed / {s += $4} END {print s + 0}' <<< "$summaries")"
  skipped="$(grep -c '\*\*\*Skipped' "$out/ctest-gpu.log")"
  counts="$((total - failed - skipped)) passed, $failed failed, $skipped skipped of $total"
  if [ $rc1 -eq 124 ] || [ $rc2 -eq 124 ]; then
    record "gpu tests" FAILED "$secs" "over the ${limit[gpu tests]} s limit; $counts"
  elif [ $rc1 -ne 0 ] || [ $rc2 -ne 0 ]; then
    record "gpu tests" FAILED "$secs" "$counts: $(grep -E '^\s+[0-9]+ - ' "$out/ctest-gpu.log" | sed -n 1p | awk '{print $3}')"
  elif [ $have_gpu -eq 0 ]; then
    record "gpu tests" skipped "$secs" "no GPU: $skipped of $total tests skipped themselves"
  else
    record "gpu tests" ok "$secs" "$counts"
  fi
fi

# ---- compute-sanitizer ---------------------------------------------------------------------------
for tool in memcheck racecheck synccheck; do
  if [ $build_ok -eq 0 ]; then skip $tool "build failed"; continue; fi
  if [ $have_gpu -eq 0 ]; then skip $tool "no GPU"; continue; fi
  if [ -z "$sanitizer" ]; then skip $tool "compute-sanitizer not found"; continue; fi
  if [ $tool = memcheck ]; then declare -n set=memcheck_set; else declare -n set=shared_memory_set; fi
  log="$out/sanitizer-$tool.log"
  : > "$log"
  t0=$SECONDS
  runs=0 done_runs=0 failed_runs=() errors=0 timed_out=0
  for exe in $(printf '%s\n' "${!set[@]}" | sort); do
    runs=$((runs + 1))
    [ -x "$build/tests/$exe" ] || { failed_runs+=("$exe (not built)"); continue; }
    left=$(( ${limit[$tool]} - (SECONDS - t0) ))
    echo "### $tool $exe --gtest_filter=${set[$exe]}" >> "$log"
    run_limited "$left" "$log" "$sanitizer" --tool "$tool" --error-exitcode 86 --print-limit 20 \
      "$build/tests/$exe" "--gtest_filter=${set[$exe]}"
    [ $step_rc -eq 124 ] && { timed_out=1; break; }
    done_runs=$((done_runs + 1))
    n="$(grep -E 'ERROR SUMMARY: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' | sed -n 1p)"
    errors=$((errors + ${n:-0}))
    [ $step_rc -eq 0 ] || failed_runs+=("$exe (exit $step_rc)")
  done
  unset -n set
  secs=$((SECONDS - t0))
  if [ $timed_out -eq 1 ]; then
    record $tool FAILED "$secs" "over the ${limit[$tool]} s limit after $done_runs of $runs runs: shrink the subset"
  elif [ ${#failed_runs[@]} -gt 0 ]; then
    record $tool FAILED "$secs" "$errors errors; failed: ${failed_runs[*]}"
  else
    record $tool ok "$secs" "0 errors in $runs runs"
  fi
done

# ---- spush-bench and its targets ------------------------------------------------------------------
bench_ok=0
if [ $build_ok -eq 0 ]; then
  skip bench "build failed"
elif [ ! -x "$build/bin/spush-bench" ]; then
  record bench FAILED 0 "spush-bench was not built (Google Benchmark missing?)"
else
  rm -f "$out/bench.json"
  : > "$out/bench.log"
  run_limited "${limit[bench]}" "$out/bench.log" "$build/bin/spush-bench" "${bench_args[@]}"
  fails="$(grep -cE ' FAIL' "$out/bench.log")"
  cases="$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["rows"]))' "$out/bench.json" 2>/dev/null || echo 0)"
  copy="$(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["copy_gbps"])' "$out/bench.json" 2>/dev/null || echo 0)"
  if [ $step_rc -eq 124 ]; then
    record bench FAILED "$step_secs" "over the ${limit[bench]} s limit (--bench $bench_mode)"
  elif [ $step_rc -ne 0 ] || [ ! -f "$out/bench.json" ]; then
    record bench FAILED "$step_secs" "spush-bench exit $step_rc; see bench.log"
  elif [ "$fails" -gt 0 ]; then
    record bench FAILED "$step_secs" "$fails cases failed their check against the CPU"
  elif [ $have_gpu -eq 0 ]; then
    bench_ok=1
    record bench ok "$step_secs" "no GPU: $cases CPU cases only"
  else
    bench_ok=1
    record bench ok "$step_secs" "$cases cases, checks ok, copy ${copy} GB/s"
  fi
fi
if [ $bench_ok -eq 0 ]; then
  skip targets "no bench results"
elif [ $have_gpu -eq 0 ]; then
  skip targets "no GPU: not measured"
else
  summary="$(python3 - "$out/bench.json" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1])).get("targets", [])
met = [x for x in t if x["status"] == "met"]
missed = [x for x in t if x["status"] == "missed"]
other = [x for x in t if x["status"] not in ("met", "missed")]
words = [f"{len(met)} met", f"{len(missed)} missed", f"{len(other)} not measured"]
if missed:
    words.append("missed: " + "; ".join(
        f"{x['what']} {x['measured_us']:.1f} us > {x['limit_us']:.1f}" for x in missed))
print(len(missed), len(other), ", ".join(words))
EOF
)"
  read -r n_missed n_other text <<< "$summary"
  if [ "${n_missed:-0}" -gt 0 ] && [ "$targets_policy" = fail ]; then
    record targets FAILED 0 "$text"
  elif [ "${n_other:-0}" -gt 0 ] && [ "$bench_mode" = targets ]; then
    record targets FAILED 0 "$text (the target cases ran but some lines are not measured)"
  else
    record targets ok 0 "$text"
  fi
fi
if [ $bench_ok -eq 0 ]; then
  skip compare "no bench results"
elif [ $have_gpu -eq 0 ]; then
  skip compare "no GPU: no GPU timings (no baseline written)"
elif [ ! -f "$baseline" ]; then
  mkdir -p "$(dirname "$baseline")"
  cp "$out/bench.json" "$baseline"
  record compare ok 0 "no baseline: wrote $baseline from this run (review and commit it)"
else
  : > "$out/compare.txt"
  run_limited "${limit[compare]}" "$out/compare.txt" python3 bench/compare.py --baseline "$baseline" \
    --current "$out/bench.json" --tolerance "$tolerance"
  if [ $step_rc -eq 0 ]; then
    record compare ok "$step_secs" "$(tail -1 "$out/compare.txt" | cut -c1-100)"
  else
    record compare FAILED "$step_secs" "$(tail -1 "$out/compare.txt" | cut -c1-100)"
  fi
fi

# ---- spush-gossip: GPU against CPU ----------------------------------------------------------------
if [ $build_ok -eq 0 ]; then
  skip gossip "build failed"
elif [ $have_gpu -eq 0 ]; then
  skip gossip "no GPU"
else
  t0=$SECONDS
  gossip_rc=0
  for dev in cuda cpu; do
    : > "$out/gossip-$dev.log"
    # shellcheck disable=SC2086
    run_limited $(( ${limit[gossip]} - (SECONDS - t0) )) "$out/gossip-$dev.log" \
      "$build/bin/spush-gossip" $gossip_args --device $dev
    [ $step_rc -eq 0 ] || gossip_rc=$step_rc
  done
  secs=$((SECONDS - t0))
  ms() { sed -n 's/^time: .*(\([0-9.]*\) ms per round.*/\1/p' "$out/gossip-$1.log"; }
  sum_cuda="$(grep '^summary:' "$out/gossip-cuda.log")"
  if [ $gossip_rc -eq 124 ]; then
    record gossip FAILED "$secs" "over the ${limit[gossip]} s limit"
  elif [ $gossip_rc -ne 0 ]; then
    record gossip FAILED "$secs" "spush-gossip exit $gossip_rc; see gossip-cuda.log, gossip-cpu.log"
  elif [ -z "$sum_cuda" ] || [ "$sum_cuda" != "$(grep '^summary:' "$out/gossip-cpu.log")" ]; then
    record gossip FAILED "$secs" "the GPU and CPU summaries differ (gossip-cuda.log, gossip-cpu.log)"
  else
    record gossip ok "$secs" "same trajectory; $(ms cuda) ms per round on the GPU, $(ms cpu) on the CPU"
  fi
fi

# ---- details, nightly.json, summary table --------------------------------------------------------
total=$((SECONDS - run_start))
echo
echo "== details"
[ -f "$out/bench.log" ] && sed -n '/^Targets/,$p' "$out/bench.log" | head -10
[ -f "$out/compare.txt" ] && head -12 "$out/compare.txt"
[ "${st_status[gpu tests]:-}" = FAILED ] && grep -E '^\s+[0-9]+ - |Failed' "$out/ctest-gpu.log" | head -15
for tool in memcheck racecheck synccheck; do
  [ "${st_status[$tool]:-}" = FAILED ] && grep -E '^========= (Invalid|Race|Barrier|ERROR)' "$out/sanitizer-$tool.log" | head -5
done

failed=0 build_failed=0
{
  for s in "${steps[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\n' "$s" "${st_status[$s]:-skipped}" "${st_secs[$s]:-0}" "${limit[$s]}" "${st_detail[$s]:-}"
  done
} > "$out/steps.tsv"
for s in "${steps[@]}"; do
  if [ "${st_status[$s]:-}" = FAILED ]; then
    failed=1
    case "$s" in configure|build) build_failed=1 ;; esac
  fi
done
python3 - "$out" "$gpu_name" "${bundle:-}" "$build" "$bench_mode" "$total" "$total_budget" <<'EOF'
import json, os, sys
out, gpu, bundle, build, mode, total, budget = sys.argv[1:8]
steps = []
with open(os.path.join(out, "steps.tsv"), encoding="utf-8") as f:
    for line in f:
        name, status, secs, lim, detail = line.rstrip("\n").split("\t", 4)
        steps.append({"step": name, "status": status, "seconds": int(secs), "limit_s": int(lim),
                      "detail": detail})
doc = {"gpu": gpu or None, "bundle": bundle or None, "build_dir": build, "bench": mode,
       "total_seconds": int(total), "budget_seconds": int(budget), "steps": steps,
       "bench_json": "bench.json" if os.path.exists(os.path.join(out, "bench.json")) else None}
tmp = os.path.join(out, "nightly.json.tmp")
with open(tmp, "w", encoding="utf-8") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
os.replace(tmp, os.path.join(out, "nightly.json"))
EOF

echo
echo "== summary (${gpu_name:-no GPU}; ${bundle:+bundle $bundle; }logs and JSON in $out)"
printf '%-10s %-8s %6s  %s\n' step status seconds "detail"
for s in "${steps[@]}"; do
  printf '%-10s %-8s %6s  %s\n' "$s" "${st_status[$s]:-skipped}" "${st_secs[$s]:-0}" "${st_detail[$s]:-}"
done
over=""
[ $total -gt $total_budget ] && over=" (OVER the ${total_budget} s budget)"
printf '%-10s %-8s %6s  %s\n' total "$( [ $failed -eq 0 ] && echo ok || echo FAILED)" "$total" "budget ${total_budget} s${over}"
[ $build_failed -eq 1 ] && exit 3
exit $failed
