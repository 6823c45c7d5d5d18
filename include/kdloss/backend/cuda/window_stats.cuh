// kdloss/backend/cuda/window_stats.cuh: the GPU windowed-statistics pass (expr/window_stats.hpp).
//
// Forward: one block per 32 x TH output tile of one plane. The block loads the tile's input
// region of x and y (padding resolved at load, nu applied) into shared memory, filters the five
// statistics along columns then rows in shared memory, evaluates the per-pixel head functor, writes the
// map (reduction none) and one partial sum per block; a second kernel sums each plane's partials
// in a fixed order (deterministic).
//
// Backward: one block per 32 x TH tile of the *input* grid. It recomputes the statistics of every
// output that reads the tile (a halo of taps - 1 outputs, 2 (taps - 1) inputs), evaluates the
// head's partial derivatives there, and applies the adjoint filter as a banded gather whose band
// weights fold the reflected halo back (expr::AxisPlan::adjoint_weight), so nothing
// per-pixel is stored between forward and backward: the backward reads x, y (and the upstream map
// for reduction none) and writes the gradient. Outputs the tile owns also add their value to the
// block's partial sum, so forward_backward is this one kernel.
#pragma once
#include <cub/block/block_reduce.cuh>
#include <cuda_runtime.h>

#include <cstdint>

#include "kdloss/backend/cuda/runtime.cuh"
#include "kdloss/backend/cuda/window_stats_geometry.hpp"
#include "kdloss/config.hpp"
#include "kdloss/expr/window_stats.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda::window_stats {

using expr::StatGrad;
using expr::WindowStatsPass;

inline constexpr int kThreads = 256;

namespace detail {

template <class A>
struct Tile {
  static constexpr int w = kTileW;
  static constexpr int h = tile_h(sizeof(A));
};

inline int plane_grid(std::int64_t planes) { return static_cast<int>(planes < 65535 ? planes : 65535); }

/// Loads the normalised value of plane element (r, c), or 0 for a padded zero (r or c < 0).
template <class A, class In>
__device__ __forceinline__ A load_norm(const In* base, const std::int64_t* s, std::int64_t r, std::int64_t c, A scale,
                                       A shift) {
  if (r < 0 || c < 0) return A(0);
  return scale * load_as<A>(base + r * s[2] + c * s[3]) + shift;
}

template <class A>
__device__ __forceinline__ void plane_affine(const expr::MinMaxNorm* norm, std::int64_t p, A* sc) {
  if (norm) {
    sc[0] = A(norm[p].scale[0]), sc[1] = A(norm[p].shift[0]);
    sc[2] = A(norm[p].scale[1]), sc[3] = A(norm[p].shift[1]);
  } else {
    sc[0] = A(1), sc[1] = A(0), sc[2] = A(1), sc[3] = A(0);
  }
}

/// Loads rows x cols of the padded plane, starting at padded position (r0, c0), into sx, sy.
template <class A, class In, class G, class Hd>
__device__ void load_region(const WindowStatsPass<In, G, Hd>& P, std::int64_t b, std::int64_t c, const A* sc, std::int64_t r0,
                            std::int64_t c0, int rows, int cols, A* sx, A* sy) {
  const In* xb = P.x + b * P.xs[0] + c * P.xs[1];
  const In* yb = P.y + b * P.ys[0] + c * P.ys[1];
  for (int idx = threadIdx.x; idx < rows * cols; idx += blockDim.x) {
    const int i = idx / cols, j = idx % cols;
    const std::int64_t r = P.rows.source(r0 + i), q = P.cols.source(c0 + j);
    const bool in = r >= 0 && q >= 0;
    sx[idx] = in ? load_norm<A>(xb, P.xs, r, q, sc[0], sc[1]) : A(0);
    sy[idx] = in ? load_norm<A>(yb, P.ys, r, q, sc[2], sc[3]) : A(0);
  }
}

/// Column pass: h[s][i][j] = sum_k wc[k] f_s(x, y)[i][j + k] for i < rows, j < out_cols.
template <class A>
__device__ void column_pass(const A* sx, const A* sy, int rows, int cols, int out_cols, const A* wc, int fc, A* h) {
  const int plane = rows * out_cols;
  for (int idx = threadIdx.x; idx < plane; idx += blockDim.x) {
    const int i = idx / out_cols, j = idx % out_cols;
    A m1 = 0, m2 = 0, a = 0, bq = 0, cq = 0;
    const A* xr = sx + i * cols + j;
    const A* yr = sy + i * cols + j;
    for (int k = 0; k < fc; ++k) {
      const A w = wc[k], xv = xr[k], yv = yr[k];
      const A wx = w * xv, wy = w * yv;
      m1 += wx;
      m2 += wy;
      a += wx * xv;
      bq += wy * yv;
      cq += wx * yv;
    }
    h[idx] = m1;
    h[plane + idx] = m2;
    h[2 * plane + idx] = a;
    h[3 * plane + idx] = bq;
    h[4 * plane + idx] = cq;
  }
}

template <class A>
__device__ __forceinline__ void row_stats(const A* h, int plane, int out_cols, int i, int j, const A* wr, int fr,
                                          A* st) {
  A m1 = 0, m2 = 0, a = 0, bq = 0, cq = 0;
  for (int k = 0; k < fr; ++k) {
    const int at = (i + k) * out_cols + j;
    const A w = wr[k];
    m1 += w * h[at];
    m2 += w * h[plane + at];
    a += w * h[2 * plane + at];
    bq += w * h[3 * plane + at];
    cq += w * h[4 * plane + at];
  }
  st[0] = m1, st[1] = m2, st[2] = a, st[3] = bq, st[4] = cq;
}

template <class A>
__device__ __forceinline__ double block_sum(double v) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  const double total = Reduce(temp).Sum(v);
  __syncthreads();  // temp is reused by the next plane
  return total;
}

