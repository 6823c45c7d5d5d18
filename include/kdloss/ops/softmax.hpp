// kdloss/ops/softmax.hpp: softmax and log-softmax along one axis, forward and backward, with a
// temperature and an output scale (FBKD masks are HW * softmax(G / t)). See docs/ops/softmax.md.
//
// Both follow the entry-point shape of core/entry.hpp: SoftmaxArgs / LogSoftmaxArgs, softmax_check,
// softmax_workspace_bytes (0: no scratch) and softmax(args, mode, exec), with the thin wrappers
// softmax(x, axis, out), softmax_backward(y, grad_y, axis, grad_x), softmax_forward_backward(...).
//
// The row operations below are the shared building block: every loss that normalises along an
// axis (KL over classes, FBKD attention masks) runs them, or its own row operation written the
// same way, through detail::rowwise. A row operation is a functor
//   template <class Acc, class Row> KDLOSS_HOST_DEVICE R operator()(const Row& row) const;
// where Row offers size(), in<K, Acc>(j), out<K>(j, v), sum<Acc>(f), max<Acc>(f), for_each(f);
// on the GPU a warp or a block runs each row and sum/max are cooperative.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops::detail {

/// Max of x/T over the row, for a stable exponent.
template <std::size_t K, class Acc, class Row>
KDLOSS_HOST_DEVICE Acc row_max_scaled(const Row& row, Acc inv_t) {
  return row.template max<Acc>([&](std::int64_t j) { return row.template in<K, Acc>(j) * inv_t; });
}
/// Max m of x/T and the sum z of exp(x/T - m) over the row. Callers subtract m before anything
/// else: x/T - m is exact near the max, where x/T - logsumexp would round at |x/T|'s magnitude.
template <std::size_t K, class Acc>
struct MaxAndSum {
  Acc max, sum;
};
template <std::size_t K, class Acc, class Row>
KDLOSS_HOST_DEVICE MaxAndSum<K, Acc> row_max_and_sum(const Row& row, Acc inv_t) {
  const Acc m = row_max_scaled<K>(row, inv_t);
  const Acc z = row.template sum<Acc>([&](std::int64_t j) { return math::exp(row.template in<K, Acc>(j) * inv_t - m); });
  return {m, z};
}

/// out = scale * softmax(in / T).
struct SoftmaxRow {
  static constexpr bool kPacketRows = true;  // the host may run it on packets of rows (backend/cpu/rowwise.hpp)
  double inv_t, scale;
  template <class Acc, class Row>
  KDLOSS_HOST_DEVICE void operator()(const Row& row) const {
    const Acc it = Acc(inv_t);
    const auto ms = row_max_and_sum<0>(row, it);
    const Acc factor = Acc(scale) / ms.sum;
    row.for_each([&](std::int64_t j) {
      row.template out<0>(j, factor * math::exp(row.template in<0, Acc>(j) * it - ms.max));
    });
  }
};
/// out = log softmax(in / T).
struct LogSoftmaxRow {
  static constexpr bool kPacketRows = true;  // the host may run it on packets of rows (backend/cpu/rowwise.hpp)
  double inv_t;
  template <class Acc, class Row>
  KDLOSS_HOST_DEVICE void operator()(const Row& row) const {
    const Acc it = Acc(inv_t);
    const auto ms = row_max_and_sum<0>(row, it);
    const Acc log_z = math::log(ms.sum);
    row.for_each([&](std::int64_t j) { row.template out<0>(j, (row.template in<0, Acc>(j) * it - ms.max) - log_z); });
  }
};
/// y = scale * softmax(x/T): dx = (1/T) * y * (g - sum_j g_j y_j / scale). Inputs: y, g.
struct SoftmaxBackwardRow {
  static constexpr bool kPacketRows = true;  // the host may run it on packets of rows (backend/cpu/rowwise.hpp)
  double inv_t, inv_scale;
  template <class Acc, class Row>
  KDLOSS_HOST_DEVICE void operator()(const Row& row) const {
    const Acc dot = row.template sum<Acc>(
        [&](std::int64_t j) { return row.template in<0, Acc>(j) * row.template in<1, Acc>(j); });
    const Acc centre = dot * Acc(inv_scale);
    row.for_each([&](std::int64_t j) {
      row.template out<0>(j, Acc(inv_t) * row.template in<0, Acc>(j) * (row.template in<1, Acc>(j) - centre));
    });
  }
};
/// y = log softmax(x/T): dx = (1/T) * (g - exp(y) * sum_j g_j). Inputs: y, g.
struct LogSoftmaxBackwardRow {
  static constexpr bool kPacketRows = true;  // the host may run it on packets of rows (backend/cpu/rowwise.hpp)
  double inv_t;
  template <class Acc, class Row>
  KDLOSS_HOST_DEVICE void operator()(const Row& row) const {
    const Acc total = row.template sum<Acc>([&](std::int64_t j) { return row.template in<1, Acc>(j); });
    row.for_each([&](std::int64_t j) {
      row.template out<0>(j, Acc(inv_t) * (row.template in<1, Acc>(j) -
                                           math::exp(row.template in<0, Acc>(j)) * total));
    });
  }
};

