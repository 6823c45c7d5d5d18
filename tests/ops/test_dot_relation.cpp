// ops::dot_relation: the reassociated y = theta (phi^T g) / N' against the explicit [N, N'] relation,
// central differences, layouts, GradAccumulate, degenerate sizes, NaN, threads, bad input, GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kdloss/ops/dot_relation.hpp"
#include "ops/relation_fixture.hpp"

#include "support/threads.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::Operand;
using kdloss_test::RelationCase;
using kdloss_test::RelationRun;

namespace {

/// One call in `mode` with every operand in `layout` (gradients over `old` with options.input_grads.beta).
template <class T>
RelationRun run_dot(const RelationCase& rc, Mode mode, int layout = 0, double beta = 0.0,
                    const RelationRun& old = {}, bool divide = true) {
  const auto& d = rc.shape;
  const std::int64_t B = d.batch, N = d.queries, K = d.keys, m = d.embed, c = d.values;
  Operand<T> th(rc.theta, B, N, m, layout), ph(rc.phi, B, K, m, layout), g(rc.g, B, K, c, layout),
      gy(rc.gy, B, N, c, layout);
  const auto fill = [](const std::vector<double>& v, std::int64_t n) {
    return v.empty() ? std::vector<double>(static_cast<std::size_t>(n), -3.0) : v;
  };
  Operand<T> y(fill({}, rc.y_size()), B, N, c, layout), gth(fill(old.theta, rc.theta_size()), B, N, m, layout),
      gph(fill(old.phi, rc.phi_size()), B, K, m, layout), gg(fill(old.g, rc.g_size()), B, K, c, layout);
  ops::DotRelationArgs<T> a;
  a.theta = th.in();
  a.phi = ph.in();
  a.g = g.in();
  if (writes_value(mode)) a.y = y.out();
  if (writes_gradients(mode)) {
    a.grad_y = gy.in();
    a.grad_theta = gth.out();
    a.grad_phi = gph.out();
    a.grad_g = gg.out();
  }
  a.options.input_grads.beta = beta;
  a.options.divide_by_keys = divide;
  ops::dot_relation(a, mode);
  return {y.values(), gth.values(), gph.values(), gg.values(), {}};
}


}  // namespace

TEST_CASE("dot_relation: matches the explicit relation f = theta phi^T / N' in every layout, y and gradients") {
  kdloss_test::for_relation_cases([](const RelationCase& rc, int layout, double beta, std::uint32_t seed) {
    const auto want = rc.shape.backward(false, rc.theta, rc.phi, rc.g, {}, rc.gy);
    const auto want_y = rc.shape.forward(false, rc.theta, rc.phi, rc.g);
    RelationRun old{{}, kdloss_test::random_vector<double>(rc.theta_size(), seed + 5),
                    kdloss_test::random_vector<double>(rc.phi_size(), seed + 6),
                    kdloss_test::random_vector<double>(rc.g_size(), seed + 7), {}};
    if (beta == 0) {  // overwrite never reads the old contents
      old.theta = kdloss_test::nan_vector(rc.theta_size());
      old.phi = kdloss_test::nan_vector(rc.phi_size());
      old.g = kdloss_test::nan_vector(rc.g_size());
    }
    const auto r = run_dot<double>(rc, Mode::forward_backward, layout, beta, old);
    check_close(r.y, want_y, 1e-12, 1e-13, "y");
    check_close(r.theta, kdloss_test::accumulate(want.theta, old.theta, beta), 1e-12, 1e-13, "grad_theta");
    check_close(r.phi, kdloss_test::accumulate(want.phi, old.phi, beta), 1e-12, 1e-13, "grad_phi");
    check_close(r.g, kdloss_test::accumulate(want.g, old.g, beta), 1e-12, 1e-13, "grad_g");
    const auto b = run_dot<double>(rc, Mode::backward, layout, beta, old);  // backward alone recomputes M
    CHECK(b.theta == r.theta);
    CHECK(b.g == r.g);
    const auto rf = run_dot<float>(rc, Mode::forward_backward, layout, beta, old);
    check_close(rf.y, want_y, 1e-5, 1e-6, "y (float)");
    check_close(rf.phi, kdloss_test::accumulate(want.phi, old.phi, beta), 1e-5, 1e-5, "grad_phi (float)");
  });
}

TEST_CASE("dot_relation: central differences of L = sum(grad_y * y) for theta, phi and g") {
  const RelationCase rc(2, 6, 4, 3, 2, 101);
  const auto r = run_dot<double>(rc, Mode::backward);
  const auto numeric = [&](std::vector<double> RelationCase::*field) {
    return kdloss_test::numeric_relation_gradient(rc, field, [](const RelationCase& c) {
      return run_dot<double>(c, Mode::forward).y;
    });
  };
  check_close(r.theta, numeric(&RelationCase::theta), 1e-7, 1e-9, "grad_theta");
  check_close(r.phi, numeric(&RelationCase::phi), 1e-7, 1e-9, "grad_phi");
  check_close(r.g, numeric(&RelationCase::g), 1e-7, 1e-9, "grad_g");
}

