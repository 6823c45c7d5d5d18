// kdloss/expr/pooled_projection.hpp: the plain-data description of the backward through a max-pooled 1x1
// projection, pool_s(W x + b): the non-local block's g and φ with a pool factor s > 1 (ops/non_local.hpp).
// The host evaluates it fused (backend/cpu/pooled_projection.hpp): the unpooled gradient is zero except at
// each window's argmax, one position in s^2 per channel, so it gathers x at the argmaxes instead of running
// the pooling's backward and two dense products over B C H W values that are mostly zero (at FBKD's P2,
// s = 8: 64 times less work). The GPU runs the pooling's and the projection's backward as they are.
#pragma once
#include <cstdint>

#include "kdloss/config.hpp"
#include "kdloss/core/view.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

/// grad_x += W^T up, grad_weight = beta grad_weight + up x^T, grad_bias = beta grad_bias + sum up, where
/// up [B, m, H, W] is grad_y [B, m, Hp, Wp] routed to the argmax of each s x s window (zero elsewhere).
/// Absent gradients are not computed; beta 0 never reads the old parameter gradients.
///
///   std::vector<float> xs(2 * 64 * 80 * 80), gys(2 * 16 * 10 * 10), ws(16 * 64), gxs(xs.size());
///   std::vector<unsigned char> argmax(gys.size());            // from the forward's max pooling
///   expr::PooledProjectionBackPass<float> P;
///   P.x = kdloss::host_view<const float>(xs.data(), {2, 64, 80, 80});
///   P.grad_y = kdloss::host_view<const float>(gys.data(), {2, 16, 10, 10});
///   P.weight = kdloss::host_view<const float>(ws.data(), {16, 64});
///   P.argmax = argmax.data(), P.stride = 8, P.grad_x = kdloss::host_view(gxs.data(), {2, 64, 80, 80});
template <class T>
struct PooledProjectionBackPass {
  View<const T> x;               // [B, C, H, W], the projection's input
  View<const T> grad_y;          // [B, m, Hp, Wp], the pooled map's gradient (Hp = H / s, Wp = W / s)
  View<const T> weight;          // [m, C]
  const void* argmax = nullptr;  // window-local argmax k = kh s + kw of every pooled element, [B, m, Hp, Wp]
  bool narrow_argmax = true;     // argmax holds uint8 (else int32) indices
  std::int64_t stride = 1;       // s
  View<T> grad_x;                // [B, C, H, W], accumulated into
  View<T> grad_weight;           // [m, C]
  View<T> grad_bias;             // [m]
  double param_beta = 0;         // beta of grad_weight and grad_bias
};

} } }  // namespace kdloss::expr