template <class T>
void check_axis(const kdloss::detail::Checker& ck, const View<const T>& v, const char* arg, int axis) {
  kdloss::detail::require(present(v), ck.fn, ": argument '", arg, "' is absent but this mode reads it");
  ck.not_null(v, arg);
  ck.rank_between(v, arg, 1, kMaxRank);
  kdloss::detail::require(axis >= 0 && axis < v.rank(), ck.fn, ": argument 'axis' is ", axis, " but '", arg,
                          "' has shape ", v.shape.str());
}
/// An output of the shape of `like`, on its device, unique, disjoint from `like`.
template <class T>
void check_axis_output(const kdloss::detail::Checker& ck, const View<T>& v, const char* arg, const View<const T>& like,
                       const char* like_arg) {
  kdloss::detail::require(present(v), ck.fn, ": argument '", arg, "' is absent but this mode writes it");
  ck.not_null(v, arg);
  ck.shape(v, arg, like.shape);
  ck.device(v, arg, like.device);
  ck.unique(v, arg);
  ck.disjoint(v, arg, like, like_arg);
}

/// The checks of softmax and log_softmax (Args: SoftmaxArgs or LogSoftmaxArgs). Forward: x -> out.
/// Backward: y (the forward's out), grad_out -> grad_x. forward_backward: x -> out, then out,
/// grad_out -> grad_x.
template <class T, class Args>
void check_axis_entry(const char* fn, const Args& a, Mode mode, double temperature) {
  const kdloss::detail::Checker ck{fn};
  kdloss::detail::require(temperature > 0 && std::isfinite(temperature), fn,
                          ": argument 'options.temperature' must be > 0 and finite but is ", temperature);
  const bool forward = writes_value(mode);
  const View<const T> y = forward ? View<const T>(a.out) : a.y;
  if (forward) {
    check_axis(ck, a.x, "x", a.axis);
    check_axis_output(ck, a.out, "out", a.x, "x");
  } else {
    check_axis(ck, a.y, "y", a.axis);
  }
  if (writes_gradients(mode)) {
    const char* y_arg = forward ? "out" : "y";
    kdloss::detail::require(present(a.grad_out), fn, ": argument 'grad_out' is absent but ", to_string(mode),
                            " reads it (dL/dy)");
    ck.not_null(a.grad_out, "grad_out");
    ck.same_shape(a.grad_out, "grad_out", y, y_arg);
    ck.device(a.grad_out, "grad_out", y.device);
    check_axis_output(ck, a.grad_x, "grad_x", y, y_arg);
    ck.disjoint(a.grad_x, "grad_x", a.grad_out, "grad_out");
    if (forward) {
      ck.disjoint(a.grad_x, "grad_x", a.x, "x");
      ck.disjoint(a.out, "out", a.grad_out, "grad_out");
    }
  }
  kdloss::detail::require_backend<T>(fn, y.device);
}

/// One row operation over `in` along `axis` into `out` (Ins: the row's inputs).
template <class Acc, class Op, class... I, class O>
void run_rows(const Exec& exec, const Dims& shape, int axis, Op op, const std::tuple<View<const I>...>& ins,
              const View<O>& out, Device device) {
  kdloss::detail::rowwise<Acc>(device, exec.stream, shape, axis, op, ins, std::tuple{out}, nullptr,
                               kdloss::detail::Keep{}, static_cast<double*>(nullptr));
}

