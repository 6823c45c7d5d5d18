// GPU side of test_launch.cpp: error attribution around launches, outputs beyond a capped grid, views
// of more than 2^31 elements, and the rowwise group choice (host code: runs without a GPU).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <string>
#include <tuple>
#include <vector>

#include "backend/executor_functors.hpp"
#include "backend/launch_gpu.hpp"
#include "kdloss/backend/cuda/executor.cuh"
#include "kdloss/backend/cuda/rowwise.cuh"
#include "kdloss/kdloss.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {
__global__ void idle_kernel() {}

/// s[k] = (k mod 7) - 3: small integers, so every square and difference is exact in float.
__host__ __device__ float sliding_value(std::int64_t k) { return static_cast<float>(k % 7) - 3.f; }

/// Counts gradients of mean((s[i+j] - 0.5)^2) over [rows, cols] that differ from 2 (s - 0.5) / numel by more
/// than float rounding (a 64-bit grid-stride loop: numel is past 2^31).
__global__ void count_wrong_grads(const float* grad, std::int64_t rows, std::int64_t cols, double scale,
                                  unsigned long long* wrong) {
  const std::int64_t numel = rows * cols;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < numel;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = e / cols, j = e % cols;
    const double want = 2.0 * (static_cast<double>(sliding_value(i + j)) - 0.5) * scale;
    const double got = grad[e];
    if (!(fabs(got - want) <= 4e-7 * fabs(want) + 1e-30)) atomicAdd(wrong, 1ull);
  }
}
}  // namespace

std::string gpu_pending_error_blame(bool& still_pending, bool& later_call_ok) {
  DeviceBuffer<float> s(std::vector<float>{1.f, 2.f, 3.f}), t(std::vector<float>{0.f, 2.f, 5.f}), out(1);
  const kdloss::View<const float> sv = kdloss::cuda_view<const float>(s.ptr, {3}),
                                  tv = kdloss::cuda_view<const float>(t.ptr, {3});
  const kdloss::View<float> ov = kdloss::cuda_view(out.ptr, kdloss::Dims{});
  // A GPU reduction needs its workspace (the partial sums): without one the call would throw for
  // that before reaching the device guard, and neither the blame nor the later call would be tested.
  DeviceBuffer<unsigned char> ws(kdloss::mse_loss_workspace_bytes(sv));
  const kdloss::Exec ex{kdloss::Workspace{ws.ptr, ws.count}};
  cuda_check(cudaDeviceSynchronize(), "sync");
  (void)cudaGetLastError();
  idle_kernel<<<1, 4096>>>();  // more threads than a block may have: cudaErrorInvalidConfiguration, pending
  std::string message;
  try {
    kdloss::mse_loss(sv, tv, ov, {}, ex);
  } catch (const kdloss::Error& e) {
    message = e.what();
  }
  still_pending = cudaGetLastError() == cudaErrorInvalidConfiguration;  // reads and clears it
  later_call_ok = true;
  try {
    kdloss::mse_loss(sv, tv, ov, {}, ex);
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

HugeViewResult gpu_huge_view_mse(std::int64_t rows, std::int64_t cols, bool with_gradient) {
  // The student is a sliding window over rows + cols - 1 floats (strides {1, 1}: element (i, j) is
  // s[i + j]); the teacher is one broadcast 0.5. Neither allocates rows * cols elements.
  const std::int64_t span = rows + cols - 1;
  std::vector<float> s_host(static_cast<std::size_t>(span));
  for (std::int64_t k = 0; k < span; ++k) s_host[static_cast<std::size_t>(k)] = sliding_value(k);
  DeviceBuffer<float> s(s_host), t(std::vector<float>{0.5f}), out(1);
  const kdloss::Dims full{rows, cols};
  const kdloss::View<const float> sv = kdloss::cuda_view<const float>(s.ptr, full, kdloss::Dims{1, 1}),
                                  tv = kdloss::cuda_view<const float>(t.ptr, full, kdloss::Dims{0, 0});
  const kdloss::View<float> ov = kdloss::cuda_view(out.ptr, kdloss::Dims{});
  // Exact mean: element k of s appears in min(k, rows - 1, cols - 1, span - 1 - k) + 1 positions.
  long double sum = 0;
  for (std::int64_t k = 0; k < span; ++k) {
    const std::int64_t count = std::min({k, rows - 1, cols - 1, span - 1 - k}) + 1;
    const long double d = static_cast<long double>(s_host[static_cast<std::size_t>(k)]) - 0.5L;
    sum += static_cast<long double>(count) * d * d;
  }
  const double numel = static_cast<double>(rows) * static_cast<double>(cols);
  const double exact = static_cast<double>(sum / static_cast<long double>(numel));
  HugeViewResult r;
  DeviceBuffer<unsigned char> ws(kdloss::mse_loss_workspace_bytes(sv));  // the reduction's partial sums
  const kdloss::Exec ex{kdloss::Workspace{ws.ptr, ws.count}};
  if (!with_gradient) {
    kdloss::mse_loss(sv, tv, ov, {}, ex);
  } else {
    DeviceBuffer<float> grad(static_cast<std::size_t>(rows * cols));
    kdloss::mse_loss_forward_backward(sv, tv, ov, kdloss::cuda_view(grad.ptr, full), {}, ex);
    DeviceBuffer<unsigned long long> wrong(std::vector<unsigned long long>{0ull});
    count_wrong_grads<<<4096, 256>>>(grad.ptr, rows, cols, 1.0 / numel, wrong.ptr);
    cuda_check(cudaGetLastError(), "count_wrong_grads");
    r.wrong_grads = static_cast<std::int64_t>(wrong.to_host()[0]);
  }
  r.value = out.to_host()[0];
  r.exact = exact;
  return r;
}

int rowwise_group_of(const kdloss::Dims& shape, const kdloss::Dims& strides, int axis) {
  std::int64_t op_strides[kdloss::expr::kMaxOperands][kdloss::kMaxRank] = {};
  for (int d = 0; d < shape.rank; ++d) op_strides[0][d] = strides[d];
  return kdloss::backend::cuda::rowwise_group(kdloss::expr::make_rows(shape, axis, op_strides, 1));
}

}  // namespace kdloss_test
