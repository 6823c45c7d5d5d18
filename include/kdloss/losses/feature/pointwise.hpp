// kdloss/losses/feature/pointwise.hpp: losses that are a function of d = student - teacher per
// element (MSE, L1, smooth-L1), with mean/sum/none reductions. One driver serves all three:
// each loss is a pair of formulas, value(d) and its derivative, written once for both backends.
//
// Entry-point shape (core/entry.hpp): MseLossArgs / L1LossArgs / SmoothL1LossArgs (aliases of
// PointwiseLossArgs), <entry>_check(args, mode), <entry>_workspace_bytes(args), <entry>(args, mode, exec),
// and the thin wrappers kdloss::mse_loss(s, t, out), _backward, _forward_backward.
// The usage examples name host pointers s, t, gs (float, [2, 256, 100, 167]), their views sv, tv,
// device views sv_dev, tv_dev, and a float `loss`.
//
// Non-finite inputs propagate as PyTorch's: NaN d gives a NaN value, and a NaN gradient except for L1
// (PyTorch's sign(NaN) = 0); inf d gives an inf value and +-inf (MSE) or +-1 (L1, smooth-L1) gradients.
#pragma once
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
#include "kdloss/ops/norm.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace detail {
// Formulas and the upstream loader shared with losses/fbkd (until an op holds them): they keep
// their kdloss::detail names.

/// (s - t)^2, derivative 2 (s - t).
struct SquaredError {
  template <class V>
  KDLOSS_HOST_DEVICE auto value(const V& d) const { return math::square(d); }
  template <class V, class S>
  KDLOSS_HOST_DEVICE auto grad(const V& d, S scale) const { return d * (S(2) * scale); }
};

template <class T>
using Uniform = ::kdloss::ops::ScalarUpstream<T>;  // ops/norm.hpp

template <class Loss, class T>
struct PointwiseForward {
  Loss loss;
  template <class S, class Tt>
  KDLOSS_HOST_DEVICE auto operator()(const S& s, const Tt& t) const { return loss.value(s - t); }
};
template <class Loss, class T>
struct PointwiseForwardMap {
  Loss loss;
  template <class S, class Tt, class O>
  KDLOSS_HOST_DEVICE void operator()(const S& s, const Tt& t, O& out) const { out = loss.value(s - t); }
};
}  // namespace detail

