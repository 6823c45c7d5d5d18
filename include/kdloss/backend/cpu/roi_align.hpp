// kdloss/backend/cpu/roi_align.hpp: the host RoIAlign pass (expr/roi_align.hpp), forward and a
// deterministic backward.
//
// Work is cut into tasks (image b, block of channels). A task owns the gradient planes of its
// channels: it first writes beta * grad_x (0 when beta is 0) into them, then walks the boxes of image
// b in a fixed order (their row order in the box view) and, per box, every channel of its block. So
// every gradient cell is summed by one thread in an order that does not depend on the thread count,
// with no atomics and no per-thread copies of grad_x.
//
// Average mode works per axis: the bilinear weight of a sample factors into a row weight and a
// column weight, and so does its validity. Per box a task builds, for every bin row p, the list of map
// rows its samples touch with their summed weights (and the same for columns); then
//   y[p, q] = (1 / count) * sum_rows wy * sum_cols wx * x[row, col],
// and the backward adds (gy[p, q] / count) * wy * wx to the same cells. That touches each cell of a
// box about once per bin instead of four times per sample, and reads whole row segments. A cell that
// a sample touches with weight 0 stays in the lists (0 * NaN is NaN, as in torchvision); a cell no
// sample touches is never read.
// Max mode (mmcv) evaluates every sample's bilinear value in the bin's row-major sample order and
// routes the gradient to the four corners of the first maximal sample.
//
// Scratch: the boxes of each image in order (K + B + 1 int64, from the [K, 5] image column by a
// stable counting sort) and, per thread, the tables of one box (O(PH * grid_h + PW * grid_w)).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/roi_align.hpp"

// clang warns (-Wpass-failed) where it cannot honour an `omp simd` request; GCC vectorises these loops and
// clang runs the ones it cannot vectorise in order, with the same results: the request stays, the warning stays out
// of users' builds.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cpu::roi_align {

using expr::AxisSample;
using expr::RoiAlignPass;
using expr::RoiGeometry;

/// Channels one task handles (the boxes' tables are built once per task).
inline constexpr std::int64_t kChannelBlock = 8;

/// The image of box k of a [K, 5] view, as torchvision reads it (truncation toward zero).
template <class T>
std::int64_t image_of(const RoiAlignPass<T>& P, std::int64_t k) {
  return static_cast<std::int64_t>(P.boxes[k * P.bs[0]]);
}

template <class T>
RoiGeometry<acc_t<T>> geometry(const RoiAlignPass<T>& P, std::int64_t k) {
  using A = acc_t<T>;
  const T* b = P.boxes + k * P.bs[0] + P.box_base() * P.bs[1];
  return expr::roi_geometry<A>(static_cast<A>(b[0]), static_cast<A>(b[P.bs[1]]), static_cast<A>(b[2 * P.bs[1]]),
                               static_cast<A>(b[3 * P.bs[1]]), static_cast<A>(P.spatial_scale), P.aligned, P.PH, P.PW,
                               P.sampling_ratio);
}

/// The largest per-bin grid of any box along each axis (sizes the per-thread tables).
template <class T>
void max_grids(const RoiAlignPass<T>& P, std::int64_t& gh, std::int64_t& gw) {
  gh = gw = 0;
  for (std::int64_t k = 0; k < P.K; ++k) {
    const auto g = geometry(P, k);
    gh = std::max(gh, expr::roi_grid_samples(g.grid_h));
    gw = std::max(gw, expr::roi_grid_samples(g.grid_w));
  }
}

/// Scratch pieces; carve() with a null Carver base only counts.
template <class A>
struct Scratch {
  std::int64_t* order = nullptr;   // [K] box rows grouped by image
  std::int64_t* starts = nullptr;  // [B + 1]
  std::int64_t* cursor = nullptr;  // [B + 1] the counting sort's running positions
  unsigned char* per_thread = nullptr;
  std::size_t thread_bytes = 0;

