// GPU side of test_softmax_relation.cpp: the op (validation, workspace, reserve, dispatch) on device
// buffers, against the CPU run in the test.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kdloss/ops/softmax_relation.hpp"
#include "ops/softmax_relation_gpu.hpp"
#include "support/device_buffer.cuh"
#include "support/relation_layout.hpp"

namespace kdloss_test {
namespace {

using kdloss::Dims;

template <class T>
std::vector<double> run(bool cf, bool fused, std::int64_t B, std::int64_t N, std::int64_t K, std::int64_t m,
                        std::int64_t c, double scale, const std::vector<double>& theta, const std::vector<double>& phi,
                        const std::vector<double>& g, const std::vector<double>& gy) {
  DeviceBuffer<T> dt(from_double<T>(relation_place(theta, B, N, m, cf))),
      dp(from_double<T>(relation_place(phi, B, K, m, cf))), dg(from_double<T>(relation_place(g, B, K, c, cf))),
      dgy(from_double<T>(relation_place(gy, B, N, c, cf)));
  DeviceBuffer<T> y(B * N * c), gt(B * N * m), gp(B * K * m), gg(B * K * c);
  const auto view = [&](auto* p, std::int64_t P, std::int64_t C) {
    return kdloss::cuda_view(p, Dims{B, P, C}, relation_strides(cf, P, C));
  };
  cudaStream_t stream = nullptr;
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  kdloss::ops::SoftmaxRelationArgs<T> a;
  a.theta = view(static_cast<const T*>(dt.ptr), N, m);
  a.phi = view(static_cast<const T*>(dp.ptr), K, m);
  a.g = view(static_cast<const T*>(dg.ptr), K, c);
  a.y = view(y.ptr, N, c);
  a.grad_y = view(static_cast<const T*>(dgy.ptr), N, c);
  a.grad_theta = view(gt.ptr, N, m);
  a.grad_phi = view(gp.ptr, K, m);
  a.grad_g = view(gg.ptr, K, c);
  a.options.scale = scale;
  DeviceWorkspace ws(kdloss::ops::softmax_relation_workspace_bytes(a));
  DeviceWorkspace reserve(kdloss::ops::softmax_relation_reserve_bytes(a));
  a.reserve = kdloss::Reserve{reserve.buffer.ptr, reserve.buffer.count};
  const kdloss::Exec exec{kdloss::Workspace{ws.buffer.ptr, ws.buffer.count}, kdloss::Stream(stream)};
  if (fused) {
    kdloss::ops::softmax_relation(a, kdloss::Mode::forward_backward, exec);
  } else {
    kdloss::ops::softmax_relation(a, kdloss::Mode::forward, exec);
    kdloss::ops::softmax_relation(a, kdloss::Mode::backward, exec);
  }
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  cudaStreamDestroy(stream);
  std::vector<double> out;
  for (auto part :
       {relation_gather(to_double(y.to_host()), B, N, c, cf), relation_gather(to_double(gt.to_host()), B, N, m, cf),
        relation_gather(to_double(gp.to_host()), B, K, m, cf), relation_gather(to_double(gg.to_host()), B, K, c, cf)})
    out.insert(out.end(), part.begin(), part.end());
  return out;
}

}  // namespace

std::vector<double> softmax_relation_on_gpu(int dtype, bool channels_first, bool fused, std::int64_t B, std::int64_t N,
                                            std::int64_t K, std::int64_t m, std::int64_t c, double scale,
                                            const std::vector<double>& theta, const std::vector<double>& phi,
                                            const std::vector<double>& g, const std::vector<double>& grad_y) {
  switch (dtype) {
    case 0: return run<float>(channels_first, fused, B, N, K, m, c, scale, theta, phi, g, grad_y);
    case 1: return run<double>(channels_first, fused, B, N, K, m, c, scale, theta, phi, g, grad_y);
    case 2: return run<__half>(channels_first, fused, B, N, K, m, c, scale, theta, phi, g, grad_y);
    default: return run<__nv_bfloat16>(channels_first, fused, B, N, K, m, c, scale, theta, phi, g, grad_y);
  }
}

}  // namespace kdloss_test
