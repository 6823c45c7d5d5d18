// kdloss/backend/dispatch.hpp: sends one evaluation to the backend of the device its views live on.
// The loss code above this layer is written once for both backends.
#pragma once
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include "kdloss/backend/cpu/executor.hpp"
#include "kdloss/backend/cpu/parallel.hpp"
#include "kdloss/backend/cpu/pooling.hpp"
#include "kdloss/backend/cpu/rowwise.hpp"
#include "kdloss/backend/cuda/launch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/pool.hpp"

#if KDLOSS_CUDA_ENABLED
#include "kdloss/backend/cuda/executor.cuh"
#include "kdloss/backend/cuda/rowwise.cuh"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detail {

/// Element types the host backend supports (half and bfloat16 are GPU-only).
template <class... Ts>
inline constexpr bool host_element_types_v =
    ((std::is_same_v<std::remove_cv_t<Ts>, float> || std::is_same_v<std::remove_cv_t<Ts>, double>)&&...);

/// Element types the host backend of this translation unit computes in: none where it was compiled with
/// KDLOSS_DISABLE_HOST_BACKEND. Every host branch of the dispatch layer is guarded by it.
template <class... Ts>
inline constexpr bool host_types_v = KDLOSS_HOST_BACKEND_ENABLED && host_element_types_v<Ts...>;

/// Fails when a call on the GPU reaches a translation unit that nvcc did not compile, or a
/// host call gets an element type only the GPU backend has.
template <class T>
void require_backend(const char* fn, Device device) {
#if !KDLOSS_CUDA_ENABLED
  require(device.is_host(), fn, ": the views are on ", device.str(),
          " but this translation unit was compiled without CUDA; compile it with nvcc and link kdloss::cuda");
#endif
#if !KDLOSS_HOST_BACKEND_ENABLED
  require(!device.is_host(), fn, ": the views are on host but this translation unit was compiled with ",
          "KDLOSS_DISABLE_HOST_BACKEND (GPU calls only); make host calls from a file without it");
#endif
  if constexpr (!host_element_types_v<T>)
    require(!device.is_host(), fn, ": half and bfloat16 views are supported on the GPU only; the views are on ",
            device.str());
  (void)fn;
  (void)device;
}

/// Threads a host-only step of an op may use: its per-thread scratch is carved for this many.
inline int host_threads() { return backend::cpu::max_threads(); }

/// f(task) for every task in [0, tasks) on the host threads, each task on one thread, in parallel when
/// the step touches more than backend::cpu::kParallelThreshold elements (`work`).
template <class F>
void host_run_tasks(std::int64_t tasks, std::int64_t work, F&& f) {
  backend::cpu::run_tasks(tasks, work > backend::cpu::kParallelThreshold, std::forward<F>(f));
}

/// Scratch of a full reduction: per-block partial sums on the GPU, nothing on the host.
/// Sized the same whether or not this translation unit has the CUDA backend.
inline double* carve_reduction(Carver& carver, Device device, std::int64_t numel) {
  if (device.is_host()) return nullptr;
  return carver.take<double>(static_cast<std::size_t>(backend::cuda::reduce_blocks(numel)));
}

/// Scratch of a reduced row operation over `rows` rows of `length` elements.
inline double* carve_rowwise(Carver& carver, Device device, std::int64_t rows, std::int64_t length) {
  if (device.is_host()) return nullptr;
  return carver.take<double>(static_cast<std::size_t>(backend::cuda::rowwise_blocks(rows, length)));
}

/// A few doubles a call keeps between its passes (a norm, per-level sums): carved from the workspace on
/// the GPU, where later kernels read them, and held in the object itself on the host, so the code that
/// uses them has no device branch.
template <int N>
class ScalarSlots {
 public:
  ScalarSlots(Carver& carver, Device device)
      : device_(device.is_host() ? nullptr : carver.take<double>(static_cast<std::size_t>(N))) {}
  double* get(int i = 0) { return device_ ? device_ + i : host_ + i; }

 private:
  double* device_;
  double host_[N] = {};
};

