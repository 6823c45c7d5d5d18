// kdloss/backend/dispatch_window.hpp: sends the windowed passes (expr/filter.hpp,
// expr/window_stats.hpp) and the small per-plane passes to the backend of the call's device, and
// sizes their scratch the same whether or not this translation unit has the CUDA backend. The
// companion of dispatch.hpp: the code above this layer is written once for both backends.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kdloss/backend/cpu/planes.hpp"
#include "kdloss/backend/cpu/separable_filter.hpp"
#include "kdloss/backend/cpu/window_stats.hpp"
#include "kdloss/backend/cuda/window_stats_geometry.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/filter.hpp"
#include "kdloss/expr/window_stats.hpp"

#if KDLOSS_CUDA_ENABLED
#include "kdloss/backend/cuda/planes.cuh"
#include "kdloss/backend/cuda/separable_filter.cuh"
#include "kdloss/backend/cuda/window_stats.cuh"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detail {

#if KDLOSS_CUDA_ENABLED
#define KDLOSS_DISPATCH_CUDA(device, ...)      \
  do {                                         \
    backend::cuda::DeviceGuard guard(device);  \
    __VA_ARGS__;                               \
  } while (0)
#endif

// ---- windowed statistics ----

/// Scratch of windowed-statistics passes: per-thread rows on the host, per-block partial sums on
/// the GPU.
struct WindowScratch {
  void* host_rows = nullptr;
  double* partials = nullptr;
};
/// Carves scratch enough for a pass over any of the `levels` plan pairs (rows[i], cols[i]) with
/// `planes` planes, accumulating in Acc.
template <class Acc>
WindowScratch carve_window_stats(Carver& carver, Device device, const expr::AxisPlan* rows,
                                 const expr::AxisPlan* cols, int levels, std::int64_t planes) {
  WindowScratch s;
  std::int64_t n = 0;
  for (int i = 0; i < levels; ++i)
    n = std::max(n, device.is_host() ? backend::cpu::window_stats::thread_scratch(rows[i], cols[i])
                                     : backend::cuda::window_stats::partial_count(rows[i], cols[i], planes,
                                                                                  sizeof(Acc)));
  if (device.is_host())
    s.host_rows = carver.take<Acc>(static_cast<std::size_t>(n * backend::cpu::max_threads()));
  else
    s.partials = carver.take<double>(static_cast<std::size_t>(n));
  return s;
}

/// Runs one windowed-statistics pass on `device`.
template <class In, class G, class H>
void window_stats(Device device, Stream stream, const expr::WindowStatsPass<In, G, H>& P, const WindowScratch& s) {
  if (P.planes() == 0) return;
  if (device.is_host()) {
    if constexpr (host_types_v<In, G>) backend::cpu::window_stats::run(P, static_cast<acc_t<G>*>(s.host_rows));
    return;
  }
#if KDLOSS_CUDA_ENABLED
  KDLOSS_DISPATCH_CUDA(device, backend::cuda::window_stats::run(P, s.partials, backend::cuda::stream_of(stream)));
#else
  (void)stream;
#endif
}

// ---- separable filter ----

/// Scratch of a separable filter (or its adjoint) over `planes` planes: per-thread plane rows on
/// the host, one [planes, rows.n_in, cols.n_out] buffer on the GPU.
template <class Acc>
Acc* carve_separable_filter(Carver& carver, Device device, const expr::AxisPlan& rows, const expr::AxisPlan& cols,
                            std::int64_t planes) {
  if (device.is_host())
    return carver.take<Acc>(
        static_cast<std::size_t>(backend::cpu::filter::plane_scratch(rows, cols) * backend::cpu::max_threads()));
  return carver.take<Acc>(static_cast<std::size_t>(planes * rows.n_in * cols.n_out));
}

