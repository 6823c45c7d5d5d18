// kdloss/losses/ssim/head.hpp: the per-pixel part of every SSIM variant, written once for host
// and device: from the five window statistics (mu_x, mu_y, P_xx = G*x^2, P_yy, P_xy) to the value
// and its partial derivatives. It enters the windowed-statistics pass (expr/window_stats.hpp) of
// both backends as the head functor SsimHead<Form>.
//
// Statistics: var_x = max(P_xx - mu_x^2, 0), var_y likewise (clamped at zero, with zero gradient
// where the clamp is active; a NaN passes through the clamp, as torch.clamp passes it), cov = P_xy - mu_x mu_y (signed, never clamped).
// Forms:
//   two_factor  S = (2 mu_x mu_y + C1)(2 cov + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2) + eps)
//   cs          cs = (2 cov + C2) / (var_x + var_y + C2)              (pytorch-msssim's cs_map)
//   three       S = l^alpha c^beta s^gamma with l = (2 mu_x mu_y + C1)/(mu_x^2 + mu_y^2 + C1),
//               c = (2 sd_x sd_y + C2)/(var_x + var_y + C2), s = (cov + C3)/(sd_x sd_y + C3),
//               sd = sqrt(var), C3 = C2 / 2 (thesis equations 3a-3c and 4). A power with exponent 0
//               is 1; otherwise x^p means sign(x)|x|^p (s and l can be negative), whose derivative
//               p|x|^(p-1) is taken as 0 at x = 0 when p < 1. With alpha = beta = gamma = 1 and
//               C3 = C2/2, c s = (2 cov + C2)/(var_x + var_y + C2): the two-factor form.
// The value is S itself, (1 - S)/2, or kornia's clamp((1 - S)/2, 0, 1) (gradient passes where
// 0 <= (1 - S)/2 <= 1, bounds included, as torch.clamp's does).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kdloss/config.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/expr/window_stats.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace ssim::detail {

using expr::StatGrad;

enum class Form { two_factor, cs, three };
enum class ValueKind { index, half_loss, clamped_loss };

/// Constants of the per-pixel formula. The value is v0 + v1 S, clamped to [0, 1] when vc = 1
/// (set_kind fills them, so pixel loops see plain numbers, not a switch).
struct Head {
  double c1 = 1e-4, c2 = 9e-4, c3 = 4.5e-4, eps = 0;
  double alpha = 1, beta = 1, gamma = 1;
  ValueKind kind = ValueKind::index;
  double v0 = 0, v1 = 1, vc = 0;
  KDLOSS_HOST_DEVICE void set_kind(ValueKind k) {
    kind = k;
    v0 = k == ValueKind::index ? 0.0 : 0.5;
    v1 = k == ValueKind::index ? 1.0 : -0.5;
    vc = k == ValueKind::clamped_loss ? 1.0 : 0.0;
  }
};

/// sign(x)|x|^p (p = 0: 1; p = 1: x).
template <class A>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE A signed_pow(A x, double p) {
  if (p == 0.0) return A(1);
  if (p == 1.0) return x;
  using std::pow;
  const A m = pow(x < A(0) ? -x : x, A(p));
  return x < A(0) ? -m : m;
}
/// d signed_pow / dx = p|x|^(p-1), with 0 at x = 0 for p < 1 (and for p = 0).
template <class A>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE A signed_pow_grad(A x, double p) {
  if (p == 0.0) return A(0);
  if (p == 1.0) return A(1);
  const A ax = x < A(0) ? -x : x;
  if (ax == A(0)) return p < 1.0 ? A(0) : (p == 1.0 ? A(1) : A(0));
  using std::pow;
  return A(p) * pow(ax, A(p - 1.0));
}

/// The value a0 + a1 S, clamped to [0, 1] when c = 1, and d value / d S (the clamp passes the
/// gradient on [0, 1], bounds included). Arithmetic only, so host pixel loops vectorise.
template <class A>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE A finish_with(A a0, A a1, A c, A s, A* dvds) {
  const A lin = a0 + a1 * s;
  const A clamped = lin < A(0) ? A(0) : (lin > A(1) ? A(1) : lin);
  const A inside = ((lin >= A(0)) & (lin <= A(1))) ? A(1) : A(0);
  *dvds = a1 * (A(1) + c * (inside - A(1)));
  return lin + c * (clamped - lin);
}
/// The value of a kind from S, and d value / d S.
template <class A>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE A finish(ValueKind kind, A s, A* dvds) {
  Head h;
  h.set_kind(kind);
  return finish_with(A(h.v0), A(h.v1), A(h.vc), s, dvds);
}

