// ops::distance: per-item (ragged segments, dim-0 items) and whole-tensor Frobenius distances against
// the double reference, central differences, strided inputs, the zero-distance and NaN rules, bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kdloss/ops/distance.hpp"
#include "reference/ops/distance.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

struct Case {
  std::vector<std::int64_t> offsets{0, 2, 2, 5};  // items of 2, 0 and 3 rows
  std::int64_t rows() const { return offsets.back(); }
  Dims shape() const { return Dims{rows(), 3, 2}; }
  std::int64_t per_row() const { return 6; }
};

}  // namespace

TEST_CASE_TEMPLATE("ops::distance: ragged items, values and gradients match the reference", T, float, double) {
  const Case c;
  const auto a = random_vector<double>(c.rows() * 6, 1), b = random_vector<double>(c.rows() * 6, 2);
  const auto up = std::vector<double>{0.5, -2.0, 1.5};
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  for (double weight : {1.0, 4e-3}) {
    const kdloss_ref::ops::Distance ref{c.offsets, c.per_row(), weight};
    auto at = cast<T>(a), bt = cast<T>(b);
    std::vector<T> out(3, T(-7)), ga(a.size(), T(-7)), gb(a.size(), T(-7)), gout = cast<T>(up);
    ops::DistanceArgs<T> args;
    args.a = host_view<const T>(at.data(), c.shape());
    args.b = host_view<const T>(bt.data(), c.shape());
    args.segments.offsets = host_view<const std::int64_t>(c.offsets.data(), {4});
    args.options.weight = weight;
    args.out = host_view(out.data(), {3});
    ops::distance(args, Mode::forward);
    check_close(out, ref.values(a, b), tol);
    CHECK(out[1] == T(0));  // the empty item
    // backward reads grad_out per item
    ops::DistanceArgs<T> bw = args;
    bw.out = {};
    bw.grad_out = host_view<const T>(gout.data(), {3});
    bw.grad_a = host_view(ga.data(), c.shape());
    bw.grad_b = host_view(gb.data(), c.shape());
    ops::distance(bw, Mode::backward);
    const auto want = ref.grad_a(a, b, up);
    check_close(ga, want, tol, tol);
    for (std::size_t k = 0; k < ga.size(); ++k) CHECK(gb[k] == -ga[k]);
    if constexpr (std::is_same_v<T, double>) {  // central differences of sum_i up_i * value_i
      const auto f = [&](const std::vector<double>& x) {
        const auto v = ref.values(x, b);
        double s = 0;
        for (std::size_t i = 0; i < v.size(); ++i) s += up[i] * v[i];
        return s;
      };
      check_close(ga, kdloss_test::numeric_gradient(a, f), 1e-6, 1e-9, "central differences");
    }
    // sum_items: one value, the scalar upstream
    T total = T(-7), one = T(1);
    std::vector<T> ga2(a.size(), T(-7));
    ops::DistanceArgs<T> fb = args;
    fb.options.sum_items = true;
    fb.out = host_scalar(&total);
    fb.grad_a = host_view(ga2.data(), c.shape());
    ops::distance(fb, Mode::forward_backward);
    const auto v = ref.values(a, b);
    CHECK(kdloss_test::close(total, v[0] + v[1] + v[2], tol));
    check_close(ga2, ref.grad_a(a, b, {1.0, 1.0, 1.0}), tol, tol);
    (void)one;
  }
}

TEST_CASE("ops::distance: whole tensor equals torch.dist; per_item splits dim 0; strided inputs") {
  const Case c;
  const auto a = random_vector<double>(c.rows() * 6, 3), b = random_vector<double>(c.rows() * 6, 4);
  double whole = 0;
  ops::distance(host_view<const double>(a.data(), c.shape()), host_view<const double>(b.data(), c.shape()),
                host_scalar(&whole));
  const kdloss_ref::ops::Distance all{{0, c.rows()}, 6, 1.0};
  CHECK(kdloss_test::close(whole, all.values(a, b)[0], 1e-14));
  // per item over dim 0
  std::vector<double> per(c.rows());
  ops::DistanceOptions o;
  o.per_item = true;
  ops::distance(host_view<const double>(a.data(), c.shape()), host_view<const double>(b.data(), c.shape()),
                host_view(per.data(), {c.rows()}), o);
  check_close(per, kdloss_ref::ops::Distance{{0, 1, 2, 3, 4, 5}, 6, 1.0}.values(a, b), 1e-14);
  // a stored channels-last and padded, b broadcast along dim 2: equal to contiguous copies
  const auto as = kdloss_test::relayout(a, c.shape(), {0, 2, 1}, 3);
  std::vector<double> b1(c.rows() * 3);
  for (std::int64_t k = 0; k < c.rows() * 3; ++k) b1[k] = b[2 * k];
  std::vector<double> bb(a.size());
  for (std::size_t k = 0; k < a.size(); ++k) bb[k] = b1[k / 2];
  std::vector<double> gs(a.size(), -7.0), gc(a.size(), -7.0), vs(3), vc(3);
  const std::vector<std::int64_t> off = c.offsets;
  ops::DistanceArgs<double> s;
  s.a = View<const double>(as.view);
  s.b = host_view<const double>(b1.data(), c.shape(), {3, 1, 0});
  s.segments.offsets = host_view<const std::int64_t>(off.data(), {4});
  s.out = host_view(vs.data(), {3});
  s.grad_a = host_view(gs.data(), c.shape());
  ops::distance(s, Mode::forward_backward);
  ops::DistanceArgs<double> k = s;
  k.a = host_view<const double>(a.data(), c.shape());
  k.b = host_view<const double>(bb.data(), c.shape());
  k.out = host_view(vc.data(), {3});
  k.grad_a = host_view(gc.data(), c.shape());
  ops::distance(k, Mode::forward_backward);
  CHECK(vs == vc);
  CHECK(gs == gc);
}

