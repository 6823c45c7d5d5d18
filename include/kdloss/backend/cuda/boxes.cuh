// kdloss/backend/cuda/boxes.cuh: the GPU evaluation of the box passes (expr/boxes.hpp): a grid-stride
// kernel calls f(i) for every item of [0, n) (each item written by one thread), and when a result is
// asked for, one partial sum per block (a CUB block reduction in double) and a single-block kernel that
// reduces the partials in order and stores fin(total) on the device: no host synchronisation, and the
// same bits run after run for a given n.
#pragma once
#include <cub/block/block_reduce.cuh>

#include <cstdint>

#include "kdloss/backend/cuda/executor.cuh"
#include "kdloss/backend/cuda/launch.hpp"
#include "kdloss/backend/cuda/runtime.cuh"
#include "kdloss/config.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda::boxes {

template <class F>
__global__ void __launch_bounds__(kBlock) index_kernel(std::int64_t n, F f, double* partials) {
  double local = 0;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    local += static_cast<double>(f(i));
  if (partials == nullptr) return;
  using Reduce = cub::BlockReduce<double, kBlock>;
  __shared__ typename Reduce::TempStorage temp;
  const double block_sum = Reduce(temp).Sum(local);
  if (threadIdx.x == 0) partials[blockIdx.x] = block_sum;
}

/// Runs f over [0, n); when `result` is non-null stores fin(sum of f) there (partials: reduce_blocks(n)).
template <class F, class Fin, class R>
void index_sum(std::int64_t n, F f, double* partials, Fin fin, R* result, cudaStream_t stream) {
  const int blocks = result ? reduce_blocks(n) : grid_for(n);
  if (n > 0) {
    index_kernel<<<blocks, kBlock, 0, stream>>>(n, f, result ? partials : nullptr);
    check_launch("kdloss boxes index_kernel");
  }
  if (result) {
    // an empty sum (n == 0) wrote no partials: finalize reads none
    kdloss::backend::cuda::detail::finalize_kernel<<<1, kBlock, 0, stream>>>(partials, n > 0 ? blocks : 0, fin,
                                                                              result);
    check_launch("kdloss boxes finalize_kernel");
  }
}

} } }  // namespace kdloss::backend::cuda::boxes
