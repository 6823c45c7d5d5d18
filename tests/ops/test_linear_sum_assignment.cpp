// ops::linear_sum_assignment: scipy's exact assignment (outputs pasted from scipy 1.17.1 for the tie
// rule; a plain port of scipy's rectangular_lsap as the bit reference on thousands of problems; a
// brute-force optimum), tie-heavy integer costs, rectangular both ways, maximize, +inf patterns,
// infeasible and empty problems, ragged batches with strided float/double costs, NaN/-inf errors and
// bad inputs (outputs untouched), bit identity across thread counts, CPU/GPU agreement.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kdloss/ops/linear_sum_assignment.hpp"
#include "support/threads.hpp"
#include "ops/linear_sum_assignment_gpu.hpp"
#include "reference/ops/linear_sum_assignment.hpp"
#include "support/test_support.hpp"

using namespace kdloss;

namespace {

const double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

/// One dense problem through the batched op as a [1, nr, nc] double view; status returned.
struct One {
  std::int64_t status = 0, count = 0;
  std::vector<std::int64_t> rows, cols;
};
One solve_one(const std::vector<double>& c, std::int64_t nr, std::int64_t nc, bool maximize) {
  const std::int64_t K = std::min(nr, nc);
  std::vector<std::int64_t> r(static_cast<std::size_t>(K), 77), k(static_cast<std::size_t>(K), 77), n(1, 77), st(1, 77);
  ops::LinearSumAssignmentArgs<double> a;
  a.cost = host_view<const double>(c.data(), {1, nr, nc});
  a.row_ind = host_view(r.data(), {1, K});
  a.col_ind = host_view(k.data(), {1, K});
  a.count = host_view(n.data(), {1});
  a.status = host_view(st.data(), {1});
  a.options.maximize = maximize;
  ops::linear_sum_assignment(a);
  One o;
  o.status = st[0], o.count = n[0];
  for (std::int64_t q = 0; q < K; ++q) {
    if (q < n[0]) {
      o.rows.push_back(r[q]), o.cols.push_back(k[q]);
    } else {
      CHECK(r[q] == -1);
      CHECK(k[q] == -1);
    }
  }
  return o;
}

/// Compares the op with the scipy port on one problem (no NaN/-inf: those throw in the check).
void same_as_scipy(const std::vector<double>& c, std::int64_t nr, std::int64_t nc, bool maximize) {
  const auto ref = kdloss_ref::ops::scipy_lsa(c, nr, nc, maximize);
  REQUIRE(ref.status != 2);
  const One got = solve_one(c, nr, nc, maximize);
  CHECK(got.status == ref.status);
  CHECK(got.rows == ref.rows);
  CHECK(got.cols == ref.cols);
}

/// Random costs of a kind: 0 uniform doubles, 1 integers 0..3, 2 all equal, 3 duplicated rows and
/// columns of 0..9, 4 integers 0..3 with +inf entries, 5 floats rounded to float.
std::vector<double> make_cost(std::mt19937& g, int kind, std::int64_t nr, std::int64_t nc) {
  std::vector<double> c(static_cast<std::size_t>(nr * nc));
  std::uniform_real_distribution<double> U(-2, 2);
  std::uniform_int_distribution<int> I(0, 3), D(0, 9), P(0, 5);
  for (auto& x : c) {
    switch (kind) {
      case 0: x = U(g); break;
      case 1: x = I(g); break;
      case 2: x = 1.5; break;
      case 3: x = D(g); break;
      case 4: x = P(g) == 0 ? kInf : I(g); break;
      default: x = static_cast<float>(U(g)); break;
    }
  }
  if (kind == 3 && nr > 1 && nc > 1) {  // copy row 0 to the last row and column 0 to the last column
    for (std::int64_t j = 0; j < nc; ++j) c[(nr - 1) * nc + j] = c[j];
    for (std::int64_t i = 0; i < nr; ++i) c[i * nc + nc - 1] = c[i * nc];
  }
  return c;
}

}  // namespace

