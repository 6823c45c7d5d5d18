// Launch plumbing on the GPU: an error left pending by someone else's CUDA work is not reported as
// kdloss's (and is left for its owner), and a thread-per-output reduction writes outputs beyond the
// capped grid (grid_for caps at 65535 * 16 blocks of 256 threads = 268,431,360 threads).
#include <doctest/doctest.h>

#include <string>

#if KDLOSS_TEST_CUDA
#include "backend/launch_gpu.hpp"
#endif
#include "support/test_support.hpp"

KDLOSS_GPU_TEST("launch: an error pending from earlier CUDA work is reported as not kdloss's, and left pending") {
#if KDLOSS_TEST_CUDA
  bool still_pending = false, later_call_ok = false;
  const std::string message = kdloss_test::gpu_pending_error_blame(still_pending, later_call_ok);
  CHECK(message.find("already pending before this kdloss call") != std::string::npos);
  CHECK(message.find("not by kdloss") != std::string::npos);
  CHECK(message.find("cudaErrorInvalidConfiguration") != std::string::npos);
  CHECK(still_pending);
  CHECK(later_call_ok);
#endif
}

KDLOSS_GPU_TEST("launch: reduce_into writes every output past the capped grid (270 million outputs)") {
#if KDLOSS_TEST_CUDA
  CHECK(kdloss_test::gpu_reduce_into_wrong_outputs(270'000'000) == 0);
#endif
}
