// kdloss/losses/feature/kl_div.hpp: Hinton's temperature-scaled KL divergence between logits along
// a class axis,
//   loss = T^2 * KL(softmax(t / T) || softmax(s / T))
//        = F.kl_div(F.log_softmax(s / T, dim), F.softmax(t / T, dim), reduction=r) * T * T,
// with the per-element term l_j = T^2 * p_t_j * (log p_t_j - log p_s_j) and PyTorch's xlogy
// convention (p_t_j = 0 contributes 0).
//
// Every index of the other axes is one row. One row operation computes both log-softmaxes (through
// ops::detail::row_max_and_sum), the row's loss and, for backward, the gradient
//   d(sum_k u_k l_k)/d s_j = T * (p_s_j * sum_k u_k p_t_k - u_j p_t_j),
// which is T * u * (p_s_j - p_t_j) for a uniform upstream u (sum_k p_t_k = 1). Reduced values go
// through the rowwise finaliser into `out` on the call's device: no host synchronisation.
//
// Entry-point shape (core/entry.hpp): KlDivLossArgs, kl_div_loss_check(args, mode),
// kl_div_loss_workspace_bytes(args), kl_div_loss(args, mode, exec), and the thin wrappers
// kl_div_loss(s, t, out, options), _backward, _forward_backward.
#pragma once
#include <cmath>
#include <cstdint>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/types.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/losses/feature/pointwise.hpp"
#include "kdloss/ops/softmax.hpp"


namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace feature {

/// Options of kl_div_loss: the temperature T (finite, > 0), the class axis of the logits (the
/// softmax runs along it; 1 is the channel axis of [B, C] and [B, C, H, W]) and the reduction
/// (batchmean by default: the sum divided by the size of dim 0, as F.kl_div's batchmean).
struct KlDivOptions {
  double temperature = 1.0;
  int class_axis = 1;
  Reduction reduction = Reduction::batchmean;
};

/// The arguments of one kl_div_loss call. Each mode reads only its fields: forward the logits and
/// out; backward the logits, grad_out and grad_student; forward_backward the logits, out and
/// grad_student. Logits of any rank (1 to kMaxRank) and any strides: the class axis may be axis 1 of
/// NCHW, the last axis of channel-last memory, or strided. `out` and `grad_out` hold one element for
/// batchmean/mean/sum and the logits' shape for none; grad_student has the logits' shape.
template <class T>
struct KlDivLossArgs {
  View<const T> student_logits{};
  View<const T> teacher_logits{};
  View<T> out{};
  View<const T> grad_out{};  // upstream gradient of `out` (backward)
  View<T> grad_student{};
  KlDivOptions options{};
};

namespace detail {
using ::kdloss::detail::Checker;
using ::kdloss::detail::require;

/// 0 for a finite x, NaN for +-inf and NaN (comparisons, so no contraction or folding can change it).
template <class Acc>
KDLOSS_HOST_DEVICE Acc finite_or_nan(Acc x) {
  const Acc inf = Acc(HUGE_VAL), nan = Acc(NAN);
  return math::select(x < inf, math::select(-inf < x, Acc(0), nan), nan);
}

/// The KL row operation. Inputs: 0 student logits, 1 teacher logits, 2 upstream map (kUpMap).
/// Outputs: the per-element loss map first (kLossMap), then the gradient (kGrad).
/// kSum: return the row's sum_j p_t_j (log p_t_j - log p_s_j) (T^2 and the reduction go in the finaliser).
template <class T, bool kSum, bool kLossMap, bool kGrad, bool kUpMap>
struct KlDivRow {
  static constexpr bool kPacketRows = true;  // arithmetic, exp, log and select only: runs on packets of rows
  double inv_t;         // 1 / T
  double loss_scale;    // T^2: the per-element map's factor
  double grad_scale;    // T * (reduction scale): the gradient's factor
  Uniform<T> upstream;  // uniform upstream gradient (absent = 1); unused with kUpMap

  /// One class: p_s = p_t = 1, every term and gradient is 0. Said outright, because with FMA
  /// contraction x/T - max(x/T) is the rounding error of x/T rather than 0. A logit whose x/T is not
  /// finite makes PyTorch's softmax NaN (x/T - max = NaN): the term and gradient are NaN then. Kept
  /// out of line so that the main path's inlining does not change.
  // Out of line (KDLOSS_NOINLINE): a rare branch kept out of the hot row operation's inlined body.
  template <class Acc, class Row>
  KDLOSS_HOST_DEVICE KDLOSS_NOINLINE Acc one_class(const Row& row) const {
    const Acc it = Acc(inv_t);
    auto zero_or_nan = [&](std::int64_t j) {
      return finite_or_nan(row.template in<0, Acc>(j) * it) + finite_or_nan(row.template in<1, Acc>(j) * it);
    };
    Acc total = Acc(0);
    if constexpr (kSum) total = row.template sum<Acc>(zero_or_nan);
    row.for_each([&](std::int64_t j) {
      const Acc z = zero_or_nan(j);
      if constexpr (kLossMap) row.template out<0>(j, z);
      if constexpr (kUpMap) {
        const Acc u = row.template in<2, Acc>(j);
        row.template out<0>(j, Acc(grad_scale) * (z + (u - u)));  // T (u p_s p_t - u p_t): NaN for u = inf
      } else if constexpr (kGrad) {
        row.template out<kLossMap ? 1 : 0>(j, Acc(grad_scale) * upstream.template get<Acc>() * z);
      }
    });
    return total;
  }

  template <class Acc, class Row>
  KDLOSS_HOST_DEVICE Acc operator()(const Row& row) const {
    if (row.size() == 1) return one_class<Acc>(row);
    const Acc it = Acc(inv_t);
    const auto ms = ops::detail::row_max_and_sum<0>(row, it);
    const auto mt = ops::detail::row_max_and_sum<1>(row, it);
    // log p_t_j - log p_s_j = (t_j/T - m_t) - (s_j/T - m_s) - log(z_t / z_s): each logit has its row
    // max taken off first (exact near the max), and the result is exactly 0 where s = t.
    const Acc log_ratio_z = math::log(mt.sum / ms.sum);
    // Probabilities divide by z (not multiply by 1/z): p_s - p_t then subtracts two rounded values, so
    // it is exactly 0 where s = t even when the compiler contracts a * b - c into an FMA (nvcc does).
    auto p_t = [&](std::int64_t j) { return math::exp(row.template in<1, Acc>(j) * it - mt.max) / mt.sum; };
    auto p_s = [&](std::int64_t j) { return math::exp(row.template in<0, Acc>(j) * it - ms.max) / ms.sum; };
    // PyTorch's term xlogy(p_t, p_t) - p_t log p_s: where p_t = 0 (underflow, or a -inf teacher logit)
    // xlogy gives 0, so the teacher's log drops out, and the term is 0 * log p_s: 0, or NaN where log
    // p_s is -inf (a -inf student logit there) or NaN. A NaN p_t (a NaN or +inf teacher logit, or a
    // row of -inf) stays NaN, as xlogy(NaN, NaN) does.
    // The test is on t/T - max rather than on p_t: Eigen's vectorised exp(-inf) is a tiny number, not 0.
    const Acc minus_inf = Acc(-HUGE_VAL);
    // One select (the host's packet select runs lane by lane): both sides are cheap arithmetic.
    auto term = [&](Acc pt, std::int64_t j) {
      const Acc a = row.template in<1, Acc>(j) * it - mt.max;
      const Acc b = row.template in<0, Acc>(j) * it - ms.max;
      return math::select(minus_inf < a, pt * ((a - b) - log_ratio_z), Acc(0) * (Acc(0) - b - log_ratio_z));
    };
    Acc total = Acc(0);
    if constexpr (kSum) total = row.template sum<Acc>([&](std::int64_t j) { return term(p_t(j), j); });
    if constexpr (kUpMap) {
      const Acc weight = row.template sum<Acc>([&](std::int64_t j) { return row.template in<2, Acc>(j) * p_t(j); });
      const Acc gs = Acc(grad_scale);
      row.for_each([&](std::int64_t j) {
        row.template out<0>(j, gs * (p_s(j) * weight - row.template in<2, Acc>(j) * p_t(j)));
      });
    } else if constexpr (kLossMap || kGrad) {
      const Acc ls = Acc(loss_scale);
      Acc gs = Acc(0);
      if constexpr (kGrad) gs = Acc(grad_scale) * upstream.template get<Acc>();
      row.for_each([&](std::int64_t j) {
        const Acc pt = p_t(j);
        if constexpr (kLossMap) row.template out<0>(j, ls * term(pt, j));
        if constexpr (kGrad) row.template out<kLossMap ? 1 : 0>(j, gs * (p_s(j) - pt));
      });
    }
    return total;
  }
};

/// The factor a reduced KL applies to the summed terms (before T^2): batchmean divides by the size
/// of dim 0 (PyTorch's definition), mean by the number of elements (F.kl_div 'mean'), sum by 1.
/// Empty inputs reduce to 0.
inline double kl_reduction_scale(Reduction r, const Dims& shape) {
  const std::int64_t n = r == Reduction::batchmean ? shape[0] : r == Reduction::mean ? shape.product() : 1;
  return n > 0 ? 1.0 / static_cast<double>(n) : 0.0;
}

/// Rows of the class axis (0 when the axis is empty: nothing runs).
inline std::int64_t kl_rows(const Dims& shape, int axis) { return shape[axis] > 0 ? shape.product() / shape[axis] : 0; }

template <class T>
std::size_t kl_workspace_bytes(const View<const T>& s, int axis, Reduction r) {
  ::kdloss::detail::Carver carver;
  if (r != Reduction::none) ::kdloss::detail::carve_rowwise(carver, s.device, kl_rows(s.shape, axis), s.shape[axis]);
  return carver.bytes();
}

inline bool valid_reduction(Reduction r) {
  return r == Reduction::none || r == Reduction::mean || r == Reduction::sum || r == Reduction::batchmean;
}

inline const char* kl_name(Mode m) {
  return m == Mode::forward    ? "kdloss::kl_div_loss"
         : m == Mode::backward ? "kdloss::kl_div_loss_backward"
                               : "kdloss::kl_div_loss_forward_backward";
}

template <class T>
void check_axis(const Checker& ck, const View<const T>& s, int axis) {
  ck.rank_between(s, "student_logits", 1, kMaxRank);
  require(axis >= 0 && axis < s.rank(), ck.fn, ": argument 'class_axis' is ", axis, " but 'student_logits' has shape ",
          s.shape.str(), " (valid: 0 to ", s.rank() - 1, ")");
}

/// Every check of a call in `mode`, in a fixed order; throws before anything is written.
template <class T>
void check(const KlDivLossArgs<T>& a, Mode mode) {
  const Checker ck{kl_name(mode)};
  const View<const T>& s = a.student_logits;
  const View<const T>& t = a.teacher_logits;
  const KlDivOptions& o = a.options;
  ck.not_null(s, "student_logits");
  ck.not_null(t, "teacher_logits");
  ck.rank_between(s, "student_logits", 1, kMaxRank);
  ck.same_shape(s, "student_logits", t, "teacher_logits");
  ck.device(t, "teacher_logits", s.device);
  check_axis(ck, s, o.class_axis);
  require(o.temperature > 0 && std::isfinite(o.temperature), ck.fn,
          ": argument 'temperature' must be finite and > 0 but is ", o.temperature);
  require(valid_reduction(o.reduction), ck.fn, ": argument 'reduction' is ", static_cast<int>(o.reduction),
          ", not one of none, mean, sum, batchmean");
  ::kdloss::detail::require_backend<T>(ck.fn, s.device);
  if (writes_value(mode)) check_loss_output(ck, s, a.out, o.reduction, "out");
  if (mode == Mode::backward) check_upstream(ck, s, a.grad_out, o.reduction == Reduction::none, "the reduced loss");
  if (writes_gradients(mode)) check_gradient_output(ck, s, a.grad_student, "grad_student");
  if (writes_value(mode)) {
    ck.disjoint(a.out, "out", s, "student_logits");
    ck.disjoint(a.out, "out", t, "teacher_logits");
  }
  if (writes_gradients(mode)) {
    ck.disjoint(a.grad_student, "grad_student", s, "student_logits");
    ck.disjoint(a.grad_student, "grad_student", t, "teacher_logits");
  }
  if (mode == Mode::backward) ck.disjoint(a.grad_student, "grad_student", a.grad_out, "grad_out");
  if (mode == Mode::forward_backward) ck.disjoint(a.grad_student, "grad_student", a.out, "out");
}

template <class T>
void run(const KlDivLossArgs<T>& a, Mode mode, const Exec& exec) {
  using namespace ::kdloss::detail;
  using Acc = acc_t<T>;
  const View<const T>& s = a.student_logits;
  const View<const T>& t = a.teacher_logits;
  const int axis = a.options.class_axis;
  const Reduction r = a.options.reduction;
  const double temperature = a.options.temperature;
  const double inv_t = 1.0 / temperature, t2 = temperature * temperature;
  auto map_rows = [&](auto op, auto ins, auto outs) {
    rowwise<Acc>(s.device, exec.stream, s.shape, axis, op, ins, outs, nullptr, Keep{}, static_cast<double*>(nullptr));
  };
  if (mode == Mode::backward) {  // needs no workspace
    if (r == Reduction::none)
      map_rows(KlDivRow<T, false, false, true, true>{inv_t, 0.0, temperature, {}}, std::tuple{s, t, a.grad_out},
               std::tuple{a.grad_student});
    else
      map_rows(KlDivRow<T, false, false, true, false>{inv_t, 0.0, temperature * kl_reduction_scale(r, s.shape),
                                                      Uniform<T>{a.grad_out.data}},
               std::tuple{s, t}, std::tuple{a.grad_student});
    return;
  }
  HostScratch scratch;
  Carver carver(resolve_workspace(kl_name(mode), s.device, exec.workspace, kl_workspace_bytes(s, axis, r), scratch));
  if (r == Reduction::none) {
    if (mode == Mode::forward)
      map_rows(KlDivRow<T, false, true, false, false>{inv_t, t2, 0.0, {}}, std::tuple{s, t}, std::tuple{a.out});
    else  // each element's value and the gradient of the map's sum (a unit upstream map)
      map_rows(KlDivRow<T, false, true, true, false>{inv_t, t2, temperature, {}}, std::tuple{s, t},
               std::tuple{a.out, a.grad_student});
    return;
  }
  const double scale = kl_reduction_scale(r, s.shape);
  double* partials = carve_rowwise(carver, s.device, kl_rows(s.shape, axis), s.shape[axis]);
  if (mode == Mode::forward)
    rowwise<Acc>(s.device, exec.stream, s.shape, axis, KlDivRow<T, true, false, false, false>{inv_t, t2, 0.0, {}},
                 std::tuple{s, t}, std::tuple<>{}, partials, Scale{t2 * scale}, a.out.data);
  else
    rowwise<Acc>(s.device, exec.stream, s.shape, axis,
                 KlDivRow<T, true, false, true, false>{inv_t, t2, temperature * scale, {}}, std::tuple{s, t},
                 std::tuple{a.grad_student}, partials, Scale{t2 * scale}, a.out.data);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Entry points (core/entry.hpp's shape). The usage examples name host pointers s_logits, t_logits,
// gs (float, [8, 80]), device views sv_dev, tv_dev and gv_dev ([2, 80, 100, 167]), device scalars
// d_loss and d_up, and a float `loss`.

/// Throws kdloss::Error naming the argument and its shape if `args` cannot run in `mode`; writes nothing.
///
///   auto sv = kdloss::host_view(s_logits, {8, 80}), tv = kdloss::host_view(t_logits, {8, 80});
///   kdloss::KlDivLossArgs<float> args{sv, tv, kdloss::host_scalar(&loss)};
///   args.options = {4.0, 1, kdloss::Reduction::batchmean};
///   kdloss::kl_div_loss_check(args, kdloss::Mode::forward);
template <class T>
void kl_div_loss_check(const KlDivLossArgs<T>& args, Mode mode) {
  detail::check(args, mode);
}
/// Workspace bytes of any kl_div_loss call on these arguments, every Mode: 0 on the host and for
/// reduction none; the per-block partials of the row reduction on a GPU.
///
///   std::size_t bytes = kdloss::kl_div_loss_workspace_bytes(kdloss::KlDivLossArgs<float>{sv_dev, tv_dev});
template <class T>
std::size_t kl_div_loss_workspace_bytes(const KlDivLossArgs<T>& args) {
  const detail::Checker ck{"kdloss::kl_div_loss_workspace_bytes"};
  detail::check_axis(ck, args.student_logits, args.options.class_axis);
  return detail::kl_workspace_bytes(args.student_logits, args.options.class_axis, args.options.reduction);
}
/// The same query from the student logits and the options the wrappers take.
///
///   std::size_t bytes = kdloss::kl_div_loss_workspace_bytes(sv_dev, {4.0, 1});
template <class S>
std::size_t kl_div_loss_workspace_bytes(const View<S>& student_logits, const KlDivOptions& options = {}) {
  using T = std::remove_cv_t<S>;
  return kl_div_loss_workspace_bytes(KlDivLossArgs<T>{student_logits, {}, {}, {}, {}, options});
}
/// Checks, then runs one kl_div_loss call in `mode`.
///
///   kdloss::KlDivLossArgs<float> args{sv, tv, kdloss::host_scalar(&loss), {}, kdloss::host_view(gs, {8, 80}), {4.0}};
///   kdloss::kl_div_loss(args, kdloss::Mode::forward_backward);
template <class T>
void kl_div_loss(const KlDivLossArgs<T>& args, Mode mode, const Exec& exec = {}) {
  detail::check(args, mode);
  detail::run(args, mode, exec);
}

// Thin wrappers. The teacher gets no gradient.

/// T^2 * KL(softmax(teacher / T) || softmax(student / T)) along options.class_axis, as
/// F.kl_div(F.log_softmax(s / T, dim), F.softmax(t / T, dim), reduction=r) * T * T.
/// batchmean (the default) divides the sum by the size of dim 0, mean by the number of elements.
///
///   float loss;
///   auto sv = kdloss::host_view(s_logits, {8, 80}), tv = kdloss::host_view(t_logits, {8, 80});
///   kdloss::kl_div_loss(sv, tv, kdloss::host_scalar(&loss), {/*temperature=*/4.0, /*class_axis=*/1});
///
///   // dense logits [B, C, H, W] on a GPU stream:
///   std::size_t bytes = kdloss::kl_div_loss_workspace_bytes(sv_dev, {4.0, 1});
///   kdloss::kl_div_loss(sv_dev, tv_dev, kdloss::cuda_scalar(d_loss), {4.0, 1, kdloss::Reduction::batchmean},
///                       {{d_scratch, bytes}, kdloss::Stream(stream)});
template <class S, class Tt, class O>
void kl_div_loss(const View<S>& student_logits, const View<Tt>& teacher_logits, const View<O>& out,
                 const KlDivOptions& options = {}, const Exec& exec = {}) {
  kl_div_loss(KlDivLossArgs<O>{student_logits, teacher_logits, out, {}, {}, options}, Mode::forward, exec);
}

/// grad_student = grad_out * d kl_div_loss / d student_logits: T * u * scale * (p_s - p_t) for a
/// reduced loss (grad_out: one element on the call's device), and T * (p_s * sum_k u_k p_t_k - u * p_t)
/// per row for reduction none (grad_out: a map of the logits' shape). Needs no workspace.
///
///   float one = 1.0f;
///   kdloss::kl_div_loss_backward(sv, tv, kdloss::host_scalar(&one), kdloss::host_view(gs, {8, 80}), {4.0});
///   // GPU:
///   kdloss::kl_div_loss_backward(sv_dev, tv_dev, kdloss::cuda_scalar(d_up), gv_dev, {4.0},
///                                {{}, kdloss::Stream(stream)});
template <class S, class Tt, class G, class O>
void kl_div_loss_backward(const View<S>& student_logits, const View<Tt>& teacher_logits, const View<G>& grad_out,
                          const View<O>& grad_student, const KlDivOptions& options = {}, const Exec& exec = {}) {
  kl_div_loss(KlDivLossArgs<O>{student_logits, teacher_logits, {}, grad_out, grad_student, options}, Mode::backward,
              exec);
}

/// The loss and its gradient in one pass over the rows; for reduction none the gradient is that of
/// the map's sum (a unit upstream map), T * (p_s - p_t).
///
///   kdloss::kl_div_loss_forward_backward(sv, tv, kdloss::host_scalar(&loss), kdloss::host_view(gs, {8, 80}), {4.0});
///   // GPU:
///   kdloss::kl_div_loss_forward_backward(sv_dev, tv_dev, kdloss::cuda_scalar(d_loss), gv_dev, {4.0},
///                                        {{d_scratch, bytes}, kdloss::Stream(stream)});
template <class S, class Tt, class O>
void kl_div_loss_forward_backward(const View<S>& student_logits, const View<Tt>& teacher_logits, const View<O>& out,
                                  const View<O>& grad_student, const KlDivOptions& options = {},
                                  const Exec& exec = {}) {
  kl_div_loss(KlDivLossArgs<O>{student_logits, teacher_logits, out, {}, grad_student, options},
              Mode::forward_backward, exec);
}

} } }  // namespace kdloss::feature

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
using feature::KlDivLossArgs;
using feature::KlDivOptions;
using feature::kl_div_loss;
using feature::kl_div_loss_backward;
using feature::kl_div_loss_check;
using feature::kl_div_loss_forward_backward;
using feature::kl_div_loss_workspace_bytes;
} }  // namespace kdloss
