// Naive double-precision reference of ops/max_pool.hpp: PyTorch's F.max_pool2d(x, s, s) (floor mode,
// no padding) over row-major [B, C, H, W] vectors, written from the definition of aten's CPU and CUDA
// kernels: start from -inf with the window's first index, scan the window row by row, and take an
// element when it is greater than the running maximum or is NaN. Independent of the library.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace kdloss_ref::ops {

struct MaxPool2dRef {
  std::vector<double> y;              // [B, C, H/s, W/s]
  std::vector<std::int64_t> argmax;  // PyTorch's flat index h * W + w within the plane, per output
};

/// Forward of max_pool2d with kernel = stride = s over x [b, c, h, w].
inline MaxPool2dRef max_pool2d(const std::vector<double>& x, std::int64_t b, std::int64_t c, std::int64_t h,
                               std::int64_t w, std::int64_t s) {
  const std::int64_t ho = h / s, wo = w / s;
  MaxPool2dRef r;
  r.y.resize(static_cast<std::size_t>(b * c * ho * wo));
  r.argmax.resize(r.y.size());
  for (std::int64_t p = 0; p < b * c; ++p)
    for (std::int64_t i = 0; i < ho; ++i)
      for (std::int64_t j = 0; j < wo; ++j) {
        double m = -std::numeric_limits<double>::infinity();
        std::int64_t at = i * s * w + j * s;
        for (std::int64_t r0 = i * s; r0 < i * s + s; ++r0)
          for (std::int64_t q = j * s; q < j * s + s; ++q) {
            const double v = x[static_cast<std::size_t>(p * h * w + r0 * w + q)];
            if (v > m || std::isnan(v)) m = v, at = r0 * w + q;
          }
        const auto o = static_cast<std::size_t>((p * ho + i) * wo + j);
        r.y[o] = m;
        r.argmax[o] = at;
      }
  return r;
}

/// Backward: grad_x = 0 except grad_y at each output's argmax (windows do not overlap).
inline std::vector<double> max_pool2d_backward(const std::vector<double>& x, const std::vector<double>& grad_y,
                                               std::int64_t b, std::int64_t c, std::int64_t h, std::int64_t w,
                                               std::int64_t s) {
  const auto f = max_pool2d(x, b, c, h, w, s);
  const std::int64_t ho = h / s, wo = w / s;
  std::vector<double> gx(x.size(), 0.0);
  for (std::int64_t p = 0; p < b * c; ++p)
    for (std::int64_t o = 0; o < ho * wo; ++o) {
      const auto k = static_cast<std::size_t>(p * ho * wo + o);
      gx[static_cast<std::size_t>(p * h * w + f.argmax[k])] += grad_y[k];
    }
  return gx;
}

}  // namespace kdloss_ref::ops
