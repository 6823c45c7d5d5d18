// kdloss/backend/cuda/attention_tensor.cuh: the tensor-core forward of attention.cuh for half and
// bfloat16 inputs (nvcuda::wmma 16x16x16 fragments, float accumulation). Two passes per query tile,
// so the output accumulators never need a per-row rescale (whose row layout WMMA leaves unspecified):
//
//   stats:  S = q k^T on tensor cores, tile by tile through shared memory; a running max and sum per
//           row give lse = max + log(sum)                                    (grid: query tiles, batches)
//   output: the same S again, P = exp(scale S - lse) rounded to T in shared memory, o += P v on tensor
//           cores, 128 output columns per block                      (grid: query tiles, dv chunks, batches)
//
// Both passes run the same score code, so P <= 1 up to rounding and every dv chunk sees the same P.
// Any d, dv, n_q, n_k: operands are staged with bounds checks and zero fill. Included by attention.cuh.
#pragma once
#include <mma.h>

#include <cstdint>

#include "kdloss/core/convert.hpp"
#include "kdloss/expr/attention.hpp"

namespace kdloss::backend::cuda::attention_detail {

/// 4 warps; warp w owns query rows 16 w .. 16 w + 15 of a 64-row tile.
struct TensorTiles {
  static constexpr int kWarps = 4, kThreads = 32 * kWarps;
  static constexpr int BQ = 64, BK = 64;      // query rows, keys per tile
  static constexpr int FC = 32;               // features per staged chunk of S
  static constexpr int KC = 32;               // keys per staged chunk of v
  static constexpr int NF = 8, OC = 16 * NF;  // output fragments (columns) per block
  // Leading dimensions (elements): multiples of 8 (half) / 4 (float) with every fragment pointer
  // 32-byte aligned, as wmma::load/store_matrix_sync require.
  static constexpr int LDH = FC + 8, LDS = BK + 4, LDP = BK + 8, LDV = OC + 8;
};

template <class T>
struct TensorScoreShared {
  alignas(32) T q[TensorTiles::BQ][TensorTiles::LDH];
  alignas(32) T k[TensorTiles::BK][TensorTiles::LDH];
  alignas(32) float s[TensorTiles::BQ][TensorTiles::LDS];
};
template <class T>
struct TensorValueShared : TensorScoreShared<T> {
  alignas(32) T p[TensorTiles::BQ][TensorTiles::LDP];
  alignas(32) T v[TensorTiles::KC][TensorTiles::LDV];
};

/// dst[r][c] = X(b, r0 + r, c0 + c) for r < R, c < Cols, zero outside rows < n and columns < width;
/// all threads of the block take part. Consecutive threads walk the unit-stride axis when there is one.
template <int R, int Cols, int LD, class T>
__device__ __forceinline__ void stage_tensor(T (*dst)[LD], const expr::MatOperand<const T>& X, std::int64_t b,
                                             std::int64_t r0, std::int64_t n, std::int64_t c0, std::int64_t width) {
  const bool rows_fast = X.row == 1 && X.col != 1;
  for (int e = threadIdx.x; e < R * Cols; e += TensorTiles::kThreads) {
    const int r = rows_fast ? e % R : e / Cols;
    const int c = rows_fast ? e / R : e % Cols;
    const std::int64_t i = r0 + r, col = c0 + c;
    dst[r][c] = (i < n && col < width) ? *X.at(b, i, col) : convert<T>(0.0f);
  }
}

/// sm.s[16 w + r][c] = sum_f q(b, i0 + 16 w + r, f) k(b, j0 + c, f) for the calling warp w (zero rows
/// past n_q / n_k). Starts with a block barrier, so every earlier use of the shared tiles is done.
template <class T>
__device__ __forceinline__ void tensor_scores(TensorScoreShared<T>& sm, const expr::MatOperand<const T>& q,
                                              const expr::MatOperand<const T>& k, std::int64_t b, std::int64_t i0,
                                              std::int64_t n_q, std::int64_t j0, std::int64_t n_k, std::int64_t d) {
  namespace wmma = nvcuda::wmma;
  using G = TensorTiles;
  const int w = threadIdx.x / 32;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> s[G::BK / 16];
#pragma unroll
  for (int n = 0; n < G::BK / 16; ++n) wmma::fill_fragment(s[n], 0.0f);
  for (std::int64_t f0 = 0; f0 < d; f0 += G::FC) {
    __syncthreads();
    stage_tensor<G::BQ, G::FC>(sm.q, q, b, i0, n_q, f0, d);
    stage_tensor<G::BK, G::FC>(sm.k, k, b, j0, n_k, f0, d);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < G::FC; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
      wmma::load_matrix_sync(fa, &sm.q[16 * w][kk], G::LDH);
#pragma unroll
      for (int n = 0; n < G::BK / 16; ++n) {
        // k^T (features x keys) is k's tile read column-major.
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
        wmma::load_matrix_sync(fb, &sm.k[16 * n][kk], G::LDH);
        wmma::mma_sync(s[n], fa, fb, s[n]);
      }
    }
  }
#pragma unroll
  for (int n = 0; n < G::BK / 16; ++n)
    wmma::store_matrix_sync(&sm.s[16 * w][16 * n], s[n], G::LDS, wmma::mem_row_major);
  __syncwarp();
}

