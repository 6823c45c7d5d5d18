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
#include <utility>
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

namespace kdloss_ref::detr {

/// Query-prior assignment distillation (losses.md 4.4): per layer the mmdet Deformable-DETR loss under a given
/// assignment, summed over layers. Values in row-major vectors; pairs per layer.
struct QueryPrior {
  std::int64_t K, B, Q, C;
  std::vector<std::vector<std::pair<std::int64_t, std::int64_t>>> pairs;  // per layer: (b * Q + q, gt row)
  std::vector<std::int64_t> labels;
  std::vector<double> gt;     // [T, 4] normalised cxcywh
  std::vector<double> sizes;  // [B, 2] (h, w)
  double num_pos = 0;         // <= 0: pairs of the layer

  static double focal(double z, double t, double alpha = 0.25, double gamma = 2) {
    const double p = 1 / (1 + std::exp(-z));
    const double bce = std::max(z, 0.0) - z * t + std::log1p(std::exp(-std::fabs(z)));
    const double pt = (1 - p) * t + p * (1 - t), w = alpha * t + (1 - alpha) * (1 - t);
    return bce * w * std::pow(pt, gamma);
  }
  static double giou(const double* a, const double* b, double eps = 1e-6) {
    const double a1 = (a[2] - a[0]) * (a[3] - a[1]), a2 = (b[2] - b[0]) * (b[3] - b[1]);
    const double iw = std::max(std::min(a[2], b[2]) - std::max(a[0], b[0]), 0.0);
    const double ih = std::max(std::min(a[3], b[3]) - std::max(a[1], b[1]), 0.0);
    const double inter = iw * ih, uni = std::max(a1 + a2 - inter, eps);
    const double ew = std::max(std::max(a[2], b[2]) - std::min(a[0], b[0]), 0.0);
    const double eh = std::max(std::max(a[3], b[3]) - std::min(a[1], b[1]), 0.0);
    const double enc = std::max(ew * eh, eps);
    return inter / uni - (enc - uni) / enc;
  }
  /// {cls, l1, giou} summed over layers.
  std::vector<double> value(const std::vector<double>& logits, const std::vector<double>& boxes) const {
    std::vector<double> out(3, 0.0);
    for (std::int64_t k = 0; k < K; ++k) {
      const double n = std::max(num_pos > 0 ? num_pos : static_cast<double>(pairs[k].size()), 1.0) + 1.1920928955078125e-07;
      std::vector<std::int64_t> target(B * Q, -1);
      for (auto [r, g] : pairs[k]) target[r] = g;
      double cls = 0, l1 = 0, gi = 0;
      for (std::int64_t r = 0; r < B * Q; ++r)
        for (std::int64_t c = 0; c < C; ++c)
          cls += focal(logits[(k * B * Q + r) * C + c], target[r] >= 0 && labels[target[r]] == c ? 1.0 : 0.0);
      for (auto [r, g] : pairs[k]) {
        const double* p = boxes.data() + (k * B * Q + r) * 4;
        const double* t = gt.data() + g * 4;
        for (int d = 0; d < 4; ++d) l1 += std::fabs(p[d] - t[d]);
        const std::int64_t b = r / Q;
        const double h = sizes[b * 2], w = sizes[b * 2 + 1];
        const double pa[4] = {(p[0] - p[2] / 2) * w, (p[1] - p[3] / 2) * h, (p[0] + p[2] / 2) * w, (p[1] + p[3] / 2) * h};
        const double ta[4] = {(t[0] - t[2] / 2) * w, (t[1] - t[3] / 2) * h, (t[0] + t[2] / 2) * w, (t[1] + t[3] / 2) * h};
        gi += 1 - giou(pa, ta);
      }
      out[0] += 2 * cls / n;
      out[1] += 5 * l1 / n;
      out[2] += 2 * gi / n;
    }
    return out;
  }
};

}  // namespace kdloss_ref::detr

namespace kdloss_ref::detr {

/// Hungarian-matching logits distillation (losses.md 4.2, the official code path) for Q == N small: the
/// assignment by brute force over permutations (the minimum-cost one; inputs without ties).
struct LogitsDistill {
  std::int64_t K, B, Q, C;
  std::vector<double> sizes;  // [B, 2] (h, w)

