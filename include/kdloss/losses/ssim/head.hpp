// kdloss/losses/ssim/head.hpp: the per-pixel part of every SSIM variant, written once for host
// and device: from the five window statistics (mu_x, mu_y, P_xx = G*x^2, P_yy, P_xy) to the value
// and its partial derivatives, and the description of one pass of the SSIM engine that both
// backends run (backend/cpu/ssim.hpp, backend/cuda/ssim.cuh).
//
// Statistics: var_x = max(P_xx - mu_x^2, 0), var_y likewise (clamped at zero, with zero gradient
// where the clamp is active), cov = P_xy - mu_x mu_y (signed, never clamped).
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
#include "kdloss/ops/filter_plan.hpp"

#if KDLOSS_CUDA_ENABLED
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace kdloss::ssim_detail {

/// Element <-> double on host and device (half and bfloat16 through float).
template <class T>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE double to_double(const T& v) {
  return static_cast<double>(v);
}
template <class T>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE T from_double(double v) {
  return static_cast<T>(v);
}
#if KDLOSS_CUDA_ENABLED
template <>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE double to_double<__half>(const __half& v) {
  return static_cast<double>(__half2float(v));
}
template <>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE double to_double<__nv_bfloat16>(const __nv_bfloat16& v) {
  return static_cast<double>(__bfloat162float(v));
}
template <>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE __half from_double<__half>(double v) {
  return __float2half_rn(static_cast<float>(v));
}
template <>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE __nv_bfloat16 from_double<__nv_bfloat16>(double v) {
  return __float2bfloat16_rn(static_cast<float>(v));
}
#endif

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

/// Per-pixel partial derivatives of the value with respect to the five statistics.
template <class A>
struct StatGrad {
  A mx, my, pxx, pyy, pxy;
};

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
  vx = vx > A(0) ? vx : A(0);
  vy = vy > A(0) ? vy : A(0);
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

// ---- GPU launch geometry (CUDA-free, so host translation units answer GPU workspace queries) ----

/// Tiles of the GPU kernels: 32 columns by 16 rows (float accumulation) or 8 rows (double).
inline constexpr int kGpuTileW = 32;
KDLOSS_HOST_DEVICE constexpr int gpu_tile_h(std::size_t acc_bytes) { return acc_bytes == 8 ? 8 : 16; }
/// Per-block partial sums a GPU pass may write: tiles of the input grid (which covers the output
/// grid) times planes.
inline std::int64_t gpu_forward_blocks(const ops::detail::AxisPlan& rows, const ops::detail::AxisPlan& cols,
                                       std::int64_t planes, std::size_t acc_bytes) {
  const std::int64_t th = gpu_tile_h(acc_bytes);
  return ((rows.n_in + th - 1) / th) * ((cols.n_in + kGpuTileW - 1) / kGpuTileW) * planes;
}

/// Statistics of one pixel, in the engine's order.
enum Stat : int { kMuX = 0, kMuY = 1, kPxx = 2, kPyy = 3, kPxy = 4, kStats = 5 };

/// Per-plane min-max normalisation nu (see losses/ssim/options.hpp): nu(v) = scale * v + shift.
/// Index 0 is x (student), 1 is y (teacher); argmin/argmax are flat h * W + w indices.
struct NormStats {
  double scale[2] = {1, 1}, shift[2] = {0, 0};
  std::int64_t argmin[2] = {0, 0}, argmax[2] = {0, 0};
};

/// One pass of the SSIM engine over B*C planes of x and y ([B, C, H, W] with element strides).
/// Forward: the value of every output pixel, summed per plane (times sum_scale) and/or written to
/// `map`. Backward: grad_x (and grad_y) = d(sum of up * value)/d(x, y), where up per pixel is
/// (*up_scalar or 1) * up_factor * (up_plane[p] or 1) * (up_map[pixel] or 1), plus a quarter of the
/// coarser level's gradient (MS-SSIM's average-pool adjoint) and l1_coef * sign(x - y) (mixture).
template <class In, class G>
struct Pass {
  using Acc = acc_t<G>;
  std::int64_t batch = 0, channels = 0;
  ops::detail::AxisPlan rows, cols;
  const In* x = nullptr;
  std::int64_t xs[4] = {};
  const In* y = nullptr;
  std::int64_t ys[4] = {};
  const NormStats* norm = nullptr;
  Head head;
  Form form = Form::two_factor;
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

}  // namespace kdloss::ssim_detail
