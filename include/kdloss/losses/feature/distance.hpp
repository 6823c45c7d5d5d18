// kdloss/losses/feature/distance.hpp: the Frobenius distance ||S - T||_F over all elements, as the
// reference code's torch.dist(S, T) computes it: not squared, not divided by batch or numel.
//
// Gradient (S - T) / ||S - T||, and exactly 0 where ||S - T|| = 0 (PyTorch's norm backward masks
// norm == 0, and only that: a NaN norm gives a NaN gradient everywhere, as PyTorch's). FBKD's hand-written `(d * d).sum() ** 0.5` has no such mask: its backward is inf * 0 =
// NaN at S = T. kdloss gives PyTorch's 0 there.
//
// The gradient needs the norm before any element can be written, so backward and forward_backward
// run two passes: a fused square-and-sum whose finaliser takes the square root and leaves the norm
// in a double slot (device memory on the GPU, no host round trip), then an elementwise pass that
// reads the slot through a pointer.
//
// Entry-point shape (core/entry.hpp): DistanceLossArgs, distance_loss_check(args, mode),
// distance_loss_workspace_bytes(args), distance_loss(args, mode, exec), and the thin wrappers
// distance_loss(s, t, out), _backward, _forward_backward.
#pragma once
#include <cstdint>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/losses/feature/pointwise.hpp"
#include "kdloss/ops/distance.hpp"
#include "kdloss/ops/norm.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace detail {
using ::kdloss::ops::SqrtFinal;  // ops/norm.hpp, shared with losses/fbkd

}  // namespace detail

