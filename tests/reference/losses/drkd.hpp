// Naive double-precision reference of the DRKD seed pixel relation loss (drkd::pixel_relation_loss),
// composed from the op reference kdloss_ref::ops::SoftmaxRelation (which stores the N x N matrix):
// G(F) = softmax(F F^T * scale) F per image with F = the map [C, H, W] read as [H*W, C],
// L_P = mean or sum of (G(S) - G(T))^2, dL/dS through q, k and v.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "reference/ops/relation.hpp"

namespace kdloss_ref::drkd {

/// Maps are row-major [B, C, H, W] (N = H * W pixels).
struct PixelRelation {
  std::int64_t batch, channels, height, width;
  bool mean = true;
  double scale = 0;  // 0: 1/sqrt(C)

  std::int64_t n() const { return height * width; }
  ops::SoftmaxRelation relation() const {
    return {batch, n(), n(), channels, channels, scale != 0 ? scale : 1.0 / std::sqrt(double(channels))};
  }
  /// [B, C, N] -> [B, N, C] and back.
  std::vector<double> to_rows(const std::vector<double>& map) const {
    std::vector<double> r(map.size());
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t c = 0; c < channels; ++c)
        for (std::int64_t p = 0; p < n(); ++p) r[(b * n() + p) * channels + c] = map[(b * channels + c) * n() + p];
    return r;
  }
  std::vector<double> to_map(const std::vector<double>& rows) const {
    std::vector<double> m(rows.size());
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t c = 0; c < channels; ++c)
        for (std::int64_t p = 0; p < n(); ++p) m[(b * channels + c) * n() + p] = rows[(b * n() + p) * channels + c];
    return m;
  }
  /// G(F) as rows [B, N, C].
  std::vector<double> g(const std::vector<double>& map) const {
    const std::vector<double> f = to_rows(map);
    return relation().forward(f, f, f);
  }
  double value(const std::vector<double>& s, const std::vector<double>& t) const {
    const std::vector<double> gs = g(s), gt = g(t);
    double sum = 0;
    for (std::size_t i = 0; i < gs.size(); ++i) sum += (gs[i] - gt[i]) * (gs[i] - gt[i]);
    return mean ? sum / double(gs.size()) : sum;
  }
  /// upstream * dL/dS as a [B, C, H, W] map: dL/dG(S) = 2 (G(S) - G(T)) / numel, then the relation's
  /// backward with q = k = v = S, its three gradients summed.
  std::vector<double> grad(const std::vector<double>& s, const std::vector<double>& t, double upstream = 1.0) const {
    const std::vector<double> f = to_rows(s), gs = g(s), gt = g(t);
    std::vector<double> dy(gs.size());
    const double k = 2.0 * upstream / (mean ? double(gs.size()) : 1.0);
    for (std::size_t i = 0; i < gs.size(); ++i) dy[i] = k * (gs[i] - gt[i]);
    const auto r = relation().backward(f, f, f, dy);
    std::vector<double> sum(f.size());
    for (std::size_t i = 0; i < f.size(); ++i) sum[i] = r.theta[i] + r.phi[i] + r.g[i];
    return to_map(sum);
  }
};

}  // namespace kdloss_ref::drkd
