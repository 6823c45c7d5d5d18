// kdloss/ops/batch_norm.hpp: batch normalisation over the channels of [N, C], [B, C, L] or
// [B, C, H, W] inputs, in training mode (batch statistics) and evaluation mode (running statistics),
// forward and backward to the input, γ (weight) and β (bias). See docs/ops/batch_norm.md.
//
//   training:   y = (x - mean_c) / sqrt(var_c + eps) * γ_c + β_c,  mean and biased var over (B, H, W)
//   evaluation: y = (x - running_mean_c) / sqrt(running_var_c + eps) * γ_c + β_c
//
// The entry-point shape of core/entry.hpp: BatchNormArgs, batch_norm_check, batch_norm_workspace_bytes,
// batch_norm_reserve_bytes (training: the per-channel mean and 1/std that backward reads) and
// batch_norm(args, mode, exec), with the wrappers batch_norm_forward / batch_norm_backward. Parameter
// gradients follow the GradAccumulate convention of ops/linear.hpp; every per-channel statistic is
// reduced in an order fixed by the shape (backend/*/channel_stats), so the bits do not depend on the
// thread count. The running statistics are the caller's: forward returns the batch mean and the
// unbiased batch variance, and batch_norm_update_running_stats applies PyTorch's momentum rule.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/backend/dispatch_channel.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/convert.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/channel_stats.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

struct BatchNormOptions {
  bool training = true;          // batch statistics (true) or running statistics (false)
  double eps = 1e-5;             // added to the variance (PyTorch's default; GloRe's BN uses 1e-4)
  GradAccumulate param_grads{};  // grad_weight and grad_bias: grad = beta * grad + dL/dparam
};

/// Arguments of ops::batch_norm. x: [N, C], [B, C, L] or [B, C, H, W] (any strides); weight (γ),
/// bias (β): [C] or absent (γ = 1, β = 0: PyTorch's affine=False); running_mean, running_var: [C],
/// read in evaluation mode (training ignores them). Forward writes y (like x) and, in training mode,
/// batch_mean and batch_var ([C], optional; batch_var is the UNBIASED variance PyTorch folds into
/// running_var). Backward reads grad_y (like x) and writes grad_x (like x), grad_weight, grad_bias
/// ([C]), each optional. reserve: training mode's per-channel mean and 1/std (batch_norm_reserve_bytes),
/// filled by forward and read by backward; backward with an absent reserve recomputes them from x.
template <class T>
struct BatchNormArgs {
  View<const T> x{};
  View<const T> weight{};
  View<const T> bias{};
  View<const T> running_mean{};
  View<const T> running_var{};
  View<T> y{};
  View<T> batch_mean{};
  View<T> batch_var{};
  View<const T> grad_y{};
  View<T> grad_x{};
  View<T> grad_weight{};
  View<T> grad_bias{};
  Reserve reserve{};
  BatchNormOptions options{};
};

