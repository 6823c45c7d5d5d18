// GPU side of test_instance_relation.cpp and test_instance_relation_paper.cpp: the DRKD instance losses on
// device buffers, with a stream and a cuBLAS handle.
#include <cublas_v2.h>

#include <memory>
#include <stdexcept>

#include "kdloss/losses/drkd/instance_relation_paper.hpp"
#include "losses/drkd/instance_relation_args.hpp"
#include "losses/drkd/instance_relation_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {

using kdloss::Dims;

/// Runs `call(exec)` with a workspace of `bytes`, a fresh stream and cuBLAS handle, and waits for it.
template <class Call>
void on_stream(std::size_t bytes, Call call) {
  DeviceBuffer<unsigned char> ws(bytes + 1);
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
  cudaStream_t stream;
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  call(kdloss::Exec{kdloss::Workspace{ws.ptr, ws.count}, kdloss::Stream(stream), kdloss::BlasHandle(handle)});
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  cudaStreamDestroy(stream);
  cublasDestroy(handle);
}

template <class T>
std::vector<double> run_code(const kdloss_ref::losses::InstanceRelation& r,
                             const kdloss_ref::losses::InstanceRelationInputs& in) {
  using In = kdloss_ref::losses::InstanceRelationInputs;
  const auto s = instance_relation_shapes(r);
  std::vector<std::unique_ptr<DeviceBuffer<T>>> values(In::count), grads(In::count);
  std::vector<kdloss::View<const T>> v(In::count);
  std::vector<kdloss::View<T>> g(In::count);
  for (int k = 0; k < In::count; ++k) {
    if (s[k].rank == 0) continue;  // absent
    values[k] = std::make_unique<DeviceBuffer<T>>(from_double<T>(in.v[k]));
    grads[k] = std::make_unique<DeviceBuffer<T>>(in.v[k].size());
    v[k] = kdloss::cuda_view<const T>(values[k]->ptr, s[k]);
    g[k] = kdloss::cuda_view<T>(grads[k]->ptr, s[k]);
  }
  kdloss::drkd::InstanceRelationLossArgs<T> a = instance_relation_args<T>(r, v, g, kdloss::Mode::forward_backward);
  DeviceBuffer<T> out(1);
  a.out = kdloss::cuda_scalar(out.ptr);
  on_stream(kdloss::drkd::instance_relation_loss_workspace_bytes(a), [&](const kdloss::Exec& exec) {
    kdloss::drkd::instance_relation_loss(a, kdloss::Mode::forward_backward, exec);
  });
  std::vector<double> result = to_double(out.to_host());
  for (int k = 0; k < In::count; ++k) {
    if (!grads[k] || k == In::teacher) continue;  // the teacher's features get no gradient
    const auto gk = to_double(grads[k]->to_host());
    result.insert(result.end(), gk.begin(), gk.end());
  }
  return result;
}

template <class T>
std::vector<double> run_paper(const kdloss_ref::losses::InstancePaper& r, const std::vector<double>& xs,
                              const std::vector<double>& xt, const std::vector<double>& ct,
                              const std::vector<double>& cs) {
  const std::int64_t n = r.offsets.back();
  DeviceBuffer<T> ds(from_double<T>(xs)), dt(from_double<T>(xt)), out(1), gs(xs.size());
  // absent scores stay absent views; a one-element buffer keeps the constructor simple
  DeviceBuffer<T> dct(from_double<T>(ct.empty() ? std::vector<double>{0.0} : ct)),
      dcs(from_double<T>(cs.empty() ? std::vector<double>{0.0} : cs));
  kdloss::drkd::InstanceRelationPaperLossArgs<T> a;
  a.student = kdloss::cuda_view<const T>(ds.ptr, Dims{n, r.Ds});
  a.teacher = kdloss::cuda_view<const T>(dt.ptr, Dims{n, r.Dt});
  // the ragged split is host memory (it sizes the launches)
  a.boxes.offsets = kdloss::host_view<const std::int64_t>(r.offsets.data(),
                                                          Dims{static_cast<std::int64_t>(r.offsets.size())});
  if (!ct.empty()) a.teacher_scores = kdloss::cuda_view<const T>(dct.ptr, Dims{n});
  if (!cs.empty()) a.student_scores = kdloss::cuda_view<const T>(dcs.ptr, Dims{n});
  a.options.weight = r.weight;
  a.options.threshold_from =
      r.teacher_mean ? kdloss::drkd::ConfidenceThreshold::teacher_mean : kdloss::drkd::ConfidenceThreshold::fixed;
  a.options.threshold = r.threshold;
  a.options.mask_columns = r.columns;
  a.options.alpha = r.alpha;
  a.options.reduction = r.mean ? kdloss::Reduction::mean : kdloss::Reduction::sum;
  a.out = kdloss::cuda_scalar(out.ptr);
  a.grad_student = kdloss::cuda_view<T>(gs.ptr, Dims{n, r.Ds});
  on_stream(kdloss::drkd::instance_relation_paper_loss_workspace_bytes(a), [&](const kdloss::Exec& exec) {
    kdloss::drkd::instance_relation_paper_loss(a, kdloss::Mode::forward_backward, exec);
  });
  std::vector<double> result = to_double(out.to_host());
  const auto g = to_double(gs.to_host());
  result.insert(result.end(), g.begin(), g.end());
  return result;
}

}  // namespace

std::vector<double> instance_relation_on_gpu(int dtype, const kdloss_ref::losses::InstanceRelation& r,
                                             const kdloss_ref::losses::InstanceRelationInputs& in) {
  if (dtype == 1) return run_code<double>(r, in);
  return run_code<float>(r, in);
}

std::vector<double> instance_relation_paper_on_gpu(int dtype, const kdloss_ref::losses::InstancePaper& r,
                                                   const std::vector<double>& student,
                                                   const std::vector<double>& teacher,
                                                   const std::vector<double>& teacher_scores,
                                                   const std::vector<double>& student_scores) {
  if (dtype == 1) return run_paper<double>(r, student, teacher, teacher_scores, student_scores);
  return run_paper<float>(r, student, teacher, teacher_scores, student_scores);
}

}  // namespace kdloss_test
