// kdloss/ops/linear.hpp: the projection layer y = x W^T + b over rows ([N, in] -> [N, out]) and its
// 1x1-convolution form over feature maps ([B, in, H, W] -> [B, out, H, W]), forward and backward to the
// input, the weight and the bias. This is the parameter-gradient convention every layer with weights
// follows (docs/ops/linear.md): gradients of parameters are outputs written as
//   grad = beta * grad + dL/dparam   (options.param_grads, a GradAccumulate: beta 0 overwrites unread)
// and their sums over the batch (rows, images, positions) run in a fixed order, so the bits do not
// depend on the thread count.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kdloss/backend/dispatch_gemm.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/ops/matmul.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

struct LinearOptions {
  GradAccumulate param_grads{};  // grad_weight and grad_bias: grad = beta * grad + dL/dparam
  GradAccumulate input_grad{};   // grad_x = beta * grad_x + dL/dx (0: overwrite)
};

/// Arguments of ops::linear. x: [N, in] (rows) or [B, in, H, W] (1x1 convolution; H and W must
/// merge into one strided axis, as they do in contiguous and channel-last layouts); weight: [out, in];
/// bias: [out] or absent; y: [N, out] / [B, out, H, W] (forward output); grad_y: like y (backward
/// input); grad_x: like x, grad_weight: like weight, grad_bias: [out] (backward outputs, each optional).
template <class T>
struct LinearArgs {
  View<const T> x{};
  View<const T> weight{};
  View<const T> bias{};
  View<T> y{};
  View<const T> grad_y{};
  View<T> grad_x{};
  View<T> grad_weight{};
  View<T> grad_bias{};
  LinearOptions options{};
};

namespace detail {

/// y = v + bias[i]: the bias of one output channel (rows of the [out, positions] product).
template <class T>
struct AddBiasRows {
  const T* bias;
  std::int64_t stride;
  template <class V>
  KDLOSS_HOST_DEVICE V operator()(V v, std::int64_t, std::int64_t i, std::int64_t) const {
    return v + static_cast<V>(bias[i * stride]);
  }
};

/// [N, C] -> [1, C, N]; [B, C, H, W] -> [B, C, H*W] (H and W merged). Channels first, positions last:
/// every product of the layer is then one batched [channels x positions] product.
template <class T>
View<T> channels_by_positions(const View<T>& v) {
  if (v.rank() == 2) return View<T>(v.data, Dims{1, v.shape[1], v.shape[0]}, Dims{0, v.strides[1], v.strides[0]}, v.device);
  const std::int64_t h = v.shape[2], w = v.shape[3];
  const std::int64_t step = w == 1 ? v.strides[2] : v.strides[3];
  return View<T>(v.data, Dims{v.shape[0], v.shape[1], h * w}, Dims{v.strides[0], v.strides[1], step}, v.device);
}

template <class T>
bool positions_merge(const View<T>& v) {
  return v.rank() == 2 || v.shape[2] <= 1 || v.shape[3] <= 1 || v.strides[2] == v.strides[3] * v.shape[3];
}

/// The layer's products, in the order they run, and their scratch.
template <class T>
struct LinearPlan {
  View<const T> x3, gy3;
  View<T> y3, gx3;
  std::int64_t positions = 0;  // columns of one image's product (H*W, or N for rows)
  bool needs_ones = false;
};

template <class T>
LinearPlan<T> linear_plan(const LinearArgs<T>& a) {
  LinearPlan<T> p;
  p.x3 = channels_by_positions(a.x);
  p.positions = p.x3.shape[2];
  if (present(a.y)) p.y3 = channels_by_positions(a.y);
  if (present(a.grad_y)) p.gy3 = channels_by_positions(a.grad_y);
  if (present(a.grad_x)) p.gx3 = channels_by_positions(a.grad_x);
  p.needs_ones = present(a.grad_bias) && present(a.grad_y);
  return p;
}

template <class T>
View<const T> ones_view(const T* ones, std::int64_t n, Device device) {
  return View<const T>(ones, Dims{n, 1}, Dims{1, 1}, device);
}
template <class T>
View<T> column_of(const View<T>& v) {  // [out] -> [out, 1]
  return View<T>(v.data, Dims{v.shape[0], 1}, Dims{v.strides[0], 1}, v.device);
}

/// Runs `f(gemm)` for every product `mode` needs (forward, then grad_x, grad_weight, grad_bias).
template <class T, class F>
void for_each_product(const LinearArgs<T>& a, const LinearPlan<T>& p, Mode mode, const T* ones, F&& f) {
  const double pbeta = a.options.param_grads.beta;
  if (writes_value(mode)) {
    if (present(a.bias))
      f(make_gemm(MatmulArgs<T, AddBiasRows<T>>{a.weight, p.x3, p.y3, {}, {a.bias.data, a.bias.strides[0]}}));
    else
      f(make_gemm(MatmulArgs<T>{a.weight, p.x3, p.y3}));
  }
  if (!writes_gradients(mode)) return;
  if (present(a.grad_x))  // grad_x[b] = W^T grad_y[b]
    f(make_gemm(MatmulArgs<T>{a.weight, p.gy3, p.gx3, {true, false, 1.0, a.options.input_grad.beta}}));
  if (present(a.grad_weight))  // grad_W = sum_b grad_y[b] x[b]^T
    f(make_gemm(MatmulArgs<T>{p.gy3, p.x3, a.grad_weight, {false, true, 1.0, pbeta, true}}));
  if (present(a.grad_bias))  // grad_b = sum_b grad_y[b] 1
    f(make_gemm(MatmulArgs<T>{p.gy3, ones_view(ones, p.positions, a.x.device), column_of(a.grad_bias),
                              {false, false, 1.0, pbeta, true}}));
}

/// Scratch of one call: the ones vector of the bias gradient, then the largest product's scratch.
struct LinearScratch {
  bool ones = false;
  std::size_t gemm = 0, total = 0;
};
template <class T>
LinearScratch linear_scratch(const LinearArgs<T>& args, const LinearPlan<T>& plan, Mode mode) {
  LinearScratch s;
  for_each_product(args, plan, mode, static_cast<const T*>(nullptr),
                   [&](const auto& g) { s.gemm = std::max(s.gemm, kdloss::detail::gemm_bytes(args.x.device, g)); });
  s.ones = plan.needs_ones && writes_gradients(mode);
  kdloss::detail::Carver counter;
  if (s.ones) counter.take<T>(static_cast<std::size_t>(plan.positions));
  counter.take<unsigned char>(s.gemm);
  s.total = counter.bytes();
  return s;
}

}  // namespace detail

