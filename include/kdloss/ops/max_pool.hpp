// kdloss/ops/max_pool.hpp: 2-D max pooling with kernel = stride = s, floor mode, no padding, dilation 1
// (how the non-local blocks of FBKD, mmcv and mmrazor sub-sample g and phi), forward and backward,
// with the argmax kept from forward to backward in a caller-owned Reserve. See docs/ops/max_pool.md.
//
// Semantics are PyTorch's F.max_pool2d(x, s, s) on CPU and CUDA: among equal maxima the first in
// row-major window order wins; a NaN wins over every number and the last NaN of a window wins over
// earlier ones (the output is NaN); a window of -inf gives -inf with its first element as argmax; the
// backward routes grad_y only to each window's argmax, and writes 0 everywhere else, including the last
// H % s rows and W % s columns that no window covers. A map smaller than the stride (H < s or W < s)
// is an error, as in PyTorch ("Output size is too small"); an empty batch (B = 0 or C = 0) is legal and
// writes nothing.
//
// Entry-point shape (core/entry.hpp): MaxPool2dArgs, max_pool2d_check, max_pool2d_workspace_bytes (0),
// max_pool2d_reserve_bytes, max_pool2d(args, mode, exec), and the wrappers max_pool2d(x, y, ...),
// max_pool2d_backward(...), max_pool2d_forward_backward(...). The pass itself is the loss-free
// expr::WindowMaxPass (backend/cpu/window_max.hpp, backend/cuda/window_max.cuh).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/backend/dispatch_window_max.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/window_max.hpp"
#include "kdloss/ops/map_checks.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

/// Options of max_pool2d. The window is stride x stride (kernel = stride, no padding, floor mode).
struct MaxPool2dOptions {
  std::int64_t stride = 2;
  GradAccumulate input_grad{};  // grad_x = beta * grad_x + dL/dx (0: overwrite, old contents unread)
};

/// The arguments of one max_pool2d call: x [B, C, H, W] (any strides; forward reads its values,
/// backward its shape, and its values only when `reserve` is absent), y and grad_y [B, C, H/s, W/s],
/// grad_x like x, reserve: the argmax of every output (max_pool2d_reserve_bytes). Leave a view `{}`
/// when the mode does not use it.
///
///   std::vector<float> feat(2 * 16 * 10 * 12, 1.0f), pooled(2 * 16 * 5 * 6);
///   kdloss::ops::MaxPool2dArgs<float> args;
///   args.x = kdloss::host_view<const float>(feat.data(), {2, 16, 10, 12});
///   args.y = kdloss::host_view(pooled.data(), {2, 16, 5, 6});
///   args.options.stride = 2;
///   kdloss::ops::max_pool2d(args, kdloss::Mode::forward);
template <class T>
struct MaxPool2dArgs {
  using value_type = T;
  View<const T> x{};
  View<T> y{};             // written by forward and forward_backward
  View<const T> grad_y{};  // read by backward and forward_backward
  View<T> grad_x{};        // written by backward and forward_backward (every element)
  Reserve reserve{};       // optional: forward fills it, backward reads it instead of rescanning x
  MaxPool2dOptions options{};
};

