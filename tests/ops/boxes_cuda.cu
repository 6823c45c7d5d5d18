// GPU side of test_boxes.cpp.
#include <cuda_fp16.h>

#include <stdexcept>

#include <cublas_v2.h>

#include "kdloss/losses/detr/detr.hpp"
#include "kdloss/ops/boxes.hpp"
#include "ops/boxes_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {

template <class T>
std::vector<double> run_giou(const std::vector<double>& pred, const std::vector<double>& target, int form,
                             double eps) {
  const std::int64_t n = static_cast<std::int64_t>(pred.size() / 4);
  DeviceBuffer<T> p(from_double<T>(pred)), t(from_double<T>(target)), gp(pred.size()), gt(pred.size()), out(1);
  kdloss::ops::GIoULossArgs<T> a;
  a.pred = kdloss::cuda_view<const T>(p.ptr, {n, 4});
  a.target = kdloss::cuda_view<const T>(t.ptr, {n, 4});
  a.out = kdloss::View<T>(out.ptr, kdloss::Dims{}, kdloss::Dims{}, kdloss::Device::cuda(0));
  a.grad_pred = kdloss::cuda_view(gp.ptr, {n, 4});
  a.grad_target = kdloss::cuda_view(gt.ptr, {n, 4});
  a.options.form = static_cast<kdloss::ops::OverlapForm>(form);
  a.options.eps = eps;
  DeviceWorkspace ws(kdloss::ops::giou_loss_workspace_bytes(a));
  kdloss::ops::giou_loss(a, kdloss::Mode::forward_backward,
                         kdloss::Exec{kdloss::Workspace{ws.buffer.ptr, ws.buffer.count}});
  std::vector<double> r = to_double(out.to_host());
  const auto a1 = to_double(gp.to_host()), a2 = to_double(gt.to_host());
  r.insert(r.end(), a1.begin(), a1.end());
  r.insert(r.end(), a2.begin(), a2.end());
  return r;
}

template <class T>
std::vector<double> run_pairwise(const std::vector<double>& b1, const std::vector<double>& b2, std::int64_t n,
                                 std::int64_t m, int form, double eps) {
  std::vector<double> cm(b2.size());  // boxes2 coordinate-major: strides {1, m}
  for (std::int64_t j = 0; j < m; ++j)
    for (int k = 0; k < 4; ++k) cm[k * m + j] = b2[j * 4 + k];
  DeviceBuffer<T> a(from_double<T>(b1)), b(from_double<T>(cm)), out(static_cast<std::size_t>(n * m));
  kdloss::ops::BoxOverlapOptions o;
  o.form = static_cast<kdloss::ops::OverlapForm>(form);
  o.eps = eps;
  kdloss::ops::generalized_box_iou(kdloss::cuda_view<const T>(a.ptr, {n, 4}),
                                   kdloss::cuda_view<const T>(b.ptr, {m, 4}, {1, m}, 0),
                                   kdloss::cuda_view(out.ptr, {n, m}), o);
  return to_double(out.to_host());
}

template <class T>
std::vector<double> run_class(const std::vector<double>& logits, std::int64_t B, std::int64_t Q, std::int64_t C,
                              const std::vector<double>& probs, const std::vector<std::int64_t>& pred_rows,
                              const std::vector<std::int64_t>& target_rows, bool focal) {
  const std::int64_t K = static_cast<std::int64_t>(pred_rows.size()), T_all = static_cast<std::int64_t>(probs.size()) / C;
  DeviceBuffer<T> z(from_double<T>(logits)), p(from_double<T>(probs)), g(logits.size()), out(1);
  DeviceBuffer<std::int64_t> pr(pred_rows), tr(target_rows);
  kdloss::detr::MatchedClassLossArgs<T> a;
  a.logits = kdloss::cuda_view<const T>(z.ptr, {B, Q, C});
  a.target_probs = kdloss::cuda_view<const T>(p.ptr, {T_all, C});
  a.pred_rows = kdloss::cuda_view<const std::int64_t>(pr.ptr, {K});
  a.target_rows = kdloss::cuda_view<const std::int64_t>(tr.ptr, {K});
  a.out = kdloss::cuda_scalar(out.ptr);
  a.grad_logits = kdloss::cuda_view(g.ptr, {B, Q, C});
  if (focal) a.options.kind = kdloss::detr::MatchedClassLossOptions::Kind::focal;
  DeviceWorkspace ws(kdloss::detr::matched_class_loss_workspace_bytes(a));
  kdloss::detr::matched_class_loss(a, kdloss::Mode::forward_backward,
                                   kdloss::Exec{kdloss::Workspace{ws.buffer.ptr, ws.buffer.count}});
  std::vector<double> r = to_double(out.to_host());
  const auto gh = to_double(g.to_host());
  r.insert(r.end(), gh.begin(), gh.end());
  return r;
}

