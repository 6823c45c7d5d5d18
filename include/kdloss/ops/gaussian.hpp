// kdloss/ops/gaussian.hpp: the normalised 1-D Gaussian window of SSIM (kornia's
// get_gaussian_kernel1d and pytorch-msssim's _fspecial_gauss_1d, which agree for odd sizes), and
// the padding modes of the window filter (expr/filter.hpp describes one filtered axis).
#pragma once
#include <cmath>
#include <vector>

#include "kdloss/config.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/expr/filter.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace ops {

/// Smallest and largest window a filter or SSIM call accepts at run time.
inline constexpr int kMinWindow = 3;
inline constexpr int kMaxWindow = expr::kMaxWindow;

/// Padding of a window filter: reflect / zeros ('same' size) or valid (expr/filter.hpp).
using Padding = expr::Padding;
using expr::to_string;

namespace detail {
using expr::AxisPlan;
using expr::identity_axis;
using expr::make_axis;

/// Throws unless `size` is odd and in [kMinWindow, kMaxWindow] and sigma is finite and > 0.
inline void check_window(const char* fn, int size, double sigma) {
  kdloss::detail::require(size % 2 == 1, fn, ": argument 'window_size' must be odd but is ", size);
  kdloss::detail::require(size >= kMinWindow && size <= kMaxWindow, fn, ": argument 'window_size' must be in [",
                          kMinWindow, ", ", kMaxWindow, "] but is ", size);
  kdloss::detail::require(sigma > 0 && std::isfinite(sigma), fn, ": argument 'sigma' must be finite and > 0 but is ",
                          sigma);
}
}  // namespace detail

/// w_i = exp(-x_i^2 / (2 sigma^2)) / sum, with x_i = i - size/2 (integer division), i in [0, size).
/// The window is symmetric, so correlation and convolution with it coincide.
///
///   std::vector<double> w = kdloss::ops::gaussian_window(11, 1.5);   // w[5] ~ 0.2660, sum 1
inline std::vector<double> gaussian_window(int size, double sigma) {
  detail::check_window("kdloss::ops::gaussian_window", size, sigma);
  std::vector<double> w(static_cast<std::size_t>(size));
  double total = 0;
  for (int i = 0; i < size; ++i) {
    const double x = static_cast<double>(i - size / 2);
    w[static_cast<std::size_t>(i)] = std::exp(-(x * x) / (2.0 * sigma * sigma));
    total += w[static_cast<std::size_t>(i)];
  }
  for (auto& v : w) v /= total;
  return w;
}

} } }  // namespace kdloss::ops