  static std::size_t table_bytes(std::int64_t PH, std::int64_t PW, std::int64_t gh, std::int64_t gw) {
    kdloss::detail::Carver c;
    carve_tables(c, PH, PW, gh, gw);
    return c.bytes();
  }
  struct Tables {
    std::int64_t *yi, *xi, *yb, *xb;  // merged (cell, weight) entries per bin; bin p is [yb[p], yb[p+1])
    A *yw, *xw, *acc;
    unsigned char* xdense;  // per column bin: its cells are consecutive
    AxisSample<A>*ys, *xs;  // max mode: every sample of every bin
  };
  static Tables carve_tables(kdloss::detail::Carver& c, std::int64_t PH, std::int64_t PW, std::int64_t gh,
                             std::int64_t gw) {
    Tables t;
    const auto n = [](std::int64_t v) { return static_cast<std::size_t>(v); };
    t.yi = c.take<std::int64_t>(n(2 * PH * gh + 1));
    t.xi = c.take<std::int64_t>(n(2 * PW * gw + 1));
    t.yb = c.take<std::int64_t>(n(PH + 1));
    t.xb = c.take<std::int64_t>(n(PW + 1));
    t.yw = c.take<A>(n(2 * PH * gh + 1));
    t.xw = c.take<A>(n(2 * PW * gw + 1));
    t.acc = c.take<A>(n(PW));
    t.xdense = c.take<unsigned char>(n(PW));
    t.ys = c.take<AxisSample<A>>(n(PH * gh + 1));
    t.xs = c.take<AxisSample<A>>(n(PW * gw + 1));
    return t;
  }
  void carve(kdloss::detail::Carver& c, std::int64_t K, std::int64_t B, std::int64_t PH, std::int64_t PW,
             std::int64_t gh, std::int64_t gw, int threads) {
    order = c.take<std::int64_t>(static_cast<std::size_t>(K));
    starts = c.take<std::int64_t>(static_cast<std::size_t>(B + 1));
    cursor = c.take<std::int64_t>(static_cast<std::size_t>(B + 1));
    thread_bytes = table_bytes(PH, PW, gh, gw);
    per_thread = c.take<unsigned char>(thread_bytes * static_cast<std::size_t>(threads));
  }
};

/// Bytes of host scratch for P with `threads` threads.
template <class T>
std::size_t workspace_bytes(const RoiAlignPass<T>& P, int threads) {
  std::int64_t gh, gw;
  max_grids(P, gh, gw);
  kdloss::detail::Carver c;
  Scratch<acc_t<T>> s;
  s.carve(c, P.K, P.B, P.PH, P.PW, gh, gw, threads);
  return c.bytes();
}

/// Merged (cell, weight) lists of the bins of one axis: bin p's samples i = 0 .. grid-1 add wlo to
/// cell lo and whi to cell hi. Cells of a bin come in nondecreasing order, so a repeated cell is the
/// last or the one before last entry.
template <class A, class Coord>
void build_axis(std::int64_t pooled, std::int64_t grid, std::int64_t size, Coord coord, std::int64_t* idx, A* w,
                std::int64_t* bin) {
  std::int64_t n = 0;
  const auto add = [&](std::int64_t first, std::int64_t cell, A weight) {
    if (n > first && idx[n - 1] == cell) {
      w[n - 1] += weight;
    } else if (n > first + 1 && idx[n - 2] == cell) {
      w[n - 2] += weight;
    } else {
      idx[n] = cell;
      w[n] = weight;
      ++n;
    }
  };
  for (std::int64_t p = 0; p < pooled; ++p) {
    const std::int64_t first = n;
    bin[p] = first;
    for (std::int64_t i = 0; i < grid; ++i) {
      const AxisSample<A> s = expr::roi_axis_sample<A>(coord(p, i), size);
      if (!s.valid) continue;
      add(first, s.lo, s.wlo);
      add(first, s.hi, s.whi);
    }
  }
  bin[pooled] = n;
}

