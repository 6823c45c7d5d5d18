// kdloss/backend/cpu/window_max.hpp: the host window-maximum pass (expr/window_max.hpp).
//
// Planar layouts: one task per (b, c) plane. A task walks the plane's output rows in chunks of up to
// kChunk output columns: the running maximum and window-local argmax of every column of the chunk live
// in small stack arrays, updated in the window's row-major order, so the inner loop runs across output
// columns and vectorises (for contiguous rows and s = 2, 4, 8 the window is a compile-time constant and
// one pass per window row reads each window's row as one interleaved group). The backward writes the s
// input rows of an output row right after it, each as one select per element (grad_y at the argmax,
// else 0, plus beta * grad_x); rows and columns that no window covers get 0 (beta * grad_x). A fused
// forward_backward therefore reads x once.
// Channel-last x (channel stride 1): one task per (b, output row), chunks along the channels.
// Threads share the tasks above kParallelThreshold elements; each task is computed by one thread in a
// fixed order, so results do not depend on the thread count.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/backend/cpu/planes.hpp"
#include "kdloss/config.hpp"
#include "kdloss/expr/window_max.hpp"

// clang warns (-Wpass-failed) where it cannot honour an `omp simd` request; GCC vectorises these loops and
// clang runs the ones it cannot vectorise in order, with the same results: the request stays, the warning stays out
// of users' builds.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu::window_max {

using expr::WindowMaxPass;

/// Output columns one step of a task handles (the stack arrays' length).
inline constexpr std::int64_t kChunk = 256;

/// Where the n elements a chunk works on sit, in elements: element j of window offset (kh, kw) is at
/// kh * row + kw * col + j * step. The planar path runs along output columns (step = s * column
/// stride), the channel-last path along channels (step = channel stride).
struct ChunkGeometry {
  std::int64_t row, col, step;
};

