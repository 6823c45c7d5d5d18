// kdloss/backend/cuda/attention.cuh: the softmax attention pass of expr/attention.hpp on the GPU, in
// tiles with an online softmax (the flash-attention scheme); the n_q x n_k matrix is never stored.
//
// Forward: one block per (query tile, output column chunk, batch) walks the key tiles. Scores of a
// (query tile, key tile) pair are summed over feature chunks staged in shared memory, each thread
// holding a TQ x TK register block of them; the running row maximum and sum rescale a TQ x TO block
// of the output, accumulated in Acc. The chunk-0 block writes lse = max + log(sum). A value width dv
// wider than one chunk (16 * TO columns) runs one block per chunk, each recomputing the same scores
// with the same arithmetic, so every chunk sees bit-identical weights.
//
// Backward (deterministic, no atomics): D = rowsum(grad_o o) into the scratch; then one kernel over
// query tiles (grad_q, looping over key tiles, P recomputed from lse) and one over key tiles (grad_k
// and grad_v chunks, looping over query tiles). Every sum runs in a fixed order: two runs with the
// same inputs and path are bit-identical.
//
// Paths: `simple` (16 x 16 tiles, one score and one output column per thread: small and obviously
// right), `blocked` (64 x 64 register-blocked tiles, 4 x 4 scores per thread, output chunks of 64
// or 256 columns; 32 x 32 tiles for double) and `tensor_core` (half and bfloat16 on WMMA fragments,
// attention_tensor.cuh; float and double run blocked). `automatic` takes tensor_core for half and
// bfloat16 and blocked otherwise. The simple and blocked kernels convert half and bfloat16 to float
// as they stage them and run the float arithmetic.
//
// Contract (the op checks it): n_q, n_k, d, dv >= 1; outputs (o, lse, gradients) do not overlap the
// inputs or each other; the backward's lse is the forward's (never null); scratch holds the queried
// bytes, 256-byte aligned, on the stream's device.
//
//   expr::AttentionForward<float, float> fwd{...};
//   backend::cuda::attention_forward(fwd, scratch, stream);            // scratch: forward_scratch_bytes
//   std::size_t bytes = backend::cuda::attention_backward_scratch_bytes(bwd);  // D, one Acc per row
//   backend::cuda::attention_backward(bwd, scratch, stream);
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kdloss/backend/cuda/attention_geometry.hpp"
#include "kdloss/backend/cuda/attention_tensor.cuh"
#include "kdloss/backend/cuda/runtime.cuh"
#include "kdloss/config.hpp"
#include "kdloss/core/convert.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/expr/attention.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda {

/// Which kernels run an attention pass (see the file comment): `simple` for checks, `blocked` and
/// `tensor_core` for speed; `automatic` picks the fastest for the type.
enum class AttentionPath { automatic, simple, blocked, tensor_core };

