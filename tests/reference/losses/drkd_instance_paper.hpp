// Naive double reference of ops::cosine_relation and drkd::instance_relation_paper_loss (the seed's
// pseudocode form of DRKD's instance relation), straight from the formulas.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace kdloss_ref::losses {

/// Packed per-image cosine relations of rows x [n, D]: F.normalize(x, eps) @ F.normalize(x, eps).T.
inline std::vector<double> cosine_relation(const std::vector<double>& x, std::int64_t D,
                                           const std::vector<std::int64_t>& offsets, double eps = 1e-12) {
  std::vector<double> r;
  for (std::size_t b = 0; b + 1 < offsets.size(); ++b)
    for (std::int64_t i = offsets[b]; i < offsets[b + 1]; ++i)
      for (std::int64_t j = offsets[b]; j < offsets[b + 1]; ++j) {
        double ni = 0, nj = 0, d = 0;
        for (std::int64_t k = 0; k < D; ++k) {
          ni += x[i * D + k] * x[i * D + k];
          nj += x[j * D + k] * x[j * D + k];
          d += x[i * D + k] * x[j * D + k];
        }
        r.push_back(d / (std::max(std::sqrt(ni), eps) * std::max(std::sqrt(nj), eps)));
      }
  return r;
}

struct InstancePaper {
  std::vector<std::int64_t> offsets;
  std::int64_t Ds = 1, Dt = 1;
  double weight = 1.0, threshold = 0.5, alpha = std::numeric_limits<double>::infinity(), eps = 1e-12;
  bool teacher_mean = true, columns = false, mean = true;

  /// The masked relation of one side.
  std::vector<double> masked(const std::vector<double>& x, std::int64_t D, const std::vector<double>& scores,
                             const std::vector<double>& teacher_scores) const {
    auto r = cosine_relation(x, D, offsets, eps);
    std::size_t e = 0;
    for (std::size_t b = 0; b + 1 < offsets.size(); ++b) {
      const std::int64_t s0 = offsets[b], m = offsets[b + 1] - s0;
      double t = threshold;
      if (teacher_mean && m > 0 && !teacher_scores.empty()) {
        t = 0;
        for (std::int64_t i = 0; i < m; ++i) t += teacher_scores[s0 + i];
        t /= double(m);
      }
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < m; ++j, ++e) {
          double d2 = 0;
          for (std::int64_t k = 0; k < D; ++k) {
            const double d = x[(s0 + i) * D + k] - x[(s0 + j) * D + k];
            d2 += d * d;
          }
          bool keep = !(std::sqrt(d2) > alpha);
          if (!scores.empty()) {
            keep = keep && scores[s0 + i] > t;
            if (columns) keep = keep && scores[s0 + j] > t;
          }
          if (!keep) r[e] = 0;
        }
    }
    return r;
  }
  double loss(const std::vector<double>& xs, const std::vector<double>& xt, const std::vector<double>& ct,
              const std::vector<double>& cs) const {
    const auto rs = masked(xs, Ds, cs.empty() ? ct : cs, ct), rt = masked(xt, Dt, ct, ct);
    double s = 0;
    for (std::size_t e = 0; e < rs.size(); ++e) s += (rt[e] - rs[e]) * (rt[e] - rs[e]);
    return weight * (mean ? s / double(rs.size()) : s);
  }
};

}  // namespace kdloss_ref::losses
