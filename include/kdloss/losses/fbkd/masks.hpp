// kdloss/losses/fbkd/masks.hpp: FBKD attention maps and attention masks (constants: no gradient).
//
//   G_s(A)[b,h,w] = mean_c |A[b,c,h,w]|          G_c(A)[b,c] = mean_hw |A[b,c,h,w]|
//   paper: M_s = HW * softmax_hw((G_s(S) + G_s(T)) / t)          M_c = C * softmax_c((G_c(S) + G_c(T)) / t_c)
//   code:  M_s = HW * (softmax_hw(G_s(T) / t) + softmax_hw(G_s(S) / t)) / 2,  M_c likewise with C
#pragma once
#include <cstdint>
#include <tuple>

#include "kdloss/core/validate.hpp"
#include "kdloss/losses/fbkd/kernels.hpp"
#include "kdloss/losses/fbkd/options.hpp"

namespace kdloss::fbkd {
namespace detail {

/// Workspace buffers of the maps and masks of one level (null where not needed), in Acc.
template <class A>
struct MaskBuffers {
  A* gs_s = nullptr;  // G_s(S) [B,HW]
  A* gs_t = nullptr;  // G_s(T)
  A* gc_s = nullptr;  // G_c(S) [B,C]
  A* gc_t = nullptr;  // G_c(T)
  A* ms = nullptr;    // M_s [B,HW]
  A* mc = nullptr;    // M_c [B,C]
};

/// Carves the spatial / channel maps of S and T, and the masks built from them, that a call needs
/// (a mask needs its maps).
template <class A>
MaskBuffers<A> carve_masks(Carver& carver, const Geometry& g, bool spatial_maps, bool channel_maps, bool spatial_mask,
                           bool channel_mask) {
  MaskBuffers<A> m;
  const auto bhw = static_cast<std::size_t>(g.b * g.hw()), bc = static_cast<std::size_t>(g.b * g.c);
  if (spatial_maps || spatial_mask) {
    m.gs_s = carver.take<A>(bhw);
    m.gs_t = carver.take<A>(bhw);
    if (spatial_mask) m.ms = carver.take<A>(bhw);
  }
  if (channel_maps || channel_mask) {
    m.gc_s = carver.take<A>(bc);
    m.gc_t = carver.take<A>(bc);
    if (channel_mask) m.mc = carver.take<A>(bc);
  }
  return m;
}

/// Per-level sums that are not maps of S and T: the code L_AT's plain means of T, and the rows
/// sum_c (T - A)^2 [B,HW] of an L_AM without channel mask (its norm is then sqrt(sum M_s * rows)).
template <class A>
struct ExtraSums {
  A* ps_t = nullptr;     // mean_c(T) [B,HW]
  A* pc_t = nullptr;     // mean_hw(T) [B,C]
  A* am_rows = nullptr;  // sum_c (T - A)^2 [B,HW]
};

/// One pass over S, T and A (a: A, or S when there is no adapter) for the abs-mean maps of S and T
/// whose buffers exist and the sums of `extra` that are requested (null buffers are skipped).
/// s may be absent when only T's sums are requested.
template <class Acc, class T, class A>
void level_sums(Device device, Stream stream, const View<const T>& s, const View<const T>& t, const View<const T>& a,
                const Geometry& g, const MaskBuffers<A>& m, const ExtraSums<A>& extra = {}) {
  using expr::PoolAxis;
  using ops::detail::MeanTerm;
  using ops::detail::OnInputs;
  const double inv_c = 1.0 / static_cast<double>(g.c), inv_hw = 1.0 / static_cast<double>(g.hw());
  auto sp = [&](A* p) { return p ? spatial_buffer(p, g, device) : View<A>{}; };
  auto ch = [&](A* p) { return p ? channel_buffer(p, g, device) : View<A>{}; };
  // Inputs 0, 1, 2 = S, T, A; an absent S or A is never read (its terms have null outputs).
  const View<const T> s_in = s.data ? s : t, a_in = a.data ? a : t;
  ::kdloss::detail::pool_sums<Acc>(
      device, stream, g.feature(), std::tuple{s_in, t, a_in},
      std::tuple{expr::PoolTerm<OnInputs<MeanTerm<true>, 0>, A>{{{inv_c}}, sp(m.gs_s), PoolAxis::channels},
                 expr::PoolTerm<OnInputs<MeanTerm<true>, 1>, A>{{{inv_c}}, sp(m.gs_t), PoolAxis::channels},
                 expr::PoolTerm<OnInputs<MeanTerm<true>, 0>, A>{{{inv_hw}}, ch(m.gc_s), PoolAxis::positions},
                 expr::PoolTerm<OnInputs<MeanTerm<true>, 1>, A>{{{inv_hw}}, ch(m.gc_t), PoolAxis::positions},
                 expr::PoolTerm<OnInputs<MeanTerm<false>, 1>, A>{{{inv_c}}, sp(extra.ps_t), PoolAxis::channels},
                 expr::PoolTerm<OnInputs<MeanTerm<false>, 1>, A>{{{inv_hw}}, ch(extra.pc_t), PoolAxis::positions},
                 expr::PoolTerm<OnInputs<SquaredDifference, 2, 1>, A>{{}, sp(extra.am_rows), PoolAxis::channels}});
}

/// Masks from the maps, into the mask buffers that exist.
template <class Acc, class A>
void compute_masks(Device device, Stream stream, const Geometry& g, const MaskBuffers<A>& m, const MaskOptions& o) {
  if (m.ms)
    mask_rows<Acc>(device, stream, spatial_rows<const A>(m.gs_t, g, device), spatial_rows<const A>(m.gs_s, g, device),
                   spatial_rows(m.ms, g, device), o.form, o.spatial_temperature, static_cast<double>(g.hw()));
  if (m.mc)
    mask_rows<Acc>(device, stream, channel_rows<const A>(m.gc_t, g, device), channel_rows<const A>(m.gc_s, g, device),
                   channel_rows(m.mc, g, device), o.form, o.channel_temperature, static_cast<double>(g.c));
}

/// Student/teacher pair of one level: non-null, rank 4, same shape, non-empty, same device.
template <class T>
void check_feature_pair(const ::kdloss::detail::Checker& ck, const View<const T>& s, const char* s_arg,
                        const View<const T>& t, const char* t_arg) {
  ck.not_null(s, s_arg);
  ck.not_null(t, t_arg);
  ck.rank(t, t_arg, 4);
  ck.same_shape(s, s_arg, t, t_arg);
  ck.nonempty(t, t_arg);
  ck.device(s, s_arg, t.device);
  ::kdloss::detail::require_backend<T>(ck.fn, t.device);
}

template <class T>
std::size_t masks_workspace_bytes(const View<const T>& s, bool spatial, bool channel) {
  Carver carver;
  if (s.rank() == 4) carve_masks<acc_t<T>>(carver, Geometry::of(s.shape), spatial, channel, spatial, channel);
  return carver.bytes();
}

template <class T>
void attention_masks(const View<const T>& s, const View<const T>& t, const View<T>& ms, const View<T>& mc,
                     const MaskOptions& options, const Exec& exec) {
  const char* fn = "kdloss::fbkd::attention_masks";
  const ::kdloss::detail::Checker ck{fn};
  check_feature_pair(ck, s, "student", t, "teacher");
  check_mask_options(fn, options);
  const bool spatial = !absent(ms), channel = !absent(mc);
  ::kdloss::detail::require(spatial || channel, fn,
                            ": arguments 'mask_spatial' and 'mask_channel' are both absent; request at least one");
  if (spatial) {
    ck.not_null(ms, "mask_spatial");
    ops::detail::check_spatial_map(ck, ms, "mask_spatial", t.shape);
    ck.device(ms, "mask_spatial", t.device);
    ck.unique(ms, "mask_spatial");
    ck.disjoint(ms, "mask_spatial", s, "student");
    ck.disjoint(ms, "mask_spatial", t, "teacher");
  }
  if (channel) {
    ck.not_null(mc, "mask_channel");
    ops::detail::check_channel_map(ck, mc, "mask_channel", t.shape);
    ck.device(mc, "mask_channel", t.device);
    ck.unique(mc, "mask_channel");
    ck.disjoint(mc, "mask_channel", s, "student");
    ck.disjoint(mc, "mask_channel", t, "teacher");
    if (spatial) ck.disjoint(mc, "mask_channel", ms, "mask_spatial");
  }
  using Acc = acc_t<T>;
  const Device device = t.device;
  const Geometry g = Geometry::of(t.shape);
  ::kdloss::detail::HostScratch scratch;
  Carver carver(::kdloss::detail::resolve_workspace(fn, device, exec.workspace,
                                                    masks_workspace_bytes(t, spatial, channel), scratch));
  const auto m = carve_masks<Acc>(carver, g, spatial, channel, spatial, channel);
  level_sums<Acc>(device, exec.stream, s, t, View<const T>{}, g, m);
  compute_masks<Acc>(device, exec.stream, g, m, options);
  // The masks are built in contiguous scratch and copied to the caller's (any-stride) views.
  if (spatial)
    copy_into<Acc>(device, exec.stream, spatial_buffer<const Acc>(m.ms, g, device), ops::detail::as_spatial_map(ms));
  if (channel)
    copy_into<Acc>(device, exec.stream, channel_buffer<const Acc>(m.mc, g, device), ops::detail::as_channel_map(mc));
}

}  // namespace detail

/// G_s(x)[b,h,w] = mean_c |x[b,c,h,w]|: FBKD's spatial attention map (ops::mean_over_channels, absolute).
/// out is [B,1,H,W] or [B,H,W]. Its backward is ops::mean_over_channels_backward(..., absolute = true).
///
///   kdloss::fbkd::spatial_attention(kdloss::host_view(feat, {2, 256, 100, 167}),
///                                   kdloss::host_view(gs, {2, 100, 167}));
template <class X, class O>
void spatial_attention(const View<X>& x, const View<O>& out, const Exec& exec = {}) {
  ops::detail::pool_forward<O>("kdloss::fbkd::spatial_attention", x, out, ops::detail::PoolAxis::channels, true, exec);
}

/// G_c(x)[b,c] = mean_hw |x[b,c,h,w]|: FBKD's channel attention map (ops::mean_over_positions, absolute).
/// out is [B,C] or [B,C,1,1].
///
///   kdloss::fbkd::channel_attention(kdloss::host_view(feat, {2, 256, 100, 167}), kdloss::host_view(gc, {2, 256}));
template <class X, class O>
void channel_attention(const View<X>& x, const View<O>& out, const Exec& exec = {}) {
  ops::detail::pool_forward<O>("kdloss::fbkd::channel_attention", x, out, ops::detail::PoolAxis::positions, true, exec);
}

/// The spatial mask M_s ([B,H,W] or [B,1,H,W]) and the channel mask M_c ([B,C] or [B,C,1,1]) of a
/// student/teacher pair [B,C,H,W], in the paper's or the reference code's form (options.form), with
/// temperatures t (positions) and t_c (channels). Either output may be left out (`{}`). The masks
/// are constants of the loss (the reference code detaches them): there is no backward.
///
///   std::vector<float> ms(B * H * W), mc(B * C);
///   kdloss::fbkd::attention_masks(s, t, kdloss::host_view(ms.data(), {B, H, W}), kdloss::host_view(mc.data(), {B, C}),
///                                 {kdloss::fbkd::MaskForm::code, 0.5, 0.5});
///   // on a GPU: size the scratch with attention_masks_workspace_bytes(s) and pass {workspace, stream}
template <class S, class Tt, class O>
void attention_masks(const View<S>& student, const View<Tt>& teacher, const View<O>& mask_spatial,
                     const View<O>& mask_channel, const MaskOptions& options = {}, const Exec& exec = {}) {
  detail::attention_masks<O>(student, teacher, mask_spatial, mask_channel, options, exec);
}

/// Workspace bytes of attention_masks on this student (both masks, or the spatial one alone when
/// with_channel_mask is false; sized on the host too, where a null workspace is allowed).
///
///   std::size_t bytes = kdloss::fbkd::attention_masks_workspace_bytes(s);
template <class S>
std::size_t attention_masks_workspace_bytes(const View<S>& student, bool with_channel_mask = true) {
  return detail::masks_workspace_bytes<std::remove_cv_t<S>>(student, true, with_channel_mask);
}

}  // namespace kdloss::fbkd
