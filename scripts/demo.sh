#!/usr/bin/env bash
# The demo: installs what is missing, builds, and runs examples/01_quickstart on a synthetic
# teacher/student feature pyramid (CPU, and GPU when one is present). Each loss is timed as the
# median of several warm calls (5; --calls N to change). --small: a small pyramid (C = 32, 128x160).
#   bash scripts/demo.sh [--small] [--calls N]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "${KDLOSS_JOBS:-$(nproc)}" --target kdloss_quickstart
./build/default/examples/kdloss_quickstart "$@"
