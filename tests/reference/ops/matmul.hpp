// Naive double-precision references of ops::matmul and ops::linear, written straight from the formulas.
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_ref::ops {

/// C[b] = alpha * A[b] B[b] + beta * C[b] over row-major [batch, m, k] x [batch, k, n]; an operand with
/// batch_x = false is one matrix used by every batch. sum_batches: one C = alpha * sum_b A[b] B[b] + beta * C.
/// beta = 0 ignores the old C (NaN included), as the library does.
inline std::vector<double> matmul(const std::vector<double>& a, bool batch_a, const std::vector<double>& b, bool batch_b,
                                  std::vector<double> c, std::int64_t batch, std::int64_t m, std::int64_t n,
                                  std::int64_t k, double alpha, double beta, bool sum_batches = false) {
  const std::int64_t outs = sum_batches ? 1 : batch;
  for (std::int64_t o = 0; o < outs; ++o)
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (std::int64_t bb = sum_batches ? 0 : o; bb < (sum_batches ? batch : o + 1); ++bb) {
          const double* ap = a.data() + (batch_a ? bb * m * k : 0);
          const double* bp = b.data() + (batch_b ? bb * k * n : 0);
          for (std::int64_t p = 0; p < k; ++p) acc += ap[i * k + p] * bp[p * n + j];
        }
        double& cv = c[(o * m + i) * n + j];
        cv = (alpha == 0 ? 0.0 : alpha * acc) + (beta == 0 ? 0.0 : beta * cv);
      }
  return c;
}

/// The 1x1 convolution / rows layer over x [B, in, P] (rows: B = 1, P = N with x transposed):
/// y[b, o, p] = sum_c w[o, c] x[b, c, p] + bias[o].
struct Linear {
  std::int64_t batch, in, out, positions;
  std::vector<double> forward(const std::vector<double>& x, const std::vector<double>& w,
                              const std::vector<double>& bias) const {
    std::vector<double> y(batch * out * positions);
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t o = 0; o < out; ++o)
        for (std::int64_t p = 0; p < positions; ++p) {
          double acc = bias.empty() ? 0.0 : bias[o];
          for (std::int64_t c = 0; c < in; ++c) acc += w[o * in + c] * x[(b * in + c) * positions + p];
          y[(b * out + o) * positions + p] = acc;
        }
    return y;
  }
  /// dL/dx, dL/dw, dL/dbias for L = sum(gy * y).
  std::vector<double> grad_x(const std::vector<double>& w, const std::vector<double>& gy) const {
    std::vector<double> g(batch * in * positions, 0.0);
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t c = 0; c < in; ++c)
        for (std::int64_t p = 0; p < positions; ++p)
          for (std::int64_t o = 0; o < out; ++o)
            g[(b * in + c) * positions + p] += w[o * in + c] * gy[(b * out + o) * positions + p];
    return g;
  }
  std::vector<double> grad_w(const std::vector<double>& x, const std::vector<double>& gy) const {
    std::vector<double> g(out * in, 0.0);
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t o = 0; o < out; ++o)
        for (std::int64_t c = 0; c < in; ++c)
          for (std::int64_t p = 0; p < positions; ++p)
            g[o * in + c] += gy[(b * out + o) * positions + p] * x[(b * in + c) * positions + p];
    return g;
  }
  std::vector<double> grad_bias(const std::vector<double>& gy) const {
    std::vector<double> g(out, 0.0);
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t o = 0; o < out; ++o)
        for (std::int64_t p = 0; p < positions; ++p) g[o] += gy[(b * out + o) * positions + p];
    return g;
  }
};

}  // namespace kdloss_ref::ops
