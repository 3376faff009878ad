#!/usr/bin/env bash
# Makes the offline dependency bundle for the GPU build (docs/BUILDING.md, "Building offline /
# the GPU bundle"): every host build and test dependency that is not part of the CUDA toolkit,
# as Debian 12 packages fetched with `apt-get download`, unpacked with `dpkg-deb -x` into
# OUT_DIR/usr and trimmed (no docs, no sources, no static OpenBLAS, no LAPACK), plus
# OUT_DIR/bundle.cmake (read by `cmake -DSPUSH_BUNDLE=OUT_DIR`), OUT_DIR/README.md and
# OUT_DIR/MANIFEST.txt. Needs apt-get with current package lists and network access; installs
# nothing on this machine (patchelf is unpacked into a temporary folder and run from there).
#
# Contents: GoogleTest + GoogleMock (static), Google Benchmark (shared), fmt (shared),
# nlohmann-json (headers), zlib (static), OpenBLAS (pthread build, shared, with cblas.h and the
# libgfortran / libquadmath it needs). OpenMPI is left out: MPI is optional for the build.
# The shared libraries find each other through RUNPATH $ORIGIN, so binaries linked against the
# bundle run without LD_LIBRARY_PATH (CMake puts the bundle's lib folder in their RUNPATH).
#
# Usage: scripts/make-bundle.sh [--keep-debs] [--max-mb N] OUT_DIR
#   OUT_DIR    created (must be absent or empty); put it outside the repository or under a
#              git-ignored folder such as build-bundle/
#   --keep-debs  keep the downloaded .deb files in OUT_DIR/debs (not counted in the size check)
#   --max-mb N   fail when the bundle is larger than N MB (default 60)
# Exit status: 0 bundle written; 1 a download, unpack or check failed; 2 usage error.
set -euo pipefail

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; }

keep_debs=0
max_mb=60
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep-debs) keep_debs=1; shift ;;
    --max-mb) [ $# -ge 2 ] || { echo "make-bundle: --max-mb needs a value" >&2; exit 2; }
              max_mb="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "make-bundle: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) [ -z "$out" ] || { echo "make-bundle: one OUT_DIR only (got '$out' and '$1')" >&2; exit 2; }
       out="$1"; shift ;;
  esac
done
[ -n "$out" ] || { echo "make-bundle: missing OUT_DIR (see --help)" >&2; exit 2; }
case "$max_mb" in ''|*[!0-9]*) echo "make-bundle: --max-mb '$max_mb' is not a number" >&2; exit 2 ;; esac

for tool in apt-get dpkg-deb dpkg-architecture find sha256sum; do
  command -v "$tool" >/dev/null || { echo "make-bundle: '$tool' not found (Debian/Ubuntu tools needed)" >&2; exit 1; }
done
arch="$(dpkg-architecture -qDEB_HOST_MULTIARCH)"   # x86_64-linux-gnu
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  echo "make-bundle: '$out' exists and is not empty; give a new folder" >&2; exit 1
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/spush-bundle.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Package -> why it is there. Runtime packages come with the -dev ones that link against them.
packages=(
  libgtest-dev libgmock-dev            # GoogleTest / GoogleMock: headers, static libs, CMake config
  libbenchmark-dev libbenchmark1debian # Google Benchmark: headers, CMake config, libbenchmark.so.1
  libfmt-dev libfmt9                   # fmt: headers, CMake config, libfmt.so.9
  nlohmann-json3-dev                   # nlohmann-json: headers, CMake config
  zlib1g-dev                           # zlib: headers, libz.a (linked statically)
  libopenblas-pthread-dev              # OpenBLAS: cblas.h, openblas_config.h
  libopenblas0-pthread                 # OpenBLAS: libopenblas.so.0 (DYNAMIC_ARCH build)
  libgfortran5 libquadmath0            # needed by libopenblas.so.0
)
names=()
for p in "${packages[@]}"; do names+=("$p"); done

echo "make-bundle: downloading ${#names[@]} packages with apt-get download"
mkdir -p "$work/debs" "$work/tools"
download() { (cd "$work/debs" && apt-get download "${names[@]}" patchelf) > "$work/download.log" 2>&1; }
if ! download; then
  # Package lists missing or stale: refresh them once when allowed to (root), then retry.
  if [ "$(id -u)" -eq 0 ] && apt-get update -qq > "$work/update.log" 2>&1 && download; then
    echo "make-bundle: (ran apt-get update first)"
  else
    cat "$work/download.log" >&2
    echo "make-bundle: apt-get download failed; run 'apt-get update' and check the network" >&2
    exit 1
  fi