namespace detail {

/// A per-channel parameter [C] read as double, or `fallback` when absent (γ = 1, β = 0).
template <class T>
struct ChannelParam {
  const T* p;
  std::int64_t stride;
  double fallback;
  KDLOSS_HOST_DEVICE double operator()(std::int64_t c) const { return p ? convert<double>(p[c * stride]) : fallback; }
};
template <class T>
ChannelParam<T> channel_param(const View<const T>& v, double fallback) {
  return {present(v) ? v.data : nullptr, present(v) ? v.strides[0] : 0, fallback};
}
/// A per-channel output [C] (null: not requested), written as v or, for a gradient, beta * old + v
/// (beta 0 never reads the old value).
template <class T>
struct ChannelOut {
  T* p;
  std::int64_t stride;
  KDLOSS_HOST_DEVICE void set(std::int64_t c, double v) const {
    if (p) store_as(p + c * stride, v);
  }
  KDLOSS_HOST_DEVICE void accumulate(std::int64_t c, double v, double beta) const {
    if (p) store_as(p + c * stride, beta == 0 ? v : beta * convert<double>(p[c * stride]) + v);
  }
};
template <class T>
ChannelOut<T> channel_out(const View<T>& v) {
  return {present(v) ? v.data : nullptr, present(v) ? v.strides[0] : 0};
}
/// center(c) of a backward's cross sums: the kept batch mean.
struct DoubleAt {
  const double* p;
  KDLOSS_HOST_DEVICE double operator()(std::int64_t c) const { return p[c]; }
};

/// The per-channel arrays one call works with (C doubles each, on the call's device): the batch
/// statistics (in the reserve or the workspace) and the coefficients of the affine pass.
struct BatchNormState {
  double* mean = nullptr;
  double* inv_std = nullptr;
  double* scale_g = nullptr;
  double* scale_x = nullptr;
  double* center = nullptr;
  double* shift = nullptr;
  double* partials = nullptr;
};

/// Training statistics of one channel: keeps mean and 1/sqrt(var + eps) (var biased, as the
/// normalisation uses), writes batch_mean and the unbiased batch_var, and y's coefficients when
/// scale_x is set: y = (x - mean) * γ/std + β.
template <class T>
struct TrainStats {
  double eps;
  double* mean;
  double* inv_std;
  double* scale_x;
  double* shift;
  ChannelParam<T> weight, bias;
  ChannelOut<T> batch_mean, batch_var;
  KDLOSS_HOST_DEVICE void operator()(std::int64_t c, double count, double mu, double m2) const {
    const double inv = 1.0 / math::sqrt(m2 / count + eps);
    mean[c] = mu;
    inv_std[c] = inv;
    if (scale_x) {
      scale_x[c] = weight(c) * inv;
      shift[c] = bias(c);
    }
    batch_mean.set(c, mu);
    batch_var.set(c, count > 1 ? m2 / (count - 1) : mu);  // no values: mu is NaN
  }
};

/// Training gradients of one channel from sum g and sum g (x - mean): grad_bias = sum g,
/// grad_weight = sum g * xhat = inv * sum g (x - mean), and
/// grad_x = γ inv (g - sum g / n - (x - mean) inv^2 sum g (x - mean) / n).
template <class T>
struct TrainGrads {
  double n, beta;
  const double* inv_std;
  ChannelParam<T> weight;
  double* scale_g;  // grad_x's coefficients, null when grad_x is not requested
  double* scale_x;
  double* shift;
  ChannelOut<T> grad_weight, grad_bias;
  KDLOSS_HOST_DEVICE void operator()(std::int64_t c, double sum_g, double sum_gx) const {
    const double inv = inv_std[c];
    grad_weight.accumulate(c, n > 0 ? sum_gx * inv : 0.0, beta);  // an empty batch: sums over nothing
    grad_bias.accumulate(c, sum_g, beta);
    if (scale_g) {
      const double k = weight(c) * inv;
      scale_g[c] = k;
      scale_x[c] = -k * inv * inv * (sum_gx / n);
      shift[c] = -k * (sum_g / n);
    }
  }
};

/// Evaluation coefficients of one channel from the running statistics: 1/sqrt(running_var + eps),
/// y = (x - running_mean) γ inv + β, grad_x = γ inv g.
template <class T>
struct EvalCoefficients {
  double eps;
  ChannelParam<T> running_mean, running_var, weight, bias;
  double* inv_std;
  double* scale_g;
  double* scale_x;
  double* center;
  double* shift;
  KDLOSS_HOST_DEVICE void operator()(std::int64_t c) const {
    const double inv = 1.0 / math::sqrt(running_var(c) + eps);
    inv_std[c] = inv;
    scale_g[c] = weight(c) * inv;
    scale_x[c] = weight(c) * inv;
    center[c] = running_mean(c);
    shift[c] = bias(c);
  }
};
/// Evaluation parameter gradients: grad_weight = inv * sum g (x - running_mean), grad_bias = sum g.
template <class T>
struct EvalGrads {
  double beta;
  const double* inv_std;
  ChannelOut<T> grad_weight, grad_bias;
  KDLOSS_HOST_DEVICE void operator()(std::int64_t c, double sum_g, double sum_gx) const {
    grad_weight.accumulate(c, sum_gx * inv_std[c], beta);
    grad_bias.accumulate(c, sum_g, beta);
  }
};

/// running = (1 - momentum) * running + momentum * batch, per channel.
template <class T>
struct UpdateRunning {
  double momentum;
  T* mean;
  std::int64_t mean_stride;
  T* var;
  std::int64_t var_stride;
  const T* batch_mean;
  std::int64_t batch_mean_stride;
  const T* batch_var;
  std::int64_t batch_var_stride;
  KDLOSS_HOST_DEVICE void operator()(std::int64_t c) const {
    T* m = mean + c * mean_stride;
    T* v = var + c * var_stride;
    store_as(m, (1.0 - momentum) * convert<double>(*m) + momentum * convert<double>(batch_mean[c * batch_mean_stride]));
    store_as(v, (1.0 - momentum) * convert<double>(*v) + momentum * convert<double>(batch_var[c * batch_var_stride]));
  }
};

template <class T>
std::int64_t bn_channels(const BatchNormArgs<T>& a) {
  return a.x.rank() >= 2 ? a.x.shape[1] : 0;
}
/// Elements per channel: B * H * W (N for [N, C], B * L for [B, C, L]).
template <class T>
std::int64_t bn_per_channel(const BatchNormArgs<T>& a) {
  std::int64_t n = a.x.shape[0];
  for (int d = 2; d < a.x.rank(); ++d) n *= a.x.shape[d];
  return n;
}

/// Carves the call's arrays: the statistics from the reserve when given (training), else from the
/// workspace; the coefficients and the GPU partials from the workspace. A null base only counts.
template <class T>
BatchNormState carve_state(const BatchNormArgs<T>& a, void* workspace, void* reserve) {
  const auto nc = static_cast<std::size_t>(bn_channels(a));
  kdloss::detail::Carver ws(workspace), rs(reserve);
  BatchNormState s;
  kdloss::detail::Carver& stats = reserve ? rs : ws;
  s.mean = stats.take<double>(nc);
  s.inv_std = stats.take<double>(nc);
  s.scale_g = ws.take<double>(nc);
  s.scale_x = ws.take<double>(nc);
  s.center = ws.take<double>(nc);
  s.shift = ws.take<double>(nc);
  s.partials = kdloss::detail::carve_channel_partials(ws, a.x.device, expr::as_channel_space(a.x).shape);
  return s;
}
template <class T>
std::size_t state_bytes(const BatchNormArgs<T>& a, bool reserve) {
  kdloss::detail::Carver ws, rs;
  const auto nc = static_cast<std::size_t>(bn_channels(a));
  if (reserve) {
    rs.take<double>(nc);
    rs.take<double>(nc);
    return rs.bytes();
  }
  for (int i = 0; i < 6; ++i) ws.take<double>(nc);
  kdloss::detail::carve_channel_partials(ws, a.x.device, expr::as_channel_space(a.x).shape);
  return ws.bytes();
}

}  // namespace detail

