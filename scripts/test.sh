#!/usr/bin/env bash
# Installs dependencies, builds spush (with CUDA when nvcc is found) and runs the whole test
# suite. GPU tests skip on machines without a usable GPU. Usage: scripts/test.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
scripts/setup.sh
jobs=${SPUSH_JOBS:-$(nproc)}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${SPUSH_CMAKE_ARGS:-}
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 900
