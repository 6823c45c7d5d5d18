// kdloss/losses/feature/pointwise.hpp: losses that are a function of d = student - teacher per
// element (MSE, L1, smooth-L1), with mean/sum/none reductions. One driver serves all three:
// each loss is a pair of formulas, value(d) and its derivative, written once for both backends.
#pragma once
#include <cstdint>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/types.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"

namespace kdloss {
namespace detail {

/// (s - t)^2, derivative 2 (s - t).
struct SquaredError {
  template <class V>
  KDLOSS_HOST_DEVICE auto value(const V& d) const { return math::square(d); }
  template <class V, class S>
  KDLOSS_HOST_DEVICE auto grad(const V& d, S scale) const { return d * (S(2) * scale); }
};
/// |s - t|, derivative sign(s - t) with sign(0) = 0 (PyTorch's).
struct AbsoluteError {
  template <class V>
  KDLOSS_HOST_DEVICE auto value(const V& d) const { return math::abs(d); }
  template <class V, class S>
  KDLOSS_HOST_DEVICE auto grad(const V& d, S scale) const { return math::sign(d) * scale; }
};
/// 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (PyTorch's smooth_l1_loss; beta = 0 is L1).
/// Branch-free, as min/max (Eigen 3.4 does not vectorise a per-element select): with a = |d| and
/// m = min(a, beta) the value is 0.5 m^2 / beta + (a - m), the derivative clamp(d, -beta, beta) / beta
/// (+-1 from |d| = beta on, as PyTorch's |d| < beta test), and sign(d) when beta = 0.
struct SmoothL1Error {
  double beta;
  template <class V>
  KDLOSS_HOST_DEVICE auto value(const V& d) const {
    using S = math::scalar_t<V>;
    const S b = S(beta), half_inv_b = beta > 0 ? S(0.5 / beta) : S(0);
    const auto a = math::abs(d);
    const auto m = math::min(a, b);
    return math::square(m) * half_inv_b + (a - m);
  }
  template <class V, class S>
  KDLOSS_HOST_DEVICE auto grad(const V& d, S scale) const {
    const S b = S(beta), inv_b = beta > 0 ? S(1.0 / beta) : S(0);
    return math::min(math::max(d, -b), b) * (scale * inv_b) + math::sign(d) * (beta > 0 ? S(0) : scale);
  }
};

/// The scale a reduced loss applies to each element: 1/numel for mean, 1 for sum.
inline double reduction_scale(Reduction r, std::int64_t numel) {
  return r == Reduction::mean ? (numel > 0 ? 1.0 / static_cast<double>(numel) : 0.0) : 1.0;
}

/// Loads an upstream gradient held on the device of the call (or 1 when absent).
template <class T>
struct Uniform {
  const T* ptr = nullptr;
  template <class Acc>
  KDLOSS_HOST_DEVICE Acc get() const {
    return ptr ? static_cast<Acc>(*ptr) : Acc(1);
  }
};

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

template <class T>
using value_t = std::remove_cv_t<T>;

/// Validation shared by the forward, backward and fused entry points of pointwise losses.
template <class T>
void check_pointwise(const Checker& ck, const View<const T>& s, const View<const T>& t, Reduction r) {
  ck.not_null(s, "student");
  ck.not_null(t, "teacher");
  ck.same_shape(s, "student", t, "teacher");
  ck.device(t, "teacher", s.device);
  require(r != Reduction::batchmean, ck.fn, ": argument 'reduction' is batchmean, which only kl_div offers; use mean, sum or none");
  require_backend<T>(ck.fn, s.device);
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
template <class T>
void check_gradient_output(const Checker& ck, const View<const T>& s, const View<T>& g, const char* arg) {
  ck.not_null(g, arg);
  ck.shape(g, arg, s.shape);
  ck.device(g, arg, s.device);
  ck.unique(g, arg);
}

template <class Loss, class T>
std::size_t pointwise_workspace_bytes(const View<const T>& s, Reduction r) {
  Carver carver;
  if (r != Reduction::none) carve_reduction(carver, s.device, s.numel());
  return carver.bytes();
}

template <class Loss, class T>
void pointwise_forward(const char* fn, Loss loss, View<const T> s, View<const T> t, View<T> out, Reduction r,
                       const Exec& exec) {
  const Checker ck{fn};
  check_pointwise(ck, s, t, r);
  check_loss_output(ck, s, out, r, "out");
  ck.disjoint(out, "out", s, "student");
  ck.disjoint(out, "out", t, "teacher");
  HostScratch scratch;
  Carver carver(resolve_workspace(fn, s.device, exec.workspace, pointwise_workspace_bytes<Loss>(s, r), scratch));
  using Acc = acc_t<T>;
  if (r == Reduction::none) {
    transform<Acc>(s.device, exec.stream, s.shape, PointwiseForwardMap<Loss, T>{loss}, std::tuple{s, t},
                   std::tuple{out});
    return;
  }
  double* partials = carve_reduction(carver, s.device, s.numel());
  transform_reduce<Acc>(s.device, exec.stream, s.shape, PointwiseForward<Loss, T>{loss}, std::tuple{s, t},
                        std::tuple<>{}, partials, Scale{reduction_scale(r, s.numel())}, out.data);
}

template <class Loss, class T>
void pointwise_backward(const char* fn, Loss loss, View<const T> s, View<const T> t, View<const T> grad_out,
                        View<T> grad_s, Reduction r, const Exec& exec) {
  const Checker ck{fn};
  check_pointwise(ck, s, t, r);
  ck.device(grad_out, "grad_out", s.device);
  if (r == Reduction::none) {
    ck.not_null(grad_out, "grad_out");
    ck.shape(grad_out, "grad_out", s.shape);
  } else {
    require(grad_out.numel() == 1, fn,
            ": argument 'grad_out' must hold one element (the upstream gradient of the reduced loss) but has shape ",
            grad_out.shape.str());
    ck.not_null(grad_out, "grad_out");
  }
  check_gradient_output(ck, s, grad_s, "grad_student");
  ck.disjoint(grad_s, "grad_student", s, "student");
  ck.disjoint(grad_s, "grad_student", t, "teacher");
  ck.disjoint(grad_s, "grad_student", grad_out, "grad_out");
  using Acc = acc_t<T>;
  if (r == Reduction::none) {
    transform<Acc>(s.device, exec.stream, s.shape, PointwiseBackwardMap<Loss, T>{loss}, std::tuple{s, t, grad_out},
                   std::tuple{grad_s});
    return;
  }
  transform<Acc>(s.device, exec.stream, s.shape,
                 PointwiseBackwardScalar<Loss, T>{loss, Uniform<T>{grad_out.data}, reduction_scale(r, s.numel())},
                 std::tuple{s, t}, std::tuple{grad_s});
}

template <class Loss, class T>
void pointwise_forward_backward(const char* fn, Loss loss, View<const T> s, View<const T> t, View<T> out,
                                View<T> grad_s, Reduction r, const Exec& exec) {
  const Checker ck{fn};
  check_pointwise(ck, s, t, r);
  check_loss_output(ck, s, out, r, "out");
  check_gradient_output(ck, s, grad_s, "grad_student");
  ck.disjoint(out, "out", s, "student");
  ck.disjoint(out, "out", t, "teacher");
  ck.disjoint(grad_s, "grad_student", s, "student");
  ck.disjoint(grad_s, "grad_student", t, "teacher");
  ck.disjoint(grad_s, "grad_student", out, "out");
  HostScratch scratch;
  Carver carver(resolve_workspace(fn, s.device, exec.workspace, pointwise_workspace_bytes<Loss>(s, r), scratch));
  using Acc = acc_t<T>;
  if (r == Reduction::none) {
    // Each element's own derivative, written next to its value.
    transform<Acc>(s.device, exec.stream, s.shape, PointwiseFusedMap<Loss, T>{loss}, std::tuple{s, t},
                   std::tuple{out, grad_s});
    return;
  }
  const double scale = reduction_scale(r, s.numel());
  double* partials = carve_reduction(carver, s.device, s.numel());
  transform_reduce<Acc>(s.device, exec.stream, s.shape, PointwiseFused<Loss, T>{loss, scale}, std::tuple{s, t},
                        std::tuple{grad_s}, partials, Scale{scale}, out.data);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Public entry points. Views may have any strides (broadcast inputs included); outputs must be
// unique. `out` holds one element for mean/sum and the input's shape for none. The gradient of
// backward is grad_out * d(out)/d(student); forward_backward writes d(out)/d(student) and the value
// in one pass. The teacher gets no gradient (it is -grad_student if you need it).

/// Mean squared error, as torch.nn.functional.mse_loss.
///
///   float loss;
///   kdloss::mse_loss(kdloss::host_view(s, {2, 256, 100, 167}), kdloss::host_view(t, {2, 256, 100, 167}),
///                    kdloss::host_scalar(&loss));                      // reduction mean
template <class S, class Tt, class O>
void mse_loss(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
              Reduction reduction = Reduction::mean, const Exec& exec = {}) {
  detail::pointwise_forward<detail::SquaredError, O>("kdloss::mse_loss", {}, student, teacher, out, reduction, exec);
}
/// grad_student = grad_out * d mse_loss / d student.
///
///   kdloss::mse_loss_backward(s, t, kdloss::host_scalar(&one), kdloss::host_view(gs, {2, 256, 100, 167}));
template <class S, class Tt, class G, class O>
void mse_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                       const View<O>& grad_student, Reduction reduction = Reduction::mean, const Exec& exec = {}) {
  detail::pointwise_backward<detail::SquaredError, O>("kdloss::mse_loss_backward", {}, student, teacher, grad_out,
                                                      grad_student, reduction, exec);
}
/// Value and gradient (of the value itself) in one pass over memory.
///
///   kdloss::mse_loss_forward_backward(s, t, kdloss::host_scalar(&loss), kdloss::host_view(gs, shape));
template <class S, class Tt, class O>
void mse_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                               const View<O>& grad_student, Reduction reduction = Reduction::mean,
                               const Exec& exec = {}) {
  detail::pointwise_forward_backward<detail::SquaredError, O>("kdloss::mse_loss_forward_backward", {}, student,
                                                              teacher, out, grad_student, reduction, exec);
}
/// Workspace bytes of any mse/l1/smooth_l1 call on these inputs (0 on the host).
template <class S>
std::size_t pointwise_loss_workspace_bytes(const View<S>& student, Reduction reduction = Reduction::mean) {
  return detail::pointwise_workspace_bytes<detail::SquaredError, detail::value_t<S>>(student, reduction);
}

/// Mean absolute error, as torch.nn.functional.l1_loss (gradient sign(s - t), 0 at s = t).
///
///   kdloss::l1_loss(s, t, kdloss::host_scalar(&loss), kdloss::Reduction::sum);
template <class S, class Tt, class O>
void l1_loss(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
             Reduction reduction = Reduction::mean, const Exec& exec = {}) {
  detail::pointwise_forward<detail::AbsoluteError, O>("kdloss::l1_loss", {}, student, teacher, out, reduction, exec);
}
///   kdloss::l1_loss_backward(s, t, kdloss::host_scalar(&one), grad);
template <class S, class Tt, class G, class O>
void l1_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                      const View<O>& grad_student, Reduction reduction = Reduction::mean, const Exec& exec = {}) {
  detail::pointwise_backward<detail::AbsoluteError, O>("kdloss::l1_loss_backward", {}, student, teacher, grad_out,
                                                       grad_student, reduction, exec);
}
///   kdloss::l1_loss_forward_backward(s, t, kdloss::host_scalar(&loss), grad);
template <class S, class Tt, class O>
void l1_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                              const View<O>& grad_student, Reduction reduction = Reduction::mean,
                              const Exec& exec = {}) {
  detail::pointwise_forward_backward<detail::AbsoluteError, O>("kdloss::l1_loss_forward_backward", {}, student,
                                                               teacher, out, grad_student, reduction, exec);
}