TEST_CASE("linear_sum_assignment: scipy's outputs, ties included (pasted from scipy 1.17.1)") {
  struct Known {
    std::int64_t nr, nc;
    std::vector<double> c;
    std::vector<std::int64_t> rows, cols, rows_max, cols_max;
  };
  const std::vector<Known> known = {
      {4, 4, std::vector<double>(16, 1.0), {0, 1, 2, 3}, {0, 1, 2, 3}, {0, 1, 2, 3}, {0, 1, 2, 3}},
      {3, 5, std::vector<double>(15, 1.0), {0, 1, 2}, {0, 1, 2}, {0, 1, 2}, {0, 1, 2}},
      {5, 3, std::vector<double>(15, 1.0), {0, 1, 2}, {0, 1, 2}, {0, 1, 2}, {0, 1, 2}},
      {4, 4, {2, 1, 2, 2, 1, 2, 2, 0, 0, 0, 0, 2, 2, 0, 1, 2}, {0, 1, 2, 3}, {1, 3, 0, 2}, {0, 1, 2, 3}, {2, 1, 3, 0}},
      {3, 5, {0, 2, 0, 1, 2, 0, 1, 0, 2, 0, 2, 1, 1, 1, 1}, {0, 1, 2}, {0, 2, 1}, {0, 1, 2}, {1, 3, 0}},
      {5, 3, {1, 1, 2, 2, 2, 2, 1, 1, 2, 1, 0, 2, 0, 2, 1}, {1, 3, 4}, {2, 1, 0}, {0, 1, 4}, {2, 0, 1}},
      {5, 5, {0, 0, 1, 0, 0, 1, 2, 1, 2, 2, 2, 1, 1, 1, 0, 1, 1, 0, 2, 0, 0, 0, 2, 2, 2}, {0, 1, 2, 3, 4}, {3, 0, 4, 2, 1},
       {0, 1, 2, 3, 4}, {2, 1, 0, 3, 4}},
      {2, 6, {0, 2, 1, 1, 0, 1, 2, 1, 0, 1, 0, 2}, {0, 1}, {0, 2}, {0, 1}, {1, 0}},
      {6, 2, {2, 0, 1, 2, 2, 2, 1, 0, 2, 1, 0, 0}, {0, 5}, {1, 0}, {0, 1}, {0, 1}},
      // scipy's docstring example
      {3, 3, {4, 1, 3, 2, 0, 5, 3, 2, 2}, {0, 1, 2}, {1, 0, 2}, {0, 1, 2}, {0, 2, 1}},
  };
  for (const auto& k : known) {
    CAPTURE(k.nr);
    CAPTURE(k.nc);
    const One mn = solve_one(k.c, k.nr, k.nc, false), mx = solve_one(k.c, k.nr, k.nc, true);
    CHECK(mn.rows == k.rows);
    CHECK(mn.cols == k.cols);
    CHECK(mx.rows == k.rows_max);
    CHECK(mx.cols == k.cols_max);
    // the plain port agrees with scipy too (it is the bit reference of the random cases below)
    CHECK(kdloss_ref::ops::scipy_lsa(k.c, k.nr, k.nc, false).cols == k.cols);
    CHECK(kdloss_ref::ops::scipy_lsa(k.c, k.nr, k.nc, true).cols == k.cols_max);
  }
}

TEST_CASE("linear_sum_assignment: the scipy port's assignment on 3000 random problems, optimal by brute force") {
  std::mt19937 g(12345);
  std::uniform_int_distribution<int> S(1, 7);
  int brute = 0;
  for (int t = 0; t < 3000; ++t) {
    const int kind = t % 6;
    const std::int64_t nr = S(g), nc = S(g);
    const bool maximize = (t / 6) % 2 == 1 && kind != 4;
    const auto c = make_cost(g, kind, nr, nc);
    CAPTURE(t);
    CAPTURE(kind);
    CAPTURE(nr);
    CAPTURE(nc);
    same_as_scipy(c, nr, nc, maximize);
    if (!maximize && std::max(nr, nc) <= 6 && t % 3 == 0) {
      ++brute;
      const One got = solve_one(c, nr, nc, false);
      const double best = kdloss_ref::ops::brute_force_min(c, nr, nc);
      if (best == kInf) {
        CHECK(got.status == ops::assignment_status::infeasible);
      } else {
        REQUIRE(got.status == ops::assignment_status::ok);
        double s = 0;
        for (std::size_t q = 0; q < got.rows.size(); ++q) s += c[got.rows[q] * nc + got.cols[q]];
        CHECK(s == doctest::Approx(best).epsilon(1e-12));
      }
    }
  }
  CHECK(brute > 300);
}

TEST_CASE("linear_sum_assignment: larger problems (vector lanes, long paths) bit-identical to the scipy port") {
  std::mt19937 g(99);
  for (auto [nr, nc] : {std::pair<std::int64_t, std::int64_t>{40, 40}, {60, 23}, {23, 61}, {1, 50}, {50, 1}, {33, 34}})
    for (int kind = 0; kind < 6; ++kind) {
      const std::int64_t rows = nr, cols = nc;  // CAPTURE's lambda cannot name a structured binding before C++20
      CAPTURE(rows);
      CAPTURE(cols);
      CAPTURE(kind);
      const auto c = make_cost(g, kind, nr, nc);
      same_as_scipy(c, nr, nc, false);
      if (kind != 4) same_as_scipy(c, nr, nc, true);
    }
}

