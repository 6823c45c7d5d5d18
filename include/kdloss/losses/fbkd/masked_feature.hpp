// kdloss/losses/fbkd/masked_feature.hpp: FBKD's attention-masked feature loss (L_AM, paper eq. 2;
// `dist2` of the reference code):
//
//   L_AM = sqrt( sum_{b,c,h,w} (T - A)^2 * M_s[b,h,w] * M_c[b,c] ),   A = the student's adapted feature
//   dL_AM/dA = -(T - A) * M_s * M_c / L_AM,  defined as 0 where L_AM = 0
//
// The reference code's `sum() ** 0.5` has no eps, so its gradient is NaN at L_AM = 0; kdloss
// follows PyTorch's norm convention (0) instead. The masks are constants (no gradient); the channel
// mask is optional (the official two-stage code and mmrazor leave it out, one-stage uses it).
//
// One fused pass reduces the masked squares (masks read as broadcast inputs) and a finaliser stores
// the square root on the device; the gradient pass reads it there.
#pragma once
#include <cstdint>
#include <tuple>

#include "kdloss/core/validate.hpp"
#include "kdloss/losses/fbkd/kernels.hpp"
#include "kdloss/losses/fbkd/masks.hpp"

namespace kdloss::fbkd {
namespace detail {

template <class Acc, class T, class M, class R>
void masked_norm(Device device, Stream stream, const View<const T>& a, const View<const T>& t, const View<const M>& ms,
                 const View<const M>& mc, bool channel, double* partials, R* slot) {
  if (channel)
    norm_into<Acc>(device, stream, t.shape, MaskedSquare{}, std::tuple{a, t, ms, mc}, partials, slot);
  else
    norm_into<Acc>(device, stream, t.shape, MaskedSquare{}, std::tuple{a, t, ms}, partials, slot);
}
template <class Acc, class T, class M, class U, class G>
void masked_norm_grad(Device device, Stream stream, const View<const T>& a, const View<const T>& t,
                      const View<const M>& ms, const View<const M>& mc, bool channel, const double* norm,
                      Uniform<U> upstream, double weight, const View<G>& grad) {
  const MaskedSquareGrad<U> f{norm, upstream, weight};
  if (channel)
    ::kdloss::detail::transform<Acc>(device, stream, t.shape, f, std::tuple{a, t, ms, mc}, std::tuple{grad});
  else
    ::kdloss::detail::transform<Acc>(device, stream, t.shape, f, std::tuple{a, t, ms}, std::tuple{grad});
}

enum class Mode { forward, backward, fused };

template <class T>
std::size_t masked_feature_workspace_bytes(const View<const T>& a) {
  Carver carver;
  carver.take<double>(1);
  carve_partials(carver, a.device, a.numel());
  return carver.bytes();
}

template <class T>
void masked_feature(const char* fn, Mode mode, const View<const T>& a, const View<const T>& t,
                    const View<const T>& ms_in, const View<const T>& mc_in, const View<T>& out,
                    const View<const T>& grad_out, const View<T>& grad_a, const Exec& exec) {
  const ::kdloss::detail::Checker ck{fn};
  check_feature_pair(ck, a, "student_adapted", t, "teacher");
  const Device device = t.device;
  require_present(ck, ms_in, "mask_spatial", "L_AM needs the spatial mask");
  ck.not_null(ms_in, "mask_spatial");
  ops::detail::check_spatial_map(ck, ms_in, "mask_spatial", t.shape);
  ck.device(ms_in, "mask_spatial", device);
  const bool channel = !absent(mc_in);
  if (channel) {
    ck.not_null(mc_in, "mask_channel");
    ops::detail::check_channel_map(ck, mc_in, "mask_channel", t.shape);
    ck.device(mc_in, "mask_channel", device);
  }
  if (mode != Mode::backward) {
    check_scalar_out(ck, out, "out", device);
    ck.disjoint(out, "out", a, "student_adapted");
    ck.disjoint(out, "out", t, "teacher");
    ck.disjoint(out, "out", ms_in, "mask_spatial");
    if (channel) ck.disjoint(out, "out", mc_in, "mask_channel");
  }
  if (mode == Mode::backward) check_upstream(ck, grad_out, device);
  if (mode != Mode::forward) {
    require_present(ck, grad_a, "grad_student_adapted", "this call writes the gradient there");
    ck.not_null(grad_a, "grad_student_adapted");
    ck.shape(grad_a, "grad_student_adapted", t.shape);
    ck.device(grad_a, "grad_student_adapted", device);
    ck.unique(grad_a, "grad_student_adapted");
    ck.disjoint(grad_a, "grad_student_adapted", a, "student_adapted");
    ck.disjoint(grad_a, "grad_student_adapted", t, "teacher");
    ck.disjoint(grad_a, "grad_student_adapted", ms_in, "mask_spatial");
    if (channel) ck.disjoint(grad_a, "grad_student_adapted", mc_in, "mask_channel");
    if (mode == Mode::fused)
      ck.disjoint(grad_a, "grad_student_adapted", out, "out");
    else
      ck.disjoint(grad_a, "grad_student_adapted", grad_out, "grad_out");
  }
  ::kdloss::detail::HostScratch scratch;
  Carver carver(
      ::kdloss::detail::resolve_workspace(fn, device, exec.workspace, masked_feature_workspace_bytes(t), scratch));
  double* slot = carver.take<double>(1);
  double* partials = carve_partials(carver, device, t.numel());
  using Acc = acc_t<T>;
  const View<const T> ms = ops::detail::as_spatial_map(ms_in);
  const View<const T> mc = channel ? ops::detail::as_channel_map(mc_in) : View<const T>{};
  if (mode == Mode::forward) {
    masked_norm<Acc>(device, exec.stream, a, t, ms, mc, channel, partials, out.data);
    return;
  }
  masked_norm<Acc>(device, exec.stream, a, t, ms, mc, channel, partials, slot);
  const Uniform<T> upstream{mode == Mode::backward ? grad_out.data : nullptr};
  masked_norm_grad<Acc>(device, exec.stream, a, t, ms, mc, channel, slot, upstream, 1.0, grad_a);
  if (mode == Mode::fused) combine_into<Acc>(device, exec.stream, slot, 1, 1.0, 0.0, partials, out.data);
}

}  // namespace detail

/// L_AM = sqrt(sum (T - A)^2 * M_s * M_c) over the whole batch (not divided by anything), for the
/// student's adapted feature A and the teacher T, both [B,C,H,W] with any strides. mask_spatial is
/// [B,H,W] or [B,1,H,W]; mask_channel is [B,C] or [B,C,1,1], or `{}` to leave it out. Pass the
/// student itself as A when there is no adapter. `out` holds one element on the views' device.
///
///   std::vector<float> ms(B * H * W);
///   kdloss::fbkd::attention_masks(s, t, kdloss::host_view(ms.data(), {B, H, W}), kdloss::View<float>{});
///   float l_am;
///   kdloss::fbkd::masked_feature_loss(a, t, kdloss::host_view<const float>(ms.data(), {B, H, W}),
///                                     kdloss::View<const float>{}, kdloss::host_scalar(&l_am));
template <class A, class Tt, class M, class O>
void masked_feature_loss(const View<A>& student_adapted, const View<Tt>& teacher, const View<M>& mask_spatial,
                         const View<M>& mask_channel, const View<O>& out, const Exec& exec = {}) {
  detail::masked_feature<O>("kdloss::fbkd::masked_feature_loss", detail::Mode::forward, student_adapted, teacher,
                            mask_spatial, mask_channel, out, {}, {}, exec);
}

/// grad_student_adapted = grad_out * dL_AM/dA = grad_out * (A - T) * M_s * M_c / L_AM (0 where L_AM = 0).
/// grad_out is one element on the views' device. Recomputes L_AM (into the workspace) first.
///
///   float one = 1;
///   kdloss::fbkd::masked_feature_loss_backward(a, t, ms, {}, kdloss::host_scalar(&one), grad_a);
template <class A, class Tt, class M, class G, class O>
void masked_feature_loss_backward(const View<A>& student_adapted, const View<Tt>& teacher, const View<M>& mask_spatial,
                                  const View<M>& mask_channel, const View<G>& grad_out,
                                  const View<O>& grad_student_adapted, const Exec& exec = {}) {
  detail::masked_feature<O>("kdloss::fbkd::masked_feature_loss_backward", detail::Mode::backward, student_adapted,
                            teacher, mask_spatial, mask_channel, {}, grad_out, grad_student_adapted, exec);
}

/// L_AM and dL_AM/dA together (one reduction pass, one gradient pass; no host synchronisation).
///
///   kdloss::fbkd::masked_feature_loss_forward_backward(a, t, ms, mc, kdloss::host_scalar(&l_am), grad_a);
template <class A, class Tt, class M, class O>
void masked_feature_loss_forward_backward(const View<A>& student_adapted, const View<Tt>& teacher,
                                          const View<M>& mask_spatial, const View<M>& mask_channel, const View<O>& out,
                                          const View<O>& grad_student_adapted, const Exec& exec = {}) {
  detail::masked_feature<O>("kdloss::fbkd::masked_feature_loss_forward_backward", detail::Mode::fused, student_adapted,
                            teacher, mask_spatial, mask_channel, out, {}, grad_student_adapted, exec);
}

/// Workspace bytes of any masked_feature_loss call on features shaped like `student_adapted`.
///
///   std::size_t bytes = kdloss::fbkd::masked_feature_loss_workspace_bytes(a);
template <class A>
std::size_t masked_feature_loss_workspace_bytes(const View<A>& student_adapted) {
  return detail::masked_feature_workspace_bytes<std::remove_cv_t<A>>(student_adapted);
}

}  // namespace kdloss::fbkd
