// Shared by the feature tests of non-finite inputs: inputs with NaN and +-inf placed in the student,
// the teacher or both, and a check that a result propagates them as PyTorch does.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace kdloss_test {

/// got[i] is NaN where want[i] is NaN, the same infinity where want[i] is infinite, and close to
/// want[i] elsewhere (relative `rel`, absolute `abs_tol`).
template <class A>
void check_same_propagation(const std::vector<A>& got, const std::vector<double>& want, double rel, double abs_tol,
                            const std::string& what) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]), w = want[i];
    const bool ok = std::isnan(w)   ? std::isnan(g)
                    : std::isinf(w) ? g == w
                                    : std::isfinite(g) && std::fabs(g - w) <= abs_tol + rel * std::fabs(w);
    if (!ok) {
      FAIL_CHECK(what << "[" << i << "] = " << g << " but PyTorch gives " << w);
      return;
    }
  }
}

/// The four results of one input (forward value, backward gradient, fused value and gradient)
/// against PyTorch's.
struct Expected {
  std::vector<double> value, grad, fused_grad;
};
template <class A>
void check_modes(const std::vector<A>& value, const std::vector<A>& grad, const std::vector<A>& fused_value,
                 const std::vector<A>& fused_grad, const Expected& want, double rel, double abs_tol) {
  check_same_propagation(value, want.value, rel, abs_tol, "forward value");
  check_same_propagation(grad, want.grad, rel, abs_tol, "backward grad");
  check_same_propagation(fused_value, want.value, rel, abs_tol, "fused value");
  check_same_propagation(fused_grad, want.fused_grad, rel, abs_tol, "fused grad");
}

/// One placement of non-finite values: which input gets which value at which positions.
struct NonFiniteCase {
  const char* name;
  double student_value;  // placed in the student at `positions` (0: leave the student alone)
  double teacher_value;  // placed in the teacher at `positions` (0: leave the teacher alone)
  std::vector<std::size_t> positions;
};

/// NaN, +inf and -inf in the student, the teacher and both, at two positions (one of them at index
/// 0, one inside); both +inf is inf - inf = NaN for the pointwise losses.
inline std::vector<NonFiniteCase> nonfinite_cases(std::size_t n) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const std::vector<std::size_t> at{0, n / 2 + 1};
  return {{"student NaN", nan, 0, at},       {"teacher NaN", 0, nan, at},      {"student +inf", inf, 0, at},
          {"student -inf", -inf, 0, at},     {"teacher +inf", 0, inf, at},     {"teacher -inf", 0, -inf, at},
          {"both +inf", inf, inf, at},       {"both -inf", -inf, -inf, at},    {"student +inf, teacher -inf", inf, -inf, at},
          {"student NaN, teacher +inf", nan, inf, at}};
}
inline void place(const NonFiniteCase& c, std::vector<double>& s, std::vector<double>& t) {
  for (std::size_t i : c.positions) {
    if (c.student_value != 0) s[i] = c.student_value;
    if (c.teacher_value != 0) t[i] = c.teacher_value;
  }
}

}  // namespace kdloss_test