namespace feature {

// ---------------------------------------------------------------------------------------------
// Options and arguments.

/// Options of mse_loss: the reduction (mean by default, as F.mse_loss).
struct MseLossOptions {
  Reduction reduction = Reduction::mean;
};
/// Options of l1_loss: the reduction (mean by default, as F.l1_loss).
struct L1LossOptions {
  Reduction reduction = Reduction::mean;
};
/// Options of smooth_l1_loss, as F.smooth_l1_loss(beta=beta, reduction=r); beta = 0 is L1.
struct SmoothL1LossOptions {
  double beta = 1.0;
  Reduction reduction = Reduction::mean;
};

/// The arguments of one pointwise-loss call. Each mode reads only its fields: forward student,
/// teacher, out; backward student, teacher, grad_out, grad_student; forward_backward student,
/// teacher, out, grad_student. Views may have any strides (broadcast inputs included); outputs must
/// be unique. `out` and `grad_out` hold one element for mean/sum and the student's shape for none.
template <class T, class Options>
struct PointwiseLossArgs {
  View<const T> student{};
  View<const T> teacher{};
  View<T> out{};
  View<const T> grad_out{};  // upstream gradient of `out` (backward)
  View<T> grad_student{};    // grad_out * d(out)/d(student) (backward), d(out)/d(student) (forward_backward)
  Options options{};
};
template <class T>
using MseLossArgs = PointwiseLossArgs<T, MseLossOptions>;
template <class T>
using L1LossArgs = PointwiseLossArgs<T, L1LossOptions>;
template <class T>
using SmoothL1LossArgs = PointwiseLossArgs<T, SmoothL1LossOptions>;

namespace detail {
using ::kdloss::detail::Checker;
using ::kdloss::detail::require;
using ::kdloss::detail::Uniform;

/// max(x, c) and min(x, c) over an Eigen array with an explicit NaN rule (Eigen 3.4 has the functors
/// but no ArrayBase::max<NaNPropagation>(scalar)): PropagateNaN gives NaN where x is NaN,
/// PropagateNumbers gives c there. Vectorised like x.max(c).
template <int NaNRule, class V, class S>
auto array_max(const V& x, S c) {
  using Plain = typename V::PlainObject;
  return x.binaryExpr(Plain::Constant(x.rows(), x.cols(), c), Eigen::internal::scalar_max_op<S, S, NaNRule>());
}
template <int NaNRule, class V, class S>
auto array_min(const V& x, S c) {
  using Plain = typename V::PlainObject;
  return x.binaryExpr(Plain::Constant(x.rows(), x.cols(), c), Eigen::internal::scalar_min_op<S, S, NaNRule>());
}

/// |s - t|, derivative sign(s - t) with sign(0) = sign(NaN) = 0 (PyTorch's sign, used by its L1 backward).
struct AbsoluteError {
  template <class V>
  KDLOSS_HOST_DEVICE auto value(const V& d) const { return math::abs(d); }
  template <class V, class S>
  KDLOSS_HOST_DEVICE auto grad(const V& d, S scale) const {
    if constexpr (math::is_scalar_v<V>) {
      return math::sign(d) * scale;  // (d > 0) - (d < 0): 0 at NaN
    } else {
      // Vectorised as two clamps of y = d * 2^k * 2^k (every nonzero d to +-1) that keep the number
      // where y is NaN: min(max(0, y), 1) in {0, 1} plus max(min(0, y), -1) in {-1, 0}; 0 at NaN.
      // Eigen's fast max/min return their first operand when one is NaN (std::max's rule; the
      // tests check it), and cost what the old NaN-blind clamp did: PropagateNumbers is 1.7x slower.
      const S k = S(sizeof(S) == sizeof(float) ? 0x1p100 : 0x1p600);
      const auto y = (d * k) * k;
      using Plain = typename std::decay_t<decltype(y)>::PlainObject;
      const auto zero = Plain::Zero(y.rows(), y.cols());
      return (zero.max(y).min(S(1)) + zero.min(y).max(S(-1))) * scale;
    }
  }
};
/// 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (PyTorch's smooth_l1_loss), beta > 0 (beta =
/// 0 runs AbsoluteError, as PyTorch does). Branch-free, as min/max (Eigen 3.4 does not vectorise a
/// per-element select): with a = |d| and m = min(a, beta) the value is 0.5 m^2 / beta + (a - m), the
/// derivative clamp(d, -beta, beta) / beta (+-1 from |d| = beta on, as PyTorch's |d| < beta test),
/// NaN at NaN d (PyTorch's).
struct SmoothL1Error {
  double beta;
  template <class V>
  KDLOSS_HOST_DEVICE auto value(const V& d) const {
    using S = math::scalar_t<V>;
    const S b = S(beta), half_inv_b = S(0.5 / beta);
    const auto a = math::abs(d);
    const auto m = math::min(a, b);
    return math::square(m) * half_inv_b + (a - m);
  }
  template <class V, class S>
  KDLOSS_HOST_DEVICE auto grad(const V& d, S scale) const {
    const S b = S(beta);
    if constexpr (math::is_scalar_v<V>) {
      const V c = d < -b ? -b : (d > b ? b : d);  // NaN stays NaN
      return c * (scale / b);
    } else {
      return array_min<Eigen::PropagateNaN>(array_max<Eigen::PropagateNaN>(d, -b), b) * (scale / b);
    }
  }
};

/// The scale a reduced loss applies to each element: 1/numel for mean, 1 for sum.
inline double reduction_scale(Reduction r, std::int64_t numel) {
  return r == Reduction::mean ? (numel > 0 ? 1.0 / static_cast<double>(numel) : 0.0) : 1.0;
}

/// grad = dl/ds * upstream * scale; the upstream is a scalar (mean/sum) read on the device.
template <class Loss, class T>
struct PointwiseBackwardScalar {
  Loss loss;
  Uniform<T> upstream;
  double scale;
  template <class S, class Tt, class G>
  KDLOSS_HOST_DEVICE void operator()(const S& s, const Tt& t, G& g) const {
    using A = math::scalar_t<G>;
    g = loss.grad(s - t, upstream.template get<A>() * A(scale));
  }
};
/// Reduction none: the upstream gradient is a full map.
template <class Loss, class T>
struct PointwiseBackwardMap {
  Loss loss;
  template <class S, class Tt, class U, class G>
  KDLOSS_HOST_DEVICE void operator()(const S& s, const Tt& t, const U& up, G& g) const {
    g = up * loss.grad(s - t, math::scalar_t<U>(1));
  }
};
/// Fused: value summed, gradient of the reduced value written in the same pass.
template <class Loss, class T>
struct PointwiseFused {
  Loss loss;
  double scale;
  template <class S, class Tt, class G>
  KDLOSS_HOST_DEVICE auto operator()(const S& s, const Tt& t, G& g) const {
    g = loss.grad(s - t, math::scalar_t<G>(scale));
    return loss.value(s - t);
  }
};
/// Reduction none, fused: each element's value and its own derivative.
template <class Loss, class T>
struct PointwiseFusedMap {
  Loss loss;
  template <class S, class Tt, class O, class G>
  KDLOSS_HOST_DEVICE void operator()(const S& s, const Tt& t, O& out, G& g) const {
    out = loss.value(s - t);
    g = loss.grad(s - t, math::scalar_t<G>(1));
  }
};

using ::kdloss::EntryNames;  // core/entry.hpp
inline constexpr EntryNames kMseNames{"kdloss::mse_loss", "kdloss::mse_loss_backward",
                                      "kdloss::mse_loss_forward_backward"};
inline constexpr EntryNames kL1Names{"kdloss::l1_loss", "kdloss::l1_loss_backward", "kdloss::l1_loss_forward_backward"};
inline constexpr EntryNames kSmoothL1Names{"kdloss::smooth_l1_loss", "kdloss::smooth_l1_loss_backward",
                                           "kdloss::smooth_l1_loss_forward_backward"};
inline const EntryNames& names_of(const MseLossOptions&) { return kMseNames; }
inline const EntryNames& names_of(const L1LossOptions&) { return kL1Names; }
inline const EntryNames& names_of(const SmoothL1LossOptions&) { return kSmoothL1Names; }

/// Calls f with the loss's formula.
template <class F>
void with_formula(const MseLossOptions&, F&& f) {
  f(::kdloss::detail::SquaredError{});
}
template <class F>
void with_formula(const L1LossOptions&, F&& f) {
  f(AbsoluteError{});
}
template <class F>
void with_formula(const SmoothL1LossOptions& o, F&& f) {
  if (o.beta > 0)
    f(SmoothL1Error{o.beta});
  else
    f(AbsoluteError{});  // beta = 0 is L1 (PyTorch's smooth_l1_loss calls l1_loss)
}

inline void check_options(const Checker&, const MseLossOptions&) {}
inline void check_options(const Checker&, const L1LossOptions&) {}
inline void check_options(const Checker& ck, const SmoothL1LossOptions& o) {
  require(o.beta >= 0, ck.fn, ": argument 'beta' must be >= 0 but is ", o.beta);
}

template <class T>
void check_pointwise(const Checker& ck, const View<const T>& s, const View<const T>& t, Reduction r) {
  ck.not_null(s, "student");
  ck.not_null(t, "teacher");
  ck.same_shape(s, "student", t, "teacher");
  ck.device(t, "teacher", s.device);
  require(r != Reduction::batchmean, ck.fn, ": argument 'reduction' is batchmean, which only kl_div offers; use mean, sum or none");
  ::kdloss::detail::require_backend<T>(ck.fn, s.device);
}
template <class T>
void check_loss_output(const Checker& ck, const View<const T>& s, const View<T>& out, Reduction r, const char* arg) {
  ck.device(out, arg, s.device);
  if (r == Reduction::none) {
    ck.not_null(out, arg);
    ck.shape(out, arg, s.shape);
    ck.unique(out, arg);
  } else {
    ck.scalar_output(out, arg);
  }
}
/// The upstream gradient of a loss whose output is one element (reduced) or the student's shape (none).
template <class T>
void check_upstream(const Checker& ck, const View<const T>& s, const View<const T>& grad_out, bool map,
                    const char* what) {
  ck.device(grad_out, "grad_out", s.device);
  if (map) {
    ck.shape(grad_out, "grad_out", s.shape);
  } else {
    require(grad_out.numel() == 1, ck.fn, ": argument 'grad_out' must hold one element (the upstream gradient of ",
            what, ") but has shape ", grad_out.shape.str());
  }
  ck.not_null(grad_out, "grad_out");
}
template <class T>
void check_gradient_output(const Checker& ck, const View<const T>& s, const View<T>& g, const char* arg) {
  ck.not_null(g, arg);
  ck.shape(g, arg, s.shape);
  ck.device(g, arg, s.device);
  ck.unique(g, arg);
}

/// Every check of a call in `mode`, in a fixed order; throws before anything is written.
template <class T, class O>
void check(const PointwiseLossArgs<T, O>& a, Mode mode) {
  const Checker ck{names_of(a.options)(mode)};
  const Reduction r = a.options.reduction;
  check_options(ck, a.options);
  check_pointwise(ck, a.student, a.teacher, r);
  if (writes_value(mode)) check_loss_output(ck, a.student, a.out, r, "out");
  if (mode == Mode::backward) check_upstream(ck, a.student, a.grad_out, r == Reduction::none, "the reduced loss");
  if (writes_gradients(mode)) check_gradient_output(ck, a.student, a.grad_student, "grad_student");
  if (writes_value(mode)) {
    ck.disjoint(a.out, "out", a.student, "student");
    ck.disjoint(a.out, "out", a.teacher, "teacher");
  }
  if (writes_gradients(mode)) {
    ck.disjoint(a.grad_student, "grad_student", a.student, "student");
    ck.disjoint(a.grad_student, "grad_student", a.teacher, "teacher");
  }
  if (mode == Mode::backward) ck.disjoint(a.grad_student, "grad_student", a.grad_out, "grad_out");
  if (mode == Mode::forward_backward) ck.disjoint(a.grad_student, "grad_student", a.out, "out");
}

template <class T>
std::size_t workspace_bytes(const View<const T>& s, Reduction r) {
  ::kdloss::detail::Carver carver;
  if (r != Reduction::none) ::kdloss::detail::carve_reduction(carver, s.device, s.numel());
  return carver.bytes();
}

template <class Loss, class T, class O>
void run(Loss loss, const PointwiseLossArgs<T, O>& a, Mode mode, const Exec& exec) {
  using namespace ::kdloss::detail;
  using Acc = acc_t<T>;
  const View<const T>& s = a.student;
  const View<const T>& t = a.teacher;
  const Reduction r = a.options.reduction;
  const double scale = reduction_scale(r, s.numel());
  if (mode == Mode::backward) {
    if (r == Reduction::none)
      transform<Acc>(s.device, exec.stream, s.shape, PointwiseBackwardMap<Loss, T>{loss},
                     std::tuple{s, t, a.grad_out}, std::tuple{a.grad_student});
    else
      transform<Acc>(s.device, exec.stream, s.shape,
                     PointwiseBackwardScalar<Loss, T>{loss, ::kdloss::detail::Uniform<T>{a.grad_out.data}, scale},
                     std::tuple{s, t}, std::tuple{a.grad_student});
    return;
  }
  const char* fn = names_of(a.options)(mode);
  HostScratch scratch;
  Carver carver(resolve_workspace(fn, s.device, exec.workspace, workspace_bytes(s, r), scratch));
  if (r == Reduction::none) {
    if (mode == Mode::forward)
      transform<Acc>(s.device, exec.stream, s.shape, PointwiseForwardMap<Loss, T>{loss}, std::tuple{s, t},
                     std::tuple{a.out});
    else  // each element's own derivative, written next to its value
      transform<Acc>(s.device, exec.stream, s.shape, PointwiseFusedMap<Loss, T>{loss}, std::tuple{s, t},
                     std::tuple{a.out, a.grad_student});
    return;
  }
  double* partials = carve_reduction(carver, s.device, s.numel());
  if (mode == Mode::forward)
    transform_reduce<Acc>(s.device, exec.stream, s.shape, ::kdloss::detail::PointwiseForward<Loss, T>{loss},
                          std::tuple{s, t}, std::tuple<>{}, partials, Scale{scale}, a.out.data);
  else
    transform_reduce<Acc>(s.device, exec.stream, s.shape, PointwiseFused<Loss, T>{loss, scale}, std::tuple{s, t},
                          std::tuple{a.grad_student}, partials, Scale{scale}, a.out.data);
}

template <class T, class O>
void check_and_run(const PointwiseLossArgs<T, O>& a, Mode mode, const Exec& exec) {
  check(a, mode);
  with_formula(a.options, [&](auto loss) { run(loss, a, mode, exec); });
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Entry points (core/entry.hpp's shape), one set per loss.

/// Throws kdloss::Error naming the argument and its shape if `args` cannot run in `mode`; writes nothing.
///
///   kdloss::MseLossArgs<float> args{sv, tv, kdloss::host_scalar(&loss)};
///   kdloss::mse_loss_check(args, kdloss::Mode::forward);
template <class T>
void mse_loss_check(const MseLossArgs<T>& args, Mode mode) {
  detail::check(args, mode);
}
/// Workspace bytes of any mse_loss call on these arguments, every Mode (0 on the host).
///
///   std::size_t bytes = kdloss::mse_loss_workspace_bytes(kdloss::MseLossArgs<float>{sv_dev, tv_dev});
template <class T>
std::size_t mse_loss_workspace_bytes(const MseLossArgs<T>& args) {
  return detail::workspace_bytes(args.student, args.options.reduction);
}
/// The same query from the student view and the options the wrappers take.
///
///   std::size_t bytes = kdloss::mse_loss_workspace_bytes(sv_dev);   // reduction mean
template <class S>
std::size_t mse_loss_workspace_bytes(const View<S>& student, const MseLossOptions& options = {}) {
  return detail::workspace_bytes(View<const std::remove_cv_t<S>>(student), options.reduction);
}
/// Checks, then runs one mse_loss call in `mode` (forward, backward or forward_backward).
///
///   kdloss::MseLossArgs<float> args{sv, tv, kdloss::host_scalar(&loss), {}, kdloss::host_view(gs, {2, 256, 100, 167})};
///   kdloss::mse_loss(args, kdloss::Mode::forward_backward);
template <class T>
void mse_loss(const MseLossArgs<T>& args, Mode mode, const Exec& exec = {}) {
  detail::check_and_run(args, mode, exec);
}

/// Throws kdloss::Error if `args` cannot run in `mode`; writes nothing.
///
///   kdloss::l1_loss_check(kdloss::L1LossArgs<float>{sv, tv, kdloss::host_scalar(&loss)}, kdloss::Mode::forward);
template <class T>
void l1_loss_check(const L1LossArgs<T>& args, Mode mode) {
  detail::check(args, mode);
}
/// Workspace bytes of any l1_loss call on these arguments (0 on the host).
///
///   std::size_t bytes = kdloss::l1_loss_workspace_bytes(kdloss::L1LossArgs<float>{sv, tv});
template <class T>
std::size_t l1_loss_workspace_bytes(const L1LossArgs<T>& args) {
  return detail::workspace_bytes(args.student, args.options.reduction);
}
///   std::size_t bytes = kdloss::l1_loss_workspace_bytes(sv_dev, {kdloss::Reduction::sum});
template <class S>
std::size_t l1_loss_workspace_bytes(const View<S>& student, const L1LossOptions& options = {}) {
  return detail::workspace_bytes(View<const std::remove_cv_t<S>>(student), options.reduction);
}
/// Checks, then runs one l1_loss call in `mode`.
///
///   kdloss::l1_loss(kdloss::L1LossArgs<float>{sv, tv, kdloss::host_scalar(&loss)}, kdloss::Mode::forward);
template <class T>
void l1_loss(const L1LossArgs<T>& args, Mode mode, const Exec& exec = {}) {
  detail::check_and_run(args, mode, exec);
}

/// Throws kdloss::Error if `args` cannot run in `mode` (beta < 0 included); writes nothing.
///
///   kdloss::smooth_l1_loss_check(kdloss::SmoothL1LossArgs<float>{sv, tv, kdloss::host_scalar(&loss)},
///                                kdloss::Mode::forward);
template <class T>
void smooth_l1_loss_check(const SmoothL1LossArgs<T>& args, Mode mode) {
  detail::check(args, mode);
}
/// Workspace bytes of any smooth_l1_loss call on these arguments (0 on the host).
///
///   std::size_t bytes = kdloss::smooth_l1_loss_workspace_bytes(kdloss::SmoothL1LossArgs<float>{sv, tv});
template <class T>
std::size_t smooth_l1_loss_workspace_bytes(const SmoothL1LossArgs<T>& args) {
  return detail::workspace_bytes(args.student, args.options.reduction);
}
///   std::size_t bytes = kdloss::smooth_l1_loss_workspace_bytes(sv_dev, {0.5});
template <class S>
std::size_t smooth_l1_loss_workspace_bytes(const View<S>& student, const SmoothL1LossOptions& options = {}) {
  return detail::workspace_bytes(View<const std::remove_cv_t<S>>(student), options.reduction);
}
/// Checks, then runs one smooth_l1_loss call in `mode`.
///
///   kdloss::SmoothL1LossArgs<float> args{sv, tv, kdloss::host_scalar(&loss)};
///   args.options.beta = 0.5;
///   kdloss::smooth_l1_loss(args, kdloss::Mode::forward);
template <class T>
void smooth_l1_loss(const SmoothL1LossArgs<T>& args, Mode mode, const Exec& exec = {}) {
  detail::check_and_run(args, mode, exec);
}

// ---------------------------------------------------------------------------------------------
// Thin wrappers. `out` holds one element for mean/sum and the input's shape for none. The gradient
// of backward is grad_out * d(out)/d(student); forward_backward writes d(out)/d(student) and the
// value in one pass. The teacher gets no gradient (it is -grad_student if you need it).

/// Mean squared error, as torch.nn.functional.mse_loss.
///
///   float loss;
///   auto sv = kdloss::host_view(s, {2, 256, 100, 167}), tv = kdloss::host_view(t, {2, 256, 100, 167});
///   kdloss::mse_loss(sv, tv, kdloss::host_scalar(&loss));                      // reduction mean
///   kdloss::mse_loss(sv, tv, kdloss::host_scalar(&loss), {kdloss::Reduction::sum});
template <class S, class Tt, class O>
void mse_loss(const View<S>& student, const View<Tt>& teacher, const View<O>& out, const MseLossOptions& options = {},
              const Exec& exec = {}) {
  mse_loss(MseLossArgs<O>{student, teacher, out, {}, {}, options}, Mode::forward, exec);
}
/// grad_student = grad_out * d mse_loss / d student.
///
///   float one = 1.0f;
///   kdloss::mse_loss_backward(sv, tv, kdloss::host_scalar(&one), kdloss::host_view(gs, {2, 256, 100, 167}));
template <class S, class Tt, class G, class O>
void mse_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                       const View<O>& grad_student, const MseLossOptions& options = {}, const Exec& exec = {}) {
  mse_loss(MseLossArgs<O>{student, teacher, {}, grad_out, grad_student, options}, Mode::backward, exec);
}
/// Value and gradient (of the value itself) in one pass over memory.
///
///   kdloss::mse_loss_forward_backward(sv, tv, kdloss::host_scalar(&loss), kdloss::host_view(gs, {2, 256, 100, 167}));
template <class S, class Tt, class O>
void mse_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                               const View<O>& grad_student, const MseLossOptions& options = {},
                               const Exec& exec = {}) {
  mse_loss(MseLossArgs<O>{student, teacher, out, {}, grad_student, options}, Mode::forward_backward, exec);
}

/// Mean absolute error, as torch.nn.functional.l1_loss (gradient sign(s - t), 0 at s = t).
///
///   kdloss::l1_loss(sv, tv, kdloss::host_scalar(&loss), {kdloss::Reduction::sum});
template <class S, class Tt, class O>
void l1_loss(const View<S>& student, const View<Tt>& teacher, const View<O>& out, const L1LossOptions& options = {},
             const Exec& exec = {}) {
  l1_loss(L1LossArgs<O>{student, teacher, out, {}, {}, options}, Mode::forward, exec);
}
///   kdloss::l1_loss_backward(sv, tv, kdloss::host_scalar(&one), kdloss::host_view(gs, {2, 256, 100, 167}));
template <class S, class Tt, class G, class O>
void l1_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                      const View<O>& grad_student, const L1LossOptions& options = {}, const Exec& exec = {}) {
  l1_loss(L1LossArgs<O>{student, teacher, {}, grad_out, grad_student, options}, Mode::backward, exec);
}
///   kdloss::l1_loss_forward_backward(sv, tv, kdloss::host_scalar(&loss), kdloss::host_view(gs, {2, 256, 100, 167}));
template <class S, class Tt, class O>
void l1_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                              const View<O>& grad_student, const L1LossOptions& options = {}, const Exec& exec = {}) {
  l1_loss(L1LossArgs<O>{student, teacher, out, {}, grad_student, options}, Mode::forward_backward, exec);
}