/// Throws kdloss::Error naming the argument and the shapes when `mode` cannot run; writes nothing.
template <class T>
void batch_norm_check(const BatchNormArgs<T>& a, Mode mode) {
  const kdloss::detail::Checker ck{"kdloss::ops::batch_norm"};
  using kdloss::detail::require;
  const char* fn = ck.fn;
  const bool training = a.options.training;
  ck.rank_between(a.x, "x", 2, 4);
  ck.not_null(a.x, "x");
  kdloss::detail::require_backend<T>(fn, a.x.device);
  const std::int64_t nc = a.x.shape[1];
  const Dims channel_shape{nc};
  require(a.options.eps >= 0, fn, ": option 'eps' is ", a.options.eps, " but must be >= 0");
  if (training)
    require(detail::bn_per_channel(a) != 1, fn,
            ": Expected more than 1 value per channel when training, got input 'x' of shape ", a.x.shape.str(),
            " (batch statistics of one value have no variance; use evaluation mode)");
  const auto param = [&](const View<const T>& v, const char* name) {
    ck.not_null(v, name);
    ck.shape(v, name, channel_shape);
    ck.device(v, name, a.x.device);
  };
  if (present(a.weight)) param(a.weight, "weight");
  if (present(a.bias)) param(a.bias, "bias");
  if (!training) {
    require(present(a.running_mean) && present(a.running_var), fn,
            ": evaluation mode (options.training = false) reads 'running_mean' and 'running_var' but ",
            present(a.running_mean) ? "'running_var'" : "'running_mean'", " is absent");
    require(absent(a.batch_mean) && absent(a.batch_var), fn,
            ": 'batch_mean' and 'batch_var' are written in training mode only; leave them absent in evaluation mode");
  }
  if (present(a.running_mean)) param(a.running_mean, "running_mean");
  if (present(a.running_var)) param(a.running_var, "running_var");
  // Every output must be disjoint from every input and from the other outputs.
  struct Named {
    View<const T> v;
    const char* name;
  };
  Named inputs[] = {{a.x, "x"},
                    {a.weight, "weight"},
                    {a.bias, "bias"},
                    {a.running_mean, "running_mean"},
                    {a.running_var, "running_var"},
                    {writes_gradients(mode) ? a.grad_y : View<const T>{}, "grad_y"}};
  Named outputs[6];
  int n_out = 0;
  const auto output = [&](const View<T>& v, const char* name, const Dims& shape) {
    if (absent(v)) return;
    ck.not_null(v, name);
    ck.shape(v, name, shape);
    ck.device(v, name, a.x.device);
    ck.unique(v, name);
    for (const Named& in : inputs) ck.disjoint(v, name, in.v, in.name);
    for (int i = 0; i < n_out; ++i) ck.disjoint(v, name, outputs[i].v, outputs[i].name);
    outputs[n_out++] = Named{v, name};
  };
  if (writes_value(mode)) {
    require(present(a.y), fn, ": mode ", to_string(mode), " writes 'y' but it is absent");
    output(a.y, "y", a.x.shape);
    output(a.batch_mean, "batch_mean", channel_shape);
    output(a.batch_var, "batch_var", channel_shape);
  }
  if (writes_gradients(mode)) {
    require(present(a.grad_y), fn, ": mode ", to_string(mode), " reads 'grad_y' but it is absent");
    ck.not_null(a.grad_y, "grad_y");
    ck.shape(a.grad_y, "grad_y", a.x.shape);
    ck.device(a.grad_y, "grad_y", a.x.device);
    output(a.grad_x, "grad_x", a.x.shape);
    output(a.grad_weight, "grad_weight", channel_shape);
    output(a.grad_bias, "grad_bias", channel_shape);
  }
  if (training && a.reserve.data) {
    const std::size_t need = detail::state_bytes(a, true);
    require(a.reserve.bytes >= need, fn, ": argument 'reserve' has ", a.reserve.bytes, " bytes but x ",
            a.x.shape.str(), " needs ", need, " (size it with batch_norm_reserve_bytes)");
    require(reinterpret_cast<std::uintptr_t>(a.reserve.data) % kdloss::detail::kWorkspaceAlignment == 0, fn,
            ": argument 'reserve' must be aligned to ", kdloss::detail::kWorkspaceAlignment, " bytes");
  }
}