// S > 0: col = 1 and step = s = S (a contiguous row of windows, s known at compile time);
// S < 0: step = 1 (contiguous channels); S == 0: everything at run time.
inline namespace KDLOSS_CPU_ISA_NAMESPACE {
/// Running maximum m[j] and its window-local index id[j] of n windows (see ChunkGeometry) starting at x0.
template <int S, class T>
KDLOSS_CPU_CLONES KDLOSS_CPU_FLATTEN void chunk_argmax(const T* x0, ChunkGeometry at, std::int64_t s, std::int64_t n,
                                                       T* m, std::int32_t* id) {
  if constexpr (S > 0) {  // one pass per window row kh: the row's S elements as one interleaved group
    for (std::int64_t kh = 0; kh < S; ++kh) {
      const T* src = x0 + kh * at.row;
#if KDLOSS_OPENMP
#pragma omp simd
#endif
      for (std::int64_t j = 0; j < n; ++j) {
        T mj = kh == 0 ? src[j * S] : m[j];
        std::int32_t ij = kh == 0 ? 0 : id[j];
        for (int kw = 0; kw < S; ++kw) {
          const T v = src[j * S + kw];
          const bool take = expr::window_max_takes(v, mj);
          mj = take ? v : mj;
          ij = take ? static_cast<std::int32_t>(kh * S + kw) : ij;
        }
        m[j] = mj;
        id[j] = ij;
      }
    }
  } else {  // one pass per window offset (kh, kw)
    const std::int64_t step = S < 0 ? 1 : at.step;
    for (std::int64_t j = 0; j < n; ++j) {
      m[j] = x0[j * step];
      id[j] = 0;
    }
    for (std::int64_t kh = 0; kh < s; ++kh)
      for (std::int64_t kw = 0; kw < s; ++kw) {
        if (kh == 0 && kw == 0) continue;
        const T* src = x0 + kh * at.row + kw * at.col;
        const auto k = static_cast<std::int32_t>(kh * s + kw);
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
}
/// Input row kh of n windows (see ChunkGeometry; g points at the row's first window): grad = beta * grad
/// + (up[j] where id[j] is this element's window-local index, else 0); Accumulate false (beta 0) never
/// reads g.
template <int S, bool Accumulate, class T>
KDLOSS_CPU_CLONES KDLOSS_CPU_FLATTEN void chunk_route(T* g, ChunkGeometry at, const T* up, const std::int32_t* id,
                                                      std::int64_t kh, std::int64_t s, std::int64_t n, T beta) {
  const std::int64_t ss = S > 0 ? S : s, col = S > 0 ? 1 : at.col, step = S > 0 ? S : (S < 0 ? 1 : at.step);
  const auto k0 = static_cast<std::int32_t>(kh * ss);
  if (S > 0) {  // windows outermost: each j writes S consecutive elements
#if KDLOSS_OPENMP
#pragma omp simd
#endif
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t kw = 0; kw < ss; ++kw) {
        const T v = id[j] == k0 + static_cast<std::int32_t>(kw) ? up[j] : T(0);
        T& e = g[j * step + kw];
        if constexpr (Accumulate)
          e = beta * e + v;
        else
          e = v;
      }
  } else {  // window columns outermost: the inner loop runs along the chunk
    for (std::int64_t kw = 0; kw < ss; ++kw) {
      T* gk = g + kw * col;
      const auto k = k0 + static_cast<std::int32_t>(kw);
#if KDLOSS_OPENMP
#pragma omp simd
#endif
      for (std::int64_t j = 0; j < n; ++j) {
        const T v = id[j] == k ? up[j] : T(0);
        T& e = gk[j * step];
        if constexpr (Accumulate)
          e = beta * e + v;
        else
          e = v;
      }
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

/// chunk_argmax / chunk_route with the compile-time form the geometry allows.
template <class T>
void argmax_of_chunk(const T* x0, ChunkGeometry at, std::int64_t s, std::int64_t n, T* m, std::int32_t* id) {
  if (at.step == 1)
    chunk_argmax<-1>(x0, at, s, n, m, id);
  else if (at.col == 1 && s == 2 && at.step == 2)
    chunk_argmax<2>(x0, at, s, n, m, id);
  else if (at.col == 1 && s == 4 && at.step == 4)
    chunk_argmax<4>(x0, at, s, n, m, id);
  else if (at.col == 1 && s == 8 && at.step == 8)
    chunk_argmax<8>(x0, at, s, n, m, id);
  else
    chunk_argmax<0>(x0, at, s, n, m, id);
}
template <bool Accumulate, class T>
void route_chunk_as(T* g, ChunkGeometry at, const T* up, const std::int32_t* id, std::int64_t kh, std::int64_t s,
                    std::int64_t n, T beta) {
  if (at.step == 1)
    chunk_route<-1, Accumulate>(g, at, up, id, kh, s, n, beta);
  else if (at.col == 1 && s == 2 && at.step == 2)
    chunk_route<2, Accumulate>(g, at, up, id, kh, s, n, beta);
  else if (at.col == 1 && s == 4 && at.step == 4)
    chunk_route<4, Accumulate>(g, at, up, id, kh, s, n, beta);
  else if (at.col == 1 && s == 8 && at.step == 8)
    chunk_route<8, Accumulate>(g, at, up, id, kh, s, n, beta);
  else
    chunk_route<0, Accumulate>(g, at, up, id, kh, s, n, beta);
}
template <class T>
void route_chunk(T* g, ChunkGeometry at, const T* up, const std::int32_t* id, std::int64_t kh, std::int64_t s,
                 std::int64_t n, double beta) {
  if (beta == 0.0)
    route_chunk_as<false>(g, at, up, id, kh, s, n, T(0));
  else
    route_chunk_as<true>(g, at, up, id, kh, s, n, static_cast<T>(beta));
}

/// One chunk of n windows: scan (or load the kept argmax), write y and the argmax, route grad_y.
/// Offsets of window j: x at x0 + j * xg.step, y at yo + j * ystep, argmax at ao + j * astep, grad_y at
/// go + j * gstep, grad_x at gx0 + j * gxg.step.
template <class T, class I>
struct Chunk {
  const T* x0;
  ChunkGeometry xg;
  T* y;
  std::int64_t ystep;
  std::int64_t ao, astep;
  const T* gy;
  std::int64_t gstep;
  T* gx0;
  ChunkGeometry gxg;
};
template <class T, class I>
void run_chunk(const WindowMaxPass<T, I>& P, const Chunk<T, I>& c, std::int64_t n, bool scan) {
  alignas(64) T m[kChunk];
  alignas(64) std::int32_t id[kChunk];
  alignas(64) T up[kChunk];
  const std::int64_t s = P.stride;
  if (scan)
    argmax_of_chunk(c.x0, c.xg, s, n, m, id);
  else
    for (std::int64_t j = 0; j < n; ++j) id[j] = static_cast<std::int32_t>(P.argmax_in[c.ao + j * c.astep]);
  if (P.y)
    for (std::int64_t j = 0; j < n; ++j) c.y[j * c.ystep] = m[j];
  if (P.argmax_out)
    for (std::int64_t j = 0; j < n; ++j) P.argmax_out[c.ao + j * c.astep] = static_cast<I>(id[j]);
  if (!P.gx) return;
  for (std::int64_t j = 0; j < n; ++j) up[j] = c.gy[j * c.gstep];
  for (std::int64_t kh = 0; kh < s; ++kh) route_chunk(c.gx0 + kh * c.gxg.row, c.gxg, up, id, kh, s, n, P.beta);
}

/// Channel-last x (channel stride 1): one task per (b, output row i), chunks along the channels, so
/// every load and (for a channel-last grad_x) every store is contiguous.
template <class T, class I>
void run_row_channels_last(const WindowMaxPass<T, I>& P, std::int64_t b, std::int64_t i) {
  const std::int64_t s = P.stride, C = P.channels, Ho = P.out_h(), Wo = P.out_w();
  const bool scan = P.forward() || P.argmax_in == nullptr;
  for (std::int64_t j = 0; j < Wo; ++j)
    for (std::int64_t c0 = 0; c0 < C; c0 += kChunk) {
      Chunk<T, I> c{};
      c.x0 = P.x + b * P.xs[0] + c0 * P.xs[1] + i * s * P.xs[2] + j * s * P.xs[3];
      c.xg = {P.xs[2], P.xs[3], P.xs[1]};
      if (P.y) c.y = P.y + b * P.ys[0] + c0 * P.ys[1] + i * P.ys[2] + j * P.ys[3], c.ystep = P.ys[1];
      c.ao = ((b * C + c0) * Ho + i) * Wo + j, c.astep = Ho * Wo;
      if (P.gx) {
        c.gy = P.gy + b * P.gys[0] + c0 * P.gys[1] + i * P.gys[2] + j * P.gys[3], c.gstep = P.gys[1];
        c.gx0 = P.gx + b * P.gxs[0] + c0 * P.gxs[1] + i * s * P.gxs[2] + j * s * P.gxs[3];
        c.gxg = {P.gxs[2], P.gxs[3], P.gxs[1]};
      }
      run_chunk(P, c, std::min(kChunk, C - c0), scan);
    }
  if (!P.gx) return;
  T* g = P.gx + b * P.gxs[0];
  // Columns no window covers in this row's input rows; the last row task also takes the rows below.
  for (std::int64_t h = i * s; h < (i + 1 == Ho ? P.H : i * s + s); ++h)
    for (std::int64_t w = h < Ho * s ? Wo * s : 0; w < P.W; ++w)
      scale_span(g + h * P.gxs[2] + w * P.gxs[3], P.gxs[1], C, P.beta);
}

/// The pass over plane p (planar layouts): chunks along the output columns of each output row.
template <class T, class I>
void run_plane(const WindowMaxPass<T, I>& P, std::int64_t p) {
  const std::int64_t b = p / P.channels, c = p % P.channels, s = P.stride;
  const std::int64_t Ho = P.out_h(), Wo = P.out_w();
  T* gxp = P.gx ? P.gx + b * P.gxs[0] + c * P.gxs[1] : nullptr;
  const bool scan = P.forward() || P.argmax_in == nullptr;
  for (std::int64_t i = 0; i < Ho; ++i) {
    for (std::int64_t j0 = 0; j0 < Wo; j0 += kChunk) {
      Chunk<T, I> k{};
      k.x0 = P.x + b * P.xs[0] + c * P.xs[1] + i * s * P.xs[2] + j0 * s * P.xs[3];
      k.xg = {P.xs[2], P.xs[3], s * P.xs[3]};
      if (P.y) k.y = P.y + b * P.ys[0] + c * P.ys[1] + i * P.ys[2] + j0 * P.ys[3], k.ystep = P.ys[3];
      k.ao = (p * Ho + i) * Wo + j0, k.astep = 1;
      if (gxp) {
        k.gy = P.gy + b * P.gys[0] + c * P.gys[1] + i * P.gys[2] + j0 * P.gys[3], k.gstep = P.gys[3];
        k.gx0 = gxp + i * s * P.gxs[2] + j0 * s * P.gxs[3];
        k.gxg = {P.gxs[2], P.gxs[3], s * P.gxs[3]};
      }
      run_chunk(P, k, std::min(kChunk, Wo - j0), scan);
    }
    if (gxp && Wo * s < P.W)  // columns no window covers
      for (std::int64_t kh = 0; kh < s; ++kh)
        scale_span(gxp + (i * s + kh) * P.gxs[2] + Wo * s * P.gxs[3], P.gxs[3], P.W - Wo * s, P.beta);
  }
  if (gxp)  // rows no window covers
    for (std::int64_t h = Ho * s; h < P.H; ++h) scale_span(gxp + h * P.gxs[2], P.gxs[3], P.W, P.beta);
}

/// Runs the pass: channel-last x (channel stride 1, several channels) by rows, any other layout by planes.
template <class T, class I>
void run(const WindowMaxPass<T, I>& P) {
  if (P.xs[1] == 1 && P.channels > 1) {
    const std::int64_t Ho = P.out_h();
    planes::each_plane(P.batch * Ho, P.stride * P.W * P.channels,
                       [&](std::int64_t r) { run_row_channels_last(P, r / Ho, r % Ho); });
    return;
  }
  planes::each_plane(P.planes(), P.H * P.W, [&](std::int64_t p) { run_plane(P, p); });
}

} } }  // namespace kdloss::backend::cpu::window_max

#if defined(__clang__)
#pragma clang diagnostic pop
#endif
