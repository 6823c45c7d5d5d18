// Naive double reference of losses/detr/matching_cost.hpp, written as the matchers' code computes it
// (losses.md 4.2, 5.2): the soft-label BCE elementwise (not as a product), focal from p = sigmoid(z).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "reference/ops/boxes.hpp"

namespace kdloss_ref::detr {

struct CostSpec {
  int class_cost = 2;  // 0 none, 1 soft_bce, 2 focal, 3 softmax
  double wc = 2, wb = 5, wg = 2, alpha = 0.25, gamma = 2, feps = 1e-12;
  int pred_format = 1, target_format = 0;
  bool target_in_pixels = true;
  int giou_form = 1;
  double giou_eps = 1e-6, pad = 0;
};

inline double softplus(double z) { return std::max(z, 0.0) + std::log1p(std::exp(-std::fabs(z))); }

/// cost [B, Q, tmax] from row-major logits [B, Q, C], boxes [B, Q, 4], packed targets, offsets [B + 1],
/// sizes [B, 2] (h, w; may be empty).
inline std::vector<double> matching_cost(const std::vector<double>& logits, const std::vector<double>& boxes,
                                         std::int64_t B, std::int64_t Q, std::int64_t C,
                                         const std::vector<double>& probs, const std::vector<std::int64_t>& labels,
                                         const std::vector<double>& tboxes, const std::vector<std::int64_t>& offsets,
                                         const std::vector<double>& sizes, std::int64_t tmax, const CostSpec& s) {
  std::vector<double> out(static_cast<std::size_t>(B * Q * tmax), s.pad);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t i = 0; i < Q; ++i)
      for (std::int64_t t = offsets[b]; t < offsets[b + 1]; ++t) {
        const double* z = logits.data() + (b * Q + i) * C;
        double cost = 0;
        if (s.class_cost == 1) {
          double acc = 0;
          for (std::int64_t c = 0; c < C; ++c) {
            const double p = probs[t * C + c];
            acc += p * softplus(-z[c]) + (1 - p) * softplus(z[c]);
          }
          cost += s.wc * acc;
        } else if (s.class_cost == 2) {
          const double p = 1 / (1 + std::exp(-z[labels[t]]));
          const double neg = (1 - s.alpha) * std::pow(p, s.gamma) * -std::log(1 - p + s.feps);
          const double pos = s.alpha * std::pow(1 - p, s.gamma) * -std::log(p + s.feps);
          cost += s.wc * (pos - neg);
        } else if (s.class_cost == 3) {
          double m = z[0], sum = 0;
          for (std::int64_t c = 0; c < C; ++c) m = std::max(m, z[c]);
          for (std::int64_t c = 0; c < C; ++c) sum += std::exp(z[c] - m);
          cost -= s.wc * std::exp(z[labels[t]] - m) / sum;
        }
        double f[4] = {1, 1, 1, 1};
        if (!sizes.empty()) f[0] = f[2] = sizes[2 * b + 1], f[1] = f[3] = sizes[2 * b];
        kdloss_ref::ops::Box p{}, y{};
        for (int c = 0; c < 4; ++c) p[c] = boxes[(b * Q + i) * 4 + c], y[c] = tboxes[t * 4 + c];
        kdloss_ref::ops::Box yn = y;
        if (s.target_in_pixels)
          for (int c = 0; c < 4; ++c) yn[c] /= f[c];
        const auto yc = kdloss_ref::ops::box_from_xyxy(kdloss_ref::ops::box_to_xyxy(yn, s.target_format), s.pred_format);
        double l1 = 0;
        for (int c = 0; c < 4; ++c) l1 += std::fabs(p[c] - yc[c]);
        cost += s.wb * l1;
        auto px = kdloss_ref::ops::box_to_xyxy(p, s.pred_format), yx = kdloss_ref::ops::box_to_xyxy(y, s.target_format);
        for (int c = 0; c < 4; ++c) {
          px[c] *= f[c];
          if (!s.target_in_pixels) yx[c] *= f[c];
        }
        cost -= s.wg * kdloss_ref::ops::box_overlap(px, yx, s.giou_form, s.giou_eps, true);
        out[(b * Q + i) * tmax + (t - offsets[b])] = cost;
      }
  return out;
}

}  // namespace kdloss_ref::detr