namespace feature {

/// Options of distance_loss: none today (torch.dist's p = 2 is the only norm); a struct so that the
/// entry point has the shape of every other.
struct DistanceOptions {};

/// The arguments of one distance_loss call. Each mode reads only its fields: forward student,
/// teacher, out; backward student, teacher, grad_out, grad_student; forward_backward student,
/// teacher, out, grad_student. student and teacher have the same shape and any strides (broadcast
/// included); `out` and `grad_out` hold one element; grad_student has the student's shape and unique
/// elements.
template <class T>
struct DistanceLossArgs {
  View<const T> student{};
  View<const T> teacher{};
  View<T> out{};
  View<const T> grad_out{};  // upstream gradient of `out` (backward)
  View<T> grad_student{};
  DistanceOptions options{};
};

namespace detail {

/// grad = upstream * (s - t) / norm, and upstream * 0 where norm = 0, as PyTorch's norm backward: the
/// gradient functor of ops::distance (ops/distance.hpp, weight 1), reading the norm on the call's device.
template <class T>
using DistanceGrad = ::kdloss::ops::distance_detail::GradA<T>;

/// Scratch of a distance call: reduction partials and the norm, kept between the two passes.
struct DistanceScratch {
  double* partials = nullptr;
  ::kdloss::detail::ScalarSlots<1> norm;
};
inline DistanceScratch carve_distance(::kdloss::detail::Carver& carver, Device device, std::int64_t numel) {
  double* partials = ::kdloss::detail::carve_reduction(carver, device, numel);
  return DistanceScratch{partials, ::kdloss::detail::ScalarSlots<1>(carver, device)};
}
template <class T>
std::size_t distance_workspace_bytes(const View<const T>& s) {
  ::kdloss::detail::Carver carver;
  carve_distance(carver, s.device, s.numel());
  return carver.bytes();
}

inline const char* distance_name(Mode m) {
  return m == Mode::forward    ? "kdloss::distance_loss"
         : m == Mode::backward ? "kdloss::distance_loss_backward"
                               : "kdloss::distance_loss_forward_backward";
}

/// Every check of a call in `mode`, in a fixed order; throws before anything is written.
template <class T>
void check(const DistanceLossArgs<T>& a, Mode mode) {
  const Checker ck{distance_name(mode)};
  const View<const T>& s = a.student;
  ck.not_null(s, "student");
  ck.not_null(a.teacher, "teacher");
  ck.same_shape(s, "student", a.teacher, "teacher");
  ck.device(a.teacher, "teacher", s.device);
  ::kdloss::detail::require_backend<T>(ck.fn, s.device);
  if (writes_value(mode)) {
    ck.device(a.out, "out", s.device);
    ck.scalar_output(a.out, "out");
    ck.disjoint(a.out, "out", s, "student");
    ck.disjoint(a.out, "out", a.teacher, "teacher");
  }
  if (mode == Mode::backward) check_upstream(ck, s, a.grad_out, false, "the distance");
  if (writes_gradients(mode)) {
    check_gradient_output(ck, s, a.grad_student, "grad_student");
    ck.disjoint(a.grad_student, "grad_student", s, "student");
    ck.disjoint(a.grad_student, "grad_student", a.teacher, "teacher");
  }
  if (mode == Mode::backward) ck.disjoint(a.grad_student, "grad_student", a.grad_out, "grad_out");
  if (mode == Mode::forward_backward) ck.disjoint(a.grad_student, "grad_student", a.out, "out");
}

template <class T>
void run(const DistanceLossArgs<T>& a, Mode mode, const Exec& exec) {
  using namespace ::kdloss::detail;
  using Acc = acc_t<T>;
  const View<const T>& s = a.student;
  const View<const T>& t = a.teacher;
  HostScratch scratch;
  Carver carver(resolve_workspace(distance_name(mode), s.device, exec.workspace, distance_workspace_bytes(s), scratch));
  DistanceScratch ws = carve_distance(carver, s.device, s.numel());
  if (mode == Mode::forward) {
    transform_reduce<Acc>(s.device, exec.stream, s.shape, ::kdloss::ops::SquaredDifference{}, std::tuple{s, t},
                          std::tuple<>{}, ws.partials, SqrtFinal{}, a.out.data);
    return;
  }
  double* norm = ws.norm.get();
  // Pass 1 keeps the norm (and writes the value in forward_backward); pass 2 writes the gradient.
  if (mode == Mode::backward)
    transform_reduce<Acc>(s.device, exec.stream, s.shape, ::kdloss::ops::SquaredDifference{}, std::tuple{s, t},
                          std::tuple<>{}, ws.partials, SqrtFinal{}, norm);
  else
    transform_reduce<Acc>(s.device, exec.stream, s.shape, ::kdloss::ops::SquaredDifference{}, std::tuple{s, t},
                          std::tuple<>{}, ws.partials, SqrtFinal{norm}, a.out.data);
  const Uniform<T> upstream{mode == Mode::backward ? a.grad_out.data : nullptr};
  transform<Acc>(s.device, exec.stream, s.shape, DistanceGrad<T>{{norm, upstream, 1.0}}, std::tuple{s, t},
                 std::tuple{a.grad_student});
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Entry points (core/entry.hpp's shape). The usage examples name host pointers s, t, gs (float,
// [2, 256, 100, 167]), their views sv, tv, device views sv_dev, tv_dev and gv_dev, device scalars
// d_dist and d_up, and a float `dist`.

/// Throws kdloss::Error naming the argument and its shape if `args` cannot run in `mode`; writes nothing.
///
///   kdloss::DistanceLossArgs<float> args{sv, tv, kdloss::host_scalar(&dist)};
///   kdloss::distance_loss_check(args, kdloss::Mode::forward);
template <class T>
void distance_loss_check(const DistanceLossArgs<T>& args, Mode mode) {
  detail::check(args, mode);
}
/// Workspace bytes of any distance_loss call on these arguments, every Mode (0 on the host; on a
/// GPU, the reduction partials and one double for the norm).
///
///   std::size_t bytes = kdloss::distance_loss_workspace_bytes(kdloss::DistanceLossArgs<float>{sv_dev, tv_dev});
template <class T>
std::size_t distance_loss_workspace_bytes(const DistanceLossArgs<T>& args) {
  return detail::distance_workspace_bytes(args.student);
}
/// The same query from the student view (what the wrappers' users hold).
///
///   std::size_t bytes = kdloss::distance_loss_workspace_bytes(sv_dev);
template <class S>
std::size_t distance_loss_workspace_bytes(const View<S>& student, const DistanceOptions& = {}) {
  return detail::distance_workspace_bytes(View<const std::remove_cv_t<S>>(student));
}
/// Checks, then runs one distance_loss call in `mode`.
///
///   kdloss::DistanceLossArgs<float> args{sv, tv, kdloss::host_scalar(&dist), {}, kdloss::host_view(gs, {2, 256, 100, 167})};
///   kdloss::distance_loss(args, kdloss::Mode::forward_backward);
template <class T>
void distance_loss(const DistanceLossArgs<T>& args, Mode mode, const Exec& exec = {}) {
  detail::check(args, mode);
  detail::run(args, mode, exec);
}

// Thin wrappers. The teacher gets no gradient (it is -grad_student if you need it).

/// Frobenius distance ||student - teacher||_F over all elements, as torch.dist(student, teacher)
/// (FBKD's L_AT / L_AM "F-norm"): not squared, not divided. Empty inputs give 0.
///
///   float dist;
///   auto sv = kdloss::host_view(s, {2, 256, 100, 167}), tv = kdloss::host_view(t, {2, 256, 100, 167});
///   kdloss::distance_loss(sv, tv, kdloss::host_scalar(&dist));
///
///   // GPU, on a stream, with the scratch the query asks for:
///   std::size_t bytes = kdloss::distance_loss_workspace_bytes(sv_dev);
///   kdloss::distance_loss(sv_dev, tv_dev, kdloss::cuda_scalar(d_dist), {}, {{d_scratch, bytes}, kdloss::Stream(stream)});
template <class S, class Tt, class O>
void distance_loss(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                   const DistanceOptions& options = {}, const Exec& exec = {}) {
  distance_loss(DistanceLossArgs<O>{student, teacher, out, {}, {}, options}, Mode::forward, exec);
}

/// grad_student = grad_out * (student - teacher) / ||student - teacher||, and 0 where the distance
/// is 0. grad_out holds one element on the call's device (read there, no host synchronisation).
///
///   float one = 1.0f;
///   kdloss::distance_loss_backward(sv, tv, kdloss::host_scalar(&one), kdloss::host_view(gs, {2, 256, 100, 167}));
///   // GPU:
///   kdloss::distance_loss_backward(sv_dev, tv_dev, kdloss::cuda_scalar(d_up), gv_dev, {},
///                                  {{d_scratch, bytes}, kdloss::Stream(stream)});
template <class S, class Tt, class G, class O>
void distance_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                            const View<O>& grad_student, const DistanceOptions& options = {}, const Exec& exec = {}) {
  distance_loss(DistanceLossArgs<O>{student, teacher, {}, grad_out, grad_student, options}, Mode::backward, exec);
}

/// The distance and its gradient (of the value itself) in two passes over memory: one that sums and
/// writes `out`, one that writes grad_student.
///
///   kdloss::distance_loss_forward_backward(sv, tv, kdloss::host_scalar(&dist), kdloss::host_view(gs, {2, 256, 100, 167}));
///   // GPU:
///   kdloss::distance_loss_forward_backward(sv_dev, tv_dev, kdloss::cuda_scalar(d_dist), gv_dev, {},
///                                          {{d_scratch, bytes}, kdloss::Stream(stream)});
template <class S, class Tt, class O>
void distance_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                                    const View<O>& grad_student, const DistanceOptions& options = {},
                                    const Exec& exec = {}) {
  distance_loss(DistanceLossArgs<O>{student, teacher, out, {}, grad_student, options}, Mode::forward_backward, exec);
}

}  // namespace feature

using feature::DistanceLossArgs;
using feature::DistanceOptions;
using feature::distance_loss;
using feature::distance_loss_backward;
using feature::distance_loss_check;
using feature::distance_loss_forward_backward;
using feature::distance_loss_workspace_bytes;

} }  // namespace kdloss
