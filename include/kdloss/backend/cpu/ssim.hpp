// kdloss/backend/cpu/ssim.hpp: the host SSIM engine. One task per (b, c) plane; each task streams
// down the plane's output rows with a ring of `taps` horizontally filtered rows of the five
// statistics (x, y, x^2, y^2, xy), forms the vertical sums of one output row, evaluates the
// per-pixel head (value, and for the backward its partial derivatives), and for the backward
// scatters the partials through the vertical adjoint into a second ring; an input row whose last
// reader has passed is folded through the horizontal adjoint and written as gradient. Scratch
// is a few rows per thread (O(taps * W)), never a full-size intermediate map.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kdloss/backend/cpu/ssim_filter.hpp"
#include "kdloss/losses/ssim/head.hpp"

namespace kdloss::backend::cpu::ssim {

using ssim_detail::Form;
using ssim_detail::Pass;

/// Elements of scratch one thread needs for planes of this geometry.
inline std::int64_t thread_scratch(const ops::detail::AxisPlan& rows, const ops::detail::AxisPlan& cols) {
  const std::int64_t wo = cols.n_out, w = cols.n_in, lc = filter::padded_length(cols);
  const std::int64_t wp = (wo + 15) / 16 * 16;
  const std::int64_t ring = ssim_detail::kStats * rows.taps * wp;
  return 2 * ring + 2 * w + 5 * lc + 8 * wp + filter::adjoint_scratch(cols) + 5 * w + 64;
}

inline namespace KDLOSS_CPU_ISA_NAMESPACE {
// The head loops run over rows padded to a multiple of 16 (the padding lanes hold finite values),
// so they vectorise without a scalar remainder.
/// Values of one output row (contiguous statistics).
template <Form F, class A>
KDLOSS_CPU_CLONES void head_values(const ssim_detail::Head& h, const A* mx, const A* my, const A* pxx, const A* pyy,
                                   const A* pxy, A* vals, std::int64_t n) {
#if KDLOSS_OPENMP
#pragma omp simd
#endif
  for (std::int64_t j = 0; j < n; ++j) {
    ssim_detail::StatGrad<A> unused;
    vals[j] = ssim_detail::head_eval<F, false, A>(h, mx[j], my[j], pxx[j], pyy[j], pxy[j], A(1), unused);
  }
}
/// Values and upstream-weighted partials of one output row.
template <Form F, class A>
KDLOSS_CPU_CLONES void head_grads(const ssim_detail::Head& h, const A* mx, const A* my, const A* pxx, const A* pyy,
                                  const A* pxy, const A* up, A* vals, A* gmx, A* gmy, A* gpxx, A* gpyy, A* gpxy,
                                  std::int64_t n) {
#if KDLOSS_OPENMP
#pragma omp simd
#endif
  for (std::int64_t j = 0; j < n; ++j) {
    ssim_detail::StatGrad<A> g;
    vals[j] = ssim_detail::head_eval<F, true, A>(h, mx[j], my[j], pxx[j], pyy[j], pxy[j], up[j], g);
    gmx[j] = g.mx, gmy[j] = g.my, gpxx[j] = g.pxx, gpyy[j] = g.pyy, gpxy[j] = g.pxy;
  }
}
}  // namespace KDLOSS_CPU_ISA_NAMESPACE

template <Form F, class In, class G, class A>
double run_plane(const Pass<In, G>& P, std::int64_t p, A* buf) {
  using namespace ssim_detail;
  const auto& R = P.rows;
  const auto& C = P.cols;
  const std::int64_t H = R.n_in, W = C.n_in, Ho = R.n_out, Wo = C.n_out, Fr = R.taps, Lc = filter::padded_length(C);
  const std::int64_t b = p / P.channels, c = p % P.channels;
  const In* xp = P.x + b * P.xs[0] + c * P.xs[1];
  const In* yp = P.y + b * P.ys[0] + c * P.ys[1];
  A ax = 1, bx = 0, ay = 1, by = 0;
  if (P.norm) {
    ax = A(P.norm[p].scale[0]), bx = A(P.norm[p].shift[0]);
    ay = A(P.norm[p].scale[1]), by = A(P.norm[p].shift[1]);
  }
  const filter::Taps<A> tr(R), tc(C);
  const std::int64_t Wp = (Wo + 15) / 16 * 16;  // row stride: output rows padded for the head loops
  const std::int64_t ring_size = kStats * Fr * Wp;
  A* ring = buf;               // [stat][slot][Wp]: horizontally filtered statistics of input rows
  A* pring = ring + ring_size; // [stat][slot][Wp]: the head's partials of output rows
  A* xr = pring + ring_size;   // W
  A* yr = xr + W;              // W
  A* pad = yr + W;             // 5 x Lc
  A* st = pad + 5 * Lc;        // 5 x Wp: statistics of one output row
  A* vrow = st + 5 * Wp;       // Wp: vertical adjoint of one statistic's partials
  A* vals = vrow + Wp;         // Wp: values of one output row
  A* ups = vals + Wp;          // Wp: upstream gradient of one output row
  A* scratch = ups + Wp;       // adjoint_scratch(C)
  A* adj = scratch + filter::adjoint_scratch(C);  // 5 x W
  const bool backward = P.backward();
  const bool want_y = P.gy != nullptr;

  auto load = [&](std::int64_t r) {
    for (std::int64_t j = 0; j < W; ++j) {
      xr[j] = ax * static_cast<A>(xp[r * P.xs[2] + j * P.xs[3]]) + bx;
      yr[j] = ay * static_cast<A>(yp[r * P.ys[2] + j * P.ys[3]]) + by;
    }
  };
  auto slot = [&](A* base, int s, std::int64_t i) { return base + (s * Fr + i % Fr) * Wp; };
  std::fill(st, st + 5 * Wp, A(0));  // padding lanes stay 0 (finite) for the head loops
  std::fill(ups, ups + Wp, A(0));
  auto horizontal = [&](std::int64_t r) {
    load(r);
    A *px = pad, *py = pad + Lc;
    filter::pad_row(C, xr, px);
    filter::pad_row(C, yr, py);
    filter::MapA<A>(pad + 2 * Lc, Lc) = filter::CMapA<A>(px, Lc).square();
    filter::MapA<A>(pad + 3 * Lc, Lc) = filter::CMapA<A>(py, Lc).square();
    filter::MapA<A>(pad + 4 * Lc, Lc) = filter::CMapA<A>(px, Lc) * filter::CMapA<A>(py, Lc);
    for (int s = 0; s < kStats; ++s) filter::correlate(tc, pad + s * Lc, slot(ring, s, r), Wo);
  };
  // Input row r is read by outputs [r + off - taps + 1, r + off] only (reflected reads included);
  // its gradient gathers their partials with the folded weights.
  auto emit = [&](std::int64_t r) {
    std::int64_t readers[ops::kMaxWindow];
    A w[ops::kMaxWindow];
    int m = 0;
    for (std::int64_t o = std::max<std::int64_t>(0, r + R.off - Fr + 1); o <= std::min(Ho - 1, r + R.off); ++o) {
      const double wt = R.adjoint_weight(o, r);
      if (wt == 0.0) continue;
      readers[m] = o;
      w[m++] = A(wt);
    }
    for (int s = 0; s < kStats; ++s) {
      if (!want_y && (s == kMuY || s == kPyy)) continue;
      const A* rows_s[ops::kMaxWindow];
      for (int k = 0; k < m; ++k) rows_s[k] = slot(pring, s, readers[k]);
      filter::weighted_sum(rows_s, w, m, vrow, Wo);
      filter::correlate_adjoint(C, tc, vrow, adj + s * W, scratch);
    }
    load(r);
    const A* coarse_x = P.coarse_x ? P.coarse_x + (p * P.coarse_h + (r + P.pool_ph) / 2) * P.coarse_w : nullptr;
    const A* coarse_y = P.coarse_y ? P.coarse_y + (p * P.coarse_h + (r + P.pool_ph) / 2) * P.coarse_w : nullptr;
    const A l1 = A(P.l1_coef) * (P.l1_up ? static_cast<A>(*P.l1_up) : A(1));
    auto write = [&](G* g, const std::int64_t* gs, int mu, int pp, const A* self, const A* other, const A* coarse) {
      G* gp = g + b * gs[0] + c * gs[1] + r * gs[2];
      const A *am = adj + mu * W, *ap = adj + pp * W, *ac = adj + kPxy * W;
      for (std::int64_t j = 0; j < W; ++j) {
        A v = am[j] + A(2) * self[j] * ap[j] + other[j] * ac[j];
        if (coarse) v += A(0.25) * coarse[(j + P.pool_pw) / 2];
        if (l1 != A(0)) v += l1 * math::sign(self[j] - other[j]);
        gp[j * gs[3]] = static_cast<G>(v);
      }
    };
    if (P.gx) write(P.gx, P.gx_s, kMuX, kPxx, xr, yr, coarse_x);
    if (P.gy) write(P.gy, P.gy_s, kMuY, kPyy, yr, xr, coarse_y);
  };

  A up_plane = A(1);
  if (backward) {
    up_plane = A(P.up_factor) * (P.up_scalar ? static_cast<A>(*P.up_scalar) : A(1)) *
               (P.up_plane ? A(P.up_plane[p]) : A(1));
  }
  double total = 0;
  std::int64_t next = 0, emitted = 0;
  for (std::int64_t o = 0; o < Ho; ++o) {
    const std::int64_t hi = R.highest(o);
    for (; next <= hi; ++next) horizontal(next);
    {
      const A* src[ops::kMaxWindow];
      A w[ops::kMaxWindow];
      for (int s = 0; s < kStats; ++s) {
        int m = 0;
        for (int k = 0; k < tr.n; ++k) {
          const std::int64_t r = R.source(o + k - R.off);
          if (r >= 0) src[m] = slot(ring, s, r), w[m++] = tr.w[k];
        }
        filter::weighted_sum(src, w, m, st + s * Wp, Wo);
      }
    }
    const A *mx = st, *my = st + Wp, *pxx = st + 2 * Wp, *pyy = st + 3 * Wp, *pxy = st + 4 * Wp;
    G* mp = P.map ? P.map + b * P.map_s[0] + c * P.map_s[1] + o * P.map_s[2] : nullptr;
    if (!backward) {
      head_values<F>(P.head, mx, my, pxx, pyy, pxy, vals, Wp);
    } else {
      if (P.up_map) {
        const G* um = P.up_map + b * P.up_s[0] + c * P.up_s[1] + o * P.up_s[2];
        for (std::int64_t j = 0; j < Wo; ++j) ups[j] = up_plane * static_cast<A>(um[j * P.up_s[3]]);
      } else {
        std::fill(ups, ups + Wo, up_plane);
      }
      head_grads<F>(P.head, mx, my, pxx, pyy, pxy, ups, vals, slot(pring, kMuX, o), slot(pring, kMuY, o),
                    slot(pring, kPxx, o), slot(pring, kPyy, o), slot(pring, kPxy, o), Wp);
    }
    {
      A row_sum = 0;
      for (std::int64_t j = 0; j < Wo; ++j) row_sum += vals[j];
      total += static_cast<double>(row_sum);
    }
    if (mp)
      for (std::int64_t j = 0; j < Wo; ++j) mp[j * P.map_s[3]] = static_cast<G>(vals[j]);
    if (!backward) continue;
    // Rows whose last reader is this output (every remaining row after the last output).
    for (; emitted < H && std::min(Ho - 1, emitted + R.off) <= o; ++emitted) emit(emitted);
  }
  return total;
}

/// Runs the pass over every plane, threads sharing `scratch` (max_threads() * thread_scratch elements).
template <class In, class G, class A>
void run(const Pass<In, G>& P, A* scratch) {
  const std::int64_t per_thread = thread_scratch(P.rows, P.cols);
  const std::int64_t work = P.planes() * P.rows.n_out * P.cols.n_out * P.rows.taps;
  auto go = [&](auto form_tag) {
    constexpr Form F = decltype(form_tag)::value;
    filter::for_each_plane(P.planes(), work, scratch, per_thread, [&](std::int64_t p, A* buf) {
      const double s = run_plane<F>(P, p, buf);
      if (P.plane_sums) P.plane_sums[p] = s * P.sum_scale;
    });
  };
  switch (P.form) {
    case Form::two_factor: go(std::integral_constant<Form, Form::two_factor>{}); break;
    case Form::cs: go(std::integral_constant<Form, Form::cs>{}); break;
    case Form::three: go(std::integral_constant<Form, Form::three>{}); break;
  }
}

/// Per-plane min/max of x and y (first index on ties, row-major): nu = (v - min) / (max - min),
/// and 0 with zero gradient on a constant plane.
template <class In>
void norm_stats(std::int64_t batch, std::int64_t channels, std::int64_t H, std::int64_t W, const In* x,
                const std::int64_t* xs, const In* y, const std::int64_t* ys, ssim_detail::NormStats* out) {
  const std::int64_t planes = batch * channels;
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if (planes * H * W > (1 << 15))
#endif
  for (std::int64_t p = 0; p < planes; ++p) {
    const std::int64_t b = p / channels, c = p % channels;
    for (int which = 0; which < 2; ++which) {
      const In* v = which == 0 ? x + b * xs[0] + c * xs[1] : y + b * ys[0] + c * ys[1];
      const std::int64_t* s = which == 0 ? xs : ys;
      double lo = static_cast<double>(v[0]), hi = lo;
      std::int64_t ilo = 0, ihi = 0;
      for (std::int64_t r = 0; r < H; ++r)
        for (std::int64_t j = 0; j < W; ++j) {
          const double e = static_cast<double>(v[r * s[2] + j * s[3]]);
          if (e < lo) lo = e, ilo = r * W + j;
          if (e > hi) hi = e, ihi = r * W + j;
        }
      const double range = hi - lo;
      out[p].scale[which] = range > 0 ? 1.0 / range : 0.0;
      out[p].shift[which] = range > 0 ? -lo / range : 0.0;
      out[p].argmin[which] = ilo;
      out[p].argmax[which] = ihi;
    }
  }
}

/// Turns g = d loss / d nu(v) (in place, plane by plane) into d loss / d v (see NormStats).
template <class In, class G>
void norm_backward(std::int64_t batch, std::int64_t channels, std::int64_t H, std::int64_t W, const In* v,
                   const std::int64_t* vs, G* g, const std::int64_t* gs, const ssim_detail::NormStats* norm,
                   int which) {
  const std::int64_t planes = batch * channels;
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if (planes * H * W > (1 << 15))
#endif
  for (std::int64_t p = 0; p < planes; ++p) {
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
  }
}

/// MS-SSIM's 2x2 average pool with padding (H % 2, W % 2), zeros counted (count_include_pad):
/// out[p][i][j] = sum of the in-range v[2i - ph + a][2j - pw + b] / 4. `out` is contiguous.
template <class In, class A>
void avg_pool(std::int64_t batch, std::int64_t channels, std::int64_t H, std::int64_t W, const In* v,
              const std::int64_t* vs, const ssim_detail::NormStats* norm, int which, A* out, std::int64_t Ho,
              std::int64_t Wo) {
  const std::int64_t planes = batch * channels;
  const std::int64_t ph = H % 2, pw = W % 2;
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if (planes * H * W > (1 << 15))
#endif
  for (std::int64_t p = 0; p < planes; ++p) {
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
  }
}

/// Per-plane sum of |nu(x) - nu(y)| (the l1 term of the MS-SSIM + l1 mixture).
template <class In>
void l1_plane_sums(std::int64_t batch, std::int64_t channels, std::int64_t H, std::int64_t W, const In* x,
                   const std::int64_t* xs, const In* y, const std::int64_t* ys, const ssim_detail::NormStats* norm,
                   double* sums, double scale) {
  const std::int64_t planes = batch * channels;
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(static) if (planes * H * W > (1 << 15))
#endif
  for (std::int64_t p = 0; p < planes; ++p) {
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
  }
}

}  // namespace kdloss::backend::cpu::ssim
