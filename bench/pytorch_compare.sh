#!/usr/bin/env bash
# spush-train against a PyTorch loop over the same replicas (bench/pytorch_loop.py), side by
# side: for each model, R rounds alternating one PyTorch measurement and one spush-train epoch,
# 4 nodes x batch 32, GroupNorm, Sparse-Push top-1 %, Fashion-MNIST, 2 threads each. spush's
# rate is the training images/s of its epoch (metrics.jsonl, evaluation excluded); PyTorch's is
# images/s over a fixed number of steps after warm-up. Prints the medians and the ratio and
# writes OUT/compare.json. PyTorch is not a dependency of spush: see bench/pytorch_loop.py for
# how to install it outside the repository.
#
# Usage: bench/pytorch_compare.sh [--python PY] [--spush BIN] [--runs R] [--models "resnet20 lenet5"]
#          [--precision fp32|int8] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
py=/tmp/torchvenv/bin/python spush=build/bin/spush-train runs=3 models="resnet20 lenet5"
precision=fp32 out=runs/pytorch-compare
while [ $# -gt 0 ]; do
  case "$1" in
    --python) py=$2; shift 2 ;;
    --spush) spush=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --precision) precision=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--python PY] [--spush BIN] [--runs R] [--models LIST] [--precision P] [--out DIR]" >&2
       exit 2 ;;
  esac
done
[ -x "$spush" ] || { echo "pytorch_compare.sh: $spush is not built" >&2; exit 2; }
"$py" -c "import torch" 2>/dev/null || {
  echo "pytorch_compare.sh: $py cannot import torch (see bench/pytorch_loop.py)" >&2; exit 2; }
mkdir -p "$out"
export OMP_NUM_THREADS=2
for ((r = 1; r <= runs; r++)); do
  for m in $models; do
    steps=300 warm=30
    [ "$m" = lenet5 ] || { steps=40; warm=5; }
    "$py" bench/pytorch_loop.py --model "$m" --norm group --steps "$steps" --warmup "$warm" \
      --threads 2 --json "$out/torch-$m-$r.json" > "$out/torch-$m-$r.log"
    "$spush" --model "$m" --norm group --nodes 4 --batch 32 --epochs 1 --algorithm sparsepush \
      --density 0.01 --eval-samples 256 --threads 2 --precision "$precision" --quiet --overwrite \
      --out "$out/spush-$m-$r" > "$out/spush-$m-$r.log"
    echo "round $r $m: torch $(python3 -c "import json;print(round(json.load(open('$out/torch-$m-$r.json'))['median_images_per_sec']))") img/s," \
         "spush $(python3 -c "import json;print(round([json.loads(l) for l in open('$out/spush-$m-$r/metrics.jsonl')][-1]['images_per_sec']))") img/s"
  done
done
python3 - "$out" "$runs" "$models" "$precision" <<'PY'
import json, statistics, sys
out, runs, models, precision = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4]
res = {"precision": precision, "models": {}}
print(f"{'model':<10} {'PyTorch img/s':>14} {'spush img/s':>12} {'spush / PyTorch':>16}  (medians of {runs})")
for m in models:
    t = [json.load(open(f"{out}/torch-{m}-{r}.json"))["median_images_per_sec"] for r in range(1, runs + 1)]
    s = [[json.loads(l) for l in open(f"{out}/spush-{m}-{r}/metrics.jsonl")][-1]["images_per_sec"]
         for r in range(1, runs + 1)]
    ratios = [b / a for a, b in zip(t, s)]
    res["models"][m] = {"torch": t, "spush": s, "ratio_per_round": ratios,
                        "torch_median": statistics.median(t), "spush_median": statistics.median(s),
                        "ratio_median": statistics.median(ratios)}
    print(f"{m:<10} {statistics.median(t):>14.0f} {statistics.median(s):>12.0f} "
          f"{statistics.median(ratios):>16.2f}")
json.dump(res, open(f"{out}/compare.json", "w"), indent=2)
PY