template <class T>
struct PlaneRefs {
  const T* x;     // the input plane (b, c)
  T* y;           // y[k, c] or null
  const T* gy;    // gy[k, c] or null
  T* gx;          // the gradient plane (b, c) or null
};

/// Average mode, one box and one channel.
template <class T, class A>
void avg_plane(const RoiAlignPass<T>& P, const typename Scratch<A>::Tables& t, A count, const PlaneRefs<T>& r) {
  const std::int64_t xs2 = P.xs[2], xs3 = P.xs[3];
  if (r.y) {
    for (std::int64_t p = 0; p < P.PH; ++p) {
      for (std::int64_t q = 0; q < P.PW; ++q) t.acc[q] = A(0);
      for (std::int64_t e = t.yb[p]; e < t.yb[p + 1]; ++e) {
        const T* row = r.x + t.yi[e] * xs2;
        const A wy = t.yw[e];
        for (std::int64_t q = 0; q < P.PW; ++q) {
          const std::int64_t f0 = t.xb[q], n = t.xb[q + 1] - f0;
          A s = 0;
          if (xs3 == 1 && t.xdense[q]) {  // consecutive cells: a contiguous dot product
            // In index order, as the strided branch below: a SIMD reduction would sum in lanes, and the
            // bits would depend on the layout (they did at -O2 with `omp simd reduction`).
            const T* src = row + t.xi[f0];
            const A* w = t.xw + f0;
            for (std::int64_t f = 0; f < n; ++f) s += w[f] * static_cast<A>(src[f]);
          } else {
            for (std::int64_t f = f0; f < f0 + n; ++f) s += t.xw[f] * static_cast<A>(row[t.xi[f] * xs3]);
          }
          t.acc[q] += wy * s;
        }
      }
      for (std::int64_t q = 0; q < P.PW; ++q) r.y[p * P.ys[2] + q * P.ys[3]] = static_cast<T>(t.acc[q] / count);
    }
  }
  if (r.gx) {
    const std::int64_t gs2 = P.gxs[2], gs3 = P.gxs[3];
    for (std::int64_t p = 0; p < P.PH; ++p)
      for (std::int64_t e = t.yb[p]; e < t.yb[p + 1]; ++e) {
        T* row = r.gx + t.yi[e] * gs2;
        const A wy = t.yw[e];
        for (std::int64_t q = 0; q < P.PW; ++q) {
          const A g = static_cast<A>(r.gy[p * P.gys[2] + q * P.gys[3]]) * wy / count;
          const std::int64_t f0 = t.xb[q], n = t.xb[q + 1] - f0;
          if (gs3 == 1 && t.xdense[q]) {
            T* dst = row + t.xi[f0];
            const A* w = t.xw + f0;
#if KDLOSS_OPENMP
#pragma omp simd
#endif
            for (std::int64_t f = 0; f < n; ++f) dst[f] = static_cast<T>(static_cast<A>(dst[f]) + g * w[f]);
          } else {
            for (std::int64_t f = f0; f < f0 + n; ++f) {
              T& cell = row[t.xi[f] * gs3];
              cell = static_cast<T>(static_cast<A>(cell) + g * t.xw[f]);
            }
          }
        }
      }
  }
}

