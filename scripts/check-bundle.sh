#!/usr/bin/env bash
# Acceptance check of the offline bundle (scripts/make-bundle.sh; docs/BUILDING.md, "Building
# offline / the GPU bundle"): with no network and with the system's copies of the bundled
# dependencies absent, the GPU build (CUDA on, tests and spush-bench on) configures and compiles
# from the CUDA toolkit plus the bundle alone.
#
# How: the configure and build run in new network and mount namespaces (unshare -n -m, as root).
# The network namespace has only a loopback interface, down. In the mount namespace an overlay
# is mounted on /usr whose upper layer holds whiteouts for every file of the hidden Debian
# packages (GoogleTest, Google Benchmark, fmt, nlohmann-json, zlib's headers and static library,
# OpenBLAS, libgfortran, OpenMPI: `dpkg -L`): those files do not exist for any program in the
# namespace, CMake, the compiler's implicit /usr/include and the linker's default folders
# included, so a build that succeeds cannot have used them. (CMAKE_IGNORE_PREFIX_PATH and the
# like only steer CMake's find commands; the compiler would still see /usr/include/gtest.)
# As a control, the same configure without -DSPUSH_BUNDLE must fail there.
#
# Usage: scripts/check-bundle.sh [--quick] [--build-dir DIR] [--jobs N] BUNDLE_DIR
#   --quick        configure, then compile a few representative objects (one per dependency:
#                  a gpu test, spush-bench's main, a cblas user, the zlib user, a CUDA kernel)
#                  and link nothing: about 2 minutes on 2 cores (CI); default: build everything
#                  (about 10 minutes on 2 cores), run one CPU test and check the libraries that
#                  spush-bench loads
#   --build-dir D  build folder (default build-bundle-check; emptied first)
#   --jobs N       parallel jobs (default: nproc)
# Exit status: 0 passed; 1 the check failed (the log says where); 2 usage error or the check
# cannot run here (not root, no unshare, no overlay support, no nvcc).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

quick=0
build="build-bundle-check"
jobs="$(nproc)"
bundle=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --build-dir) [ $# -ge 2 ] || { echo "check-bundle: --build-dir needs a value" >&2; exit 2; }
                 build="$2"; shift 2 ;;
    --jobs) [ $# -ge 2 ] || { echo "check-bundle: --jobs needs a value" >&2; exit 2; }
            jobs="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    --inside) shift; break ;;  # internal: the part that runs in the namespaces
    -*) echo "check-bundle: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) [ -z "$bundle" ] || { echo "check-bundle: one BUNDLE_DIR only" >&2; exit 2; }
       bundle="$1"; shift ;;
  esac
done

# Packages whose files are hidden inside the namespace (those installed here).
hidden_pkgs=(libgtest-dev libgmock-dev googletest libbenchmark-dev libbenchmark1debian
             libfmt-dev libfmt9 nlohmann-json3-dev zlib1g-dev libopenblas-dev
             libopenblas-pthread-dev libopenblas0-pthread libopenblas0 libblas-dev libblas3
             liblapack-dev liblapack3 libgfortran5 libquadmath0 libopenmpi-dev libopenmpi3
             openmpi-bin mpi-default-dev mpi-default-bin)