fi

# patchelf runs from a temporary unpack: nothing is installed on this machine.
dpkg-deb -x "$work"/debs/patchelf_*.deb "$work/tools"
patchelf="$work/tools/usr/bin/patchelf"
"$patchelf" --version >/dev/null

echo "make-bundle: unpacking into $out/usr"
: > "$work/manifest"
for p in "${names[@]}"; do
  deb="$(find "$work/debs" -name "${p}_*.deb" | sed -n 1p)"
  [ -n "$deb" ] || { echo "make-bundle: no .deb downloaded for $p" >&2; exit 1; }
  dpkg-deb -x "$deb" "$out"
  printf '%-26s %-24s %s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" \
    "$(sha256sum "$deb" | cut -c1-16)" >> "$work/manifest"
done

# ---- trim: docs, sources, what the build does not use, files with absolute paths ---------------
lib="$out/usr/lib/$arch"
ob="$lib/openblas-pthread"
rm -rf "$out/usr/share/doc" "$out/usr/share/man" "$out/usr/share/lintian" "$out/usr/src" \
       "$out/usr/share/pkgconfig" "$lib/pkgconfig" "$ob/pkgconfig" "$ob/cmake"
# OpenBLAS: the static library (58 MB), LAPACK and the reference-BLAS names are not used.
rm -f "$ob"/libopenblasp-r*.a "$ob"/libopenblas.a "$ob"/libblas.* "$ob"/liblapack.*
# zlib1g-dev's libz.so points at /lib/<arch>/libz.so.1.2.13 of the machine that installs it:
# the bundle links zlib statically instead (bundle.cmake sets ZLIB_USE_STATIC_LIBS).
rm -f "$lib/libz.so"
# OpenBLAS under the plain names that FindBLAS (BLA_VENDOR OpenBLAS) and the loader look for;
# Debian makes these with update-alternatives, which an unpacked package does not run.
ln -sfn openblas-pthread/libopenblas.so "$lib/libopenblas.so"
ln -sfn openblas-pthread/libopenblas.so.0 "$lib/libopenblas.so.0"
ln -sfn openblas-pthread/cblas.h "$out/usr/include/$arch/cblas.h"
ln -sfn openblas-pthread/openblas_config.h "$out/usr/include/$arch/openblas_config.h"
# Each shared library finds its own dependencies in the bundle (before the system's copies).
for f in "$ob"/libopenblasp-r*.so; do "$patchelf" --set-rpath '$ORIGIN:$ORIGIN/..' "$f"; done
for f in "$lib"/libgfortran.so.5.* "$lib"/libbenchmark.so.*.* "$lib"/libfmt.so.*.*; do
  [ -L "$f" ] || "$patchelf" --set-rpath '$ORIGIN' "$f"
done

