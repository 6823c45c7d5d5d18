// Naive double-precision references of ops::dot_relation and ops::concat_relation, written straight
// from mmcv NonLocal2d's pairwise functions: the [N, N'] relation matrix f is built explicitly.
// Tensors are row-major: theta [B, N, m], phi [B, N', m], g [B, N', c], y [B, N, c], w [2m].
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_ref::ops {

struct PairwiseRelation {
  std::int64_t batch, queries, keys, embed, values;
  double scale() const { return keys == 0 ? 0.0 : 1.0 / static_cast<double>(keys); }

  /// Pre-activation score of pair (i, j) in image b: dot product theta_i . phi_j, or the concatenation
  /// projection w . [theta_i; phi_j] summed over the 2m channels in order (as the 1x1 convolution does).
  double score(bool concat, const std::vector<double>& theta, const std::vector<double>& phi,
               const std::vector<double>& w, std::int64_t b, std::int64_t i, std::int64_t j) const {
    const double* t = theta.data() + (b * queries + i) * embed;
    const double* p = phi.data() + (b * keys + j) * embed;
    double s = 0;
    if (!concat) {
      for (std::int64_t k = 0; k < embed; ++k) s += t[k] * p[k];
      return s;
    }
    for (std::int64_t k = 0; k < embed; ++k) s += w[k] * t[k];
    for (std::int64_t k = 0; k < embed; ++k) s += w[embed + k] * p[k];
    return s;
  }
  /// f[b, i, j]: dot: s * theta.phi; concat: relu(score) * s (relu(NaN) = NaN, as torch's).
  std::vector<double> relation(bool concat, const std::vector<double>& theta, const std::vector<double>& phi,
                               const std::vector<double>& w) const {
    std::vector<double> f(static_cast<std::size_t>(batch * queries * keys));
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t i = 0; i < queries; ++i)
        for (std::int64_t j = 0; j < keys; ++j) {
          const double s = score(concat, theta, phi, w, b, i, j);
          f[(b * queries + i) * keys + j] = (concat ? (s <= 0 ? 0.0 : s) : s) * scale();
        }
    return f;
  }
  /// y = f g per image (every pair multiplied, 0 * NaN = NaN as in a dense product).
  std::vector<double> forward(bool concat, const std::vector<double>& theta, const std::vector<double>& phi,
                              const std::vector<double>& g, const std::vector<double>& w = {}) const {
    const auto f = relation(concat, theta, phi, w);
    std::vector<double> y(static_cast<std::size_t>(batch * queries * values), 0.0);
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t i = 0; i < queries; ++i)
        for (std::int64_t j = 0; j < keys; ++j)
          for (std::int64_t k = 0; k < values; ++k)
            y[(b * queries + i) * values + k] += f[(b * queries + i) * keys + j] * g[(b * keys + j) * values + k];
    return y;
  }

  struct Grads {
    std::vector<double> theta, phi, g, w;
  };
  /// Every gradient of L = sum(grad_y * y). concat: d score = (score <= 0 ? 0 : df) as torch's
  /// threshold_backward (ties at 0 get no gradient).
  Grads backward(bool concat, const std::vector<double>& theta, const std::vector<double>& phi,
                 const std::vector<double>& g, const std::vector<double>& w, const std::vector<double>& gy) const {
    const auto f = relation(concat, theta, phi, w);
    Grads r;
    r.theta.assign(theta.size(), 0.0);
    r.phi.assign(phi.size(), 0.0);
    r.g.assign(g.size(), 0.0);
    r.w.assign(concat ? static_cast<std::size_t>(2 * embed) : 0u, 0.0);
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t i = 0; i < queries; ++i)
        for (std::int64_t j = 0; j < keys; ++j) {
          double df = 0;  // dL/df_ij = grad_y_i . g_j
          for (std::int64_t k = 0; k < values; ++k)
            df += gy[(b * queries + i) * values + k] * g[(b * keys + j) * values + k];
          const double fij = f[(b * queries + i) * keys + j];
          for (std::int64_t k = 0; k < values; ++k)
            r.g[(b * keys + j) * values + k] += fij * gy[(b * queries + i) * values + k];
          const double* t = theta.data() + (b * queries + i) * embed;
          const double* p = phi.data() + (b * keys + j) * embed;
          double* gt = r.theta.data() + (b * queries + i) * embed;
          double* gp = r.phi.data() + (b * keys + j) * embed;
          if (!concat) {
            for (std::int64_t k = 0; k < embed; ++k) {
              gt[k] += scale() * df * p[k];
              gp[k] += scale() * df * t[k];
            }
            continue;
          }
          const double s = score(true, theta, phi, w, b, i, j);
          const double ds = s <= 0 ? 0.0 : df * scale();
          for (std::int64_t k = 0; k < embed; ++k) {
            gt[k] += ds * w[k];
            gp[k] += ds * w[embed + k];
            r.w[k] += ds * t[k];
            r.w[embed + k] += ds * p[k];
          }
        }
    return r;
  }
};

}  // namespace kdloss_ref::ops
