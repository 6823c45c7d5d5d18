// kdloss/ops/pooling.hpp: means of a [B,C,H,W] feature over its channels (-> [B,1,H,W]) or over its
// positions (-> [B,C]), plain or of |x|, with their backward.
//
// These are FBKD's attention maps (abs-mean: G_s = mean_c |A|, G_c = mean_hw |A|) and the pooled
// features its reference code feeds to the attention-transfer adapters (plain mean). Forwards run
// as one partial reduction (detail::reduce_into); backwards as one elementwise map that reads the
// upstream gradient as a broadcast input (detail::transform), on either backend. Forwards run through
// detail::pool_sums, which also takes several means of several inputs in one pass (FBKD's total).
#pragma once
#include <cstdint>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/pool.hpp"

namespace kdloss {
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

/// d mean(|x|) / dx = sign(x) / n (sign(0) = 0, PyTorch's abs backward), times the upstream g.
struct AbsMeanBackward {
  double inv_n;
  template <class X, class G, class O>
  KDLOSS_HOST_DEVICE void operator()(const X& x, const G& g, O& out) const {
    using S = math::scalar_t<O>;
    out = math::sign(x) * g * S(inv_n);
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

template <class T, class O>
void check_pool(const kdloss::detail::Checker& ck, const View<const T>& x, PoolAxis axis) {
  ck.not_null(x, "x");
  ck.rank(x, "x", 4);
  const std::int64_t n = axis == PoolAxis::channels ? x.shape[1] : x.shape[2] * x.shape[3];
  kdloss::detail::require(n > 0, ck.fn, ": argument 'x' with shape ", x.shape.str(), " has no ",
                          axis == PoolAxis::channels ? "channels" : "positions", " to average over");
  kdloss::detail::require_backend<O>(ck.fn, x.device);
}
template <class T, class O>
void check_map(const kdloss::detail::Checker& ck, const View<O>& v, const char* arg, const View<const T>& x,
               PoolAxis axis) {
  ck.not_null(v, arg);
  if (axis == PoolAxis::channels)
    check_spatial_map(ck, v, arg, x.shape);
  else
    check_channel_map(ck, v, arg, x.shape);
  ck.device(v, arg, x.device);
}

template <class T>
void pool_forward(const char* fn, const View<const T>& x, const View<T>& out, PoolAxis axis, bool absolute,
                  const Exec& exec) {
  const kdloss::detail::Checker ck{fn};
  check_pool<T, T>(ck, x, axis);
  check_map(ck, out, "out", x, axis);
  ck.unique(out, "out");
  ck.disjoint(out, "out", x, "x");
  const bool channels = axis == PoolAxis::channels;
  const View<T> out4 = channels ? as_spatial_map(out) : as_channel_map(out);
  pool_mean<acc_t<T>>(x.device, exec.stream, x, out4, axis, absolute);
}

template <class T>
void pool_backward(const char* fn, const View<const T>& x, const View<const T>& grad_out, const View<T>& grad_x,
                   PoolAxis axis, bool absolute, const Exec& exec) {
  const kdloss::detail::Checker ck{fn};
  check_pool<T, T>(ck, x, axis);
  check_map(ck, grad_out, "grad_out", x, axis);
  ck.not_null(grad_x, "grad_x");
  ck.shape(grad_x, "grad_x", x.shape);
  ck.device(grad_x, "grad_x", x.device);
  ck.unique(grad_x, "grad_x");
  ck.disjoint(grad_x, "grad_x", x, "x");
  ck.disjoint(grad_x, "grad_x", grad_out, "grad_out");
  const bool channels = axis == PoolAxis::channels;
  const View<const T> g4 = channels ? as_spatial_map(grad_out) : as_channel_map(grad_out);
  const std::int64_t n = channels ? x.shape[1] : x.shape[2] * x.shape[3];
  pool_mean_backward<acc_t<T>>(x.device, exec.stream, x, g4, grad_x, n, absolute);
}

}  // namespace ops::detail

namespace ops {

/// out[b,h,w] = mean over c of x[b,c,h,w], or of |x[b,c,h,w]| when `absolute`
/// (FBKD's spatial attention map G_s). x is [B,C,H,W] with any strides; out is [B,1,H,W] or [B,H,W].
///
///   std::vector<float> gs(2 * 100 * 167);
///   kdloss::ops::mean_over_channels(kdloss::host_view(feat, {2, 256, 100, 167}),
///                                   kdloss::host_view(gs.data(), {2, 100, 167}), /*absolute=*/true);
template <class X, class O>
void mean_over_channels(const View<X>& x, const View<O>& out, bool absolute = false, const Exec& exec = {}) {
  detail::pool_forward<O>("kdloss::ops::mean_over_channels", x, out, detail::PoolAxis::channels, absolute, exec);
}

/// grad_x[b,c,h,w] = grad_out[b,h,w] / C, times sign(x[b,c,h,w]) when `absolute` (sign(0) = 0).
///
///   kdloss::ops::mean_over_channels_backward(x, kdloss::host_view(g_gs, {2, 100, 167}), grad_x, true);
template <class X, class G, class O>
void mean_over_channels_backward(const View<X>& x, const View<G>& grad_out, const View<O>& grad_x,
                                 bool absolute = false, const Exec& exec = {}) {
  detail::pool_backward<O>("kdloss::ops::mean_over_channels_backward", x, grad_out, grad_x, detail::PoolAxis::channels,
                           absolute, exec);
}

/// out[b,c] = mean over (h,w) of x[b,c,h,w], or of |x| when `absolute` (FBKD's channel attention map
/// G_c; the plain mean is the reference code's pooled feature). out is [B,C] or [B,C,1,1].
///
///   std::vector<float> gc(2 * 256);
///   kdloss::ops::mean_over_positions(kdloss::host_view(feat, {2, 256, 100, 167}),
///                                    kdloss::host_view(gc.data(), {2, 256}), /*absolute=*/true);
template <class X, class O>
void mean_over_positions(const View<X>& x, const View<O>& out, bool absolute = false, const Exec& exec = {}) {
  detail::pool_forward<O>("kdloss::ops::mean_over_positions", x, out, detail::PoolAxis::positions, absolute, exec);
}

/// grad_x[b,c,h,w] = grad_out[b,c] / (H W), times sign(x[b,c,h,w]) when `absolute`.
///
///   kdloss::ops::mean_over_positions_backward(x, kdloss::host_view(g_gc, {2, 256}), grad_x);
template <class X, class G, class O>
void mean_over_positions_backward(const View<X>& x, const View<G>& grad_out, const View<O>& grad_x,
                                  bool absolute = false, const Exec& exec = {}) {
  detail::pool_backward<O>("kdloss::ops::mean_over_positions_backward", x, grad_out, grad_x,
                           detail::PoolAxis::positions, absolute, exec);
}

}  // namespace ops
}  // namespace kdloss