if [ "${1:-}" = "__inside__" ]; then
  # ---- inside the namespaces: $2 = state folder -------------------------------------------------
  state="$2"
  # shellcheck disable=SC1091
  . "$state/env"
  mount -t overlay overlay -o "lowerdir=/usr,upperdir=$state/upper,workdir=$state/work" /usr
  echo "== namespace: network interfaces: $(ip -o link show | awk -F': ' '{print $2 " (" ($3 ~ /UP/ ? "up" : "down") ")"}' | tr '\n' ' ')"
  if [ "$(ip -o link show | wc -l)" -ne 1 ] || ip -o link show | grep -qv ': lo:'; then
    echo "check-bundle: the namespace has a network interface besides lo" >&2; exit 1
  fi
  missing=0
  for f in /usr/include/gtest/gtest.h /usr/include/fmt/format.h /usr/include/zlib.h \
           /usr/include/nlohmann/json.hpp /usr/include/benchmark/benchmark.h \
           /usr/include/x86_64-linux-gnu/cblas.h /usr/lib/x86_64-linux-gnu/libgtest.a \
           /usr/lib/x86_64-linux-gnu/libopenblas.so /usr/lib/x86_64-linux-gnu/libfmt.so; do
    [ -e "$f" ] && { echo "check-bundle: $f is still visible in the namespace" >&2; missing=1; }
  done
  [ $missing -eq 0 ] || exit 1
  echo "== namespace: $HIDDEN_FILES files of ${#hidden_pkgs[@]} packages hidden under /usr (e.g. /usr/include/gtest/gtest.h: absent)"
  cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90
              -DSPUSH_ENABLE_CUDA=ON -DSPUSH_BUILD_TESTS=ON -DSPUSH_BUILD_BENCH=ON)
  echo "== control: configure without the bundle (must fail: the system packages are hidden)"
  rm -rf "$BUILD.control"
  if cmake -S "$REPO" -B "$BUILD.control" "${cmake_args[@]}" > "$state/control.log" 2>&1; then
    echo "check-bundle: the configure without the bundle succeeded: the hiding does not work" >&2
    exit 1
  fi
  echo "   failed as expected: $(grep -m1 -E 'Could not find|not found|NOTFOUND' "$state/control.log" | sed 's/^ *//' | cut -c1-110)"
  rm -rf "$BUILD.control"
  echo "== configure with -DSPUSH_BUNDLE=$BUNDLE"
  t0=$SECONDS
  if ! cmake -S "$REPO" -B "$BUILD" "${cmake_args[@]}" -DSPUSH_BUNDLE="$BUNDLE" > "$state/configure.log" 2>&1; then
    tail -40 "$state/configure.log"; echo "check-bundle: configure with the bundle failed" >&2; exit 1
  fi
  sed -n '/spush .* configuration/,/tests \/ bench/p' "$state/configure.log" | sed 's/^-- /   /'
  grep -q "CUDA *: ON" "$state/configure.log" || { echo "check-bundle: CUDA is off" >&2; exit 1; }
  grep -q "MPI *: OFF" "$state/configure.log" || { echo "check-bundle: MPI was found although hidden" >&2; exit 1; }
  echo "   configure: $((SECONDS - t0)) s"
  t0=$SECONDS
  if [ "$QUICK" = 1 ]; then
    objs=(tests/CMakeFiles/test_kernels_topk_gpu.dir/kernels/topk_gpu_test.cpp.o
          tests/CMakeFiles/test_kernels_topk.dir/kernels/topk_test.cpp.o
          bench/CMakeFiles/spush-bench.dir/__/apps/spush-bench/main.cpp.o
          nets/CMakeFiles/spush_nets.dir/src/layers_dense.cpp.o
          nets/CMakeFiles/spush_nets.dir/src/data.cpp.o
          kernels/CMakeFiles/spush_kernels.dir/cuda/topk.cu.o)
    echo "== build (quick): ${#objs[@]} objects: gtest + CUDA headers, gtest, benchmark + fmt + json, cblas, zlib, nvcc"
    if ! ninja -C "$BUILD" -j "$JOBS" "${objs[@]}" > "$state/build.log" 2>&1; then
      grep -E "error|FAILED" "$state/build.log" | head -30; echo "check-bundle: build failed" >&2; exit 1
    fi
  else
    echo "== build (everything)"
    if ! cmake --build "$BUILD" -j "$JOBS" > "$state/build.log" 2>&1; then
      grep -E "error|FAILED" "$state/build.log" | head -30; echo "check-bundle: build failed" >&2; exit 1
    fi
    echo "   $(grep -c '^\[' "$state/build.log") build steps, $(find "$BUILD" -name '*.cu.o' | wc -l) CUDA objects"
    echo "== run: CPU top-K tests (bundle's GoogleTest, OpenBLAS, fmt at run time)"
    if ! ctest --test-dir "$BUILD" -L cpu -R 'Topk' --output-on-failure > "$state/ctest.log" 2>&1; then
      tail -30 "$state/ctest.log"; echo "check-bundle: the CPU top-K tests failed" >&2; exit 1
    fi
    grep -E "tests passed|tests failed" "$state/ctest.log" | sed 's/^/   /'
    echo "== shared libraries of spush-train and spush-bench (all from the bundle)"
    ldd "$BUILD/bin/spush-train" "$BUILD/bin/spush-bench" > "$state/ldd.txt"
    grep -E 'fmt|benchmark|openblas|gfortran|quadmath|not found' "$state/ldd.txt" |
      awk '{print "   " $1 " => " $3}' | sort -u
    for lib in libfmt libbenchmark libopenblas libgfortran libquadmath; do
      if ! grep -E "^[[:space:]]*$lib\." "$state/ldd.txt" | grep -q "=> $BUNDLE/"; then
        echo "check-bundle: $lib is not loaded from the bundle" >&2; exit 1
      fi
    done
    if grep -q "not found" "$state/ldd.txt"; then
      echo "check-bundle: a shared library is not found" >&2; exit 1
    fi
    "$BUILD/bin/spush-train" --help > "$state/run.log" 2>&1 ||
      { cat "$state/run.log"; echo "check-bundle: spush-train --help failed" >&2; exit 1; }
    echo "   spush-train --help runs (OpenBLAS, libgfortran and fmt loaded from the bundle)"
  fi
  echo "   build: $((SECONDS - t0)) s"
  exit 0
