// kdloss/backend/cuda/roi_align.cuh: the GPU RoIAlign pass (expr/roi_align.hpp), forward and a
// deterministic backward without atomics.
//
// 1. prepare_kernel: one thread per box writes an expr::RoiBox (grid, image, the cells its samples may
//    touch) into the scratch. The image comes from the [K, 5] column (truncated toward zero) or from the
//    ragged offsets, which travel by value in the kernel's parameters (at most kMaxImages images). A box
//    whose image index is outside [0, B) or whose coordinates are not finite gets image -1: it reads and
//    writes nothing (its outputs are 0). The host validates both, so only device boxes meet this rule.
// 2. forward_kernel: one thread per output (k, c, p, q), torchvision's sampling loop (mmcv's in max
//    mode, which also keeps the winning sample's index per output in the scratch when backward follows).
// 3. gather_kernel (backward): one block per (image, 8 x 32 tile of cells, 8 channels); one thread per
//    cell, 8 channel accumulators in registers. The block walks the boxes in row order, skips those of
//    other images or whose touched cells miss the tile, and for the others builds in shared memory the
//    per-tile row weights Wy[p][row] and column weights Wx[q][col] (sum of the bilinear weights the
//    bin's samples give that row / column, and whether any sample touches it), then adds
//    gy[k, c, p, q] / count * Wy * Wx for every touched (p, q). Max mode instead re-derives the winning
//    sample of each (k, c, p, q) from its index and adds gy times its bilinear weight at this cell.
//    Every cell is written once, by one thread, in a fixed order: the same bits on every run. Extra
//    memory: the box records (and the max-mode indices, one int32 per output).
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kdloss/backend/cuda/launch.hpp"
#include "kdloss/backend/cuda/runtime.cuh"
#include "kdloss/config.hpp"
#include "kdloss/core/convert.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/expr/roi_align.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda::roi_align {

using expr::AxisSample;
using expr::RoiAlignPass;
using expr::RoiBox;
using expr::RoiGeometry;

inline constexpr int kThreads = 256;
inline constexpr int kTileH = expr::kRoiTileH, kTileW = expr::kRoiTileW;  // one thread per cell of a tile
inline constexpr int kChannels = 8;  // channels per block (accumulators per thread)
inline constexpr std::int64_t kMaxImages = expr::kRoiMaxDeviceImages;

/// The ragged offsets of up to kMaxImages images, by value.
struct Offsets {
  std::int64_t v[kMaxImages + 1];
  int count;  // images; 0: the boxes carry their image index
};

