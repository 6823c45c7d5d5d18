// kdloss/backend/cpu/window_stats.hpp: the host windowed-statistics pass (expr/window_stats.hpp).
// One task per (b, c) plane; each task streams
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

#include "kdloss/backend/cpu/separable_filter.hpp"
#include "kdloss/config.hpp"
#include "kdloss/expr/window_stats.hpp"

// clang warns (-Wpass-failed) where it cannot honour an `omp simd` request; GCC vectorises these loops and
// clang runs the ones it cannot vectorise in order, with the same results: the request stays, the warning stays out
// of users' builds.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu::window_stats {

using expr::StatGrad;
using expr::WindowStatsPass;

/// Elements of scratch one thread needs for planes of this geometry.
inline std::int64_t thread_scratch(const expr::AxisPlan& rows, const expr::AxisPlan& cols) {
  const std::int64_t wo = cols.n_out, w = cols.n_in, lc = filter::padded_length(cols);
  const std::int64_t wp = (wo + 15) / 16 * 16;
  const std::int64_t ring = expr::kStats * rows.taps * wp;
  return 2 * ring + 2 * w + 5 * lc + 8 * wp + filter::adjoint_scratch(cols) + 5 * w + 64;
}

inline namespace KDLOSS_CPU_ISA_NAMESPACE {
// The head loops run over rows padded to a multiple of 16 (the padding lanes hold finite values),
// so they vectorise without a scalar remainder.
/// Values of one output row (contiguous statistics).
template <class Hd, class A>
KDLOSS_CPU_CLONES void head_values(const Hd& h, const A* mx, const A* my, const A* pxx, const A* pyy,
                                   const A* pxy, A* vals, std::int64_t n) {
#if KDLOSS_OPENMP
#pragma omp simd
#endif
  for (std::int64_t j = 0; j < n; ++j) {
    StatGrad<A> unused;
    vals[j] = h.template eval<false, A>(mx[j], my[j], pxx[j], pyy[j], pxy[j], A(1), unused);
  }
}
/// Values and upstream-weighted partials of one output row.
template <class Hd, class A>
KDLOSS_CPU_CLONES void head_grads(const Hd& h, const A* mx, const A* my, const A* pxx, const A* pyy,
                                  const A* pxy, const A* up, A* vals, A* gmx, A* gmy, A* gpxx, A* gpyy, A* gpxy,
                                  std::int64_t n) {
#if KDLOSS_OPENMP
#pragma omp simd
#endif
  for (std::int64_t j = 0; j < n; ++j) {
    StatGrad<A> g;
    vals[j] = h.template eval<true, A>(mx[j], my[j], pxx[j], pyy[j], pxy[j], up[j], g);
    gmx[j] = g.mx, gmy[j] = g.my, gpxx[j] = g.pxx, gpyy[j] = g.pyy, gpxy[j] = g.pxy;
  }
}
}  // namespace KDLOSS_CPU_ISA_NAMESPACE

template <class In, class G, class Hd, class A>
double run_plane(const WindowStatsPass<In, G, Hd>& P, std::int64_t p, A* buf) {
  using namespace expr;
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
    std::int64_t readers[expr::kMaxWindow];
    A w[expr::kMaxWindow];
    int m = 0;
    for (std::int64_t o = std::max<std::int64_t>(0, r + R.off - Fr + 1); o <= std::min(Ho - 1, r + R.off); ++o) {
      const double wt = R.adjoint_weight(o, r);
      if (wt == 0.0) continue;
      readers[m] = o;
      w[m++] = A(wt);
    }
    for (int s = 0; s < kStats; ++s) {
      if (!want_y && (s == kMuY || s == kPyy)) continue;
      const A* rows_s[expr::kMaxWindow];
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
      const A* src[expr::kMaxWindow];
      A w[expr::kMaxWindow];
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
      head_values(P.head, mx, my, pxx, pyy, pxy, vals, Wp);
    } else {
      if (P.up_map) {
        const G* um = P.up_map + b * P.up_s[0] + c * P.up_s[1] + o * P.up_s[2];
        for (std::int64_t j = 0; j < Wo; ++j) ups[j] = up_plane * static_cast<A>(um[j * P.up_s[3]]);
      } else {
        std::fill(ups, ups + Wo, up_plane);
      }
      head_grads(P.head, mx, my, pxx, pyy, pxy, ups, vals, slot(pring, kMuX, o), slot(pring, kMuY, o),
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
template <class In, class G, class Hd, class A>
void run(const WindowStatsPass<In, G, Hd>& P, A* scratch) {
  const std::int64_t per_thread = thread_scratch(P.rows, P.cols);
  const std::int64_t work = P.planes() * P.rows.n_out * P.cols.n_out * P.rows.taps;
  filter::for_each_plane(P.planes(), work, scratch, per_thread, [&](std::int64_t p, A* buf) {
    const double s = run_plane(P, p, buf);
    if (P.plane_sums) P.plane_sums[p] = s * P.sum_scale;
  });
}

} } }  // namespace kdloss::backend::cpu::window_stats

#if defined(__clang__)
#pragma clang diagnostic pop
#endif
