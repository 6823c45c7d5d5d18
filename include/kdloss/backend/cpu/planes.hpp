// kdloss/backend/cpu/planes.hpp: small host passes over the (b, c) planes of [B, C, H, W] inputs
// given by pointer and element strides: per-plane min-max normalisation (expr/window_stats.hpp)
// and its backward, the 2x2 average pool with ceil padding, sums of |x - y|, and the scalar
// epilogue that sums a few per-plane values into one output.
#pragma once
#include <cstdint>

#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/convert.hpp"
#include "kdloss/expr/window_stats.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu::planes {

/// f(p) for every plane, threads sharing the planes when planes * plane_size is large.
template <class F>
void each_plane(std::int64_t planes, std::int64_t plane_size, F f) {
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if (planes * plane_size > kParallelThreshold)
#endif
  for (std::int64_t p = 0; p < planes; ++p) f(p);
  (void)plane_size;
}

/// Per-plane min-max normalisation of x and y (expr::MinMaxNorm: first index on ties, NaN wins).
template <class In>
void minmax_norm(std::int64_t batch, std::int64_t channels, std::int64_t H, std::int64_t W, const In* x,
                 const std::int64_t* xs, const In* y, const std::int64_t* ys, expr::MinMaxNorm* out) {
  each_plane(batch * channels, H * W, [&](std::int64_t p) {
    const std::int64_t b = p / channels, c = p % channels;
    for (int which = 0; which < 2; ++which) {
      const In* v = which == 0 ? x + b * xs[0] + c * xs[1] : y + b * ys[0] + c * ys[1];
      const std::int64_t* s = which == 0 ? xs : ys;
      expr::MinMax m;
      for (std::int64_t r = 0; r < H; ++r)
        for (std::int64_t j = 0; j < W; ++j) m.add(static_cast<double>(v[r * s[2] + j * s[3]]), r * W + j);
      m.store(out[p], which);
    }
  });
}

/// Turns g = d loss / d nu(v) (in place, plane by plane) into d loss / d v (see expr::MinMaxNorm).
template <class In, class G>
void minmax_norm_backward(std::int64_t batch, std::int64_t channels, std::int64_t H, std::int64_t W, const In* v,
                          const std::int64_t* vs, G* g, const std::int64_t* gs, const expr::MinMaxNorm* norm,
                          int which) {
  each_plane(batch * channels, H * W, [&](std::int64_t p) {
    const std::int64_t b = p / channels, c = p % channels;
    const In* vp = v + b * vs[0] + c * vs[1];
    G* gp = g + b * gs[0] + c * gs[1];
    const double scale = norm[p].scale[which], shift = norm[p].shift[which];
    double s1 = 0, s2 = 0;
    for (std::int64_t r = 0; r < H; ++r)
      for (std::int64_t j = 0; j < W; ++j) {
        const double gv = static_cast<double>(gp[r * gs[2] + j * gs[3]]);
        s1 += gv;
        s2 += gv * (scale * static_cast<double>(vp[r * vs[2] + j * vs[3]]) + shift);
      }
    for (std::int64_t r = 0; r < H; ++r)
      for (std::int64_t j = 0; j < W; ++j) {
        G& e = gp[r * gs[2] + j * gs[3]];
        e = static_cast<G>(static_cast<double>(e) * scale);
      }
    const std::int64_t imin = norm[p].argmin[which], imax = norm[p].argmax[which];
    G& emin = gp[(imin / W) * gs[2] + (imin % W) * gs[3]];
    emin = static_cast<G>(static_cast<double>(emin) + (s2 - s1) * scale);
    G& emax = gp[(imax / W) * gs[2] + (imax % W) * gs[3]];
    emax = static_cast<G>(static_cast<double>(emax) - s2 * scale);
  });
}

/// 2x2 average pool (MS-SSIM's pyramid step) with padding (H % 2, W % 2), zeros counted (count_include_pad):
/// out[p][i][j] = sum of the in-range v[2i - ph + a][2j - pw + b] / 4. `out` is contiguous.
template <class In, class A>
void avg_pool2x2(std::int64_t batch, std::int64_t channels, std::int64_t H, std::int64_t W, const In* v,
                 const std::int64_t* vs, const expr::MinMaxNorm* norm, int which, A* out, std::int64_t Ho,
                 std::int64_t Wo) {
  const std::int64_t ph = H % 2, pw = W % 2;
  each_plane(batch * channels, H * W, [&](std::int64_t p) {
    const std::int64_t b = p / channels, c = p % channels;
    const In* vp = v + b * vs[0] + c * vs[1];
    const A scale = norm ? A(norm[p].scale[which]) : A(1), shift = norm ? A(norm[p].shift[which]) : A(0);
    A* op = out + p * Ho * Wo;
    for (std::int64_t i = 0; i < Ho; ++i)
      for (std::int64_t j = 0; j < Wo; ++j) {
        A acc = 0;
        for (int a = 0; a < 2; ++a)
          for (int bb = 0; bb < 2; ++bb) {
            const std::int64_t r = 2 * i - ph + a, q = 2 * j - pw + bb;
            if (r >= 0 && r < H && q >= 0 && q < W) acc += scale * static_cast<A>(vp[r * vs[2] + q * vs[3]]) + shift;
          }
        op[i * Wo + j] = acc * A(0.25);
      }
  });
}

/// Per-plane sum of |nu(x) - nu(y)| times scale (nu the identity when norm is null).
template <class In>
void abs_diff_sums(std::int64_t batch, std::int64_t channels, std::int64_t H, std::int64_t W, const In* x,
                   const std::int64_t* xs, const In* y, const std::int64_t* ys, const expr::MinMaxNorm* norm,
                   double* sums, double scale) {
  each_plane(batch * channels, H * W, [&](std::int64_t p) {
    const std::int64_t b = p / channels, c = p % channels;
    const In* xp = x + b * xs[0] + c * xs[1];
    const In* yp = y + b * ys[0] + c * ys[1];
    const double ax = norm ? norm[p].scale[0] : 1, bx = norm ? norm[p].shift[0] : 0;
    const double ay = norm ? norm[p].scale[1] : 1, by = norm ? norm[p].shift[1] : 0;
    double acc = 0;
    for (std::int64_t r = 0; r < H; ++r)
      for (std::int64_t j = 0; j < W; ++j) {
        const double d = (ax * static_cast<double>(xp[r * xs[2] + j * xs[3]]) + bx) -
                         (ay * static_cast<double>(yp[r * ys[2] + j * ys[3]]) + by);
        acc += d < 0 ? -d : d;
      }
    sums[p] = acc * scale;
  });
}

/// *out = fin(sum of vals[0, n)), summed in index order.
template <class Fin, class O>
void store_sum(const double* vals, std::int64_t n, Fin fin, O* out) {
  double t = 0;
  for (std::int64_t i = 0; i < n; ++i) t += vals[i];
  store_as(out, fin(t));
}

/// f(i) for i in [0, n), in order.
template <class F>
void for_each_index(std::int64_t n, F f) {
  for (std::int64_t i = 0; i < n; ++i) f(i);
}

} } }  // namespace kdloss::backend::cpu::planes
