// Naive double-precision references of the pieces of ops/filter.hpp: the normalised Gaussian window and
// numpy's 'reflect' padding index. Independent of the library: no kdloss header is included.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

namespace kdloss_ref::ops {

enum class Pad { reflect, zeros, valid };

inline std::vector<double> gauss(int size, double sigma) {
  std::vector<double> w(size);
  double total = 0;
  for (int i = 0; i < size; ++i) {
    const double x = i - size / 2;
    w[i] = std::exp(-x * x / (2 * sigma * sigma));
    total += w[i];
  }
  for (auto& v : w) v /= total;
  return w;
}

/// numpy.pad(mode='reflect') index, bouncing as often as needed.
inline std::int64_t reflect(std::int64_t i, std::int64_t n) {
  if (n == 1) return 0;
  while (i < 0 || i >= n) {
    if (i < 0) i = -i;
    if (i >= n) i = 2 * (n - 1) - i;
  }
  return i;
}

}  // namespace kdloss_ref::ops
