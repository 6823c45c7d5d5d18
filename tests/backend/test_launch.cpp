// Launch plumbing on the GPU: an error left pending by someone else's CUDA work is not reported as
// kdloss's (and is left for its owner), and a thread-per-output reduction writes outputs beyond the
// capped grid (grid_for caps at 65535 * 16 blocks of 256 threads = 268,431,360 threads), views of more
// than 2^31 elements index with 64 bits, and the rowwise kernels' choice of threads per row.
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

KDLOSS_GPU_TEST("launch: views of more than 2^31 elements index correctly on the GPU (value and gradient)") {
#if KDLOSS_TEST_CUDA
  // 2^32 elements through a sliding window over 128 KB: the value only.
  const auto big = kdloss_test::gpu_huge_view_mse(65536, 65536, false);
  // The mean of float-rounded terms summed with double block partials: well inside 1e-6.
  CHECK(big.value == doctest::Approx(big.exact).epsilon(1e-6));
  // 2^31 + 2^16 elements with their gradient written (8.6 GB of float on the device).
  const auto grad = kdloss_test::gpu_huge_view_mse(32769, 65536, true);
  CHECK(grad.value == doctest::Approx(grad.exact).epsilon(1e-6));
  CHECK(grad.wrong_grads == 0);
#endif
}

#if KDLOSS_TEST_CUDA
TEST_CASE("rowwise (CUDA): a strided row axis with adjacent rows gets a thread per row; others a warp or a block") {
  // Host code only: runs in the CUDA build without a GPU.
  using kdloss::Dims;
  CHECK(kdloss_test::rowwise_group_of(Dims{2, 80, 64, 72}, Dims{80 * 64 * 72, 64 * 72, 72, 1}, 1) == 1);  // NCHW
  CHECK(kdloss_test::rowwise_group_of(Dims{2, 80, 64, 72}, Dims{80 * 64 * 72, 1, 72 * 80, 80}, 1) == 32);  // NHWC
  CHECK(kdloss_test::rowwise_group_of(Dims{2, 80, 4, 5}, Dims{80 * 20, 20, 5, 1}, 1) == 32);  // too few rows
  CHECK(kdloss_test::rowwise_group_of(Dims{64, 4096}, Dims{4096, 1}, 1) == 256);               // long rows
  // W not unit-stride (H and W swapped in memory): consecutive rows are not adjacent.
  CHECK(kdloss_test::rowwise_group_of(Dims{2, 80, 64, 72}, Dims{80 * 64 * 72, 64 * 72, 1, 64}, 1) == 32);
}
#endif
