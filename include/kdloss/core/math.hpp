// kdloss/core/math.hpp: scalar math written once for host and device, plus the same names over Eigen arrays.
//
// Loss functors are templates over a value type V: a plain float/double on the GPU (and in scalar
// host loops), or an Eigen array expression on the CPU, where the same formula is vectorised.
#pragma once
#include <cmath>
#include <type_traits>

#include "kdloss/config.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {

/// Accumulation type: at least fp32 (half and bfloat16 inputs accumulate in float).
template <class T>
struct accumulate_type {
  using type = float;
};
template <>
struct accumulate_type<double> {
  using type = double;
};
template <class T>
using acc_t = typename accumulate_type<std::remove_cv_t<T>>::type;

namespace math {

template <class V>
inline constexpr bool is_scalar_v = std::is_arithmetic_v<std::remove_cv_t<std::remove_reference_t<V>>>;

namespace detail {
template <class V, bool Scalar = is_scalar_v<V>>
struct scalar_of {
  using type = std::remove_cv_t<std::remove_reference_t<V>>;
};
template <class V>
struct scalar_of<V, false> {
  using type = typename std::remove_cv_t<std::remove_reference_t<V>>::Scalar;
};
}  // namespace detail
/// The element type of a value: V itself for scalars, V::Scalar for Eigen arrays.
template <class V>
using scalar_t = typename detail::scalar_of<V>::type;

template <class V>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE auto square(const V& x) {
  if constexpr (is_scalar_v<V>) return x * x;
  else return x.square();
}
template <class V>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE auto abs(const V& x) {
  if constexpr (is_scalar_v<V>) return x < V(0) ? -x : x;
  else return x.abs();
}
/// sign(0) = 0, as PyTorch's abs backward and l1 gradient use.
template <class V>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE auto sign(const V& x) {
  if constexpr (is_scalar_v<V>) {
    return V((x > V(0)) - (x < V(0)));
  } else {
    // Eigen 3.4 does not vectorise sign(): clamp(x * k * k, -1, 1), with k = 2^100 (float) or 2^600
    // (double), sends every nonzero x (subnormals included) to exactly +-1 and 0 to 0 in vector min/max.
    using S = scalar_t<V>;
    const S k = S(sizeof(S) == sizeof(float) ? 0x1p100 : 0x1p600);
    return ((x * k) * k).max(S(-1)).min(S(1));
  }
}
template <class V>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE auto sqrt(const V& x) {
  if constexpr (is_scalar_v<V>) {
    using std::sqrt;
    return sqrt(x);
  } else {
    return x.sqrt();
  }
}
template <class V>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE auto exp(const V& x) {
  if constexpr (is_scalar_v<V>) {
    using std::exp;
    return exp(x);
  } else {
    return x.exp();
  }
}
template <class V>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE auto log(const V& x) {
  if constexpr (is_scalar_v<V>) {
    using std::log;
    return log(x);
  } else {
    return x.log();
  }
}
template <class A, class B>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE auto min(const A& a, const B& b) {
  if constexpr (is_scalar_v<A> && is_scalar_v<B>) return a < b ? a : b;
  else if constexpr (is_scalar_v<A>) return b.min(a);
  else return a.min(b);
}
template <class A, class B>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE auto max(const A& a, const B& b) {
  if constexpr (is_scalar_v<A> && is_scalar_v<B>) return a < b ? b : a;
  else if constexpr (is_scalar_v<A>) return b.max(a);
  else return a.max(b);
}
/// cond ? a : b, elementwise. For arrays at least one of a, b must be an array.
template <class C, class A, class B>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE auto select(const C& cond, const A& a, const B& b) {
  if constexpr (std::is_same_v<std::remove_cv_t<C>, bool>) return cond ? a : b;
  else return cond.select(a, b);
}

}  // namespace math
} }  // namespace kdloss
