// kdloss/ops/planes.hpp: small building blocks over the (b, c) planes of [B, C, H, W] views, on
// either backend (backend/dispatch_window.hpp): the per-plane min-max normalisation nu and its
// backward, the 2x2 average pool with ceil padding (MS-SSIM's pyramid step), per-plane sums of
// |nu(x) - nu(y)|, an index loop over a host-device functor, and the scalar epilogue that writes
// fin(sum of per-plane values) to a one-element output on the call's device.
#pragma once
#include <cstdint>

#include "kdloss/backend/dispatch_window.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/window_stats.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace ops {

/// offset + scale * total: a finaliser for store_sum (means, loss weights, 1 - x).
struct Affine {
  double scale = 1, offset = 0;
  KDLOSS_HOST_DEVICE double operator()(double total) const { return offset + scale * total; }
};

namespace detail {

using kdloss::detail::avg_pool2x2;
using kdloss::detail::for_each_index;
using kdloss::detail::store_sum;

/// The four strides of a rank-4 view.
template <class T>
void strides4(const View<T>& v, std::int64_t* s) {
  for (int d = 0; d < 4; ++d) s[d] = v.strides[d];
}

/// out[p] = the min-max normalisation of plane p of x and of y ([B, C, H, W] views on one device).
template <class In>
void minmax_norm(Stream stream, const View<const In>& x, const View<const In>& y, expr::MinMaxNorm* out) {
  std::int64_t xs[4], ys[4];
  strides4(x, xs);
  strides4(y, ys);
  const Dims& d = x.shape;
  kdloss::detail::minmax_norm(x.device, stream, d[0], d[1], d[2], d[3], x.data, xs, y.data, ys, out);
}

/// g = d/d nu(v) becomes d/d v, in place (v is input `which` of the normalisation).
template <class In, class G>
void minmax_norm_backward(Stream stream, const View<const In>& v, const View<G>& g, const expr::MinMaxNorm* norm,
                          int which) {
  std::int64_t vs[4], gs[4];
  strides4(v, vs);
  strides4(g, gs);
  const Dims& d = v.shape;
  kdloss::detail::minmax_norm_backward(v.device, stream, d[0], d[1], d[2], d[3], v.data, vs, g.data, gs, norm, which);
}

/// sums[p] = scale * sum over plane p of |nu(x) - nu(y)| (norm null: the identity).
template <class In>
void abs_diff_sums(Stream stream, const View<const In>& x, const View<const In>& y, const expr::MinMaxNorm* norm,
                   double* sums, double scale) {
  std::int64_t xs[4], ys[4];
  strides4(x, xs);
  strides4(y, ys);
  const Dims& d = x.shape;
  kdloss::detail::abs_diff_sums(x.device, stream, d[0], d[1], d[2], d[3], x.data, xs, y.data, ys, norm, sums, scale);
}

}  // namespace detail
} } }  // namespace kdloss::ops
