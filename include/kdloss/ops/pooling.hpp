// kdloss/ops/pooling.hpp: means of a [B,C,H,W] feature over its channels (-> [B,1,H,W]) or over its
// positions (-> [B,C]), plain or of |x| (MeanOptions::absolute), with their backward. See
// docs/ops/pooling.md.
//
// Both follow the entry-point shape of core/entry.hpp: MeanOverChannelsArgs, mean_over_channels_check,
// mean_over_channels_workspace_bytes (0) and mean_over_channels(args, mode, exec), with the thin wrappers
// mean_over_channels(x, out), mean_over_channels_backward(x, grad_out, grad_x) and
// mean_over_channels_forward_backward(...); likewise mean_over_positions.
//
// These are FBKD's attention maps (abs-mean: G_s = mean_c |A|, G_c = mean_hw |A|) and the pooled
// features its reference code feeds to the attention-transfer adapters (plain mean). Forwards run
// as one partial reduction (detail::reduce_into); backwards as one elementwise map that reads the
// upstream gradient as a broadcast input (detail::transform), on either backend. Forwards run through
// detail::pool_sums, which also takes several means of several inputs in one pass (FBKD's total).
#pragma once
#include <cstddef>
#include <cstdint>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/pool.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops::detail {

/// x * inv_n, or |x| * inv_n: one term of a mean (summed by reduce_into).
template <bool Absolute>
struct MeanTerm {
  double inv_n;
  template <class V>
  KDLOSS_HOST_DEVICE auto operator()(const V& x) const {
    using S = math::scalar_t<V>;
    if constexpr (Absolute)
      return math::abs(x) * S(inv_n);
    else
      return x * S(inv_n);
  }
};
/// Input K of a pass's inputs (a pass over several inputs hands every term all of them).
template <int K, class X0, class... X>
KDLOSS_HOST_DEVICE const auto& pick(const X0& x0, const X&... x) {
  if constexpr (K == 0)
    return x0;
  else
    return pick<K - 1>(x...);
}
/// f applied to inputs Ks... of a multi-input pass, e.g. OnInputs<MeanTerm<true>, 1>: |input 1| / n.
template <class F, int... Ks>
struct OnInputs {
  F f;
  template <class... X>
  KDLOSS_HOST_DEVICE auto operator()(const X&... x) const {
    return f(pick<Ks>(x...)...);
  }
};

/// PyTorch's sgn: -1, 0 or 1, and 0 at NaN (abs backward gives no gradient, not NaN, to a NaN input;
/// core's packet sign would give NaN there).
template <class V>
KDLOSS_HOST_DEVICE auto sign_nan_zero(const V& x) {
  if constexpr (math::is_scalar_v<V>)
    return math::sign(x);  // (x > 0) - (x < 0): 0 at NaN
  else
    return (x == x).select(math::sign(x), math::scalar_t<V>(0));
}

/// d mean(|x|) / dx = sgn(x) / n (sgn(0) = sgn(NaN) = 0, PyTorch's abs backward), times the upstream g.
struct AbsMeanBackward {
  double inv_n;
  template <class X, class G, class O>
  KDLOSS_HOST_DEVICE void operator()(const X& x, const G& g, O& out) const {
    using S = math::scalar_t<O>;
    out = sign_nan_zero(x) * g * S(inv_n);
  }
};
/// d mean(x) / dx = 1 / n, times the upstream g (x itself is not read).
struct MeanBackward {
  double inv_n;
  template <class G, class O>
  KDLOSS_HOST_DEVICE void operator()(const G& g, O& out) const {
    using S = math::scalar_t<O>;
    out = g * S(inv_n);
  }
};

/// A spatial map [B,H,W] seen as [B,1,H,W] (a rank-4 view is returned as it is).
template <class T>
View<T> as_spatial_map(const View<T>& v) {
  if (v.rank() != 3) return v;
  return v.with(Dims{v.shape[0], 1, v.shape[1], v.shape[2]}, Dims{v.strides[0], 0, v.strides[1], v.strides[2]});
}
/// A channel vector [B,C] seen as [B,C,1,1] (a rank-4 view is returned as it is).
template <class T>
View<T> as_channel_map(const View<T>& v) {
  if (v.rank() != 2) return v;
  return v.with(Dims{v.shape[0], v.shape[1], 1, 1}, Dims{v.strides[0], v.strides[1], 0, 0});
}
inline Dims spatial_map_shape(const Dims& x) { return Dims{x[0], 1, x[2], x[3]}; }
inline Dims channel_map_shape(const Dims& x) { return Dims{x[0], x[1], 1, 1}; }