/// Max mode (mmcv), one box and one channel: per bin the first sample (row-major over the bin's grid)
/// whose value exceeds every earlier one and the floor -10000; an invalid sample is worth 0.
template <class T, class A>
void max_plane(const RoiAlignPass<T>& P, const typename Scratch<A>::Tables& t, std::int64_t gh, std::int64_t gw,
               const PlaneRefs<T>& r) {
  const std::int64_t xs2 = P.xs[2], xs3 = P.xs[3];
  for (std::int64_t p = 0; p < P.PH; ++p)
    for (std::int64_t q = 0; q < P.PW; ++q) {
      A m = static_cast<A>(expr::kRoiMaxFloor);
      const AxisSample<A>* best_y = nullptr;
      const AxisSample<A>* best_x = nullptr;
      for (std::int64_t i = 0; i < gh; ++i) {
        const AxisSample<A>& sy = t.ys[p * gh + i];
        for (std::int64_t j = 0; j < gw; ++j) {
          const AxisSample<A>& sx = t.xs[q * gw + j];
          A v = 0;
          if (sy.valid && sx.valid) {
            const T* lo = r.x + sy.lo * xs2;
            const T* hi = r.x + sy.hi * xs2;
            v = sy.wlo * sx.wlo * static_cast<A>(lo[sx.lo * xs3]) + sy.wlo * sx.whi * static_cast<A>(lo[sx.hi * xs3]) +
                sy.whi * sx.wlo * static_cast<A>(hi[sx.lo * xs3]) + sy.whi * sx.whi * static_cast<A>(hi[sx.hi * xs3]);
          }
          if (v > m) {
            m = v;
            best_y = &sy;
            best_x = &sx;
          }
        }
      }
      if (r.y) r.y[p * P.ys[2] + q * P.ys[3]] = static_cast<T>(m);
      if (r.gx && best_y && best_y->valid && best_x->valid) {
        const A g = static_cast<A>(r.gy[p * P.gys[2] + q * P.gys[3]]);
        const std::int64_t gs2 = P.gxs[2], gs3 = P.gxs[3];
        const auto add = [&](std::int64_t yy, std::int64_t xx, A w) {
          T& cell = r.gx[yy * gs2 + xx * gs3];
          cell = static_cast<T>(static_cast<A>(cell) + g * w);
        };
        const AxisSample<A>&sy = *best_y, &sx = *best_x;
        add(sy.lo, sx.lo, sy.wlo * sx.wlo);
        add(sy.lo, sx.hi, sy.wlo * sx.whi);
        add(sy.hi, sx.lo, sy.whi * sx.wlo);
        add(sy.hi, sx.hi, sy.whi * sx.whi);
      }
    }
}

/// Writes beta * grad_x (0 when beta is 0: the old contents are never read) into one plane.
template <class T>
void init_grad_plane(const RoiAlignPass<T>& P, T* g) {
  const T beta = static_cast<T>(P.beta);
  for (std::int64_t h = 0; h < P.H; ++h) {
    T* row = g + h * P.gxs[2];
    if (P.beta == 0.0) {
      if (P.gxs[3] == 1)
        std::fill(row, row + P.W, T(0));
      else
        for (std::int64_t w = 0; w < P.W; ++w) row[w * P.gxs[3]] = T(0);
    } else {
      for (std::int64_t w = 0; w < P.W; ++w) row[w * P.gxs[3]] *= beta;
    }
  }
}