/// Identity finaliser: the reduced sum as it is.
struct Keep {
  KDLOSS_HOST_DEVICE double operator()(double total) const { return total; }
};
/// Multiplies the reduced sum by a constant (means, loss weights).
struct Scale {
  double factor;
  KDLOSS_HOST_DEVICE double operator()(double total) const { return total * factor; }
};

/// Evaluates f over `full` on `device`: writes `outs`, and when `result` is non-null stores
/// fin(sum of f) to *result, a pointer on the same device (no host round trip on the GPU).
/// `Acc` is the GPU accumulation type; host code accumulates chunks in their element type and
/// the chunk sums in double.
template <class Acc, class F, class Fin, class R, class... I, class... O>
void transform_reduce(Device device, Stream stream, const Dims& full, F f, const std::tuple<View<const I>...>& ins,
                      const std::tuple<View<O>...>& outs, double* partials, Fin fin, R* result) {
  if (device.is_host()) {
    if constexpr (host_types_v<I..., O..., R>) {
      const double total = backend::cpu::transform_reduce(full, f, ins, outs);
      if (result) *result = static_cast<R>(fin(total));
    }
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::transform_reduce<Acc>(full, f, ins, outs, partials, fin, result,
                                       backend::cuda::stream_of(stream));
#else
  (void)stream;
  (void)partials;
#endif
}

/// Elementwise map without a reduction.
template <class Acc, class F, class... I, class... O>
void transform(Device device, Stream stream, const Dims& full, F f, const std::tuple<View<const I>...>& ins,
               const std::tuple<View<O>...>& outs) {
  transform_reduce<Acc>(device, stream, full, f, ins, outs, nullptr, Keep{}, static_cast<double*>(nullptr));
}

/// out[kept] = sum over the axes where out has extent 1 of f(ins) broadcast to `full`.
template <class Acc, class F, class O, class... I>
void reduce_into(Device device, Stream stream, const Dims& full, F f, const std::tuple<View<const I>...>& ins,
                 const View<O>& out) {
  if (device.is_host()) {
    if constexpr (host_types_v<I..., O>) backend::cpu::reduce_into(full, f, ins, out);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::reduce_into<Acc>(full, f, ins, out, backend::cuda::stream_of(stream));
#else
  (void)stream;
#endif
}

/// For every term: term.out = sum over term.axis of term.f(ins...) over the [B,C,H,W] space `full`
/// (null outputs skipped). The host reads the inputs once for all terms; the GPU runs one partial
/// reduction per term (each reads only what its functor uses).
template <class Acc, class... I, class... F, class... O>
void pool_sums(Device device, Stream stream, const Dims& full, const std::tuple<View<const I>...>& ins,
               const std::tuple<expr::PoolTerm<F, O>...>& terms) {
  if (device.is_host()) {
    if constexpr (host_types_v<I..., O...>) backend::cpu::pool_sums(full, ins, terms);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  std::apply(
      [&](const auto&... term) {
        ((term.out.data ? backend::cuda::reduce_into<Acc>(full, term.f, ins, term.out, backend::cuda::stream_of(stream))
                        : void()),
         ...);
      },
      terms);
#else
  (void)stream;
#endif
}

/// Runs `op` on every row of `full` along `axis` (see ops/softmax.hpp for the row interface);
/// when `result` is non-null, stores fin(sum of the row results) there (device memory on the GPU).
template <class Acc, class Op, class Fin, class R, class... I, class... O>
void rowwise(Device device, Stream stream, const Dims& full, int axis, Op op, const std::tuple<View<const I>...>& ins,
             const std::tuple<View<O>...>& outs, double* partials, Fin fin, R* result) {
  if (device.is_host()) {
    if constexpr (host_types_v<I..., O..., R>) {
      const double total = backend::cpu::rowwise<Acc>(full, axis, op, ins, outs);
      if (result) *result = static_cast<R>(fin(total));
    }
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::rowwise<Acc>(full, axis, op, ins, outs, partials, fin, result, backend::cuda::stream_of(stream));
#else
  (void)stream;
  (void)partials;
#endif
}

} } }  // namespace kdloss::detail