/// Accepts [B,1,H,W] or [B,H,W] for the spatial map of x [B,C,H,W].
template <class T>
void check_spatial_map(const kdloss::detail::Checker& ck, const View<T>& v, const char* arg, const Dims& x) {
  const Dims four = spatial_map_shape(x), three{x[0], x[2], x[3]};
  kdloss::detail::require(v.shape == four || v.shape == three, ck.fn, ": argument '", arg, "' has shape ",
                          v.shape.str(), " but expected ", four.str(), " or ", three.str(),
                          " (from a feature of shape ", x.str(), ")");
}
/// Accepts [B,C] or [B,C,1,1] for the channel vector of x [B,C,H,W].
template <class T>
void check_channel_map(const kdloss::detail::Checker& ck, const View<T>& v, const char* arg, const Dims& x) {
  const Dims two{x[0], x[1]}, four = channel_map_shape(x);
  kdloss::detail::require(v.shape == two || v.shape == four, ck.fn, ": argument '", arg, "' has shape ", v.shape.str(),
                          " but expected ", two.str(), " or ", four.str(), " (from a feature of shape ", x.str(), ")");
}

using expr::PoolAxis;

/// Writes out = mean of x (or |x|) over `axis` (out: rank 4, [B,1,H,W] or [B,C,1,1]). No checks.
template <class Acc, class X, class O>
void pool_mean(Device device, Stream stream, const View<const X>& x, const View<O>& out, PoolAxis axis,
               bool absolute) {
  const double inv_n = 1.0 / static_cast<double>(axis == PoolAxis::channels ? x.shape[1] : x.shape[2] * x.shape[3]);
  if (absolute)
    kdloss::detail::pool_sums<Acc>(device, stream, x.shape, std::tuple{x},
                                   std::tuple{expr::PoolTerm<MeanTerm<true>, O>{{inv_n}, out, axis}});
  else
    kdloss::detail::pool_sums<Acc>(device, stream, x.shape, std::tuple{x},
                                   std::tuple{expr::PoolTerm<MeanTerm<false>, O>{{inv_n}, out, axis}});
}
/// Writes grad_x = g (broadcast from its rank-4 map) / n, times sign(x) when absolute. No checks.
template <class Acc, class X, class G, class O>
void pool_mean_backward(Device device, Stream stream, const View<const X>& x, const View<const G>& g,
                        const View<O>& grad_x, std::int64_t n, bool absolute) {
  const double inv_n = 1.0 / static_cast<double>(n);
  if (absolute)
    kdloss::detail::transform<Acc>(device, stream, x.shape, AbsMeanBackward{inv_n}, std::tuple{x, g},
                                   std::tuple{grad_x});
  else
    kdloss::detail::transform<Acc>(device, stream, x.shape, MeanBackward{inv_n}, std::tuple{g}, std::tuple{grad_x});
}

/// The views of one mean entry (MeanArgs, fbkd's attention maps).
template <class T>
struct PoolViews {
  View<const T> x;         // forward reads it; backward reads its shape (and its values when absolute)
  View<T> out;             // written by forward and forward_backward
  View<const T> grad_out;  // dL/dout: backward, forward_backward
  View<T> grad_x;          // written by backward and forward_backward
};

/// Forward: x -> out. Backward: x (its shape; its values when absolute), grad_out -> grad_x.
/// forward_backward: both. Throws before anything is written.
template <class T>
void check_pool_entry(const char* fn, const PoolViews<T>& v, PoolAxis axis, Mode mode) {
  const kdloss::detail::Checker ck{fn};
  ck.not_null(v.x, "x");
  ck.rank(v.x, "x", 4);
  const std::int64_t n = axis == PoolAxis::channels ? v.x.shape[1] : v.x.shape[2] * v.x.shape[3];
  kdloss::detail::require(n > 0, fn, ": argument 'x' with shape ", v.x.shape.str(), " has no ",
                          axis == PoolAxis::channels ? "channels" : "positions", " to average over");
  kdloss::detail::require_backend<T>(fn, v.x.device);
  auto check_map = [&](const auto& m, const char* arg) {
    kdloss::detail::require(present(m), fn, ": argument '", arg, "' is absent but ", to_string(mode), " needs it");
    ck.not_null(m, arg);
    if (axis == PoolAxis::channels)
      check_spatial_map(ck, m, arg, v.x.shape);
    else
      check_channel_map(ck, m, arg, v.x.shape);
    ck.device(m, arg, v.x.device);
  };
  if (writes_value(mode)) {
    check_map(v.out, "out");
    ck.unique(v.out, "out");
    ck.disjoint(v.out, "out", v.x, "x");
  }
  if (writes_gradients(mode)) {
    check_map(v.grad_out, "grad_out");
    kdloss::detail::require(present(v.grad_x), fn, ": argument 'grad_x' is absent but ", to_string(mode),
                            " writes it");
    ck.not_null(v.grad_x, "grad_x");
    ck.shape(v.grad_x, "grad_x", v.x.shape);
    ck.device(v.grad_x, "grad_x", v.x.device);
    ck.unique(v.grad_x, "grad_x");
    ck.disjoint(v.grad_x, "grad_x", v.x, "x");
    ck.disjoint(v.grad_x, "grad_x", v.grad_out, "grad_out");
    if (writes_value(mode)) {
      ck.disjoint(v.grad_x, "grad_x", v.out, "out");
      ck.disjoint(v.out, "out", v.grad_out, "grad_out");
    }
  }
}

