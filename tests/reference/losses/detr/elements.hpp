// Naive double references of losses/detr/matched_losses.hpp, from the formulas of losses.md 5.4
// (focal written in torchvision's (1 - p_t)^gamma form, an independent route to mmdet's value).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "reference/ops/boxes.hpp"

namespace kdloss_ref::detr {

inline double bce_logits(double z, double t) { return std::max(z, 0.0) - z * t + std::log1p(std::exp(-std::fabs(z))); }

/// torchvision.ops.sigmoid_focal_loss for one element (alpha < 0: no weighting).
inline double focal(double z, double t, double alpha, double gamma) {
  const double p = 1.0 / (1.0 + std::exp(-z));
  const double p_t = p * t + (1 - p) * (1 - t);
  double loss = bce_logits(z, t) * std::pow(1 - p_t, gamma);
  if (alpha >= 0) loss *= alpha * t + (1 - alpha) * (1 - t);
  return loss;
}

/// Sum over [rows, C] logits of the class loss, target = the matched row of `probs` [T, C] (or one-hot of
/// labels when probs is empty), 0 for unmatched rows.
inline double class_loss_sum(const std::vector<double>& logits, std::int64_t rows, std::int64_t classes,
                             const std::vector<double>& probs, const std::vector<std::int64_t>& labels,
                             const std::vector<std::int64_t>& pred_rows, const std::vector<std::int64_t>& target_rows,
                             bool is_focal, double alpha, double gamma) {
  std::vector<std::int64_t> match(static_cast<std::size_t>(rows), -1);
  for (std::size_t k = 0; k < pred_rows.size(); ++k) match[pred_rows[k]] = target_rows[k];
  double s = 0;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < classes; ++c) {
      const std::int64_t m = match[r];
      const double t = m < 0 ? 0.0 : (probs.empty() ? (labels[m] == c ? 1.0 : 0.0) : probs[m * classes + c]);
      const double z = logits[r * classes + c];
      s += is_focal ? focal(z, t, alpha, gamma) : bce_logits(z, t);
    }
  return s;
}

/// Sums over the pairs of L1 and of 1 - GIoU (boxes in `format`, scaled per image by (w, h, w, h) from
/// sizes [B, 2] (h, w) for the GIoU when sizes is non-empty).
inline std::pair<double, double> box_loss_sums(const std::vector<double>& pred, std::int64_t queries,
                                               const std::vector<double>& target,
                                               const std::vector<std::int64_t>& pred_rows,
                                               const std::vector<std::int64_t>& target_rows,
                                               const std::vector<double>& sizes, int format, int form, double eps) {
  double l1 = 0, giou = 0;
  for (std::size_t k = 0; k < pred_rows.size(); ++k) {
    const std::int64_t r = pred_rows[k], t = target_rows[k];
    kdloss_ref::ops::Box p{}, y{};
    for (int c = 0; c < 4; ++c) {
      p[c] = pred[r * 4 + c], y[c] = target[t * 4 + c];
      l1 += std::fabs(p[c] - y[c]);
    }
    p = kdloss_ref::ops::box_to_xyxy(p, format);
    y = kdloss_ref::ops::box_to_xyxy(y, format);
    if (!sizes.empty()) {
      const std::int64_t b = r / queries;
      const double f[4] = {sizes[2 * b + 1], sizes[2 * b], sizes[2 * b + 1], sizes[2 * b]};
      for (int c = 0; c < 4; ++c) p[c] *= f[c], y[c] *= f[c];
    }
    giou += 1 - kdloss_ref::ops::box_overlap(p, y, form, eps, true);
  }
  return {l1, giou};
}

}  // namespace kdloss_ref::detr