/// Scratch bytes of batch_norm(args, mode) for every Mode: six per-channel double arrays (statistics
/// when no reserve is given, coefficients) and, on the GPU, the per-slice partials of the reductions.
template <class T>
std::size_t batch_norm_workspace_bytes(const BatchNormArgs<T>& args) {
  return detail::state_bytes(args, false);
}

/// Reserve bytes of training mode: the per-channel mean and 1/sqrt(var + eps), 2 * C doubles (each
/// array aligned to 256 bytes). Evaluation mode keeps nothing (0).
template <class T>
std::size_t batch_norm_reserve_bytes(const BatchNormArgs<T>& args) {
  return args.options.training ? detail::state_bytes(args, true) : 0;
}

/// forward: y = (x - mean) / sqrt(var + eps) * γ + β per channel, with the batch's mean and biased
/// variance (training; also writes batch_mean, the unbiased batch_var and the reserve when given) or
/// the running ones (evaluation).
/// backward (reads grad_y; training: the reserve, or recomputes the statistics from x when it is
/// absent): grad_x = γ/std (grad_y - mean(grad_y) - xhat mean(grad_y xhat)) in training, γ/std grad_y
/// in evaluation; grad_weight = beta * grad_weight + sum grad_y xhat; grad_bias = beta * grad_bias +
/// sum grad_y (sums over batch and positions); each written only when present.
/// forward_backward: both, sharing the statistics.
///
///   std::vector<float> gamma(256, 1.0f), beta(256, 0.0f), mean(256), var(256);
///   kdloss::ops::BatchNormArgs<float> bn;
///   bn.x = kdloss::host_view<const float>(feat, {2, 256, 50, 84});
///   bn.weight = kdloss::host_view<const float>(gamma.data(), {256});
///   bn.bias = kdloss::host_view<const float>(beta.data(), {256});
///   bn.y = kdloss::host_view(out, {2, 256, 50, 84});
///   bn.batch_mean = kdloss::host_view(mean.data(), {256});
///   bn.batch_var = kdloss::host_view(var.data(), {256});             // unbiased, for running_var
///   const std::size_t keep_bytes = kdloss::ops::batch_norm_reserve_bytes(bn);
///   void* keep = std::aligned_alloc(256, keep_bytes);                  // caller-owned, 256-byte aligned
///   bn.reserve = {keep, keep_bytes};
///   kdloss::ops::batch_norm(bn, kdloss::Mode::forward);
///   bn.grad_y = kdloss::host_view<const float>(grad_out, {2, 256, 50, 84});
///   bn.grad_x = kdloss::host_view(grad_x, {2, 256, 50, 84});
///   bn.grad_weight = kdloss::host_view(grad_w, {256});
///   bn.grad_bias = kdloss::host_view(grad_b, {256});
///   kdloss::ops::batch_norm(bn, kdloss::Mode::backward);             // reads the reserve
///   std::free(keep);
template <class T>
void batch_norm(const BatchNormArgs<T>& args, Mode mode, const Exec& exec = {}) {
  const char* fn = "kdloss::ops::batch_norm";
  batch_norm_check(args, mode);
  using Acc = kdloss::acc_t<T>;
  const Device dev = args.x.device;
  const Stream stream = exec.stream;
  const bool training = args.options.training;
  const double eps = args.options.eps, beta = args.options.param_grads.beta;
  kdloss::detail::HostScratch host;
  void* ws = kdloss::detail::resolve_workspace(fn, dev, exec.workspace, batch_norm_workspace_bytes(args), host);
  void* reserve = training ? args.reserve.data : nullptr;
  const detail::BatchNormState s = detail::carve_state(args, ws, reserve);
  const View<const T> x = expr::as_channel_space(args.x);
  const std::int64_t nc = detail::bn_channels(args);
  const auto weight = detail::channel_param(args.weight, 1.0), bias = detail::channel_param(args.bias, 0.0);

  if (!training) {
    kdloss::detail::for_each_channel(
        dev, stream, nc,
        detail::EvalCoefficients<T>{eps, detail::channel_param(args.running_mean, 0.0),
                                    detail::channel_param(args.running_var, 1.0), weight, bias, s.inv_std, s.scale_g,
                                    s.scale_x, s.center, s.shift});
    if (writes_value(mode))
      kdloss::detail::channel_affine<Acc>(dev, stream, x, View<const T>{}, expr::as_channel_space(args.y),
                                          expr::ChannelAffine{nullptr, s.scale_x, s.center, s.shift});
    if (!writes_gradients(mode)) return;
    const View<const T> gy = expr::as_channel_space(args.grad_y);
    if (present(args.grad_weight) || present(args.grad_bias))
      kdloss::detail::channel_cross_sums<Acc>(
          dev, stream, x, gy, detail::channel_param(args.running_mean, 0.0), s.partials,
          detail::EvalGrads<T>{beta, s.inv_std, detail::channel_out(args.grad_weight), detail::channel_out(args.grad_bias)});
    if (present(args.grad_x))
      kdloss::detail::channel_affine<Acc>(dev, stream, View<const T>{}, gy, expr::as_channel_space(args.grad_x),
                                          expr::ChannelAffine{s.scale_g, nullptr, nullptr, nullptr});
    return;
  }

  const auto moments = [&](bool coefficients, bool outputs) {
    kdloss::detail::channel_moments<Acc>(
        dev, stream, x, s.partials,
        detail::TrainStats<T>{eps, s.mean, s.inv_std, coefficients ? s.scale_x : nullptr, s.shift, weight, bias,
                              outputs ? detail::channel_out(args.batch_mean) : detail::ChannelOut<T>{nullptr, 0},
                              outputs ? detail::channel_out(args.batch_var) : detail::ChannelOut<T>{nullptr, 0}});
  };
  if (writes_value(mode)) {
    moments(true, true);
    kdloss::detail::channel_affine<Acc>(dev, stream, x, View<const T>{}, expr::as_channel_space(args.y),
                                        expr::ChannelAffine{nullptr, s.scale_x, s.mean, s.shift});
  }
  if (!writes_gradients(mode)) return;
  if (mode == Mode::backward && !reserve) moments(false, false);  // no reserve: recompute the statistics
  const View<const T> gy = expr::as_channel_space(args.grad_y);
  const bool gx = present(args.grad_x);
  const double n = static_cast<double>(detail::bn_per_channel(args));
  kdloss::detail::channel_cross_sums<Acc>(
      dev, stream, x, gy, detail::DoubleAt{s.mean}, s.partials,
      detail::TrainGrads<T>{n, beta, s.inv_std, weight, gx ? s.scale_g : nullptr, s.scale_x, s.shift,
                            detail::channel_out(args.grad_weight), detail::channel_out(args.grad_bias)});
  if (gx)
    kdloss::detail::channel_affine<Acc>(dev, stream, x, gy, expr::as_channel_space(args.grad_x),
                                        expr::ChannelAffine{s.scale_g, s.scale_x, s.mean, s.shift});
}