namespace attention_detail {

/// Tile geometry: 16 x 16 threads; thread (ty, tx) owns rows ty TQ + r (r < TQ), score columns
/// tx TK + c (c < TK) and output columns tx TO + o (o < TO) of its block's tiles: runs of adjacent
/// elements, read from shared memory as 16-byte vectors.
template <int TQ_, int TK_, int TO_>
struct Tiles {
  static constexpr int kSide = 16, kThreads = kSide * kSide;
  static constexpr int TQ = TQ_, TK = TK_, TO = TO_;
  static constexpr int BQ = kSide * TQ;  // rows of a tile
  static constexpr int BK = kSide * TK;  // score columns of a tile (keys forward, queries for grad_k/v)
  static constexpr int OC = kSide * TO;  // output columns of one chunk
  static constexpr int FC = 16;          // features per staged chunk of a score product
  static constexpr int KC = 16;          // keys per staged chunk of an output product
  static_assert(BK % KC == 0, "key chunks must tile a key tile");
};

/// Row padding of the transposed shared tiles: 16 bytes, so rows stay vector-aligned while the
/// transposed writes spread over the banks.
template <class Acc>
inline constexpr int kPad = static_cast<int>(16 / sizeof(Acc));

/// Shared memory of every kernel: the two score operands feature-major, the weights key-major, and
/// a chunk of the value operand.
template <class Acc, class C>
struct Shared {
  alignas(16) Acc a[C::FC][C::BQ + kPad<Acc>];
  alignas(16) Acc b[C::FC][C::BK + kPad<Acc>];
  alignas(16) Acc p[C::BK][C::BQ + kPad<Acc>];
  alignas(16) Acc x[C::KC][C::OC];
};

__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }
__device__ __forceinline__ float log_(float x) { return logf(x); }
__device__ __forceinline__ double log_(double x) { return log(x); }
__device__ __forceinline__ float max_(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double max_(double a, double b) { return fmax(a, b); }
template <class Acc>
__device__ __forceinline__ Acc minus_inf() {
  return -static_cast<Acc>(INFINITY);
}

/// Max and sum over the 16 threads of one tile row (lanes 0-15 or 16-31 of a warp: same ty).
template <class Acc>
__device__ __forceinline__ Acc row_max(Acc v) {
#pragma unroll
  for (int off = 8; off > 0; off >>= 1) v = max_(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
template <class Acc>
__device__ __forceinline__ Acc row_sum(Acc v) {
#pragma unroll
  for (int off = 8; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

/// dst[i] = src[i], i < N, in 16-byte vectors where N allows (src is then 16-byte aligned: every
/// caller's offset is a multiple of N elements into a 16-byte aligned row).
template <int N, class Acc>
__device__ __forceinline__ void load_run(Acc (&dst)[N], const Acc* src) {
  if constexpr (std::is_same_v<Acc, float> && N % 4 == 0) {
#pragma unroll
    for (int i = 0; i < N; i += 4) {
      const float4 v = *reinterpret_cast<const float4*>(src + i);
      dst[i] = v.x, dst[i + 1] = v.y, dst[i + 2] = v.z, dst[i + 3] = v.w;
    }
  } else if constexpr (std::is_same_v<Acc, double> && N % 2 == 0) {
#pragma unroll
    for (int i = 0; i < N; i += 2) {
      const double2 v = *reinterpret_cast<const double2*>(src + i);
      dst[i] = v.x, dst[i + 1] = v.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) dst[i] = src[i];
  }
}

/// acc[r][c] += a[r] b[c]: one rank-1 update of a thread's register block from shared rows.
template <class C, int R, int N, class Acc>
__device__ __forceinline__ void outer_add(Acc (&acc)[R][N], const Acc* a, const Acc* b) {
  Acc av[R], bv[N];
  load_run(av, a);
  load_run(bv, b);
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int c = 0; c < N; ++c) acc[r][c] += av[r] * bv[c];
}

/// Stages rows [r0, r0 + R) x features [f0, f0 + FC) of X into dst[f][r] as Acc, zeros outside
/// rows < n and features < width. Consecutive threads walk the unit-stride axis when there is one.
template <class C, int R, class T, class Acc>
__device__ __forceinline__ void stage_rows(Acc (*dst)[R + kPad<Acc>], const expr::MatOperand<const T>& X, std::int64_t b,
                                           std::int64_t r0, std::int64_t n, std::int64_t f0, std::int64_t width) {
  const bool rows_fast = X.row == 1 && X.col != 1;
  for (int e = threadIdx.x; e < R * C::FC; e += C::kThreads) {
    const int r = rows_fast ? e % R : e / C::FC;
    const int f = rows_fast ? e / R : e % C::FC;
    const std::int64_t i = r0 + r, ff = f0 + f;
    dst[f][r] = (i < n && ff < width) ? load_as<Acc>(X.at(b, i, ff)) : Acc(0);
  }
}

/// s[r][c] = sum_{f < width} A(b, i0 + ty TQ + r, f) B(b, j0 + tx TK + c, f); rows of A at or past
/// na and rows of B at or past nb read as zeros. Starts with a barrier, so the caller may rewrite
/// the weights tile after it.
template <class C, class T, class Acc>
__device__ __forceinline__ void score_tile(Acc (&s)[C::TQ][C::TK], Shared<Acc, C>& sm,
                                           const expr::MatOperand<const T>& A, const expr::MatOperand<const T>& B,
                                           std::int64_t b, std::int64_t i0, std::int64_t na, std::int64_t j0,
                                           std::int64_t nb, std::int64_t width) {
  const int ty = threadIdx.x / C::kSide, tx = threadIdx.x % C::kSide;
#pragma unroll
  for (int r = 0; r < C::TQ; ++r)
#pragma unroll
    for (int c = 0; c < C::TK; ++c) s[r][c] = Acc(0);
  for (std::int64_t f0 = 0; f0 < width; f0 += C::FC) {
    __syncthreads();
    stage_rows<C, C::BQ>(sm.a, A, b, i0, na, f0, width);
    stage_rows<C, C::BK>(sm.b, B, b, j0, nb, f0, width);
    __syncthreads();
#pragma unroll
    for (int f = 0; f < C::FC; ++f) outer_add<C>(s, sm.a[f] + ty * C::TQ, sm.b[f] + tx * C::TK);
  }
}

/// acc[r][o] += sum_k sm.p[k][ty TQ + r] X(b, j0 + k, c0 + tx TO + o) over the tile's keys
/// j0 + k < nk and columns < width (others read as zeros). The weights sm.p must be written by
/// every thread before the call (the first barrier here publishes them).
template <class C, class T, class Acc>
__device__ __forceinline__ void output_product(Acc (&acc)[C::TQ][C::TO], Shared<Acc, C>& sm,
                                               const expr::MatOperand<const T>& X, std::int64_t b, std::int64_t j0,
                                               std::int64_t nk, std::int64_t c0, std::int64_t width) {
  const int ty = threadIdx.x / C::kSide, tx = threadIdx.x % C::kSide;
  const bool keys_fast = X.row == 1 && X.col != 1;
  for (int kc = 0; kc < C::BK && j0 + kc < nk; kc += C::KC) {
    __syncthreads();
    for (int e = threadIdx.x; e < C::KC * C::OC; e += C::kThreads) {
      const int k = keys_fast ? e % C::KC : e / C::OC;
      const int o = keys_fast ? e / C::KC : e % C::OC;
      const std::int64_t j = j0 + kc + k, col = c0 + o;
      sm.x[k][o] = (j < nk && col < width) ? load_as<Acc>(X.at(b, j, col)) : Acc(0);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < C::KC; ++k) outer_add<C>(acc, sm.p[kc + k] + ty * C::TQ, sm.x[k] + tx * C::TO);
  }
}

/// Writes acc[r][o] * row_scale[r] to Y(b, i0 + ty TQ + r, c0 + tx TO + o) inside n rows x width.
template <class C, class T, class Acc>
__device__ __forceinline__ void store_tile(const expr::MatOperand<T>& Y, const Acc (&acc)[C::TQ][C::TO],
                                           const Acc (&row_scale)[C::TQ], std::int64_t b, std::int64_t i0,
                                           std::int64_t n, std::int64_t c0, std::int64_t width) {
  const int ty = threadIdx.x / C::kSide, tx = threadIdx.x % C::kSide;
#pragma unroll
  for (int r = 0; r < C::TQ; ++r) {
    const std::int64_t i = i0 + ty * C::TQ + r;
    if (i >= n) continue;
#pragma unroll
    for (int o = 0; o < C::TO; ++o) {
      const std::int64_t col = c0 + tx * C::TO + o;
      if (col < width) store_as(Y.at(b, i, col), acc[r][o] * row_scale[r]);
    }
  }
}

template <class C, class Acc>
__device__ __forceinline__ void zero(Acc (&acc)[C::TQ][C::TO]) {
#pragma unroll
  for (int r = 0; r < C::TQ; ++r)
#pragma unroll
    for (int o = 0; o < C::TO; ++o) acc[r][o] = Acc(0);
}

/// A thread's place: (ty, tx) in its block, the block's first tile row and first output column.
template <class C>
struct Place {
  int ty, tx;
  std::int64_t row0, col0;
  __device__ explicit Place(unsigned chunk)
      : ty(static_cast<int>(threadIdx.x) / C::kSide),
        tx(static_cast<int>(threadIdx.x) % C::kSide),
        row0(static_cast<std::int64_t>(blockIdx.x) * C::BQ),
        col0(static_cast<std::int64_t>(chunk) * C::OC) {}
};

/// Forward: grid (query tiles, dv chunks, batches).
template <class C, class T, class Acc>
__global__ void __launch_bounds__(C::kThreads) forward_kernel(expr::AttentionForward<T, Acc> a) {
  __shared__ Shared<Acc, C> sm;
  const Place<C> at(blockIdx.y);
  const int ty = at.ty, tx = at.tx;
  const std::int64_t i0 = at.row0, c0 = at.col0;
  const Acc scale = static_cast<Acc>(a.scale);
  for (std::int64_t b = blockIdx.z; b < a.batch; b += gridDim.z) {
    Acc m[C::TQ], l[C::TQ], acc[C::TQ][C::TO];
#pragma unroll
    for (int r = 0; r < C::TQ; ++r) m[r] = minus_inf<Acc>(), l[r] = Acc(0);
    zero<C>(acc);
    for (std::int64_t j0 = 0; j0 < a.n_k; j0 += C::BK) {
      Acc s[C::TQ][C::TK];
      score_tile<C>(s, sm, a.q, a.k, b, i0, a.n_q, j0, a.n_k, a.d);
#pragma unroll
      for (int r = 0; r < C::TQ; ++r) {
        Acc tile_max = minus_inf<Acc>();
#pragma unroll
        for (int c = 0; c < C::TK; ++c) {
          s[r][c] = j0 + tx * C::TK + c < a.n_k ? s[r][c] * scale : minus_inf<Acc>();
          tile_max = max_(tile_max, s[r][c]);
        }
        const Acc m_new = max_(m[r], row_max(tile_max));
        // A row with no finite score yet keeps weights exp(-inf - 0) = 0 instead of NaN.
        const Acc m_use = m_new == minus_inf<Acc>() ? Acc(0) : m_new;
        const Acc alpha = exp_(m[r] - m_use);
        Acc tile_sum = 0;
#pragma unroll
        for (int c = 0; c < C::TK; ++c) {
          s[r][c] = exp_(s[r][c] - m_use);
          tile_sum += s[r][c];
          sm.p[tx * C::TK + c][ty * C::TQ + r] = s[r][c];
        }
        l[r] = l[r] * alpha + row_sum(tile_sum);
        m[r] = m_new;
#pragma unroll
        for (int o = 0; o < C::TO; ++o) acc[r][o] *= alpha;
      }
      output_product<C>(acc, sm, a.v, b, j0, a.n_k, c0, a.dv);
    }
    Acc inv[C::TQ];
#pragma unroll
    for (int r = 0; r < C::TQ; ++r) inv[r] = Acc(1) / l[r];
    store_tile<C>(a.o, acc, inv, b, i0, a.n_q, c0, a.dv);
    if (a.lse && blockIdx.y == 0 && tx == 0) {
#pragma unroll
      for (int r = 0; r < C::TQ; ++r) {
        const std::int64_t i = i0 + ty * C::TQ + r;
        if (i < a.n_q) a.lse[b * a.n_q + i] = m[r] + log_(l[r]);
      }
    }
  }
}

/// D[b * n_q + i] = sum_f grad_o(b, i, f) o(b, i, f): one warp per row, lanes in a fixed order.
template <class T, class Acc>
__global__ void __launch_bounds__(kBlock) row_dot_kernel(expr::AttentionBackward<T, Acc> a, Acc* D) {
  const int lane = threadIdx.x % 32;
  const std::int64_t rows = a.batch * a.n_q;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t row = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; row < rows;
       row += warps) {
    const std::int64_t b = row / a.n_q, i = row % a.n_q;
    Acc s = 0;
    for (std::int64_t f = lane; f < a.dv; f += 32)
      s += load_as<Acc>(a.grad_o.at(b, i, f)) * load_as<Acc>(a.o.at(b, i, f));
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) D[row] = s;
  }
}

/// grad_q: grid (query tiles, d chunks, batches).
template <class C, class T, class Acc>
__global__ void __launch_bounds__(C::kThreads) grad_q_kernel(expr::AttentionBackward<T, Acc> a, const Acc* D) {
  __shared__ Shared<Acc, C> sm;
  const Place<C> at(blockIdx.y);
  const Acc scale = static_cast<Acc>(a.scale);
  for (std::int64_t b = blockIdx.z; b < a.batch; b += gridDim.z) {
    Acc row_lse[C::TQ], row_d[C::TQ], scales[C::TQ], acc[C::TQ][C::TO];
#pragma unroll
    for (int r = 0; r < C::TQ; ++r) {
      const std::int64_t i = at.row0 + at.ty * C::TQ + r;
      row_lse[r] = i < a.n_q ? a.lse[b * a.n_q + i] : Acc(0);
      row_d[r] = i < a.n_q ? D[b * a.n_q + i] : Acc(0);
      scales[r] = scale;
    }
    zero<C>(acc);
    for (std::int64_t j0 = 0; j0 < a.n_k; j0 += C::BK) {
      Acc s[C::TQ][C::TK], dp[C::TQ][C::TK];
      score_tile<C>(s, sm, a.q, a.k, b, at.row0, a.n_q, j0, a.n_k, a.d);
      score_tile<C>(dp, sm, a.grad_o, a.v, b, at.row0, a.n_q, j0, a.n_k, a.dv);
#pragma unroll
      for (int r = 0; r < C::TQ; ++r)
#pragma unroll
        for (int c = 0; c < C::TK; ++c) {
          const bool key = j0 + at.tx * C::TK + c < a.n_k;
          const Acc p = key ? exp_(s[r][c] * scale - row_lse[r]) : Acc(0);
          sm.p[at.tx * C::TK + c][at.ty * C::TQ + r] = p * (dp[r][c] - row_d[r]);
        }
      output_product<C>(acc, sm, a.k, b, j0, a.n_k, at.col0, a.d);
    }
    store_tile<C>(a.grad_q, acc, scales, b, at.row0, a.n_q, at.col0, a.d);
  }
}

/// grad_v and grad_k: grid (key tiles, grad_v chunks then grad_k chunks, batches). Tile rows are
/// keys, score columns queries.
template <class C, class T, class Acc>
__global__ void __launch_bounds__(C::kThreads) grad_kv_kernel(expr::AttentionBackward<T, Acc> a, const Acc* D,
                                                              int v_chunks) {
  __shared__ Shared<Acc, C> sm;
  const bool is_v = static_cast<int>(blockIdx.y) < v_chunks;
  const Place<C> at(is_v ? blockIdx.y : blockIdx.y - v_chunks);
  const int ty = at.ty, tx = at.tx;
  const std::int64_t j0 = at.row0, c0 = at.col0;
  const std::int64_t width = is_v ? a.dv : a.d;
  const Acc scale = static_cast<Acc>(a.scale);
  for (std::int64_t b = blockIdx.z; b < a.batch; b += gridDim.z) {
    Acc acc[C::TQ][C::TO];
    zero<C>(acc);
    for (std::int64_t i0 = 0; i0 < a.n_q; i0 += C::BK) {
      Acc s[C::TQ][C::TK], dp[C::TQ][C::TK];
      score_tile<C>(s, sm, a.k, a.q, b, j0, a.n_k, i0, a.n_q, a.d);
      if (!is_v) score_tile<C>(dp, sm, a.v, a.grad_o, b, j0, a.n_k, i0, a.n_q, a.dv);
#pragma unroll
      for (int c = 0; c < C::TK; ++c) {
        const std::int64_t i = i0 + tx * C::TK + c;
        const bool query = i < a.n_q;
        const Acc col_lse = query ? a.lse[b * a.n_q + i] : Acc(0);
        const Acc col_d = query && !is_v ? D[b * a.n_q + i] : Acc(0);  // D is unwritten when only grad_v is asked
#pragma unroll
        for (int r = 0; r < C::TQ; ++r) {
          const Acc p = query ? exp_(s[r][c] * scale - col_lse) : Acc(0);
          sm.p[tx * C::TK + c][ty * C::TQ + r] = is_v ? p : p * (dp[r][c] - col_d);
        }
      }
      output_product<C>(acc, sm, is_v ? a.grad_o : a.q, b, i0, a.n_q, c0, width);
    }
    Acc scales[C::TQ];
#pragma unroll
    for (int r = 0; r < C::TQ; ++r) scales[r] = is_v ? Acc(1) : scale;
    store_tile<C>(is_v ? a.grad_v : a.grad_k, acc, scales, b, j0, a.n_k, c0, width);
  }
}

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

/// Grid of (tiles, chunks, batches); a dimension past CUDA's limits is refused (tiles) or looped (batches).
inline dim3 grid_of(std::int64_t tiles, std::int64_t chunks, std::int64_t batch) {
  if (tiles > 0x7fffffff || chunks > 65535)
    ::kdloss::detail::fail("kdloss: attention: ", tiles, " tiles x ", chunks, " column chunks exceed the CUDA grid");
  return dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(chunks),
              static_cast<unsigned>(batch < 65535 ? batch : 65535));
}

/// Calls f(Tiles<...>{}) with the geometry of `path` for element type T and output width `width`.
template <class T, class F>
void with_tiles(AttentionPath path, std::int64_t width, F&& f) {
  if (path == AttentionPath::simple) {
    f(Tiles<1, 1, 1>{});
  } else if constexpr (std::is_same_v<T, double>) {
    f(Tiles<2, 2, 4>{});
  } else if (width <= 64) {
    f(Tiles<4, 4, 4>{});
  } else {
    f(Tiles<4, 4, 16>{});
  }
}

}  // namespace attention_detail

