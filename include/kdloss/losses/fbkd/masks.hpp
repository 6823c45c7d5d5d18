// kdloss/losses/fbkd/masks.hpp: FBKD attention maps and attention masks (constants: no gradient).
//
//   G_s(A)[b,h,w] = mean_c |A[b,c,h,w]|          G_c(A)[b,c] = mean_hw |A[b,c,h,w]|
//   paper: M_s = HW * softmax_hw((G_s(S) + G_s(T)) / t)          M_c = C * softmax_c((G_c(S) + G_c(T)) / t_c)
//   code:  M_s = HW * (softmax_hw(G_s(T) / t) + softmax_hw(G_s(S) / t)) / 2,  M_c likewise with C
#pragma once
#include <cstdint>
#include <tuple>

#include "kdloss/config.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/losses/fbkd/kernels.hpp"
#include "kdloss/losses/fbkd/options.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace fbkd {
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
std::size_t masks_workspace_bytes(const View<const T>& t, bool spatial, bool channel) {
  Carver carver;
  if (t.rank() == 4) carve_masks<acc_t<T>>(carver, Geometry::of(t.shape), spatial, channel, spatial, channel);
  return carver.bytes();
}

inline constexpr const char* kSpatialAttentionNames[3] = {"kdloss::fbkd::spatial_attention",
                                                          "kdloss::fbkd::spatial_attention_backward",
                                                          "kdloss::fbkd::spatial_attention_forward_backward"};