namespace detail {

/// The sample indices [i0, i1) of a bin whose coordinates can reach cell `cell` (within one cell,
/// widened by one sample on each side against rounding; the caller tests each exactly).
template <class A>
__device__ __forceinline__ void candidate_range(A first, A step, std::int64_t grid, std::int64_t cell,
                                                std::int64_t& i0, std::int64_t& i1) {
  i0 = 0, i1 = grid;
  if (!(step > A(0)) || !isfinite(static_cast<double>(step))) return;
  // cell - 2: a sample in [-1, 0) clamps to 0 and touches cell 1 with weight 0
  const double lo = (static_cast<double>(cell) - 2.0 - static_cast<double>(first)) / static_cast<double>(step);
  const double hi = (static_cast<double>(cell) + 1.0 - static_cast<double>(first)) / static_cast<double>(step);
  const double a = floor(lo) - 1.0, b = ceil(hi) + 2.0;
  i0 = a < 0 ? 0 : (a > double(grid) ? grid : static_cast<std::int64_t>(a));
  i1 = b < 0 ? 0 : (b > double(grid) ? grid : static_cast<std::int64_t>(b));
}

/// Weight of bin p's samples at map row/column `cell` along one axis; touched when any sample reads it.
template <class A, class Coord>
__device__ __forceinline__ A axis_weight(Coord coord, std::int64_t p, std::int64_t grid, std::int64_t size,
                                         std::int64_t cell, A first, A step, bool& touched) {
  A w = A(0);
  touched = false;
  std::int64_t i0, i1;
  candidate_range<A>(first, step, grid, cell, i0, i1);
  for (std::int64_t i = i0; i < i1; ++i) {
    const AxisSample<A> s = expr::roi_axis_sample<A>(coord(p, i), size);
    if (!s.valid) continue;
    if (s.lo == cell) w += s.wlo, touched = true;
    if (s.hi == cell) w += s.whi, touched = true;
  }
  return w;
}

template <class T>
__global__ void __launch_bounds__(kThreads) prepare_kernel(RoiAlignPass<T> P, Offsets off, RoiBox<acc_t<T>>* out) {
  using A = acc_t<T>;
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= P.K) return;
  RoiBox<A> r;
  const T* b = P.boxes + k * P.bs[0];
  const int base = P.box_base();
  A c[4];
  bool finite = true;
  for (int j = 0; j < 4; ++j) {
    c[j] = load_as<A>(b + (base + j) * P.bs[1]);
    finite = finite && isfinite(static_cast<double>(c[j]));
  }
  std::int64_t image = -1;
  if (off.count > 0) {
    for (int i = 0; i < off.count; ++i)
      if (k >= off.v[i] && k < off.v[i + 1]) image = i;
  } else {
    const double v = static_cast<double>(load_as<A>(b));
    if (isfinite(v) && v > -1.0 && v < static_cast<double>(P.B)) image = static_cast<std::int64_t>(v);
  }
  if (finite) {
    r.g = expr::roi_geometry<A>(c[0], c[1], c[2], c[3], static_cast<A>(P.spatial_scale), P.aligned, P.PH, P.PW,
                                P.sampling_ratio);
    r.image = image;
    const std::int64_t gh = expr::roi_grid_samples(r.g.grid_h), gw = expr::roi_grid_samples(r.g.grid_w);
    if (gh > 0 && gw > 0 && P.H > 0 && P.W > 0) {
      // samples increase with (p, i): the first and last bound the touched cells (one cell of margin)
      const double y0 = static_cast<double>(r.g.y(0, 0)), y1 = static_cast<double>(r.g.y(P.PH - 1, gh - 1));
      const double x0 = static_cast<double>(r.g.x(0, 0)), x1 = static_cast<double>(r.g.x(P.PW - 1, gw - 1));
      const auto lo = [](double v, std::int64_t n) {
        const double f = floor(v) - 1.0;
        return f < 0 ? std::int64_t{0} : (f > double(n - 1) ? n : static_cast<std::int64_t>(f));
      };
      const auto hi = [](double v, std::int64_t n) {
        const double f = floor(v) + 2.0;
        return f < 0 ? std::int64_t{-1} : (f > double(n - 1) ? n - 1 : static_cast<std::int64_t>(f));
      };
      r.y0 = lo(y0 < y1 ? y0 : y1, P.H), r.y1 = hi(y0 < y1 ? y1 : y0, P.H);
      r.x0 = lo(x0 < x1 ? x0 : x1, P.W), r.x1 = hi(x0 < x1 ? x1 : x0, P.W);
    }
  }
  out[k] = r;
}

