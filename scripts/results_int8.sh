#!/usr/bin/env bash
# Reproduces the 8-bit training table of docs/RESULTS.md ("8-bit training"): Fashion-MNIST,
# 8 nodes, CPU; Deep-Squeeze, CHOCO-SGD and Sparse-Push top-1%, label skew 0 and 0.8, each at
# --precision fp32 and int8.
#   lenet:  LeNet-5 + GroupNorm (the main job's network), 4 epochs
#   resnet: ResNet-20 + Range EvoNorm, 2 epochs (SPUSH_RESNET_EPOCHS to change), accuracy on
#           5,000 of the 10,000 test images (each of the 8 nodes evaluates them every epoch)
# SPUSH_ALGOS (default "deepsqueeze choco sparsepush") and SPUSH_SKEWS (default "0 0.8") select
# rows.
# Usage: scripts/results_int8.sh [build-dir] [lenet|resnet|all] ; runs land in
# runs/results-int8/<row>/ and the table (accuracy and seconds per epoch) is printed by
# scripts/results_table.py --precision. A row whose log ends with its "done:" line is kept (an
# interrupted sweep resumes); SPUSH_RERUN=1 runs every row again.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}/bin/spush-train
which=${2:-all}
out=runs/results-int8
common=(--nodes 8 --dataset fashion-mnist --batch 32 --seed 1 --overwrite --quiet)
source scripts/results_lib.sh
mkdir -p "$out"
algos=("deepsqueeze|--algorithm deepsqueeze --topology bidir-ring --density 0.01"
       "choco|--algorithm choco --density 0.01"
       "sparsepush|--algorithm sparsepush --density 0.01")
models=()
[[ $which == lenet || $which == all ]] &&
  models+=("lenet5|--model lenet5 --norm group --epochs 4 --lr 0.05")
[[ $which == resnet || $which == all ]] &&
  models+=("resnet20|--model resnet20 --norm rangeevo --epochs ${SPUSH_RESNET_EPOCHS:-2} --lr 0.05 --eval-samples 5000")
for m in "${models[@]}"; do
  for a in "${algos[@]}"; do
    [[ " ${SPUSH_ALGOS:-deepsqueeze choco sparsepush} " == *" ${a%%|*} "* ]] || continue
    for s in ${SPUSH_SKEWS:-0 0.8}; do
      for p in fp32 int8; do
        # shellcheck disable=SC2086
        results_row "${m%%|*}_${a%%|*}_s${s}_${p}" ${m#*|} ${a#*|} --skew "$s" --precision "$p"
      done
    done
  done
done
python3 scripts/results_table.py --precision "$out"