/// Thin wrapper: the forward in `options`' mode (weight, bias, running statistics, batch_mean and
/// batch_var may be absent views where BatchNormArgs allows it).
///
///   const auto g = kdloss::host_view<const float>(gamma.data(), {256});
///   kdloss::ops::batch_norm_forward<float>(kdloss::host_view<const float>(feat, {2, 256, 50, 84}), g, {}, {}, {},
///                                          kdloss::host_view(out, {2, 256, 50, 84}));   // training, eps 1e-5
template <class T>
void batch_norm_forward(const View<const T>& x, const View<const T>& weight, const View<const T>& bias,
                        const View<const T>& running_mean, const View<const T>& running_var, const View<T>& y,
                        const View<T>& batch_mean = {}, const View<T>& batch_var = {},
                        const BatchNormOptions& options = {}, const Reserve& reserve = {}, const Exec& exec = {}) {
  BatchNormArgs<T> a;
  a.x = x;
  a.weight = weight;
  a.bias = bias;
  a.running_mean = running_mean;
  a.running_var = running_var;
  a.y = y;
  a.batch_mean = batch_mean;
  a.batch_var = batch_var;
  a.options = options;
  a.reserve = reserve;
  batch_norm(a, Mode::forward, exec);
}

/// Thin wrapper: the gradients (grad_x, grad_weight, grad_bias may be absent). Training mode reads
/// the reserve of the forward when given, else recomputes the batch statistics from x.
///
///   kdloss::ops::batch_norm_backward<float>(kdloss::host_view<const float>(feat, {2, 256, 50, 84}), g, {}, {},
///                                           kdloss::host_view<const float>(grad_out, {2, 256, 50, 84}),
///                                           kdloss::host_view(grad_x, {2, 256, 50, 84}), kdloss::host_view(grad_w, {256}),
///                                           {}, {true, 1e-5, {/*beta=*/1.0}});   // recomputes the statistics
template <class T>
void batch_norm_backward(const View<const T>& x, const View<const T>& weight, const View<const T>& running_mean,
                         const View<const T>& running_var, const View<const T>& grad_y, const View<T>& grad_x,
                         const View<T>& grad_weight, const View<T>& grad_bias, const BatchNormOptions& options = {},
                         const Reserve& reserve = {}, const Exec& exec = {}) {
  BatchNormArgs<T> a;
  a.x = x;
  a.weight = weight;
  a.running_mean = running_mean;
  a.running_var = running_var;
  a.grad_y = grad_y;
  a.grad_x = grad_x;
  a.grad_weight = grad_weight;
  a.grad_bias = grad_bias;
  a.options = options;
  a.reserve = reserve;
  batch_norm(a, Mode::backward, exec);
}