TEST_CASE("dot_relation: divide_by_keys = false gives theta phi^T g; N' = 0 gives y = 0 and zero gradients") {
  const RelationCase rc(1, 4, 3, 2, 2, 201);
  const auto y1 = run_dot<double>(rc, Mode::forward, 0, 0.0, {}, false).y;
  auto want = rc.shape.forward(false, rc.theta, rc.phi, rc.g);
  for (auto& v : want) v *= 3;
  check_close(y1, want, 1e-12, 1e-13);

  const RelationCase empty(2, 3, 0, 2, 4, 202);
  const auto r = run_dot<double>(empty, Mode::forward_backward);
  CHECK(r.y == std::vector<double>(2 * 3 * 4, 0.0));
  CHECK(r.theta == std::vector<double>(2 * 3 * 2, 0.0));
  CHECK(r.phi.empty());
  CHECK(r.g.empty());
  const RelationCase no_queries(2, 0, 3, 2, 4, 203);  // grad_phi = grad_g = 0 when nothing asks
  const auto q = run_dot<double>(no_queries, Mode::forward_backward);
  CHECK(q.y.empty());
  CHECK(q.phi == std::vector<double>(2 * 3 * 2, 0.0));
  CHECK(q.g == std::vector<double>(2 * 3 * 4, 0.0));
}

TEST_CASE("dot_relation: NaN propagates as torch's bmm of the explicit relation propagates it") {
  // theta NaN at (image 0, query 2): that row of y. g NaN at (image 1, key 0, channel 1): that channel of
  // every query of image 1 (0 * NaN = NaN in the dense product too). phi NaN at (image 0, key 1): all of
  // image 0.
  RelationCase rc(2, 4, 3, 2, 3, 301);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  rc.theta[(0 * 4 + 2) * 2 + 1] = nan;
  rc.g[(1 * 3 + 0) * 3 + 1] = nan;
  const auto y = run_dot<double>(rc, Mode::forward).y;
  kdloss_test::check_same_nonfinite(y, rc.shape.forward(false, rc.theta, rc.phi, rc.g), 1e-12, 1e-13, "y");
  for (std::int64_t i = 0; i < 4; ++i)
    for (std::int64_t k = 0; k < 3; ++k) {
      CHECK(std::isnan(y[(0 * 4 + i) * 3 + k]) == (i == 2));
      CHECK(std::isnan(y[(1 * 4 + i) * 3 + k]) == (k == 1));
    }
  rc.phi[(0 * 3 + 1) * 2 + 0] = nan;
  const auto y2 = run_dot<double>(rc, Mode::forward).y;
  kdloss_test::check_same_nonfinite(y2, rc.shape.forward(false, rc.theta, rc.phi, rc.g), 1e-12, 1e-13, "y");
  for (std::int64_t e = 0; e < 12; ++e) CHECK(std::isnan(y2[e]));
}

TEST_CASE("dot_relation: a [B, C, H, W] map read by relation_operand equals its [B, H*W, C] copy") {
  const std::int64_t B = 2, C = 3, H = 4, W = 5, K = 6;
  const RelationCase rc(B, H * W, K, C, C, 401);
  // theta and y as channels-first maps; phi, g contiguous.
  std::vector<double> map(static_cast<std::size_t>(B * C * H * W)), ymap(map.size(), -1.0);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t p = 0; p < H * W; ++p)
      for (std::int64_t ch = 0; ch < C; ++ch) map[(b * C + ch) * H * W + p] = rc.theta[(b * H * W + p) * C + ch];
  ops::dot_relation(ops::relation_operand(host_view<const double>(map.data(), {B, C, H, W})),
                    host_view<const double>(rc.phi.data(), {B, K, C}), host_view<const double>(rc.g.data(), {B, K, C}),
                    ops::relation_operand(host_view(ymap.data(), {B, C, H, W})));
  const auto want = rc.shape.forward(false, rc.theta, rc.phi, rc.g);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t p = 0; p < H * W; ++p)
      for (std::int64_t ch = 0; ch < C; ++ch)
        CHECK(ymap[(b * C + ch) * H * W + p] == doctest::Approx(want[(b * H * W + p) * C + ch]).epsilon(1e-12));
  std::vector<double> big(2 * 3 * 4 * 6);
  kdloss_test::expect_error(
      [&] { ops::relation_operand(host_view<const double>(big.data(), {2, 3, 4, 6}).slice(3, 0, 5)); },
      "cannot merge H and W into one strided axis", [] {});
}

