// Naive double-precision references of ops/pooling.hpp (the means over channels and over positions) and
// of the row softmax the FBKD masks use, written straight from the formulas with plain loops over
// row-major [B,C,H,W] vectors. Independent of the library: no kdloss header is included.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace kdloss_ref::ops {

using Vec = std::vector<double>;

struct Shape {
  std::int64_t b, c, h, w;
  std::int64_t hw() const { return h * w; }
  std::int64_t numel() const { return b * c * h * w; }
  std::int64_t at(std::int64_t ib, std::int64_t ic, std::int64_t ih, std::int64_t iw) const {
    return ((ib * c + ic) * h + ih) * w + iw;
  }
};

/// mean over c of x (or |x|): [B, H*W].
inline Vec mean_over_channels(const Vec& x, const Shape& s, bool absolute) {
  Vec out(static_cast<std::size_t>(s.b * s.hw()), 0.0);
  for (std::int64_t b = 0; b < s.b; ++b)
    for (std::int64_t c = 0; c < s.c; ++c)
      for (std::int64_t h = 0; h < s.h; ++h)
        for (std::int64_t w = 0; w < s.w; ++w) {
          const double v = x[s.at(b, c, h, w)];
          out[b * s.hw() + h * s.w + w] += (absolute ? std::fabs(v) : v) / static_cast<double>(s.c);
        }
  return out;
}
/// mean over (h, w) of x (or |x|): [B, C].
inline Vec mean_over_positions(const Vec& x, const Shape& s, bool absolute) {
  Vec out(static_cast<std::size_t>(s.b * s.c), 0.0);
  for (std::int64_t b = 0; b < s.b; ++b)
    for (std::int64_t c = 0; c < s.c; ++c)
      for (std::int64_t h = 0; h < s.h; ++h)
        for (std::int64_t w = 0; w < s.w; ++w) {
          const double v = x[s.at(b, c, h, w)];
          out[b * s.c + c] += (absolute ? std::fabs(v) : v) / static_cast<double>(s.hw());
        }
  return out;
}

/// scale * softmax(x / t) over each row of a [rows, n] vector.
inline Vec softmax_rows(const Vec& x, std::int64_t rows, std::int64_t n, double t, double scale) {
  Vec y(x.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    double m = -INFINITY, z = 0;
    for (std::int64_t j = 0; j < n; ++j) m = std::max(m, x[r * n + j] / t);
    for (std::int64_t j = 0; j < n; ++j) z += std::exp(x[r * n + j] / t - m);
    for (std::int64_t j = 0; j < n; ++j) y[r * n + j] = scale * std::exp(x[r * n + j] / t - m) / z;
  }
  return y;
}

}  // namespace kdloss_ref::ops
