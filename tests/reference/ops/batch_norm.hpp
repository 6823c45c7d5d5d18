// Naive double-precision reference of ops::batch_norm, written straight from the formulas, over
// row-major [B, C, P] values (P = H*W positions; [N, C] is B = N, P = 1).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

namespace kdloss_ref::ops {

struct BatchNorm {
  std::int64_t batch, channels, positions;
  bool training = true;
  double eps = 1e-5;

  std::int64_t per_channel() const { return batch * positions; }
  double at(const std::vector<double>& v, std::int64_t b, std::int64_t c, std::int64_t p) const {
    return v[static_cast<std::size_t>((b * channels + c) * positions + p)];
  }
  static double param(const std::vector<double>& v, std::int64_t c, double fallback) {
    return v.empty() ? fallback : v[static_cast<std::size_t>(c)];
  }

  /// Per channel: the mean and the biased variance the normalisation uses (training: of the batch;
  /// evaluation: the running ones), and the unbiased batch variance.
  struct Stats {
    std::vector<double> mean, var, var_unbiased;
  };
  Stats stats(const std::vector<double>& x, const std::vector<double>& rm, const std::vector<double>& rv) const {
    Stats s;
    for (std::int64_t c = 0; c < channels; ++c) {
      if (!training) {
        s.mean.push_back(rm[c]);
        s.var.push_back(rv[c]);
        s.var_unbiased.push_back(rv[c]);
        continue;
      }
      double sum = 0;
      for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t p = 0; p < positions; ++p) sum += at(x, b, c, p);
      const double n = static_cast<double>(per_channel()), mean = sum / n;
      double sq = 0;
      for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t p = 0; p < positions; ++p) sq += (at(x, b, c, p) - mean) * (at(x, b, c, p) - mean);
      s.mean.push_back(mean);
      s.var.push_back(sq / n);
      s.var_unbiased.push_back(sq / (n - 1));
    }
    return s;
  }

  /// y = (x - mean) / sqrt(var + eps) * w + b (w, b empty: 1 and 0).
  std::vector<double> forward(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& b,
                              const std::vector<double>& rm = {}, const std::vector<double>& rv = {}) const {
    const Stats s = stats(x, rm, rv);
    std::vector<double> y(x.size());
    for (std::int64_t bb = 0; bb < batch; ++bb)
      for (std::int64_t c = 0; c < channels; ++c)
        for (std::int64_t p = 0; p < positions; ++p) {
          const std::size_t i = static_cast<std::size_t>((bb * channels + c) * positions + p);
          y[i] = (x[i] - s.mean[c]) / std::sqrt(s.var[c] + eps) * param(w, c, 1.0) + param(b, c, 0.0);
        }
    return y;
  }

  struct Grads {
    std::vector<double> x, w, b;
  };
  /// Training: dx = w/std (g - mean(g) - xhat mean(g xhat)); evaluation: dx = w/std g.
  /// dw = sum g xhat, db = sum g (over batch and positions).
  Grads backward(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& gy,
                 const std::vector<double>& rm = {}, const std::vector<double>& rv = {}) const {
    const Stats s = stats(x, rm, rv);
    Grads g{std::vector<double>(x.size()), std::vector<double>(channels), std::vector<double>(channels)};
    const double n = static_cast<double>(per_channel());
    for (std::int64_t c = 0; c < channels; ++c) {
      const double inv = 1.0 / std::sqrt(s.var[c] + eps), wc = param(w, c, 1.0);
      double sg = 0, sgx = 0;
      for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t p = 0; p < positions; ++p) {
          const double xhat = (at(x, b, c, p) - s.mean[c]) * inv;
          sg += at(gy, b, c, p);
          sgx += at(gy, b, c, p) * xhat;
        }
      g.w[c] = sgx;
      g.b[c] = sg;
      for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t p = 0; p < positions; ++p) {
          const std::size_t i = static_cast<std::size_t>((b * channels + c) * positions + p);
          const double xhat = (x[i] - s.mean[c]) * inv;
          g.x[i] = training ? wc * inv * (gy[i] - sg / n - xhat * sgx / n) : wc * inv * gy[i];
        }
    }
    return g;
  }
};

}  // namespace kdloss_ref::ops
