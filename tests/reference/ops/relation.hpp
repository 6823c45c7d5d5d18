// Naive double-precision reference of ops::softmax_relation, written straight from the formula with the
// N x N' matrix stored: S = scale * theta phi^T, P = softmax over keys (torch's rule: subtract the row
// max, exp, divide by the sum), y = P g, and the backward through each step.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace kdloss_ref::ops {

/// Row-major operands: theta [B, N, m], phi [B, Nk, m], g [B, Nk, c], y and grad_y [B, N, c].
struct SoftmaxRelation {
  std::int64_t batch, n, nk, m, c;
  double scale = 1.0;

  /// P [B, N, Nk] = softmax_j(scale * theta_i . phi_j), as torch.softmax computes it (a row whose max
  /// is NaN or +-inf gives NaN where x - max is NaN).
  std::vector<double> probs(const std::vector<double>& theta, const std::vector<double>& phi) const {
    std::vector<double> p(batch * n * nk);
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t i = 0; i < n; ++i) {
        double* row = p.data() + (b * n + i) * nk;
        double mx = -std::numeric_limits<double>::infinity();
        for (std::int64_t j = 0; j < nk; ++j) {
          double s = 0;
          for (std::int64_t f = 0; f < m; ++f) s += theta[(b * n + i) * m + f] * phi[(b * nk + j) * m + f];
          row[j] = scale * s;
          if (std::isnan(row[j]) || row[j] > mx) mx = std::isnan(mx) ? mx : row[j];
        }
        double sum = 0;
        for (std::int64_t j = 0; j < nk; ++j) sum += row[j] = std::exp(row[j] - mx);
        for (std::int64_t j = 0; j < nk; ++j) row[j] /= sum;
      }
    return p;
  }

  std::vector<double> forward(const std::vector<double>& theta, const std::vector<double>& phi,
                              const std::vector<double>& g) const {
    const std::vector<double> p = probs(theta, phi);
    std::vector<double> y(batch * n * c, 0.0);
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t f = 0; f < c; ++f) {
          double acc = 0;
          for (std::int64_t j = 0; j < nk; ++j) acc += p[(b * n + i) * nk + j] * g[(b * nk + j) * c + f];
          y[(b * n + i) * c + f] = acc;
        }
    return y;
  }

  struct Grads {
    std::vector<double> theta, phi, g;
  };
  /// dL/dtheta, dL/dphi, dL/dg for L = sum(grad_y * y), through softmax's backward
  /// dS = P (dP - sum_j P dP) and the two products.
  Grads backward(const std::vector<double>& theta, const std::vector<double>& phi, const std::vector<double>& g,
                 const std::vector<double>& gy) const {
    const std::vector<double> p = probs(theta, phi);
    Grads r{std::vector<double>(batch * n * m, 0.0), std::vector<double>(batch * nk * m, 0.0),
            std::vector<double>(batch * nk * c, 0.0)};
    std::vector<double> dp(nk);
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t i = 0; i < n; ++i) {
        const double* prow = p.data() + (b * n + i) * nk;
        const double* gyi = gy.data() + (b * n + i) * c;
        double centre = 0;
        for (std::int64_t j = 0; j < nk; ++j) {
          double s = 0;
          for (std::int64_t f = 0; f < c; ++f) s += gyi[f] * g[(b * nk + j) * c + f];
          dp[j] = s;
          centre += prow[j] * s;
        }
        for (std::int64_t j = 0; j < nk; ++j) {
          const double ds = prow[j] * (dp[j] - centre);
          for (std::int64_t f = 0; f < m; ++f) {
            r.theta[(b * n + i) * m + f] += scale * ds * phi[(b * nk + j) * m + f];
            r.phi[(b * nk + j) * m + f] += scale * ds * theta[(b * n + i) * m + f];
          }
          for (std::int64_t f = 0; f < c; ++f) r.g[(b * nk + j) * c + f] += prow[j] * gyi[f];
        }
      }
    return r;
  }
};

}  // namespace kdloss_ref::ops