/// Smooth L1 (Huber / beta), as torch.nn.functional.smooth_l1_loss(beta=beta); beta = 0 gives L1.
///
///   kdloss::smooth_l1_loss(sv, tv, kdloss::host_scalar(&loss));          // beta 1, mean
///   kdloss::smooth_l1_loss(sv, tv, kdloss::host_scalar(&loss), {0.5, kdloss::Reduction::sum});
template <class S, class Tt, class O>
void smooth_l1_loss(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                    const SmoothL1LossOptions& options = {}, const Exec& exec = {}) {
  smooth_l1_loss(SmoothL1LossArgs<O>{student, teacher, out, {}, {}, options}, Mode::forward, exec);
}
///   kdloss::smooth_l1_loss_backward(sv, tv, kdloss::host_scalar(&one), kdloss::host_view(gs, {2, 256, 100, 167}),
///                                   {0.5});
template <class S, class Tt, class G, class O>
void smooth_l1_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                             const View<O>& grad_student, const SmoothL1LossOptions& options = {},
                             const Exec& exec = {}) {
  smooth_l1_loss(SmoothL1LossArgs<O>{student, teacher, {}, grad_out, grad_student, options}, Mode::backward, exec);
}
///   kdloss::smooth_l1_loss_forward_backward(sv, tv, kdloss::host_scalar(&loss),
///                                           kdloss::host_view(gs, {2, 256, 100, 167}), {0.5});
template <class S, class Tt, class O>
void smooth_l1_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                                     const View<O>& grad_student, const SmoothL1LossOptions& options = {},
                                     const Exec& exec = {}) {
  smooth_l1_loss(SmoothL1LossArgs<O>{student, teacher, out, {}, grad_student, options}, Mode::forward_backward,
                 exec);
}

}  // namespace feature

// The public names in kdloss:: (kdloss::mse_loss(s, t, out) reads as before).
using feature::L1LossArgs;
using feature::L1LossOptions;
using feature::MseLossArgs;
using feature::MseLossOptions;
using feature::PointwiseLossArgs;
using feature::SmoothL1LossArgs;
using feature::SmoothL1LossOptions;
using feature::l1_loss;
using feature::l1_loss_backward;
using feature::l1_loss_check;
using feature::l1_loss_forward_backward;
using feature::l1_loss_workspace_bytes;
using feature::mse_loss;
using feature::mse_loss_backward;
using feature::mse_loss_check;
using feature::mse_loss_forward_backward;
using feature::mse_loss_workspace_bytes;
using feature::smooth_l1_loss;
using feature::smooth_l1_loss_backward;
using feature::smooth_l1_loss_check;
using feature::smooth_l1_loss_forward_backward;
using feature::smooth_l1_loss_workspace_bytes;

} }  // namespace kdloss
