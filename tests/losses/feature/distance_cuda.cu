// GPU side of test_distance.cpp: runs the library on device buffers with a stream.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>

#include "kdloss/losses/feature/distance.hpp"
#include "losses/feature/distance_gpu.hpp"
#include "support/device_buffer.cuh"

using namespace kdloss;

namespace kdloss_test {
namespace {


template <class T>
GpuDistanceResult run(const std::vector<double>& s_host, const std::vector<double>& t_host, const Dims& shape,
                      const Dims& t_strides, double upstream, bool fused) {
  cudaStream_t stream;
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  const auto s_typed = from_double<T>(s_host), t_typed = from_double<T>(t_host);
  DeviceBuffer<T> s(s_typed), t(t_typed), out(1), grad(s_typed.size());
  DeviceBuffer<T> up(from_double<T>(std::vector<double>{upstream}));
  auto sv = cuda_view<const T>(s.ptr, shape);
  auto tv = cuda_view<const T>(t.ptr, shape, t_strides);
  auto gv = cuda_view(grad.ptr, shape);
  DeviceBuffer<unsigned char> ws(distance_loss_workspace_bytes(sv));
  const Exec ex{Workspace{ws.ptr, ws.count}, Stream(stream)};
  if (fused) {
    distance_loss_forward_backward(sv, tv, cuda_scalar(out.ptr), gv, {}, ex);
  } else {
    distance_loss(sv, tv, cuda_scalar(out.ptr), {}, ex);
    distance_loss_backward(sv, tv, cuda_scalar<const T>(up.ptr), gv, {}, ex);
  }
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  cudaStreamDestroy(stream);
  GpuDistanceResult r;
  r.value = to_double(out.to_host())[0];
  r.grad = to_double(grad.to_host());
  r.student = to_double(s_typed);
  r.teacher = to_double(t_typed);
  return r;
}

}  // namespace

GpuDistanceResult distance_on_gpu(int dtype, const std::vector<double>& s, const std::vector<double>& t,
                                  const Dims& shape, const Dims& t_strides, double upstream, bool fused) {
  switch (dtype) {
    case 0:
      return run<float>(s, t, shape, t_strides, upstream, fused);
    case 1:
      return run<double>(s, t, shape, t_strides, upstream, fused);
    case 2:
      return run<__half>(s, t, shape, t_strides, upstream, fused);
    default:
      return run<__nv_bfloat16>(s, t, shape, t_strides, upstream, fused);
  }
}

std::string distance_gpu_workspace_error(int call, std::size_t bytes, float* out_after, float* grad_after) {
  const std::vector<float> s_host(1000, 0.5f), t_host(1000, 0.25f);
  DeviceBuffer<float> s(s_host), t(t_host), out(std::vector<float>{42.0f}), grad(std::vector<float>(1000, 42.0f)),
      up(std::vector<float>{1.0f});
  DeviceBuffer<unsigned char> ws(bytes);
  auto sv = cuda_view<const float>(s.ptr, {10, 100});
  auto tv = cuda_view<const float>(t.ptr, {10, 100});
  const Exec ex{Workspace{ws.ptr, bytes}, Stream()};
  std::string error;
  try {
    if (call == 0) distance_loss(sv, tv, cuda_scalar(out.ptr), {}, ex);
    if (call == 1) distance_loss_backward(sv, tv, cuda_scalar<const float>(up.ptr), cuda_view(grad.ptr, {10, 100}), {}, ex);
    if (call == 2) distance_loss_forward_backward(sv, tv, cuda_scalar(out.ptr), cuda_view(grad.ptr, {10, 100}), {}, ex);
  } catch (const Error& e) {
    error = e.what();
  }
  *out_after = out.to_host()[0];
  *grad_after = grad.to_host()[0];
  return error;
}

}  // namespace kdloss_test
