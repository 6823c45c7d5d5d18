// kdloss/backend/cuda/rowwise.cuh: runs a row operation over every row on the GPU.
// Short rows get a warp each (8 rows per block); long rows get a whole block. Rows along a strided
// axis whose neighbours are adjacent in memory (a class axis of NCHW) get one thread each, so that a
// warp's loads are coalesced across rows instead of touching 32 cache lines. Reductions inside a row
// are cooperative and every thread of the group sees their result.
#pragma once
#include <cub/block/block_reduce.cuh>
#include <cub/warp/warp_reduce.cuh>
#include <cuda/std/tuple>

#include <cstdint>
#include <tuple>

#include "kdloss/backend/cuda/executor.cuh"
#include "kdloss/backend/cuda/launch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/expr/rows.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda {

namespace detail {

struct MaxOp {
  template <class T>
  __device__ __forceinline__ T operator()(const T& a, const T& b) const {
    return a < b ? b : a;
  }
};

/// Group = the threads that share one row: one thread (kGroup = 1), a warp (kGroup = 32) or a block
/// (kGroup = kBlock).
template <int kGroup, class InPtrs, class OutPtrs>
struct DeviceRow {
  InPtrs in_ptrs;
  OutPtrs out_ptrs;
  const std::int64_t* in_step;
  const std::int64_t* out_step;
  std::int64_t n;
  int rank;            // thread rank inside the group
  void* shared;        // block-group reduction scratch (kGroup == kBlock)

  __device__ std::int64_t size() const { return n; }
  template <std::size_t K, class Acc>
  __device__ Acc in(std::int64_t j) const {
    return load_as<Acc>(::cuda::std::get<K>(in_ptrs) + j * in_step[K]);
  }
  template <std::size_t K, class Acc>
  __device__ void out(std::int64_t j, Acc v) const {
    store_as(::cuda::std::get<K>(out_ptrs) + j * out_step[K], v);
  }
  template <class Acc, class Red>
  __device__ Acc all_reduce(Acc v, Red red) const {
    if constexpr (kGroup == 1) {
      (void)red;
      return v;
    } else if constexpr (kGroup == 32) {
      for (int offset = 16; offset > 0; offset /= 2) v = red(v, __shfl_xor_sync(0xffffffffu, v, offset));
      return v;
    } else {
      using Reduce = cub::BlockReduce<Acc, kBlock>;
      auto& temp = *static_cast<typename Reduce::TempStorage*>(shared);
      __shared__ Acc result;
      const Acc r = Reduce(temp).Reduce(v, red);
      if (rank == 0) result = r;
      __syncthreads();
      const Acc out = result;
      __syncthreads();  // temp and result are reused by the next reduction
      return out;
    }
  }
  template <class Acc, class F>
  __device__ Acc sum(F f) const {
    Acc acc = Acc(0);
    for (std::int64_t j = rank; j < n; j += kGroup) acc += f(j);
    return all_reduce(acc, ::cuda::std::plus<Acc>{});
  }
  template <class Acc, class F>
  __device__ Acc max(F f) const {
    Acc m = f(0);
    for (std::int64_t j = rank; j < n; j += kGroup) {
      const Acc v = f(j);
      m = v > m ? v : m;
    }
    return all_reduce(m, MaxOp{});
  }
  template <class F>
  __device__ void for_each(F f) const {
    for (std::int64_t j = rank; j < n; j += kGroup) f(j);
  }
};

template <int kGroup, class Acc, int NI, int NO, class Op, class InPtrs, class OutPtrs, std::size_t... KI,
          std::size_t... KO>
__device__ __forceinline__ Acc run_row(const expr::Rows& rows, Op& op, const InPtrs& ins, const OutPtrs& outs,
                                       std::int64_t r, int rank, void* shared, ::cuda::std::index_sequence<KI...>,
                                       ::cuda::std::index_sequence<KO...>) {
  std::int64_t off[expr::kMaxOperands];
  rows.outer.offsets(r, off);
  auto in_ptrs = ::cuda::std::make_tuple((::cuda::std::get<KI>(ins) + off[KI])...);
  auto out_ptrs = ::cuda::std::make_tuple((::cuda::std::get<KO>(outs) + off[NI + KO])...);
  DeviceRow<kGroup, decltype(in_ptrs), decltype(out_ptrs)> row{
      in_ptrs, out_ptrs, rows.step, rows.step + NI, rows.length, rank, shared};
  if constexpr (std::is_void_v<decltype(op.template operator()<Acc>(row))>) {
    op.template operator()<Acc>(row);
    return Acc(0);
  } else {
    return static_cast<Acc>(op.template operator()<Acc>(row));
  }
}

template <int kGroup, class Acc, int NI, int NO, class Op, class InPtrs, class OutPtrs>
__global__ void __launch_bounds__(kBlock)
    rowwise_kernel(expr::Rows rows, Op op, InPtrs ins, OutPtrs outs, double* partials) {
  using Reduce = cub::BlockReduce<Acc, kBlock>;
  __shared__ typename Reduce::TempStorage row_temp;
  constexpr int kGroupsPerBlock = kBlock / kGroup;
  const int group = threadIdx.x / kGroup;
  const int rank = threadIdx.x % kGroup;
  double mine = 0;  // this thread's share of the row results (rank 0 of each group)
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * kGroupsPerBlock;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * kGroupsPerBlock;
  // Block groups iterate in lock step (they synchronise inside reductions); warp groups do not need to.
  for (std::int64_t base = first; base < rows.count(); base += step) {
    const std::int64_t r = base + group;
    if (kGroup == kBlock || r < rows.count()) {
      const Acc v = run_row<kGroup, Acc, NI, NO>(rows, op, ins, outs, r, rank, &row_temp,
                                                 ::cuda::std::make_index_sequence<NI>{},
                                                 ::cuda::std::make_index_sequence<NO>{});
      if (rank == 0) mine += static_cast<double>(v);
    }
  }
  if (partials == nullptr) return;
  __syncthreads();
  using DoubleReduce = cub::BlockReduce<double, kBlock>;
  __shared__ typename DoubleReduce::TempStorage temp;
  const double block_sum = DoubleReduce(temp).Sum(mine);
  if (threadIdx.x == 0) partials[blockIdx.x] = block_sum;
}

}  // namespace detail