/// Smooth L1 (Huber / beta), as torch.nn.functional.smooth_l1_loss(beta=beta); beta = 0 gives L1.
///
///   kdloss::smooth_l1_loss(s, t, kdloss::host_scalar(&loss), /*beta=*/1.0);
template <class S, class Tt, class O>
void smooth_l1_loss(const View<S>& student, const View<Tt>& teacher, const View<O>& out, double beta = 1.0,
                    Reduction reduction = Reduction::mean, const Exec& exec = {}) {
  detail::require(beta >= 0, "kdloss::smooth_l1_loss: argument 'beta' must be >= 0 but is ", beta);
  detail::pointwise_forward<detail::SmoothL1Error, O>("kdloss::smooth_l1_loss", {beta}, student, teacher, out,
                                                      reduction, exec);
}
///   kdloss::smooth_l1_loss_backward(s, t, kdloss::host_scalar(&one), grad, 0.5);
template <class S, class Tt, class G, class O>
void smooth_l1_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                             const View<O>& grad_student, double beta = 1.0, Reduction reduction = Reduction::mean,
                             const Exec& exec = {}) {
  detail::require(beta >= 0, "kdloss::smooth_l1_loss_backward: argument 'beta' must be >= 0 but is ", beta);
  detail::pointwise_backward<detail::SmoothL1Error, O>("kdloss::smooth_l1_loss_backward", {beta}, student, teacher,
                                                       grad_out, grad_student, reduction, exec);
}
///   kdloss::smooth_l1_loss_forward_backward(s, t, kdloss::host_scalar(&loss), grad, 0.5);
template <class S, class Tt, class O>
void smooth_l1_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                                     const View<O>& grad_student, double beta = 1.0,
                                     Reduction reduction = Reduction::mean, const Exec& exec = {}) {
  detail::require(beta >= 0, "kdloss::smooth_l1_loss_forward_backward: argument 'beta' must be >= 0 but is ", beta);
  detail::pointwise_forward_backward<detail::SmoothL1Error, O>("kdloss::smooth_l1_loss_forward_backward", {beta},
                                                               student, teacher, out, grad_student, reduction, exec);
}

}  // namespace kdloss
