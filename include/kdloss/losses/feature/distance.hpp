// kdloss/losses/feature/distance.hpp: the Frobenius distance ||S - T||_F over all elements, as the
// reference code's torch.dist(S, T) computes it: not squared, not divided by batch or numel.
//
// Gradient (S - T) / ||S - T||, and exactly 0 where ||S - T|| = 0 (PyTorch's norm backward masks
// norm == 0). FBKD's hand-written `(d * d).sum() ** 0.5` has no such mask: its backward is inf * 0 =
// NaN at S = T. kdloss gives PyTorch's 0 there.
//
// The gradient needs the norm before any element can be written, so backward and forward_backward
// run two passes: a fused square-and-sum whose finaliser takes the square root and leaves the norm
// in a double slot (device memory on the GPU, no host round trip), then an elementwise pass that
// reads the slot through a pointer.
#pragma once
#include <cstdint>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/losses/feature/pointwise.hpp"

namespace kdloss {
namespace detail {

/// Finaliser of the squared-sum reduction: the norm. When `keep` is set it also stores the norm
/// there in double (the fused call writes the value to `out`, whose type may be half, and keeps
/// the full-precision norm for its gradient pass). Runs once, on the device of the call.
struct SqrtFinal {
  double* keep = nullptr;
  KDLOSS_HOST_DEVICE double operator()(double total) const {
    const double norm = math::sqrt(total);
    if (keep) *keep = norm;
    return norm;
  }
};

/// grad = upstream * (s - t) / norm, and 0 where norm = 0. The norm is read on the call's device.
template <class T>
struct DistanceGrad {
  const double* norm;
  Uniform<T> upstream;  // absent in forward_backward: the gradient of the value itself
  template <class S, class Tt, class G>
  KDLOSS_HOST_DEVICE void operator()(const S& s, const Tt& t, G& g) const {
    using A = math::scalar_t<G>;
    const A n = static_cast<A>(*norm);
    if (n > A(0))
      g = (s - t) * (upstream.template get<A>() / n);
    else
      g = (s - t) * A(0);
  }
};

/// Scratch of a distance call: reduction partials and (GPU) one double slot for the norm.
struct DistanceScratch {
  double* partials = nullptr;
  double* norm = nullptr;
};
inline DistanceScratch carve_distance(Carver& carver, Device device, std::int64_t numel) {
  DistanceScratch ws;
  ws.partials = carve_reduction(carver, device, numel);
  if (!device.is_host()) ws.norm = carver.take<double>(1);
  return ws;
}
template <class T>
std::size_t distance_workspace_bytes(const View<const T>& s) {
  Carver carver;
  carve_distance(carver, s.device, s.numel());
  return carver.bytes();
}

template <class T>
void check_distance_inputs(const Checker& ck, const View<const T>& s, const View<const T>& t) {
  ck.not_null(s, "student");
  ck.not_null(t, "teacher");
  ck.same_shape(s, "student", t, "teacher");
  ck.device(t, "teacher", s.device);
  require_backend<T>(ck.fn, s.device);
}
template <class T>
void check_distance_value(const Checker& ck, const View<const T>& s, const View<const T>& t, const View<T>& out) {
  ck.device(out, "out", s.device);
  ck.scalar_output(out, "out");
  ck.disjoint(out, "out", s, "student");
  ck.disjoint(out, "out", t, "teacher");
}
template <class T>
void check_distance_grad(const Checker& ck, const View<const T>& s, const View<const T>& t, const View<T>& g) {
  check_gradient_output(ck, s, g, "grad_student");
  ck.disjoint(g, "grad_student", s, "student");
  ck.disjoint(g, "grad_student", t, "teacher");
}

template <class T>
void distance_forward(const char* fn, View<const T> s, View<const T> t, View<T> out, const Exec& exec) {
  const Checker ck{fn};
  check_distance_inputs(ck, s, t);
  check_distance_value(ck, s, t, out);
  HostScratch scratch;
  Carver carver(resolve_workspace(fn, s.device, exec.workspace, distance_workspace_bytes(s), scratch));
  const DistanceScratch ws = carve_distance(carver, s.device, s.numel());
  transform_reduce<acc_t<T>>(s.device, exec.stream, s.shape, PointwiseForward<SquaredError, T>{}, std::tuple{s, t},
                             std::tuple<>{}, ws.partials, SqrtFinal{}, out.data);
}

template <class T>
void distance_backward(const char* fn, View<const T> s, View<const T> t, View<const T> grad_out, View<T> grad_s,
                       const Exec& exec) {
  const Checker ck{fn};
  check_distance_inputs(ck, s, t);
  ck.device(grad_out, "grad_out", s.device);
  require(grad_out.numel() == 1, fn,
          ": argument 'grad_out' must hold one element (the upstream gradient of the distance) but has shape ",
          grad_out.shape.str());
  ck.not_null(grad_out, "grad_out");
  check_distance_grad(ck, s, t, grad_s);
  ck.disjoint(grad_s, "grad_student", grad_out, "grad_out");
  HostScratch scratch;
  Carver carver(resolve_workspace(fn, s.device, exec.workspace, distance_workspace_bytes(s), scratch));
  const DistanceScratch ws = carve_distance(carver, s.device, s.numel());
  double host_norm = 0;
  double* norm = s.device.is_host() ? &host_norm : ws.norm;
  using Acc = acc_t<T>;
  transform_reduce<Acc>(s.device, exec.stream, s.shape, PointwiseForward<SquaredError, T>{}, std::tuple{s, t},
                        std::tuple<>{}, ws.partials, SqrtFinal{}, norm);
  transform<Acc>(s.device, exec.stream, s.shape, DistanceGrad<T>{norm, Uniform<T>{grad_out.data}}, std::tuple{s, t},
                 std::tuple{grad_s});
}

template <class T>
void distance_forward_backward(const char* fn, View<const T> s, View<const T> t, View<T> out, View<T> grad_s,
                               const Exec& exec) {
  const Checker ck{fn};
  check_distance_inputs(ck, s, t);
  check_distance_value(ck, s, t, out);
  check_distance_grad(ck, s, t, grad_s);
  ck.disjoint(grad_s, "grad_student", out, "out");
  HostScratch scratch;
  Carver carver(resolve_workspace(fn, s.device, exec.workspace, distance_workspace_bytes(s), scratch));
  const DistanceScratch ws = carve_distance(carver, s.device, s.numel());
  double host_norm = 0;
  double* norm = s.device.is_host() ? &host_norm : ws.norm;
  using Acc = acc_t<T>;
  // Pass 1 writes the value and keeps the norm; pass 2 writes the gradient.
  transform_reduce<Acc>(s.device, exec.stream, s.shape, PointwiseForward<SquaredError, T>{}, std::tuple{s, t},
                        std::tuple<>{}, ws.partials, SqrtFinal{norm}, out.data);
  transform<Acc>(s.device, exec.stream, s.shape, DistanceGrad<T>{norm, Uniform<T>{}}, std::tuple{s, t},
                 std::tuple{grad_s});
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Public entry points. student and teacher have the same shape and any strides (broadcast inputs
// included); `out` holds one element; grad_student has the student's shape and unique elements.
// The teacher gets no gradient (it is -grad_student if you need it).

/// Frobenius distance ||student - teacher||_F over all elements, as torch.dist(student, teacher)
/// (FBKD's L_AT / L_AM "F-norm"): not squared, not divided. Empty inputs give 0.
///
///   float dist;
///   auto s = kdloss::host_view(s_ptr, {2, 256, 100, 167}), t = kdloss::host_view(t_ptr, {2, 256, 100, 167});
///   kdloss::distance_loss(s, t, kdloss::host_scalar(&dist));
///
///   // GPU, on a stream, with the scratch the query asks for:
///   std::size_t bytes = kdloss::distance_loss_workspace_bytes(s_dev);
///   kdloss::distance_loss(s_dev, t_dev, kdloss::cuda_scalar(d_dist), {{d_scratch, bytes}, kdloss::Stream(stream)});
template <class S, class Tt, class O>
void distance_loss(const View<S>& student, const View<Tt>& teacher, const View<O>& out, const Exec& exec = {}) {
  detail::distance_forward<O>("kdloss::distance_loss", student, teacher, out, exec);
}

/// grad_student = grad_out * (student - teacher) / ||student - teacher||, and 0 where the distance
/// is 0. grad_out holds one element on the call's device (read there, no host synchronisation).
///
///   float one = 1.0f;
///   kdloss::distance_loss_backward(s, t, kdloss::host_scalar(&one), kdloss::host_view(gs, {2, 256, 100, 167}));
///   // GPU: kdloss::distance_loss_backward(s_dev, t_dev, kdloss::cuda_scalar(d_up), g_dev, {{d_scratch, bytes},
///   kdloss::Stream(stream)});
template <class S, class Tt, class G, class O>
void distance_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                            const View<O>& grad_student, const Exec& exec = {}) {
  detail::distance_backward<O>("kdloss::distance_loss_backward", student, teacher, grad_out, grad_student, exec);
}

/// The distance and its gradient (of the value itself) in two passes over memory: one that sums and
/// writes `out`, one that writes grad_student.
///
///   kdloss::distance_loss_forward_backward(s, t, kdloss::host_scalar(&dist), kdloss::host_view(gs, shape));
///   // GPU: kdloss::distance_loss_forward_backward(s_dev, t_dev, kdloss::cuda_scalar(d_dist), g_dev, {{d_scratch,
///   bytes}, kdloss::Stream(stream)});
template <class S, class Tt, class O>
void distance_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                                    const View<O>& grad_student, const Exec& exec = {}) {
  detail::distance_forward_backward<O>("kdloss::distance_loss_forward_backward", student, teacher, out, grad_student,
                                       exec);
}

/// Workspace bytes of any distance_loss / _backward / _forward_backward call on these inputs
/// (0 on the host; on a GPU, the reduction partials and one double for the norm).
///
///   std::size_t bytes = kdloss::distance_loss_workspace_bytes(kdloss::cuda_view<const float>(d_s, {2, 256, 100,
///   167}));
template <class S>
std::size_t distance_loss_workspace_bytes(const View<S>& student) {
  return detail::distance_workspace_bytes<detail::value_t<S>>(student);
}

}  // namespace kdloss
