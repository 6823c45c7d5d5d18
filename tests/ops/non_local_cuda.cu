// GPU side of test_non_local.cpp: ops::non_local on CUDA views.
#include <cublas_v2.h>

#include <memory>
#include <stdexcept>

#include "kdloss/ops/non_local.hpp"
#include "ops/non_local_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {

template <class T>
std::vector<std::vector<double>> run(const NonLocalGpuCase& c) {
  using kdloss::Dims;
  const Dims shape{c.B, c.C, c.H, c.W};
  const Dims strides = c.channels_last ? Dims{c.C * c.H * c.W, 1, c.W * c.C, c.C} : kdloss::contiguous_strides(shape);
  const auto store = [&](const std::vector<double>& v) {
    std::vector<double> s(v.size());
    for (std::int64_t b = 0; b < c.B; ++b)
      for (std::int64_t ch = 0; ch < c.C; ++ch)
        for (std::int64_t p = 0; p < c.H * c.W; ++p)
          s[b * strides[0] + ch * strides[1] + (p / c.W) * strides[2] + (p % c.W) * strides[3]] =
              v[(b * c.C + ch) * c.H * c.W + p];
    return s;
  };
  const auto load = [&](const std::vector<double>& s) {
    std::vector<double> v(s.size());
    for (std::int64_t b = 0; b < c.B; ++b)
      for (std::int64_t ch = 0; ch < c.C; ++ch)
        for (std::int64_t p = 0; p < c.H * c.W; ++p)
          v[(b * c.C + ch) * c.H * c.W + p] =
              s[b * strides[0] + ch * strides[1] + (p / c.W) * strides[2] + (p % c.W) * strides[3]];
    return v;
  };
  DeviceBuffer<T> dx(from_double<T>(store(c.x))), dgz(from_double<T>(store(c.grad_z))), dz(c.x.size()),
      dgx(c.x.size());
  std::vector<std::unique_ptr<DeviceBuffer<T>>> param, grad;
  for (const auto& p : c.params) {
    param.push_back(std::make_unique<DeviceBuffer<T>>(from_double<T>(p)));
    grad.push_back(std::make_unique<DeviceBuffer<T>>(p.size()));
  }
  const auto in = [&](int i, Dims s) {
    return c.params[i].empty() ? kdloss::View<const T>{} : kdloss::cuda_view<const T>(param[i]->ptr, s);
  };
  const auto out = [&](int i, Dims s) { return c.params[i].empty() ? kdloss::View<T>{} : kdloss::cuda_view<T>(grad[i]->ptr, s); };
  const std::int64_t m = c.m, C = c.C;
  kdloss::ops::NonLocalArgs<T> a;
  a.x = kdloss::cuda_view<const T>(dx.ptr, shape, strides);
  const Dims mc{m, C}, vm{m}, vc{C};
  a.g_weight = in(0, mc), a.g_bias = in(1, vm), a.theta_weight = in(2, mc), a.theta_bias = in(3, vm);
  a.phi_weight = in(4, mc), a.phi_bias = in(5, vm), a.concat_project_weight = in(6, Dims{2 * m});
  a.conv_out_weight = in(7, Dims{C, m}), a.conv_out_bias = in(8, vc), a.bn_weight = in(9, vc), a.bn_bias = in(10, vc);
  a.bn_running_mean = in(11, vc), a.bn_running_var = in(12, vc);
  a.z = kdloss::cuda_view<T>(dz.ptr, shape, strides);
  a.options.mode = static_cast<kdloss::ops::NonLocalMode>(c.mode);
  a.options.pool_g = a.options.pool_phi = c.pool;
  a.options.training = c.training;
  a.options.norm = c.norm;
  a.options.use_scale = c.use_scale;
  auto g = a;
  g.grad_z = kdloss::cuda_view<const T>(dgz.ptr, shape, strides);
  g.grad_x = kdloss::cuda_view<T>(dgx.ptr, shape, strides);
  g.grad_g_weight = out(0, mc), g.grad_g_bias = out(1, vm), g.grad_theta_weight = out(2, mc), g.grad_theta_bias = out(3, vm);
  g.grad_phi_weight = out(4, mc), g.grad_phi_bias = out(5, vm), g.grad_concat_project_weight = out(6, Dims{2 * m});
  g.grad_conv_out_weight = out(7, Dims{C, m}), g.grad_conv_out_bias = out(8, vc), g.grad_bn_weight = out(9, vc);
  g.grad_bn_bias = out(10, vc);
  DeviceBuffer<unsigned char> reserve(kdloss::ops::non_local_reserve_bytes(a) + 256);
  DeviceBuffer<unsigned char> ws(kdloss::ops::non_local_workspace_bytes(g) + 256);
  a.reserve = g.reserve = kdloss::Reserve{reserve.ptr, reserve.count};
  cudaStream_t stream;
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
  cublasSetStream(handle, stream);
  const kdloss::Exec exec{kdloss::Workspace{ws.ptr, ws.count}, kdloss::Stream(stream), kdloss::BlasHandle(handle)};
  kdloss::ops::non_local(a, kdloss::Mode::forward, exec);
  g.z = {};
  kdloss::ops::non_local(g, kdloss::Mode::backward, exec);
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  cublasDestroy(handle);
  cudaStreamDestroy(stream);
  std::vector<std::vector<double>> r{load(to_double(dz.to_host())), load(to_double(dgx.to_host()))};
  for (std::size_t i = 0; i < grad.size(); ++i) {
    const bool has_grad = i < 11 && !c.params[i].empty();
    r.push_back(has_grad ? to_double(grad[i]->to_host()) : std::vector<double>{});
  }
  return r;
}

}  // namespace

std::vector<std::vector<double>> non_local_on_gpu(int dtype, const NonLocalGpuCase& c) {
  return dtype == 1 ? run<double>(c) : run<float>(c);
}

}  // namespace kdloss_test
