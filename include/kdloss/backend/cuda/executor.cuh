// kdloss/backend/cuda/executor.cuh: the GPU evaluator of elementwise expressions and reductions.
//
// Same contract as backend/cpu/executor.hpp, but f sees scalars (the accumulation type) and
// references for outputs. A full reduction is one fused grid-stride kernel that writes one
// partial per block into the workspace, and one single-block kernel that reduces the partials
// and writes the finished value (through a finaliser) to device memory: no host synchronisation.
#pragma once
#include <cub/block/block_reduce.cuh>
#include <cuda/std/tuple>
#include <cuda/std/utility>

#include <cstdint>
#include <tuple>

#include "kdloss/backend/cuda/runtime.cuh"
#include "kdloss/config.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/space.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda {

namespace detail {

template <class... V, std::size_t... K>
void collect_strides(const Dims& full, const std::tuple<V...>& views, std::int64_t (*rows)[kMaxRank],
                     std::index_sequence<K...>) {
  ((void)expr::broadcast_strides(std::get<K>(views), full, rows[K]), ...);
}
template <class... V, std::size_t... K>
auto data_pointers(const std::tuple<V...>& views, std::index_sequence<K...>) {
  return ::cuda::std::make_tuple(std::get<K>(views).data...);
}

template <class Acc, class F, class InPtrs, class OutPtrs, std::size_t... KI, std::size_t... KO>
__device__ __forceinline__ Acc eval_at(const expr::Space& space, F& f, const InPtrs& ins, const OutPtrs& outs,
                                       std::int64_t i, ::cuda::std::index_sequence<KI...>,
                                       ::cuda::std::index_sequence<KO...>) {
  constexpr std::size_t NI = sizeof...(KI);
  std::int64_t off[expr::kMaxOperands];
  space.offsets(i, off);
  Acc out_vals[sizeof...(KO) + 1];
  Acc contribution = Acc(0);
  using Result = decltype(f(load_as<Acc>(::cuda::std::get<KI>(ins) + off[KI])..., out_vals[KO]...));
  if constexpr (std::is_void_v<Result>) {
    f(load_as<Acc>(::cuda::std::get<KI>(ins) + off[KI])..., out_vals[KO]...);
  } else {
    contribution = static_cast<Acc>(f(load_as<Acc>(::cuda::std::get<KI>(ins) + off[KI])..., out_vals[KO]...));
  }
  (store_as(::cuda::std::get<KO>(outs) + off[NI + KO], out_vals[KO]), ...);
  return contribution;
}

template <class Acc, int NI, int NO, class F, class InPtrs, class OutPtrs>
__global__ void __launch_bounds__(kBlock)
    transform_reduce_kernel(expr::Space space, F f, InPtrs ins, OutPtrs outs, double* partials) {
  Acc local = Acc(0);
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < space.numel;
       i += step)
    local += eval_at<Acc>(space, f, ins, outs, i, ::cuda::std::make_index_sequence<NI>{},
                          ::cuda::std::make_index_sequence<NO>{});
  if (partials == nullptr) return;
  using Reduce = cub::BlockReduce<double, kBlock>;
  __shared__ typename Reduce::TempStorage temp;
  const double block_sum = Reduce(temp).Sum(static_cast<double>(local));
  if (threadIdx.x == 0) partials[blockIdx.x] = block_sum;
}

template <class Fin, class O>
__global__ void __launch_bounds__(kBlock) finalize_kernel(const double* partials, int count, Fin fin, O* out) {
  double local = 0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) local += partials[i];
  using Reduce = cub::BlockReduce<double, kBlock>;
  __shared__ typename Reduce::TempStorage temp;
  const double total = Reduce(temp).Sum(local);
  if (threadIdx.x == 0) store_as(out, fin(total));
}

template <class Acc, class F, class InPtrs, std::size_t... K>
__device__ __forceinline__ Acc eval_inputs(F& f, const InPtrs& ins, const std::int64_t* base, const std::int64_t* off,
                                           ::cuda::std::index_sequence<K...>) {
  return static_cast<Acc>(f(load_as<Acc>(::cuda::std::get<K>(ins) + base[K] + off[K])...));
}

template <class Acc, int NI, class F, class InPtrs, class O>
__global__ void __launch_bounds__(kBlock)
    reduce_thread_per_output_kernel(expr::Space kept, expr::Space reduced, F f, InPtrs ins, O* out) {
  // Grid-stride: grid_for caps the grid, so outputs past grid * block are reached by the loop.
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t o = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < kept.numel; o += step) {
    std::int64_t base[expr::kMaxOperands];
    kept.offsets(o, base);
    Acc acc = Acc(0);
    for (std::int64_t r = 0; r < reduced.numel; ++r) {
      std::int64_t off[expr::kMaxOperands];
      reduced.offsets(r, off);
      acc += eval_inputs<Acc>(f, ins, base, off, ::cuda::std::make_index_sequence<NI>{});
    }
    store_as(out + base[NI], acc);
  }
}