/// Value at one pixel; with Grad also g = up * d value / d statistics.
template <Form F, bool Grad, class A>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE A head_eval(const Head& h, A mx, A my, A pxx, A pyy, A pxy, A up,
                                                  StatGrad<A>& g) {
  A vx = pxx - mx * mx, vy = pyy - my * my;
  const A cov = pxy - mx * my;
  const A kx = vx > A(0) ? A(1) : A(0), ky = vy > A(0) ? A(1) : A(0);
  vx = vx < A(0) ? A(0) : vx;  // max(var, 0) that keeps a NaN (torch.clamp does)
  vy = vy < A(0) ? A(0) : vy;
  const A b2 = vx + vy + A(h.c2);
  A s, dvds;
  // d S / d (mu_x, mu_y) through the luminance terms only, and d S / d (var_x, var_y, cov).
  A dmx = A(0), dmy = A(0), gvx, gvy, gcov;
  if constexpr (F == Form::two_factor) {
    const A a1 = A(2) * mx * my + A(h.c1), b1 = mx * mx + my * my + A(h.c1);
    const A a2 = A(2) * cov + A(h.c2);
    const A inv = A(1) / (b1 * b2 + A(h.eps));
    s = a1 * a2 * inv;
    const A value = finish_with(A(h.v0), A(h.v1), A(h.vc), s, &dvds);
    if constexpr (!Grad) return value;
    const A ds_da1 = a2 * inv, ds_db1 = -s * b2 * inv, ds_db2 = -s * b1 * inv;
    dmx = A(2) * (ds_da1 * my + ds_db1 * mx);
    dmy = A(2) * (ds_da1 * mx + ds_db1 * my);
    gvx = ds_db2 * kx;
    gvy = ds_db2 * ky;
    gcov = A(2) * a1 * inv;
    s = value;
  } else if constexpr (F == Form::cs) {
    const A inv = A(1) / b2;
    s = (A(2) * cov + A(h.c2)) * inv;
    const A value = finish_with(A(h.v0), A(h.v1), A(h.vc), s, &dvds);
    if constexpr (!Grad) return value;
    gvx = -s * inv * kx;
    gvy = -s * inv * ky;
    gcov = A(2) * inv;
    s = value;
  } else {
    using std::sqrt;
    const A a1 = A(2) * mx * my + A(h.c1), b1 = mx * mx + my * my + A(h.c1);
    const A sx = sqrt(vx), sy = sqrt(vy);
    const A l = a1 / b1;
    const A c = (A(2) * sx * sy + A(h.c2)) / b2;
    const A den_s = sx * sy + A(h.c3);
    const A st = (cov + A(h.c3)) / den_s;
    const A pl = signed_pow(l, h.alpha), pc = signed_pow(c, h.beta), ps = signed_pow(st, h.gamma);
    s = pl * pc * ps;
    const A value = finish_with(A(h.v0), A(h.v1), A(h.vc), s, &dvds);
    if constexpr (!Grad) return value;
    const A gl = signed_pow_grad(l, h.alpha) * pc * ps;
    const A gc = pl * signed_pow_grad(c, h.beta) * ps;
    const A gs = pl * pc * signed_pow_grad(st, h.gamma);
    dmx = gl * A(2) * (my - l * mx) / b1;
    dmy = gl * A(2) * (mx - l * my) / b1;
    // var_x enters c through sd_x and the denominator, and s through sd_x (1 / (2 sd_x) from the sqrt).
    const A dc_dvx = kx * ((sx > A(0) ? sy / sx : A(0)) - c) / b2;
    const A dc_dvy = ky * ((sy > A(0) ? sx / sy : A(0)) - c) / b2;
    const A ds_dvx = sx > A(0) ? -kx * st * sy / (A(2) * sx * den_s) : A(0);
    const A ds_dvy = sy > A(0) ? -ky * st * sx / (A(2) * sy * den_s) : A(0);
    gvx = gc * dc_dvx + gs * ds_dvx;
    gvy = gc * dc_dvy + gs * ds_dvy;
    gcov = gs / den_s;
    s = value;
  }
  // Chain through var = P - mu^2 and cov = P_xy - mu_x mu_y, times the upstream gradient.
  const A u = up * dvds;
  g.mx = u * (dmx - A(2) * mx * gvx - my * gcov);
  g.my = u * (dmy - A(2) * my * gvy - mx * gcov);
  g.pxx = u * gvx;
  g.pyy = u * gvy;
  g.pxy = u * gcov;
  return s;
}

/// The head functor of the windowed-statistics pass (expr/window_stats.hpp) for one form.
template <Form F>
struct SsimHead {
  Head h;
  template <bool Grad, class A>
  KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE A eval(A mx, A my, A pxx, A pyy, A pxy, A up, StatGrad<A>& g) const {
    return head_eval<F, Grad, A>(h, mx, my, pxx, pyy, pxy, up, g);
  }
};

} } }  // namespace kdloss::ssim::detail