# ---- checks -------------------------------------------------------------------------------------
fail=0
while IFS= read -r link; do
  if [ ! -e "$link" ]; then echo "make-bundle: dangling link ${link#"$out"/} -> $(readlink "$link")" >&2; fail=1; fi
  case "$(readlink "$link")" in /*) echo "make-bundle: absolute link ${link#"$out"/}" >&2; fail=1 ;; esac
done < <(find "$out/usr" -type l)
# CMake package files must locate everything relative to themselves (no /usr/... paths; CMake's
# own "loaded through a cross-prefix symbolic link" check compares with the original prefix and
# only uses it when the file really is there, so those lines are fine).
if grep -rnE '"/usr/|[ ;(]/usr/(include|lib)' --include='*.cmake' "$out/usr" |
   grep -vE '_realOrig|set\(_IMPORT_PREFIX "/usr/|:[0-9]+:[[:space:]]*#' > "$work/abs"; then
  echo "make-bundle: CMake files with absolute /usr paths:" >&2; cat "$work/abs" >&2; fail=1
fi
for need in "include/gtest/gtest.h" "include/gmock/gmock.h" "include/benchmark/benchmark.h" \
            "include/fmt/format.h" "include/nlohmann/json.hpp" "include/zlib.h" \
            "include/$arch/openblas-pthread/cblas.h" "lib/$arch/libgtest.a" "lib/$arch/libgmock.a" \
            "lib/$arch/libz.a" "lib/$arch/libopenblas.so.0" "lib/$arch/libgfortran.so.5" \
            "lib/$arch/libquadmath.so.0" "lib/$arch/libfmt.so" "lib/$arch/libbenchmark.so" \
            "lib/$arch/cmake/GTest/GTestConfig.cmake" "lib/$arch/cmake/benchmark/benchmarkConfig.cmake" \
            "lib/$arch/cmake/fmt/fmt-config.cmake" "share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake"; do
  [ -e "$out/usr/$need" ] || { echo "make-bundle: missing usr/$need" >&2; fail=1; }
done
[ $fail -eq 0 ] || { echo "make-bundle: the bundle in $out failed its checks" >&2; exit 1; }

version_of() { awk -v p="$1" '$1 == p {print $2}' "$work/manifest"; }
upstream() { version_of "$1" | sed -E 's/^[0-9]+://; s/[-+~].*$//; s/\.dfsg.*$//'; }

# ---- bundle.cmake -------------------------------------------------------------------------------
made_on="$(. /etc/os-release && echo "$PRETTY_NAME"), $(getconf GNU_LIBC_VERSION)"
{
  cat <<EOF
# spush offline dependency bundle, made by scripts/make-bundle.sh on $(date -u +%Y-%m-%d)
# from $made_on packages ($arch).
# Used by spush's CMakeLists.txt when configured with -DSPUSH_BUNDLE=<this folder>
# (cmake/SpushBundle.cmake includes this file before any find_package). Another project can
# include() it before its own find_package calls. It only sets variables: prefixes and hints
# that make find_package(GTest), find_package(benchmark), find_package(fmt),
# find_package(nlohmann_json), find_package(ZLIB), find_package(BLAS) with BLA_VENDOR OpenBLAS
# and find_path(... cblas.h) find this folder's copies first.
set(SPUSH_BUNDLE_FORMAT 1)
set(SPUSH_BUNDLE_ROOT "\${CMAKE_CURRENT_LIST_DIR}")
set(SPUSH_BUNDLE_PREFIX "\${CMAKE_CURRENT_LIST_DIR}/usr")
set(SPUSH_BUNDLE_ARCH "$arch")
set(SPUSH_BUNDLE_MADE_ON "$made_on")
# Dependency -> upstream version in this bundle.
set(SPUSH_BUNDLE_VERSION_GTest "$(upstream libgtest-dev)")
set(SPUSH_BUNDLE_VERSION_benchmark "$(upstream libbenchmark-dev)")
set(SPUSH_BUNDLE_VERSION_fmt "$(upstream libfmt-dev)")
set(SPUSH_BUNDLE_VERSION_nlohmann_json "$(upstream nlohmann-json3-dev)")
set(SPUSH_BUNDLE_VERSION_ZLIB "$(upstream zlib1g-dev)")
set(SPUSH_BUNDLE_VERSION_OpenBLAS "$(upstream libopenblas0-pthread)")
set(SPUSH_BUNDLE_PACKAGES
EOF
  awk '{printf "  \"%s %s\"\n", $1, $2}' "$work/manifest"
  cat <<'EOF'
)
if(NOT CMAKE_LIBRARY_ARCHITECTURE STREQUAL SPUSH_BUNDLE_ARCH AND CMAKE_LIBRARY_ARCHITECTURE)
  message(FATAL_ERROR "spush bundle ${SPUSH_BUNDLE_ROOT} holds ${SPUSH_BUNDLE_ARCH} libraries, "
                      "but this build targets ${CMAKE_LIBRARY_ARCHITECTURE}")
endif()
list(PREPEND CMAKE_PREFIX_PATH "${SPUSH_BUNDLE_PREFIX}")
set(_spush_bundle_lib "${SPUSH_BUNDLE_PREFIX}/lib/${SPUSH_BUNDLE_ARCH}")
set(GTest_DIR "${_spush_bundle_lib}/cmake/GTest" CACHE PATH "GTest config (spush bundle)" FORCE)
set(benchmark_DIR "${_spush_bundle_lib}/cmake/benchmark" CACHE PATH "benchmark config (spush bundle)" FORCE)
set(fmt_DIR "${_spush_bundle_lib}/cmake/fmt" CACHE PATH "fmt config (spush bundle)" FORCE)
set(nlohmann_json_DIR "${SPUSH_BUNDLE_PREFIX}/share/cmake/nlohmann_json" CACHE PATH
    "nlohmann_json config (spush bundle)" FORCE)
set(ZLIB_ROOT "${SPUSH_BUNDLE_PREFIX}")
set(ZLIB_USE_STATIC_LIBS ON)  # the bundle has libz.a only
set(BLAS_ROOT "${SPUSH_BUNDLE_PREFIX}")
set(BLA_VENDOR OpenBLAS)
set(SPUSH_BUNDLE_CBLAS_INCLUDE "${SPUSH_BUNDLE_PREFIX}/include/${SPUSH_BUNDLE_ARCH}/openblas-pthread")
unset(_spush_bundle_lib)
EOF
} > "$out/bundle.cmake"

{
  echo "# spush offline dependency bundle ($(date -u +%Y-%m-%d), $made_on, $arch)"
  echo
  echo "Made by \`scripts/make-bundle.sh\` of the spush repository. Package, version, sha256 prefix"
  echo "of the .deb:"
  echo
  echo '```'
  cat "$work/manifest"
  echo '```'
} > "$out/MANIFEST.txt"

size_kb="$(du -sk --exclude=debs "$out" | cut -f1)"
cat > "$out/README.md" <<EOF
# spush offline dependency bundle

Every build and test dependency of spush's GPU build that the CUDA toolkit does not provide,
for a machine without network access (the GPU test machine). Made on $(date -u +%Y-%m-%d) by
\`scripts/make-bundle.sh\` from $made_on packages ($arch), unpacked with \`dpkg-deb -x\`
under \`usr/\`; the exact packages and versions are in MANIFEST.txt. Size: $((size_kb / 1024)) MB.

| dependency | version | form | found by |
|---|---|---|---|
| GoogleTest + GoogleMock | $(upstream libgtest-dev) | headers, static libgtest.a / libgmock.a | find_package(GTest) (config) |
| Google Benchmark | $(upstream libbenchmark-dev) | headers, libbenchmark.so.1 | find_package(benchmark) (config) |
| fmt | $(upstream libfmt-dev) | headers, libfmt.so.9 | find_package(fmt) (config) |
| nlohmann-json | $(upstream nlohmann-json3-dev) | headers | find_package(nlohmann_json) (config) |
| zlib | $(upstream zlib1g-dev) | headers, static libz.a | find_package(ZLIB), ZLIB_USE_STATIC_LIBS |
| OpenBLAS (pthread) | $(upstream libopenblas0-pthread) | cblas.h, libopenblas.so.0 + libgfortran.so.5, libquadmath.so.0 | find_package(BLAS) with BLA_VENDOR OpenBLAS; find_path(cblas.h) |

Not included: OpenMPI (optional: without it the \`mpi\` communicator is off and its tests
skip), the Fashion-MNIST data (the GPU tests do not read it), cuDNN and NCCL (found in the CUDA
toolkit, the system or the NVIDIA Python wheels; optional, nothing links them yet).

## Use

\`\`\`sh
cmake -S spush -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \\
      -DSPUSH_BUNDLE=/path/to/this/folder
cmake --build build-gpu -j
bench/gpu-nightly.sh --bundle /path/to/this/folder --out results/   # build + tests + bench
\`\`\`

\`-DSPUSH_BUNDLE\` makes CMake include \`bundle.cmake\` first: the bundle's prefix goes first in
CMAKE_PREFIX_PATH and each package's config folder is set, so only the bundle's copies are used
(the configure step fails, naming the package, if one of them is found elsewhere) and the
configure summary prints "bundle" and the path for each. The folder can be moved or copied
anywhere: the CMake files locate everything relative to themselves, and the shared libraries
find each other through RUNPATH \$ORIGIN; binaries built against it carry the bundle's library
folder in their RUNPATH, so they run without LD_LIBRARY_PATH as long as the bundle stays where
it was when they were built.

## Compatibility

The binaries are Debian 12's (glibc 2.36, GCC 12's libstdc++). They work on newer systems such
as Ubuntu 24.04 (glibc 2.39, GCC 13/14): glibc and libstdc++ keep old symbol versions, and the
static GoogleTest / zlib archives link with newer GCCs. They do not work on systems older than
Debian 12 (glibc < 2.34). The C++ ABI is the default (_GLIBCXX_USE_CXX11_ABI=1) of both.
EOF

if [ $keep_debs -eq 1 ]; then mv "$work/debs" "$out/debs"; fi
size_mb=$(( (size_kb + 1023) / 1024 ))
echo "make-bundle: $out: $size_mb MB (limit $max_mb MB), $(find "$out/usr" -type f | wc -l) files"
cat "$work/manifest"
if [ "$size_kb" -gt $((max_mb * 1024)) ]; then
  echo "make-bundle: the bundle is $size_mb MB, over the $max_mb MB limit" >&2; exit 1
fi
