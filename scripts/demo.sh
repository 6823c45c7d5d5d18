#!/usr/bin/env bash
# The demo: installs what is missing, builds, and runs examples/01_quickstart on a synthetic
# teacher/student feature pyramid (CPU, and GPU when one is present): the feature, SSIM, FBKD (total
# and L_NLD) and DRKD (seed pixel relation, GloRe L_PR) losses and the learnable blocks they use
# (ops::non_local, ops::glore), with every gradient. Each loss is timed as the median of several warm
# calls (up to 5, fewer once they pass 3 s in all; --calls N to change the 5). --small: a small pyramid
# (C = 32, 128x160), seconds. At full size the seed relation and the GloRe unit run on P3-P5 (P2's 66,800
# positions cost minutes per call).
#   bash scripts/demo.sh [--small] [--calls N]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake --preset default >/dev/null
# CPU rows from the host compiler's build; GPU rows from nvcc's, where CUDA is enabled (examples/CMakeLists.txt).
cmake --build --preset default -j "${KDLOSS_JOBS:-$(nproc)}" --target kdloss_demo
./build/default/examples/kdloss_quickstart "$@"
if [[ -x build/default/examples/kdloss_quickstart_cuda ]] && nvidia-smi -L >/dev/null 2>&1; then
  ./build/default/examples/kdloss_quickstart_cuda "$@"
else
  echo "(no GPU present, or built without CUDA: GPU rows skipped)"
fi