TEST_CASE("ops::distance: zero distance gives a zero gradient, NaN and inf follow PyTorch's norm") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  std::vector<double> a = {1, 2, 3, 4, 5, 6}, b = a, g(6, -7.0), v(3, -7.0);
  const std::vector<std::int64_t> off = {0, 1, 2, 3};
  ops::DistanceArgs<double> args;
  args.a = host_view<const double>(a.data(), {3, 2});
  args.b = host_view<const double>(b.data(), {3, 2});
  args.segments.offsets = host_view<const std::int64_t>(off.data(), {4});
  args.out = host_view(v.data(), {3});
  args.grad_a = host_view(g.data(), {3, 2});
  b[3] = 1.0;   // item 1 differs: gradient (a - b) / norm there
  a[4] = nan;   // item 2: NaN value and NaN gradient
  ops::distance(args, Mode::forward_backward);
  CHECK(v[0] == 0.0);
  CHECK(g[0] == 0.0);
  CHECK(g[1] == 0.0);  // exactly 0 at norm 0, no NaN
  CHECK(v[1] == 3.0);
  CHECK(g[2] == 0.0);
  CHECK(g[3] == 1.0);
  CHECK(std::isnan(v[2]));
  CHECK(std::isnan(g[4]));
  CHECK(std::isnan(g[5]));
  a[4] = inf;  // infinite norm: 0 beside NaN at the infinite element (inf * 0)
  ops::distance(args, Mode::forward_backward);
  CHECK(v[2] == inf);
  CHECK(std::isnan(g[4]));
  CHECK(g[5] == 0.0);
}

TEST_CASE("ops::distance: bad input throws a clear error and writes nothing") {
  std::vector<double> a(12, 1.0), b(12, 0.0), g(12, -7.0), v(3, -7.0);
  const std::vector<std::int64_t> off = {0, 1, 4}, bad_off = {0, 3, 1};
  ops::DistanceArgs<double> args;
  args.a = host_view<const double>(a.data(), {6, 2});
  args.b = host_view<const double>(b.data(), {6, 2});
  args.segments.offsets = host_view<const std::int64_t>(off.data(), {3});
  args.out = host_view(v.data(), {2});
  args.grad_a = host_view(g.data(), {6, 2});
  const auto untouched = [&] {
    for (double x : g) CHECK(x == -7.0);
    for (double x : v) CHECK(x == -7.0);
  };
  kdloss_test::expect_error([&] { ops::distance(args, Mode::forward_backward); }, "ends at 4 but the packed view has 6",
                            untouched);
  auto bad = args;
  bad.segments.offsets = host_view<const std::int64_t>(bad_off.data(), {3});
  kdloss_test::expect_error([&] { ops::distance(bad, Mode::forward); }, "decreases at image 1", untouched);
  bad = args;
  bad.segments = {};
  bad.b = host_view<const double>(b.data(), {2, 6});
  kdloss_test::expect_error([&] { ops::distance(bad, Mode::forward); }, "must have the same shape", untouched);
  bad = args;
  bad.segments = {};
  bad.options.per_item = true;  // 6 items but out holds 2
  kdloss_test::expect_error([&] { ops::distance(bad, Mode::forward); }, "argument 'out' has shape [2] but expected [6]",
                            untouched);
  bad = args;
  bad.segments.offsets = host_view<const std::int64_t>(off.data(), {2});  // one item of the first row
  bad.a = host_view<const double>(a.data(), {1, 2});
  bad.b = host_view<const double>(b.data(), {1, 2});
  bad.out = host_view(v.data(), {1});
  bad.grad_a = host_view(g.data(), {1, 2}, {0, 0});
  kdloss_test::expect_error([&] { ops::distance(bad, Mode::forward_backward); }, "'grad_a'", untouched);
  bad = args;
  bad.segments = {};
  bad.options.weight = std::numeric_limits<double>::infinity();
  kdloss_test::expect_error([&] { ops::distance(bad, Mode::forward); }, "option 'weight'", untouched);
  bad = args;
  bad.segments.offsets = host_view<const std::int64_t>(off.data(), {2});
  bad.a = host_view<const double>(a.data(), {1, 2});
  bad.b = host_view<const double>(b.data(), {1, 2});
  bad.out = host_view(v.data(), {1});
  bad.grad_a = host_view(const_cast<double*>(a.data()), {1, 2});
  kdloss_test::expect_error([&] { ops::distance(bad, Mode::forward_backward); }, "overlaps the memory of argument 'a'",
                            untouched);
}