/// Rows of at least this length get a block each.
inline constexpr std::int64_t kBlockRowLength = 2048;
/// At least this many rows before a strided row axis gets a thread per row (enough threads to fill
/// the device with coalesced loads; fewer rows keep a warp each).
inline constexpr std::int64_t kThreadRowMinRows = 8192;

/// How many threads share one row: 1 when the row axis is strided for the first input but consecutive
/// rows are adjacent in memory (consecutive threads then read consecutive addresses), else 32 or kBlock.
inline int rowwise_group(const expr::Rows& rows) {
  if (rows.length >= kBlockRowLength) return kBlock;
  if (rows.step[0] != 1 && rows.outer.inner_stride(0) == 1 && rows.count() >= kThreadRowMinRows) return 1;
  return 32;
}

/// GPU counterpart of cpu::rowwise. When `result` is non-null the sum of the row results goes
/// through `fin` to *result (device memory); `partials` then holds rowwise_blocks(...) doubles.
template <class Acc, class Op, class Fin, class R, class... I, class... O>
void rowwise(const Dims& full, int axis, Op op, const std::tuple<View<const I>...>& ins,
             const std::tuple<View<O>...>& outs, double* partials, Fin fin, R* result, cudaStream_t stream) {
  constexpr int NI = sizeof...(I), NO = sizeof...(O);
  std::int64_t strides[expr::kMaxOperands][kMaxRank] = {};
  detail::collect_strides(full, ins, strides, std::make_index_sequence<NI>{});
  detail::collect_strides(full, outs, strides + NI, std::make_index_sequence<NO>{});
  const expr::Rows rows = expr::make_rows(full, axis, strides, NI + NO);
  const int group = rowwise_group(rows);
  // A thread per row needs fewer blocks than rowwise_blocks(...) sized `partials` for.
  const int blocks = group == 1 ? rowwise_blocks(rows.count(), rows.length, kBlock)
                                : rowwise_blocks(rows.count(), rows.length);
  auto in_ptrs = detail::data_pointers(ins, std::make_index_sequence<NI>{});
  auto out_ptrs = detail::data_pointers(outs, std::make_index_sequence<NO>{});
  double* block_partials = result ? partials : nullptr;
  if (rows.count() > 0) {
    if (group == kBlock)
      detail::rowwise_kernel<kBlock, Acc, NI, NO>
          <<<blocks, kBlock, 0, stream>>>(rows, op, in_ptrs, out_ptrs, block_partials);
    else if (group == 1)
      detail::rowwise_kernel<1, Acc, NI, NO><<<blocks, kBlock, 0, stream>>>(rows, op, in_ptrs, out_ptrs, block_partials);
    else
      detail::rowwise_kernel<32, Acc, NI, NO><<<blocks, kBlock, 0, stream>>>(rows, op, in_ptrs, out_ptrs, block_partials);
    check_launch("rowwise_kernel");
  }
  if (result) {
    if (rows.count() == 0) {
      check(cudaMemsetAsync(partials, 0, sizeof(double), stream), "cudaMemsetAsync");
    }
    detail::finalize_kernel<<<1, kBlock, 0, stream>>>(partials, rows.count() > 0 ? blocks : 1, fin, result);
    check_launch("finalize_kernel");
  }
}

} } }  // namespace kdloss::backend::cuda
