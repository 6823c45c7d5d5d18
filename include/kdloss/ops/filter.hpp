// kdloss/ops/filter.hpp: the separable Gaussian window filter of the SSIM family as an op of its
// own, forward and adjoint, depthwise over the last two dimensions: 'same' size with reflection
// (numpy/PyTorch 'reflect', kornia's default) or zeros, or 'valid'. Plans: ops/filter_plan.hpp.
//
// The backward is the exact adjoint: for 'reflect' it correlates the zero-padded gradient with the
// window and folds the halo back onto the pixels it was read from; for 'valid' it zero-pads the
// cropped gradient (reference section 3.1).
#pragma once
#include <algorithm>
#include <cstdint>

#include "kdloss/backend/cpu/ssim_filter.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/ops/filter_plan.hpp"
#include "kdloss/ops/gaussian.hpp"

#if KDLOSS_CUDA_ENABLED
#include "kdloss/backend/cuda/ssim_filter.cuh"
#endif

namespace kdloss::ops {

/// Window and padding of gaussian_filter.
struct FilterOptions {
  int window_size = 11;  ///< odd, 3 to 15
  double sigma = 1.5;    ///< > 0
  Padding padding = Padding::reflect;
};

namespace detail {

/// A [..., H, W] view (rank 2 to 4) seen as [B, C, H, W].
template <class T>
View<T> as_planes(const View<T>& v) {
  if (v.rank() == 4) return v;
  Dims shape{1, 1, 1, 1}, strides{0, 0, 0, 0};
  const int lead = 4 - v.rank();
  for (int d = 0; d < v.rank(); ++d) shape[lead + d] = v.shape[d], strides[lead + d] = v.strides[d];
  return v.with(shape, strides);
}

inline void plan_filter(const kdloss::detail::Checker& ck, const Dims& in, const FilterOptions& o, AxisPlan& rows,
                        AxisPlan& cols) {
  check_window(ck.fn, o.window_size, o.sigma);
  const std::int64_t H = in[in.rank - 2], W = in[in.rank - 1];
  kdloss::detail::require(H >= 1 && W >= 1, ck.fn, ": the input ", in.str(), " has an empty spatial extent");
  if (o.padding == Padding::valid)
    kdloss::detail::require(H >= o.window_size && W >= o.window_size, ck.fn, ": 'valid' padding needs maps of at least ",
                            o.window_size, "x", o.window_size, " (the window) but the input has shape ", in.str());
  const auto w = gaussian_window(o.window_size, o.sigma);
  rows = make_axis(H, w, o.padding);
  cols = make_axis(W, w, o.padding);
}

inline Dims filtered_shape(const Dims& in, const AxisPlan& rows, const AxisPlan& cols) {
  Dims d = in;
  d[d.rank - 2] = rows.n_out;
  d[d.rank - 1] = cols.n_out;
  return d;
}

template <class Acc>
Acc* carve_filter(kdloss::detail::Carver& carver, Device device, const AxisPlan& rows, const AxisPlan& cols,
                  std::int64_t planes) {
  if (device.is_host())
    return carver.take<Acc>(static_cast<std::size_t>(backend::cpu::filter::plane_scratch(rows, cols) *
                                                     backend::cpu::filter::max_threads()));
  return carver.take<Acc>(static_cast<std::size_t>(planes * rows.n_in * cols.n_out));
}

template <class T>
void filter_call(const char* fn, bool adjoint, View<const T> in, View<T> out, const FilterOptions& o,
                 const Exec& exec) {
  const kdloss::detail::Checker ck{fn};
  const char* in_name = adjoint ? "grad_out" : "x";
  const char* out_name = adjoint ? "grad_x" : "out";
  ck.rank_between(in, in_name, 2, 4);
  ck.rank_between(out, out_name, 2, 4);
  ck.not_null(in, in_name);
  ck.not_null(out, out_name);
  ck.device(out, out_name, in.device);
  kdloss::detail::require_backend<T>(fn, in.device);
  AxisPlan rows, cols;
  const Dims& full = adjoint ? out.shape : in.shape;  // the unfiltered shape
  plan_filter(ck, full, o, rows, cols);
  ck.shape(adjoint ? in : View<const T>(out), adjoint ? in_name : out_name, filtered_shape(full, rows, cols));
  ck.unique(out, out_name);
  ck.disjoint(out, out_name, in, in_name);
  const View<const T> in4 = as_planes(in);
  const View<T> out4 = as_planes(out);
  const std::int64_t B = in4.shape[0], C = in4.shape[1], planes = B * C;
  using Acc = acc_t<T>;
  kdloss::detail::Carver sizer;
  carve_filter<Acc>(sizer, in.device, rows, cols, planes);
  kdloss::detail::HostScratch scratch;
  kdloss::detail::Carver carver(kdloss::detail::resolve_workspace(fn, in.device, exec.workspace, sizer.bytes(), scratch));
  Acc* tmp = carve_filter<Acc>(carver, in.device, rows, cols, planes);
  if (planes == 0) return;
  if (in.device.is_host()) {
    if constexpr (kdloss::detail::host_types_v<T>) {
      const std::int64_t per_thread = backend::cpu::filter::plane_scratch(rows, cols);
      backend::cpu::filter::for_each_plane(planes, planes * rows.n_in * cols.n_in * rows.taps, tmp, per_thread,
                                           [&](std::int64_t p, Acc* buf) {
        const std::int64_t b = p / C, c = p % C;
        const T* src = in4.data + b * in4.strides[0] + c * in4.strides[1];
        T* dst = out4.data + b * out4.strides[0] + c * out4.strides[1];
        if (adjoint)
          backend::cpu::filter::filter_plane_adjoint(rows, cols, src, in4.strides[2], in4.strides[3], dst,
                                                     out4.strides[2], out4.strides[3], buf);
        else
          backend::cpu::filter::filter_plane(rows, cols, src, in4.strides[2], in4.strides[3], dst, out4.strides[2],
                                             out4.strides[3], buf);
      });
    }
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(in.device);
  const backend::cuda::filter::PlaneStrides is{{in4.strides[0], in4.strides[1], in4.strides[2], in4.strides[3]}};
  const backend::cuda::filter::PlaneStrides os{{out4.strides[0], out4.strides[1], out4.strides[2], out4.strides[3]}};
  if (adjoint)
    backend::cuda::filter::filter_adjoint(rows, cols, B, C, in4.data, is, out4.data, os, tmp,
                                          backend::cuda::stream_of(exec.stream));
  else
    backend::cuda::filter::filter(rows, cols, B, C, in4.data, is, out4.data, os, tmp,
                                  backend::cuda::stream_of(exec.stream));
#endif
}

}  // namespace detail

/// out = G * x per plane: the normalised Gaussian window (gaussian_window) along both of the last
/// two axes of a [H, W], [C, H, W] or [B, C, H, W] view with any strides. out has the input's shape
/// ('same' padding) or (H - F + 1, W - F + 1) in its last two dims ('valid').
///
///   std::vector<float> smooth(2 * 256 * 100 * 167);
///   kdloss::ops::gaussian_filter(kdloss::host_view(feat, {2, 256, 100, 167}),
///                                kdloss::host_view(smooth.data(), {2, 256, 100, 167}));   // 11x11, sigma 1.5, reflect
template <class X, class O>
void gaussian_filter(const View<X>& x, const View<O>& out, const FilterOptions& options = {}, const Exec& exec = {}) {
  detail::filter_call<O>("kdloss::ops::gaussian_filter", false, x, out, options, exec);
}

/// grad_x = G^T grad_out: the adjoint of gaussian_filter with the same options (reflected halo
/// folded back, valid crop zero-padded). grad_x has the unfiltered shape.
///
///   kdloss::ops::gaussian_filter_backward(kdloss::host_view(g_smooth, {2, 256, 100, 167}),
///                                         kdloss::host_view(g_feat, {2, 256, 100, 167}));
template <class G, class O>
void gaussian_filter_backward(const View<G>& grad_out, const View<O>& grad_x, const FilterOptions& options = {},
                              const Exec& exec = {}) {
  detail::filter_call<O>("kdloss::ops::gaussian_filter_backward", true, grad_out, grad_x, options, exec);
}

/// Workspace of gaussian_filter / _backward on inputs of x's (unfiltered) shape: per-thread plane
/// rows on the host, one [planes, H, W_out] buffer on the GPU.
///
///   std::size_t bytes = kdloss::ops::gaussian_filter_workspace_bytes(kdloss::cuda_view<const float>(d_x, {2, 256, 100, 167}));
template <class X>
std::size_t gaussian_filter_workspace_bytes(const View<X>& x, const FilterOptions& options = {}) {
  const kdloss::detail::Checker ck{"kdloss::ops::gaussian_filter_workspace_bytes"};
  ck.rank_between(x, "x", 2, 4);
  detail::AxisPlan rows, cols;
  detail::plan_filter(ck, x.shape, options, rows, cols);
  const auto x4 = detail::as_planes(x);
  kdloss::detail::Carver sizer;
  detail::carve_filter<acc_t<std::remove_cv_t<X>>>(sizer, x.device, rows, cols, x4.shape[0] * x4.shape[1]);
  return sizer.bytes();
}

}  // namespace kdloss::ops