/// out = rows(cols(x)) (adjoint: grad = cols^T(rows^T(g))) over the B*C planes; strides in elements.
template <class A, class X, class O>
void separable_filter(Device device, Stream stream, const expr::AxisPlan& rows, const expr::AxisPlan& cols,
                      bool adjoint, std::int64_t B, std::int64_t C, const X* x, const std::int64_t* xs, O* out,
                      const std::int64_t* os, A* tmp) {
  if (B * C == 0) return;
  if (device.is_host()) {
    if constexpr (host_types_v<X, O>) backend::cpu::filter::run(rows, cols, adjoint, B, C, x, xs, out, os, tmp);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  const backend::cuda::filter::PlaneStrides is{{xs[0], xs[1], xs[2], xs[3]}}, ost{{os[0], os[1], os[2], os[3]}};
  if (adjoint)
    KDLOSS_DISPATCH_CUDA(device, backend::cuda::filter::filter_adjoint(rows, cols, B, C, x, is, out, ost, tmp,
                                                                       backend::cuda::stream_of(stream)));
  else
    KDLOSS_DISPATCH_CUDA(device, backend::cuda::filter::filter(rows, cols, B, C, x, is, out, ost, tmp,
                                                               backend::cuda::stream_of(stream)));
#else
  (void)stream;
#endif
}

// ---- per-plane passes over [B, C, H, W] inputs given by pointer and element strides ----

/// out[p] = the min-max normalisation of plane p of x and of y (expr::MinMaxNorm).
template <class In>
void minmax_norm(Device device, Stream stream, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
                 const In* x, const std::int64_t* xs, const In* y, const std::int64_t* ys, expr::MinMaxNorm* out) {
  if (B * C == 0) return;
  if (device.is_host()) {
    if constexpr (host_types_v<In>) backend::cpu::planes::minmax_norm(B, C, H, W, x, xs, y, ys, out);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  KDLOSS_DISPATCH_CUDA(device, backend::cuda::planes::minmax_norm(B, C, H, W, x, xs, y, ys, out,
                                                                  backend::cuda::stream_of(stream)));
#else
  (void)stream;
#endif
}

/// g = d/d nu(v) becomes d/d v in place (input `which` of the normalisation).
template <class In, class G>
void minmax_norm_backward(Device device, Stream stream, std::int64_t B, std::int64_t C, std::int64_t H,
                          std::int64_t W, const In* v, const std::int64_t* vs, G* g, const std::int64_t* gs,
                          const expr::MinMaxNorm* norm, int which) {
  if (B * C == 0) return;
  if (device.is_host()) {
    if constexpr (host_types_v<In, G>)
      backend::cpu::planes::minmax_norm_backward(B, C, H, W, v, vs, g, gs, norm, which);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  KDLOSS_DISPATCH_CUDA(device, backend::cuda::planes::minmax_norm_backward(B, C, H, W, v, vs, g, gs, norm, which,
                                                                           backend::cuda::stream_of(stream)));
#else
  (void)stream;
#endif
}

/// 2x2 average pool with padding (H % 2, W % 2), zeros counted, of nu(v) (norm may be null) into a
/// contiguous [B*C, Ho, Wo] buffer.
template <class In, class A>
void avg_pool2x2(Device device, Stream stream, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
                 const In* v, const std::int64_t* vs, const expr::MinMaxNorm* norm, int which, A* out, std::int64_t Ho,
                 std::int64_t Wo) {
  if (B * C == 0) return;
  if (device.is_host()) {
    if constexpr (host_types_v<In, A>) backend::cpu::planes::avg_pool2x2(B, C, H, W, v, vs, norm, which, out, Ho, Wo);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  KDLOSS_DISPATCH_CUDA(device, backend::cuda::planes::avg_pool2x2(B, C, H, W, v, vs, norm, which, out, Ho, Wo,
                                                                  backend::cuda::stream_of(stream)));
#else
  (void)stream;
#endif
}

/// sums[p] = scale * sum over plane p of |nu(x) - nu(y)| (norm may be null).
template <class In>
void abs_diff_sums(Device device, Stream stream, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
                   const In* x, const std::int64_t* xs, const In* y, const std::int64_t* ys,
                   const expr::MinMaxNorm* norm, double* sums, double scale) {
  if (B * C == 0) return;
  if (device.is_host()) {
    if constexpr (host_types_v<In>) backend::cpu::planes::abs_diff_sums(B, C, H, W, x, xs, y, ys, norm, sums, scale);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  KDLOSS_DISPATCH_CUDA(device, backend::cuda::planes::abs_diff_sums(B, C, H, W, x, xs, y, ys, norm, sums, scale,
                                                                    backend::cuda::stream_of(stream)));
#else
  (void)stream;
#endif
}

/// f(i) for i in [0, n), on the call's device (f is a KDLOSS_HOST_DEVICE functor).
template <class F>
void for_each_index(Device device, Stream stream, std::int64_t n, F f) {
  if (n <= 0) return;
  if (device.is_host()) {
    if constexpr (KDLOSS_HOST_BACKEND_ENABLED) backend::cpu::planes::for_each_index(n, f);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  KDLOSS_DISPATCH_CUDA(device, backend::cuda::planes::for_each_index(n, f, backend::cuda::stream_of(stream)));
#else
  (void)stream;
#endif
}

/// *out = fin(sum of vals[0, n)), vals and out on the call's device: the scalar epilogue (the same
/// finaliser functors as transform_reduce's: Keep, Scale, or any KDLOSS_HOST_DEVICE double -> double).
template <class Fin, class O>
void store_sum(Device device, Stream stream, const double* vals, std::int64_t n, Fin fin, O* out) {
  if (device.is_host()) {
    if constexpr (host_types_v<O>) backend::cpu::planes::store_sum(vals, n, fin, out);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  KDLOSS_DISPATCH_CUDA(device, backend::cuda::planes::store_sum(vals, n, fin, out, backend::cuda::stream_of(stream)));
#else
  (void)stream;
#endif
}

#if KDLOSS_CUDA_ENABLED
#undef KDLOSS_DISPATCH_CUDA
#endif

} } }  // namespace kdloss::detail
