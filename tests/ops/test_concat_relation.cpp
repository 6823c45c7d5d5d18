// ops::concat_relation: the sorted evaluation of y = ReLU(w . [theta; phi]) g / N' and every gradient
// against the explicit [N, N'] relation, central differences away from the ReLU kinks, exact ties at 0,
// NaN/inf as torch's dense evaluation, layouts, GradAccumulate, degenerate sizes, threads, bad input, GPU.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kdloss/ops/concat_relation.hpp"
#include "ops/relation_fixture.hpp"

#include "support/threads.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::Operand;
using kdloss_test::RelationCase;
using kdloss_test::RelationRun;

namespace {

struct CallOptions {
  int layout = 0;
  double input_beta = 0.0, param_beta = 0.0;
  bool conv_weight = false;  // w as [1, 2m, 1, 1]
  bool divide = true;
};

template <class T>
RelationRun run_concat(const RelationCase& rc, Mode mode, const CallOptions& o = {}, const RelationRun& old = {}) {
  const auto& d = rc.shape;
  const std::int64_t B = d.batch, N = d.queries, K = d.keys, m = d.embed, c = d.values;
  const int L = o.layout;
  Operand<T> th(rc.theta, B, N, m, L), ph(rc.phi, B, K, m, L), g(rc.g, B, K, c, L), gy(rc.gy, B, N, c, L);
  const auto fill = [](const std::vector<double>& v, std::int64_t n) {
    return v.empty() ? std::vector<double>(static_cast<std::size_t>(n), -3.0) : v;
  };
  Operand<T> y(fill({}, rc.y_size()), B, N, c, L), gth(fill(old.theta, rc.theta_size()), B, N, m, L),
      gph(fill(old.phi, rc.phi_size()), B, K, m, L), gg(fill(old.g, rc.g_size()), B, K, c, L);
  std::vector<T> w(rc.w.begin(), rc.w.end());
  const auto gw0 = fill(old.w, 2 * m);
  std::vector<T> gw(gw0.begin(), gw0.end());
  const Dims wshape = o.conv_weight ? Dims{1, 2 * m, 1, 1} : Dims{2 * m};
  ops::ConcatRelationArgs<T> a;
  a.theta = th.in();
  a.phi = ph.in();
  a.g = g.in();
  a.weight = host_view<const T>(w.data(), wshape);
  if (writes_value(mode)) a.y = y.out();
  if (writes_gradients(mode)) {
    a.grad_y = gy.in();
    a.grad_theta = gth.out();
    a.grad_phi = gph.out();
    a.grad_g = gg.out();
    a.grad_weight = host_view(gw.data(), wshape);
  }
  a.options.input_grads.beta = o.input_beta;
  a.options.param_grads.beta = o.param_beta;
  a.options.divide_by_keys = o.divide;
  ops::concat_relation(a, mode);
  return {y.values(), gth.values(), gph.values(), gg.values(), std::vector<double>(gw.begin(), gw.end())};
}

/// The reference's y and gradients, gradients over `old` with the betas.
RelationRun reference(const RelationCase& rc, const CallOptions& o = {}, const RelationRun& old = {}) {
  const auto r = rc.shape.backward(true, rc.theta, rc.phi, rc.g, rc.w, rc.gy);
  RelationRun want{rc.shape.forward(true, rc.theta, rc.phi, rc.g, rc.w), r.theta, r.phi, r.g, r.w};
  if (!old.theta.empty()) {
    want.theta = kdloss_test::accumulate(want.theta, old.theta, o.input_beta);
    want.phi = kdloss_test::accumulate(want.phi, old.phi, o.input_beta);
    want.g = kdloss_test::accumulate(want.g, old.g, o.input_beta);
    want.w = kdloss_test::accumulate(want.w, old.w, o.param_beta);
  }
  return want;
}

void check_run(const RelationRun& got, const RelationRun& want, double rel, double abs, bool nonfinite = false) {
  const auto cmp = [&](const std::vector<double>& g, const std::vector<double>& w, const char* what) {
    if (nonfinite)
      kdloss_test::check_same_nonfinite(g, w, rel, abs, what);
    else
      check_close(g, w, rel, abs, what);
  };
  cmp(got.y, want.y, "y");
  cmp(got.theta, want.theta, "grad_theta");
  cmp(got.phi, want.phi, "grad_phi");
  cmp(got.g, want.g, "grad_g");
  cmp(got.w, want.w, "grad_weight");
}


}  // namespace

