// The demo's GPU rows: main.cpp compiled by nvcc, running the GPU table only (its CPU rows come from the
// host compiler's build, kdloss_quickstart: see examples/CMakeLists.txt).
#define KDLOSS_DEMO_GPU_ROWS_ONLY 1
#define KDLOSS_DISABLE_HOST_BACKEND  // GPU calls only: nvcc skips the host backend (docs/conventions.md)
#include "main.cpp"
