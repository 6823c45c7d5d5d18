// kdloss/backend/cuda/additive_relu.cuh: the GPU evaluation of expr::AdditiveReluPass over the pairs
// (one thread per output element, each summing its pairs in index order: exact and deterministic; the
// N x N' matrix is never stored). Scores and pair sums accumulate in Acc (float for float, half and
// bfloat16; double for double). Kernels: scores a, b; y; the row sums dA of d_ij = [a_i + b_j > 0]
// scale dy_i . x_j (a thread per query) and the column sums dB (a block per key, a fixed-shape tree over
// its threads); dx; dp = dA u and dq = dB v; dw as one block per channel, the same tree over the rows.
#pragma once
#include <cstdint>

#include "kdloss/backend/cuda/runtime.cuh"
#include "kdloss/config.hpp"
#include "kdloss/expr/additive_relu.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda::additive_relu {

template <class Acc>
__device__ __forceinline__ Acc relu(Acc s) {
  return s > Acc(0) || s != s ? s : Acc(0);
}
/// torch's threshold_backward: the gradient passes unless s <= 0.
template <class Acc>
__device__ __forceinline__ bool passes(Acc s) {
  return !(s <= Acc(0));
}
template <class T, class Acc>
__device__ __forceinline__ void put(T* out, Acc v, double beta) {
  store_as(out, beta == 0 ? v : Acc(beta) * load_as<Acc>(out) + v);
}

template <class T, class Acc>
__global__ void scores_kernel(expr::AdditiveReluPass<T> P, Acc* a, Acc* b) {
  const std::int64_t per = P.n + P.n2, total = P.batch * per;
  for (std::int64_t t = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; t < total;
       t += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t img = t / per, r = t % per;
    const bool query = r < P.n;
    const std::int64_t row = query ? r : r - P.n, off = query ? 0 : P.m;
    const auto& rows = query ? P.p : P.q;
    Acc acc = 0;
    for (std::int64_t k = 0; k < P.m; ++k) acc += load_as<Acc>(P.w + (off + k) * P.w_stride) * load_as<Acc>(rows.at(img, row, k));
    (query ? a[img * P.n + row] : b[img * P.n2 + row]) = acc;
  }
}

template <class T, class Acc>
__global__ void forward_kernel(expr::AdditiveReluPass<T> P, const Acc* a, const Acc* b) {
  const std::int64_t total = P.batch * P.n * P.c;
  const Acc scale = Acc(P.scale);
  for (std::int64_t t = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; t < total;
       t += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t k = t % P.c, i = (t / P.c) % P.n, img = t / (P.c * P.n);
    const Acc ai = a[img * P.n + i];
    const Acc* bj = b + img * P.n2;
    Acc acc = 0;
    for (std::int64_t j = 0; j < P.n2; ++j) acc += relu(ai + bj[j]) * scale * load_as<Acc>(P.x.at(img, j, k));
    store_as(P.y.at(img, i, k), acc);
  }
}

/// dL/dscore_ij = [a_i + b_j > 0] scale dy_i . x_j (0 for an inactive pair).
template <class T, class Acc>
__device__ __forceinline__ Acc pair_grad(const expr::AdditiveReluPass<T>& P, const Acc* a, const Acc* b,
                                         std::int64_t img, std::int64_t i, std::int64_t j) {
  if (!passes(a[img * P.n + i] + b[img * P.n2 + j])) return Acc(0);
  Acc d = 0;
  for (std::int64_t k = 0; k < P.c; ++k) d += load_as<Acc>(P.dy.at(img, i, k)) * load_as<Acc>(P.x.at(img, j, k));
  return Acc(P.scale) * d;
}

/// dA_i = sum_j dL/dscore_ij, one thread per query (N' pairs each).
template <class T, class Acc>
__global__ void query_grad_kernel(expr::AdditiveReluPass<T> P, const Acc* a, const Acc* b, Acc* ga) {
  const std::int64_t total = P.batch * P.n;
  for (std::int64_t t = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; t < total;
       t += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t img = t / P.n, i = t % P.n;
    Acc acc = 0;
    for (std::int64_t j = 0; j < P.n2; ++j) acc += pair_grad(P, a, b, img, i, j);
    ga[t] = acc;
  }
}

inline constexpr int kReduceThreads = 256;

/// A fixed-shape tree over the block's partial sums (the same order on every run); thread 0 gets the total.
template <class Acc>
__device__ __forceinline__ Acc block_sum(Acc v) {
  __shared__ Acc part[kReduceThreads];
  part[threadIdx.x] = v;
  __syncthreads();
  for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  return part[0];
}

/// dB_j = sum_i dL/dscore_ij, one block per key (N pairs each, threads over the queries).
template <class T, class Acc>
__global__ void __launch_bounds__(kReduceThreads) key_grad_kernel(expr::AdditiveReluPass<T> P, const Acc* a,
                                                                 const Acc* b, Acc* gb) {
  const std::int64_t img = blockIdx.x / P.n2, j = blockIdx.x % P.n2;
  Acc acc = 0;
  for (std::int64_t i = threadIdx.x; i < P.n; i += kReduceThreads) acc += pair_grad(P, a, b, img, i, j);
  const Acc total = block_sum(acc);
  if (threadIdx.x == 0) gb[blockIdx.x] = total;
}

