// GPU side of test_glore_relation.cpp: drkd::glore_relation_loss on device buffers with a stream.
#include <cublas_v2.h>

#include <memory>
#include <stdexcept>

#include "kdloss/losses/drkd/glore_relation.hpp"
#include "losses/drkd/glore_relation_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {

using kdloss::Dims;

std::vector<Dims> unit_shapes(std::int64_t C, std::int64_t m) {
  const std::int64_t s = 2 * m;
  return {Dims{s, C}, Dims{s}, Dims{m, C}, Dims{m}, Dims{m, m}, Dims{m}, Dims{s, s}, Dims{C, s}, Dims{C}, Dims{C}};
}

/// A unit's parameters and gradients on the device, bound to the loss's views.
template <class T>
struct DeviceUnit {
  std::vector<std::unique_ptr<DeviceBuffer<T>>> p, g;
  DeviceUnit(const std::vector<std::vector<double>>& params, std::int64_t C, std::int64_t m,
             kdloss::drkd::GloreUnitParams<T>& pv, kdloss::drkd::GloreUnitGrads<T>& gv) {
    const auto sh = unit_shapes(C, m);
    kdloss::View<const T>* pin[] = {&pv.state_weight,     &pv.state_bias,     &pv.proj_weight,      &pv.proj_bias,
                                    &pv.gcn_conv1_weight, &pv.gcn_conv1_bias, &pv.gcn_conv2_weight, &pv.extend_weight,
                                    &pv.bn_weight,        &pv.bn_bias};
    kdloss::View<T>* pg[] = {&gv.state_weight,     &gv.state_bias,     &gv.proj_weight,      &gv.proj_bias,
                             &gv.gcn_conv1_weight, &gv.gcn_conv1_bias, &gv.gcn_conv2_weight, &gv.extend_weight,
                             &gv.bn_weight,        &gv.bn_bias};
    for (int i = 0; i < 10; ++i) {
      p.push_back(std::make_unique<DeviceBuffer<T>>(from_double<T>(params[i])));
      g.push_back(std::make_unique<DeviceBuffer<T>>(params[i].size()));
      *pin[i] = kdloss::cuda_view<const T>(p.back()->ptr, sh[i]);
      *pg[i] = kdloss::cuda_view<T>(g.back()->ptr, sh[i]);
    }
  }
  void append(std::vector<double>& out) const {
    for (const auto& b : g) {
      const auto v = to_double(b->to_host());
      out.insert(out.end(), v.begin(), v.end());
    }
  }
};

template <class T>
std::vector<double> run(const std::vector<double>& s, const std::vector<double>& t,
                        const std::vector<std::vector<double>>& ps, const std::vector<std::vector<double>>& pt,
                        const std::vector<double>& aw, const std::vector<double>& ab, std::int64_t B, std::int64_t Cs,
                        std::int64_t Ct, std::int64_t ms, std::int64_t mt, std::int64_t H, std::int64_t W) {
  const Dims ss{B, Cs, H, W}, ts{B, Ct, H, W};
  DeviceBuffer<T> ds(from_double<T>(s)), dt(from_double<T>(t)), daw(from_double<T>(aw)), dab(from_double<T>(ab)),
      out(1), gs(s.size()), gaw(aw.size()), gab(ab.size());
  kdloss::drkd::GloreRelationLossArgs<T> a;
  a.student = kdloss::cuda_view<const T>(ds.ptr, ss);
  a.teacher = kdloss::cuda_view<const T>(dt.ptr, ts);
  DeviceUnit<T> us(ps, Cs, ms, a.student_glore, a.grad_student_glore);
  DeviceUnit<T> ut(pt, Ct, mt, a.teacher_glore, a.grad_teacher_glore);
  a.adapt_weight = kdloss::cuda_view<const T>(daw.ptr, Dims{Ct, Cs});
  a.adapt_bias = kdloss::cuda_view<const T>(dab.ptr, Dims{Ct});
  a.out = kdloss::cuda_scalar(out.ptr);
  a.grad_student = kdloss::cuda_view<T>(gs.ptr, ss);
  a.grad_adapt_weight = kdloss::cuda_view<T>(gaw.ptr, Dims{Ct, Cs});
  a.grad_adapt_bias = kdloss::cuda_view<T>(gab.ptr, Dims{Ct});
  DeviceBuffer<unsigned char> ws(kdloss::drkd::glore_relation_loss_workspace_bytes(a) + 1);
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
  cudaStream_t stream;
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  const kdloss::Exec exec{kdloss::Workspace{ws.ptr, ws.count}, kdloss::Stream(stream), kdloss::BlasHandle(handle)};
  kdloss::drkd::glore_relation_loss(a, kdloss::Mode::forward_backward, exec);
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  cudaStreamDestroy(stream);
  cublasDestroy(handle);
  std::vector<double> r = to_double(out.to_host());
  for (const DeviceBuffer<T>* b : {&gs, &gaw, &gab}) {
    const auto v = to_double(b->to_host());
    r.insert(r.end(), v.begin(), v.end());
  }
  us.append(r);
  ut.append(r);
  return r;
}

}  // namespace

std::vector<double> glore_relation_on_gpu(int dtype, const std::vector<double>& student,
                                          const std::vector<double>& teacher,
                                          const std::vector<std::vector<double>>& student_params,
                                          const std::vector<std::vector<double>>& teacher_params,
                                          const std::vector<double>& adapt_weight,
                                          const std::vector<double>& adapt_bias, std::int64_t B, std::int64_t Cs,
                                          std::int64_t Ct, std::int64_t ms, std::int64_t mt, std::int64_t H,
                                          std::int64_t W) {
  if (dtype == 1)
    return run<double>(student, teacher, student_params, teacher_params, adapt_weight, adapt_bias, B, Cs, Ct, ms, mt, H,
                       W);
  return run<float>(student, teacher, student_params, teacher_params, adapt_weight, adapt_bias, B, Cs, Ct, ms, mt, H, W);
}

}  // namespace kdloss_test
