// kdloss/backend/cuda/topk.cuh: the GPU evaluation of a batched top-k (expr/topk.hpp), one block per row:
// a radix select of the k-th largest value over order-preserving integer keys (8 bits a pass, NaN above
// +inf, -0 folded into +0), then one scan in index order that keeps every value above it and the first
// ties equal to it (torch's CUDA rule), written in ascending index order. No workspace, no host read.
#pragma once
#include <cub/block/block_scan.cuh>

#include <cstdint>
#include <type_traits>

#include "kdloss/backend/cuda/launch.hpp"
#include "kdloss/backend/cuda/runtime.cuh"
#include "kdloss/config.hpp"
#include "kdloss/expr/topk.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda::topk {

template <class T>
using KeyOf = std::conditional_t<sizeof(T) == 8, unsigned long long, unsigned int>;

/// A key whose unsigned order is the value order: sign bit flipped for positives, all bits for negatives.
template <class T>
__device__ KeyOf<T> ordered_key(T v) {
  using U = KeyOf<T>;
  if (v != v) return ~U(0);  // NaN: above everything
  v = v + T(0);              // -0 -> +0
  U u;
  if constexpr (sizeof(T) == 8) {
    u = static_cast<U>(__double_as_longlong(static_cast<double>(v)));
  } else {
    u = static_cast<U>(__float_as_uint(static_cast<float>(v)));
  }
  const U sign = U(1) << (8 * sizeof(U) - 1);
  return (u & sign) ? ~u : (u | sign);
}

template <class T>
__global__ void __launch_bounds__(kBlock) select_kernel(expr::TopkRows<T> P) {
  using U = KeyOf<T>;
  __shared__ unsigned int hist[256];
  __shared__ U prefix_shared;
  __shared__ long long remaining_shared;
  using Scan = cub::BlockScan<long long, kBlock>;
  __shared__ typename Scan::TempStorage scan_temp;
  const std::int64_t n = P.size();
  for (std::int64_t s = blockIdx.x; s < P.rows(); s += gridDim.x) {
    const T* base = P.row(s);
    U prefix = 0, mask = 0;
    long long remaining = P.k;
    // the k-th largest key, a digit at a time from the top: `remaining` counts how many of the keys that
    // share the prefix so far still have to be taken
    for (int shift = 8 * static_cast<int>(sizeof(U)) - 8; shift >= 0; shift -= 8) {
      for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
      __syncthreads();
      for (std::int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const U u = ordered_key(P.value(base, j));
        if ((u & mask) == prefix) atomicAdd(&hist[(u >> shift) & 255u], 1u);
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        long long above = 0;
        int bin = 255;
        for (; bin > 0; --bin) {
          if (above + hist[bin] >= remaining) break;
          above += hist[bin];
        }
        remaining_shared = remaining - above;
        prefix_shared = prefix | (U(bin) << shift);
      }
      __syncthreads();
      prefix = prefix_shared;
      remaining = remaining_shared;
      mask |= U(255) << shift;
    }
    // keep keys above the k-th and the first `remaining` equal to it; the scan counts both at once
    // (above in the high 32 bits, equal in the low: n < 2^31)
    std::int64_t* out = P.indices + s * P.k;
    long long carry = 0;
    for (std::int64_t first = 0; first < n; first += blockDim.x) {
      const std::int64_t j = first + threadIdx.x;
      long long flag = 0;
      if (j < n) {
        const U u = ordered_key(P.value(base, j));
        flag = u > prefix ? (1LL << 32) : (u == prefix ? 1LL : 0LL);
      }
      long long before = 0, total = 0;
      Scan(scan_temp).ExclusiveSum(flag, before, total);
      before += carry;
      const long long above_before = before >> 32, equal_before = before & 0xffffffffLL;
      const long long taken_equal = equal_before < remaining ? equal_before : remaining;
      if (flag == (1LL << 32) || (flag == 1 && equal_before < remaining)) out[above_before + taken_equal] = j;
      carry += total;
      __syncthreads();  // scan_temp is reused
    }
  }
}

/// Every row of P (no workspace).
template <class T>
void topk_rows(const expr::TopkRows<T>& P, cudaStream_t stream) {
  if (P.rows() <= 0) return;
  const int blocks = static_cast<int>(P.rows() < 65535 ? P.rows() : 65535);
  select_kernel<T><<<blocks, kBlock, 0, stream>>>(P);
  check_launch("kdloss topk select_kernel");
}

} } }  // namespace kdloss::backend::cuda::topk
