// kdloss's inline ABI namespace (config.hpp): a program of .cpp and .cu files keeps both definitions of
// a kdloss template, and each translation unit calls its own. Before it, the linker kept one of the two
// under a single symbol, and on the first GPU machine 43 of 51 GPU cases ran the host-only definition
// ("this translation unit was compiled without CUDA"). Needs no GPU: only the device check runs.
#include <doctest/doctest.h>

#include <string>

#include "backend/abi_namespace_gpu.hpp"  // declarations only: defined where CUDA builds the tests
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/core/error.hpp"

TEST_CASE("abi namespace: a host translation unit is tagged host and rejects device views") {
  CHECK(std::string(KDLOSS_TEST_STRINGIFY(KDLOSS_ABI_NAMESPACE)) == "abi_v0_host");
  CHECK_THROWS_WITH_AS(kdloss::detail::require_backend<float>("abi test", kdloss::Device::cuda(0)),
                       doctest::Contains("compiled without CUDA"), kdloss::Error);
}

#if KDLOSS_TEST_CUDA
TEST_CASE("abi namespace: the .cu and the .cpp translation units each call their own kdloss definitions") {
  CHECK(kdloss_test::abi_namespace_of_cuda_tu() == "abi_v0_cuda");
  CHECK(kdloss_test::require_backend_address_in_cuda_tu() !=
        reinterpret_cast<const void*>(&kdloss::detail::require_backend<float>));
  CHECK(kdloss_test::cuda_tu_accepts_device_views());
  CHECK_THROWS_AS(kdloss::detail::require_backend<float>("abi test", kdloss::Device::cuda(0)), kdloss::Error);
}

TEST_CASE("abi namespace: views cross from a .cpp to a .cu translation unit, and its kdloss::Error comes back") {
  const float s[4] = {1, 2, 3, 4}, t[4] = {1, 2, 3, 6};
  CHECK(kdloss_test::mse_loss_in_cuda_tu(kdloss::host_view(s, {2, 2}), kdloss::host_view(t, {2, 2})) ==
        doctest::Approx(1.0));
  CHECK_THROWS_WITH_AS(kdloss_test::mse_loss_in_cuda_tu(kdloss::host_view(s, {4}), kdloss::host_view(t, {2, 2})),
                       doctest::Contains("teacher"), kdloss::Error);
}

TEST_CASE("abi namespace: a .cu file built with KDLOSS_DISABLE_HOST_BACKEND is tagged apart and rejects host views") {
  CHECK(kdloss_test::abi_namespace_of_gpu_only_tu() == "abi_v0_cuda_only");
  CHECK(kdloss_test::gpu_only_tu_accepts_device_views());
  const float s[4] = {1, 2, 3, 4}, t[4] = {1, 2, 3, 6};
  float value = -7.f;
  CHECK_THROWS_WITH_AS(
      kdloss_test::mse_loss_in_gpu_only_tu(kdloss::host_view(s, {2, 2}), kdloss::host_view(t, {2, 2}), &value),
      doctest::Contains("mse_loss: the views are on host but this translation unit was compiled with "
                        "KDLOSS_DISABLE_HOST_BACKEND"),
      kdloss::Error);
  CHECK(value == -7.f);  // rejected before anything is written
  // a .cu file with both backends, in the same program, still makes it
  CHECK(kdloss_test::mse_loss_in_cuda_tu(kdloss::host_view(s, {2, 2}), kdloss::host_view(t, {2, 2})) ==
        doctest::Approx(1.0));
}
#endif
