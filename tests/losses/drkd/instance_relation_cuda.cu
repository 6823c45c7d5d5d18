// GPU side of test_instance_relation_paper.cpp: drkd::instance_relation_paper_loss on device buffers.
#include <cublas_v2.h>

#include <stdexcept>

#include "kdloss/losses/drkd/instance_relation_paper.hpp"
#include "losses/drkd/instance_relation_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {

using kdloss::Dims;

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
  DeviceBuffer<unsigned char> ws(kdloss::drkd::instance_relation_paper_loss_workspace_bytes(a) + 1);
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
  cudaStream_t stream;
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  const kdloss::Exec exec{kdloss::Workspace{ws.ptr, ws.count}, kdloss::Stream(stream), kdloss::BlasHandle(handle)};
  kdloss::drkd::instance_relation_paper_loss(a, kdloss::Mode::forward_backward, exec);
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  cudaStreamDestroy(stream);
  cublasDestroy(handle);
  std::vector<double> result = to_double(out.to_host());
  const auto g = to_double(gs.to_host());
  result.insert(result.end(), g.begin(), g.end());
  return result;
}

}  // namespace

std::vector<double> instance_relation_paper_on_gpu(int dtype, const kdloss_ref::losses::InstancePaper& r,
                                                   const std::vector<double>& student,
                                                   const std::vector<double>& teacher,
                                                   const std::vector<double>& teacher_scores,
                                                   const std::vector<double>& student_scores) {
  if (dtype == 1) return run_paper<double>(r, student, teacher, teacher_scores, student_scores);
  return run_paper<float>(r, student, teacher, teacher_scores, student_scores);
}

}  // namespace kdloss_test