TEST_CASE("concat_relation: matches the explicit relation ReLU(w.[theta; phi]) / N' in every layout") {
  kdloss_test::for_relation_cases([](const RelationCase& rc, int layout, double beta, std::uint32_t seed) {
    CallOptions o;
    o.layout = layout;
    o.input_beta = beta;
    o.param_beta = 1.0 - beta;  // one accumulates while the other overwrites
    o.conv_weight = layout == 1;
    RelationRun old{{}, kdloss_test::random_vector<double>(rc.theta_size(), seed + 5),
                    kdloss_test::random_vector<double>(rc.phi_size(), seed + 6),
                    kdloss_test::random_vector<double>(rc.g_size(), seed + 7),
                    kdloss_test::random_vector<double>(2 * rc.shape.embed, seed + 8)};
    const RelationRun want = reference(rc, o, old);
    if (o.input_beta == 0) {  // overwrite never reads the old contents
      old.theta = kdloss_test::nan_vector(rc.theta_size());
      old.phi = kdloss_test::nan_vector(rc.phi_size());
      old.g = kdloss_test::nan_vector(rc.g_size());
    }
    if (o.param_beta == 0) old.w = kdloss_test::nan_vector(2 * rc.shape.embed);
    const auto r = run_concat<double>(rc, Mode::forward_backward, o, old);
    check_run(r, want, 1e-10, 1e-12);
    const auto b = run_concat<double>(rc, Mode::backward, o, old);  // backward alone recomputes the scores
    CHECK(b.theta == r.theta);
    CHECK(b.w == r.w);
    const auto f = run_concat<double>(rc, Mode::forward, o, old);
    CHECK(f.y == r.y);
    check_run(run_concat<float>(rc, Mode::forward_backward, o, old), want, 1e-4, 1e-5);
  });
}

TEST_CASE("concat_relation: central differences for theta, phi, g and w, away from the ReLU kinks") {
  RelationCase rc(2, 7, 5, 3, 2, 101);
  // No score within 1e-3 of 0, so a step of 1e-6 never crosses a kink; and some of each sign.
  double closest = 1e9;
  int active = 0, total = 0;
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t i = 0; i < 7; ++i)
      for (std::int64_t j = 0; j < 5; ++j) {
        const double s = rc.shape.score(true, rc.theta, rc.phi, rc.w, b, i, j);
        closest = std::min(closest, std::fabs(s));
        active += s > 0;
        ++total;
      }
  REQUIRE(closest > 1e-3);
  REQUIRE(active > total / 5);
  REQUIRE(active < total * 4 / 5);
  const auto r = run_concat<double>(rc, Mode::backward);
  const auto numeric = [&](std::vector<double> RelationCase::*field) {
    return kdloss_test::numeric_relation_gradient(rc, field, [](const RelationCase& c) {
      return run_concat<double>(c, Mode::forward).y;
    });
  };
  check_close(r.theta, numeric(&RelationCase::theta), 1e-7, 1e-9, "grad_theta");
  check_close(r.phi, numeric(&RelationCase::phi), 1e-7, 1e-9, "grad_phi");
  check_close(r.g, numeric(&RelationCase::g), 1e-7, 1e-9, "grad_g");
  check_close(r.w, numeric(&RelationCase::w), 1e-7, 1e-9, "grad_weight");
}

TEST_CASE("concat_relation: exact ties a_i + b_j = 0 are inactive with no gradient, as torch's ReLU") {
  // Small integers: every score is exact, and many are exactly 0.
  RelationCase rc(2, 9, 6, 2, 3, 201);
  const auto ints = [](std::vector<double>& v, int lo, int span, std::uint32_t seed) {
    for (auto& x : v) x = static_cast<double>(lo + static_cast<int>((seed = seed * 1103515245u + 12345u) >> 16) % span);
  };
  ints(rc.theta, -2, 5, 1);
  ints(rc.phi, -2, 5, 2);
  rc.w = {1, -1, 1, -1};  // a_i = theta_i0 - theta_i1, b_j = phi_j0 - phi_j1
  int ties = 0;
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t i = 0; i < 9; ++i)
      for (std::int64_t j = 0; j < 6; ++j) ties += rc.shape.score(true, rc.theta, rc.phi, rc.w, b, i, j) == 0;
  REQUIRE(ties >= 10);
  const auto want = reference(rc);
  check_run(run_concat<double>(rc, Mode::forward_backward), want, 1e-13, 1e-14);
  check_run(run_concat<float>(rc, Mode::forward_backward), want, 1e-5, 1e-6);
}