namespace attention_detail {
template <class T>
inline constexpr bool has_tensor_path = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;
static_assert(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2,
              "attention_geometry keys the tensor path on 2-byte elements");
}  // namespace attention_detail

/// Device scratch of attention_forward: the half / bfloat16 forward keeps lse there (one float per
/// query row, 256-byte multiple) when a.lse is null; otherwise none. (attention_geometry.hpp answers
/// the same without CUDA headers.)
template <class T, class Acc>
std::size_t attention_forward_scratch_bytes(const expr::AttentionForward<T, Acc>& a) {
  return attention_geometry::forward_scratch_bytes(a.batch, a.n_q, sizeof(T), a.lse != nullptr);
}

/// o (and lse when a.lse is set) of expr::AttentionForward on `stream`; no allocation, no host sync.
template <class T, class Acc>
void attention_forward(const expr::AttentionForward<T, Acc>& a, void* scratch, cudaStream_t stream,
                       AttentionPath path = AttentionPath::automatic) {
  static_assert(std::is_same_v<Acc, std::conditional_t<std::is_same_v<T, double>, double, float>>,
                "kdloss: attention accumulates in double for double and in float otherwise");
  if (a.batch <= 0 || a.n_q <= 0) return;
  if constexpr (attention_detail::has_tensor_path<T>) {
    if (path == AttentionPath::automatic || path == AttentionPath::tensor_core) {
      using G = attention_detail::TensorTiles;
      using attention_detail::ceil_div;
      float* lse = a.lse ? a.lse : static_cast<float*>(scratch);
      attention_detail::tensor_stats_kernel<T>
          <<<attention_detail::grid_of(ceil_div(a.n_q, G::BQ), 1, a.batch), G::kThreads, 0, stream>>>(a, lse);
      check_launch("attention tensor_stats_kernel");
      attention_detail::tensor_output_kernel<T>
          <<<attention_detail::grid_of(ceil_div(a.n_q, G::BQ), ceil_div(a.dv, G::OC), a.batch), G::kThreads, 0,
             stream>>>(a, lse);
      check_launch("attention tensor_output_kernel");
      return;
    }
  }
  attention_detail::with_tiles<T>(path, a.dv, [&](auto tiles) {
    using C = decltype(tiles);
    const dim3 grid = attention_detail::grid_of(attention_detail::ceil_div(a.n_q, C::BQ),
                                                attention_detail::ceil_div(a.dv, C::OC), a.batch);
    attention_detail::forward_kernel<C, T, Acc><<<grid, C::kThreads, 0, stream>>>(a);
    check_launch("attention forward_kernel");
  });
}

