// GPU side of the contrastive cases of test_detr_distill.cpp: detr::contrastive_query_loss on device buffers.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>

#include "kdloss/losses/detr/contrastive.hpp"
#include "losses/detr/contrastive_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {

template <class T>
std::vector<double> run_contrastive(std::int64_t K, std::int64_t N, std::int64_t D, bool normalize,
                                    const std::vector<double>& teacher, const std::vector<double>& student) {
  DeviceBuffer<T> pt(from_double<T>(teacher)), ps(from_double<T>(student)), gt(teacher.size()), gs(student.size()),
      out(1);
  kdloss::detr::ContrastiveQueryArgs<T> a;
  a.teacher = kdloss::cuda_view<const T>(pt.ptr, {K, N, D});
  a.student = kdloss::cuda_view<const T>(ps.ptr, {K, N, D});
  a.out = kdloss::cuda_scalar(out.ptr);
  a.grad_teacher = kdloss::cuda_view(gt.ptr, {K, N, D});
  a.grad_student = kdloss::cuda_view(gs.ptr, {K, N, D});
  a.options.normalize = normalize;
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
  DeviceWorkspace ws(kdloss::detr::contrastive_query_loss_workspace_bytes(a));
  kdloss::detr::contrastive_query_loss(
      a, kdloss::Mode::forward_backward,
      kdloss::Exec{kdloss::Workspace{ws.buffer.ptr, ws.buffer.count}, kdloss::Stream{}, kdloss::BlasHandle(handle)});
  std::vector<double> r = to_double(out.to_host());
  cublasDestroy(handle);
  append_double(r, gt);
  append_double(r, gs);
  return r;
}

}  // namespace

std::vector<double> contrastive_on_gpu(int dtype, std::int64_t K, std::int64_t N, std::int64_t D, bool normalize,
                                       const std::vector<double>& teacher, const std::vector<double>& student) {
  if (dtype == 1) return run_contrastive<double>(K, N, D, normalize, teacher, student);
  return run_contrastive<float>(K, N, D, normalize, teacher, student);
}

}  // namespace kdloss_test