template <class A>
std::size_t forward_smem(int fr, int fc) {
  const int rh = Tile<A>::h + fr - 1, rw = Tile<A>::w + fc - 1;
  return sizeof(A) * static_cast<std::size_t>(2 * rh * rw + 5 * rh * Tile<A>::w);
}
template <class A>
std::size_t backward_smem(int fr, int fc) {
  const int th = Tile<A>::h, tw = Tile<A>::w;
  const int rh = th + 2 * fr - 2, rw = tw + 2 * fc - 2, obh = th + fr - 1, obw = tw + fc - 1;
  return sizeof(A) * static_cast<std::size_t>(2 * rh * rw + 5 * rh * obw + 5 * obh * obw + th * fr + tw * fc);
}

template <class In, class G, class Hd>
__global__ void __launch_bounds__(kThreads) forward_kernel(WindowStatsPass<In, G, Hd> P, int tiles_x, std::int64_t tiles,
                                                           double* partials) {
  using A = acc_t<G>;
  constexpr int TW = Tile<A>::w, TH = Tile<A>::h;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ A wr[expr::kMaxWindow], wc[expr::kMaxWindow];
  A* sm = reinterpret_cast<A*>(smem);
  const int fr = P.rows.taps, fc = P.cols.taps;
  const int RH = TH + fr - 1, RW = TW + fc - 1;
  A* sx = sm;
  A* sy = sx + RH * RW;
  A* h = sy + RH * RW;
  if (threadIdx.x < expr::kMaxWindow) {
    wr[threadIdx.x] = A(P.rows.w[threadIdx.x]);
    wc[threadIdx.x] = A(P.cols.w[threadIdx.x]);
  }
  const int tile = blockIdx.x;
  const std::int64_t o0r = static_cast<std::int64_t>(tile / tiles_x) * TH, o0c = static_cast<std::int64_t>(tile % tiles_x) * TW;
  const std::int64_t Ho = P.rows.n_out, Wo = P.cols.n_out;
  for (std::int64_t p = blockIdx.y; p < P.planes(); p += gridDim.y) {
    const std::int64_t b = p / P.channels, c = p % P.channels;
    A sc[4];
    plane_affine(P.norm, p, sc);
    __syncthreads();  // weights loaded; shared tiles free from the previous plane
    load_region(P, b, c, sc, o0r - P.rows.off, o0c - P.cols.off, RH, RW, sx, sy);
    __syncthreads();
    column_pass(sx, sy, RH, RW, TW, wc, fc, h);
    __syncthreads();
    double local = 0;
    for (int idx = threadIdx.x; idx < TH * TW; idx += blockDim.x) {
      const int i = idx / TW, j = idx % TW;
      const std::int64_t o = o0r + i, q = o0c + j;
      if (o >= Ho || q >= Wo) continue;
      A st[5];
      row_stats(h, RH * TW, TW, i, j, wr, fr, st);
      StatGrad<A> unused;
      const A v = P.head.template eval<false, A>(st[0], st[1], st[2], st[3], st[4], A(1), unused);
      local += static_cast<double>(v);
      if (P.map) store_as(P.map + b * P.map_s[0] + c * P.map_s[1] + o * P.map_s[2] + q * P.map_s[3], v);
    }
    if (P.plane_sums) {
      const double total = block_sum<A>(local);
      if (threadIdx.x == 0) partials[p * tiles + tile] = total;
    }
  }
}

