// GPU side of test_logits_distillation.cpp: detr::logits_distillation_loss on device buffers.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>

#include "kdloss/losses/detr/logits_distillation.hpp"
#include "losses/detr/logits_distillation_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {

template <class T>
std::vector<double> run_logits(std::int64_t K, std::int64_t B, std::int64_t Q, std::int64_t C,
                               const std::vector<double>& sl, const std::vector<double>& sb,
                               const std::vector<double>& tl, const std::vector<double>& tb,
                               const std::vector<double>& sizes) {
  DeviceBuffer<T> zs(from_double<T>(sl)), bs(from_double<T>(sb)), zt(from_double<T>(tl)), bt(from_double<T>(tb)),
      hw(from_double<T>(sizes)), gl(sl.size()), gb(sb.size()), outs(4);
  kdloss::detr::LogitsDistillationArgs<T> a;
  a.student_logits = kdloss::cuda_view<const T>(zs.ptr, {K, B, Q, C});
  a.student_boxes = kdloss::cuda_view<const T>(bs.ptr, {K, B, Q, 4});
  a.teacher_logits = kdloss::cuda_view<const T>(zt.ptr, {K, B, Q, C});
  a.teacher_boxes = kdloss::cuda_view<const T>(bt.ptr, {K, B, Q, 4});
  a.sizes = kdloss::cuda_view<const T>(hw.ptr, {B, 2});
  a.out_cls = kdloss::cuda_scalar(outs.ptr);
  a.out_l1 = kdloss::cuda_scalar(outs.ptr + 1);
  a.out_giou = kdloss::cuda_scalar(outs.ptr + 2);
  a.out = kdloss::cuda_scalar(outs.ptr + 3);
  a.grad_student_logits = kdloss::cuda_view(gl.ptr, {K, B, Q, C});
  a.grad_student_boxes = kdloss::cuda_view(gb.ptr, {K, B, Q, 4});
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
  DeviceWorkspace ws(kdloss::detr::logits_distillation_loss_workspace_bytes(a));
  kdloss::detr::logits_distillation_loss(
      a, kdloss::Mode::forward_backward,
      kdloss::Exec{kdloss::Workspace{ws.buffer.ptr, ws.buffer.count}, kdloss::Stream{}, kdloss::BlasHandle(handle)});
  std::vector<double> r = to_double(outs.to_host());
  cublasDestroy(handle);
  append_double(r, gl);
  append_double(r, gb);
  return r;
}

}  // namespace

std::vector<double> logits_distillation_on_gpu(int dtype, std::int64_t K, std::int64_t B, std::int64_t Q,
                                               std::int64_t C, const std::vector<double>& sl,
                                               const std::vector<double>& sb, const std::vector<double>& tl,
                                               const std::vector<double>& tb, const std::vector<double>& sizes) {
  if (dtype == 1) return run_logits<double>(K, B, Q, C, sl, sb, tl, tb, sizes);
  return run_logits<float>(K, B, Q, C, sl, sb, tl, tb, sizes);
}

}  // namespace kdloss_test