TEST_CASE("concat_relation: NaN and infinities propagate as torch's dense ReLU(score) @ g") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const auto check = [&](RelationCase rc, std::string what) {
    CAPTURE(what);
    const auto want = reference(rc);
    check_run(run_concat<double>(rc, Mode::forward_backward), want, 1e-10, 1e-12, true);
    check_run(run_concat<float>(rc, Mode::forward_backward), want, 1e-4, 1e-5, true);
  };
  const RelationCase base(2, 6, 4, 3, 2, 301);
  RelationCase rc = base;
  rc.theta[(1 * 6 + 2) * 3 + 0] = nan;  // one query of image 1: its row, and every key's gradient there
  check(rc, "NaN theta");
  rc = base;
  rc.phi[(0 * 4 + 3) * 3 + 1] = nan;  // one key of image 0: all of image 0
  check(rc, "NaN phi");
  rc = base;
  rc.g[(0 * 4 + 1) * 2 + 1] = nan;  // inactive pairs give 0 * NaN = NaN too
  check(rc, "NaN g");
  rc = base;
  rc.g[(1 * 4 + 0) * 2 + 0] = inf;
  check(rc, "inf g");
  rc = base;
  rc.gy[(0 * 6 + 5) * 2 + 0] = nan;
  check(rc, "NaN grad_y");
  rc = base;
  rc.phi[(1 * 4 + 2) * 3 + 0] = -inf;
  check(rc, "-inf phi");
  rc = base;
  rc.w[1] = inf;
  check(rc, "inf w");
  // Image 1 of the NaN-g case stays finite: a non-finite image does not leak into its neighbours.
  rc = base;
  rc.g[(0 * 4 + 1) * 2 + 1] = nan;
  const auto y = run_concat<double>(rc, Mode::forward).y;
  CHECK(kdloss_test::all_finite(std::vector<double>(y.begin() + 12, y.end())));
}

TEST_CASE("concat_relation: N = 1, N' = 1, N' = 0, no division, and a batch of 0") {
  for (const auto& s : {std::vector<std::int64_t>{2, 1, 1, 3, 2}, {1, 1, 1, 1, 1}, {2, 4, 1, 2, 3}}) {
    const RelationCase rc(s[0], s[1], s[2], s[3], s[4], 401);
    check_run(run_concat<double>(rc, Mode::forward_backward), reference(rc), 1e-12, 1e-14);
  }
  const RelationCase rc(1, 5, 4, 2, 3, 402);
  CallOptions o;
  o.divide = false;
  auto want = rc.shape.forward(true, rc.theta, rc.phi, rc.g, rc.w);
  for (auto& v : want) v *= 4;
  check_close(run_concat<double>(rc, Mode::forward, o).y, want, 1e-12, 1e-14);

  const RelationCase empty(2, 3, 0, 2, 4, 403);
  const auto r = run_concat<double>(empty, Mode::forward_backward);
  CHECK(r.y == std::vector<double>(2 * 3 * 4, 0.0));
  CHECK(r.theta == std::vector<double>(2 * 3 * 2, 0.0));
  CHECK(r.w == std::vector<double>(4, 0.0));
  const RelationCase none(0, 3, 2, 2, 4, 404);
  RelationRun old;
  old.w = {1, 2, 3, 4};
  CallOptions acc;
  acc.param_beta = 0.5;
  CHECK(run_concat<double>(none, Mode::backward, acc, old).w == std::vector<double>{0.5, 1, 1.5, 2});
}

TEST_CASE("concat_relation: bits do not depend on the thread count") {
#if KDLOSS_OPENMP
  const RelationCase rc(2, 3000, 400, 16, 24, 501);
  kdloss_test::ThreadScope scope;
  CallOptions o;
  o.layout = 1;
  scope.set(1);
  const auto r1 = run_concat<float>(rc, Mode::forward_backward, o);
  scope.set(2);
  const auto r2 = run_concat<float>(rc, Mode::forward_backward, o);
  CHECK(r1.y == r2.y);
  CHECK(r1.theta == r2.theta);
  CHECK(r1.phi == r2.phi);
  CHECK(r1.g == r2.g);
  CHECK(r1.w == r2.w);
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}

