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
//
// Backward (the same blocks): grad_q over key tiles and grad_k / grad_v over query tiles as in
// attention.cuh's float kernels, with S and dP on tensor cores into shared memory, P and dS formed in
// float and rounded to T for the products dS k, dS^T q and P^T grad_o on tensor cores (the rounding
// flash-attention makes too). D = rowsum(grad_o o) comes from attention.cuh's row_dot_kernel.
// Any d, dv, n_q, n_k: operands are staged with bounds checks and zero fill. Included by attention.cuh.
#pragma once
#include <mma.h>

#include <cstdint>

#include "kdloss/config.hpp"
#include "kdloss/core/convert.hpp"
#include "kdloss/expr/attention.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda::attention_detail {

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

/// A lane's place in a tensor-core block: lanes 2 r and 2 r + 1 of warp w own tile row 16 w + r,
/// `half` picking their 32 of the 64 score columns; the block's first tile row and output column.
struct TensorLane {
  int half, row;
  std::int64_t r0, c0;
  __device__ explicit TensorLane(unsigned chunk)
      : half(static_cast<int>(threadIdx.x & 1)),
        row(static_cast<int>(16 * (threadIdx.x / 32) + (threadIdx.x % 32) / 2)),
        r0(static_cast<std::int64_t>(blockIdx.x) * TensorTiles::BQ),
        c0(static_cast<std::int64_t>(chunk) * TensorTiles::OC) {}
};

/// v[b * n + i] for a row inside the problem, 0 past it (rows of a partial tile).
__device__ __forceinline__ float row_value(const float* v, std::int64_t b, std::int64_t n, std::int64_t i) {
  return i < n ? v[b * n + i] : 0.0f;
}

/// Pass 1: lse[b * n_q + i]. Lane pairs own a row (lane / 2) of the warp's 16, 32 columns each.
template <class T>
__global__ void __launch_bounds__(TensorTiles::kThreads)
    tensor_stats_kernel(expr::AttentionForward<T, float> a, float* lse) {
  using G = TensorTiles;
  __shared__ TensorScoreShared<T> sm;
  const TensorLane at(0);
  const std::int64_t i = at.r0 + at.row;
  const float scale = static_cast<float>(a.scale), minus_inf = -INFINITY;
  for (std::int64_t b = blockIdx.z; b < a.batch; b += gridDim.z) {
    float m = minus_inf, l = 0.0f;
    for (std::int64_t j0 = 0; j0 < a.n_k; j0 += G::BK) {
      tensor_scores(sm, a.q, a.k, b, at.r0, a.n_q, j0, a.n_k, a.d);
      float tile_max = minus_inf;
      for (int c = at.half * 32; c < at.half * 32 + 32; ++c)
        if (j0 + c < a.n_k) tile_max = fmaxf(tile_max, sm.s[at.row][c] * scale);
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      const float m_new = fmaxf(m, tile_max);
      const float m_use = m_new == minus_inf ? 0.0f : m_new;
      float sum = 0.0f;
      for (int c = at.half * 32; c < at.half * 32 + 32; ++c)
        if (j0 + c < a.n_k) sum += expf(sm.s[at.row][c] * scale - m_use);
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      l = l * expf(m - m_use) + sum;
      m = m_new;
    }
    if (at.half == 0 && i < a.n_q) lse[b * a.n_q + i] = m + logf(l);
  }
}

using TensorAcc = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>;