template <class T>
__global__ void __launch_bounds__(kThreads) forward_kernel(RoiAlignPass<T> P, const RoiBox<acc_t<T>>* boxes,
                                                           std::int32_t* argmax) {
  using A = acc_t<T>;
  const std::int64_t n = P.K * P.C * P.PH * P.PW;
  const bool max_mode = P.pool == expr::RoiPool::max;
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < n;
       t += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t q = t % P.PW, p = (t / P.PW) % P.PH, c = (t / (P.PW * P.PH)) % P.C, k = t / (P.PW * P.PH * P.C);
    const RoiBox<A> r = boxes[k];
    A out = A(0);
    std::int32_t best = -1;
    if (r.image >= 0) {
      const T* plane = P.x + r.image * P.xs[0] + c * P.xs[1];
      const std::int64_t gh = expr::roi_grid_samples(r.g.grid_h), gw = expr::roi_grid_samples(r.g.grid_w);
      A sum = A(0), m = static_cast<A>(expr::kRoiMaxFloor);
      for (std::int64_t iy = 0; iy < gh; ++iy) {
        const AxisSample<A> sy = expr::roi_axis_sample<A>(r.g.y(p, iy), P.H);
        for (std::int64_t ix = 0; ix < gw; ++ix) {
          const AxisSample<A> sx = expr::roi_axis_sample<A>(r.g.x(q, ix), P.W);
          A v = A(0);
          if (sy.valid && sx.valid) {
            const T* lo = plane + sy.lo * P.xs[2];
            const T* hi = plane + sy.hi * P.xs[2];
            v = sy.wlo * sx.wlo * load_as<A>(lo + sx.lo * P.xs[3]) + sy.wlo * sx.whi * load_as<A>(lo + sx.hi * P.xs[3]) +
                sy.whi * sx.wlo * load_as<A>(hi + sx.lo * P.xs[3]) + sy.whi * sx.whi * load_as<A>(hi + sx.hi * P.xs[3]);
          }
          if (max_mode) {
            if (v > m) m = v, best = (sy.valid && sx.valid) ? static_cast<std::int32_t>(iy * gw + ix) : -1;
          } else {
            sum += v;
          }
        }
      }
      out = max_mode ? m : sum / r.g.count;
    }
    if (P.y) store_as(P.y + k * P.ys[0] + c * P.ys[1] + p * P.ys[2] + q * P.ys[3], out);
    if (argmax) argmax[t] = best;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) gather_kernel(RoiAlignPass<T> P, const RoiBox<acc_t<T>>* boxes,
                                                          const std::int32_t* argmax, std::int64_t tiles_w) {
  using A = acc_t<T>;
  extern __shared__ unsigned char smem_raw[];
  A* wy = reinterpret_cast<A*>(smem_raw);                       // [PH][kTileH]
  A* wx = wy + P.PH * kTileH;                                   // [PW][kTileW]
  unsigned char* ty_on = reinterpret_cast<unsigned char*>(wx + P.PW * kTileW);  // [PH][kTileH]
  unsigned char* tx_on = ty_on + P.PH * kTileH;                 // [PW][kTileW]
  const std::int64_t b = blockIdx.z, c0 = static_cast<std::int64_t>(blockIdx.y) * kChannels;
  const std::int64_t tile_y = static_cast<std::int64_t>(blockIdx.x) / tiles_w * kTileH;
  const std::int64_t tile_x = static_cast<std::int64_t>(blockIdx.x) % tiles_w * kTileW;
  const int ty = threadIdx.x / kTileW, tx = threadIdx.x % kTileW;
  const std::int64_t row = tile_y + ty, col = tile_x + tx;
  const bool max_mode = P.pool == expr::RoiPool::max;
  A acc[kChannels];
  for (int j = 0; j < kChannels; ++j) acc[j] = A(0);
  const std::int64_t table = P.PH * kTileH + P.PW * kTileW;
  for (std::int64_t k = 0; k < P.K; ++k) {
    const RoiBox<A> r = boxes[k];  // the same for every thread: the branch below is uniform
    if (r.image != b || r.y1 < tile_y || r.y0 >= tile_y + kTileH || r.x1 < tile_x || r.x0 >= tile_x + kTileW) continue;
    const std::int64_t gh = expr::roi_grid_samples(r.g.grid_h), gw = expr::roi_grid_samples(r.g.grid_w);
    if (!max_mode) {
      __syncthreads();  // the previous box's tables are no longer read
      const A ystep = r.g.bin_h / static_cast<A>(gh > 0 ? gh : 1), xstep = r.g.bin_w / static_cast<A>(gw > 0 ? gw : 1);
      for (std::int64_t e = threadIdx.x; e < table; e += blockDim.x) {
        bool on;
        if (e < P.PH * kTileH) {
          const std::int64_t p = e / kTileH, cell = tile_y + e % kTileH;
          const A first = r.g.start_h + static_cast<A>(p) * r.g.bin_h;
          wy[e] = cell < P.H ? axis_weight<A>([&](std::int64_t pp, std::int64_t i) { return r.g.y(pp, i); }, p, gh, P.H,
                                              cell, first, ystep, on)
                             : A(0);
          ty_on[e] = cell < P.H && on;
        } else {
          const std::int64_t f = e - P.PH * kTileH, q = f / kTileW, cell = tile_x + f % kTileW;
          const A first = r.g.start_w + static_cast<A>(q) * r.g.bin_w;
          wx[f] = cell < P.W ? axis_weight<A>([&](std::int64_t qq, std::int64_t i) { return r.g.x(qq, i); }, q, gw, P.W,
                                              cell, first, xstep, on)
                             : A(0);
          tx_on[f] = cell < P.W && on;
        }
      }
      __syncthreads();
      if (row >= P.H || col >= P.W) continue;
      for (std::int64_t p = 0; p < P.PH; ++p) {
        if (!ty_on[p * kTileH + ty]) continue;
        const A wrow = wy[p * kTileH + ty];
        for (std::int64_t q = 0; q < P.PW; ++q) {
          if (!tx_on[q * kTileW + tx]) continue;
          const A w = wrow * wx[q * kTileW + tx] / r.g.count;
          const T* g = P.gy + k * P.gys[0] + p * P.gys[2] + q * P.gys[3];
          for (int j = 0; j < kChannels; ++j)
            if (c0 + j < P.C) acc[j] += load_as<A>(g + (c0 + j) * P.gys[1]) * w;
        }
      }
    } else {
      if (row >= P.H || col >= P.W || row < r.y0 || row > r.y1 || col < r.x0 || col > r.x1) continue;
      for (int j = 0; j < kChannels; ++j) {
        const std::int64_t c = c0 + j;
        if (c >= P.C) break;
        for (std::int64_t p = 0; p < P.PH; ++p)
          for (std::int64_t q = 0; q < P.PW; ++q) {
            const std::int32_t s = argmax[((k * P.C + c) * P.PH + p) * P.PW + q];
            if (s < 0) continue;
            const AxisSample<A> sy = expr::roi_axis_sample<A>(r.g.y(p, s / gw), P.H);
            if (sy.lo != row && sy.hi != row) continue;
            const AxisSample<A> sx = expr::roi_axis_sample<A>(r.g.x(q, s % gw), P.W);
            if (sx.lo != col && sx.hi != col) continue;
            const A a = (sy.lo == row ? sy.wlo : A(0)) + (sy.hi == row ? sy.whi : A(0));
            const A d = (sx.lo == col ? sx.wlo : A(0)) + (sx.hi == col ? sx.whi : A(0));
            acc[j] += load_as<A>(P.gy + k * P.gys[0] + c * P.gys[1] + p * P.gys[2] + q * P.gys[3]) * (a * d);
          }
      }
    }
  }
  if (row >= P.H || col >= P.W) return;
  for (int j = 0; j < kChannels; ++j) {
    if (c0 + j >= P.C) break;
    T* e = P.gx + b * P.gxs[0] + (c0 + j) * P.gxs[1] + row * P.gxs[2] + col * P.gxs[3];
    const A v = P.beta != 0.0 ? static_cast<A>(P.beta) * load_as<A>(e) + acc[j] : acc[j];
    store_as(e, v);
  }
}

}  // namespace detail

