// GPU side of test_launch.cpp: error attribution around launches, and outputs beyond a capped grid.
#include <cuda_runtime.h>

#include <string>
#include <tuple>
#include <vector>

#include "backend/executor_functors.hpp"
#include "backend/launch_gpu.hpp"
#include "kdloss/backend/cuda/executor.cuh"
#include "kdloss/kdloss.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {
__global__ void idle_kernel() {}
}  // namespace

std::string gpu_pending_error_blame(bool& still_pending, bool& later_call_ok) {
  DeviceBuffer<float> s(std::vector<float>{1.f, 2.f, 3.f}), t(std::vector<float>{0.f, 2.f, 5.f}), out(1);
  const kdloss::View<const float> sv = kdloss::cuda_view<const float>(s.ptr, {3}),
                                  tv = kdloss::cuda_view<const float>(t.ptr, {3});
  const kdloss::View<float> ov = kdloss::cuda_view(out.ptr, kdloss::Dims{});
  cuda_check(cudaDeviceSynchronize(), "sync");
  (void)cudaGetLastError();
  idle_kernel<<<1, 4096>>>();  // more threads than a block may have: cudaErrorInvalidConfiguration, pending
  std::string message;
  try {
    kdloss::mse_loss(sv, tv, ov);
  } catch (const kdloss::Error& e) {
    message = e.what();
  }
  still_pending = cudaGetLastError() == cudaErrorInvalidConfiguration;  // reads and clears it
  later_call_ok = true;
  try {
    kdloss::mse_loss(sv, tv, ov);
    later_call_ok = out.to_host()[0] == (1.f + 0.f + 4.f) / 3.f;
  } catch (const kdloss::Error&) {
    later_call_ok = false;
  }
  return message;
}

std::int64_t gpu_reduce_into_wrong_outputs(std::int64_t kept) {
  DeviceBuffer<float> a(std::vector<float>{1.f}), b(std::vector<float>{2.f}), out(static_cast<std::size_t>(kept));
  const kdloss::Dims full{kept, 2}, broadcast{0, 0};
  const kdloss::View<const float> av = kdloss::cuda_view<const float>(a.ptr, full, broadcast),
                                  bv = kdloss::cuda_view<const float>(b.ptr, full, broadcast);
  const kdloss::View<float> ov = kdloss::cuda_view(out.ptr, full, kdloss::Dims{1, 0});
  cuda_check(cudaMemset(out.ptr, 0, out.count * sizeof(float)), "cudaMemset");
  kdloss::backend::cuda::reduce_into<float>(full, ProductPlusSelf{},
                                            std::tuple<kdloss::View<const float>, kdloss::View<const float>>{av, bv},
                                            ov, nullptr);
  const std::vector<float> host = out.to_host();
  std::int64_t wrong = 0;
  for (float v : host) wrong += v != 6.f;
  return wrong;
}

}  // namespace kdloss_test
