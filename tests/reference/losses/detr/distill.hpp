// Naive double-precision references of the DETRDistill losses (losses.md 4.3, 4.5), written from the
// formulas, row-major values:
// - ContrastiveQuery: InfoNCE between F.normalize'd rows, logits = t s^T / T, CE(target i), times weight,
//   summed over layers.
// - TargetAwareFeature: top-k by a stable descending sort (inputs without ties at the cut), quality
//   z = s * max IoU (mmdet 'iou', eps), the explicit [n, h, w] cosine similarities, clamp, / max,
//   mean of (Psi F^T - Psi F^S)^2 summed over levels and layers.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

namespace kdloss_ref::detr {

struct ContrastiveQuery {
  std::int64_t K, N, D;
  double temperature = 0.07, weight = 0.2, eps = 1e-12;
  bool normalize = true;

  double value(const std::vector<double>& pt, const std::vector<double>& ps) const {
    double total = 0;
    for (std::int64_t k = 0; k < K; ++k) {
      const auto t = rows(pt, k), s = rows(ps, k);
      for (std::int64_t i = 0; i < N; ++i) {
        std::vector<double> l(N);
        double mx = -1e300;
        for (std::int64_t j = 0; j < N; ++j) {
          double d = 0;
          for (std::int64_t c = 0; c < D; ++c) d += t[i * D + c] * s[j * D + c];
          l[j] = d / temperature;
          mx = std::max(mx, l[j]);
        }
        double se = 0;
        for (double v : l) se += std::exp(v - mx);
        total += (mx + std::log(se) - l[i]) / static_cast<double>(N);
      }
    }
    return weight * total;
  }

 private:
  std::vector<double> rows(const std::vector<double>& x, std::int64_t k) const {
    std::vector<double> r(x.begin() + k * N * D, x.begin() + (k + 1) * N * D);
    if (!normalize) return r;
    for (std::int64_t i = 0; i < N; ++i) {
      double n = 0;
      for (std::int64_t c = 0; c < D; ++c) n += r[i * D + c] * r[i * D + c];
      n = std::max(std::sqrt(n), eps);
      for (std::int64_t c = 0; c < D; ++c) r[i * D + c] /= n;
    }
    return r;
  }
};

struct TargetAwareFeature {
  std::int64_t K, B, Q, C, D;
  std::vector<std::int64_t> H, W;  // per level
  std::vector<std::int64_t> gt_offsets;  // B + 1
  std::int64_t topk = 100;
  double mask_min = 0.01, eps = 1e-12, iou_eps = 1e-6, weight = 1.0;

  static double iou(const double* a, const double* b, double eps) {
    const double a1 = (a[2] - a[0]) * (a[3] - a[1]), a2 = (b[2] - b[0]) * (b[3] - b[1]);
    const double w = std::max(std::min(a[2], b[2]) - std::max(a[0], b[0]), 0.0);
    const double h = std::max(std::min(a[3], b[3]) - std::max(a[1], b[1]), 0.0);
    return w * h / std::max(a1 + a2 - w * h, eps);
  }

  /// Psi [H * W] of layer k, image b, level l (teacher feature ft of that level, [B, D, H, W]).
  std::vector<double> psi(std::int64_t k, std::int64_t b, std::int64_t l, const std::vector<double>& scores,
                          const std::vector<double>& boxes, const std::vector<double>& queries,
                          const std::vector<double>& gt, const std::vector<double>& ft) const {
    const std::int64_t HW = H[l] * W[l];
    std::vector<std::int64_t> order(Q * C);
    std::iota(order.begin(), order.end(), 0);
    const double* s = scores.data() + (k * B + b) * Q * C;
    std::stable_sort(order.begin(), order.end(), [&](std::int64_t x, std::int64_t y) { return s[x] > s[y]; });
    std::vector<double> m(HW, 0.0);
    for (std::int64_t n = 0; n < topk; ++n) {
      const std::int64_t q = order[n] / C;
      double z = s[order[n]];
      if (gt_offsets[b + 1] > gt_offsets[b]) {
        double best = -1e300;
        for (std::int64_t g = gt_offsets[b]; g < gt_offsets[b + 1]; ++g)
          best = std::max(best, iou(boxes.data() + ((k * B + b) * Q + q) * 4, gt.data() + g * 4, iou_eps));
        z *= best;
      }
      const double* e = queries.data() + ((k * B + b) * Q + q) * D;
      double en = 0;
      for (std::int64_t c = 0; c < D; ++c) en += e[c] * e[c];
      en = std::max(std::sqrt(en), eps);
      for (std::int64_t p = 0; p < HW; ++p) {
        double fn = 0, dot = 0;
        for (std::int64_t c = 0; c < D; ++c) {
          const double f = ft[(b * D + c) * HW + p];
          fn += f * f;
          dot += e[c] * f;
        }
        m[p] += z * dot / en / std::max(std::sqrt(fn), eps);  // sim[n, p] = <e/|e|, F/|F|>
      }
    }
    double mx = -1e300;
    for (auto& v : m) {
      v = std::max(v, mask_min);
      mx = std::max(mx, v);
    }
    for (auto& v : m) v /= mx;
    return m;
  }

  double value(const std::vector<double>& scores, const std::vector<double>& boxes, const std::vector<double>& queries,
               const std::vector<double>& gt, const std::vector<std::vector<double>>& ft,
               const std::vector<std::vector<double>>& fs) const {
    double total = 0;
    for (std::int64_t k = 0; k < K; ++k)
      for (std::size_t l = 0; l < H.size(); ++l) {
        const std::int64_t HW = H[l] * W[l];
        double sum = 0;
        for (std::int64_t b = 0; b < B; ++b) {
          const auto ps = psi(k, b, l, scores, boxes, queries, gt, ft[l]);
          for (std::int64_t c = 0; c < D; ++c)
            for (std::int64_t p = 0; p < HW; ++p) {
              const std::int64_t i = (b * D + c) * HW + p;
              const double d = ps[p] * ft[l][i] - ps[p] * fs[l][i];
              sum += d * d;
            }
        }
        total += sum / static_cast<double>(B * D * HW);
      }
    return weight * total;
  }
};

}  // namespace kdloss_ref::detr
