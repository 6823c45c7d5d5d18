// kdloss/expr/window_stats.hpp: the plain-data description of a windowed-statistics pass over the
// planes of two [B, C, H, W] inputs x and y, and of the per-plane min-max normalisation it can
// apply to them. Backends evaluate it (backend/cpu/window_stats.hpp, backend/cuda/window_stats.cuh).
//
// Per output pixel the pass filters five statistics with a separable window (expr/filter.hpp):
// mu_x = G*x, mu_y = G*y, P_xx = G*x^2, P_yy = G*y^2, P_xy = G*(x y), and hands them to a
// per-pixel head functor H (the formula enters here, as a KDLOSS_HOST_DEVICE template parameter):
//
//   struct MyHead {
//     template <bool Grad, class A>
//     KDLOSS_HOST_DEVICE A eval(A mx, A my, A pxx, A pyy, A pxy, A up, expr::StatGrad<A>& g) const;
//   };
//
// eval returns the pixel's value; with Grad it also writes g = up * d value / d statistics.
// Forward sums the values per plane and/or writes them as a map. Backward applies the adjoint
// filter to g (reflected halo folded back, valid crop zero-padded) and writes d/dx and d/dy.
#pragma once
#include <cstdint>

#include "kdloss/config.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/expr/filter.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

/// The statistics of one pixel, in the pass' order.
enum Stat : int { kMuX = 0, kMuY = 1, kPxx = 2, kPyy = 3, kPxy = 4, kStats = 5 };

/// Partial derivatives of a head's value with respect to the five statistics (times `up`).
template <class A>
struct StatGrad {
  A mx, my, pxx, pyy, pxy;
};

/// Per-plane min-max normalisation of the two inputs: nu(v) = scale * v + shift, with
/// scale = 1 / (max - min) and shift = -min / (max - min) (0 and 0 on a constant plane; NaN when
/// the plane holds a NaN, as (v - min) / (max - min) is in PyTorch). Index 0 is x, 1 is y;
/// argmin/argmax are flat h * W + w indices (first occurrence; a NaN is both the min and the max).
struct MinMaxNorm {
  double scale[2] = {1, 1}, shift[2] = {0, 0};
  std::int64_t argmin[2] = {0, 0}, argmax[2] = {0, 0};
};

/// Running min and max with their first flat indices; index -1 is the empty set. A NaN wins both
/// (the first NaN's index), so a reduction propagates NaN as torch.amin/amax do.
struct MinMax {
  double lo = 0, hi = 0;
  std::int64_t ilo = -1, ihi = -1;

  KDLOSS_HOST_DEVICE static bool nan(double v) { return v != v; }
  /// True when (v, i) should replace (cur, ci) as the minimum (Less) or maximum.
  template <bool Less>
  KDLOSS_HOST_DEVICE static bool wins(double v, std::int64_t i, double cur, std::int64_t ci) {
    if (ci < 0) return i >= 0;
    if (i < 0) return false;
    if (nan(cur)) return nan(v) && i < ci;
    if (nan(v)) return true;
    if (v == cur) return i < ci;
    return Less ? v < cur : v > cur;
  }
  KDLOSS_HOST_DEVICE void add(double v, std::int64_t i) {
    if (wins<true>(v, i, lo, ilo)) lo = v, ilo = i;
    if (wins<false>(v, i, hi, ihi)) hi = v, ihi = i;
  }
  KDLOSS_HOST_DEVICE static MinMax combine(const MinMax& a, const MinMax& b) {
    MinMax r = a;
    if (wins<true>(b.lo, b.ilo, a.lo, a.ilo)) r.lo = b.lo, r.ilo = b.ilo;
    if (wins<false>(b.hi, b.ihi, a.hi, a.ihi)) r.hi = b.hi, r.ihi = b.ihi;
    return r;
  }
  /// Writes the normalisation of input `which` (a plane always has an element, so ilo >= 0).
  KDLOSS_HOST_DEVICE void store(MinMaxNorm& n, int which) const {
    const double range = hi - lo;  // NaN when a NaN or both infinities are present
    n.scale[which] = range == 0 ? 0.0 : 1.0 / range;
    n.shift[which] = range == 0 ? 0.0 : -lo / range;
    n.argmin[which] = ilo < 0 ? 0 : ilo;
    n.argmax[which] = ihi < 0 ? 0 : ihi;
  }
};

/// One windowed-statistics pass over B*C planes of x and y ([B, C, H, W] with element strides).
/// Forward: the value of every output pixel, summed per plane (times sum_scale) and/or written to
/// `map`. Backward: grad_x (and grad_y) = d(sum of up * value)/d(x, y), where up per pixel is
/// (*up_scalar or 1) * up_factor * (up_plane[p] or 1) * (up_map[pixel] or 1), plus a quarter of a
/// coarser level's gradient (the adjoint of a 2x2 average pool) and l1_coef * sign(x - y).
/// Everything but the head: what callers fill before picking the head's type.
template <class In, class G>
struct WindowStatsData {
  using Acc = acc_t<G>;
  std::int64_t batch = 0, channels = 0;
  AxisPlan rows, cols;
  const In* x = nullptr;
  std::int64_t xs[4] = {};
  const In* y = nullptr;
  std::int64_t ys[4] = {};
  const MinMaxNorm* norm = nullptr;  // per plane, or null: the inputs as they are
  // forward
  G* map = nullptr;
  std::int64_t map_s[4] = {};
  double* plane_sums = nullptr;
  double sum_scale = 1;
  // backward
  const G* up_scalar = nullptr;
  double up_factor = 1;
  const double* up_plane = nullptr;
  const G* up_map = nullptr;
  std::int64_t up_s[4] = {};
  G* gx = nullptr;
  std::int64_t gx_s[4] = {};
  G* gy = nullptr;
  std::int64_t gy_s[4] = {};
  const Acc* coarse_x = nullptr;  // [planes, coarse_h, coarse_w], contiguous
  const Acc* coarse_y = nullptr;
  std::int64_t coarse_h = 0, coarse_w = 0;
  int pool_ph = 0, pool_pw = 0;
  double l1_coef = 0;
  const G* l1_up = nullptr;  // when set, the l1 term is also multiplied by *l1_up

  KDLOSS_HOST_DEVICE std::int64_t planes() const { return batch * channels; }
  bool backward() const { return gx != nullptr || gy != nullptr; }
};

/// The pass with its head functor H (see the top of this file).
template <class In, class G, class H>
struct WindowStatsPass : WindowStatsData<In, G> {
  H head;
  WindowStatsPass() = default;
  WindowStatsPass(const WindowStatsData<In, G>& data, const H& h) : WindowStatsData<In, G>(data), head(h) {}
};

} } }  // namespace kdloss::expr
