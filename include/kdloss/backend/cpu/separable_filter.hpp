// kdloss/backend/cpu/separable_filter.hpp: host rows of a separable window filter (expr/filter.hpp)
// and its adjoint, vectorised, and the plane loops of a depthwise separable filter.
//
// A row is filtered by building its padded copy (reflection or zeros resolved once per row) and
// correlating it with the window, out[j] = sum_k w_k padded[j + k], as a register-blocked weighted
// sum of shifted rows (weighted_sum, which the compiler vectorises). The adjoint correlates the
// zero-padded gradient the same way and folds the halo back onto the pixels it was read from
// (reference section 3.1).
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/config.hpp"
#include "kdloss/expr/filter.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu::filter {

template <class A>
using Arr = Eigen::Array<A, Eigen::Dynamic, 1>;
template <class A>
using MapA = Eigen::Map<Arr<A>>;
template <class A>
using CMapA = Eigen::Map<const Arr<A>>;

/// The window of one axis in the accumulation type.
template <class A>
struct Taps {
  A w[expr::kMaxWindow] = {};
  int n = 1;
  bool symmetric = true;
  explicit Taps(const expr::AxisPlan& a) : n(a.taps), symmetric(a.symmetric()) {
    for (int k = 0; k < n; ++k) w[k] = static_cast<A>(a.w[k]);
  }
};

/// Length of an axis' padded row: n_out + taps - 1.
inline std::int64_t padded_length(const expr::AxisPlan& a) { return a.n_out + a.taps - 1; }

/// padded[p] = row[source(p - off)], zero where the source is outside the map.
template <class A>
void pad_row(const expr::AxisPlan& a, const A* row, A* padded) {
  const std::int64_t len = padded_length(a);
  const std::int64_t lo = std::max<std::int64_t>(0, a.off), hi = std::min<std::int64_t>(len, a.off + a.n_in);
  for (std::int64_t p = 0; p < lo; ++p) {
    const std::int64_t s = a.source(p - a.off);
    padded[p] = s >= 0 ? row[s] : A(0);
  }
  if (hi > lo) std::copy(row + (lo - a.off), row + (hi - a.off), padded + lo);
  for (std::int64_t p = std::max(hi, lo); p < len; ++p) {
    const std::int64_t s = a.source(p - a.off);
    padded[p] = s >= 0 ? row[s] : A(0);
  }
}

/// dst[j] = sum_k w[k] src[k][j] for j < n: register-blocked (a block of outputs stays in
/// registers while every tap streams by), so each output is written once.
inline namespace KDLOSS_CPU_ISA_NAMESPACE {
template <class A>
KDLOSS_CPU_CLONES void weighted_sum(const A* const* src, const A* w, int taps, A* dst, std::int64_t n) {
  constexpr int kB = 64 / static_cast<int>(sizeof(A));  // 16 floats / 8 doubles
  auto block = [&](std::int64_t j) {
    A acc[kB] = {};
    for (int k = 0; k < taps; ++k) {
      const A* s = src[k] + j;
      const A wk = w[k];
      for (int b = 0; b < kB; ++b) acc[b] += wk * s[b];
    }
    for (int b = 0; b < kB; ++b) dst[j + b] = acc[b];
  };
  if (n >= kB) {
    std::int64_t j = 0;
    for (; j + kB <= n; j += kB) block(j);
    if (j < n) block(n - kB);  // the tail as one overlapping block (outputs are written, not added)
    return;
  }
  for (std::int64_t j = 0; j < n; ++j) {
    A acc = 0;
    for (int k = 0; k < taps; ++k) acc += w[k] * src[k][j];
    dst[j] = acc;
  }
}
}  // namespace KDLOSS_CPU_ISA_NAMESPACE

/// out[j] = sum_k w_k padded[j + k] for j < n_out.
template <class A>
void correlate(const Taps<A>& t, const A* padded, A* out, std::int64_t n_out) {
  const A* src[expr::kMaxWindow];
  for (int k = 0; k < t.n; ++k) src[k] = padded + k;
  weighted_sum(src, t.w, t.n, out, n_out);
}

/// Scratch elements correlate_adjoint needs for an axis.
inline std::int64_t adjoint_scratch(const expr::AxisPlan& a) {
  return 2 * padded_length(a) + 2 * expr::kMaxWindow;
}

/// Adjoint of pad_row + correlate: grad_in (n_in, overwritten) from g (n_out); `scratch` holds
/// adjoint_scratch(a) elements.
template <class A>
void correlate_adjoint(const expr::AxisPlan& a, const Taps<A>& t, const A* g, A* grad_in, A* scratch) {
  const std::int64_t n_out = a.n_out, len = padded_length(a), f = t.n;
  // full[p] = sum_k w_k g[p - k]: a correlation of g zero-padded by taps - 1 on both sides.
  A* gz = scratch;
  A* full = scratch + len + f;
  std::fill(gz, gz + f - 1, A(0));
  std::copy(g, g + n_out, gz + f - 1);
  std::fill(gz + f - 1 + n_out, gz + n_out + 2 * (f - 1), A(0));
  const A* src[expr::kMaxWindow];
  for (int k = 0; k < f; ++k) src[k] = gz + (f - 1 - k);
  weighted_sum(src, t.w, static_cast<int>(f), full, len);
  // Positions inside the map are their own source; the halo folds back (reflect) or drops (zeros).
  const std::int64_t lo = std::max<std::int64_t>(0, a.off), hi = std::min<std::int64_t>(len, a.off + a.n_in);
  std::fill(grad_in, grad_in + a.n_in, A(0));
  if (hi > lo) std::copy(full + lo, full + hi, grad_in + (lo - a.off));
  if (a.mode != expr::Padding::reflect) return;
  for (std::int64_t p = 0; p < lo; ++p) grad_in[a.source(p - a.off)] += full[p];
  for (std::int64_t p = std::max(hi, lo); p < len; ++p) grad_in[a.source(p - a.off)] += full[p];
}