inline constexpr const char* kChannelAttentionNames[3] = {"kdloss::fbkd::channel_attention",
                                                          "kdloss::fbkd::channel_attention_backward",
                                                          "kdloss::fbkd::channel_attention_forward_backward"};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Attention maps: the abs-means of ops/pooling.hpp (ops::mean_over_channels / mean_over_positions with
// MeanOptions{true}), under FBKD's names, with their backward (sign(x) / n; sign(0) = sign(NaN) = 0).

/// The arguments of one spatial_attention call (AttentionMapArgs, shared with channel_attention): x
/// [B,C,H,W] (any strides), out and grad_out [B,1,H,W] or [B,H,W], grad_x [B,C,H,W]. Leave a view
/// `{}` when the mode does not use it.
///
///   std::vector<float> feat(2 * 8 * 6 * 5, -1.f), gs(2 * 6 * 5);
///   kdloss::fbkd::SpatialAttentionArgs<float> args;
///   args.x = kdloss::host_view<const float>(feat.data(), {2, 8, 6, 5});
///   args.out = kdloss::host_view(gs.data(), {2, 6, 5});
///   kdloss::fbkd::spatial_attention(args, kdloss::Mode::forward);
template <class T>
struct AttentionMapArgs {
  using value_type = T;
  View<const T> x{};
  View<T> out{};             // the map: forward, forward_backward
  View<const T> grad_out{};  // dL/dmap: backward, forward_backward
  View<T> grad_x{};          // written by backward and forward_backward
};
template <class T>
using SpatialAttentionArgs = AttentionMapArgs<T>;

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::fbkd::SpatialAttentionArgs<float> args;   // its views filled in as in SpatialAttentionArgs's example
///   kdloss::fbkd::spatial_attention_check(args, kdloss::Mode::forward);
template <class T>
void spatial_attention_check(const SpatialAttentionArgs<T>& args, Mode mode) {
  ops::detail::check_pool_entry(detail::kSpatialAttentionNames[mode_index(mode)], ops::detail::pool_views(args),
                                ops::detail::PoolAxis::channels, mode);
}

/// Workspace bytes of spatial_attention: 0, in every mode.
///
///   kdloss::fbkd::SpatialAttentionArgs<float> args;   // its views filled in as in SpatialAttentionArgs's example
///   std::size_t bytes = kdloss::fbkd::spatial_attention_workspace_bytes(args);   // 0
template <class T>
std::size_t spatial_attention_workspace_bytes(const SpatialAttentionArgs<T>&) {
  return 0;
}

/// Checks, then runs G_s(x)[b,h,w] = mean_c |x[b,c,h,w]| (forward) and/or grad_x = sign(x) * grad_out / C.
///
///   kdloss::fbkd::SpatialAttentionArgs<float> args;   // its views filled in as in SpatialAttentionArgs's example
///   kdloss::fbkd::spatial_attention(args, kdloss::Mode::forward);
template <class T>
void spatial_attention(const SpatialAttentionArgs<T>& args, Mode mode, const Exec& exec = {}) {
  spatial_attention_check(args, mode);
  ops::detail::run_pool_entry(ops::detail::pool_views(args), ops::detail::PoolAxis::channels, true, mode, exec);
}

/// G_s(x)[b,h,w] = mean_c |x[b,c,h,w]|: FBKD's spatial attention map (ops::mean_over_channels, absolute).
/// out is [B,1,H,W] or [B,H,W].
///
///   std::vector<float> feat(2 * 8 * 6 * 5, -1.f), gs(2 * 6 * 5);
///   kdloss::fbkd::spatial_attention(kdloss::host_view<const float>(feat.data(), {2, 8, 6, 5}),
///                                   kdloss::host_view(gs.data(), {2, 6, 5}));
template <class X, class O>
void spatial_attention(const View<X>& x, const View<O>& out, const Exec& exec = {}) {
  spatial_attention(SpatialAttentionArgs<O>{x, out, {}, {}}, Mode::forward, exec);
}

/// grad_x = sign(x) * grad_out[b,h,w] / C: the backward of spatial_attention.
///
///   std::vector<float> feat(2 * 8 * 6 * 5, -1.f), g(2 * 6 * 5, 1.f), grad(feat.size());
///   kdloss::fbkd::spatial_attention_backward(kdloss::host_view<const float>(feat.data(), {2, 8, 6, 5}),
///                                            kdloss::host_view<const float>(g.data(), {2, 6, 5}),
///                                            kdloss::host_view(grad.data(), {2, 8, 6, 5}));
template <class X, class G, class O>
void spatial_attention_backward(const View<X>& x, const View<G>& grad_out, const View<O>& grad_x,
                                const Exec& exec = {}) {
  spatial_attention(SpatialAttentionArgs<O>{x, {}, grad_out, grad_x}, Mode::backward, exec);
}

/// G_s(x) and grad_x (from grad_out) in one call.
///
///   std::vector<float> feat(2 * 8 * 6 * 5, -1.f), g(2 * 6 * 5, 1.f), gs(2 * 6 * 5), grad(feat.size());
///   kdloss::fbkd::spatial_attention_forward_backward(kdloss::host_view<const float>(feat.data(), {2, 8, 6, 5}),
///                                                    kdloss::host_view<const float>(g.data(), {2, 6, 5}),
///                                                    kdloss::host_view(gs.data(), {2, 6, 5}),
///                                                    kdloss::host_view(grad.data(), {2, 8, 6, 5}));
template <class X, class G, class O>
void spatial_attention_forward_backward(const View<X>& x, const View<G>& grad_out, const View<O>& out,
                                        const View<O>& grad_x, const Exec& exec = {}) {
  spatial_attention(SpatialAttentionArgs<O>{x, out, grad_out, grad_x}, Mode::forward_backward, exec);
}

/// The arguments of one channel_attention call (AttentionMapArgs): x [B,C,H,W] (any strides), out
/// and grad_out [B,C] or [B,C,1,1], grad_x [B,C,H,W].
///
///   std::vector<float> feat(2 * 8 * 6 * 5, -1.f), gc(2 * 8);
///   kdloss::fbkd::ChannelAttentionArgs<float> args;
///   args.x = kdloss::host_view<const float>(feat.data(), {2, 8, 6, 5});
///   args.out = kdloss::host_view(gc.data(), {2, 8});
///   kdloss::fbkd::channel_attention(args, kdloss::Mode::forward);
template <class T>
using ChannelAttentionArgs = AttentionMapArgs<T>;

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::fbkd::ChannelAttentionArgs<float> args;   // its views filled in as in ChannelAttentionArgs's example
///   kdloss::fbkd::channel_attention_check(args, kdloss::Mode::forward);
template <class T>
void channel_attention_check(const ChannelAttentionArgs<T>& args, Mode mode) {
  ops::detail::check_pool_entry(detail::kChannelAttentionNames[mode_index(mode)], ops::detail::pool_views(args),
                                ops::detail::PoolAxis::positions, mode);
}

/// Workspace bytes of channel_attention: 0, in every mode.
///
///   kdloss::fbkd::ChannelAttentionArgs<float> args;   // its views filled in as in ChannelAttentionArgs's example
///   std::size_t bytes = kdloss::fbkd::channel_attention_workspace_bytes(args);   // 0
template <class T>
std::size_t channel_attention_workspace_bytes(const ChannelAttentionArgs<T>&) {
  return 0;
}

/// Checks, then runs G_c(x)[b,c] = mean_hw |x[b,c,h,w]| (forward) and/or grad_x = sign(x) * grad_out / (HW).
///
///   kdloss::fbkd::ChannelAttentionArgs<float> args;   // its views filled in as in ChannelAttentionArgs's example
///   kdloss::fbkd::channel_attention(args, kdloss::Mode::forward);
template <class T>
void channel_attention(const ChannelAttentionArgs<T>& args, Mode mode, const Exec& exec = {}) {
  channel_attention_check(args, mode);
  ops::detail::run_pool_entry(ops::detail::pool_views(args), ops::detail::PoolAxis::positions, true, mode, exec);
}

/// G_c(x)[b,c] = mean_hw |x[b,c,h,w]|: FBKD's channel attention map (ops::mean_over_positions, absolute).
/// out is [B,C] or [B,C,1,1].
///
///   std::vector<float> feat(2 * 8 * 6 * 5, -1.f), gc(2 * 8);
///   kdloss::fbkd::channel_attention(kdloss::host_view<const float>(feat.data(), {2, 8, 6, 5}),
///                                   kdloss::host_view(gc.data(), {2, 8}));
template <class X, class O>
void channel_attention(const View<X>& x, const View<O>& out, const Exec& exec = {}) {
  channel_attention(ChannelAttentionArgs<O>{x, out, {}, {}}, Mode::forward, exec);
}

/// grad_x = sign(x) * grad_out[b,c] / (HW): the backward of channel_attention.
///
///   std::vector<float> feat(2 * 8 * 6 * 5, -1.f), g(2 * 8, 1.f), grad(feat.size());
///   kdloss::fbkd::channel_attention_backward(kdloss::host_view<const float>(feat.data(), {2, 8, 6, 5}),
///                                            kdloss::host_view<const float>(g.data(), {2, 8}),
///                                            kdloss::host_view(grad.data(), {2, 8, 6, 5}));
template <class X, class G, class O>
void channel_attention_backward(const View<X>& x, const View<G>& grad_out, const View<O>& grad_x,
                                const Exec& exec = {}) {
  channel_attention(ChannelAttentionArgs<O>{x, {}, grad_out, grad_x}, Mode::backward, exec);
}

/// G_c(x) and grad_x (from grad_out) in one call.
///
///   std::vector<float> feat(2 * 8 * 6 * 5, -1.f), g(2 * 8, 1.f), gc(2 * 8), grad(feat.size());
///   kdloss::fbkd::channel_attention_forward_backward(kdloss::host_view<const float>(feat.data(), {2, 8, 6, 5}),
///                                                    kdloss::host_view<const float>(g.data(), {2, 8}),
///                                                    kdloss::host_view(gc.data(), {2, 8}),
///                                                    kdloss::host_view(grad.data(), {2, 8, 6, 5}));
template <class X, class G, class O>
void channel_attention_forward_backward(const View<X>& x, const View<G>& grad_out, const View<O>& out,
                                        const View<O>& grad_x, const Exec& exec = {}) {
  channel_attention(ChannelAttentionArgs<O>{x, out, grad_out, grad_x}, Mode::forward_backward, exec);
}

// ---------------------------------------------------------------------------------------------
// Attention masks.

/// The arguments of one attention_masks call: a student/teacher pair [B,C,H,W] (any strides), the
/// spatial mask M_s ([B,H,W] or [B,1,H,W]) and the channel mask M_c ([B,C] or [B,C,1,1]) to write
/// (either may be `{}`, not both), and the mask options (form, temperatures).
///
///   const kdloss::Dims shape{2, 8, 6, 5};
///   std::vector<float> s(shape.product(), 0.5f), t(shape.product(), 0.25f), ms(2 * 6 * 5), mc(2 * 8);
///   kdloss::fbkd::AttentionMasksArgs<float> args;
///   args.student = kdloss::host_view<const float>(s.data(), shape);
///   args.teacher = kdloss::host_view<const float>(t.data(), shape);
///   args.mask_spatial = kdloss::host_view(ms.data(), {2, 6, 5});
///   args.mask_channel = kdloss::host_view(mc.data(), {2, 8});
///   args.options = {kdloss::fbkd::MaskForm::paper, 0.1, 0.1};
///   kdloss::fbkd::attention_masks(args, kdloss::Mode::forward);
template <class T>
struct AttentionMasksArgs {
  View<const T> student{};
  View<const T> teacher{};
  View<T> mask_spatial{};
  View<T> mask_channel{};
  MaskOptions options{};
};

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes
/// nothing. The masks are constants of the loss (the reference code detaches them): only
/// Mode::forward exists.
///
///   kdloss::fbkd::AttentionMasksArgs<float> args;   // its views filled in as in AttentionMasksArgs's example
///   kdloss::fbkd::attention_masks_check(args, kdloss::Mode::forward);
template <class T>
void attention_masks_check(const AttentionMasksArgs<T>& args, Mode mode) {
  const char* fn = "kdloss::fbkd::attention_masks";
  ::kdloss::detail::require(mode == Mode::forward, fn, ": mode ", to_string(mode),
                            " is not available: the masks are constants of the loss (the reference code detaches "
                            "them) and have no backward; use Mode::forward");
  const ::kdloss::detail::Checker ck{fn};
  const View<const T>&s = args.student, &t = args.teacher;
  const View<T>&ms = args.mask_spatial, &mc = args.mask_channel;
  detail::check_feature_pair(ck, s, "student", t, "teacher");
  detail::check_mask_options(fn, args.options);
  const bool spatial = present(ms), channel = present(mc);
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
}

/// Workspace bytes of attention_masks on these arguments (the maps and the masks it writes; sized on
/// the host too, where a null workspace is allowed).
///
///   kdloss::fbkd::AttentionMasksArgs<float> args;   // its views filled in as in AttentionMasksArgs's example
///   std::size_t bytes = kdloss::fbkd::attention_masks_workspace_bytes(args);
template <class T>
std::size_t attention_masks_workspace_bytes(const AttentionMasksArgs<T>& args) {
  return detail::masks_workspace_bytes<T>(args.teacher, present(args.mask_spatial), present(args.mask_channel));
}

/// Checks, then writes the requested masks (Mode::forward only).
///
///   kdloss::fbkd::AttentionMasksArgs<float> args;   // its views filled in as in AttentionMasksArgs's example
///   kdloss::fbkd::attention_masks(args, kdloss::Mode::forward);
template <class T>
void attention_masks(const AttentionMasksArgs<T>& args, Mode mode, const Exec& exec = {}) {
  attention_masks_check(args, mode);
  using Acc = acc_t<T>;
  const View<const T>&s = args.student, &t = args.teacher;
  const bool spatial = present(args.mask_spatial), channel = present(args.mask_channel);
  const Device device = t.device;
  const detail::Geometry g = detail::Geometry::of(t.shape);
  ::kdloss::detail::HostScratch scratch;
  detail::Carver carver(::kdloss::detail::resolve_workspace("kdloss::fbkd::attention_masks", device, exec.workspace,
                                                            attention_masks_workspace_bytes(args), scratch));
  const auto m = detail::carve_masks<Acc>(carver, g, spatial, channel, spatial, channel);
  detail::level_sums<Acc>(device, exec.stream, s, t, View<const T>{}, g, m);
  detail::compute_masks<Acc>(device, exec.stream, g, m, args.options);
  // The masks are built in contiguous scratch and copied to the caller's (any-stride) views.
  if (spatial)
    detail::copy_into<Acc>(device, exec.stream, detail::spatial_buffer<const Acc>(m.ms, g, device),
                           ops::detail::as_spatial_map(args.mask_spatial));
  if (channel)
    detail::copy_into<Acc>(device, exec.stream, detail::channel_buffer<const Acc>(m.mc, g, device),
                           ops::detail::as_channel_map(args.mask_channel));
}

/// The spatial mask M_s ([B,H,W] or [B,1,H,W]) and the channel mask M_c ([B,C] or [B,C,1,1]) of a
/// student/teacher pair [B,C,H,W], in the paper's or the reference code's form (options.form), with
/// temperatures t (positions) and t_c (channels). Either output may be left out (`{}`). The masks
/// are constants of the loss (the reference code detaches them): there is no backward.
///
///   const std::int64_t B = 2, C = 8, H = 6, W = 5;
///   std::vector<float> s(B * C * H * W, 0.5f), t(B * C * H * W, 0.25f), ms(B * H * W), mc(B * C);
///   kdloss::fbkd::attention_masks(kdloss::host_view<const float>(s.data(), {B, C, H, W}),
///                                 kdloss::host_view<const float>(t.data(), {B, C, H, W}),
///                                 kdloss::host_view(ms.data(), {B, H, W}), kdloss::host_view(mc.data(), {B, C}),
///                                 {kdloss::fbkd::MaskForm::code, 0.5, 0.5});
///   // on a GPU: size the scratch with attention_masks_workspace_bytes and pass {workspace, stream}
template <class S, class Tt, class O>
void attention_masks(const View<S>& student, const View<Tt>& teacher, const View<O>& mask_spatial,
                     const View<O>& mask_channel, const MaskOptions& options = {}, const Exec& exec = {}) {
  attention_masks(AttentionMasksArgs<O>{student, teacher, mask_spatial, mask_channel, options}, Mode::forward, exec);
}

/// attention_masks_workspace_bytes(args) of a call on this student that writes both masks (enough
/// for either alone).
///
///   std::vector<float> s(2 * 8 * 6 * 5);
///   std::size_t bytes =
///       kdloss::fbkd::attention_masks_workspace_bytes(kdloss::host_view<const float>(s.data(), {2, 8, 6, 5}));
template <class S>
std::size_t attention_masks_workspace_bytes(const View<S>& student) {
  return detail::masks_workspace_bytes<std::remove_cv_t<S>>(student, true, true);
}

} } }  // namespace kdloss::fbkd
