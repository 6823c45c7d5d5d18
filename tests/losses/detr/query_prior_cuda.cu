// GPU side of test_query_prior.cpp: detr::query_prior_loss on device buffers.
#include <cuda_runtime.h>

#include "kdloss/losses/detr/query_prior.hpp"
#include "losses/detr/query_prior_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {

template <class T>
std::vector<double> run_query_prior(std::int64_t K, std::int64_t B, std::int64_t Q, std::int64_t C,
                                    const std::vector<double>& logits, const std::vector<double>& boxes,
                                    const std::vector<std::int64_t>& labels, const std::vector<double>& gt,
                                    const std::vector<double>& sizes, const std::vector<std::int64_t>& pred,
                                    const std::vector<std::int64_t>& target, const std::vector<std::int64_t>& layers) {
  const auto T_all = static_cast<std::int64_t>(labels.size()), P = static_cast<std::int64_t>(pred.size());
  DeviceBuffer<T> z(from_double<T>(logits)), bx(from_double<T>(boxes)), g(from_double<T>(gt)),
      hw(from_double<T>(sizes)), gl(logits.size()), gb(boxes.size()), outs(3);
  DeviceBuffer<std::int64_t> lb(labels), pr(pred), tr(target);
  kdloss::detr::QueryPriorLossArgs<T> a;
  a.logits = kdloss::cuda_view<const T>(z.ptr, {K, B, Q, C});
  a.boxes = kdloss::cuda_view<const T>(bx.ptr, {K, B, Q, 4});
  a.gt_labels = kdloss::cuda_view<const std::int64_t>(lb.ptr, {T_all});
  a.gt_boxes = kdloss::cuda_view<const T>(g.ptr, {T_all, 4});
  a.sizes = kdloss::cuda_view<const T>(hw.ptr, {B, 2});
  a.pred_rows = kdloss::cuda_view<const std::int64_t>(pr.ptr, {P});
  a.target_rows = kdloss::cuda_view<const std::int64_t>(tr.ptr, {P});
  a.layers = kdloss::Segments<std::int64_t>{
      kdloss::host_view<const std::int64_t>(layers.data(), {static_cast<std::int64_t>(layers.size())})};
  a.out_cls = kdloss::cuda_scalar(outs.ptr);
  a.out_l1 = kdloss::cuda_scalar(outs.ptr + 1);
  a.out_giou = kdloss::cuda_scalar(outs.ptr + 2);
  a.grad_logits = kdloss::cuda_view(gl.ptr, {K, B, Q, C});
  a.grad_boxes = kdloss::cuda_view(gb.ptr, {K, B, Q, 4});
  DeviceWorkspace ws(kdloss::detr::query_prior_loss_workspace_bytes(a));
  kdloss::detr::query_prior_loss(a, kdloss::Mode::forward_backward,
                                 kdloss::Exec{kdloss::Workspace{ws.buffer.ptr, ws.buffer.count}});
  std::vector<double> r = to_double(outs.to_host());
  append_double(r, gl);
  append_double(r, gb);
  return r;
}

}  // namespace

std::vector<double> query_prior_on_gpu(int dtype, std::int64_t K, std::int64_t B, std::int64_t Q, std::int64_t C,
                                       const std::vector<double>& logits, const std::vector<double>& boxes,
                                       const std::vector<std::int64_t>& labels, const std::vector<double>& gt,
                                       const std::vector<double>& sizes, const std::vector<std::int64_t>& pred,
                                       const std::vector<std::int64_t>& target, const std::vector<std::int64_t>& layers) {
  if (dtype == 1) return run_query_prior<double>(K, B, Q, C, logits, boxes, labels, gt, sizes, pred, target, layers);
  return run_query_prior<float>(K, B, Q, C, logits, boxes, labels, gt, sizes, pred, target, layers);
}

}  // namespace kdloss_test
