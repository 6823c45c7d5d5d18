// GPU side of test_kl_div.cpp: runs the library on device buffers with a stream.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>

#include "kdloss/losses/feature/kl_div.hpp"
#include "losses/feature/kl_div_gpu.hpp"
#include "support/device_buffer.cuh"

using namespace kdloss;

namespace kdloss_test {
namespace {


// Row-major copy of a strided host view.
std::vector<double> gather(const std::vector<double>& storage, const Dims& shape, const Dims& strides) {
  std::vector<double> out(static_cast<std::size_t>(shape.product()));
  for (std::int64_t i = 0; i < shape.product(); ++i) {
    std::int64_t off = 0, rem = i;
    for (int d = shape.rank - 1; d >= 0; --d) {
      off += (rem % shape[d]) * strides[d];
      rem /= shape[d];
    }
    out[static_cast<std::size_t>(i)] = storage[static_cast<std::size_t>(off)];
  }
  return out;
}

template <class T>
GpuKlResult run(const std::vector<double>& s_host, const std::vector<double>& t_host, const Dims& shape,
                const Dims& strides, int axis, double temperature, Reduction r, const std::vector<double>& upstream,
                bool fused) {
  cudaStream_t stream;
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  const bool none = r == Reduction::none;
  const auto s_typed = from_double<T>(s_host), t_typed = from_double<T>(t_host);
  DeviceBuffer<T> s(s_typed), t(t_typed);
  // Outputs live in storages of the inputs' size and layout; upstream maps are row-major.
  DeviceBuffer<T> out(none ? s_typed.size() : 1), grad(s_typed.size()), up(from_double<T>(upstream));
  auto sv = cuda_view<const T>(s.ptr, shape, strides);
  auto tv = cuda_view<const T>(t.ptr, shape, strides);
  auto ov = none ? cuda_view(out.ptr, shape, strides) : cuda_scalar(out.ptr);
  auto gv = cuda_view(grad.ptr, shape, strides);
  auto uv = none ? cuda_view<const T>(up.ptr, shape) : cuda_scalar<const T>(up.ptr);
  DeviceBuffer<unsigned char> ws(kl_div_loss_workspace_bytes(sv, {temperature, axis, r}));
  const Exec ex{Workspace{ws.ptr, ws.count}, Stream(stream)};
  if (fused) {
    kl_div_loss_forward_backward(sv, tv, ov, gv, {temperature, axis, r}, ex);
  } else {
    kl_div_loss(sv, tv, ov, {temperature, axis, r}, ex);
    kl_div_loss_backward(sv, tv, uv, gv, {temperature, axis, r}, ex);
  }
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  cudaStreamDestroy(stream);
  GpuKlResult res;
  const auto out_host = to_double(out.to_host());
  res.value = none ? gather(out_host, shape, strides) : out_host;
  res.grad = gather(to_double(grad.to_host()), shape, strides);
  res.student = to_double(s_typed);
  res.teacher = to_double(t_typed);
  return res;
}

}  // namespace

GpuKlResult kl_div_on_gpu(int dtype, const std::vector<double>& s, const std::vector<double>& t, const Dims& shape,
                          const Dims& strides, int axis, double temperature, Reduction r,
                          const std::vector<double>& upstream, bool fused) {
  switch (dtype) {
    case 0:
      return run<float>(s, t, shape, strides, axis, temperature, r, upstream, fused);
    case 1:
      return run<double>(s, t, shape, strides, axis, temperature, r, upstream, fused);
    case 2:
      return run<__half>(s, t, shape, strides, axis, temperature, r, upstream, fused);
    default:
      return run<__nv_bfloat16>(s, t, shape, strides, axis, temperature, r, upstream, fused);
  }
}

std::string kl_div_gpu_workspace_error(int call, std::size_t bytes, float* out_after, float* grad_after) {
  std::vector<float> s_host(400), t_host(400);
  for (std::size_t i = 0; i < 400; ++i)
    s_host[i] = 0.01f * static_cast<float>(i % 17), t_host[i] = 0.02f * static_cast<float>(i % 13);
  DeviceBuffer<float> s(s_host), t(t_host), out(std::vector<float>{42.0f}), grad(std::vector<float>(400, 42.0f));
  DeviceBuffer<unsigned char> ws(bytes);
  auto sv = cuda_view<const float>(s.ptr, {4, 100});
  auto tv = cuda_view<const float>(t.ptr, {4, 100});
  const Exec ex{Workspace{ws.ptr, bytes}, Stream()};
  std::string error;
  try {
    if (call == 0) kl_div_loss(sv, tv, cuda_scalar(out.ptr), {2.0, 1, Reduction::batchmean}, ex);
    if (call == 1)
      kl_div_loss_forward_backward(sv, tv, cuda_scalar(out.ptr), cuda_view(grad.ptr, {4, 100}), {2.0, 1, Reduction::batchmean}, ex);
  } catch (const Error& e) {
    error = e.what();
  }
  *out_after = out.to_host()[0];
  *grad_after = grad.to_host()[0];
  return error;
}

}  // namespace kdloss_test