namespace detail {

inline constexpr EntryNames kMaxPool2dNames{"kdloss::ops::max_pool2d", "kdloss::ops::max_pool2d_backward",
                                            "kdloss::ops::max_pool2d_forward_backward"};

/// Largest stride whose window-local index (s * s - 1) fits the wide index type.
inline constexpr std::int64_t kMaxPoolMaxStride = 46340;

/// Bytes of one kept index: window-local kh * s + kw as std::uint8_t when s <= 16 (s * s <= 256),
/// std::int32_t above.
constexpr std::size_t max_pool_index_bytes(std::int64_t stride) { return stride <= 16 ? 1 : 4; }

inline Dims max_pool_out_shape(const Dims& x, std::int64_t s) { return Dims{x[0], x[1], x[2] / s, x[3] / s}; }

inline bool reserve_present(const Reserve& r) { return r.data != nullptr; }

/// The checks that only need x and the options (shared by the call and the reserve query).
template <class T>
void check_max_pool_input(const char* fn, const View<const T>& x, const MaxPool2dOptions& o) {
  const kdloss::detail::Checker ck{fn};
  using kdloss::detail::require;
  check_feature_map(ck, x, " (its shape, and its values when it scans)");
  const std::int64_t s = o.stride;
  require(s >= 1, fn, ": argument 'options.stride' is ", s, " but the window size and stride must be at least 1");
  require(s <= kMaxPoolMaxStride, fn, ": argument 'options.stride' is ", s, ", above the largest supported stride ",
          kMaxPoolMaxStride);
  require(x.shape[2] >= s && x.shape[3] >= s, fn, ": argument 'x' has shape ", x.shape.str(),
          ", smaller than the stride ", s, " in H or W: the output ", max_pool_out_shape(x.shape, s).str(),
          " would be empty (PyTorch's max_pool2d raises 'Output size is too small')");
}

template <class T>
std::size_t max_pool_reserve_bytes(const View<const T>& x, std::int64_t s) {
  return static_cast<std::size_t>(max_pool_out_shape(x.shape, s).product()) * max_pool_index_bytes(s);
}

inline View<const unsigned char> reserve_view(const Reserve& r, Device device) {
  return View<const unsigned char>(static_cast<const unsigned char*>(r.data), Dims{static_cast<std::int64_t>(r.bytes)},
                                   Dims{1}, device);
}

template <class T>
void max_pool_check(const MaxPool2dArgs<T>& a, Mode mode) {
  const char* fn = kMaxPool2dNames(mode);
  const kdloss::detail::Checker ck{fn};
  using kdloss::detail::require;
  check_max_pool_input(fn, a.x, a.options);
  kdloss::detail::require_backend<T>(fn, a.x.device);
  const Dims out = max_pool_out_shape(a.x.shape, a.options.stride);
  check_map_outputs(ck, mode, a.x, out, a.y, a.grad_y, a.grad_x);
  if (reserve_present(a.reserve)) {
    const std::size_t need = max_pool_reserve_bytes(a.x, a.options.stride);
    require(a.reserve.bytes >= need, fn, ": argument 'reserve' has ", a.reserve.bytes, " bytes but x ",
            a.x.shape.str(), " with stride ", a.options.stride, " needs ", need,
            " (size it with max_pool2d_reserve_bytes)");
    require(reinterpret_cast<std::uintptr_t>(a.reserve.data) % kdloss::detail::kWorkspaceAlignment == 0, fn,
            ": argument 'reserve' must be aligned to ", kdloss::detail::kWorkspaceAlignment, " bytes");
    const auto r = reserve_view(Reserve{a.reserve.data, need}, a.x.device);
    if (writes_value(mode)) {  // forward writes the reserve
      ck.disjoint(r, "reserve", a.x, "x");
      ck.disjoint(r, "reserve", a.y, "y");
    }
    if (writes_gradients(mode)) ck.disjoint(a.grad_x, "grad_x", r, "reserve");
  }
}

template <class T, class I>
void run_max_pool(const MaxPool2dArgs<T>& a, Mode mode, const Exec& exec) {
  expr::WindowMaxPass<T, I> P;
  const Dims& xs = a.x.shape;
  P.batch = xs[0], P.channels = xs[1], P.H = xs[2], P.W = xs[3], P.stride = a.options.stride;
  P.x = a.x.data;
  for (int d = 0; d < 4; ++d) P.xs[d] = a.x.strides[d];
  I* keep = static_cast<I*>(a.reserve.data);
  if (writes_value(mode)) {
    P.y = a.y.data;
    for (int d = 0; d < 4; ++d) P.ys[d] = a.y.strides[d];
    P.argmax_out = keep;
  }
  if (writes_gradients(mode)) {
    P.argmax_in = keep;  // in forward_backward the forward part fills it first (null: rescan x)
    P.gy = a.grad_y.data;
    P.gx = a.grad_x.data;
    for (int d = 0; d < 4; ++d) P.gys[d] = a.grad_y.strides[d], P.gxs[d] = a.grad_x.strides[d];
    P.beta = a.options.input_grad.beta;
  }
  kdloss::detail::window_max(a.x.device, exec.stream, P);
}

}  // namespace detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes
/// nothing. Errors: x absent or not rank 4; options.stride < 1; H < stride or W < stride (the output
/// would be empty); y / grad_y not [B, C, H/s, W/s]; grad_x not x's shape; views on another device;
/// overlapping outputs; a present reserve smaller than max_pool2d_reserve_bytes or not 256-byte aligned.
///
///   kdloss::ops::MaxPool2dArgs<float> args;   // its views filled in as in MaxPool2dArgs's example
///   kdloss::ops::max_pool2d_check(args, kdloss::Mode::forward);
template <class T>
void max_pool2d_check(const MaxPool2dArgs<T>& args, Mode mode) {
  detail::max_pool_check(args, mode);
}

