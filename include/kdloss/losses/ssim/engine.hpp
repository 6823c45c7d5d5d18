// kdloss/losses/ssim/engine.hpp: what every SSIM entry point shares: validation of inputs and
// options, the filter plans, workspace carving, and dispatch of engine passes and small per-plane
// steps to the backend of the call's device (no host synchronisation on the GPU).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "kdloss/backend/cpu/ssim.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/types.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/losses/ssim/head.hpp"
#include "kdloss/losses/ssim/options.hpp"
#include "kdloss/ops/filter_plan.hpp"
#include "kdloss/ops/gaussian.hpp"

#if KDLOSS_CUDA_ENABLED
#include "kdloss/backend/cuda/ssim.cuh"
#endif

namespace kdloss::ssim_detail {

using kdloss::detail::Carver;
using kdloss::detail::Checker;
using kdloss::detail::require;
using ops::detail::AxisPlan;

template <class T>
void strides4(const View<T>& v, std::int64_t* s) {
  for (int d = 0; d < 4; ++d) s[d] = v.strides[d];
}

/// What an entry point computes: the value, the gradient for an upstream gradient, or both.
enum class Mode { forward, backward, fused };

// ---- validation ----

template <class T>
void check_pair(const Checker& ck, const View<const T>& s, const View<const T>& t, const char* a = "student",
                const char* b = "teacher") {
  ck.rank(s, a, 4);
  ck.not_null(s, a);
  ck.not_null(t, b);
  ck.same_shape(s, a, t, b);
  ck.device(t, b, s.device);
  require(s.shape[2] >= 1 && s.shape[3] >= 1, ck.fn, ": argument '", a, "' with shape ", s.shape.str(),
          " has an empty spatial extent");
  kdloss::detail::require_backend<T>(ck.fn, s.device);
}
template <class T>
void check_grad(const Checker& ck, const View<const T>& s, const View<T>& g, const char* arg,
                const View<const T>& x, const View<const T>& y, const char* x_name = "student",
                const char* y_name = "teacher") {
  ck.not_null(g, arg);
  ck.shape(g, arg, s.shape);
  ck.device(g, arg, s.device);
  ck.unique(g, arg);
  ck.disjoint(g, arg, x, x_name);
  ck.disjoint(g, arg, y, y_name);
}
using ::kdloss::present;  // core/entry.hpp: the one test for an optional view

inline void check_common(const Checker& ck, int window, double sigma, double k1, double k2) {
  ops::detail::check_window(ck.fn, window, sigma);
  require(k1 > 0 && std::isfinite(k1), ck.fn, ": option 'k1' must be finite and > 0 but is ", k1);
  require(k2 > 0 && std::isfinite(k2), ck.fn, ": option 'k2' must be finite and > 0 but is ", k2);
}
inline void check_options(const Checker& ck, const SsimOptions& o) {
  check_common(ck, o.window_size, o.sigma, o.k1, o.k2);
  require(o.max_val > 0 && std::isfinite(o.max_val), ck.fn, ": option 'max_val' must be finite and > 0 but is ",
          o.max_val);
  require(o.alpha >= 0 && std::isfinite(o.alpha), ck.fn, ": option 'alpha' must be finite and >= 0 but is ", o.alpha);
  require(o.beta >= 0 && std::isfinite(o.beta), ck.fn, ": option 'beta' must be finite and >= 0 but is ", o.beta);
  require(o.gamma >= 0 && std::isfinite(o.gamma), ck.fn, ": option 'gamma' must be finite and >= 0 but is ", o.gamma);
  require(o.eps >= 0 && std::isfinite(o.eps), ck.fn, ": option 'eps' must be finite and >= 0 but is ", o.eps);
}

// ---- plans ----

/// Row and column plans of kornia-style filtering (the same window on both axes).
inline void plan_axes(const Checker& ck, const Dims& shape, const SsimOptions& o, AxisPlan& rows, AxisPlan& cols) {
  if (o.padding == ops::Padding::valid)
    require(shape[2] >= o.window_size && shape[3] >= o.window_size, ck.fn, ": 'valid' padding needs maps of at least ",
            o.window_size, "x", o.window_size, " (the window) but the inputs have shape ", shape.str());
  const auto w = ops::gaussian_window(o.window_size, o.sigma);
  rows = ops::detail::make_axis(shape[2], w, o.padding);
  cols = ops::detail::make_axis(shape[3], w, o.padding);
}
/// pytorch-msssim: valid along an axis at least as long as the window, no smoothing otherwise.
inline AxisPlan msssim_axis(std::int64_t n, const std::vector<double>& w) {
  return n >= static_cast<std::int64_t>(w.size()) ? ops::detail::make_axis(n, w, ops::Padding::valid)
                                                  : ops::detail::identity_axis(n);
}

inline Head make_head(const SsimOptions& o, ValueKind kind) {
  Head h;
  h.c1 = (o.k1 * o.max_val) * (o.k1 * o.max_val);
  h.c2 = (o.k2 * o.max_val) * (o.k2 * o.max_val);
  h.c3 = h.c2 / 2;
  h.eps = o.eps;
  h.alpha = o.alpha, h.beta = o.beta, h.gamma = o.gamma;
  h.set_kind(kind);
  return h;
}
inline Form form_of(const SsimOptions& o) {
  return (o.three_component || o.alpha != 1.0 || o.beta != 1.0 || o.gamma != 1.0) ? Form::three : Form::two_factor;
}
inline Head msssim_head(const MsSsimOptions& o) {
  Head h;
  h.c1 = (o.k1 * o.data_range) * (o.k1 * o.data_range);
  h.c2 = (o.k2 * o.data_range) * (o.k2 * o.data_range);
  h.c3 = h.c2 / 2;
  h.eps = 0;
  h.set_kind(ValueKind::index);
  return h;
}

// ---- workspace ----

/// Host rows of the engine: max_threads() * thread_scratch elements of the accumulation type.
template <class Acc>
Acc* carve_rows(Carver& carver, Device device, const AxisPlan& rows, const AxisPlan& cols) {
  if (!device.is_host()) return nullptr;
  const std::int64_t n = backend::cpu::ssim::thread_scratch(rows, cols) * backend::cpu::filter::max_threads();
  return carver.take<Acc>(static_cast<std::size_t>(n));
}
/// Per-block partial sums of a forward pass on the GPU (none on the host).
template <class Acc>
double* carve_blocks(Carver& carver, Device device, const AxisPlan& rows, const AxisPlan& cols, std::int64_t planes) {
  if (device.is_host()) return nullptr;
  return carver.take<double>(static_cast<std::size_t>(gpu_forward_blocks(rows, cols, planes, sizeof(Acc))));
}

// ---- dispatch ----

template <class In, class G>
void run_pass(Device device, Stream stream, const Pass<In, G>& P, void* host_rows, double* blocks) {
  if (P.planes() == 0) return;
  if (device.is_host()) {
    if constexpr (kdloss::detail::host_types_v<In, G>)
      backend::cpu::ssim::run(P, static_cast<acc_t<G>*>(host_rows));
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::ssim::run(P, blocks, backend::cuda::stream_of(stream));
#else
  (void)stream, (void)blocks;
#endif
}

/// *out = offset + scale * sum of vals[0, n) (on the call's device).
template <class O>
void store_sum(Device device, Stream stream, const double* vals, std::int64_t n, double scale, O* out,
               double offset = 0) {
  if (device.is_host()) {
    if constexpr (kdloss::detail::host_types_v<O>) {
      double t = 0;
      for (std::int64_t i = 0; i < n; ++i) t += vals[i];
      *out = static_cast<O>(offset + t * scale);
    }
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::ssim::store_sum(vals, n, scale, offset, out, backend::cuda::stream_of(stream));
#else
  (void)stream;
#endif
}

/// f(i) for i in [0, n), on the call's device (f is a KDLOSS_HOST_DEVICE functor).
template <class F>
void for_each(Device device, Stream stream, std::int64_t n, F f) {
  if (n <= 0) return;
  if (device.is_host()) {
    for (std::int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::ssim::for_each(n, f, backend::cuda::stream_of(stream));
#else
  (void)stream;
#endif
}

template <class In>
void norm_stats(Device device, Stream stream, const View<const In>& x, const View<const In>& y, NormStats* out) {
  std::int64_t xs[4], ys[4];
  strides4(x, xs);
  strides4(y, ys);
  const Dims& d = x.shape;
  if (d[0] * d[1] == 0) return;
  if (device.is_host()) {
    if constexpr (kdloss::detail::host_types_v<In>)
      backend::cpu::ssim::norm_stats(d[0], d[1], d[2], d[3], x.data, xs, y.data, ys, out);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::ssim::norm_stats(d[0], d[1], d[2], d[3], x.data, xs, y.data, ys, out, backend::cuda::stream_of(stream));
#else
  (void)stream;
#endif
}

template <class In, class G>
void norm_backward(Device device, Stream stream, const View<const In>& v, const View<G>& g, const NormStats* norm,
                   int which) {
  std::int64_t vs[4], gs[4];
  strides4(v, vs);
  strides4(g, gs);
  const Dims& d = v.shape;
  if (d[0] * d[1] == 0) return;
  if (device.is_host()) {
    if constexpr (kdloss::detail::host_types_v<In, G>)
      backend::cpu::ssim::norm_backward(d[0], d[1], d[2], d[3], v.data, vs, g.data, gs, norm, which);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::ssim::norm_backward(d[0], d[1], d[2], d[3], v.data, vs, g.data, gs, norm, which,
                                     backend::cuda::stream_of(stream));
#else
  (void)stream;
#endif
}

/// 2x2 average pool (MS-SSIM) of a [B, C, H, W] input given by pointer and strides into a
/// contiguous [B*C, Ho, Wo] buffer of the accumulation type.
template <class In, class A>
void avg_pool(Device device, Stream stream, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
              const In* v, const std::int64_t* vs, const NormStats* norm, int which, A* out, std::int64_t Ho,
              std::int64_t Wo) {
  if (B * C == 0) return;
  if (device.is_host()) {
    if constexpr (kdloss::detail::host_types_v<In, A>)
      backend::cpu::ssim::avg_pool(B, C, H, W, v, vs, norm, which, out, Ho, Wo);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::ssim::avg_pool(B, C, H, W, v, vs, norm, which, out, Ho, Wo, backend::cuda::stream_of(stream));
#else
  (void)stream;
#endif
}

template <class In>
void l1_plane_sums(Device device, Stream stream, const View<const In>& x, const View<const In>& y,
                   const NormStats* norm, double* sums, double scale) {
  std::int64_t xs[4], ys[4];
  strides4(x, xs);
  strides4(y, ys);
  const Dims& d = x.shape;
  if (d[0] * d[1] == 0) return;
  if (device.is_host()) {
    if constexpr (kdloss::detail::host_types_v<In>)
      backend::cpu::ssim::l1_plane_sums(d[0], d[1], d[2], d[3], x.data, xs, y.data, ys, norm, sums, scale);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::ssim::l1_plane_sums(d[0], d[1], d[2], d[3], x.data, xs, y.data, ys, norm, sums, scale,
                                     backend::cuda::stream_of(stream));
#else
  (void)stream;
#endif
}

}  // namespace kdloss::ssim_detail
