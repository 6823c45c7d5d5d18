// kdloss/expr/basic.hpp: the element functors every family hands to the dispatch layer's transforms and
// reductions (backend/dispatch.hpp), written once: the identity and zero.
#pragma once
#include "kdloss/config.hpp"
#include "kdloss/core/math.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

/// The identity: a reduction's term as it is (a sum of the values), or a transform's copy (out = in).
struct Identity {
  template <class V>
  KDLOSS_HOST_DEVICE V operator()(const V& v) const {
    return v;
  }
  template <class A, class O>
  KDLOSS_HOST_DEVICE void operator()(const A& a, O& o) const {
    o = a;
  }
};

/// out = 0 without reading it (a requested gradient that is zero; old contents may be anything, NaN included).
struct Zero {
  template <class O>
  KDLOSS_HOST_DEVICE void operator()(O& o) const {
    if constexpr (math::is_scalar_v<O>)
      o = O(0);
    else
      o.setZero();
  }
};

} } }  // namespace kdloss::expr
