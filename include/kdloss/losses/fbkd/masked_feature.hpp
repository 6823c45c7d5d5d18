// kdloss/losses/fbkd/masked_feature.hpp: FBKD's attention-masked feature loss (L_AM, paper eq. 2;
// `dist2` of the reference code):
//
//   L_AM = sqrt( sum_{b,c,h,w} (T - A)^2 * M_s[b,h,w] * M_c[b,c] ),   A = the student's adapted feature
//   dL_AM/dA = -(T - A) * M_s * M_c / L_AM,  defined as 0 where L_AM = 0
//
// The reference code's `sum() ** 0.5` has no eps, so its gradient is NaN at L_AM = 0; kdloss
// follows PyTorch's norm convention (0) instead, at an exact 0 only: NaN and inf inputs propagate as
// autograd propagates them (docs/losses/fbkd.md, "NaN and infinity"). The masks are constants (no gradient); the channel
// mask is optional (the official two-stage code and mmrazor leave it out, one-stage uses it).
//
// One fused pass reduces the masked squares (masks read as broadcast inputs) and a finaliser stores
// the square root on the device; the gradient pass reads it there.
#pragma once
#include <cstdint>
#include <tuple>

#include "kdloss/config.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/losses/fbkd/kernels.hpp"
#include "kdloss/losses/fbkd/masks.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace fbkd {
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
                      Upstream<U> upstream, double weight, const View<G>& grad) {
  const MaskedSquareGrad<U> f{norm, upstream, weight};
  if (channel)
    ::kdloss::detail::transform<Acc>(device, stream, t.shape, f, std::tuple{a, t, ms, mc}, std::tuple{grad});
  else
    ::kdloss::detail::transform<Acc>(device, stream, t.shape, f, std::tuple{a, t, ms}, std::tuple{grad});
}

inline constexpr const char* kMaskedFeatureLossNames[3] = {"kdloss::fbkd::masked_feature_loss",
                                                           "kdloss::fbkd::masked_feature_loss_backward",
                                                           "kdloss::fbkd::masked_feature_loss_forward_backward"};

template <class T>
std::size_t masked_feature_workspace_bytes(const View<const T>& a) {
  Carver carver;
  carver.take<double>(1);
  carve_partials(carver, a.device, a.numel());
  return carver.bytes();
}

}  // namespace detail

/// The arguments of one masked_feature_loss call. Inputs: the student's adapted feature A and the
/// teacher T ([B,C,H,W], any strides), the spatial mask M_s ([B,H,W] or [B,1,H,W]) and, optionally,
/// the channel mask M_c ([B,C] or [B,C,1,1]; `{}` leaves it out). Outputs: `out` (one element:
/// forward, forward_backward), grad_student_adapted ([B,C,H,W]: backward, forward_backward), from
/// grad_out (one element: backward).
///
///   const kdloss::Dims shape{2, 8, 6, 5};
///   std::vector<float> a(shape.product(), 0.5f), t(shape.product(), 0.25f), ms(2 * 6 * 5, 1.f), ga(shape.product());
///   kdloss::fbkd::MaskedFeatureLossArgs<float> args;
///   args.student_adapted = kdloss::host_view<const float>(a.data(), shape);
///   args.teacher = kdloss::host_view<const float>(t.data(), shape);
///   args.mask_spatial = kdloss::host_view<const float>(ms.data(), {2, 6, 5});
///   float l_am;
///   args.out = kdloss::host_scalar(&l_am);
///   args.grad_student_adapted = kdloss::host_view(ga.data(), shape);
///   kdloss::fbkd::masked_feature_loss(args, kdloss::Mode::forward_backward);
template <class T>
struct MaskedFeatureLossArgs {
  View<const T> student_adapted{};
  View<const T> teacher{};
  View<const T> mask_spatial{};
  View<const T> mask_channel{};  // optional
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_student_adapted{};
};

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::fbkd::MaskedFeatureLossArgs<float> args;   // its views filled in as in MaskedFeatureLossArgs's example
///   kdloss::fbkd::masked_feature_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void masked_feature_loss_check(const MaskedFeatureLossArgs<T>& args, Mode mode) {
  const char* fn = detail::kMaskedFeatureLossNames[mode_index(mode)];
  const ::kdloss::detail::Checker ck{fn};
  const View<const T>&a = args.student_adapted, &t = args.teacher, &ms = args.mask_spatial, &mc = args.mask_channel;
  detail::check_feature_pair(ck, a, "student_adapted", t, "teacher");
  const Device device = t.device;
  detail::require_present(ck, ms, "mask_spatial", "L_AM needs the spatial mask");
  ck.not_null(ms, "mask_spatial");
  ops::detail::check_spatial_map(ck, ms, "mask_spatial", t.shape);
  ck.device(ms, "mask_spatial", device);
  const bool channel = present(mc);
  if (channel) {
    ck.not_null(mc, "mask_channel");
    ops::detail::check_channel_map(ck, mc, "mask_channel", t.shape);
    ck.device(mc, "mask_channel", device);
  }
  if (writes_value(mode)) {
    detail::check_scalar_out(ck, args.out, "out", device);
    ck.disjoint(args.out, "out", a, "student_adapted");
    ck.disjoint(args.out, "out", t, "teacher");
    ck.disjoint(args.out, "out", ms, "mask_spatial");
    if (channel) ck.disjoint(args.out, "out", mc, "mask_channel");
  }
  if (mode == Mode::backward) detail::check_upstream(ck, args.grad_out, device);
  if (writes_gradients(mode)) {
    const View<T>& g = args.grad_student_adapted;
    detail::require_present(ck, g, "grad_student_adapted", "this call writes the gradient there");
    ck.not_null(g, "grad_student_adapted");
    ck.shape(g, "grad_student_adapted", t.shape);
    ck.device(g, "grad_student_adapted", device);
    ck.unique(g, "grad_student_adapted");
    ck.disjoint(g, "grad_student_adapted", a, "student_adapted");
    ck.disjoint(g, "grad_student_adapted", t, "teacher");
    ck.disjoint(g, "grad_student_adapted", ms, "mask_spatial");
    if (channel) ck.disjoint(g, "grad_student_adapted", mc, "mask_channel");
    if (mode == Mode::forward_backward)
      ck.disjoint(g, "grad_student_adapted", args.out, "out");
    else
      ck.disjoint(g, "grad_student_adapted", args.grad_out, "grad_out");
  }
}