template <class In, class G, class Hd>
__global__ void __launch_bounds__(kThreads) backward_kernel(WindowStatsPass<In, G, Hd> P, int tiles_x, std::int64_t tiles,
                                                            double* partials) {
  using A = acc_t<G>;
  constexpr int TW = Tile<A>::w, TH = Tile<A>::h;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ A wr[expr::kMaxWindow], wc[expr::kMaxWindow];
  const int fr = P.rows.taps, fc = P.cols.taps;
  const int RH = TH + 2 * fr - 2, RW = TW + 2 * fc - 2, OBH = TH + fr - 1, OBW = TW + fc - 1;
  A* sx = reinterpret_cast<A*>(smem);
  A* sy = sx + RH * RW;
  A* h = sy + RH * RW;   // 5 x RH x OBW; later the vertical adjoint 5 x TH x OBW
  A* pt = h + 5 * RH * OBW;  // 5 x OBH x OBW partials: mu_x, mu_y, P_xx, P_yy, P_xy
  A* wv = pt + 5 * OBH * OBW;  // TH x fr band weights of the rows
  A* wh = wv + TH * fr;        // TW x fc band weights of the columns
  if (threadIdx.x < expr::kMaxWindow) {
    wr[threadIdx.x] = A(P.rows.w[threadIdx.x]);
    wc[threadIdx.x] = A(P.cols.w[threadIdx.x]);
  }
  const int tile = blockIdx.x;
  const std::int64_t r0 = static_cast<std::int64_t>(tile / tiles_x) * TH, c0 = static_cast<std::int64_t>(tile % tiles_x) * TW;
  const std::int64_t H = P.rows.n_in, W = P.cols.n_in, Ho = P.rows.n_out, Wo = P.cols.n_out;
  // First output of the band that reads the tile, and the first padded input position it reads.
  const std::int64_t ob0r = r0 + P.rows.off - fr + 1, ob0c = c0 + P.cols.off - fc + 1;
  const std::int64_t pr0 = ob0r - P.rows.off, pc0 = ob0c - P.cols.off;
  for (int idx = threadIdx.x; idx < TH * fr; idx += blockDim.x) {
    const int i = idx / fr, d = idx % fr;
    const std::int64_t r = r0 + i;
    wv[idx] = r < H ? A(P.rows.adjoint_weight(ob0r + i + d, r)) : A(0);
  }
  for (int idx = threadIdx.x; idx < TW * fc; idx += blockDim.x) {
    const int j = idx / fc, d = idx % fc;
    const std::int64_t q = c0 + j;
    wh[idx] = q < W ? A(P.cols.adjoint_weight(ob0c + j + d, q)) : A(0);
  }
  const A l1_scale = A(P.l1_coef) * (P.l1_up ? load_as<A>(P.l1_up) : A(1));
  const A up_scalar = A(P.up_factor) * (P.up_scalar ? load_as<A>(P.up_scalar) : A(1));
  const bool want_y = P.gy != nullptr;
  for (std::int64_t p = blockIdx.y; p < P.planes(); p += gridDim.y) {
    const std::int64_t b = p / P.channels, c = p % P.channels;
    A sc[4];
    plane_affine(P.norm, p, sc);
    const A up_plane = up_scalar * (P.up_plane ? A(P.up_plane[p]) : A(1));
    __syncthreads();
    load_region(P, b, c, sc, pr0, pc0, RH, RW, sx, sy);
    __syncthreads();
    column_pass(sx, sy, RH, RW, OBW, wc, fc, h);
    __syncthreads();
    // Statistics and partials of every band output; values of the outputs this tile owns.
    double local = 0;
    const int band = OBH * OBW;
    for (int idx = threadIdx.x; idx < band; idx += blockDim.x) {
      const int i = idx / OBW, j = idx % OBW;
      const std::int64_t o = ob0r + i, q = ob0c + j;
      StatGrad<A> g{A(0), A(0), A(0), A(0), A(0)};
      if (o >= 0 && o < Ho && q >= 0 && q < Wo) {
        A st[5];
        row_stats(h, RH * OBW, OBW, i, j, wr, fr, st);
        A up = up_plane;
        if (P.up_map) up *= load_as<A>(P.up_map + b * P.up_s[0] + c * P.up_s[1] + o * P.up_s[2] + q * P.up_s[3]);
        const A v = P.head.template eval<true, A>(st[0], st[1], st[2], st[3], st[4], up, g);
        if (o >= r0 && o < r0 + TH && q >= c0 && q < c0 + TW) {
          local += static_cast<double>(v);
          if (P.map) store_as(P.map + b * P.map_s[0] + c * P.map_s[1] + o * P.map_s[2] + q * P.map_s[3], v);
        }
      }
      pt[idx] = g.mx;
      pt[band + idx] = g.my;
      pt[2 * band + idx] = g.pxx;
      pt[3 * band + idx] = g.pyy;
      pt[4 * band + idx] = g.pxy;
    }
    __syncthreads();
    // Vertical adjoint (banded gather) into h: 5 x TH x OBW.
    const int vplane = TH * OBW;
    for (int idx = threadIdx.x; idx < vplane; idx += blockDim.x) {
      const int i = idx / OBW, j = idx % OBW;
      A acc[5] = {A(0), A(0), A(0), A(0), A(0)};
      for (int d = 0; d < fr; ++d) {
        const A w = wv[i * fr + d];
        const int at = (i + d) * OBW + j;
        for (int s = 0; s < 5; ++s) acc[s] += w * pt[s * band + at];
      }
      for (int s = 0; s < 5; ++s) h[s * vplane + idx] = acc[s];
    }
    __syncthreads();
    // Horizontal adjoint and the gradient of every input pixel of the tile.
    for (int idx = threadIdx.x; idx < TH * TW; idx += blockDim.x) {
      const int i = idx / TW, j = idx % TW;
      const std::int64_t r = r0 + i, q = c0 + j;
      if (r >= H || q >= W) continue;
      A a[5] = {A(0), A(0), A(0), A(0), A(0)};
      for (int d = 0; d < fc; ++d) {
        const A w = wh[j * fc + d];
        const int at = i * OBW + j + d;
        for (int s = 0; s < 5; ++s) a[s] += w * h[s * vplane + at];
      }
      const int at = (i + fr - 1) * RW + (j + fc - 1);
      const A xv = sx[at], yv = sy[at];
      if (P.gx) {
        A v = a[expr::kMuX] + A(2) * xv * a[expr::kPxx] + yv * a[expr::kPxy];
        if (P.coarse_x)
          v += A(0.25) * P.coarse_x[(p * P.coarse_h + (r + P.pool_ph) / 2) * P.coarse_w + (q + P.pool_pw) / 2];
        if (P.l1_coef != 0) v += l1_scale * math::sign(xv - yv);
        store_as(P.gx + b * P.gx_s[0] + c * P.gx_s[1] + r * P.gx_s[2] + q * P.gx_s[3], v);
      }
      if (want_y) {
        A v = a[expr::kMuY] + A(2) * yv * a[expr::kPyy] + xv * a[expr::kPxy];
        if (P.coarse_y)
          v += A(0.25) * P.coarse_y[(p * P.coarse_h + (r + P.pool_ph) / 2) * P.coarse_w + (q + P.pool_pw) / 2];
        if (P.l1_coef != 0) v += l1_scale * math::sign(yv - xv);
        store_as(P.gy + b * P.gy_s[0] + c * P.gy_s[1] + r * P.gy_s[2] + q * P.gy_s[3], v);
      }
    }
    if (P.plane_sums) {
      const double total = block_sum<A>(local);
      if (threadIdx.x == 0) partials[p * tiles + tile] = total;
    }
  }
}