/// Pass 1: lse[b * n_q + i]. Lane pairs own a row (lane / 2) of the warp's 16, 32 columns each.
template <class T>
__global__ void __launch_bounds__(TensorTiles::kThreads)
    tensor_stats_kernel(expr::AttentionForward<T, float> a, float* lse) {
  using G = TensorTiles;
  __shared__ TensorScoreShared<T> sm;
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32, half = lane & 1;
  const int row = 16 * w + lane / 2;
  const std::int64_t i0 = static_cast<std::int64_t>(blockIdx.x) * G::BQ, i = i0 + row;
  const float scale = static_cast<float>(a.scale), minus_inf = -INFINITY;
  for (std::int64_t b = blockIdx.z; b < a.batch; b += gridDim.z) {
    float m = minus_inf, l = 0.0f;
    for (std::int64_t j0 = 0; j0 < a.n_k; j0 += G::BK) {
      tensor_scores(sm, a.q, a.k, b, i0, a.n_q, j0, a.n_k, a.d);
      float tile_max = minus_inf;
      for (int c = half * 32; c < half * 32 + 32; ++c)
        if (j0 + c < a.n_k) tile_max = fmaxf(tile_max, sm.s[row][c] * scale);
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      const float m_new = fmaxf(m, tile_max);
      const float m_use = m_new == minus_inf ? 0.0f : m_new;
      float sum = 0.0f;
      for (int c = half * 32; c < half * 32 + 32; ++c)
        if (j0 + c < a.n_k) sum += expf(sm.s[row][c] * scale - m_use);
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      l = l * expf(m - m_use) + sum;
      m = m_new;
    }
    if (half == 0 && i < a.n_q) lse[b * a.n_q + i] = m + logf(l);
  }
}

/// Pass 2: o columns [16 NF * blockIdx.y, +16 NF) of the tile's rows from lse.
template <class T>
__global__ void __launch_bounds__(TensorTiles::kThreads)
    tensor_output_kernel(expr::AttentionForward<T, float> a, const float* lse) {
  namespace wmma = nvcuda::wmma;
  using G = TensorTiles;
  __shared__ TensorValueShared<T> sm;
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32, half = lane & 1;
  const int row = 16 * w + lane / 2;
  const std::int64_t i0 = static_cast<std::int64_t>(blockIdx.x) * G::BQ, i = i0 + row;
  const std::int64_t c0 = static_cast<std::int64_t>(blockIdx.y) * G::OC;
  const float scale = static_cast<float>(a.scale);
  for (std::int64_t b = blockIdx.z; b < a.batch; b += gridDim.z) {
    const float row_lse = i < a.n_q ? lse[b * a.n_q + i] : 0.0f;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> o[G::NF];
#pragma unroll
    for (int n = 0; n < G::NF; ++n) wmma::fill_fragment(o[n], 0.0f);
    for (std::int64_t j0 = 0; j0 < a.n_k; j0 += G::BK) {
      tensor_scores(sm, a.q, a.k, b, i0, a.n_q, j0, a.n_k, a.d);
      for (int c = half * 32; c < half * 32 + 32; ++c) {
        const float p = j0 + c < a.n_k ? expf(sm.s[row][c] * scale - row_lse) : 0.0f;
        sm.p[row][c] = convert<T>(p);
      }
      __syncwarp();
      for (int kc = 0; kc < G::BK && j0 + kc < a.n_k; kc += G::KC) {
        __syncthreads();
        stage_tensor<G::KC, G::OC>(sm.v, a.v, b, j0 + kc, a.n_k, c0, a.dv);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < G::KC; kk += 16) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fp;
          wmma::load_matrix_sync(fp, &sm.p[16 * w][kc + kk], G::LDP);
#pragma unroll
          for (int n = 0; n < G::NF; ++n) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fv;
            wmma::load_matrix_sync(fv, &sm.v[kk][16 * n], G::LDV);
            wmma::mma_sync(o[n], fp, fv, o[n]);
          }
        }
      }
    }
    // Out through the warp's own rows of sm.s (no other warp touches them until the next barrier).
#pragma unroll
    for (int n = 0; n < G::NF; ++n) {
      __syncwarp();
      wmma::store_matrix_sync(&sm.s[16 * w][0], o[n], G::LDS, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const std::int64_t ii = i0 + 16 * w + e / 16, col = c0 + 16 * n + e % 16;
        if (ii < a.n_q && col < a.dv) store_as(a.o.at(b, ii, col), sm.s[16 * w + e / 16][e % 16]);
      }
    }
  }
}

}  // namespace kdloss::backend::cuda::attention_detail
