#!/usr/bin/env bash
# Training throughput of spush-train, measured side by side: the main job (configs/main.json)
# with a baseline binary and the current one, alternating run by run so that both see the same
# machine load, then the current binary under `mpirun -np N`. Prints one row per setup (median
# training images/s over all epochs of all runs, mean node test accuracy of each run, wall
# seconds) and the ratios, and writes them as JSON.
#
# Usage: bench/train_throughput.sh --baseline OLD/spush-train [--current build/bin/spush-train]
#          [--runs 3] [--np 2] [--epochs 6] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
baseline="" current=build/bin/spush-train runs=3 np=2 epochs=6 out=runs/train-throughput
while [ $# -gt 0 ]; do
  case "$1" in
    --baseline) baseline=$2; shift 2 ;;
    --current) current=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 --baseline BIN [--current BIN] [--runs N] [--np N] [--epochs N] [--out DIR]" >&2
       exit 2 ;;
  esac
done
[ -x "$baseline" ] || { echo "train_throughput.sh: --baseline must name a spush-train binary" >&2; exit 2; }
[ -x "$current" ] || { echo "train_throughput.sh: $current is not built" >&2; exit 2; }
mkdir -p "$out"
mpi=(mpirun --oversubscribe -np "$np")
[ "$(id -u)" -eq 0 ] && mpi=(mpirun --allow-run-as-root --oversubscribe -np "$np")

run() {  # run NAME COMMAND...: one training run into $out/NAME
  local name=$1; shift
  rm -rf "${out:?}/$name"
  local t0; t0=$(date +%s.%N)
  "$@" --config configs/main.json --epochs "$epochs" --quiet --out "$out/$name" > "$out/$name.log" 2>&1
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }' > "$out/$name.seconds"
  echo "  $name: $(tail -1 "$out/$name.log" | cut -c1-100)"
}

echo "== $runs runs each, alternating: baseline, current, current under ${mpi[*]}"
for i in $(seq 1 "$runs"); do
  run "baseline-$i" "$baseline"
  run "current-$i" "$current"
  run "mpi-$i" "${mpi[@]}" "$current"
done

python3 - "$out" "$runs" "$np" "$baseline" "$current" <<'EOF'
import json, statistics, sys
out, runs, np_, baseline, current = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rows = {}
for setup in ("baseline", "current", "mpi"):
    rates, accs, walls = [], [], []
    for i in range(1, runs + 1):
        lines = [json.loads(l) for l in open(f"{out}/{setup}-{i}/metrics.jsonl")]
        rates += [m["images_per_sec"] for m in lines]
        accs.append(lines[-1]["test_acc_mean"])
        walls.append(float(open(f"{out}/{setup}-{i}.seconds").read()))
    rows[setup] = {"median_images_per_sec": statistics.median(rates),
                   "test_acc_mean": accs, "wall_seconds_median": statistics.median(walls)}
rows["ratio_current_to_baseline"] = (rows["current"]["median_images_per_sec"] /
                                     rows["baseline"]["median_images_per_sec"])
rows["ratio_mpi_to_current"] = (rows["mpi"]["median_images_per_sec"] /
                                rows["current"]["median_images_per_sec"])
rows["np"] = np_
rows["runs"] = runs
rows["baseline_binary"] = baseline
rows["current_binary"] = current
print(f"{'setup':<22} {'img/s (median)':>15} {'wall s (median)':>16}  mean node test accuracy per run")
for s, label in (("baseline", "baseline"), ("current", "current"), ("mpi", f"current, mpirun -np {np_}")):
    r = rows[s]
    print(f"{label:<22} {r['median_images_per_sec']:>15.0f} {r['wall_seconds_median']:>16.1f}  "
          + ", ".join(f"{100 * a:.2f}%" for a in r["test_acc_mean"]))
print(f"current / baseline: {rows['ratio_current_to_baseline']:.3f}; "
      f"mpirun -np {np_} / current: {rows['ratio_mpi_to_current']:.3f}")
json.dump(rows, open(f"{out}/throughput.json", "w"), indent=2)
print(f"wrote {out}/throughput.json")
EOF