/// Forward rows `fwd` on x -> out, then backward rows `bwd` on (y, grad_out) -> grad_x, as `mode` asks.
template <class T, class Args, class Fwd, class Bwd>
void run_axis_entry(const Args& a, Mode mode, Fwd fwd, Bwd bwd, const Exec& exec) {
  using Acc = acc_t<T>;
  if (writes_value(mode)) run_rows<Acc>(exec, a.x.shape, a.axis, fwd, std::tuple{a.x}, a.out, a.x.device);
  if (writes_gradients(mode)) {
    const View<const T> y = mode == Mode::backward ? a.y : View<const T>(a.out);
    run_rows<Acc>(exec, y.shape, a.axis, bwd, std::tuple{y, a.grad_out}, a.grad_x, y.device);
  }
}

/// The fields of SoftmaxArgs and LogSoftmaxArgs (which differ only in their options).
template <class T, class Options>
struct AxisArgs {
  View<const T> x{};         // input: forward, forward_backward
  int axis = 0;            // in [0, rank)
  View<T> out{};             // y: written by forward and forward_backward
  View<const T> y{};         // the forward's y, read by backward (forward_backward reads `out`)
  View<const T> grad_out{};  // dL/dy: backward, forward_backward
  View<T> grad_x{};          // dL/dx: written by backward and forward_backward
  Options options{};
};

inline constexpr const char* kSoftmaxNames[3] = {"kdloss::ops::softmax", "kdloss::ops::softmax_backward",
                                          "kdloss::ops::softmax_forward_backward"};
inline constexpr const char* kLogSoftmaxNames[3] = {"kdloss::ops::log_softmax", "kdloss::ops::log_softmax_backward",
                                             "kdloss::ops::log_softmax_forward_backward"};

}  // namespace ops::detail