/// Runs a checked mean entry in `mode`.
template <class T>
void run_pool_entry(const PoolViews<T>& v, PoolAxis axis, bool absolute, Mode mode, const Exec& exec) {
  const bool channels = axis == PoolAxis::channels;
  if (writes_value(mode))
    pool_mean<acc_t<T>>(v.x.device, exec.stream, v.x, channels ? as_spatial_map(v.out) : as_channel_map(v.out), axis,
                        absolute);
  if (writes_gradients(mode)) {
    const View<const T> g4 = channels ? as_spatial_map(v.grad_out) : as_channel_map(v.grad_out);
    const std::int64_t n = channels ? v.x.shape[1] : v.x.shape[2] * v.x.shape[3];
    pool_mean_backward<acc_t<T>>(v.x.device, exec.stream, v.x, g4, v.grad_x, n, absolute);
  }
}

template <class Args>
PoolViews<typename Args::value_type> pool_views(const Args& a) {
  return {a.x, a.out, a.grad_out, a.grad_x};
}

inline constexpr const char* kMeanOverChannelsNames[3] = {"kdloss::ops::mean_over_channels",
                                                   "kdloss::ops::mean_over_channels_backward",
                                                   "kdloss::ops::mean_over_channels_forward_backward"};
inline constexpr const char* kMeanOverPositionsNames[3] = {"kdloss::ops::mean_over_positions",
                                                    "kdloss::ops::mean_over_positions_backward",
                                                    "kdloss::ops::mean_over_positions_forward_backward"};

}  // namespace ops::detail

