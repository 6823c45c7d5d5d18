#!/usr/bin/env bash
# The demo: installs what is missing, builds, and runs examples/01_quickstart on a synthetic
# teacher/student feature pyramid (CPU, and GPU when one is present): the feature, SSIM, FBKD (total
# and L_NLD) and DRKD (seed pixel relation, GloRe L_PR) losses and the learnable blocks they use
# (ops::non_local, ops::glore), with every gradient. Each loss is timed as the median of several warm
# calls (5; --calls N to change). --small: a small pyramid (C = 32, 128x160), seconds. At full size the
# seed relation and the GloRe unit run on P3-P5 (P2's 66,800 positions cost minutes per call).
#   bash scripts/demo.sh [--small] [--calls N]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "${KDLOSS_JOBS:-$(nproc)}" --target kdloss_quickstart
./build/default/examples/kdloss_quickstart "$@"
