// GPU side of test_detr_distill.cpp: detr::target_aware_feature_loss on device buffers.
#include <cuda_runtime.h>

#include <memory>

#include "kdloss/losses/detr/feature_distillation.hpp"
#include "losses/detr/feature_distillation_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {

template <class T>
std::vector<double> run_feature(const FeatureGpuInputs& in, double upstream) {
  const std::int64_t K = in.K, B = in.B, Q = in.Q, C = in.C, D = in.D;
  DeviceBuffer<T> sc(from_double<T>(in.scores)), bx(from_double<T>(in.boxes)), qu(from_double<T>(in.queries)),
      gt(from_double<T>(in.gt.empty() ? std::vector<double>{0, 0, 0, 0} : in.gt)), out(1),
      up(from_double<T>(std::vector<double>{upstream}));
  std::vector<std::unique_ptr<DeviceBuffer<T>>> ft, fs, gs;
  kdloss::detr::TargetAwareFeatureArgs<T> a;
  a.teacher_scores = kdloss::cuda_view<const T>(sc.ptr, {K, B, Q, C});
  a.teacher_boxes = kdloss::cuda_view<const T>(bx.ptr, {K, B, Q, 4});
  a.teacher_queries = kdloss::cuda_view<const T>(qu.ptr, {K, B, Q, D});
  a.gt_boxes = kdloss::cuda_view<const T>(gt.ptr, {in.gt_offsets.back(), 4});
  a.gt_images = kdloss::Segments<std::int64_t>{kdloss::host_view<const std::int64_t>(
      in.gt_offsets.data(), {static_cast<std::int64_t>(in.gt_offsets.size())})};
  for (std::size_t l = 0; l < in.H.size(); ++l) {
    const kdloss::Dims shape{B, D, in.H[l], in.W[l]};
    ft.push_back(std::make_unique<DeviceBuffer<T>>(from_double<T>(in.ft[l])));
    fs.push_back(std::make_unique<DeviceBuffer<T>>(from_double<T>(in.fs[l])));
    gs.push_back(std::make_unique<DeviceBuffer<T>>(in.fs[l].size()));
    a.teacher_features.push_back(kdloss::cuda_view<const T>(ft.back()->ptr, shape));
    a.student_features.push_back(kdloss::cuda_view<const T>(fs.back()->ptr, shape));
    a.grad_student_features.push_back(kdloss::cuda_view(gs.back()->ptr, shape));
  }
  a.options.topk = in.topk;
  kdloss::Mode mode = kdloss::Mode::forward_backward;
  if (upstream != 0) {
    mode = kdloss::Mode::backward;
    a.grad_out = kdloss::cuda_scalar<const T>(up.ptr);
  } else {
    a.out = kdloss::cuda_scalar(out.ptr);
  }
  DeviceWorkspace ws(kdloss::detr::target_aware_feature_loss_workspace_bytes(a));
  kdloss::detr::target_aware_feature_loss(a, mode, kdloss::Exec{kdloss::Workspace{ws.buffer.ptr, ws.buffer.count}});
  std::vector<double> r;
  if (upstream == 0) r = to_double(out.to_host());
  for (const auto& g : gs) append_double(r, *g);
  return r;
}

}  // namespace

std::vector<double> target_aware_feature_on_gpu(int dtype, const FeatureGpuInputs& in, double backward_upstream) {
  if (dtype == 1) return run_feature<double>(in, backward_upstream);
  return run_feature<float>(in, backward_upstream);
}

}  // namespace kdloss_test