/// Workspace bytes of max_pool2d: 0 in every mode on both backends.
///
///   kdloss::ops::MaxPool2dArgs<float> args;   // its views filled in as in MaxPool2dArgs's example
///   std::size_t bytes = kdloss::ops::max_pool2d_workspace_bytes(args);   // 0
template <class T>
std::size_t max_pool2d_workspace_bytes(const MaxPool2dArgs<T>&) {
  return 0;
}

/// Reserve bytes of max_pool2d: one window-local argmax (kh * s + kw) per output, contiguous
/// [B, C, H/s, W/s], as std::uint8_t when stride <= 16 and std::int32_t above: B * C * (H/s) * (W/s)
/// bytes for FBKD's strides (PyTorch keeps an int64 flat index per output, 8x as much). Depends only
/// on x's shape and options.stride. Throws for an invalid x or stride.
///
///   kdloss::ops::MaxPool2dArgs<float> args;   // its views filled in as in MaxPool2dArgs's example
///   std::size_t bytes = kdloss::ops::max_pool2d_reserve_bytes(args);   // 2 * 16 * 5 * 6
template <class T>
std::size_t max_pool2d_reserve_bytes(const MaxPool2dArgs<T>& args) {
  detail::check_max_pool_input("kdloss::ops::max_pool2d_reserve_bytes", args.x, args.options);
  return detail::max_pool_reserve_bytes(args.x, args.options.stride);
}

/// Checks, then runs max_pool2d in `mode`.
/// forward: y = the maximum of every stride x stride window of x; when `reserve` is present, also its
/// window-local argmax. backward: grad_x = beta * grad_x + (grad_y at each window's argmax, 0
/// elsewhere), the argmax read from `reserve` when present (filled by a forward with the same x and
/// options) and recomputed from x when absent (same result, one more read of x). forward_backward: both
/// in one pass over x (it fills the reserve too when present).
///
///   std::vector<float> x(2 * 16 * 10 * 12, 1.0f), y(2 * 16 * 5 * 6), gy(y.size(), 1.0f), gx(x.size());
///   kdloss::ops::MaxPool2dArgs<float> args;
///   args.x = kdloss::host_view<const float>(x.data(), {2, 16, 10, 12});
///   args.y = kdloss::host_view(y.data(), {2, 16, 5, 6});
///   alignas(256) unsigned char keep[2 * 16 * 5 * 6];          // max_pool2d_reserve_bytes(args) bytes
///   args.reserve = {keep, kdloss::ops::max_pool2d_reserve_bytes(args)};
///   kdloss::ops::max_pool2d(args, kdloss::Mode::forward);
///   args.grad_y = kdloss::host_view<const float>(gy.data(), {2, 16, 5, 6});
///   args.grad_x = kdloss::host_view(gx.data(), {2, 16, 10, 12});
///   kdloss::ops::max_pool2d(args, kdloss::Mode::backward);
template <class T>
void max_pool2d(const MaxPool2dArgs<T>& args, Mode mode, const Exec& exec = {}) {
  max_pool2d_check(args, mode);
  if (detail::max_pool_index_bytes(args.options.stride) == 1)
    detail::run_max_pool<T, std::uint8_t>(args, mode, exec);
  else
    detail::run_max_pool<T, std::int32_t>(args, mode, exec);
}

