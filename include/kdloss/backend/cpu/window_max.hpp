// kdloss/backend/cpu/window_max.hpp: the host window-maximum pass (expr/window_max.hpp).
//
// One task per (b, c) plane (threads share the planes above kParallelThreshold elements; each plane is
// computed by one thread in a fixed order, so results do not depend on the thread count). A task walks
// the plane's output rows in chunks of up to kChunk output columns: the running maximum and its
// window-local index of every column of the chunk live in two small stack arrays, updated one window
// offset (kh, kw) at a time, so the inner loop runs across output columns and vectorises (with a
// compile-time window step for contiguous rows and s = 2, 4, 8). The backward writes the s input rows
// of an output row right after it: zeros (or beta * grad_x), then the upstream gradient at each
// window's argmax; rows and columns that no window covers get zeros (beta * grad_x). A fused
// forward_backward therefore reads x once.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/backend/cpu/planes.hpp"
#include "kdloss/expr/window_max.hpp"

namespace kdloss::backend::cpu::window_max {

using expr::WindowMaxPass;

/// Output columns one step of a task handles (the stack arrays' length).
inline constexpr std::int64_t kChunk = 256;

inline namespace KDLOSS_CPU_ISA_NAMESPACE {
/// Running maximum m[j] and its window-local index id[j] of n consecutive windows of one output row;
/// x0 points at the first element of the first window, rs / cs are x's row / column strides. S > 0:
/// the windows' columns are contiguous (cs = 1) and s = S, known at compile time.
template <int S, class T>
KDLOSS_CPU_CLONES KDLOSS_CPU_FLATTEN void chunk_argmax(const T* x0, std::int64_t rs, std::int64_t cs, std::int64_t s,
                                                       std::int64_t n, T* m, std::int32_t* id) {
  const std::int64_t ss = S > 0 ? S : s;
  const std::int64_t col = S > 0 ? 1 : cs;       // between the columns of one window
  const std::int64_t step = S > 0 ? S : s * cs;  // between windows
  for (std::int64_t j = 0; j < n; ++j) {
    m[j] = x0[j * step];
    id[j] = 0;
  }
  for (std::int64_t kh = 0; kh < ss; ++kh)
    for (std::int64_t kw = 0; kw < ss; ++kw) {
      if (kh == 0 && kw == 0) continue;
      const T* src = x0 + kh * rs + kw * col;
      const auto k = static_cast<std::int32_t>(kh * ss + kw);
#if KDLOSS_OPENMP
#pragma omp simd
#endif
      for (std::int64_t j = 0; j < n; ++j) {
        const T v = src[j * step];
        const bool take = expr::window_max_takes(v, m[j]);
        m[j] = take ? v : m[j];
        id[j] = take ? k : id[j];
      }
    }
}
/// Input row kh of n consecutive windows (g at column stride gs): grad = beta * grad + (up[j] where
/// id[j] is this element's window-local index, else 0); beta 0 never reads g. S > 0: gs = 1, s = S.
template <int S, class T>
KDLOSS_CPU_CLONES KDLOSS_CPU_FLATTEN void chunk_route(T* g, std::int64_t gs, const T* up, const std::int32_t* id,
                                                      std::int64_t kh, std::int64_t s, std::int64_t n, double beta) {
  const std::int64_t ss = S > 0 ? S : s, col = S > 0 ? 1 : gs;
  const auto k0 = static_cast<std::int32_t>(kh * ss);
  if (beta == 0.0) {
#if KDLOSS_OPENMP
#pragma omp simd
#endif
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t kw = 0; kw < ss; ++kw)
        g[(j * ss + kw) * col] = id[j] == k0 + static_cast<std::int32_t>(kw) ? up[j] : T(0);
  } else {
    const T b = static_cast<T>(beta);
#if KDLOSS_OPENMP
#pragma omp simd
#endif
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t kw = 0; kw < ss; ++kw) {
        T& e = g[(j * ss + kw) * col];
        e = b * e + (id[j] == k0 + static_cast<std::int32_t>(kw) ? up[j] : T(0));
      }
  }
}
}  // namespace KDLOSS_CPU_ISA_NAMESPACE

/// g[0, n) at element stride gs becomes beta * g (beta 0: zeros, the old contents unread).
template <class T>
void scale_span(T* g, std::int64_t gs, std::int64_t n, double beta) {
  if (beta == 0.0) {
    if (gs == 1)
      std::fill(g, g + n, T(0));
    else
      for (std::int64_t k = 0; k < n; ++k) g[k * gs] = T(0);
  } else if (beta != 1.0) {
    const T b = static_cast<T>(beta);
    for (std::int64_t k = 0; k < n; ++k) g[k * gs] *= b;
  }
}