/// PyTorch's running-statistics update after a training forward (BatchNorm's `momentum`, default
/// 0.1): running_mean = (1 - momentum) running_mean + momentum batch_mean, and likewise running_var
/// with the unbiased batch_var. PyTorch's momentum=None (a cumulative average over the batches seen)
/// is not offered: pass momentum = 1 / (batches seen) yourself. All [C], on one device; skip the call
/// for an empty batch (PyTorch leaves the running statistics as they are there).
///
///   std::vector<float> running_mean(256, 0.0f), running_var(256, 1.0f);
///   kdloss::ops::batch_norm_update_running_stats<float>(kdloss::host_view(running_mean.data(), {256}),
///                                                       kdloss::host_view(running_var.data(), {256}),
///                                                       kdloss::host_view<const float>(mean.data(), {256}),
///                                                       kdloss::host_view<const float>(var.data(), {256}), 0.1);
template <class T>
void batch_norm_update_running_stats(const View<T>& running_mean, const View<T>& running_var,
                                     const View<const T>& batch_mean, const View<const T>& batch_var, double momentum,
                                     const Exec& exec = {}) {
  const kdloss::detail::Checker ck{"kdloss::ops::batch_norm_update_running_stats"};
  ck.rank(running_mean, "running_mean", 1);
  const Dims shape = running_mean.shape;
  const auto one = [&](const auto& v, const char* name) {
    ck.not_null(v, name);
    ck.shape(v, name, shape);
    ck.device(v, name, running_mean.device);
  };
  one(running_mean, "running_mean");
  one(running_var, "running_var");
  one(batch_mean, "batch_mean");
  one(batch_var, "batch_var");
  ck.unique(running_mean, "running_mean");
  ck.unique(running_var, "running_var");
  ck.disjoint(running_mean, "running_mean", running_var, "running_var");
  ck.disjoint(running_mean, "running_mean", batch_var, "batch_var");
  ck.disjoint(running_var, "running_var", batch_mean, "batch_mean");
  kdloss::detail::require_backend<T>(ck.fn, running_mean.device);
  kdloss::detail::for_each_channel(
      running_mean.device, exec.stream, shape[0],
      detail::UpdateRunning<T>{momentum, running_mean.data, running_mean.strides[0], running_var.data,
                               running_var.strides[0], batch_mean.data, batch_mean.strides[0], batch_var.data,
                               batch_var.strides[0]});
}

}  // namespace ops
} }  // namespace kdloss
