#!/usr/bin/env bash
# Checks that kdloss's headers build under clang++ as well as g++: every host source of the tests, the
# benchmarks and the examples is parsed and its templates instantiated by clang++ -std=c++17 -Wall
# -Wextra -Werror -fsyntax-only (no code generation: about 2 minutes on 2 cores, against about 20 for a
# clang build). Users include these headers from clang builds (macOS, clang-based CUDA toolchains), so a
# GCC-only construct, or a warning in a header, is a defect. The CUDA sources (.cu) are nvcc's.
#
#   bash scripts/clang_check.sh            # all of them
#   bash scripts/clang_check.sh tests/ops/test_non_local.cpp
# Environment: CLANG_CXX (default clang++), KDLOSS_JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
cxx=${CLANG_CXX:-clang++}
jobs=${KDLOSS_JOBS:-$(nproc)}
if (($# > 0)); then
  sources=("$@")
else
  mapfile -t sources < <(find tests bench examples -name '*.cpp' | sort)
fi
flags=(-std=c++17 -fsyntax-only -Wall -Wextra -Werror -fopenmp -DKDLOSS_TEST_CUDA=0 -Iinclude -Itests -Ibench
  -isystem /usr/include/eigen3 -isystem /usr/include/stb)
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
export cxx log
printf '%s\n' "${sources[@]}" |
  xargs -P "$jobs" -I{} bash -c '"$cxx" "$@" {} >"$log/$(echo {} | tr / _).log" 2>&1 || echo {} >>"$log/failed"' _ "${flags[@]}"
if [[ -s $log/failed ]]; then
  while read -r f; do
    echo "clang_check: $f does not build under $cxx:"
    head -40 "$log/$(echo "$f" | tr / _).log"
  done <"$log/failed"
  exit 1
fi
echo "clang_check: ${#sources[@]} sources parse and instantiate under $($cxx --version | head -1)"