/// acc[n] (the calling warp's 16 rows x output columns [c0 + 16 n, +16)) += sm.p rows x X rows
/// [r0, r0 + BK) (those < n; columns c0 .. c0 + OC, zero past width). sm.p must hold the warp's
/// weights (rows 16 w .., T) before the call; the first barrier here orders the staging after them.
template <class T>
__device__ __forceinline__ void tensor_accumulate(TensorAcc (&acc)[TensorTiles::NF], TensorValueShared<T>& sm,
                                                  const expr::MatOperand<const T>& X, std::int64_t b, std::int64_t r0,
                                                  std::int64_t n, std::int64_t c0, std::int64_t width) {
  namespace wmma = nvcuda::wmma;
  using G = TensorTiles;
  const int w = threadIdx.x / 32;
  for (int kc = 0; kc < G::BK && r0 + kc < n; kc += G::KC) {
    __syncthreads();
    stage_tensor<G::KC, G::OC>(sm.v, X, b, r0 + kc, n, c0, width);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < G::KC; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fw;
      wmma::load_matrix_sync(fw, &sm.p[16 * w][kc + kk], G::LDP);
#pragma unroll
      for (int f = 0; f < G::NF; ++f) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fx;
        wmma::load_matrix_sync(fx, &sm.v[kk][16 * f], G::LDV);
        wmma::mma_sync(acc[f], fw, fx, acc[f]);
      }
    }
  }
}

/// Y(b, r0 + 16 w + r, c0 + 16 f + c) = factor * acc[f][r][c] inside n rows x width columns, through
/// the warp's own rows of sm.s (no other warp touches them before the next block barrier).
template <class T, class Y>
__device__ __forceinline__ void tensor_store(const expr::MatOperand<Y>& out, TensorAcc (&acc)[TensorTiles::NF],
                                             TensorScoreShared<T>& sm, float factor, std::int64_t b, std::int64_t r0,
                                             std::int64_t n, std::int64_t c0, std::int64_t width) {
  using G = TensorTiles;
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int f = 0; f < G::NF; ++f) {
    __syncwarp();
    nvcuda::wmma::store_matrix_sync(&sm.s[16 * w][0], acc[f], G::LDS, nvcuda::wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < 256; e += 32) {
      const std::int64_t r = r0 + 16 * w + e / 16, col = c0 + 16 * f + e % 16;
      if (r < n && col < width) store_as(out.at(b, r, col), sm.s[16 * w + e / 16][e % 16] * factor);
    }
  }
}

template <int NF>
__device__ __forceinline__ void zero_fragments(TensorAcc (&acc)[NF]) {
#pragma unroll
  for (int f = 0; f < NF; ++f) nvcuda::wmma::fill_fragment(acc[f], 0.0f);
}

/// Pass 2: o columns [OC * blockIdx.y, +OC) of the tile's rows from lse.
template <class T>
__global__ void __launch_bounds__(TensorTiles::kThreads)
    tensor_output_kernel(expr::AttentionForward<T, float> a, const float* lse) {
  __shared__ TensorValueShared<T> sm;
  const TensorLane at(blockIdx.y);
  const float scale = static_cast<float>(a.scale);
  for (std::int64_t b = blockIdx.z; b < a.batch; b += gridDim.z) {
    const float row_lse = row_value(lse, b, a.n_q, at.r0 + at.row);
    TensorAcc o[TensorTiles::NF];
    zero_fragments(o);
    for (std::int64_t j0 = 0; j0 < a.n_k; j0 += TensorTiles::BK) {
      tensor_scores(sm, a.q, a.k, b, at.r0, a.n_q, j0, a.n_k, a.d);
      for (int c = at.half * 32; c < at.half * 32 + 32; ++c) {
        const float p = j0 + c < a.n_k ? expf(sm.s[at.row][c] * scale - row_lse) : 0.0f;
        sm.p[at.row][c] = convert<T>(p);
      }
      __syncwarp();
      tensor_accumulate(o, sm, a.v, b, j0, a.n_k, at.c0, a.dv);
    }
    tensor_store(a.o, o, sm, 1.0f, b, at.r0, a.n_q, at.c0, a.dv);
  }
}