/// Throws kdloss::Error naming the argument and the shapes when `mode` cannot run; writes nothing.
template <class T>
void linear_check(const LinearArgs<T>& a, Mode mode) {
  const kdloss::detail::Checker ck{"kdloss::ops::linear"};
  using kdloss::detail::require;
  const char* fn = ck.fn;
  require(a.x.rank() == 2 || a.x.rank() == 4, fn, ": argument 'x' must be [N, in] or [B, in, H, W] but has shape ",
          a.x.shape.str());
  ck.not_null(a.x, "x");
  ck.rank(a.weight, "weight", 2);
  ck.not_null(a.weight, "weight");
  ck.device(a.weight, "weight", a.x.device);
  const std::int64_t in = a.x.shape[1], out = a.weight.shape[0];
  require(a.weight.shape[1] == in, fn, ": argument 'weight' has shape ", a.weight.shape.str(), " but 'x' ",
          a.x.shape.str(), " has ", in, " input channels (dim 1); expected [out, ", in, "]");
  require(detail::positions_merge(a.x), fn, ": argument 'x' with shape ", a.x.shape.str(), " and strides ",
          a.x.strides.str(), " cannot merge H and W into one strided axis; pass a contiguous or channel-last view");
  Dims y_shape = a.x.shape;
  y_shape[1] = out;
  const auto like = [&](const auto& v, const char* name, const Dims& shape) {
    ck.not_null(v, name);
    ck.shape(v, name, shape);
    ck.device(v, name, a.x.device);
    require(detail::positions_merge(v), fn, ": argument '", name, "' with shape ", v.shape.str(), " and strides ",
            v.strides.str(), " cannot merge H and W into one strided axis");
  };
  if (present(a.bias)) {
    ck.not_null(a.bias, "bias");
    ck.shape(a.bias, "bias", Dims{out});
    ck.device(a.bias, "bias", a.x.device);
  }
  if (writes_value(mode)) {
    require(present(a.y), fn, ": mode ", to_string(mode), " writes 'y' but it is absent");
    like(a.y, "y", y_shape);
    ck.unique(a.y, "y");
    ck.disjoint(a.y, "y", a.x, "x");
    ck.disjoint(a.y, "y", a.weight, "weight");
    if (present(a.bias)) ck.disjoint(a.y, "y", a.bias, "bias");
  }
  if (writes_gradients(mode)) {
    require(present(a.grad_y), fn, ": mode ", to_string(mode), " reads 'grad_y' but it is absent");
    like(a.grad_y, "grad_y", y_shape);
    const auto grad = [&](const auto& g, const char* name, const Dims& shape) {
      if (absent(g)) return;
      like(g, name, shape);
      ck.unique(g, name);
      ck.disjoint(g, name, a.x, "x");
      ck.disjoint(g, name, a.weight, "weight");
      ck.disjoint(g, name, a.grad_y, "grad_y");
      if (present(a.bias)) ck.disjoint(g, name, a.bias, "bias");
      if (writes_value(mode)) ck.disjoint(g, name, a.y, "y");
    };
    grad(a.grad_x, "grad_x", a.x.shape);
    grad(a.grad_weight, "grad_weight", a.weight.shape);
    grad(a.grad_bias, "grad_bias", Dims{out});
    if (present(a.grad_x) && present(a.grad_weight)) ck.disjoint(a.grad_x, "grad_x", a.grad_weight, "grad_weight");
    if (present(a.grad_x) && present(a.grad_bias)) ck.disjoint(a.grad_x, "grad_x", a.grad_bias, "grad_bias");
    if (present(a.grad_weight) && present(a.grad_bias))
      ck.disjoint(a.grad_weight, "grad_weight", a.grad_bias, "grad_bias");
  }
  kdloss::detail::require_backend<T>(fn, a.x.device);
}

