// Naive double-precision references of ops/boxes.hpp, written straight from the formulas of DETR's
// util/box_ops.py, mmdet's bbox_overlaps and torchvision's generalized_box_iou_loss (losses.md 5.3),
// with the library's stated rule for a zero denominator (expr/boxes.hpp).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace kdloss_ref::ops {

using Box = std::array<double, 4>;

/// format: 0 xyxy, 1 cxcywh, 2 xywh (ops::BoxFormat's order).
inline Box box_to_xyxy(const Box& b, int format) {
  if (format == 1) return {b[0] - 0.5 * b[2], b[1] - 0.5 * b[3], b[0] + 0.5 * b[2], b[1] + 0.5 * b[3]};
  if (format == 2) return {b[0], b[1], b[0] + b[2], b[1] + b[3]};
  return b;
}
inline Box box_from_xyxy(const Box& b, int format) {
  if (format == 1) return {(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]};
  if (format == 2) return {b[0], b[1], b[2] - b[0], b[3] - b[1]};
  return b;
}

/// form: 0 detr (no eps), 1 mmdet (max(., eps)), 2 torchvision (+ eps, unclamped enclosing box).
inline double box_overlap(const Box& p, const Box& t, int form, double eps, bool giou) {
  const double a1 = (p[2] - p[0]) * (p[3] - p[1]), a2 = (t[2] - t[0]) * (t[3] - t[1]);
  const double iw = std::max(std::min(p[2], t[2]) - std::max(p[0], t[0]), 0.0);
  const double ih = std::max(std::min(p[3], t[3]) - std::max(p[1], t[1]), 0.0);
  const double inter = iw * ih;
  double uni = a1 + a2 - inter;
  double ud = form == 1 ? std::max(uni, eps) : form == 2 ? uni + eps : uni;
  const double un = form == 1 ? ud : uni;
  const double iou = ud != 0 ? inter / ud : (p == t ? 1.0 : 0.0);
  if (!giou) return iou;
  double ew = std::max(p[2], t[2]) - std::min(p[0], t[0]), eh = std::max(p[3], t[3]) - std::min(p[1], t[1]);
  if (form != 2) ew = std::max(ew, 0.0), eh = std::max(eh, 0.0);
  const double e0 = ew * eh;
  const double ed = form == 1 ? std::max(e0, eps) : form == 2 ? e0 + eps : e0;
  const double en = form == 1 ? ed : e0;
  return ed != 0 ? iou - (en - un) / ed : iou;
}

/// Pairwise [B, N, M] of row-major boxes a [B, N, 4] and b [B, M, 4] (xyxy).
inline std::vector<double> box_overlap_pairwise(const std::vector<double>& a, const std::vector<double>& b,
                                                std::int64_t batch, std::int64_t n, std::int64_t m, int form,
                                                double eps, bool giou) {
  std::vector<double> out(static_cast<std::size_t>(batch * n * m));
  for (std::int64_t k = 0; k < batch; ++k)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < m; ++j) {
        const double* p = a.data() + (k * n + i) * 4;
        const double* q = b.data() + (k * m + j) * 4;
        out[(k * n + i) * m + j] =
            box_overlap({p[0], p[1], p[2], p[3]}, {q[0], q[1], q[2], q[3]}, form, eps, giou);
      }
  return out;
}

/// The per-pair weighted losses w_i (1 - GIoU(pred_i, target_i)) of [N, 4] boxes in `format`.
inline std::vector<double> giou_losses(const std::vector<double>& pred, const std::vector<double>& target,
                                       const std::vector<double>& weight, int form, double eps, int format) {
  const std::size_t n = pred.size() / 4;
  std::vector<double> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const Box p = box_to_xyxy({pred[4 * i], pred[4 * i + 1], pred[4 * i + 2], pred[4 * i + 3]}, format);
    const Box t = box_to_xyxy({target[4 * i], target[4 * i + 1], target[4 * i + 2], target[4 * i + 3]}, format);
    out[i] = (weight.empty() ? 1.0 : weight[i]) * (1.0 - box_overlap(p, t, form, eps, true));
  }
  return out;
}

}  // namespace kdloss_ref::ops
