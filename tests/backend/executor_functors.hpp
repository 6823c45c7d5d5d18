// Expression functors shared by the CPU executor tests and their GPU helpers: each is written once
// for Eigen arrays (host backend) and scalars (GPU backend), as the library's loss functors are.
#pragma once
#include "kdloss/config.hpp"

namespace kdloss_test {

/// a * b + a: a value whose sum depends on both operands and on which elements pair up.
struct ProductPlusSelf {
  template <class A, class B>
  KDLOSS_HOST_DEVICE auto operator()(const A& a, const B& b) const {
    return a * b + a;
  }
};

/// Writes o = a - 2 b and returns a * b + a, so one pass both maps and reduces.
struct DiffAndProduct {
  template <class A, class B, class O>
  KDLOSS_HOST_DEVICE auto operator()(const A& a, const B& b, O& o) const {
    o = a - (b + b);
    return a * b + a;
  }
};

}  // namespace kdloss_test