TEST_CASE("concat_relation: bad input throws naming the argument and shapes, and writes nothing") {
  std::vector<float> t(2 * 4 * 3, 1.f), p(2 * 5 * 3, 1.f), g(2 * 5 * 2, 1.f), w(6, 1.f), y(2 * 4 * 2, 9.f),
      gy(2 * 4 * 2, 1.f), gt(2 * 4 * 3, 9.f), gw(6, 9.f);
  const auto untouched = [&] {
    CHECK(y == std::vector<float>(y.size(), 9.f));
    CHECK(gt == std::vector<float>(gt.size(), 9.f));
    CHECK(gw == std::vector<float>(gw.size(), 9.f));
  };
  const auto base = [&] {
    ops::ConcatRelationArgs<float> a;
    a.theta = host_view<const float>(t.data(), {2, 4, 3});
    a.phi = host_view<const float>(p.data(), {2, 5, 3});
    a.g = host_view<const float>(g.data(), {2, 5, 2});
    a.weight = host_view<const float>(w.data(), {6});
    a.y = host_view(y.data(), {2, 4, 2});
    a.grad_y = host_view<const float>(gy.data(), {2, 4, 2});
    a.grad_theta = host_view(gt.data(), {2, 4, 3});
    a.grad_weight = host_view(gw.data(), {6});
    return a;
  };
  auto a = base();
  a.weight = host_view<const float>(w.data(), {3});
  kdloss_test::expect_error([&] { ops::concat_relation(a, Mode::forward_backward); },
                            "kdloss::ops::concat_relation_forward_backward: argument 'weight' has shape [3] but 'theta' "
                            "[2, 4, 3] asks for [6] or [1, 6, 1, 1]",
                            untouched);
  a = base();
  a.weight = View<const float>{};
  kdloss_test::expect_error([&] { ops::concat_relation(a, Mode::forward); }, "argument 'weight' is absent", untouched);
  a = base();
  a.grad_weight = host_view(gw.data(), {1, 6, 1, 1});
  kdloss_test::expect_error([&] { ops::concat_relation(a, Mode::backward); },
                            "kdloss::ops::concat_relation_backward: argument 'grad_weight' has shape [1, 6, 1, 1]",
                            untouched);
  a = base();
  a.grad_weight = host_view(const_cast<float*>(w.data()), {6});
  kdloss_test::expect_error([&] { ops::concat_relation(a, Mode::backward); },
                            "output argument 'grad_weight' overlaps the memory of argument 'weight'", untouched);
  a = base();
  a.grad_weight = host_view(gt.data(), {6});
  kdloss_test::expect_error([&] { ops::concat_relation(a, Mode::backward); }, "overlaps", untouched);
  a = base();
  a.phi = host_view<const float>(p.data(), {2, 3, 5});
  kdloss_test::expect_error([&] { ops::concat_relation(a, Mode::forward); }, "argument 'phi' has shape [2, 3, 5]",
                            untouched);
  a = base();
  a.y = host_view(y.data(), {2, 4, 1});
  kdloss_test::expect_error([&] { ops::concat_relation(a, Mode::forward); }, "argument 'y' has shape [2, 4, 1]",
                            untouched);
  a = base();
  a.grad_y = View<const float>{};
  kdloss_test::expect_error([&] { ops::concat_relation(a, Mode::backward); }, "argument 'grad_y' is absent but mode backward reads it",
                            untouched);
  a = base();
  a.weight = cuda_view<const float>(w.data(), {6});
  kdloss_test::expect_error([&] { ops::concat_relation(a, Mode::forward); }, "argument 'weight' is on cuda:0",
                            untouched);
}

KDLOSS_GPU_TEST("concat_relation: GPU agrees with the reference (float, double, half, bfloat16; two layouts)") {
#if KDLOSS_TEST_CUDA
  const RelationCase rc(2, 37, 9, 8, 5, 601);
  const auto want = reference(rc);
  std::vector<double> expect = want.y;
  for (const auto* v : {&want.theta, &want.phi, &want.g, &want.w}) expect.insert(expect.end(), v->begin(), v->end());
  for (int layout : {0, 1})
    for (int dtype : {1, 0, 2, 3}) {
      CAPTURE(layout);
      CAPTURE(dtype);
      const auto got = kdloss_test::relation_on_gpu(true, dtype, layout, rc);
      // half/bf16: inputs rounded to 11/8 bits, a score near 0 may flip; float accumulation.
      const double t = dtype == 1 ? 1e-12 : dtype == 0 ? 1e-4 : dtype == 2 ? 3e-2 : 1e-1;
      check_close(got, expect, t, t);
    }
#endif
}