/// Workspace bytes of masked_feature_loss on these arguments, enough for every mode (one slot and
/// one reduction scratch on a GPU).
///
///   kdloss::fbkd::MaskedFeatureLossArgs<float> args;   // its views filled in as in MaskedFeatureLossArgs's example
///   std::size_t bytes = kdloss::fbkd::masked_feature_loss_workspace_bytes(args);
template <class T>
std::size_t masked_feature_loss_workspace_bytes(const MaskedFeatureLossArgs<T>& args) {
  return detail::masked_feature_workspace_bytes<T>(args.teacher);
}

/// Checks, then runs: forward writes L_AM to out; backward writes grad_out * dL_AM/dA (recomputing
/// L_AM into the workspace first); forward_backward writes L_AM and dL_AM/dA (one reduction pass,
/// one gradient pass; no host synchronisation).
///
///   kdloss::fbkd::MaskedFeatureLossArgs<float> args;   // its views filled in as in MaskedFeatureLossArgs's example
///   kdloss::fbkd::masked_feature_loss(args, kdloss::Mode::forward_backward);
template <class T>
void masked_feature_loss(const MaskedFeatureLossArgs<T>& args, Mode mode, const Exec& exec = {}) {
  masked_feature_loss_check(args, mode);
  const char* fn = detail::kMaskedFeatureLossNames[mode_index(mode)];
  const View<const T>&a = args.student_adapted, &t = args.teacher;
  const Device device = t.device;
  const bool channel = present(args.mask_channel);
  ::kdloss::detail::HostScratch scratch;
  detail::Carver carver(::kdloss::detail::resolve_workspace(fn, device, exec.workspace,
                                                            detail::masked_feature_workspace_bytes(t), scratch));
  double* slot = carver.take<double>(1);
  double* partials = detail::carve_partials(carver, device, t.numel());
  using Acc = acc_t<T>;
  const View<const T> ms = ops::detail::as_spatial_map(args.mask_spatial);
  const View<const T> mc = channel ? ops::detail::as_channel_map(args.mask_channel) : View<const T>{};
  if (mode == Mode::forward) {
    detail::masked_norm<Acc>(device, exec.stream, a, t, ms, mc, channel, partials, args.out.data);
    return;
  }
  detail::masked_norm<Acc>(device, exec.stream, a, t, ms, mc, channel, partials, slot);
  const detail::Upstream<T> upstream{mode == Mode::backward ? args.grad_out.data : nullptr};
  detail::masked_norm_grad<Acc>(device, exec.stream, a, t, ms, mc, channel, slot, upstream, 1.0,
                                args.grad_student_adapted);
  if (mode == Mode::forward_backward)
    detail::combine_into<Acc>(device, exec.stream, slot, 1, 1.0, 0.0, partials, args.out.data);
}

