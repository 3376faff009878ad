#!/usr/bin/env bash
# The main job: installs dependencies, builds spush-train and runs configs/main.json
# (4 nodes, directed ring, Sparse-Push top-1%, LeNet-5 + GroupNorm, Fashion-MNIST, IID).
# Extra arguments are passed to spush-train (e.g. --epochs 2 --out runs/try).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SPUSH_BUILD_DIR:-build}
scripts/setup.sh
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${SPUSH_CMAKE_ARGS:-} > "$build.configure.log" \
  || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" --target spush-train
exec "$build/bin/spush-train" --config configs/main.json --overwrite "$@"