  static double softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }
  /// pixel xyxy clamped and normalised cxcywh of a teacher box
  void teacher_box(const double* t, std::int64_t b, double px[4], double nc[4]) const {
    const double h = sizes[b * 2], w = sizes[b * 2 + 1], lim[4] = {w, h, w, h};
    const double xy[4] = {t[0] - 0.5 * t[2], t[1] - 0.5 * t[3], t[0] + 0.5 * t[2], t[1] + 0.5 * t[3]};
    for (int d = 0; d < 4; ++d) px[d] = std::min(std::max(xy[d] * lim[d], 0.0), lim[d]);
    nc[0] = (px[0] / w + px[2] / w) / 2;
    nc[1] = (px[1] / h + px[3] / h) / 2;
    nc[2] = px[2] / w - px[0] / w;
    nc[3] = px[3] / h - px[1] / h;
  }
  void student_px(const double* s, std::int64_t b, double px[4]) const {
    const double h = sizes[b * 2], w = sizes[b * 2 + 1];
    px[0] = (s[0] - 0.5 * s[2]) * w, px[1] = (s[1] - 0.5 * s[3]) * h, px[2] = (s[0] + 0.5 * s[2]) * w,
    px[3] = (s[1] + 0.5 * s[3]) * h;
  }
  std::vector<double> value(const std::vector<double>& sl, const std::vector<double>& sb, const std::vector<double>& tl,
                            const std::vector<double>& tb) const {
    std::vector<double> out(3, 0.0);
    const double eps = 1.1920928955078125e-07;
    for (std::int64_t k = 0; k < K; ++k) {
      double cls = 0, l1 = 0, gi = 0;
      for (std::int64_t b = 0; b < B; ++b) {
        const auto z = [&](std::int64_t i, std::int64_t c) { return sl[((k * B + b) * Q + i) * C + c]; };
        const auto p = [&](std::int64_t j, std::int64_t c) { return 1 / (1 + std::exp(-tl[((k * B + b) * Q + j) * C + c])); };
        std::vector<double> cost(Q * Q), cl(Q * Q), bl1(Q * Q), bg(Q * Q);
        for (std::int64_t i = 0; i < Q; ++i)
          for (std::int64_t j = 0; j < Q; ++j) {
            double c1 = 0;
            for (std::int64_t c = 0; c < C; ++c) c1 += p(j, c) * softplus(-z(i, c)) + (1 - p(j, c)) * softplus(z(i, c));
            double tpx[4], tnc[4], spx[4];
            teacher_box(tb.data() + ((k * B + b) * Q + j) * 4, b, tpx, tnc);
            const double* s = sb.data() + ((k * B + b) * Q + i) * 4;
            student_px(s, b, spx);
            double d = 0;
            for (int e = 0; e < 4; ++e) d += std::fabs(s[e] - tnc[e]);
            cl[i * Q + j] = c1;
            bl1[i * Q + j] = d;
            bg[i * Q + j] = 1 - QueryPrior::giou(spx, tpx);
            cost[i * Q + j] = c1 + 5 * d + 2 * (bg[i * Q + j] - 1);
          }
        std::vector<std::int64_t> perm(Q), best;
        for (std::int64_t i = 0; i < Q; ++i) perm[i] = i;
        double best_cost = 1e300;
        do {
          double c = 0;
          for (std::int64_t i = 0; i < Q; ++i) c += cost[i * Q + perm[i]];
          if (c < best_cost) best_cost = c, best = perm;
        } while (std::next_permutation(perm.begin(), perm.end()));
        for (std::int64_t i = 0; i < Q; ++i) {
          cls += cl[i * Q + best[i]];
          l1 += bl1[i * Q + best[i]];
          gi += bg[i * Q + best[i]];
        }
      }
      const double n = static_cast<double>(B * Q) + eps;
      out[0] += cls / n;
      out[1] += 5 * l1 / n;
      out[2] += 2 * gi / n;
    }
    return out;
  }
};

}  // namespace kdloss_ref::detr
