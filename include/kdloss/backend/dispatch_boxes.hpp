// kdloss/backend/dispatch_boxes.hpp: sends a box pass (an index space and a HOST_DEVICE functor, see
// expr/boxes.hpp) to the backend of the call's device, and sizes its scratch the same whether or not
// this translation unit has the CUDA backend.
#pragma once
#include <cstdint>

#include "kdloss/backend/cpu/boxes.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/boxes.hpp"

#if KDLOSS_CUDA_ENABLED
#include "kdloss/backend/cuda/boxes.cuh"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detail {

/// Runs `check`, a validation that reads input values (box coordinates), where the host can read them. A GPU
/// call does not read its inputs back (that would synchronise): the entry documents how such data shows in
/// its results.
template <class F>
void check_values_on_host(Device device, F check) {
  if (device.is_host()) check();
}

/// Runs f(i) for i in [0, n) on `device` (f writes item i's outputs and returns its contribution);
/// when `result` is non-null stores fin(sum) there, on the same device. `partials`: carve_reduction(n).
/// T: the element type of the call (the host runs float and double only).
template <class T, class F, class Fin, class R>
void box_index_sum(Device device, Stream stream, std::int64_t n, std::int64_t work_per_item, F f, double* partials,
                   Fin fin, R* result) {
  if (device.is_host()) {
    if constexpr (host_types_v<T>) {
      const double total = backend::cpu::boxes::index_sum(n, work_per_item, f);
      if (result) *result = static_cast<R>(fin(total));
    }
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::boxes::index_sum(n, f, partials, fin, result, backend::cuda::stream_of(stream));
#else
  (void)stream;
  (void)partials;
  (void)fin;
  (void)result;
  (void)f;
  (void)n;
  (void)work_per_item;
#endif
}

/// f(i) for i in [0, n), no sum.
template <class T, class F>
void box_index_for(Device device, Stream stream, std::int64_t n, std::int64_t work_per_item, F f) {
  box_index_sum<T>(device, stream, n, work_per_item, f, nullptr, Keep{}, static_cast<double*>(nullptr));
}

/// f(i) for i in [0, n) on a GPU; on the host the functor make_host() returns (host code only: it may
/// prepare shared inputs first), run for i in [0, host_n), so that a host pass can be organised by rows.
template <class T, class F, class MakeHost>
void box_index_for_host_rows(Device device, Stream stream, std::int64_t n, std::int64_t work_per_item, F f,
                             std::int64_t host_n, std::int64_t host_work_per_item, MakeHost make_host) {
  if (device.is_host()) {
    if constexpr (host_types_v<T>) backend::cpu::boxes::index_sum(host_n, host_work_per_item, make_host());
    return;
  }
  box_index_for<T>(device, stream, n, work_per_item, f);
}

/// box_index_sum with the host organised by rows, as box_index_for_host_rows: a GPU sums f over [0, n); the host
/// sums the functor make_host() returns over [0, host_n). Either way fin(sum) is stored to `result`.
template <class T, class F, class MakeHost, class Fin, class R>
void box_index_sum_host_rows(Device device, Stream stream, std::int64_t n, std::int64_t work_per_item, F f,
                             std::int64_t host_n, std::int64_t host_work_per_item, MakeHost make_host, double* partials,
                             Fin fin, R* result) {
  if (device.is_host()) {
    if constexpr (host_types_v<T>) {
      const double total = backend::cpu::boxes::index_sum(host_n, host_work_per_item, make_host());
      if (result) *result = static_cast<R>(fin(total));
    }
    return;
  }
  box_index_sum<T>(device, stream, n, work_per_item, f, partials, fin, result);
}

} } }  // namespace kdloss::detail
