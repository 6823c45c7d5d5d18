// kdloss/expr/filter.hpp: the plain-data description of one axis of a separable window filter
// (which input positions an output reads, with which weights, for every padding mode), written
// once for host and device code. Backends evaluate it (backend/cpu/separable_filter.hpp,
// backend/cuda/separable_filter.cuh, and the windowed-statistics pass of expr/window_stats.hpp).
//
// An output position o reads the padded positions o + k - off (k < taps); a padded position i
// reads input source(i), or nothing (zero) when source(i) < 0:
//   reflect  'same' with numpy/PyTorch reflection (the edge pixel is not repeated); positions
//            further out than one reflection keep reflecting (numpy.pad 'reflect'), and an axis
//            of one pixel repeats it. PyTorch refuses pads >= the size; kdloss defines them.
//   zeros    'same' with zeros outside the map.
//   valid    no padding: n_out = n_in - taps + 1.
// taps = 1 with weight 1 is the identity (pytorch-msssim skips smoothing along an axis shorter
// than the window).
#pragma once
#include <cstdint>
#include <vector>

#include "kdloss/config.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

/// Most taps a window may have (compile-time bound of the filter loops and kernels).
inline constexpr int kMaxWindow = 15;

/// Padding of a window filter: 'same' size with reflection (kornia's default) or zeros, or
/// 'valid' (only positions where the whole window fits; pytorch-msssim, and kornia's 'valid').
enum class Padding { reflect, zeros, valid };

inline const char* to_string(Padding p) {
  switch (p) {
    case Padding::reflect: return "reflect";
    case Padding::zeros: return "zeros";
    case Padding::valid: return "valid";
  }
  return "?";
}

struct AxisPlan {
  std::int64_t n_in = 0, n_out = 0;
  int taps = 1;
  int off = 0;
  Padding mode = Padding::valid;
  double w[kMaxWindow] = {1.0};

  /// Input index read at padded position i, or -1 for a zero.
  KDLOSS_HOST_DEVICE std::int64_t source(std::int64_t i) const {
    if (mode != Padding::reflect) return (i >= 0 && i < n_in) ? i : -1;
    if (n_in <= 1) return 0;
    const std::int64_t period = 2 * (n_in - 1);
    std::int64_t m = i % period;
    if (m < 0) m += period;
    return m >= n_in ? period - m : m;
  }
  /// Weight with which output o reads input r: sum of w_k over the taps whose padded position
  /// folds onto r (several near a reflected edge), 0 when o is outside the output.
  KDLOSS_HOST_DEVICE double adjoint_weight(std::int64_t o, std::int64_t r) const {
    if (o < 0 || o >= n_out) return 0.0;
    if (mode != Padding::reflect || (r > off && r < n_in - 1 - off)) {
      const std::int64_t k = r - o + off;  // no reflection lands on r: one tap at most
      return (k >= 0 && k < taps) ? w[k] : 0.0;
    }
    double total = 0;
    for (int k = 0; k < taps; ++k)
      if (source(o + k - off) == r) total += w[k];
    return total;
  }
  /// Lowest and highest input index output o reads.
  KDLOSS_HOST_DEVICE std::int64_t lowest(std::int64_t o) const {
    std::int64_t lo = n_in;
    for (int k = 0; k < taps; ++k) {
      const std::int64_t s = source(o + k - off);
      if (s >= 0 && s < lo) lo = s;
    }
    return lo;
  }
  KDLOSS_HOST_DEVICE std::int64_t highest(std::int64_t o) const {
    std::int64_t hi = -1;
    for (int k = 0; k < taps; ++k) {
      const std::int64_t s = source(o + k - off);
      if (s > hi) hi = s;
    }
    return hi;
  }
  bool symmetric() const {
    for (int k = 0; k < taps; ++k)
      if (w[k] != w[taps - 1 - k]) return false;
    return true;
  }
};

/// Output extent of an axis of n pixels filtered by `taps` with `mode` (may be <= 0 for valid).
inline std::int64_t filtered_extent(std::int64_t n, int taps, Padding mode) {
  return mode == Padding::valid ? n - taps + 1 : n;
}

/// The plan of one axis: window `weights` (odd size) over n pixels.
inline AxisPlan make_axis(std::int64_t n, const std::vector<double>& weights, Padding mode) {
  AxisPlan a;
  a.n_in = n;
  a.taps = static_cast<int>(weights.size());
  a.mode = mode;
  a.off = mode == Padding::valid ? 0 : a.taps / 2;
  a.n_out = filtered_extent(n, a.taps, mode);
  for (int k = 0; k < a.taps; ++k) a.w[k] = weights[static_cast<std::size_t>(k)];
  return a;
}
/// An axis left unfiltered.
inline AxisPlan identity_axis(std::int64_t n) {
  AxisPlan a;
  a.n_in = a.n_out = n;
  return a;
}

} } }  // namespace kdloss::expr
