// GPU side of test_glore.cpp.
#include <cublas_v2.h>

#include <memory>
#include <stdexcept>

#include "kdloss/ops/glore.hpp"
#include "ops/glore_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {

template <class T>
std::vector<double> run(const std::vector<double>& x, const std::vector<std::vector<double>>& params,
                        const std::vector<double>& grad_out, const kdloss::Dims& shape, std::int64_t m) {
  using kdloss::Dims;
  const std::int64_t C = shape[1], s = 2 * m;
  const Dims pshape[] = {Dims{s, C}, Dims{s}, Dims{m, C}, Dims{m}, Dims{m, m}, Dims{m}, Dims{s, s}, Dims{C, s}, Dims{C}, Dims{C}};
  DeviceBuffer<T> dx(from_double<T>(x)), dg(from_double<T>(grad_out)), dout(x.size()), dgx(x.size());
  std::vector<std::unique_ptr<DeviceBuffer<T>>> dp, dgp;
  for (int i = 0; i < 10; ++i) {
    dp.push_back(std::make_unique<DeviceBuffer<T>>(from_double<T>(params[i])));
    dgp.push_back(std::make_unique<DeviceBuffer<T>>(params[i].size()));
  }
  kdloss::ops::GloreArgs<T> a;
  a.x = kdloss::cuda_view<const T>(dx.ptr, shape);
  kdloss::View<const T>* pin[] = {&a.state_weight, &a.state_bias, &a.proj_weight, &a.proj_bias, &a.gcn_conv1_weight,
                                  &a.gcn_conv1_bias, &a.gcn_conv2_weight, &a.extend_weight, &a.bn_weight, &a.bn_bias};
  kdloss::View<T>* pgr[] = {&a.grad_state_weight, &a.grad_state_bias, &a.grad_proj_weight, &a.grad_proj_bias,
                            &a.grad_gcn_conv1_weight, &a.grad_gcn_conv1_bias, &a.grad_gcn_conv2_weight,
                            &a.grad_extend_weight, &a.grad_bn_weight, &a.grad_bn_bias};
  for (int i = 0; i < 10; ++i) {
    *pin[i] = kdloss::cuda_view<const T>(dp[i]->ptr, pshape[i]);
    *pgr[i] = kdloss::cuda_view<T>(dgp[i]->ptr, pshape[i]);
  }
  a.out = kdloss::cuda_view<T>(dout.ptr, shape);
  a.grad_out = kdloss::cuda_view<const T>(dg.ptr, shape);
  a.grad_x = kdloss::cuda_view<T>(dgx.ptr, shape);
  DeviceBuffer<unsigned char> reserve(kdloss::ops::glore_reserve_bytes(a) + 1);
  a.reserve = kdloss::Reserve{reserve.ptr, reserve.count};
  DeviceBuffer<unsigned char> ws(kdloss::ops::glore_workspace_bytes(a) + 1);
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
  cudaStream_t stream;
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  const kdloss::Exec exec{kdloss::Workspace{ws.ptr, ws.count}, kdloss::Stream(stream), kdloss::BlasHandle(handle)};
  kdloss::ops::glore(a, kdloss::Mode::forward, exec);
  kdloss::ops::glore(a, kdloss::Mode::backward, exec);
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  cudaStreamDestroy(stream);
  cublasDestroy(handle);
  std::vector<double> out = to_double(dout.to_host());
  const auto gx = to_double(dgx.to_host());
  out.insert(out.end(), gx.begin(), gx.end());
  for (int i = 0; i < 10; ++i) {
    const auto g = to_double(dgp[i]->to_host());
    out.insert(out.end(), g.begin(), g.end());
  }
  return out;
}

}  // namespace

std::vector<double> glore_on_gpu(int dtype, const std::vector<double>& x, const std::vector<std::vector<double>>& params,
                                 const std::vector<double>& grad_out, std::int64_t batch, std::int64_t channels,
                                 std::int64_t mid, std::int64_t h, std::int64_t w) {
  const kdloss::Dims shape{batch, channels, h, w};
  if (dtype == 1) return run<double>(x, params, grad_out, shape, mid);
  return run<float>(x, params, grad_out, shape, mid);
}

}  // namespace kdloss_test