/// Runs P; `scratch` holds workspace_bytes(P, max_threads()) bytes (256-byte aligned).
template <class T>
void run(const RoiAlignPass<T>& P, void* scratch) {
  using A = acc_t<T>;
  if (P.C == 0 || (P.K == 0 && !P.backward()) || P.B == 0) return;
  std::int64_t gh, gw;
  max_grids(P, gh, gw);
  const int threads = max_threads();
  kdloss::detail::Carver carver(scratch);
  Scratch<A> s;
  s.carve(carver, P.K, P.B, P.PH, P.PW, gh, gw, threads);
  // Boxes grouped by image, each image's boxes in row order.
  if (P.offsets) {
    for (std::int64_t b = 0; b <= P.B; ++b) s.starts[b] = P.offsets[b * P.offsets_stride];
    for (std::int64_t k = 0; k < P.K; ++k) s.order[k] = k;
  } else {
    std::fill(s.starts, s.starts + P.B + 1, std::int64_t{0});
    for (std::int64_t k = 0; k < P.K; ++k) ++s.starts[image_of(P, k) + 1];
    for (std::int64_t b = 0; b < P.B; ++b) s.starts[b + 1] += s.starts[b];
    std::copy(s.starts, s.starts + P.B, s.cursor);  // a stable counting sort
    for (std::int64_t k = 0; k < P.K; ++k) s.order[s.cursor[image_of(P, k)]++] = k;
  }
  const std::int64_t blocks = (P.C + kChannelBlock - 1) / kChannelBlock;
  const std::int64_t tasks = P.B * blocks;
  const std::int64_t work = (P.K + 1) * P.C * P.PH * P.PW * 4 + (P.backward() ? P.B * P.C * P.H * P.W : 0);
#if KDLOSS_OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (tasks > 1 && work > kParallelThreshold)
#endif
  for (std::int64_t task = 0; task < tasks; ++task) {
    const std::int64_t b = task / blocks, c0 = (task % blocks) * kChannelBlock;
    const std::int64_t c1 = std::min(P.C, c0 + kChannelBlock);
    kdloss::detail::Carver tc(s.per_thread + s.thread_bytes * static_cast<std::size_t>(thread_id()));
    const auto t = Scratch<A>::carve_tables(tc, P.PH, P.PW, gh, gw);
    if (P.backward())
      for (std::int64_t c = c0; c < c1; ++c) init_grad_plane(P, P.gx + b * P.gxs[0] + c * P.gxs[1]);
    for (std::int64_t n = s.starts[b]; n < s.starts[b + 1]; ++n) {
      const std::int64_t k = s.order[n];
      const RoiGeometry<A> g = geometry(P, k);
      const std::int64_t rh = expr::roi_grid_samples(g.grid_h), rw = expr::roi_grid_samples(g.grid_w);
      if (P.pool == expr::RoiPool::avg) {
        build_axis<A>(P.PH, rh, P.H, [&](std::int64_t p, std::int64_t i) { return g.y(p, i); }, t.yi, t.yw, t.yb);
        build_axis<A>(P.PW, rw, P.W, [&](std::int64_t p, std::int64_t i) { return g.x(p, i); }, t.xi, t.xw, t.xb);
        for (std::int64_t q = 0; q < P.PW; ++q) {
          // an empty bin (every sample outside the map) is not dense: it has no first cell to point at
          bool dense = t.xb[q + 1] > t.xb[q];
          for (std::int64_t f = t.xb[q] + 1; f < t.xb[q + 1]; ++f) dense = dense && t.xi[f] == t.xi[f - 1] + 1;
          t.xdense[q] = dense ? 1 : 0;
        }
      } else {
        for (std::int64_t p = 0; p < P.PH; ++p)
          for (std::int64_t i = 0; i < rh; ++i) t.ys[p * rh + i] = expr::roi_axis_sample<A>(g.y(p, i), P.H);
        for (std::int64_t q = 0; q < P.PW; ++q)
          for (std::int64_t j = 0; j < rw; ++j) t.xs[q * rw + j] = expr::roi_axis_sample<A>(g.x(q, j), P.W);
      }
      for (std::int64_t c = c0; c < c1; ++c) {
        PlaneRefs<T> r{P.x + b * P.xs[0] + c * P.xs[1], P.y ? P.y + k * P.ys[0] + c * P.ys[1] : nullptr,
                       P.gx ? P.gy + k * P.gys[0] + c * P.gys[1] : nullptr,
                       P.gx ? P.gx + b * P.gxs[0] + c * P.gxs[1] : nullptr};
        if (P.pool == expr::RoiPool::avg)
          avg_plane<T, A>(P, t, g.count, r);
        else
          max_plane<T, A>(P, t, rh, rw, r);
      }
    }
  }
}

} } }  // namespace kdloss::backend::cpu::roi_align

#if defined(__clang__)
#pragma clang diagnostic pop
#endif