template <class Acc, int NI, class F, class InPtrs, class O>
__global__ void __launch_bounds__(kBlock)
    reduce_block_per_output_kernel(expr::Space kept, expr::Space reduced, F f, InPtrs ins, O* out) {
  using Reduce = cub::BlockReduce<Acc, kBlock>;
  __shared__ typename Reduce::TempStorage temp;
  for (std::int64_t o = blockIdx.x; o < kept.numel; o += gridDim.x) {
    std::int64_t base[expr::kMaxOperands];
    kept.offsets(o, base);
    Acc acc = Acc(0);
    for (std::int64_t r = threadIdx.x; r < reduced.numel; r += blockDim.x) {
      std::int64_t off[expr::kMaxOperands];
      reduced.offsets(r, off);
      acc += eval_inputs<Acc>(f, ins, base, off, ::cuda::std::make_index_sequence<NI>{});
    }
    const Acc total = Reduce(temp).Sum(acc);
    if (threadIdx.x == 0) store_as(out + base[NI], total);
    __syncthreads();  // temp is reused by the next output
  }
}

/// Sets an output element to zero (reduce_into over an empty axis).
struct SetZero {
  template <class A>
  __device__ void operator()(A& out) const {
    out = A(0);
  }
};
/// Finaliser of calls that store no reduced value.
struct NoFinalize {
  __host__ __device__ double operator()(double total) const { return total; }
};

template <class... I, class... O>
expr::Space space_of(const Dims& full, const std::tuple<View<const I>...>& ins, const std::tuple<View<O>...>& outs,
                     bool reorder) {
  constexpr int NI = sizeof...(I), NO = sizeof...(O);
  static_assert(NI + NO <= expr::kMaxOperands, "too many operands for one expression");
  std::int64_t strides[expr::kMaxOperands][kMaxRank] = {};
  collect_strides(full, ins, strides, std::make_index_sequence<NI>{});
  collect_strides(full, outs, strides + NI, std::make_index_sequence<NO>{});
  return expr::make_space(full, strides, NI + NO, reorder);
}

}  // namespace detail

/// GPU counterpart of cpu::transform_reduce. f(in_values..., out_refs...) sees Acc scalars.
/// When `result` is non-null, the sum of f's returns goes through `fin` and is stored to *result
/// on the device; `partials` (from carve_reduction) must then be valid.
template <class Acc, class F, class Fin, class R, class... I, class... O>
void transform_reduce(const Dims& full, F f, const std::tuple<View<const I>...>& ins,
                      const std::tuple<View<O>...>& outs, double* partials, Fin fin, R* result, cudaStream_t stream) {
  constexpr int NI = sizeof...(I), NO = sizeof...(O);
  const expr::Space space = detail::space_of(full, ins, outs, /*reorder=*/true);
  const bool reduce = result != nullptr;
  const int blocks = reduce ? reduce_blocks(space.numel) : grid_for(space.numel);
  if (space.numel > 0 || reduce) {
    detail::transform_reduce_kernel<Acc, NI, NO><<<blocks, kBlock, 0, stream>>>(
        space, f, detail::data_pointers(ins, std::make_index_sequence<NI>{}),
        detail::data_pointers(outs, std::make_index_sequence<NO>{}), reduce ? partials : nullptr);
    check_launch("transform_reduce_kernel");
  }
  if (reduce) {
    detail::finalize_kernel<<<1, kBlock, 0, stream>>>(partials, blocks, fin, result);
    check_launch("finalize_kernel");
  }
}

/// GPU counterpart of cpu::reduce_into (writes every output element; no zero fill needed).
template <class Acc, class F, class O, class... I>
void reduce_into(const Dims& full, F f, const std::tuple<View<const I>...>& ins, const View<O>& out,
                 cudaStream_t stream) {
  constexpr int NI = sizeof...(I);
  const expr::Space space = detail::space_of(full, ins, std::tuple<View<O>>{out}, /*reorder=*/false);
  if (out.numel() == 0) return;
  if (space.numel == 0) {
    // An empty reduced axis: every output is an empty sum. The merged space has rank 0 here, so
    // the split below would address only the first output.
    transform_reduce<Acc>(out.shape, detail::SetZero{}, std::tuple<>{}, std::tuple<View<O>>{out}, nullptr,
                          detail::NoFinalize{}, static_cast<double*>(nullptr), stream);
    return;
  }
  // Split the merged dimensions into those the output keeps and those it sums over.
  expr::Space kept, reduced;
  kept.operands = reduced.operands = space.operands;
  kept.numel = reduced.numel = 1;
  for (int d = 0; d < space.rank; ++d) {
    expr::Space& part = space.strides[NI][d] != 0 ? kept : reduced;
    part.shape[part.rank] = space.shape[d];
    for (int k = 0; k < space.operands; ++k) part.strides[k][part.rank] = space.strides[k][d];
    part.numel *= space.shape[d];
    ++part.rank;
  }
  auto ptrs = detail::data_pointers(ins, std::make_index_sequence<NI>{});
  // Long reductions over few outputs get a block each; otherwise one thread per output, which
  // reads coalesced when neighbouring outputs are neighbours in memory (e.g. mean over channels).
  if (reduced.numel >= 2048 && kept.numel < 65536) {
    detail::reduce_block_per_output_kernel<Acc, NI>
        <<<grid_for(kept.numel, 1), kBlock, 0, stream>>>(kept, reduced, f, ptrs, out.data);
  } else {
    detail::reduce_thread_per_output_kernel<Acc, NI>
        <<<grid_for(kept.numel), kBlock, 0, stream>>>(kept, reduced, f, ptrs, out.data);
  }
  check_launch("reduce_into");
}

} } }  // namespace kdloss::backend::cuda
