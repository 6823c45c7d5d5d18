// kdloss/losses/detr/distill_detail.hpp: small helpers shared by the DETRDistill losses (contrastive,
// feature_distillation, logits_distillation, query_prior): strided element access of rank-2/3/4 views with an
// optional leading layer axis, stand-in addresses for workspace queries, the scratch of calls that reject data
// while they run, the gradient-output checks, and two OpenMP loops (losses/ may not include backend/cpu).
// Internal (namespace detr::distill_detail).
#pragma once
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/basic.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace detr {
namespace distill_detail {

using ::kdloss::detail::Checker;
using ::kdloss::detail::require;

/// Element (i0, i1, ...) of a view given by pointer and strides.
template <class T>
T* at(const View<T>& v, std::int64_t i0, std::int64_t i1) {
  return v.data + i0 * v.strides[0] + i1 * v.strides[1];
}
template <class T>
T* at(const View<T>& v, std::int64_t i0, std::int64_t i1, std::int64_t i2) {
  return v.data + i0 * v.strides[0] + i1 * v.strides[1] + i2 * v.strides[2];
}
template <class T>
T* at(const View<T>& v, std::int64_t i0, std::int64_t i1, std::int64_t i2, std::int64_t i3) {
  return v.data + i0 * v.strides[0] + i1 * v.strides[1] + i2 * v.strides[2] + i3 * v.strides[3];
}

/// A rank-(r+1) view [K, ...] or a rank-r view seen as K = 1: the layer's element pointer offset.
template <class T>
std::int64_t layer_offset(const View<T>& v, int base_rank, std::int64_t k) {
  return v.rank() == base_rank + 1 ? k * v.strides[0] : 0;
}

/// A stand-in address, far from any mapping, for views a workspace query binds before memory exists (the
/// inner entries' checks want non-null, disjoint views; nothing is read or written through them).
template <class U>
U* stand_in(int lane) {
  return reinterpret_cast<U*>((std::uintptr_t{1} << 62) + (std::uintptr_t{1} << 56) * unsigned(lane));
}

/// The scratch of a call that can reject its data only while it runs (a NaN cost, found by the assignment): on
/// the host the call's own memory, so that a rejected call leaves the caller's workspace untouched as well as its
/// outputs (the contract the validation fuzzer checks); on the GPU, which reports such data in a status instead
/// of rejecting the call, the caller's workspace. running_scratch_bytes is what the workspace query reports.
inline std::size_t running_scratch_bytes(Device device, std::size_t bytes) { return device.is_host() ? 0 : bytes; }
inline void* running_scratch(const char* fn, Device device, const Workspace& ws, std::size_t bytes,
                             ::kdloss::detail::HostScratch& host) {
  return ::kdloss::detail::resolve_workspace(fn, device, device.is_host() ? Workspace{} : ws, bytes, host);
}


/// Work (elements touched) above which the host loops share their range among threads.
inline constexpr std::int64_t kParallelWork = std::int64_t{1} << 15;

/// f(i) for i in [0, n), threads sharing the range when n * work is large. f must not throw.
template <class F>
void each(std::int64_t n, std::int64_t work, F&& f) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n > 1 && n * work > kParallelWork)
#endif
  for (std::int64_t i = 0; i < n; ++i) f(i);
  (void)work;
}

/// sum_i f(i) with the terms computed in parallel and added in index order (bits independent of threads).
template <class F>
double ordered_sum(std::int64_t n, std::int64_t work, F&& f) {
  std::vector<double> part(static_cast<std::size_t>(n > 0 ? n : 0));
  each(n, work, [&](std::int64_t i) { part[static_cast<std::size_t>(i)] = f(i); });
  double s = 0;
  for (double v : part) s += v;
  return s;
}

/// A gradient output: present, shape `shape`, on `dev`, unique, disjoint from every input in `ins`.
template <class T, class... In>
void check_grad(const Checker& ck, const View<T>& g, const char* name, const Dims& shape, Device dev,
                const In&... ins) {
  if (absent(g)) return;
  ck.not_null(g, name);
  ck.shape(g, name, shape);
  ck.device(g, name, dev);
  ck.unique(g, name);
  (ck.disjoint(g, name, ins.first, ins.second), ...);
}

}  // namespace distill_detail
}  // namespace detr
} }  // namespace kdloss
