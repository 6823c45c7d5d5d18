// kdloss/expr/channel_stats.hpp: plain-data descriptions of the per-channel passes over a [B, C, H, W]
// space (backend/*: channel_moments, channel_cross_sums, channel_affine, for_each_channel). Each channel
// c owns the B*H*W elements x[:, c, :, :]; statistics of a channel are reduced over them in an order
// fixed by the shape alone (never by the thread count), so the bits are reproducible.
//
//   channel_moments:    fin(c, count, mean, m2)            m2 = sum (x - mean)^2 over the channel
//   channel_cross_sums: fin(c, sum g, sum g * (x - center(c)))
//   channel_affine:     out = scale_g[c] * g + scale_x[c] * (x - center[c]) + shift[c]
//   for_each_channel:   f(c) for c in [0, C), on the call's device
//
// fin, center and f are KDLOSS_HOST_DEVICE functors: they run where the statistics live (once per
// channel), so no statistic travels to the host.
#pragma once
#include <cstdint>

#include "kdloss/config.hpp"
#include "kdloss/core/view.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

/// Per-channel coefficients of out[b, c, h, w] = scale_g[c] * g + scale_x[c] * (x - center[c]) + shift[c],
/// arrays of C doubles on the call's device. A null scale drops its term (its input is not read), a
/// null center or shift is 0. Coefficients are double; the host evaluates in double, the GPU in the
/// accumulation type of its elements.
///
///   const double *scale = nullptr, *mean = nullptr, *shift = nullptr;   // C values each, on the device
///   expr::ChannelAffine norm{nullptr, scale, mean, shift};               // y = (x - mean) * scale + shift
struct ChannelAffine {
  const double* scale_g = nullptr;
  const double* scale_x = nullptr;
  const double* center = nullptr;
  const double* shift = nullptr;
};

/// The moments of part of a channel: how many values, their mean, and m2 = sum (x - mean)^2. Parts
/// merge with Chan et al.'s pairwise formula, which keeps a large mean from cancelling the variance;
/// both backends merge in an order fixed by the shape. An empty part (count 0) is the identity.
///
///   expr::Moments<double> all = expr::Moments<double>::merge({4, 1.5, 5.0}, {2, 3.0, 0.5});   // count 6
template <class A>
struct Moments {
  A count, mean, m2;
  KDLOSS_HOST_DEVICE static Moments merge(const Moments& a, const Moments& b) {
    if (b.count == A(0)) return a;
    if (a.count == A(0)) return b;
    const A total = a.count + b.count, delta = b.mean - a.mean;
    return Moments{total, a.mean + delta * (b.count / total), a.m2 + b.m2 + delta * delta * (a.count * b.count / total)};
  }
};

/// A rank-2 [N, C] or rank-3 [B, C, L] view seen as the rank-4 [B, C, H, W] space the channel passes
/// walk ([N, C, 1, 1], [B, C, 1, L]); a rank-4 view as it is.
template <class T>
View<T> as_channel_space(const View<T>& v) {
  if (v.rank() == 2) return v.with(Dims{v.shape[0], v.shape[1], 1, 1}, Dims{v.strides[0], v.strides[1], 0, 0});
  if (v.rank() == 3)
    return v.with(Dims{v.shape[0], v.shape[1], 1, v.shape[2]}, Dims{v.strides[0], v.strides[1], 0, v.strides[2]});
  return v;
}

} } }  // namespace kdloss::expr