/// dst += w * src over n elements.
template <class A>
KDLOSS_FORCEINLINE void axpy(A w, const A* src, A* dst, std::int64_t n) {
  MapA<A>(dst, n) += w * CMapA<A>(src, n);
}

/// Elements of scratch one thread needs to filter (or adjoint-filter) one plane.
inline std::int64_t plane_scratch(const expr::AxisPlan& rows, const expr::AxisPlan& cols) {
  return rows.n_in * cols.n_out + 2 * std::max(adjoint_scratch(cols), cols.n_in) + std::max(cols.n_in, cols.n_out);
}

/// One plane of the separable filter: out (n_out rows x n_out cols) from x. Strides in elements.
template <class A, class X, class O>
void filter_plane(const expr::AxisPlan& rows, const expr::AxisPlan& cols, const X* x, std::int64_t xs_r,
                  std::int64_t xs_c, O* out, std::int64_t os_r, std::int64_t os_c, A* scratch) {
  const Taps<A> tr(rows), tc(cols);
  const std::int64_t wo = cols.n_out;
  A* tmp = scratch;                               // n_in rows x n_out cols, filtered along columns
  A* row = tmp + rows.n_in * wo;                  // one input row
  A* padded = row + std::max(adjoint_scratch(cols), cols.n_in);
  A* acc = padded + std::max(adjoint_scratch(cols), cols.n_in);
  for (std::int64_t r = 0; r < rows.n_in; ++r) {
    for (std::int64_t j = 0; j < cols.n_in; ++j) row[j] = static_cast<A>(x[r * xs_r + j * xs_c]);
    pad_row(cols, row, padded);
    correlate(tc, padded, tmp + r * wo, wo);
  }
  for (std::int64_t o = 0; o < rows.n_out; ++o) {
    std::fill(acc, acc + wo, A(0));
    for (int k = 0; k < tr.n; ++k) {
      const std::int64_t s = rows.source(o + k - rows.off);
      if (s >= 0) axpy(tr.w[k], tmp + s * wo, acc, wo);
    }
    for (std::int64_t j = 0; j < wo; ++j) out[o * os_r + j * os_c] = static_cast<O>(acc[j]);
  }
}

/// One plane of the adjoint: grad_x (n_in x n_in) from g (n_out x n_out).
template <class A, class G, class O>
void filter_plane_adjoint(const expr::AxisPlan& rows, const expr::AxisPlan& cols, const G* g,
                          std::int64_t gs_r, std::int64_t gs_c, O* grad, std::int64_t os_r, std::int64_t os_c,
                          A* scratch) {
  const Taps<A> tr(rows), tc(cols);
  const std::int64_t wo = cols.n_out;
  A* tmp = scratch;  // n_in rows x n_out cols: the vertical adjoint
  A* row = tmp + rows.n_in * wo;
  A* full = row + std::max(adjoint_scratch(cols), cols.n_in);
  A* acc = full + std::max(adjoint_scratch(cols), cols.n_in);
  std::fill(tmp, tmp + rows.n_in * wo, A(0));
  for (std::int64_t o = 0; o < rows.n_out; ++o) {
    for (std::int64_t j = 0; j < wo; ++j) row[j] = static_cast<A>(g[o * gs_r + j * gs_c]);
    for (int k = 0; k < tr.n; ++k) {
      const std::int64_t s = rows.source(o + k - rows.off);
      if (s >= 0) axpy(tr.w[k], row, tmp + s * wo, wo);
    }
  }
  for (std::int64_t r = 0; r < rows.n_in; ++r) {
    correlate_adjoint(cols, tc, tmp + r * wo, acc, full);
    for (std::int64_t j = 0; j < cols.n_in; ++j) grad[r * os_r + j * os_c] = static_cast<O>(acc[j]);
  }
}

using ::kdloss::backend::cpu::max_threads;
using ::kdloss::backend::cpu::thread_id;

/// Runs plane(p, scratch_of_this_thread) for every plane; threads when the work is large enough.
template <class A, class F>
void for_each_plane(std::int64_t planes, std::int64_t work, A* scratch, std::int64_t per_thread, F plane) {
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (work > kParallelThreshold && planes > 1)
#endif
  for (std::int64_t p = 0; p < planes; ++p) plane(p, scratch + static_cast<std::int64_t>(thread_id()) * per_thread);
  (void)work;
}

/// The filter (or its adjoint) over every plane of a [B, C, *, *] input with element strides;
/// `scratch` holds max_threads() * plane_scratch(rows, cols) elements.
template <class A, class X, class O>
void run(const expr::AxisPlan& rows, const expr::AxisPlan& cols, bool adjoint, std::int64_t B, std::int64_t C,
         const X* x, const std::int64_t* xs, O* out, const std::int64_t* os, A* scratch) {
  const std::int64_t planes = B * C;
  for_each_plane(planes, planes * rows.n_in * cols.n_in * rows.taps, scratch, plane_scratch(rows, cols),
                 [&](std::int64_t p, A* buf) {
                   const std::int64_t b = p / C, c = p % C;
                   const X* src = x + b * xs[0] + c * xs[1];
                   O* dst = out + b * os[0] + c * os[1];
                   if (adjoint)
                     filter_plane_adjoint(rows, cols, src, xs[2], xs[3], dst, os[2], os[3], buf);
                   else
                     filter_plane(rows, cols, src, xs[2], xs[3], dst, os[2], os[3], buf);
                 });
}

} } }  // namespace kdloss::backend::cpu::filter
