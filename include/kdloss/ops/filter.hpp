// kdloss/ops/filter.hpp: the separable Gaussian window filter of the SSIM family as an op of its
// own, forward and adjoint, depthwise over the last two dimensions: 'same' size with reflection
// (numpy/PyTorch 'reflect', kornia's default) or zeros, or 'valid'. One axis of the filter is
// described by expr/filter.hpp; the backends evaluate it (backend/dispatch_window.hpp).
//
// The backward is the exact adjoint: for 'reflect' it correlates the zero-padded gradient with the
// window and folds the halo back onto the pixels it was read from; for 'valid' it zero-pads the
// cropped gradient (reference section 3.1).
//
// Entry-point shape (core/entry.hpp): GaussianFilterArgs, gaussian_filter_check,
// gaussian_filter_workspace_bytes, gaussian_filter(args, mode, exec); the wrappers
// gaussian_filter(x, out) and gaussian_filter_backward(grad_out, grad_x) read like PyTorch.
#pragma once
#include <cstdint>
#include <type_traits>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/backend/dispatch_window.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/filter.hpp"
#include "kdloss/ops/gaussian.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace ops {

/// Window and padding of gaussian_filter.
struct FilterOptions {
  int window_size = 11;  ///< odd, 3 to 15
  double sigma = 1.5;    ///< > 0
  Padding padding = Padding::reflect;
};

