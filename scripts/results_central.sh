#!/usr/bin/env bash
# Reproduces the centralized-algorithm tables of docs/RESULTS.md (Fashion-MNIST, LeNet-5, CPU):
#  - "noniid": BSP, Gaia, FedAvg and DGC on 5 nodes, IID vs exclusive label partition (2 classes
#    per node), BatchNorm vs GroupNorm, and SkewScout on FedAvg and Gaia;
#  - "mv": SSGD-top-K and the majority-vote family on 4 IID nodes;
#  - "long" (not part of "all"): BSP and Gaia with SkewScout over 10 epochs, exclusive partition.
# Usage: scripts/results_central.sh [build-dir] [noniid|mv|all|long] ; runs land in
# runs/results-central/<row>/ (runs/results-central-long/ for "long") and the tables are printed
# by scripts/results_table.py.
# SPUSH_PARALLEL=2 runs two rows at a time with one thread each. A row whose log already ends
# with its "done:" line is kept (an interrupted sweep resumes); SPUSH_RERUN=1 runs every row.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}/bin/spush-train
which=${2:-all}
par=${SPUSH_PARALLEL:-1}
out=runs/results-central
[[ $which == long ]] && out=runs/results-central-long
threads=$(( $(nproc) / par )); (( threads >= 1 )) || threads=1
common=(--model lenet5 --dataset fashion-mnist --batch 32 --seed 1 --overwrite --quiet
        --threads "$threads")
source scripts/results_lib.sh
mkdir -p "$out"
rows=()
if [[ $which == noniid || $which == all ]]; then
  n5=(--nodes 5 --epochs 3 --lr 0.05)
  for norm in batch group; do
    for part in iid noniid; do
      [[ $part == iid ]] && p=(--partition skew --skew 0) || p=(--partition exclusive)
      rows+=("bsp_${part}_${norm}|${n5[*]} --algorithm bsp --norm $norm ${p[*]}")
      rows+=("gaia_${part}_${norm}|${n5[*]} --algorithm gaia --gaia-threshold 0.1 --lr 0.01 --norm $norm ${p[*]}")
      rows+=("fedavg_${part}_${norm}|${n5[*]} --algorithm fedavg --local-steps 20 --norm $norm ${p[*]}")
      rows+=("dgc_${part}_${norm}|${n5[*]} --algorithm dgc --density 0.001 --dgc-warmup-epochs 1 --norm $norm ${p[*]}")
    done
  done
  rows+=("fedavg_skewscout_noniid_group|${n5[*]} --algorithm fedavg --local-steps 20 --skewscout --norm group --partition exclusive")
  rows+=("gaia_skewscout_noniid_group|${n5[*]} --algorithm gaia --gaia-threshold 0.1 --lr 0.01 --skewscout --norm group --partition exclusive")
fi
if [[ $which == mv || $which == all ]]; then
  n4=(--nodes 4 --epochs 4 --lr 0.05 --norm group --partition skew --skew 0)
  rows+=("ssgd-topk_d0.01_H1|${n4[*]} --algorithm ssgd-topk --density 0.01")
  rows+=("ssgd-mv_d0.01_H1|${n4[*]} --algorithm ssgd-mv --density 0.01")
  rows+=("mv-ad_d0.01_H1|${n4[*]} --algorithm mv-ad --density 0.01")
  rows+=("mv-rs_d0.01_H1|${n4[*]} --algorithm mv-rs --density 0.01")
  rows+=("ssgd-topk_d0.01_H4|${n4[*]} --algorithm ssgd-topk --density 0.01 --local-steps 4")
  rows+=("ssgd-mv_d0.01_H4|${n4[*]} --algorithm ssgd-mv --density 0.01 --local-steps 4")
  rows+=("mv-ad_d0.01_H4|${n4[*]} --algorithm mv-ad --density 0.01 --local-steps 4")
  rows+=("mv-rs_d0.01_H4|${n4[*]} --algorithm mv-rs --density 0.01 --local-steps 4")
  rows+=("mv-ad_d0.005_H8|${n4[*]} --algorithm mv-ad --density 0.005 --local-steps 8")
  rows+=("ssgd-topk_d0.005_H8|${n4[*]} --algorithm ssgd-topk --density 0.005 --local-steps 8")
fi
if [[ $which == long ]]; then
  n5=(--nodes 5 --epochs 10 --lr 0.05 --norm group --partition exclusive)
  rows+=("bsp_noniid_group_e10|${n5[*]} --algorithm bsp")
  rows+=("gaia_skewscout_noniid_group_e10|${n5[*]} --algorithm gaia --gaia-threshold 0.1 --lr 0.01 --skewscout")
  rows+=("gaia_skewscout_fine_noniid_group_e10|${n5[*]} --algorithm gaia --gaia-threshold 0.1 --lr 0.01 --skewscout --skewscout-grid 0.001,0.002,0.005,0.01,0.02,0.05,0.1")
fi
active=0
for row in "${rows[@]}"; do
  name=${row%%|*}; flags=${row#*|}
  # shellcheck disable=SC2086
  results_row "$name" $flags &
  active=$((active + 1))
  if (( active >= par )); then wait -n; active=$((active - 1)); fi
done
wait
python3 scripts/results_table.py "$out"