/// L_AM = sqrt(sum (T - A)^2 * M_s * M_c) over the whole batch (not divided by anything), for the
/// student's adapted feature A and the teacher T, both [B,C,H,W] with any strides. mask_spatial is
/// [B,H,W] or [B,1,H,W]; mask_channel is [B,C] or [B,C,1,1], or `{}` to leave it out. Pass the
/// student itself as A when there is no adapter. `out` holds one element on the views' device.
///
///   const std::int64_t B = 2, C = 8, H = 6, W = 5;
///   std::vector<float> s(B * C * H * W, 0.5f), t(B * C * H * W, 0.25f), ms(B * H * W);
///   const auto sv = kdloss::host_view<const float>(s.data(), {B, C, H, W});
///   const auto tv = kdloss::host_view<const float>(t.data(), {B, C, H, W});
///   kdloss::fbkd::attention_masks(sv, tv, kdloss::host_view(ms.data(), {B, H, W}), kdloss::View<float>{});
///   float l_am;
///   kdloss::fbkd::masked_feature_loss(sv, tv, kdloss::host_view<const float>(ms.data(), {B, H, W}),
///                                     kdloss::View<const float>{}, kdloss::host_scalar(&l_am));
template <class A, class Tt, class M, class O>
void masked_feature_loss(const View<A>& student_adapted, const View<Tt>& teacher, const View<M>& mask_spatial,
                         const View<M>& mask_channel, const View<O>& out, const Exec& exec = {}) {
  MaskedFeatureLossArgs<O> a{student_adapted, teacher, mask_spatial, mask_channel, out, {}, {}};
  masked_feature_loss(a, Mode::forward, exec);
}

/// grad_student_adapted = grad_out * dL_AM/dA = grad_out * (A - T) * M_s * M_c / L_AM (0 where L_AM = 0).
/// grad_out is one element on the views' device. Recomputes L_AM (into the workspace) first.
///
///   const kdloss::Dims shape{2, 8, 6, 5};
///   std::vector<float> a(shape.product(), 0.5f), t(shape.product(), 0.25f), ms(2 * 6 * 5, 1.f), ga(shape.product());
///   const float one = 1;
///   kdloss::fbkd::masked_feature_loss_backward(
///       kdloss::host_view<const float>(a.data(), shape), kdloss::host_view<const float>(t.data(), shape),
///       kdloss::host_view<const float>(ms.data(), {2, 6, 5}), kdloss::View<const float>{},
///       kdloss::host_scalar(&one), kdloss::host_view(ga.data(), shape));
template <class A, class Tt, class M, class G, class O>
void masked_feature_loss_backward(const View<A>& student_adapted, const View<Tt>& teacher, const View<M>& mask_spatial,
                                  const View<M>& mask_channel, const View<G>& grad_out,
                                  const View<O>& grad_student_adapted, const Exec& exec = {}) {
  MaskedFeatureLossArgs<O> a{student_adapted, teacher, mask_spatial, mask_channel, {}, grad_out, grad_student_adapted};
  masked_feature_loss(a, Mode::backward, exec);
}

/// L_AM and dL_AM/dA together (one reduction pass, one gradient pass; no host synchronisation).
///
///   const kdloss::Dims shape{2, 8, 6, 5};
///   std::vector<float> a(shape.product(), 0.5f), t(shape.product(), 0.25f), ms(2 * 6 * 5, 1.f), mc(2 * 8, 1.f),
///       ga(shape.product());
///   float l_am;
///   kdloss::fbkd::masked_feature_loss_forward_backward(
///       kdloss::host_view<const float>(a.data(), shape), kdloss::host_view<const float>(t.data(), shape),
///       kdloss::host_view<const float>(ms.data(), {2, 6, 5}), kdloss::host_view<const float>(mc.data(), {2, 8}),
///       kdloss::host_scalar(&l_am), kdloss::host_view(ga.data(), shape));
template <class A, class Tt, class M, class O>
void masked_feature_loss_forward_backward(const View<A>& student_adapted, const View<Tt>& teacher,
                                          const View<M>& mask_spatial, const View<M>& mask_channel, const View<O>& out,
                                          const View<O>& grad_student_adapted, const Exec& exec = {}) {
  MaskedFeatureLossArgs<O> a{student_adapted, teacher, mask_spatial, mask_channel, out, {}, grad_student_adapted};
  masked_feature_loss(a, Mode::forward_backward, exec);
}

/// masked_feature_loss_workspace_bytes(args) of a call on features shaped like `student_adapted`.
///
///   std::vector<float> a(2 * 8 * 6 * 5);
///   std::size_t bytes =
///       kdloss::fbkd::masked_feature_loss_workspace_bytes(kdloss::host_view<const float>(a.data(), {2, 8, 6, 5}));
template <class A>
std::size_t masked_feature_loss_workspace_bytes(const View<A>& student_adapted) {
  return detail::masked_feature_workspace_bytes<std::remove_cv_t<A>>(student_adapted);
}

} } }  // namespace kdloss::fbkd