namespace ops {

/// Options of the means over channels or positions.
struct MeanOptions {
  bool absolute = false;  // average |x| (FBKD's attention maps) instead of x
};

// ---------------------------------------------------------------------------------------------
// mean_over_channels: out[b,h,w] = mean_c x[b,c,h,w] (or |x|); grad_x = grad_out[b,h,w] / C (times sign(x)).

/// The arguments of one mean_over_channels call (MeanArgs, shared with mean_over_positions): x
/// [B,C,H,W] (any strides), out and grad_out [B,1,H,W] or [B,H,W], grad_x [B,C,H,W]. Leave a view
/// `{}` when the mode does not use it.
///
///   std::vector<float> feat(2 * 8 * 4 * 5, 1.0f), gs(2 * 4 * 5);
///   kdloss::ops::MeanOverChannelsArgs<float> args;
///   args.x = kdloss::host_view<const float>(feat.data(), {2, 8, 4, 5});
///   args.out = kdloss::host_view(gs.data(), {2, 4, 5});
///   args.options.absolute = true;
///   kdloss::ops::mean_over_channels(args, kdloss::Mode::forward);
template <class T>
struct MeanArgs {
  using value_type = T;
  View<const T> x{};         // forward reads it; backward reads its shape (and its values when absolute)
  View<T> out{};             // written by forward and forward_backward
  View<const T> grad_out{};  // dL/dout: backward, forward_backward
  View<T> grad_x{};          // written by backward and forward_backward
  MeanOptions options{};
};
template <class T>
using MeanOverChannelsArgs = MeanArgs<T>;

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::ops::MeanOverChannelsArgs<float> args;   // its views filled in as in MeanOverChannelsArgs's example
///   kdloss::ops::mean_over_channels_check(args, kdloss::Mode::forward);
template <class T>
void mean_over_channels_check(const MeanOverChannelsArgs<T>& args, Mode mode) {
  detail::check_pool_entry(detail::kMeanOverChannelsNames[mode_index(mode)], detail::pool_views(args),
                           detail::PoolAxis::channels, mode);
}

/// Workspace bytes of mean_over_channels: 0 (one partial reduction or one map), in every mode.
///
///   kdloss::ops::MeanOverChannelsArgs<float> args;   // its views filled in as in MeanOverChannelsArgs's example
///   std::size_t bytes = kdloss::ops::mean_over_channels_workspace_bytes(args);   // 0
template <class T>
std::size_t mean_over_channels_workspace_bytes(const MeanOverChannelsArgs<T>&) {
  return 0;
}

/// Checks, then runs mean_over_channels in `mode`.
///
///   kdloss::ops::MeanOverChannelsArgs<float> args;   // its views filled in as in MeanOverChannelsArgs's example
///   kdloss::ops::mean_over_channels(args, kdloss::Mode::forward);
template <class T>
void mean_over_channels(const MeanOverChannelsArgs<T>& args, Mode mode, const Exec& exec = {}) {
  mean_over_channels_check(args, mode);
  detail::run_pool_entry(detail::pool_views(args), detail::PoolAxis::channels, args.options.absolute, mode, exec);
}

/// out[b,h,w] = mean over c of x[b,c,h,w], or of |x[b,c,h,w]| with options.absolute (FBKD's spatial
/// attention map G_s). x is [B,C,H,W] with any strides; out is [B,1,H,W] or [B,H,W].
///
///   std::vector<float> feat(2 * 8 * 4 * 5, 1.0f), gs(2 * 4 * 5);
///   kdloss::ops::mean_over_channels(kdloss::host_view<const float>(feat.data(), {2, 8, 4, 5}),
///                                   kdloss::host_view(gs.data(), {2, 4, 5}), {/*absolute=*/true});
template <class X, class O>
void mean_over_channels(const View<X>& x, const View<O>& out, const MeanOptions& options = {}, const Exec& exec = {}) {
  mean_over_channels(MeanOverChannelsArgs<O>{x, out, {}, {}, options}, Mode::forward, exec);
}

/// grad_x[b,c,h,w] = grad_out[b,h,w] / C, times sign(x[b,c,h,w]) with options.absolute (sign(0) =
/// sign(NaN) = 0, PyTorch's abs backward).
///
///   std::vector<float> x(2 * 8 * 4 * 5, 1.0f), g_gs(2 * 4 * 5, 1.0f), grad_x(x.size());
///   kdloss::ops::mean_over_channels_backward(kdloss::host_view<const float>(x.data(), {2, 8, 4, 5}),
///                                            kdloss::host_view<const float>(g_gs.data(), {2, 4, 5}),
///                                            kdloss::host_view(grad_x.data(), {2, 8, 4, 5}), {true});
template <class X, class G, class O>
void mean_over_channels_backward(const View<X>& x, const View<G>& grad_out, const View<O>& grad_x,
                                 const MeanOptions& options = {}, const Exec& exec = {}) {
  mean_over_channels(MeanOverChannelsArgs<O>{x, {}, grad_out, grad_x, options}, Mode::backward, exec);
}

/// out and grad_x (from grad_out) in one call.
///
///   std::vector<float> x(2 * 8 * 4 * 5, 1.0f), g(2 * 4 * 5, 1.0f), out(2 * 4 * 5), grad_x(x.size());
///   kdloss::ops::mean_over_channels_forward_backward(kdloss::host_view<const float>(x.data(), {2, 8, 4, 5}),
///                                                    kdloss::host_view<const float>(g.data(), {2, 4, 5}),
///                                                    kdloss::host_view(out.data(), {2, 4, 5}),
///                                                    kdloss::host_view(grad_x.data(), {2, 8, 4, 5}));
template <class X, class G, class O>
void mean_over_channels_forward_backward(const View<X>& x, const View<G>& grad_out, const View<O>& out,
                                         const View<O>& grad_x, const MeanOptions& options = {},
                                         const Exec& exec = {}) {
  mean_over_channels(MeanOverChannelsArgs<O>{x, out, grad_out, grad_x, options}, Mode::forward_backward, exec);
}

// ---------------------------------------------------------------------------------------------
// mean_over_positions: out[b,c] = mean_hw x[b,c,h,w] (or |x|); grad_x = grad_out[b,c] / (HW) (times sign(x)).

/// The arguments of one mean_over_positions call (MeanArgs, as mean_over_channels'): x [B,C,H,W]
/// (any strides), out and grad_out [B,C] or [B,C,1,1], grad_x [B,C,H,W].
///
///   std::vector<float> feat(2 * 8 * 4 * 5, 1.0f), pooled(2 * 8);
///   kdloss::ops::MeanOverPositionsArgs<float> args;
///   args.x = kdloss::host_view<const float>(feat.data(), {2, 8, 4, 5});
///   args.out = kdloss::host_view(pooled.data(), {2, 8});
///   kdloss::ops::mean_over_positions(args, kdloss::Mode::forward);
template <class T>
using MeanOverPositionsArgs = MeanArgs<T>;

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::ops::MeanOverPositionsArgs<float> args;   // its views filled in as in MeanOverPositionsArgs's example
///   kdloss::ops::mean_over_positions_check(args, kdloss::Mode::forward);
template <class T>
void mean_over_positions_check(const MeanOverPositionsArgs<T>& args, Mode mode) {
  detail::check_pool_entry(detail::kMeanOverPositionsNames[mode_index(mode)], detail::pool_views(args),
                           detail::PoolAxis::positions, mode);
}

/// Workspace bytes of mean_over_positions: 0, in every mode.
///
///   kdloss::ops::MeanOverPositionsArgs<float> args;   // its views filled in as in MeanOverPositionsArgs's example
///   std::size_t bytes = kdloss::ops::mean_over_positions_workspace_bytes(args);   // 0
template <class T>
std::size_t mean_over_positions_workspace_bytes(const MeanOverPositionsArgs<T>&) {
  return 0;
}

/// Checks, then runs mean_over_positions in `mode`.
///
///   kdloss::ops::MeanOverPositionsArgs<float> args;   // its views filled in as in MeanOverPositionsArgs's example
///   kdloss::ops::mean_over_positions(args, kdloss::Mode::forward);
template <class T>
void mean_over_positions(const MeanOverPositionsArgs<T>& args, Mode mode, const Exec& exec = {}) {
  mean_over_positions_check(args, mode);
  detail::run_pool_entry(detail::pool_views(args), detail::PoolAxis::positions, args.options.absolute, mode, exec);
}

/// out[b,c] = mean over (h,w) of x[b,c,h,w], or of |x| with options.absolute (FBKD's channel
/// attention map G_c; the plain mean is the reference code's pooled feature). out is [B,C] or [B,C,1,1].
///
///   std::vector<float> feat(2 * 8 * 4 * 5, 1.0f), gc(2 * 8);
///   kdloss::ops::mean_over_positions(kdloss::host_view<const float>(feat.data(), {2, 8, 4, 5}),
///                                    kdloss::host_view(gc.data(), {2, 8}), {/*absolute=*/true});
template <class X, class O>
void mean_over_positions(const View<X>& x, const View<O>& out, const MeanOptions& options = {},
                         const Exec& exec = {}) {
  mean_over_positions(MeanOverPositionsArgs<O>{x, out, {}, {}, options}, Mode::forward, exec);
}

/// grad_x[b,c,h,w] = grad_out[b,c] / (H W), times sign(x[b,c,h,w]) with options.absolute.
///
///   std::vector<float> x(2 * 8 * 4 * 5, 1.0f), g_gc(2 * 8, 1.0f), grad_x(x.size());
///   kdloss::ops::mean_over_positions_backward(kdloss::host_view<const float>(x.data(), {2, 8, 4, 5}),
///                                             kdloss::host_view<const float>(g_gc.data(), {2, 8}),
///                                             kdloss::host_view(grad_x.data(), {2, 8, 4, 5}));
template <class X, class G, class O>
void mean_over_positions_backward(const View<X>& x, const View<G>& grad_out, const View<O>& grad_x,
                                  const MeanOptions& options = {}, const Exec& exec = {}) {
  mean_over_positions(MeanOverPositionsArgs<O>{x, {}, grad_out, grad_x, options}, Mode::backward, exec);
}

/// out and grad_x (from grad_out) in one call.
///
///   std::vector<float> x(2 * 8 * 4 * 5, 1.0f), g(2 * 8, 1.0f), out(2 * 8), grad_x(x.size());
///   kdloss::ops::mean_over_positions_forward_backward(kdloss::host_view<const float>(x.data(), {2, 8, 4, 5}),
///                                                     kdloss::host_view<const float>(g.data(), {2, 8}),
///                                                     kdloss::host_view(out.data(), {2, 8}),
///                                                     kdloss::host_view(grad_x.data(), {2, 8, 4, 5}));
template <class X, class G, class O>
void mean_over_positions_forward_backward(const View<X>& x, const View<G>& grad_out, const View<O>& out,
                                          const View<O>& grad_x, const MeanOptions& options = {},
                                          const Exec& exec = {}) {
  mean_over_positions(MeanOverPositionsArgs<O>{x, out, grad_out, grad_x, options}, Mode::forward_backward, exec);
}

}  // namespace ops
} }  // namespace kdloss