template <class T>
void route_chunk(T* g, std::int64_t gs, const T* up, const std::int32_t* id, std::int64_t kh, std::int64_t s,
                 std::int64_t n, double beta) {
  if (gs == 1 && s == 2)
    chunk_route<2>(g, gs, up, id, kh, s, n, beta);
  else if (gs == 1 && s == 4)
    chunk_route<4>(g, gs, up, id, kh, s, n, beta);
  else if (gs == 1 && s == 8)
    chunk_route<8>(g, gs, up, id, kh, s, n, beta);
  else
    chunk_route<0>(g, gs, up, id, kh, s, n, beta);
}

template <class T>
void argmax_of_chunk(const T* x0, std::int64_t rs, std::int64_t cs, std::int64_t s, std::int64_t n, T* m,
                     std::int32_t* id) {
  if (cs == 1 && s == 2)
    chunk_argmax<2>(x0, rs, cs, s, n, m, id);
  else if (cs == 1 && s == 4)
    chunk_argmax<4>(x0, rs, cs, s, n, m, id);
  else if (cs == 1 && s == 8)
    chunk_argmax<8>(x0, rs, cs, s, n, m, id);
  else
    chunk_argmax<0>(x0, rs, cs, s, n, m, id);
}

/// The pass over plane p.
template <class T, class I>
void run_plane(const WindowMaxPass<T, I>& P, std::int64_t p) {
  const std::int64_t b = p / P.channels, c = p % P.channels, s = P.stride;
  const std::int64_t Ho = P.out_h(), Wo = P.out_w();
  const T* xp = P.x + b * P.xs[0] + c * P.xs[1];
  T* yp = P.y ? P.y + b * P.ys[0] + c * P.ys[1] : nullptr;
  T* gxp = P.gx ? P.gx + b * P.gxs[0] + c * P.gxs[1] : nullptr;
  const T* gyp = P.gx ? P.gy + b * P.gys[0] + c * P.gys[1] : nullptr;
  const bool scan = P.forward() || P.argmax_in == nullptr;
  alignas(64) T m[kChunk];
  alignas(64) std::int32_t id[kChunk];
  alignas(64) T up[kChunk];
  for (std::int64_t i = 0; i < Ho; ++i) {
    for (std::int64_t j0 = 0; j0 < Wo; j0 += kChunk) {
      const std::int64_t n = std::min(kChunk, Wo - j0);
      const std::int64_t at = (p * Ho + i) * Wo + j0;  // contiguous argmax index
      if (scan) {
        argmax_of_chunk(xp + i * s * P.xs[2] + j0 * s * P.xs[3], P.xs[2], P.xs[3], s, n, m, id);
      } else {
        for (std::int64_t j = 0; j < n; ++j) id[j] = static_cast<std::int32_t>(P.argmax_in[at + j]);
      }
      if (yp)
        for (std::int64_t j = 0; j < n; ++j) yp[i * P.ys[2] + (j0 + j) * P.ys[3]] = m[j];
      if (P.argmax_out)
        for (std::int64_t j = 0; j < n; ++j) P.argmax_out[at + j] = static_cast<I>(id[j]);
      if (!gxp) continue;
      const T* gyr = gyp + i * P.gys[2] + j0 * P.gys[3];
      for (std::int64_t j = 0; j < n; ++j) up[j] = gyr[j * P.gys[3]];
      for (std::int64_t kh = 0; kh < s; ++kh)
        route_chunk(gxp + (i * s + kh) * P.gxs[2] + j0 * s * P.gxs[3], P.gxs[3], up, id, kh, s, n, P.beta);
    }
    if (gxp && Wo * s < P.W)  // columns no window covers
      for (std::int64_t kh = 0; kh < s; ++kh)
        scale_span(gxp + (i * s + kh) * P.gxs[2] + Wo * s * P.gxs[3], P.gxs[3], P.W - Wo * s, P.beta);
  }
  if (gxp)  // rows no window covers
    for (std::int64_t h = Ho * s; h < P.H; ++h) scale_span(gxp + h * P.gxs[2], P.gxs[3], P.W, P.beta);
}

/// Runs the pass over every plane.
template <class T, class I>
void run(const WindowMaxPass<T, I>& P) {
  planes::each_plane(P.planes(), P.H * P.W, [&](std::int64_t p) { run_plane(P, p); });
}

}  // namespace kdloss::backend::cpu::window_max