/// Arguments of gaussian_filter. x and out are [H, W], [C, H, W] or [B, C, H, W] views with any
/// strides; out (and grad_out) have x's shape ('same') or (H - F + 1, W - F + 1) in the last two
/// dims ('valid'); grad_x has x's shape.
///   forward           reads x, writes out = G * x
///   backward          reads grad_out, writes grad_x = G^T grad_out (x may be absent)
///   forward_backward  both, in one call
template <class T>
struct GaussianFilterArgs {
  View<const T> x{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_x{};
  FilterOptions options{};
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

/// The unfiltered view of a call: x, or grad_x when x is absent (backward).
template <class T>
View<const T> unfiltered(const GaussianFilterArgs<T>& a) {
  return present(a.x) ? a.x : View<const T>(a.grad_x);
}

template <class T>
void gaussian_filter_check(const char* fn, const GaussianFilterArgs<T>& a, Mode mode, AxisPlan& rows, AxisPlan& cols) {
  const kdloss::detail::Checker ck{fn};
  const bool fwd = writes_value(mode), bwd = writes_gradients(mode);
  const View<const T> full = unfiltered(a);
  const char* full_name = present(a.x) ? "x" : "grad_x";
  kdloss::detail::require(fwd ? present(a.x) : present(full), fn, ": argument '", fwd ? "x" : "grad_x",
                          "' is absent but mode ", to_string(mode), " needs it");
  ck.rank_between(full, full_name, 2, 4);
  ck.not_null(full, full_name);
  kdloss::detail::require_backend<T>(fn, full.device);
  plan_filter(ck, full.shape, a.options, rows, cols);
  const Dims fshape = filtered_shape(full.shape, rows, cols);
  auto output = [&](const View<T>& v, const char* name, const Dims& shape) {
    ck.rank_between(v, name, 2, 4);
    ck.not_null(v, name);
    ck.device(v, name, full.device);
    ck.shape(v, name, shape);
    ck.unique(v, name);
  };
  if (fwd) {
    output(a.out, "out", fshape);
    ck.disjoint(a.out, "out", a.x, "x");
  }
  if (bwd) {
    ck.rank_between(a.grad_out, "grad_out", 2, 4);
    ck.not_null(a.grad_out, "grad_out");
    ck.device(a.grad_out, "grad_out", full.device);
    ck.shape(a.grad_out, "grad_out", fshape);
    output(a.grad_x, "grad_x", full.shape);
    ck.disjoint(a.grad_x, "grad_x", a.grad_out, "grad_out");
    if (present(a.x)) ck.disjoint(a.grad_x, "grad_x", a.x, "x");
    if (fwd) {
      ck.disjoint(a.out, "out", a.grad_out, "grad_out");
      ck.disjoint(a.grad_x, "grad_x", View<const T>(a.out), "out");
    }
  }
}

/// Planes of a [..., H, W] shape: the product of the leading extents.
inline std::int64_t plane_count(const Dims& full) {
  std::int64_t n = 1;
  for (int d = 0; d + 2 < full.rank; ++d) n *= full[d];
  return n;
}

template <class T>
std::size_t gaussian_filter_bytes(const Dims& full, Device device, const AxisPlan& rows, const AxisPlan& cols) {
  kdloss::detail::Carver sizer;
  kdloss::detail::carve_separable_filter<acc_t<T>>(sizer, device, rows, cols, plane_count(full));
  return sizer.bytes();
}

template <class T>
void run_filter(Stream stream, const AxisPlan& rows, const AxisPlan& cols, bool adjoint, const View<const T>& in,
                const View<T>& out, acc_t<T>* tmp) {
  const View<const T> in4 = as_planes(in);
  const View<T> out4 = as_planes(out);
  std::int64_t is[4], os[4];
  for (int d = 0; d < 4; ++d) is[d] = in4.strides[d], os[d] = out4.strides[d];
  kdloss::detail::separable_filter(in.device, stream, rows, cols, adjoint, in4.shape[0], in4.shape[1], in4.data, is,
                                   out4.data, os, tmp);
}

}  // namespace detail

/// Throws kdloss::Error (naming the argument and the shapes) unless `args` is a valid call in
/// `mode`; writes nothing.
///
///   kdloss::ops::GaussianFilterArgs<float> a;
///   a.x = kdloss::host_view<const float>(feat, {2, 256, 100, 167});
///   a.out = kdloss::host_view(smooth, {2, 256, 100, 167});
///   kdloss::ops::gaussian_filter_check(a, kdloss::Mode::forward);
template <class T>
void gaussian_filter_check(const GaussianFilterArgs<T>& args, Mode mode) {
  detail::AxisPlan rows, cols;
  detail::gaussian_filter_check("kdloss::ops::gaussian_filter_check", args, mode, rows, cols);
}

/// Workspace bytes of gaussian_filter(args, mode) for every mode: per-thread plane rows on the
/// host, one [planes, H, W_out] buffer on the GPU.
///
///   std::size_t bytes = kdloss::ops::gaussian_filter_workspace_bytes(a);
template <class T>
std::size_t gaussian_filter_workspace_bytes(const GaussianFilterArgs<T>& args) {
  const kdloss::detail::Checker ck{"kdloss::ops::gaussian_filter_workspace_bytes"};
  const View<const T> full = detail::unfiltered(args);
  ck.rank_between(full, present(args.x) ? "x" : "grad_x", 2, 4);
  detail::AxisPlan rows, cols;
  detail::plan_filter(ck, full.shape, args.options, rows, cols);
  return detail::gaussian_filter_bytes<T>(full.shape, full.device, rows, cols);
}

/// Checks, then runs: out = G * x (forward), grad_x = G^T grad_out (backward), or both.
///
///   kdloss::ops::gaussian_filter(a, kdloss::Mode::forward, {{scratch, bytes}, kdloss::Stream(stream)});
template <class T>
void gaussian_filter(const GaussianFilterArgs<T>& args, Mode mode, const Exec& exec = {}) {
  const char* fn = mode == Mode::backward ? "kdloss::ops::gaussian_filter_backward" : "kdloss::ops::gaussian_filter";
  detail::AxisPlan rows, cols;
  detail::gaussian_filter_check(fn, args, mode, rows, cols);
  const View<const T> full = detail::unfiltered(args);
  kdloss::detail::HostScratch scratch;
  kdloss::detail::Carver carver(kdloss::detail::resolve_workspace(
      fn, full.device, exec.workspace, detail::gaussian_filter_bytes<T>(full.shape, full.device, rows, cols), scratch));
  auto* tmp =
      kdloss::detail::carve_separable_filter<acc_t<T>>(carver, full.device, rows, cols, detail::plane_count(full.shape));
  if (writes_value(mode)) detail::run_filter(exec.stream, rows, cols, false, args.x, args.out, tmp);
  if (writes_gradients(mode)) detail::run_filter(exec.stream, rows, cols, true, args.grad_out, args.grad_x, tmp);
}

/// out = G * x per plane: the normalised Gaussian window (gaussian_window) along both of the last
/// two axes of a [H, W], [C, H, W] or [B, C, H, W] view with any strides. out has the input's shape
/// ('same' padding) or (H - F + 1, W - F + 1) in its last two dims ('valid').
///
///   std::vector<float> smooth(2 * 256 * 100 * 167);
///   kdloss::ops::gaussian_filter(kdloss::host_view(feat, {2, 256, 100, 167}),
///                                kdloss::host_view(smooth.data(), {2, 256, 100, 167}));   // 11x11, sigma 1.5, reflect
template <class X, class O>
void gaussian_filter(const View<X>& x, const View<O>& out, const FilterOptions& options = {}, const Exec& exec = {}) {
  GaussianFilterArgs<O> a;
  a.x = x;
  a.out = out;
  a.options = options;
  gaussian_filter(a, Mode::forward, exec);
}

/// grad_x = G^T grad_out: the adjoint of gaussian_filter with the same options (reflected halo
/// folded back, valid crop zero-padded). grad_x has the unfiltered shape.
///
///   kdloss::ops::gaussian_filter_backward(kdloss::host_view(g_smooth, {2, 256, 100, 167}),
///                                         kdloss::host_view(g_feat, {2, 256, 100, 167}));
template <class G, class O>
void gaussian_filter_backward(const View<G>& grad_out, const View<O>& grad_x, const FilterOptions& options = {},
                              const Exec& exec = {}) {
  GaussianFilterArgs<O> a;
  a.grad_out = grad_out;
  a.grad_x = grad_x;
  a.options = options;
  gaussian_filter(a, Mode::backward, exec);
}

/// Workspace of gaussian_filter / _backward on inputs of x's (unfiltered) shape.
///
///   std::size_t bytes = kdloss::ops::gaussian_filter_workspace_bytes(kdloss::cuda_view<const float>(d_x, {2, 256, 100, 167}));
template <class X>
std::size_t gaussian_filter_workspace_bytes(const View<X>& x, const FilterOptions& options = {}) {
  GaussianFilterArgs<std::remove_cv_t<X>> a;
  a.x = x;
  a.options = options;
  return gaussian_filter_workspace_bytes(a);
}

} } }  // namespace kdloss::ops
