#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds everything (CUDA sources too when nvcc is
# present), runs the tests (GPU cases skip visibly without a GPU), then the host suite again under
# AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

jobs=${KDLOSS_JOBS:-$(nproc)}

echo "== kdloss: build (Release, CUDA auto-detected) =="
cmake --preset default >/dev/null
cmake --build --preset default -j "$jobs"
echo "== kdloss: tests =="
ctest --preset default

echo "== kdloss: host tests under ASan + UBSan =="
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$jobs" --target kdloss_tests
ctest --preset asan