TEST_CASE("linear_sum_assignment: +inf forbidden pairs, infeasible problems, -inf forbidden with maximize") {
  // a forbidden diagonal is avoided
  std::vector<double> c = {kInf, 1, 1, 1, kInf, 1, 1, 1, kInf};
  auto o = solve_one(c, 3, 3, false);
  CHECK(o.status == ops::assignment_status::ok);
  for (std::size_t q = 0; q < 3; ++q) CHECK(o.rows[q] != o.cols[q]);
  // an all-+inf column makes a square problem infeasible (not only a blocked row)
  c = {1, kInf, 2, kInf, 3, kInf};
  o = solve_one(c, 2, 3, false);  // columns 0 and 2 remain: feasible
  CHECK(o.status == ops::assignment_status::ok);
  c = {1, kInf, 2, kInf};
  o = solve_one(c, 2, 2, false);
  CHECK(o.status == ops::assignment_status::infeasible);
  CHECK(o.count == 0);
  // maximize: -inf is the forbidden entry
  c = {-kInf, 1, 2, -kInf};
  o = solve_one(c, 2, 2, true);
  CHECK(o.status == ops::assignment_status::ok);
  CHECK(o.cols == std::vector<std::int64_t>{1, 0});
  // infeasible with status absent: throws after the run
  c = {kInf, kInf, 1, 2};
  std::vector<std::int64_t> r(2), k(2);
  CHECK_THROWS_WITH_AS(ops::linear_sum_assignment(host_view<const double>(c.data(), {1, 2, 2}), host_view(r.data(), {1, 2}),
                                                  host_view(k.data(), {1, 2})),
                       doctest::Contains("problem 0 is infeasible"), kdloss::Error);
}

TEST_CASE("linear_sum_assignment: ragged batch, strided float and double costs, empty problems, B = 0") {
  std::mt19937 g(5);
  const std::int64_t B = 7, Q = 9, T = 6, K = 6;
  const std::vector<std::int64_t> rows = {9, 0, 4, 9, 3, 1, 6}, cols = {6, 3, 0, 2, 6, 6, 6};
  const auto full = make_cost(g, 1, B * Q, T);  // [B, Q, T] values 0..3
  for (int dtype = 0; dtype < 2; ++dtype)
    for (bool maximize : {false, true}) {
      // storage [B, T, Q + 2] (the cost transposed in memory, padded rows): strides {T*(Q+2), 1, Q+2}
      const std::int64_t ld = Q + 2;
      std::vector<double> sd(static_cast<std::size_t>(B * T * ld), kNaN);  // NaN outside the problems: never read
      std::vector<float> sf(sd.size(), std::numeric_limits<float>::quiet_NaN());
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t i = 0; i < rows[b]; ++i)
          for (std::int64_t j = 0; j < cols[b]; ++j) {
            const double x = full[(b * Q + i) * T + j];
            sd[b * T * ld + j * ld + i] = x;
            sf[b * T * ld + j * ld + i] = static_cast<float>(x);
          }
      std::vector<std::int64_t> r(B * K, 5), k(B * K, 5), n(B, 5), st(B, 5);
      const auto run = [&](auto* data) {
        using E = std::remove_pointer_t<decltype(data)>;
        ops::LinearSumAssignmentArgs<E> a;
        a.cost = host_view<const E>(data, {B, Q, T}, {T * ld, 1, ld});
        a.rows = host_view<const std::int64_t>(rows.data(), {B});
        a.cols = host_view<const std::int64_t>(cols.data(), {B});
        a.row_ind = host_view(r.data(), {B, K});
        a.col_ind = host_view(k.data(), {B, K});
        a.count = host_view(n.data(), {B});
        a.status = host_view(st.data(), {B});
        a.options.maximize = maximize;
        ops::linear_sum_assignment(a);
      };
      if (dtype == 0)
        run(sf.data());
      else
        run(sd.data());
      for (std::int64_t b = 0; b < B; ++b) {
        CAPTURE(b);
        std::vector<double> c(static_cast<std::size_t>(rows[b] * cols[b]));
        for (std::int64_t i = 0; i < rows[b]; ++i)
          for (std::int64_t j = 0; j < cols[b]; ++j) c[i * cols[b] + j] = full[(b * Q + i) * T + j];
        const auto ref = kdloss_ref::ops::scipy_lsa(c, rows[b], cols[b], maximize);
        CHECK(st[b] == 0);
        CHECK(n[b] == static_cast<std::int64_t>(ref.rows.size()));
        for (std::int64_t q = 0; q < K; ++q) {
          const bool pair = q < n[b];
          CHECK(r[b * K + q] == (pair ? ref.rows[q] : -1));
          CHECK(k[b * K + q] == (pair ? ref.cols[q] : -1));
        }
      }
    }
  // B = 0 and an all-empty padded batch
  std::vector<std::int64_t> none;
  ops::LinearSumAssignmentArgs<float> a;
  a.cost = host_view<const float>(nullptr, {0, 3, 4});
  a.row_ind = host_view(none.data(), {0, 3});
  a.col_ind = host_view(none.data(), {0, 3});
  CHECK_NOTHROW(ops::linear_sum_assignment(a));
  std::vector<std::int64_t> r(2, 9), k(2, 9), n(2, 9);
  a.cost = host_view<const float>(nullptr, {2, 0, 4});
  a.row_ind = host_view(r.data(), {2, 0});
  a.col_ind = host_view(k.data(), {2, 0});
  a.count = host_view(n.data(), {2});
  ops::linear_sum_assignment(a);
  CHECK(n == std::vector<std::int64_t>{0, 0});
}