TEST_CASE("dot_relation: bits do not depend on the thread count") {
#if KDLOSS_OPENMP
  const RelationCase rc(2, 700, 90, 32, 24, 501);
  kdloss_test::ThreadScope scope(1);
  const auto r1 = run_dot<float>(rc, Mode::forward_backward, 1);
  scope.set(2);
  const auto r2 = run_dot<float>(rc, Mode::forward_backward, 1);
  CHECK(r1.y == r2.y);
  CHECK(r1.theta == r2.theta);
  CHECK(r1.phi == r2.phi);
  CHECK(r1.g == r2.g);
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}

TEST_CASE("dot_relation: bad input throws naming the argument and shapes, and writes nothing") {
  std::vector<float> t(2 * 4 * 3, 1.f), p(2 * 5 * 3, 1.f), g(2 * 5 * 2, 1.f), y(2 * 4 * 2, 9.f), gy(2 * 4 * 2, 1.f),
      gt(2 * 4 * 3, 9.f), gp(2 * 5 * 3, 9.f);
  const auto untouched = [&] {
    CHECK(y == std::vector<float>(y.size(), 9.f));
    CHECK(gt == std::vector<float>(gt.size(), 9.f));
    CHECK(gp == std::vector<float>(gp.size(), 9.f));
  };
  const auto base = [&] {
    ops::DotRelationArgs<float> a;
    a.theta = host_view<const float>(t.data(), {2, 4, 3});
    a.phi = host_view<const float>(p.data(), {2, 5, 3});
    a.g = host_view<const float>(g.data(), {2, 5, 2});
    a.y = host_view(y.data(), {2, 4, 2});
    a.grad_y = host_view<const float>(gy.data(), {2, 4, 2});
    a.grad_theta = host_view(gt.data(), {2, 4, 3});
    a.grad_phi = host_view(gp.data(), {2, 5, 3});
    return a;
  };
  auto a = base();
  a.phi = host_view<const float>(p.data(), {2, 3, 5});
  kdloss_test::expect_error([&] { ops::dot_relation(a, Mode::forward_backward); },
                            "kdloss::ops::dot_relation_forward_backward: argument 'phi' has shape [2, 3, 5] but 'theta' "
                            "[2, 4, 3] asks for [2, N', 3]",
                            untouched);
  a = base();
  a.g = host_view<const float>(g.data(), {2, 2, 5});
  kdloss_test::expect_error([&] { ops::dot_relation(a, Mode::forward); },
                            "argument 'g' has shape [2, 2, 5] but 'phi' [2, 5, 3] asks for [2, 5, c]", untouched);
  a = base();
  a.y = host_view(y.data(), {2, 2, 4});
  kdloss_test::expect_error([&] { ops::dot_relation(a, Mode::forward); }, "argument 'y' has shape [2, 2, 4]", untouched);
  a = base();
  a.theta = host_view<const float>(t.data(), {2, 12});
  kdloss_test::expect_error([&] { ops::dot_relation(a, Mode::forward); }, "'theta'", untouched);
  a = base();
  a.grad_phi = host_view(gp.data(), {2, 5, 3}, {15, 0, 1});  // stride 0: not unique
  kdloss_test::expect_error([&] { ops::dot_relation(a, Mode::backward); }, "grad_phi", untouched);
  a = base();
  a.grad_theta = host_view(const_cast<float*>(t.data()), {2, 4, 3});  // aliases theta
  kdloss_test::expect_error([&] { ops::dot_relation(a, Mode::backward); },
                            "output argument 'grad_theta' overlaps the memory of argument 'theta'", untouched);
  a = base();
  a.grad_y = View<const float>{};
  kdloss_test::expect_error([&] { ops::dot_relation(a, Mode::backward); },
                            "kdloss::ops::dot_relation_backward: argument 'grad_y' is absent but mode backward reads it",
                            untouched);
  a = base();
  a.g = cuda_view<const float>(g.data(), {2, 5, 2});
  kdloss_test::expect_error([&] { ops::dot_relation(a, Mode::forward); }, "argument 'g' is on cuda:0", untouched);
}

