// GPU side of test_dot_relation.cpp and test_concat_relation.cpp.
#include <cublas_v2.h>

#include <stdexcept>

#include "kdloss/ops/concat_relation.hpp"
#include "kdloss/ops/dot_relation.hpp"
#include "ops/relation_gpu.hpp"
#include "support/device_buffer.cuh"
#include "support/relation_layout.hpp"

namespace kdloss_test {
namespace {

using kdloss::Dims;

template <class T>
std::vector<double> run(bool concat, int layout, std::int64_t B, std::int64_t N, std::int64_t K, std::int64_t m,
                        std::int64_t c, const std::vector<double>& theta, const std::vector<double>& phi,
                        const std::vector<double>& g, const std::vector<double>& w, const std::vector<double>& gy) {
  DeviceBuffer<T> dt(from_double<T>(relation_place(theta, B, N, m, layout == 1))),
      dp(from_double<T>(relation_place(phi, B, K, m, layout == 1))),
      dg(from_double<T>(relation_place(g, B, K, c, layout == 1))),
      dgy(from_double<T>(relation_place(gy, B, N, c, layout == 1))), dw(from_double<T>(w));
  DeviceBuffer<T> y(B * N * c), gt(B * N * m), gp(B * K * m), gg(B * K * c), gw(2 * m);
  const auto view = [&](auto* p, std::int64_t P, std::int64_t C) {
    return kdloss::cuda_view(p, Dims{B, P, C}, relation_strides(layout == 1, P, C));
  };
  cublasHandle_t handle = nullptr;
  cudaStream_t stream = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  const auto exec = [&](const DeviceWorkspace& ws) {
    return kdloss::Exec{kdloss::Workspace{ws.buffer.ptr, ws.buffer.count}, kdloss::Stream(stream),
                        kdloss::BlasHandle(handle)};
  };
  const auto fill = [&](auto& a) {
    a.theta = view(static_cast<const T*>(dt.ptr), N, m);
    a.phi = view(static_cast<const T*>(dp.ptr), K, m);
    a.g = view(static_cast<const T*>(dg.ptr), K, c);
    a.y = view(y.ptr, N, c);
    a.grad_y = view(static_cast<const T*>(dgy.ptr), N, c);
    a.grad_theta = view(gt.ptr, N, m);
    a.grad_phi = view(gp.ptr, K, m);
    a.grad_g = view(gg.ptr, K, c);
  };
  if (concat) {
    kdloss::ops::ConcatRelationArgs<T> a;
    fill(a);
    a.weight = kdloss::cuda_view(static_cast<const T*>(dw.ptr), Dims{2 * m});
    a.grad_weight = kdloss::cuda_view(gw.ptr, Dims{2 * m});
    DeviceWorkspace ws(kdloss::ops::concat_relation_workspace_bytes(a));
    kdloss::ops::concat_relation(a, kdloss::Mode::forward_backward, exec(ws));
    cuda_check(cudaStreamSynchronize(stream), "sync");
  } else {
    kdloss::ops::DotRelationArgs<T> a;
    fill(a);
    DeviceWorkspace ws(kdloss::ops::dot_relation_workspace_bytes(a));
    kdloss::ops::dot_relation(a, kdloss::Mode::forward_backward, exec(ws));
    cuda_check(cudaStreamSynchronize(stream), "sync");
  }
  cublasDestroy(handle);
  cudaStreamDestroy(stream);
  std::vector<double> r = relation_gather(to_double(y.to_host()), B, N, c, layout == 1);
  const auto append = [&](const std::vector<double>& v) { r.insert(r.end(), v.begin(), v.end()); };
  append(relation_gather(to_double(gt.to_host()), B, N, m, layout == 1));
  append(relation_gather(to_double(gp.to_host()), B, K, m, layout == 1));
  append(relation_gather(to_double(gg.to_host()), B, K, c, layout == 1));
  if (concat) append(to_double(gw.to_host()));
  return r;
}

}  // namespace

std::vector<double> relation_on_gpu(bool concat, int dtype, int layout, std::int64_t B, std::int64_t N,
                                    std::int64_t K, std::int64_t m, std::int64_t c, const std::vector<double>& theta,
                                    const std::vector<double>& phi, const std::vector<double>& g,
                                    const std::vector<double>& w, const std::vector<double>& grad_y) {
  switch (dtype) {
    case 0: return run<float>(concat, layout, B, N, K, m, c, theta, phi, g, w, grad_y);
    case 1: return run<double>(concat, layout, B, N, K, m, c, theta, phi, g, w, grad_y);
    case 2: return run<__half>(concat, layout, B, N, K, m, c, theta, phi, g, w, grad_y);
    default: return run<__nv_bfloat16>(concat, layout, B, N, K, m, c, theta, phi, g, w, grad_y);
  }
}

}  // namespace kdloss_test