/// Backward, grad_q columns [OC * blockIdx.y, +OC) of a query tile: over key tiles, P from lse, then
/// dP = grad_o v^T, dS = P (dP - D) rounded to T, grad_q += scale dS k. Each lane keeps its 32 P
/// values in registers while dP takes the score buffer.
template <class T>
__global__ void __launch_bounds__(TensorTiles::kThreads)
    tensor_grad_q_kernel(expr::AttentionBackward<T, float> a, const float* D) {
  using G = TensorTiles;
  __shared__ TensorValueShared<T> sm;
  const TensorLane at(blockIdx.y);
  const std::int64_t i = at.r0 + at.row;
  const float scale = static_cast<float>(a.scale);
  for (std::int64_t b = blockIdx.z; b < a.batch; b += gridDim.z) {
    const float row_lse = row_value(a.lse, b, a.n_q, i), row_d = row_value(D, b, a.n_q, i);
    TensorAcc acc[G::NF];
    zero_fragments(acc);
    for (std::int64_t j0 = 0; j0 < a.n_k; j0 += G::BK) {
      tensor_scores(sm, a.q, a.k, b, at.r0, a.n_q, j0, a.n_k, a.d);
      float p[32];
#pragma unroll
      for (int c = 0; c < 32; ++c) {
        const int col = at.half * 32 + c;
        p[c] = j0 + col < a.n_k ? expf(sm.s[at.row][col] * scale - row_lse) : 0.0f;
      }
      tensor_scores(sm, a.grad_o, a.v, b, at.r0, a.n_q, j0, a.n_k, a.dv);
#pragma unroll
      for (int c = 0; c < 32; ++c) {
        const int col = at.half * 32 + c;
        sm.p[at.row][col] = convert<T>(p[c] * (sm.s[at.row][col] - row_d));
      }
      __syncwarp();
      tensor_accumulate(acc, sm, a.k, b, j0, a.n_k, at.c0, a.d);
    }
    tensor_store(a.grad_q, acc, sm, scale, b, at.r0, a.n_q, at.c0, a.d);
  }
}

/// Backward over a key tile (rows: keys, score columns: queries): grad_v chunks (blockIdx.y <
/// v_chunks: grad_v += P^T grad_o) then grad_k chunks (grad_k += scale dS^T q).
template <class T>
__global__ void __launch_bounds__(TensorTiles::kThreads)
    tensor_grad_kv_kernel(expr::AttentionBackward<T, float> a, const float* D, int v_chunks) {
  using G = TensorTiles;
  __shared__ TensorValueShared<T> sm;
  const bool is_v = static_cast<int>(blockIdx.y) < v_chunks;
  const TensorLane at(is_v ? blockIdx.y : blockIdx.y - v_chunks);
  const std::int64_t width = is_v ? a.dv : a.d;
  const float scale = static_cast<float>(a.scale);
  for (std::int64_t b = blockIdx.z; b < a.batch; b += gridDim.z) {
    TensorAcc acc[G::NF];
    zero_fragments(acc);
    for (std::int64_t i0 = 0; i0 < a.n_q; i0 += G::BK) {
      tensor_scores(sm, a.k, a.q, b, at.r0, a.n_k, i0, a.n_q, a.d);
      float p[32];
#pragma unroll
      for (int c = 0; c < 32; ++c) {
        const int col = at.half * 32 + c;
        const std::int64_t i = i0 + col;
        p[c] = i < a.n_q ? expf(sm.s[at.row][col] * scale - a.lse[b * a.n_q + i]) : 0.0f;
      }
      if (!is_v) {
        tensor_scores(sm, a.v, a.grad_o, b, at.r0, a.n_k, i0, a.n_q, a.dv);
#pragma unroll
        for (int c = 0; c < 32; ++c) {
          const int col = at.half * 32 + c;
          const std::int64_t i = i0 + col;
          p[c] *= sm.s[at.row][col] - row_value(D, b, a.n_q, i);
        }
      }
#pragma unroll
      for (int c = 0; c < 32; ++c) sm.p[at.row][at.half * 32 + c] = convert<T>(p[c]);
      __syncwarp();
      tensor_accumulate(acc, sm, is_v ? a.grad_o : a.q, b, i0, a.n_q, at.c0, width);
    }
    tensor_store(is_v ? a.grad_v : a.grad_k, acc, sm, is_v ? 1.0f : scale, b, at.r0, a.n_k, at.c0, width);
  }
}

} } }  // namespace kdloss::backend::cuda::attention_detail