/// y[b, c, i, j] = max over the stride x stride window (i, j) of x[b, c] (PyTorch's
/// F.max_pool2d(x, s, s)). `reserve`, when given (max_pool2d_reserve_bytes), keeps the argmax for a
/// later max_pool2d_backward.
///
///   std::vector<float> feat(2 * 16 * 10 * 12, 1.0f), pooled(2 * 16 * 5 * 6);
///   kdloss::ops::max_pool2d(kdloss::host_view<const float>(feat.data(), {2, 16, 10, 12}),
///                           kdloss::host_view(pooled.data(), {2, 16, 5, 6}), {/*stride=*/2});
template <class X, class O>
void max_pool2d(const View<X>& x, const View<O>& y, const MaxPool2dOptions& options = {}, const Reserve& reserve = {},
                const Exec& exec = {}) {
  max_pool2d(MaxPool2dArgs<O>{x, y, {}, {}, reserve, options}, Mode::forward, exec);
}

/// grad_x = grad_y routed to each window's argmax, 0 elsewhere (beta * grad_x added with
/// options.input_grad). Pass the reserve the forward filled (same x, same options), or none: the
/// argmax is then recomputed from x, with the same result.
///
///   std::vector<float> x(2 * 16 * 10 * 12, 1.0f), gy(2 * 16 * 5 * 6, 1.0f), gx(x.size());
///   kdloss::ops::max_pool2d_backward(kdloss::host_view<const float>(x.data(), {2, 16, 10, 12}),
///                                    kdloss::host_view<const float>(gy.data(), {2, 16, 5, 6}),
///                                    kdloss::host_view(gx.data(), {2, 16, 10, 12}), {/*stride=*/2});
template <class X, class G, class O>
void max_pool2d_backward(const View<X>& x, const View<G>& grad_y, const View<O>& grad_x,
                         const MaxPool2dOptions& options = {}, const Reserve& reserve = {}, const Exec& exec = {}) {
  max_pool2d(MaxPool2dArgs<O>{x, {}, grad_y, grad_x, reserve, options}, Mode::backward, exec);
}

/// y and grad_x (from grad_y) in one pass over x; a present reserve is filled as by the forward.
///
///   std::vector<float> x(2 * 16 * 10 * 12, 1.0f), gy(2 * 16 * 5 * 6, 1.0f), y(gy.size()), gx(x.size());
///   kdloss::ops::max_pool2d_forward_backward(kdloss::host_view<const float>(x.data(), {2, 16, 10, 12}),
///                                            kdloss::host_view<const float>(gy.data(), {2, 16, 5, 6}),
///                                            kdloss::host_view(y.data(), {2, 16, 5, 6}),
///                                            kdloss::host_view(gx.data(), {2, 16, 10, 12}), {2});
template <class X, class G, class O>
void max_pool2d_forward_backward(const View<X>& x, const View<G>& grad_y, const View<O>& y, const View<O>& grad_x,
                                 const MaxPool2dOptions& options = {}, const Reserve& reserve = {},
                                 const Exec& exec = {}) {
  max_pool2d(MaxPool2dArgs<O>{x, y, grad_y, grad_x, reserve, options}, Mode::forward_backward, exec);
}

}  // namespace ops
} }  // namespace kdloss