template <class T, class Acc>
__global__ void dx_kernel(expr::AdditiveReluPass<T> P, const Acc* a, const Acc* b) {
  const std::int64_t total = P.batch * P.n2 * P.c;
  const Acc scale = Acc(P.scale);
  for (std::int64_t t = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; t < total;
       t += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t k = t % P.c, j = (t / P.c) % P.n2, img = t / (P.c * P.n2);
    const Acc bj = b[img * P.n2 + j];
    const Acc* ai = a + img * P.n;
    Acc acc = 0;
    for (std::int64_t i = 0; i < P.n; ++i) acc += relu(ai[i] + bj) * scale * load_as<Acc>(P.dy.at(img, i, k));
    put(P.dx.at(img, j, k), acc, P.beta_in);
  }
}

/// dp = dA u, dq = dB v.
template <class T, class Acc>
__global__ void input_grad_kernel(expr::AdditiveReluPass<T> P, const Acc* ga, const Acc* gb) {
  const std::int64_t per = (P.n + P.n2) * P.m, total = P.batch * per;
  for (std::int64_t t = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; t < total;
       t += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t img = t / per, r = (t % per) / P.m, k = t % P.m;
    const bool query = r < P.n;
    const std::int64_t row = query ? r : r - P.n;
    const auto& out = query ? P.dp : P.dq;
    if (!out.data) continue;
    const Acc g = query ? ga[img * P.n + row] : gb[img * P.n2 + row];
    put(out.at(img, row, k), g * load_as<Acc>(P.w + ((query ? 0 : P.m) + k) * P.w_stride), P.beta_in);
  }
}

/// One block per channel k of w: dw_k = beta dw_k + sum over images and rows of g_row * rows(row, k).
template <class T, class Acc>
__global__ void __launch_bounds__(kReduceThreads) param_grad_kernel(expr::AdditiveReluPass<T> P, const Acc* ga,
                                                                   const Acc* gb) {
  const std::int64_t ch = blockIdx.x;
  const bool query = ch < P.m;
  const std::int64_t k = query ? ch : ch - P.m, len = query ? P.n : P.n2, count = P.batch * len;
  const auto& rows = query ? P.p : P.q;
  const Acc* g = query ? ga : gb;
  Acc acc = 0;
  for (std::int64_t t = threadIdx.x; t < count; t += kReduceThreads)
    acc += g[t] * load_as<Acc>(rows.at(t / len, t % len, k));
  const Acc total = block_sum(acc);
  if (threadIdx.x == 0) put(P.dw + ch * P.dw_stride, total, P.beta_param);
}

/// Runs P on `stream` with Acc scratch a, b ([B, N], [B, N']) and, for the backward, ga, gb (same).
template <class T, class Acc>
void run(const expr::AdditiveReluPass<T>& P, Acc* a, Acc* b, Acc* ga, Acc* gb, cudaStream_t stream) {
  const auto grid = [](std::int64_t work) { return grid_for(work, kBlock); };
  if (P.batch * (P.n + P.n2) > 0) {
    scores_kernel<T, Acc><<<grid(P.batch * (P.n + P.n2)), kBlock, 0, stream>>>(P, a, b);
    check_launch("additive_relu::scores_kernel");
  }
  if (P.forward() && P.batch * P.n * P.c > 0) {
    forward_kernel<T, Acc><<<grid(P.batch * P.n * P.c), kBlock, 0, stream>>>(P, a, b);
    check_launch("additive_relu::forward_kernel");
  }
  if (!P.backward()) return;
  if (P.batch * P.n > 0) {
    query_grad_kernel<T, Acc><<<grid(P.batch * P.n), kBlock, 0, stream>>>(P, a, b, ga);
    check_launch("additive_relu::query_grad_kernel");
  }
  if (P.batch * P.n2 > 0) {
    key_grad_kernel<T, Acc><<<static_cast<unsigned>(P.batch * P.n2), kReduceThreads, 0, stream>>>(P, a, b, gb);
    check_launch("additive_relu::key_grad_kernel");
  }
  if (P.dx.data && P.batch * P.n2 * P.c > 0) {
    dx_kernel<T, Acc><<<grid(P.batch * P.n2 * P.c), kBlock, 0, stream>>>(P, a, b);
    check_launch("additive_relu::dx_kernel");
  }
  if ((P.dp.data || P.dq.data) && P.batch * (P.n + P.n2) * P.m > 0) {
    input_grad_kernel<T, Acc><<<grid(P.batch * (P.n + P.n2) * P.m), kBlock, 0, stream>>>(P, ga, gb);
    check_launch("additive_relu::input_grad_kernel");
  }
  if (P.dw && P.m > 0) {
    param_grad_kernel<T, Acc><<<static_cast<unsigned>(2 * P.m), kReduceThreads, 0, stream>>>(P, ga, gb);
    check_launch("additive_relu::param_grad_kernel");
  }
}

} } }  // namespace kdloss::backend::cuda::additive_relu
