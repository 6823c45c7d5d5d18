// kdloss/ops/norm.hpp: the pieces of a Frobenius norm ||a - b||_F (torch.dist) that the feature and FBKD
// families share: the squared-difference term reduced by backend/dispatch's transform_reduce, the
// square-root finaliser that runs on the call's device, the upstream-gradient reader of a reduced loss,
// and the backward scale with PyTorch's exact-zero rule. docs/ops/norm.md has the formulas.
#pragma once
#include "kdloss/config.hpp"
#include "kdloss/core/math.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace ops {

/// (a - b)^2: the terms of ||a - b||_F^2.
struct SquaredDifference {
  template <class A, class B>
  KDLOSS_HOST_DEVICE auto operator()(const A& a, const B& b) const {
    return math::square(a - b);
  }
};

/// Finaliser of the reduced sum of squares: the norm (NaN and inf pass through). When `keep` is set it
/// also stores the norm there in double, on the call's device: a fused call writes the value to its
/// output (whose type may be half) and keeps the full-precision norm for its gradient pass.
struct SqrtFinal {
  double* keep = nullptr;
  KDLOSS_HOST_DEVICE double operator()(double total) const {
    const double norm = math::sqrt(total);
    if (keep) *keep = norm;
    return norm;
  }
};

/// The upstream gradient of a reduced loss, read on the call's device inside the gradient pass; absent
/// (forward_backward: the gradient of the value itself) it is 1.
template <class T>
struct ScalarUpstream {
  const T* ptr = nullptr;
  template <class Acc>
  KDLOSS_HOST_DEVICE Acc get() const {
    return ptr ? static_cast<Acc>(*ptr) : Acc(1);
  }
};

/// d(weight * ||x||)/dx = x * (weight * upstream / norm), with upstream * 0 where the norm is exactly 0,
/// as PyTorch's norm backward masks norm == 0: only an exact zero is masked (a NaN upstream stays NaN
/// there), a NaN norm gives NaN everywhere and an infinite norm gives 0 (beside NaN at the infinite
/// entries), as autograd does. The norm is the double the finaliser kept; weight / norm is formed in
/// double.
template <class A>
KDLOSS_HOST_DEVICE A norm_backward_scale(double norm, A upstream, double weight = 1.0) {
  return norm == 0 ? upstream * A(0) : A(weight / norm) * upstream;
}

} } }  // namespace kdloss::ops