/// sums[p] = scale * sum of the plane's tile partials, in tile order. (A template, as every kernel
/// defined in a header must be: a plain __global__ function would be defined in every .cu file.)
template <int Threads>
__global__ void __launch_bounds__(Threads) plane_sum_kernel(const double* partials, std::int64_t tiles,
                                                             std::int64_t planes, double scale, double* sums) {
  const std::int64_t p = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= planes) return;
  double t = 0;
  for (std::int64_t i = 0; i < tiles; ++i) t += partials[p * tiles + i];
  sums[p] = t * scale;
}

template <class K>
void allow_smem(K kernel, std::size_t bytes) {
  if (bytes > 48 * 1024)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
          "cudaFuncSetAttribute");
}

template <class In, class G, class Hd>
void launch(const WindowStatsPass<In, G, Hd>& P, double* partials, cudaStream_t stream) {
  using A = acc_t<G>;
  const bool backward = P.gx != nullptr || P.gy != nullptr;
  const expr::AxisPlan& grid_rows = P.rows;
  const std::int64_t ext_r = backward ? grid_rows.n_in : grid_rows.n_out;
  const std::int64_t ext_c = backward ? P.cols.n_in : P.cols.n_out;
  const int tiles_x = static_cast<int>((ext_c + Tile<A>::w - 1) / Tile<A>::w);
  const int tiles_y = static_cast<int>((ext_r + Tile<A>::h - 1) / Tile<A>::h);
  const std::int64_t tiles = static_cast<std::int64_t>(tiles_x) * tiles_y;
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(plane_grid(P.planes())));
  if (backward) {
    const std::size_t smem = backward_smem<A>(P.rows.taps, P.cols.taps);
    allow_smem(backward_kernel<In, G, Hd>, smem);
    backward_kernel<In, G, Hd><<<grid, kThreads, smem, stream>>>(P, tiles_x, tiles, partials);
    check_launch("kdloss window_stats backward_kernel");
  } else {
    const std::size_t smem = forward_smem<A>(P.rows.taps, P.cols.taps);
    allow_smem(forward_kernel<In, G, Hd>, smem);
    forward_kernel<In, G, Hd><<<grid, kThreads, smem, stream>>>(P, tiles_x, tiles, partials);
    check_launch("kdloss window_stats forward_kernel");
  }
  if (P.plane_sums) {
    plane_sum_kernel<kThreads><<<grid_for(P.planes()), kThreads, 0, stream>>>(partials, tiles, P.planes(), P.sum_scale,
                                                                    P.plane_sums);
    check_launch("kdloss window_stats plane_sum_kernel");
  }
}

}  // namespace detail

/// Runs one pass; `partials` holds partial_count(...) doubles when the pass writes plane sums.
template <class In, class G, class Hd>
void run(const WindowStatsPass<In, G, Hd>& P, double* partials, cudaStream_t stream) {
  detail::launch(P, partials, stream);
}

} } }  // namespace kdloss::backend::cuda::window_stats