template <class T>
std::vector<double> run_cost(int preset, const std::vector<double>& logits, const std::vector<double>& boxes,
                             std::int64_t B, std::int64_t Q, std::int64_t C, const std::vector<double>& probs,
                             const std::vector<std::int64_t>& labels, const std::vector<double>& tboxes,
                             const std::vector<std::int64_t>& offsets, const std::vector<double>& sizes,
                             std::int64_t tmax) {
  using O = kdloss::detr::MatchingCostOptions;
  const O presets[4] = {O::detr(), O::deformable_detr(), O::mmdet_hungarian(), O::detrdistill()};
  const std::int64_t T_all = static_cast<std::int64_t>(tboxes.size()) / 4;
  DeviceBuffer<T> z(from_double<T>(logits)), b(from_double<T>(boxes)), p(from_double<T>(probs)),
      tb(from_double<T>(tboxes)), sz(from_double<T>(sizes)), out(static_cast<std::size_t>(B * Q * tmax));
  DeviceBuffer<std::int64_t> lab(labels);
  kdloss::detr::MatchingCostArgs<T> a;
  a.options = presets[preset];
  a.pred_logits = kdloss::cuda_view<const T>(z.ptr, {B, Q, C});
  a.pred_boxes = kdloss::cuda_view<const T>(b.ptr, {B, Q, 4});
  if (preset == 3) a.target_probs = kdloss::cuda_view<const T>(p.ptr, {T_all, C});
  else a.target_labels = kdloss::cuda_view<const std::int64_t>(lab.ptr, {T_all});
  a.target_boxes = kdloss::cuda_view<const T>(tb.ptr, {T_all, 4});
  a.targets = kdloss::Segments<std::int64_t>{kdloss::host_view<const std::int64_t>(offsets.data(), {B + 1})};
  if (a.options.target_in_pixels) a.sizes = kdloss::cuda_view<const T>(sz.ptr, {B, 2});
  a.out = kdloss::cuda_view(out.ptr, {B, Q, tmax});
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
  DeviceWorkspace ws(kdloss::detr::matching_cost_workspace_bytes(a));
  kdloss::detr::matching_cost(a, kdloss::Mode::forward,
                              kdloss::Exec{kdloss::Workspace{ws.buffer.ptr, ws.buffer.count}, kdloss::Stream{},
                                           kdloss::BlasHandle(handle)});
  const auto r = to_double(out.to_host());
  cublasDestroy(handle);
  return r;
}

}  // namespace

std::vector<double> matched_class_loss_on_gpu(int dtype, const std::vector<double>& logits, std::int64_t B,
                                              std::int64_t Q, std::int64_t C, const std::vector<double>& probs,
                                              const std::vector<std::int64_t>& pred_rows,
                                              const std::vector<std::int64_t>& target_rows, bool focal) {
  if (dtype == 0) return run_class<float>(logits, B, Q, C, probs, pred_rows, target_rows, focal);
  return run_class<double>(logits, B, Q, C, probs, pred_rows, target_rows, focal);
}

std::vector<double> matching_cost_on_gpu(int dtype, int preset, const std::vector<double>& logits,
                                         const std::vector<double>& boxes, std::int64_t B, std::int64_t Q,
                                         std::int64_t C, const std::vector<double>& probs,
                                         const std::vector<std::int64_t>& labels, const std::vector<double>& tboxes,
                                         const std::vector<std::int64_t>& offsets, const std::vector<double>& sizes,
                                         std::int64_t tmax) {
  if (dtype == 0) return run_cost<float>(preset, logits, boxes, B, Q, C, probs, labels, tboxes, offsets, sizes, tmax);
  return run_cost<double>(preset, logits, boxes, B, Q, C, probs, labels, tboxes, offsets, sizes, tmax);
}

std::vector<double> giou_loss_on_gpu(int dtype, const std::vector<double>& pred, const std::vector<double>& target,
                                     int form, double eps) {
  if (dtype == 0) return run_giou<float>(pred, target, form, eps);
  if (dtype == 1) return run_giou<double>(pred, target, form, eps);
  return run_giou<__half>(pred, target, form, eps);
}

std::vector<double> generalized_box_iou_on_gpu(int dtype, const std::vector<double>& boxes1,
                                               const std::vector<double>& boxes2, std::int64_t n, std::int64_t m,
                                               int form, double eps) {
  if (dtype == 0) return run_pairwise<float>(boxes1, boxes2, n, m, form, eps);
  if (dtype == 1) return run_pairwise<double>(boxes1, boxes2, n, m, form, eps);
  return run_pairwise<__half>(boxes1, boxes2, n, m, form, eps);
}

}  // namespace kdloss_test