TEST_CASE("linear_sum_assignment: NaN / -inf errors name the problem and entry; bad inputs leave outputs untouched") {
  const std::int64_t B = 2, Q = 3, T = 3;
  std::vector<double> c(B * Q * T, 1.0);
  std::vector<std::int64_t> r(B * 3, 77), k(B * 3, 77), n(B, 77), st(B, 77), rows = {3, 2}, cols = {3, 3};
  auto fresh = [&] {
    ops::LinearSumAssignmentArgs<double> a;
    a.cost = host_view<const double>(c.data(), {B, Q, T});
    a.rows = host_view<const std::int64_t>(rows.data(), {B});
    a.cols = host_view<const std::int64_t>(cols.data(), {B});
    a.row_ind = host_view(r.data(), {B, 3});
    a.col_ind = host_view(k.data(), {B, 3});
    a.count = host_view(n.data(), {B});
    a.status = host_view(st.data(), {B});
    return a;
  };
  const auto untouched = [&] {
    for (auto v : r) CHECK(v == 77);
    for (auto v : k) CHECK(v == 77);
    for (auto v : n) CHECK(v == 77);
    for (auto v : st) CHECK(v == 77);
  };
  const auto fails = [&](const ops::LinearSumAssignmentArgs<double>& a, const std::string& what) {
    CHECK_THROWS_WITH_AS(ops::linear_sum_assignment(a), doctest::Contains(what.c_str()), kdloss::Error);
    untouched();
  };
  c[9 + 1 * 3 + 2] = kNaN;  // problem 1, entry (1, 2)
  fails(fresh(), "argument 'cost' of problem 1 contains invalid numeric entries");
  fails(fresh(), "cost[1, 1, 2] = nan");
  c[9 + 1 * 3 + 2] = -kInf;
  fails(fresh(), "cost[1, 1, 2] = -inf");
  c[9 + 1 * 3 + 2] = kInf;  // fine for minimize, invalid for maximize
  auto mx = fresh();
  mx.options.maximize = true;
  fails(mx, "(NaN or +inf with maximize)");
  c[9 + 1 * 3 + 2] = 1;
  c[9 + 2 * 3 + 0] = kNaN;  // outside problem 1's 2 rows: never read
  {
    auto a = fresh();
    ops::linear_sum_assignment(a);
    CHECK(n == std::vector<std::int64_t>{3, 2});
    std::fill(r.begin(), r.end(), 77), std::fill(k.begin(), k.end(), 77), std::fill(n.begin(), n.end(), 77),
        std::fill(st.begin(), st.end(), 77);
  }
  rows[1] = 4;
  fails(fresh(), "argument 'rows' gives problem 1 size 4, outside [0, 3]");
  rows[1] = -1;
  fails(fresh(), "argument 'rows' gives problem 1 size -1");
  rows[1] = 2;
  auto a = fresh();
  a.row_ind = host_view(r.data(), {B, 2});
  fails(a, "argument 'row_ind' has shape [2, 2] but expected [2, 3]");
  a = fresh();
  a.col_ind = {};
  fails(a, "argument 'col_ind' is absent");
  a = fresh();
  a.cost = host_view<const double>(c.data(), {B * Q, T});
  fails(a, "argument 'cost' must have rank 3");
  a = fresh();
  a.col_ind = host_view(r.data(), {B, 3});
  fails(a, "'row_ind' overlaps the memory of argument 'col_ind'");
  a = fresh();
  a.count = host_view(n.data(), {B}, {0});
  fails(a, "addresses some element twice");
  a = fresh();
  CHECK_THROWS_WITH_AS(ops::linear_sum_assignment(a, Mode::backward), doctest::Contains("has no gradient"),
                       kdloss::Error);
  untouched();
}