TEST_CASE("concat_relation: the usage examples of ops/concat_relation.hpp compile and run") {
  std::vector<float> tb(2 * 32 * 16 * 24, 0.5f), pb(2 * 32 * 8 * 12, -0.25f), qb(2 * 32 * 8 * 12, 1.f), wb(64, 1.f),
      ob(tb.size()), gob(tb.size(), 1.f), gwb(64, 1.f);
  const float *t = tb.data(), *p = pb.data(), *q = qb.data(), *w = wb.data(), *grad_out = gob.data();
  float *out = ob.data(), *grad_w = gwb.data();
  // --- from ConcatRelationArgs's comment ---
  // mmcv NonLocal2d(mode='concatenation'): theta [2, HW, 32], phi and g pooled by 2
  kdloss::ops::ConcatRelationArgs<float> r;
  r.theta = kdloss::ops::relation_operand(kdloss::host_view<const float>(t, {2, 32, 16, 24}));
  r.phi = kdloss::ops::relation_operand(kdloss::host_view<const float>(p, {2, 32, 8, 12}));
  r.g = kdloss::ops::relation_operand(kdloss::host_view<const float>(q, {2, 32, 8, 12}));
  r.weight = kdloss::host_view<const float>(w, {1, 64, 1, 1});    // concat_project.conv.weight
  r.y = kdloss::ops::relation_operand(kdloss::host_view(out, {2, 32, 16, 24}));
  // --- from concat_relation_check's, concat_relation_workspace_bytes's and concat_relation's comments ---
  kdloss::ops::concat_relation_check(r, kdloss::Mode::forward);   // r: ConcatRelationArgs's example
  std::size_t bytes = kdloss::ops::concat_relation_workspace_bytes(r);
  kdloss::ops::concat_relation(r, kdloss::Mode::forward);          // r: ConcatRelationArgs's example
  r.grad_y = kdloss::ops::relation_operand(kdloss::host_view<const float>(grad_out, {2, 32, 16, 24}));
  r.grad_weight = kdloss::host_view(grad_w, {1, 64, 1, 1});
  r.options.param_grads.beta = 1.0;                                // accumulate, as autograd does
  kdloss::ops::concat_relation(r, kdloss::Mode::backward);
  // ---
  CHECK(bytes > 0);
  // score = 32 * 0.5 - 32 * 0.25 = 8 for every pair; f = 8 / 96; y = 96 * f * 1 = 8.
  CHECK(ob == std::vector<float>(ob.size(), 8.f));
  // d_ij = 32 / 96 per pair; grad_w_theta = 1 + sum_b sum_i (sum_j d) * 0.5 = 1 + 2 * 384 * 32 * 0.5.
  CHECK(gwb[0] == doctest::Approx(1.f + 2 * 384 * 32 * 0.5f));
  CHECK(gwb[63] == doctest::Approx(1.f - 2 * 96 * (384 * 32.f / 96) * 0.25f));
  std::vector<float> gtb(tb.size()), gpb(pb.size()), ggb(qb.size());
  r.grad_theta = kdloss::ops::relation_operand(kdloss::host_view(gtb.data(), {2, 32, 16, 24}));
  r.grad_phi = kdloss::ops::relation_operand(kdloss::host_view(gpb.data(), {2, 32, 8, 12}));
  r.grad_g = kdloss::ops::relation_operand(kdloss::host_view(ggb.data(), {2, 32, 8, 12}));
  std::fill(ob.begin(), ob.end(), 0.f);
  std::fill(gwb.begin(), gwb.end(), 0.f);
  // --- from the wrappers' comments ---
  kdloss::ops::concat_relation(r.theta, r.phi, r.g, r.weight, r.y);
  kdloss::ops::concat_relation_backward(r.theta, r.phi, r.g, r.weight, r.grad_y, r.grad_theta, r.grad_phi,
                                        r.grad_g, r.grad_weight);
  // ---
  CHECK(ob == std::vector<float>(ob.size(), 8.f));
  CHECK(gwb[0] == doctest::Approx(2 * 384 * 32 * 0.5f));  // the wrapper's options: overwrite
  CHECK(gtb == std::vector<float>(gtb.size(), 32.f));     // (sum_j d_ij) w_theta = 32
}
