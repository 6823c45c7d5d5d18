// ops::cosine_relation: packed per-image cosine relations against the double reference, central
// differences, the zero-row rule (F.normalize's: relation 0, finite gradient), strided input, bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kdloss/ops/cosine_relation.hpp"
#include "reference/losses/drkd_instance_paper.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {
/// sum(w * R(x)) and its gradient by the op.
double weighted(const std::vector<double>& x, std::int64_t D, const std::vector<std::int64_t>& off,
                const std::vector<double>& w) {
  const auto r = kdloss_ref::losses::cosine_relation(x, D, off);
  double s = 0;
  for (std::size_t e = 0; e < r.size(); ++e) s += w[e] * r[e];
  return s;
}
}  // namespace

TEST_CASE_TEMPLATE("ops::cosine_relation: values and gradients match the reference", T, float, double) {
  const std::vector<std::int64_t> off{0, 3, 3, 5, 6};  // 3, 0, 2 and 1 rows
  const std::int64_t n = 6, D = 4, P = 9 + 4 + 1;
  auto x = random_vector<double>(n * D, 21);
  for (std::int64_t k = 0; k < D; ++k) x[4 * D + k] = 0.0;  // a zero row
  const auto w = random_vector<double>(P, 22);
  std::vector<T> xt(x.begin(), x.end()), r(P, T(-7)), wt(w.begin(), w.end()), g(n * D, T(-7));
  ops::CosineRelationArgs<T> a;
  a.x = host_view<const T>(xt.data(), {n, D});
  a.segments.offsets = host_view<const std::int64_t>(off.data(), {5});
  a.out = host_view(r.data(), {P});
  a.grad_out = host_view<const T>(wt.data(), {P});
  a.grad_x = host_view(g.data(), {n, D});
  ops::cosine_relation(a, Mode::forward_backward);
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  check_close(r, kdloss_ref::losses::cosine_relation(x, D, off), tol, tol);
  CHECK(r[10] == T(0));  // row 4 (zero) against row 3, row 3 against it, and itself: 0
  CHECK(r[11] == T(0));
  CHECK(r[12] == T(0));
  CHECK(kdloss_test::all_finite(g));
  if constexpr (std::is_same_v<T, double>) {
    // the zero row's gradient is dN / eps (huge but finite); compare the other rows with central differences
    const auto f = [&](const std::vector<double>& v) { return weighted(v, D, off, w); };
    auto num = kdloss_test::numeric_gradient(x, f);
    std::vector<double> got(g.begin(), g.end());
    for (std::int64_t k = 0; k < D; ++k) got[4 * D + k] = num[4 * D + k] = 0.0;
    check_close(got, num, 1e-6, 1e-9, "central differences");
  }
}

TEST_CASE("ops::cosine_relation: strided input equals its copy; bad input writes nothing") {
  const std::vector<std::int64_t> off{0, 2, 5};
  const std::int64_t n = 5, D = 3;
  const auto x = random_vector<double>(n * D, 23);
  const auto xs = kdloss_test::relayout(x, Dims{n, D}, {1, 0}, 1);
  std::vector<double> r1(13), r2(13);
  ops::CosineRelationArgs<double> a;
  a.x = View<const double>(xs.view);
  a.segments.offsets = host_view<const std::int64_t>(off.data(), {3});
  a.out = host_view(r1.data(), {13});
  ops::cosine_relation(a, Mode::forward);
  a.x = host_view<const double>(x.data(), {n, D});
  a.out = host_view(r2.data(), {13});
  ops::cosine_relation(a, Mode::forward);
  CHECK(r1 == r2);
  std::vector<double> bad(12, -7.0);
  a.out = host_view(bad.data(), {12});
  kdloss_test::expect_error([&] { ops::cosine_relation(a, Mode::forward); },
                            "argument 'out' has shape [12] but expected [13]", [&] {
                              for (double v : bad) CHECK(v == -7.0);
                            });
}
