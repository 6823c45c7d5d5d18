// kdloss/expr/pool.hpp: the description of one output of a pooling pass (backend/*: pool_sums):
// a sum of f(inputs...) over the channels or over the positions of a [B,C,H,W] space.
#pragma once
#include "kdloss/config.hpp"
#include "kdloss/core/view.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

/// The axes a pooled output sums over: channels ([B,C,H,W] -> [B,1,H,W]) or positions (-> [B,C,1,1]).
enum class PoolAxis { channels, positions };

/// out = sum over `axis` of f(inputs...). `out` is rank 4 with extent 1 on the summed axes; an
/// output left null is not computed (a pass can carry terms a configuration switches off).
///
///   expr::PoolTerm<MeanTerm<true>, float> gs{{1.0 / C}, spatial_map_view, expr::PoolAxis::channels};
template <class F, class O>
struct PoolTerm {
  F f;
  View<O> out;
  PoolAxis axis;
};

} } }  // namespace kdloss::expr