namespace ops {

// ---------------------------------------------------------------------------------------------
// softmax: y = scale * softmax(x / temperature) along `axis`;
//          dx = (1/temperature) * y * (g - sum_axis(g * y) / scale).

/// Options of ops::softmax.
struct SoftmaxOptions {
  double temperature = 1.0;  // > 0 and finite; the logits are divided by it
  double scale = 1.0;        // y is multiplied by it (FBKD masks: HW or C); non-zero
};

/// The arguments of one ops::softmax call. Leave a view default-constructed (`{}`) when the mode
/// does not use it. Any strides; outputs must be unique and disjoint from every other argument.
///
///   float x[6] = {1, 2, 3, 4, 5, 6}, y[6];
///   kdloss::ops::SoftmaxArgs<float> args;
///   args.x = kdloss::host_view<const float>(x, {2, 3});
///   args.axis = 1;
///   args.out = kdloss::host_view(y, {2, 3});
///   args.options.temperature = 0.5;
///   kdloss::ops::softmax(args, kdloss::Mode::forward);
/// Fields: x (input: forward, forward_backward), axis (in [0, rank)), out (y: written by forward and
/// forward_backward), y (the forward's y, read by backward; forward_backward reads `out`), grad_out
/// (dL/dy: backward, forward_backward), grad_x (dL/dx: written by backward and forward_backward), options.
template <class T>
using SoftmaxArgs = detail::AxisArgs<T, SoftmaxOptions>;

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::ops::SoftmaxArgs<float> args;   // its views filled in as in SoftmaxArgs's example
///   kdloss::ops::softmax_check(args, kdloss::Mode::forward);
template <class T>
void softmax_check(const SoftmaxArgs<T>& args, Mode mode) {
  const char* fn = detail::kSoftmaxNames[mode_index(mode)];
  detail::check_axis_entry<T>(fn, args, mode, args.options.temperature);
  kdloss::detail::require(!writes_gradients(mode) || args.options.scale != 0, fn,
                          ": argument 'options.scale' must be non-zero");
}

/// Workspace bytes of softmax: 0 (one pass per row, no scratch), in every mode.
///
///   kdloss::ops::SoftmaxArgs<float> args;   // its views filled in as in SoftmaxArgs's example
///   std::size_t bytes = kdloss::ops::softmax_workspace_bytes(args);   // 0
template <class T>
std::size_t softmax_workspace_bytes(const SoftmaxArgs<T>&) {
  return 0;
}

/// Checks, then runs softmax in `mode` (forward: out; backward: grad_x from y and grad_out;
/// forward_backward: out, then grad_x from out and grad_out).
///
///   kdloss::ops::SoftmaxArgs<float> args;   // its views filled in as in SoftmaxArgs's example
///   kdloss::ops::softmax(args, kdloss::Mode::forward);
template <class T>
void softmax(const SoftmaxArgs<T>& args, Mode mode, const Exec& exec = {}) {
  softmax_check(args, mode);
  const double inv_t = 1.0 / args.options.temperature;
  detail::run_axis_entry<T>(args, mode, detail::SoftmaxRow{inv_t, args.options.scale},
                            detail::SoftmaxBackwardRow{inv_t, 1.0 / args.options.scale}, exec);
}

/// out = scale * softmax(x / temperature) along `axis` (any strides; out must be unique).
///
///   // FBKD's spatial mask of one map: HW * softmax(G / t) over the positions of each image
///   const std::int64_t B = 2, H = 4, W = 5;
///   std::vector<float> g(B * H * W, 0.25f), mask(B * H * W);
///   kdloss::ops::softmax(kdloss::host_view<const float>(g.data(), {B, H * W}), 1,
///                        kdloss::host_view(mask.data(), {B, H * W}), {0.5, double(H * W)});
template <class X, class O>
void softmax(const View<X>& x, int axis, const View<O>& out, const SoftmaxOptions& options = {},
             const Exec& exec = {}) {
  softmax(SoftmaxArgs<O>{x, axis, out, {}, {}, {}, options}, Mode::forward, exec);
}

/// grad_x of y = scale * softmax(x / temperature), from y and grad_y.
///
///   std::vector<float> y(6, 1.0f / 3), gy = {1, 0, 0, 0, 1, 0}, gx(6);
///   kdloss::ops::softmax_backward(kdloss::host_view<const float>(y.data(), {2, 3}),
///                                 kdloss::host_view<const float>(gy.data(), {2, 3}), 1,
///                                 kdloss::host_view(gx.data(), {2, 3}));
template <class Y, class G, class O>
void softmax_backward(const View<Y>& y, const View<G>& grad_y, int axis, const View<O>& grad_x,
                      const SoftmaxOptions& options = {}, const Exec& exec = {}) {
  softmax(SoftmaxArgs<O>{{}, axis, {}, y, grad_y, grad_x, options}, Mode::backward, exec);
}

/// y and grad_x (from grad_y) in one call.
///
///   std::vector<float> x = {1, 2, 3, 4, 5, 6}, gy = {1, 0, 0, 0, 1, 0}, y(6), gx(6);
///   kdloss::ops::softmax_forward_backward(kdloss::host_view<const float>(x.data(), {2, 3}),
///                                         kdloss::host_view<const float>(gy.data(), {2, 3}), 1,
///                                         kdloss::host_view(y.data(), {2, 3}), kdloss::host_view(gx.data(), {2, 3}));
template <class X, class G, class O>
void softmax_forward_backward(const View<X>& x, const View<G>& grad_y, int axis, const View<O>& out,
                              const View<O>& grad_x, const SoftmaxOptions& options = {}, const Exec& exec = {}) {
  softmax(SoftmaxArgs<O>{x, axis, out, {}, grad_y, grad_x, options}, Mode::forward_backward, exec);
}

// ---------------------------------------------------------------------------------------------
// log_softmax: y = log softmax(x / temperature) along `axis`;
//              dx = (1/temperature) * (g - exp(y) * sum_axis(g)).

/// Options of ops::log_softmax.
struct LogSoftmaxOptions {
  double temperature = 1.0;  // > 0 and finite
};

/// The arguments of one ops::log_softmax call (fields as SoftmaxArgs).
///
///   float x[6] = {1, 2, 3, 4, 5, 6}, y[6];
///   kdloss::ops::LogSoftmaxArgs<float> args;
///   args.x = kdloss::host_view<const float>(x, {2, 3});
///   args.axis = 1;
///   args.out = kdloss::host_view(y, {2, 3});
///   kdloss::ops::log_softmax(args, kdloss::Mode::forward);
template <class T>
using LogSoftmaxArgs = detail::AxisArgs<T, LogSoftmaxOptions>;

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::ops::LogSoftmaxArgs<float> args;   // its views filled in as in LogSoftmaxArgs's example
///   kdloss::ops::log_softmax_check(args, kdloss::Mode::forward);
template <class T>
void log_softmax_check(const LogSoftmaxArgs<T>& args, Mode mode) {
  detail::check_axis_entry<T>(detail::kLogSoftmaxNames[mode_index(mode)], args, mode,
                              args.options.temperature);
}

/// Workspace bytes of log_softmax: 0, in every mode.
///
///   kdloss::ops::LogSoftmaxArgs<float> args;   // its views filled in as in LogSoftmaxArgs's example
///   std::size_t bytes = kdloss::ops::log_softmax_workspace_bytes(args);   // 0
template <class T>
std::size_t log_softmax_workspace_bytes(const LogSoftmaxArgs<T>&) {
  return 0;
}

/// Checks, then runs log_softmax in `mode` (as softmax(args, mode)).
///
///   kdloss::ops::LogSoftmaxArgs<float> args;   // its views filled in as in LogSoftmaxArgs's example
///   kdloss::ops::log_softmax(args, kdloss::Mode::forward);
template <class T>
void log_softmax(const LogSoftmaxArgs<T>& args, Mode mode, const Exec& exec = {}) {
  log_softmax_check(args, mode);
  const double inv_t = 1.0 / args.options.temperature;
  detail::run_axis_entry<T>(args, mode, detail::LogSoftmaxRow{inv_t}, detail::LogSoftmaxBackwardRow{inv_t}, exec);
}

/// out = log softmax(x / temperature) along `axis`.
///
///   std::vector<float> logits = {1, 2, 3, 4, 5, 6}, log_probs(6);
///   kdloss::ops::log_softmax(kdloss::host_view<const float>(logits.data(), {2, 3}), 1,
///                            kdloss::host_view(log_probs.data(), {2, 3}), {/*temperature=*/4.0});
template <class X, class O>
void log_softmax(const View<X>& x, int axis, const View<O>& out, const LogSoftmaxOptions& options = {},
                 const Exec& exec = {}) {
  log_softmax(LogSoftmaxArgs<O>{x, axis, out, {}, {}, {}, options}, Mode::forward, exec);
}

/// grad_x of y = log softmax(x / temperature), from y and grad_y.
///
///   std::vector<float> log_probs(6, -1.0986123f), grad_log_probs = {1, 0, 0, 0, 0, 1}, grad_logits(6);
///   kdloss::ops::log_softmax_backward(kdloss::host_view<const float>(log_probs.data(), {2, 3}),
///                                     kdloss::host_view<const float>(grad_log_probs.data(), {2, 3}), 1,
///                                     kdloss::host_view(grad_logits.data(), {2, 3}), {4.0});
template <class Y, class G, class O>
void log_softmax_backward(const View<Y>& y, const View<G>& grad_y, int axis, const View<O>& grad_x,
                          const LogSoftmaxOptions& options = {}, const Exec& exec = {}) {
  log_softmax(LogSoftmaxArgs<O>{{}, axis, {}, y, grad_y, grad_x, options}, Mode::backward, exec);
}

/// y and grad_x (from grad_y) in one call.
///
///   std::vector<float> x = {1, 2, 3, 4, 5, 6}, gy = {1, 0, 0, 0, 0, 1}, y(6), gx(6);
///   kdloss::ops::log_softmax_forward_backward(kdloss::host_view<const float>(x.data(), {2, 3}),
///                                             kdloss::host_view<const float>(gy.data(), {2, 3}), 1,
///                                             kdloss::host_view(y.data(), {2, 3}),
///                                             kdloss::host_view(gx.data(), {2, 3}));
template <class X, class G, class O>
void log_softmax_forward_backward(const View<X>& x, const View<G>& grad_y, int axis, const View<O>& out,
                                  const View<O>& grad_x, const LogSoftmaxOptions& options = {},
                                  const Exec& exec = {}) {
  log_softmax(LogSoftmaxArgs<O>{x, axis, out, {}, grad_y, grad_x, options}, Mode::forward_backward, exec);
}

}  // namespace ops
} }  // namespace kdloss