/// Device scratch of attention_backward: D, one Acc per query row (256-byte multiple).
template <class T, class Acc>
std::size_t attention_backward_scratch_bytes(const expr::AttentionBackward<T, Acc>& a) {
  return attention_geometry::backward_scratch_bytes(a.batch, a.n_q, sizeof(Acc));
}

/// grad_q, grad_k, grad_v (those with data) of expr::AttentionBackward on `stream`; `scratch` holds
/// attention_backward_scratch_bytes(a) bytes on the device. No allocation, no host sync.
template <class T, class Acc>
void attention_backward(const expr::AttentionBackward<T, Acc>& a, void* scratch, cudaStream_t stream,
                        AttentionPath path = AttentionPath::automatic) {
  static_assert(std::is_same_v<Acc, std::conditional_t<std::is_same_v<T, double>, double, float>>,
                "kdloss: attention accumulates in double for double and in float otherwise");
  if (a.batch <= 0 || a.n_q <= 0 || a.n_k <= 0) return;
  const bool want_q = a.grad_q.data != nullptr, want_k = a.grad_k.data != nullptr, want_v = a.grad_v.data != nullptr;
  if (!want_q && !want_k && !want_v) return;
  Acc* D = static_cast<Acc*>(scratch);
  const bool need_d = want_q || want_k;
  if (need_d) {
    attention_detail::row_dot_kernel<T, Acc><<<grid_for(a.batch * a.n_q * 32), kBlock, 0, stream>>>(a, D);
    check_launch("attention row_dot_kernel");
  }
  if constexpr (attention_detail::has_tensor_path<T>) {
    if (path == AttentionPath::automatic || path == AttentionPath::tensor_core) {
      using G = attention_detail::TensorTiles;
      using attention_detail::ceil_div;
      using attention_detail::grid_of;
      if (want_q) {
        attention_detail::tensor_grad_q_kernel<T>
            <<<grid_of(ceil_div(a.n_q, G::BQ), ceil_div(a.d, G::OC), a.batch), G::kThreads, 0, stream>>>(a, D);
        check_launch("attention tensor_grad_q_kernel");
      }
      const std::int64_t v_chunks = want_v ? ceil_div(a.dv, G::OC) : 0, k_chunks = want_k ? ceil_div(a.d, G::OC) : 0;
      if (v_chunks + k_chunks > 0) {
        attention_detail::tensor_grad_kv_kernel<T>
            <<<grid_of(ceil_div(a.n_k, G::BQ), v_chunks + k_chunks, a.batch), G::kThreads, 0, stream>>>(
                a, D, static_cast<int>(v_chunks));
        check_launch("attention tensor_grad_kv_kernel");
      }
      return;
    }
  }
  const std::int64_t width = a.d > a.dv ? a.d : a.dv;
  attention_detail::with_tiles<T>(path, width, [&](auto tiles) {
    using C = decltype(tiles);
    using attention_detail::ceil_div;
    if (want_q) {
      const dim3 grid = attention_detail::grid_of(ceil_div(a.n_q, C::BQ), ceil_div(a.d, C::OC), a.batch);
      attention_detail::grad_q_kernel<C, T, Acc><<<grid, C::kThreads, 0, stream>>>(a, D);
      check_launch("attention grad_q_kernel");
    }
    const std::int64_t v_chunks = want_v ? ceil_div(a.dv, C::OC) : 0, k_chunks = want_k ? ceil_div(a.d, C::OC) : 0;
    if (v_chunks + k_chunks > 0) {
      const dim3 grid = attention_detail::grid_of(ceil_div(a.n_k, C::BQ), v_chunks + k_chunks, a.batch);
      attention_detail::grad_kv_kernel<C, T, Acc>
          <<<grid, C::kThreads, 0, stream>>>(a, D, static_cast<int>(v_chunks));
      check_launch("attention grad_kv_kernel");
    }
  });
}

} } }  // namespace kdloss::backend::cuda
