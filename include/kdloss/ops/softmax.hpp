// kdloss/ops/softmax.hpp: softmax and log-softmax along one axis, forward and backward, with a
// temperature and an output scale (FBKD masks are HW * softmax(G / t)).
//
// The row operations below are the shared building block: every loss that normalises along an
// axis (KL over classes, FBKD attention masks) runs them, or its own row operation written the
// same way, through detail::rowwise. A row operation is a functor
//   template <class Acc, class Row> KDLOSS_HOST_DEVICE R operator()(const Row& row) const;
// where Row offers size(), in<K, Acc>(j), out<K>(j, v), sum<Acc>(f), max<Acc>(f), for_each(f);
// on the GPU a warp or a block runs each row and sum/max are cooperative.
#pragma once
#include <cstdint>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"

namespace kdloss {
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

template <class X, class O>
void check_axis_op(const kdloss::detail::Checker& ck, const View<const X>& x, int axis, const View<O>& out,
                   const char* out_arg, double temperature) {
  ck.not_null(x, "x");
  ck.rank_between(x, "x", 1, kMaxRank);
  kdloss::detail::require(axis >= 0 && axis < x.rank(), ck.fn, ": argument 'axis' is ", axis, " but 'x' has shape ",
                          x.shape.str());
  kdloss::detail::require(temperature > 0, ck.fn, ": argument 'temperature' must be > 0 but is ", temperature);
  ck.not_null(out, out_arg);
  ck.shape(out, out_arg, x.shape);
  ck.device(out, out_arg, x.device);
  ck.unique(out, out_arg);
  ck.disjoint(out, out_arg, x, "x");
  kdloss::detail::require_backend<O>(ck.fn, x.device);
}

template <class Op, class X, class O>
void run_axis_op(const View<const X>& x, int axis, Op op, const View<O>& out, const Exec& exec) {
  kdloss::detail::rowwise<acc_t<O>>(x.device, exec.stream, x.shape, axis, op, std::tuple{x}, std::tuple{out},
                                    nullptr, kdloss::detail::Keep{}, static_cast<double*>(nullptr));
}

}  // namespace ops::detail

namespace ops {

/// out = scale * softmax(x / temperature) along `axis` (any strides; out must be unique).
///
///   // FBKD spatial mask of one map: HW * softmax(G / t) over the positions of each image
///   kdloss::ops::softmax(kdloss::host_view(g, {B, H * W}), 1, kdloss::host_view(mask, {B, H * W}), 0.5, H * W);
template <class X, class O>
void softmax(const View<X>& x, int axis, const View<O>& out, double temperature = 1.0, double scale = 1.0,
             const Exec& exec = {}) {
  const kdloss::detail::Checker ck{"kdloss::ops::softmax"};
  const View<const O> xv = x;
  detail::check_axis_op(ck, xv, axis, out, "out", temperature);
  detail::run_axis_op(xv, axis, detail::SoftmaxRow{1.0 / temperature, scale}, out, exec);
}

/// out = log softmax(x / temperature) along `axis`.
///
///   kdloss::ops::log_softmax(logits, 1, log_probs, /*temperature=*/4.0);
template <class X, class O>
void log_softmax(const View<X>& x, int axis, const View<O>& out, double temperature = 1.0, const Exec& exec = {}) {
  const kdloss::detail::Checker ck{"kdloss::ops::log_softmax"};
  const View<const O> xv = x;
  detail::check_axis_op(ck, xv, axis, out, "out", temperature);
  detail::run_axis_op(xv, axis, detail::LogSoftmaxRow{1.0 / temperature}, out, exec);
}

/// grad_x of y = scale * softmax(x / temperature), from y and grad_y.
///
///   kdloss::ops::softmax_backward(y, grad_y, 1, grad_x, 0.5, H * W);
template <class Y, class G, class O>
void softmax_backward(const View<Y>& y, const View<G>& grad_y, int axis, const View<O>& grad_x,
                      double temperature = 1.0, double scale = 1.0, const Exec& exec = {}) {
  const kdloss::detail::Checker ck{"kdloss::ops::softmax_backward"};
  const View<const O> yv = y, gv = grad_y;
  detail::check_axis_op(ck, yv, axis, grad_x, "grad_x", temperature);
  ck.same_shape(gv, "grad_y", yv, "y");
  ck.device(gv, "grad_y", yv.device);
  ck.disjoint(grad_x, "grad_x", gv, "grad_y");
  kdloss::detail::require(scale != 0, ck.fn, ": argument 'scale' must be non-zero");
  kdloss::detail::rowwise<acc_t<O>>(yv.device, exec.stream, yv.shape, axis,
                                    detail::SoftmaxBackwardRow{1.0 / temperature, 1.0 / scale}, std::tuple{yv, gv},
                                    std::tuple{grad_x}, nullptr, kdloss::detail::Keep{}, static_cast<double*>(nullptr));
}

/// grad_x of y = log softmax(x / temperature), from y and grad_y.
///
///   kdloss::ops::log_softmax_backward(log_probs, grad_log_probs, 1, grad_logits, 4.0);
template <class Y, class G, class O>
void log_softmax_backward(const View<Y>& y, const View<G>& grad_y, int axis, const View<O>& grad_x,
                          double temperature = 1.0, const Exec& exec = {}) {
  const kdloss::detail::Checker ck{"kdloss::ops::log_softmax_backward"};
  const View<const O> yv = y, gv = grad_y;
  detail::check_axis_op(ck, yv, axis, grad_x, "grad_x", temperature);
  ck.same_shape(gv, "grad_y", yv, "y");
  ck.device(gv, "grad_y", yv.device);
  ck.disjoint(grad_x, "grad_x", gv, "grad_y");
  kdloss::detail::rowwise<acc_t<O>>(yv.device, exec.stream, yv.shape, axis,
                                    detail::LogSoftmaxBackwardRow{1.0 / temperature}, std::tuple{yv, gv},
                                    std::tuple{grad_x}, nullptr, kdloss::detail::Keep{}, static_cast<double*>(nullptr));
}

}  // namespace ops
}  // namespace kdloss
