#!/usr/bin/env bash
# Reproduces the table of docs/RESULTS.md: Fashion-MNIST, 4 nodes, LeNet-5, CPU.
# Usage: scripts/results.sh [build-dir] ; runs land in runs/results/<row>/ (logs beside them;
# finished rows are kept, scripts/results_lib.sh) and the table is printed by
# scripts/results_table.py at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}/bin/spush-train
common=(--nodes 4 --topology ring --model lenet5 --dataset fashion-mnist --epochs 4 --batch 32
        --lr 0.05 --seed 1 --overwrite --quiet)
out=runs/results
mkdir -p "$out"
source scripts/results_lib.sh
for s in 0 0.8; do
  # density 1 is no compression: the full model, eta = 1
  results_row "sp_d1_s${s}" --algorithm sparsepush --compressor identity --density 1 --norm group --skew "$s"
  for d in 0.1 0.01 0.001; do
    results_row "sp_d${d}_s${s}" --algorithm sparsepush --density "$d" --norm group --skew "$s"
  done
  for d in 0.01 0.001; do
    results_row "scsp_d${d}_s${s}" --algorithm scsp --density "$d" --norm group --skew "$s"
  done
done
results_row "sp_d0.01_s0.8_bn" --algorithm sparsepush --density 0.01 --norm batch --skew 0.8
results_row "deepsqueeze_d0.01_s0" --algorithm deepsqueeze --topology bidir-ring --density 0.01 --norm group --skew 0
results_row "choco_d0.01_s0" --algorithm choco --density 0.01 --norm group --skew 0
results_row "sgp_s0" --algorithm sgp --norm group --skew 0
python3 scripts/results_table.py runs/results