fi

# ---- outside: checks, the hidden-file overlay, then the namespaces --------------------------------
[ -n "$bundle" ] || { echo "check-bundle: missing BUNDLE_DIR (see --help)" >&2; exit 2; }
[ -f "$bundle/bundle.cmake" ] || { echo "check-bundle: $bundle has no bundle.cmake (make it with scripts/make-bundle.sh)" >&2; exit 2; }
bundle="$(cd "$bundle" && pwd)"
case "$jobs" in ''|*[!0-9]*) echo "check-bundle: --jobs '$jobs' is not a number" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "check-bundle: needs root (unshare -n -m, mount)" >&2; exit 2; }
command -v unshare >/dev/null || { echo "check-bundle: unshare not found (util-linux)" >&2; exit 2; }
[ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null ||
  { echo "check-bundle: no nvcc: the GPU build cannot be checked here" >&2; exit 2; }
case "$bundle/" in /usr/*) echo "check-bundle: the bundle must not live under /usr" >&2; exit 2 ;; esac
mkdir -p "$build"
build="$(cd "$build" && pwd)"
state="$(mktemp -d "${TMPDIR:-/tmp}/spush-check-bundle.XXXXXX")"
trap 'rm -rf "$state"' EXIT
mkdir -p "$state/upper" "$state/work"

# Whiteouts (character devices 0/0) for every file and link of the hidden packages under /usr.
# Debian 12 merges /lib, /bin, /sbin into /usr: their paths are mapped there.
n=0
for p in "${hidden_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || continue
  while IFS= read -r f; do
    case "$f" in /lib/*|/lib64/*|/bin/*|/sbin/*) f="/usr$f" ;; esac
    case "$f" in /usr/*) ;; *) continue ;; esac
    if [ -L "$f" ] || [ -f "$f" ]; then
      rel="${f#/usr/}"
      mkdir -p "$state/upper/$(dirname "$rel")"
      [ -e "$state/upper/$rel" ] || { mknod "$state/upper/$rel" c 0 0; n=$((n + 1)); }
    fi
  done < <(dpkg -L "$p")
done
[ $n -gt 0 ] || echo "check-bundle: note: none of the hidden packages is installed here"
cat > "$state/env" <<EOF
REPO='$repo'
BUILD='$build'
BUNDLE='$bundle'
QUICK='$quick'
JOBS='$jobs'
HIDDEN_FILES='$n'
EOF
rm -rf "$build"
echo "check-bundle: bundle $bundle ($(du -sh --exclude=debs "$bundle" | cut -f1)), build folder $build, $( [ $quick = 1 ] && echo quick || echo full) check"
t_start=$SECONDS
rc=0
unshare -n -m --propagation private bash "$0" --inside __inside__ "$state" || rc=$?
cp "$state"/*.log "$build/" 2>/dev/null || true
if [ $rc -eq 0 ]; then
  echo "check-bundle: PASSED in $((SECONDS - t_start)) s (logs: $build/*.log)"
else
  echo "check-bundle: FAILED after $((SECONDS - t_start)) s (logs: $build/*.log)" >&2
  exit 1
fi