TEST_CASE("linear_sum_assignment: the same bits for 1, 2 and 3 threads; workspace passed by the caller") {
  std::mt19937 g(3);
  const std::int64_t B = 9, Q = 30, T = 20, K = 20;
  std::vector<double> c;
  for (std::int64_t b = 0; b < B; ++b) {
    const auto p = make_cost(g, static_cast<int>(b % 6), Q, T);
    c.insert(c.end(), p.begin(), p.end());
  }
  std::vector<std::int64_t> first;
  kdloss_test::ThreadScope scope;
  for (int threads : {1, 2, 3}) {
    scope.set(threads);
    std::vector<std::int64_t> out(2 * B * K + 2 * B, -5);
    ops::LinearSumAssignmentArgs<double> a;
    a.cost = host_view<const double>(c.data(), {B, Q, T});
    a.row_ind = host_view(out.data(), {B, K});
    a.col_ind = host_view(out.data() + B * K, {B, K});
    a.count = host_view(out.data() + 2 * B * K, {B});
    a.status = host_view(out.data() + 2 * B * K + B, {B});
    std::vector<unsigned char> ws(ops::linear_sum_assignment_workspace_bytes(a) + 256);
    void* aligned = ws.data() + (256 - reinterpret_cast<std::uintptr_t>(ws.data()) % 256) % 256;
    ops::linear_sum_assignment(a, Mode::forward, Exec{Workspace{aligned, ws.size() - 256}});
    if (first.empty())
      first = out;
    else
      CHECK(out == first);
  }
  CHECK(first[2 * B * K] == K);
}

KDLOSS_GPU_TEST("linear_sum_assignment: GPU gives the CPU's bits (float, double, half, bfloat16), ragged, graph replay") {
#if KDLOSS_TEST_CUDA
  std::mt19937 g(11);
  const std::int64_t B = 8, Q = 37, T = 23, K = 23;
  const std::vector<std::int64_t> rows = {37, 0, 20, 37, 5, 37, 1, 12}, cols = {23, 4, 23, 9, 0, 23, 23, 23};
  for (int kind = 0; kind < 6; ++kind)
    for (bool maximize : {false, true}) {
      if (kind == 4 && maximize) continue;
      auto c = make_cost(g, kind, B * Q, T);
      for (int dtype = 0; dtype < 4; ++dtype) {
        CAPTURE(kind);
        CAPTURE(dtype);
        std::vector<double> cd = c;  // the values the device sees, rounded to its dtype
        if (dtype == 0) for (auto& x : cd) x = static_cast<float>(x);
        if (dtype >= 2) for (auto& x : cd) x = std::isinf(x) ? x : std::round(x * 4) / 4;  // exact in half/bf16
        const auto got = kdloss_test::linear_sum_assignment_on_gpu(dtype, maximize, cd, B, Q, T, rows, cols);
        REQUIRE(got.size() == static_cast<std::size_t>(2 * B * K + 2 * B));
        for (std::int64_t b = 0; b < B; ++b) {
          std::vector<double> p(static_cast<std::size_t>(rows[b] * cols[b]));
          for (std::int64_t i = 0; i < rows[b]; ++i)
            for (std::int64_t j = 0; j < cols[b]; ++j) p[i * cols[b] + j] = cd[(b * Q + i) * T + j];
          const auto ref = kdloss_ref::ops::scipy_lsa(p, rows[b], cols[b], maximize);
          CHECK(got[2 * B * K + B + b] == ref.status);
          const std::int64_t cnt = ref.status == 0 ? static_cast<std::int64_t>(ref.rows.size()) : 0;
          CHECK(got[2 * B * K + b] == cnt);
          for (std::int64_t q = 0; q < K; ++q) {
            CHECK(got[b * K + q] == (q < cnt ? ref.rows[q] : -1));
            CHECK(got[B * K + b * K + q] == (q < cnt ? ref.cols[q] : -1));
          }
        }
      }
    }
#endif
}
