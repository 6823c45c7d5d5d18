// GPU side of test_boxes.cpp.
#include <cuda_fp16.h>

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

}  // namespace

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