/// Scratch bytes of linear(args, mode) for every Mode: a vector of ones (bias gradient) and the
/// largest product's scratch.
template <class T>
std::size_t linear_workspace_bytes(const LinearArgs<T>& args) {
  const bool fwd = present(args.y), bwd = present(args.grad_y);
  const Mode mode = fwd && bwd ? Mode::forward_backward : (bwd ? Mode::backward : Mode::forward);
  linear_check(args, mode);
  return detail::linear_scratch(args, detail::linear_plan(args), mode).total;
}

/// forward: y = x W^T + b (rows) or y[b, o] = sum_c W[o, c] x[b, c] + b[o] (1x1 convolution).
/// backward (reads grad_y): grad_x = grad_y W; grad_weight = beta * grad_weight + sum over rows/images
/// and positions of grad_y x^T; grad_bias = beta * grad_bias + sum of grad_y over rows/images and
/// positions; each written only when present. forward_backward: both, in that order.
///
///   kdloss::ops::LinearArgs<float> l;
///   l.x = kdloss::host_view<const float>(feat, {2, 256, 100, 167});   // NCHW
///   l.weight = kdloss::host_view<const float>(w, {64, 256});
///   l.bias = kdloss::host_view<const float>(b, {64});
///   l.y = kdloss::host_view(out, {2, 64, 100, 167});
///   kdloss::ops::linear(l, kdloss::Mode::forward);
///   l.grad_y = kdloss::host_view<const float>(grad_out, {2, 64, 100, 167});
///   l.grad_weight = kdloss::host_view(grad_w, {64, 256});
///   l.options.param_grads.beta = 1.0;                                  // accumulate, as autograd does
///   kdloss::ops::linear(l, kdloss::Mode::backward);
template <class T>
void linear(const LinearArgs<T>& args, Mode mode, const Exec& exec = {}) {
  const char* fn = "kdloss::ops::linear";
  detail::require_blas(fn, args.x.device, exec);
  linear_check(args, mode);
  const auto plan = detail::linear_plan(args);
  const auto need = detail::linear_scratch(args, plan, mode);
  kdloss::detail::HostScratch host;
  void* ws = kdloss::detail::resolve_workspace(fn, args.x.device, exec.workspace, need.total, host);
  kdloss::detail::Carver carver(ws);
  T* ones = need.ones ? carver.take<T>(static_cast<std::size_t>(plan.positions)) : nullptr;
  void* scratch = carver.take<unsigned char>(need.gemm);
  const std::size_t gemm = need.gemm;
  if (ones) kdloss::detail::gemm_fill(args.x.device, exec, ones, plan.positions, 1.0);
  detail::for_each_product(args, plan, mode, static_cast<const T*>(ones),
                           [&](const auto& g) { kdloss::detail::gemm(args.x.device, exec, g, scratch, gemm); });
}

/// Thin wrapper: y = x W^T + b (bias may be absent: pass View<const T>{}).
///
///   kdloss::ops::linear_forward(kdloss::host_view<const float>(x, {N, 256}), kdloss::host_view<const float>(w, {64, 256}),
///                               kdloss::View<const float>{}, kdloss::host_view(out, {N, 64}));
template <class T>
void linear_forward(const View<const T>& x, const View<const T>& weight, const View<const T>& bias, const View<T>& y,
                    const Exec& exec = {}) {
  LinearArgs<T> a;
  a.x = x;
  a.weight = weight;
  a.bias = bias;
  a.y = y;
  linear(a, Mode::forward, exec);
}

/// Thin wrapper: the gradients (any of grad_x, grad_weight, grad_bias may be absent).
///
///   kdloss::ops::linear_backward(x, w, grad_y, grad_x, grad_w, grad_b, {{/*beta=*/1.0}});
template <class T>
void linear_backward(const View<const T>& x, const View<const T>& weight, const View<const T>& grad_y,
                     const View<T>& grad_x, const View<T>& grad_weight, const View<T>& grad_bias,
                     const LinearOptions& options = {}, const Exec& exec = {}) {
  LinearArgs<T> a;
  a.x = x;
  a.weight = weight;
  a.grad_y = grad_y;
  a.grad_x = grad_x;
  a.grad_weight = grad_weight;
  a.grad_bias = grad_bias;
  a.options = options;
  linear(a, Mode::backward, exec);
}

}  // namespace ops
} }  // namespace kdloss
