// GPU side of test_pointwise.cpp: runs the library on device buffers with a stream.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>

#include "kdloss/losses/feature/pointwise.hpp"
#include "losses/feature/pointwise_gpu.hpp"
#include "support/device_buffer.cuh"

using namespace kdloss;

namespace kdloss_test {
namespace {


template <class T>
GpuLossResult run(int kind, const std::vector<double>& s_host, const std::vector<double>& t_host, const Dims& shape,
                  Reduction r, double beta, bool fused) {
  cudaStream_t stream;
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  DeviceBuffer<T> s(from_double<T>(s_host)), t(from_double<T>(t_host));
  const bool none = r == Reduction::none;
  DeviceBuffer<T> out(none ? s.count : 1), grad(s.count), one(std::vector<T>{T(1.0f)});
  auto sv = cuda_view<const T>(s.ptr, shape);
  auto tv = cuda_view<const T>(t.ptr, shape);
  auto ov = none ? cuda_view(out.ptr, shape) : cuda_scalar(out.ptr);
  auto gv = cuda_view(grad.ptr, shape);
  DeviceBuffer<unsigned char> ws(mse_loss_workspace_bytes(sv, {r}));
  const Exec ex{Workspace{ws.ptr, ws.count}, Stream(stream)};
  std::vector<T> ones_host(none ? s.count : 1, T(1.0f));
  DeviceBuffer<T> up(ones_host);
  auto upv = none ? cuda_view<const T>(up.ptr, shape) : cuda_scalar<const T>(up.ptr);
  if (fused) {
    if (kind == 0) mse_loss_forward_backward(sv, tv, ov, gv, {r}, ex);
    if (kind == 1) l1_loss_forward_backward(sv, tv, ov, gv, {r}, ex);
    if (kind == 2) smooth_l1_loss_forward_backward(sv, tv, ov, gv, {beta, r}, ex);
  } else {
    if (kind == 0) mse_loss(sv, tv, ov, {r}, ex), mse_loss_backward(sv, tv, upv, gv, {r}, ex);
    if (kind == 1) l1_loss(sv, tv, ov, {r}, ex), l1_loss_backward(sv, tv, upv, gv, {r}, ex);
    if (kind == 2) smooth_l1_loss(sv, tv, ov, {beta, r}, ex), smooth_l1_loss_backward(sv, tv, upv, gv, {beta, r}, ex);
  }
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  cudaStreamDestroy(stream);
  return {to_double(out.to_host()), to_double(grad.to_host()), to_double(s.to_host()), to_double(t.to_host())};
}

}  // namespace

GpuLossResult pointwise_on_gpu(int kind, int dtype, const std::vector<double>& s, const std::vector<double>& t,
                               const Dims& shape, Reduction r, double beta, bool fused) {
  switch (dtype) {
    case 0: return run<float>(kind, s, t, shape, r, beta, fused);
    case 1: return run<double>(kind, s, t, shape, r, beta, fused);
    case 2: return run<__half>(kind, s, t, shape, r, beta, fused);
    default: return run<__nv_bfloat16>(kind, s, t, shape, r, beta, fused);
  }
}

std::string pointwise_gpu_workspace_error(std::size_t bytes, float* out_after) {
  const std::vector<double> host(1000, 0.5);
  DeviceBuffer<float> s(from_double<float>(host)), t(from_double<float>(host)), out(std::vector<float>{42.0f});
  DeviceBuffer<unsigned char> ws(bytes);
  std::string error;
  try {
    mse_loss(cuda_view<const float>(s.ptr, {1000}), cuda_view<const float>(t.ptr, {1000}), cuda_scalar(out.ptr), {Reduction::mean}, Exec{Workspace{ws.ptr, bytes}, Stream()});
  } catch (const Error& e) {
    error = e.what();
  }
  *out_after = out.to_host()[0];
  return error;
}

}  // namespace kdloss_test
