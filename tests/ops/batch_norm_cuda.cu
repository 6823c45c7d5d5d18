// GPU side of test_batch_norm.cpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kdloss/ops/batch_norm.hpp"
#include "ops/batch_norm_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {

/// Logical NCHW values stored NCHW or NHWC.
std::vector<double> store(const std::vector<double>& v, const kdloss::Dims& s, bool channels_last) {
  if (!channels_last) return v;
  std::vector<double> r(v.size());
  for (std::int64_t b = 0; b < s[0]; ++b)
    for (std::int64_t c = 0; c < s[1]; ++c)
      for (std::int64_t p = 0; p < s[2] * s[3]; ++p) r[(b * s[2] * s[3] + p) * s[1] + c] = v[(b * s[1] + c) * s[2] * s[3] + p];
  return r;
}
std::vector<double> load(const std::vector<double>& r, const kdloss::Dims& s, bool channels_last) {
  if (!channels_last) return r;
  std::vector<double> v(r.size());
  for (std::int64_t b = 0; b < s[0]; ++b)
    for (std::int64_t c = 0; c < s[1]; ++c)
      for (std::int64_t p = 0; p < s[2] * s[3]; ++p) v[(b * s[1] + c) * s[2] * s[3] + p] = r[(b * s[2] * s[3] + p) * s[1] + c];
  return v;
}

template <class T>
std::vector<double> run(bool channels_last, bool training, const std::vector<double>& x, const std::vector<double>& w,
                        const std::vector<double>& b, const std::vector<double>& rm, const std::vector<double>& rv,
                        const std::vector<double>& gy, const std::vector<double>& ogw, const std::vector<double>& ogb,
                        const kdloss::Dims& shape, std::vector<std::vector<double>>* rounded) {
  using kdloss::Dims;
  const std::int64_t C = shape[1];
  const Dims strides = channels_last ? Dims{shape[1] * shape[2] * shape[3], 1, shape[3] * shape[1], shape[1]}
                                     : kdloss::contiguous_strides(shape);
  DeviceBuffer<T> dx(from_double<T>(store(x, shape, channels_last))), dgy(from_double<T>(store(gy, shape, channels_last)));
  DeviceBuffer<T> dw(from_double<T>(w)), db(from_double<T>(b)), drm(from_double<T>(rm)), drv(from_double<T>(rv));
  DeviceBuffer<T> dgw(from_double<T>(ogw)), dgb(from_double<T>(ogb));
  DeviceBuffer<T> dy(x.size()), dgx(x.size()), dmean(static_cast<std::size_t>(C)), dvar(static_cast<std::size_t>(C));
  if (rounded) {
    *rounded = {to_double(from_double<T>(x)),  to_double(from_double<T>(w)),  to_double(from_double<T>(b)),
                to_double(from_double<T>(rm)), to_double(from_double<T>(rv)), to_double(from_double<T>(gy)),
                to_double(from_double<T>(ogw)), to_double(from_double<T>(ogb))};
  }
  const auto vec = [&](const DeviceBuffer<T>& d) { return kdloss::cuda_view<const T>(d.ptr, {C}); };
  kdloss::ops::BatchNormArgs<T> a;
  a.x = kdloss::cuda_view<const T>(dx.ptr, shape, strides);
  a.weight = vec(dw);
  a.bias = vec(db);
  a.running_mean = vec(drm);
  a.running_var = vec(drv);
  a.y = kdloss::cuda_view<T>(dy.ptr, shape, strides);
  if (training) {
    a.batch_mean = kdloss::cuda_view<T>(dmean.ptr, {C});
    a.batch_var = kdloss::cuda_view<T>(dvar.ptr, {C});
  }
  a.options.training = training;
  a.options.param_grads.beta = 1.0;
  DeviceBuffer<unsigned char> reserve(kdloss::ops::batch_norm_reserve_bytes(a) + 1);
  DeviceBuffer<unsigned char> ws(kdloss::ops::batch_norm_workspace_bytes(a) + 1);
  cudaStream_t stream;
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  const kdloss::Exec exec{kdloss::Workspace{ws.ptr, ws.count}, kdloss::Stream(stream)};
  if (training) a.reserve = kdloss::Reserve{reserve.ptr, reserve.count};
  kdloss::ops::batch_norm(a, kdloss::Mode::forward, exec);
  auto g = a;
  g.y = g.batch_mean = g.batch_var = {};
  g.grad_y = kdloss::cuda_view<const T>(dgy.ptr, shape, strides);
  g.grad_x = kdloss::cuda_view<T>(dgx.ptr, shape, strides);
  g.grad_weight = kdloss::cuda_view<T>(dgw.ptr, {C});
  g.grad_bias = kdloss::cuda_view<T>(dgb.ptr, {C});
  kdloss::ops::batch_norm(g, kdloss::Mode::backward, exec);
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  cudaStreamDestroy(stream);
  std::vector<double> out = load(to_double(dy.to_host()), shape, channels_last);
  if (training) {
    const auto m = to_double(dmean.to_host()), v = to_double(dvar.to_host());
    out.insert(out.end(), m.begin(), m.end());
    out.insert(out.end(), v.begin(), v.end());
  }
  const auto gx = load(to_double(dgx.to_host()), shape, channels_last), gw = to_double(dgw.to_host()),
             gb = to_double(dgb.to_host());
  out.insert(out.end(), gx.begin(), gx.end());
  out.insert(out.end(), gw.begin(), gw.end());
  out.insert(out.end(), gb.begin(), gb.end());
  return out;
}

}  // namespace

std::vector<double> batch_norm_on_gpu(int dtype, bool channels_last, bool training, const std::vector<double>& x,
                                      const std::vector<double>& w, const std::vector<double>& b,
                                      const std::vector<double>& running_mean, const std::vector<double>& running_var,
                                      const std::vector<double>& grad_y, const std::vector<double>& old_gw,
                                      const std::vector<double>& old_gb, std::int64_t batch, std::int64_t channels,
                                      std::int64_t h, std::int64_t w_, std::vector<std::vector<double>>* rounded) {
  const kdloss::Dims shape{batch, channels, h, w_};
  switch (dtype) {
    case 0: return run<float>(channels_last, training, x, w, b, running_mean, running_var, grad_y, old_gw, old_gb, shape, rounded);
    case 1: return run<double>(channels_last, training, x, w, b, running_mean, running_var, grad_y, old_gw, old_gb, shape, rounded);
    case 2: return run<__half>(channels_last, training, x, w, b, running_mean, running_var, grad_y, old_gw, old_gb, shape, rounded);
    default:
      return run<__nv_bfloat16>(channels_last, training, x, w, b, running_mean, running_var, grad_y, old_gw, old_gb, shape,
                                rounded);
  }
}

}  // namespace kdloss_test