/// Runs P with `scratch` (expr::roi_align_device_scratch_bytes, 256-byte aligned) on `stream`.
template <class T>
void run(const RoiAlignPass<T>& P, void* scratch, cudaStream_t stream) {
  using A = acc_t<T>;
  if (P.B == 0 || P.C == 0) return;
  auto* boxes = static_cast<RoiBox<A>*>(scratch);
  const std::size_t box_bytes = (static_cast<std::size_t>(P.K) * sizeof(RoiBox<A>) + 255) / 256 * 256;
  std::int32_t* argmax = P.pool == expr::RoiPool::max
                             ? reinterpret_cast<std::int32_t*>(static_cast<unsigned char*>(scratch) + box_bytes)
                             : nullptr;
  if (P.K > 0) {
    Offsets off{};
    off.count = P.offsets ? static_cast<int>(P.B) : 0;
    for (int i = 0; P.offsets && i <= off.count; ++i) off.v[i] = P.offsets[i * P.offsets_stride];
    detail::prepare_kernel<<<grid_for(P.K, kThreads), kThreads, 0, stream>>>(P, off, boxes);
    check_launch("kdloss roi_align prepare_kernel");
    if (P.forward() || (P.backward() && argmax)) {
      RoiAlignPass<T> F = P;  // a max-mode backward alone runs the forward for its argmax only
      if (!P.forward()) F.y = nullptr;
      detail::forward_kernel<<<grid_for(P.K * P.C * P.PH * P.PW, kThreads), kThreads, 0, stream>>>(
          F, boxes, P.backward() ? argmax : nullptr);
      check_launch("kdloss roi_align forward_kernel");
    }
  }
  if (P.backward() && P.H > 0 && P.W > 0) {
    const std::int64_t tiles_w = (P.W + kTileW - 1) / kTileW, tiles_h = (P.H + kTileH - 1) / kTileH;
    const dim3 grid(static_cast<unsigned>(tiles_w * tiles_h), static_cast<unsigned>((P.C + kChannels - 1) / kChannels),
                    static_cast<unsigned>(P.B));
    const std::size_t shared = expr::roi_align_device_shared_bytes<A>(P.PH, P.PW);
    if (shared > 48 * 1024)
      check(cudaFuncSetAttribute(detail::gather_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(shared)),
            "kdloss roi_align: shared memory of gather_kernel");
    detail::gather_kernel<T><<<grid, kThreads, shared, stream>>>(P, boxes, argmax, tiles_w);
    check_launch("kdloss roi_align gather_kernel");
  }
}

} } }  // namespace kdloss::backend::cuda::roi_align