KDLOSS_GPU_TEST("dot_relation: GPU agrees with the CPU (float, double; contiguous and channels-first)") {
#if KDLOSS_TEST_CUDA
  const RelationCase rc(2, 37, 9, 8, 5, 601);
  const auto want = rc.shape.backward(false, rc.theta, rc.phi, rc.g, {}, rc.gy);
  std::vector<double> expect = rc.shape.forward(false, rc.theta, rc.phi, rc.g);
  for (const auto* v : {&want.theta, &want.phi, &want.g}) expect.insert(expect.end(), v->begin(), v->end());
  for (int layout : {0, 1})
    for (int dtype : {1, 0, 2, 3}) {
      CAPTURE(layout);
      CAPTURE(dtype);
      const auto got = kdloss_test::relation_on_gpu(false, dtype, layout, rc);
      const double t = dtype == 1 ? 1e-12 : dtype == 0 ? 2e-3 : 5e-2;  // float may run TF32; half/bf16 keep M in T
      check_close(got, expect, t, t);
    }
#endif
}

TEST_CASE("dot_relation: the usage examples of ops/dot_relation.hpp compile and run") {
  std::vector<float> tb(2 * 64 * 16 * 24, 0.5f), pb(2 * 64 * 6, 0.25f), qb(2 * 64 * 6, 1.f), ob(2 * 64 * 16 * 24),
      gob(2 * 64 * 16 * 24, 1.f), gtb(2 * 64 * 16 * 24);
  const float *t = tb.data(), *p = pb.data(), *q = qb.data(), *grad_out = gob.data();
  float *out = ob.data(), *gt = gtb.data();
  {
    std::vector<float> big(2 * 64 * 100 * 168);
    const float* t = big.data();
    // --- from relation_operand's comment ---
    auto theta = kdloss::ops::relation_operand(kdloss::host_view<const float>(t, {2, 64, 100, 168}));  // [2, 16800, 64]
    // ---
    CHECK(theta.shape == Dims{2, 16800, 64});
    CHECK(theta.strides == Dims{64 * 16800, 1, 16800});
  }
  // --- from DotRelationArgs's comment ---
  // non-local block, dot-product mode: theta [2, HW, 64], phi and g pooled to [2, HW/64, 64]
  kdloss::ops::DotRelationArgs<float> r;
  r.theta = kdloss::ops::relation_operand(kdloss::host_view<const float>(t, {2, 64, 16, 24}));
  r.phi = kdloss::ops::relation_operand(kdloss::host_view<const float>(p, {2, 64, 2, 3}));
  r.g = kdloss::ops::relation_operand(kdloss::host_view<const float>(q, {2, 64, 2, 3}));
  r.y = kdloss::ops::relation_operand(kdloss::host_view(out, {2, 64, 16, 24}));
  // --- from dot_relation_check's, dot_relation_workspace_bytes's and dot_relation's comments ---
  kdloss::ops::dot_relation_check(r, kdloss::Mode::forward);   // r: DotRelationArgs's example
  std::size_t bytes = kdloss::ops::dot_relation_workspace_bytes(r);
  kdloss::ops::dot_relation(r, kdloss::Mode::forward);             // r: DotRelationArgs's example
  r.grad_y = kdloss::ops::relation_operand(kdloss::host_view<const float>(grad_out, {2, 64, 16, 24}));
  r.grad_theta = kdloss::ops::relation_operand(kdloss::host_view(gt, {2, 64, 16, 24}));
  kdloss::ops::dot_relation(r, kdloss::Mode::backward);
  // ---
  CHECK(bytes > 0);
  // theta . phi = 64 * 0.125 = 8 for every pair; f = 8/6; y = 6 * f * 1 = 8.
  CHECK(ob == std::vector<float>(ob.size(), 8.f));
  // grad_theta_i = (1/6) sum_j (grad_y_i . g_j) phi_j = (1/6) * 6 * 64 * 0.25 = 16.
  CHECK(gtb == std::vector<float>(gtb.size(), 16.f));
  std::vector<float> gpb(2 * 6 * 64), ggb(2 * 6 * 64);
  r.grad_phi = kdloss::host_view(gpb.data(), {2, 6, 64});
  r.grad_g = kdloss::host_view(ggb.data(), {2, 6, 64});
  std::fill(ob.begin(), ob.end(), 0.f);
  std::fill(gtb.begin(), gtb.end(), 0.f);
  // --- from the wrappers' comments ---
  kdloss::ops::dot_relation(r.theta, r.phi, r.g, r.y);
  kdloss::ops::dot_relation_backward(r.theta, r.phi, r.g, r.grad_y, r.grad_theta, r.grad_phi, r.grad_g);
  kdloss::ops::dot_relation_forward_backward(r.theta, r.phi, r.g, r.grad_y, r.y, r.grad_theta, r.grad_phi,
                                             r.grad_g);
  // ---
  CHECK(ob == std::vector<float>(ob.size(), 8.f));
  CHECK(gtb == std::vector<float>(gtb.size(), 16.f));
  // grad_g_j = sum_i f_ij grad_y_i = 384 * 8/6 per image.
  CHECK(ggb == std::vector<float>(ggb.size(), 384 * 8.f / 6));
}
