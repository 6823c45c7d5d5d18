// Naive double reference of ops::distance: per-item Frobenius distances of row segments, straight from
// the formula (PyTorch's norm backward rule: the gradient is 0 where a norm is exactly 0).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

namespace kdloss_ref::ops {

/// a, b: [rows, per_row] row-major; item i owns rows [offsets[i], offsets[i + 1]).
struct Distance {
  std::vector<std::int64_t> offsets;
  std::int64_t per_row = 1;
  double weight = 1.0;

  std::vector<double> norms(const std::vector<double>& a, const std::vector<double>& b) const {
    std::vector<double> n(offsets.size() - 1, 0.0);
    for (std::size_t i = 0; i + 1 < offsets.size(); ++i) {
      double s = 0;
      for (std::int64_t k = offsets[i] * per_row; k < offsets[i + 1] * per_row; ++k) s += (a[k] - b[k]) * (a[k] - b[k]);
      n[i] = std::sqrt(s);
    }
    return n;
  }
  /// weight * norm per item.
  std::vector<double> values(const std::vector<double>& a, const std::vector<double>& b) const {
    auto n = norms(a, b);
    for (auto& v : n) v *= weight;
    return n;
  }
  /// dL/da for L = sum_i upstream[i] * value[i].
  std::vector<double> grad_a(const std::vector<double>& a, const std::vector<double>& b,
                             const std::vector<double>& upstream) const {
    const auto n = norms(a, b);
    std::vector<double> g(a.size(), 0.0);
    for (std::size_t i = 0; i + 1 < offsets.size(); ++i)
      for (std::int64_t k = offsets[i] * per_row; k < offsets[i + 1] * per_row; ++k)
        g[k] = n[i] == 0 ? 0.0 : upstream[i] * weight * (a[k] - b[k]) / n[i];
    return g;
  }
};

}  // namespace kdloss_ref::ops
