// kornia's ssim / ssim_loss and the thesis' structural-distillation loss (exponents, nu, pyramid sum):
// values against the naive double reference, gradients against central differences, layouts,
// degenerate inputs, bad input, CPU/GPU agreement.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kdloss/losses/ssim/ssim.hpp"
#include "losses/ssim/ssim_gpu.hpp"
#include "losses/ssim/ssim_test_util.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;
using namespace kdloss_test::ssim;

namespace {

const ops::Padding kPaddings[] = {ops::Padding::reflect, ops::Padding::zeros, ops::Padding::valid};
const Reduction kReductions[] = {Reduction::mean, Reduction::sum, Reduction::none};

ref::Kind loss_kind(const SsimOptions& o) { return o.clamp ? ref::Kind::clamped_loss : ref::Kind::half_loss; }

/// The reference loss: one element (mean/sum) or the map.
std::vector<double> ref_loss(const std::vector<double>& s, const std::vector<double>& t, const Dims& d,
                             const SsimOptions& o, Reduction r) {
  const auto map = ref::value_map(s, t, ref_shape(d), ref_opts(o, loss_kind(o)));
  if (r == Reduction::none) return map;
  return {r == Reduction::mean ? ref::mean(map) : ref::sum(map)};
}

Dims map_shape(const Dims& d, const SsimOptions& o) {
  if (o.padding != ops::Padding::valid) return d;
  return Dims{d[0], d[1], d[2] - o.window_size + 1, d[3] - o.window_size + 1};
}

/// Inputs in [0, 1] with the teacher correlated with the student, so SSIM takes all signs.
void make_pair(const Dims& d, std::uint32_t seed, std::vector<double>& s, std::vector<double>& t) {
  const auto n = static_cast<std::size_t>(d.product());
  s = random_vector<double>(n, seed, 0.0, 1.0);
  t = random_vector<double>(n, seed + 1, 0.0, 1.0);
  for (std::size_t i = 0; i < n; ++i) t[i] = 0.6 * s[i] + 0.4 * t[i];
}

/// Checks d loss/d student (and teacher) of ssim_loss_backward against central differences of the
/// reference at probe positions, for an upstream gradient (0.7, or a random map for none).
void check_gradients(const Dims& d, const SsimOptions& o, Reduction r, bool teacher, std::uint32_t seed,
                     double tol = 1e-6) {
  std::vector<double> s, t;
  make_pair(d, seed, s, t);
  const Dims md = map_shape(d, o);
  const auto up = r == Reduction::none ? random_vector<double>(static_cast<std::size_t>(md.product()), seed + 2)
                                       : std::vector<double>{0.7};
  std::vector<double> gs(s.size(), -1.0), gt(s.size(), -1.0);
  const auto upv = r == Reduction::none ? host_view(up.data(), md) : host_scalar(up.data());
  if (teacher)
    ssim_loss_backward(host_view(s.data(), d), host_view(t.data(), d), upv, host_view(gs.data(), d),
                       host_view(gt.data(), d), o, r);
  else
    ssim_loss_backward(host_view(s.data(), d), host_view(t.data(), d), upv, host_view(gs.data(), d), o, r);
  const auto at = probe_positions(d);
  const auto want_s = numeric_at(s, at, [&](const std::vector<double>& x) { return weighted(ref_loss(x, t, d, o, r), up); });
  check_close(pick(gs, at), want_s, tol, tol * 1e-2, "grad_student");
  if (teacher) {
    const auto want_t =
        numeric_at(t, at, [&](const std::vector<double>& y) { return weighted(ref_loss(s, y, d, o, r), up); });
    check_close(pick(gt, at), want_t, tol, tol * 1e-2, "grad_teacher");
  }
}

}  // namespace

TEST_CASE("ssim_loss matches the double reference (every padding, windows 3 to 15, every reduction)") {
  const Dims d{2, 3, 15, 19};
  std::vector<double> s, t;
  make_pair(d, 1, s, t);
  const std::vector<float> sf(s.begin(), s.end()), tf(t.begin(), t.end());
  for (ops::Padding pad : kPaddings)
    for (int window = 3; window <= 15; window += 2)
      for (Reduction r : kReductions) {
        SsimOptions o;
        o.window_size = window;
        o.padding = pad;
        const std::string pad_name = ops::to_string(pad);
        CAPTURE(pad_name);
        CAPTURE(window);
        const std::string red_name = to_string(r);
        CAPTURE(red_name);
        const Dims md = map_shape(d, o);
        const auto want = ref_loss(s, t, d, o, r);
        const bool none = r == Reduction::none;
        std::vector<double> got(want.size());
        std::vector<float> gotf(want.size());
        ssim_loss(host_view(s.data(), d), host_view(t.data(), d), none ? host_view(got.data(), md) : host_scalar(got.data()),
                  o, r);
        ssim_loss(host_view(sf.data(), d), host_view(tf.data(), d),
                  none ? host_view(gotf.data(), md) : host_scalar(gotf.data()), o, r);
        check_close(got, want, 1e-12, 1e-14, "double");
        // float: statistics accumulate in float; 1e-5 relative as DESIGN asks (the map's values are
        // in [0, 1], so an absolute 1e-6 floor covers values near 0).
        check_close(gotf, want, 1e-5, 1e-6, "float");
      }
}

TEST_CASE("ssim_map is kornia's SSIM map; the three-component form equals it at unit exponents") {
  const Dims d{1, 2, 16, 13};
  std::vector<double> s, t;
  make_pair(d, 3, s, t);
  for (ops::Padding pad : kPaddings) {
    SsimOptions o;
    o.padding = pad;
    o.window_size = 7;
    const std::string pad_name = ops::to_string(pad);
        CAPTURE(pad_name);
    const Dims md = map_shape(d, o);
    std::vector<double> map(static_cast<std::size_t>(md.product())), three(map.size());
    ssim_map(host_view(s.data(), d), host_view(t.data(), d), host_view(map.data(), md), o);
    check_close(map, ref::value_map(s, t, ref_shape(d), ref_opts(o, ref::Kind::index)), 1e-12, 1e-14);
    // l c s with C3 = C2/2 is (2 cov + C2)/(var_x + var_y + C2) * l: the two-factor form (eps = 0).
    o.eps = 0;
    ssim_map(host_view(s.data(), d), host_view(t.data(), d), host_view(map.data(), md), o);
    o.three_component = true;
    ssim_map(host_view(s.data(), d), host_view(t.data(), d), host_view(three.data(), md), o);
    check_close(three, map, 1e-12, 1e-14, "three-component vs two-factor");
  }
}

TEST_CASE("ssim_loss with exponents (thesis table 2) and without the clamp matches the reference") {
  const Dims d{2, 2, 14, 12};
  std::vector<double> s, t;
  make_pair(d, 5, s, t);
  const double sets[][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {0, 1, 1}, {1, 1, 1}, {0.5, 2, 1.5}, {2, 0.7, 0.3}};
  for (const auto& e : sets)
    for (bool clamp : {true, false}) {
      SsimOptions o;
      o.alpha = e[0], o.beta = e[1], o.gamma = e[2];
      o.three_component = true;
      o.clamp = clamp;
      o.window_size = 5;
      CAPTURE(e[0]);
      CAPTURE(e[1]);
      CAPTURE(e[2]);
      double got = 0;
      ssim_loss(host_view(s.data(), d), host_view(t.data(), d), host_scalar(&got), o);
      CHECK(got == doctest::Approx(ref_loss(s, t, d, o, Reduction::mean)[0]).epsilon(1e-12));
    }
}

TEST_CASE("ssim_loss gradients equal central differences (every padding, windows 3 to 15, double)") {
  for (ops::Padding pad : kPaddings)
    for (int window = 3; window <= 15; window += 2) {
      const std::string pad_name = ops::to_string(pad);
        CAPTURE(pad_name);
      CAPTURE(window);
      SsimOptions o;
      o.padding = pad;
      o.window_size = window;
      o.sigma = 0.5 + 0.2 * window;
      const Dims d = pad == ops::Padding::valid ? Dims{1, 2, window + 3, window + 2} : Dims{1, 2, 11, 9};
      check_gradients(d, o, Reduction::mean, false, 10 + window);
    }
}

TEST_CASE("ssim_loss gradients: reductions, teacher, nu, exponents, no clamp, tiny maps (double)") {
  SsimOptions base;
  base.window_size = 5;
  const Dims d{2, 2, 9, 10};
  for (Reduction r : kReductions) {
    const std::string red_name = to_string(r);
        CAPTURE(red_name);
    check_gradients(d, base, r, true, 30);
  }
  SUBCASE("nu: per-plane min-max normalisation") {
    SsimOptions o = base;
    o.normalize = true;
    check_gradients(d, o, Reduction::mean, true, 31);
    o.padding = ops::Padding::valid;
    check_gradients(d, o, Reduction::none, false, 32);
  }
  SUBCASE("exponents: structure only, contrast and structure, fractional") {
    const double sets[][3] = {{0, 0, 1}, {0, 1, 1}, {1, 0.5, 2}, {0.7, 1.3, 0.9}};
    for (const auto& e : sets) {
      SsimOptions o = base;
      o.alpha = e[0], o.beta = e[1], o.gamma = e[2];
      CAPTURE(e[0]);
      CAPTURE(e[1]);
      CAPTURE(e[2]);
      check_gradients(d, o, Reduction::mean, true, 33, 1e-5);
    }
    SsimOptions o = base;
    o.three_component = true;
    check_gradients(d, o, Reduction::sum, true, 34);
  }
  SUBCASE("thesis equation 4 without the clamp, other constants") {
    SsimOptions o = base;
    o.clamp = false;
    o.max_val = 2.0;
    o.k1 = 0.05;
    o.k2 = 0.1;
    o.padding = ops::Padding::zeros;
    check_gradients(d, o, Reduction::mean, true, 35);
  }
  SUBCASE("maps smaller than the window (reflect repeats, zeros pad)") {
    SsimOptions o;
    o.window_size = 11;
    check_gradients(Dims{1, 1, 3, 5}, o, Reduction::mean, true, 36);
    check_gradients(Dims{1, 2, 1, 4}, o, Reduction::none, false, 37);
    o.padding = ops::Padding::zeros;
    check_gradients(Dims{1, 1, 4, 2}, o, Reduction::mean, true, 38);
  }
}

TEST_CASE("ssim_map_backward equals central differences of <grad_map, S>") {
  const Dims d{1, 2, 10, 12};
  std::vector<double> s, t;
  make_pair(d, 40, s, t);
  for (ops::Padding pad : kPaddings) {
    SsimOptions o;
    o.window_size = 5;
    o.padding = pad;
    const Dims md = map_shape(d, o);
    const auto up = random_vector<double>(static_cast<std::size_t>(md.product()), 41);
    std::vector<double> gx(s.size()), gy(s.size());
    ssim_map_backward(host_view(s.data(), d), host_view(t.data(), d), host_view(up.data(), md), host_view(gx.data(), d),
                      host_view(gy.data(), d), o);
    const auto at = probe_positions(d);
    auto f = [&](const std::vector<double>& x, const std::vector<double>& y) {
      return weighted(ref::value_map(x, y, ref_shape(d), ref_opts(o, ref::Kind::index)), up);
    };
    check_close(pick(gx, at), numeric_at(s, at, [&](const std::vector<double>& x) { return f(x, t); }), 1e-6, 1e-8);
    check_close(pick(gy, at), numeric_at(t, at, [&](const std::vector<double>& y) { return f(s, y); }), 1e-6, 1e-8);
  }
}

TEST_CASE("forward_backward equals forward then backward with a unit upstream gradient") {
  const Dims d{2, 3, 12, 14};
  std::vector<double> s, t;
  make_pair(d, 50, s, t);
  const std::vector<float> sf(s.begin(), s.end()), tf(t.begin(), t.end());
  for (Reduction r : kReductions)
    for (bool normalize : {false, true}) {
      SsimOptions o;
      o.normalize = normalize;
      o.window_size = 7;
      const std::string red_name = to_string(r);
        CAPTURE(red_name);
      CAPTURE(normalize);
      const bool none = r == Reduction::none;
      const auto n = sf.size();
      std::vector<float> v1(none ? n : 1), v2(none ? n : 1), g1(n), g2(n), t1(n), t2(n), ones(n, 1.0f);
      auto sv = host_view(sf.data(), d);
      auto tv = host_view(tf.data(), d);
      ssim_loss(sv, tv, none ? host_view(v1.data(), d) : host_scalar(v1.data()), o, r);
      ssim_loss_backward(sv, tv, none ? host_view<const float>(ones.data(), d) : host_scalar<const float>(ones.data()),
                         host_view(g1.data(), d), host_view(t1.data(), d), o, r);
      ssim_loss_forward_backward(sv, tv, none ? host_view(v2.data(), d) : host_scalar(v2.data()), host_view(g2.data(), d),
                                 host_view(t2.data(), d), o, r);
      // float: the fused pass evaluates values in the gradient loop, which the compiler may contract
      // into FMAs differently: a few float roundings apart.
      check_close(v2, v1, 1e-5, 0, "value");
      check_close(g2, g1, 1e-5, 1e-12, "grad_student");
      check_close(t2, t1, 1e-5, 1e-12, "grad_teacher");
    }
}

TEST_CASE("channel-last, padded, sliced and reversed inputs equal their contiguous copies") {
  const Dims d{2, 4, 11, 13};
  std::vector<double> s, t;
  make_pair(d, 60, s, t);
  const auto n = s.size();
  const auto s_nhwc = kdloss_test::relayout(s, d, {0, 2, 3, 1});
  const auto t_pad = kdloss_test::relayout(t, d, {0, 1, 2, 3}, 5);
  const auto t_rev = kdloss_test::relayout(t, d, {3, 2, 1, 0});
  for (ops::Padding pad : kPaddings) {
    SsimOptions o;
    o.window_size = 5;
    o.padding = pad;
    o.normalize = pad == ops::Padding::zeros;
    const std::string pad_name = ops::to_string(pad);
        CAPTURE(pad_name);
    double want = 0, got1 = 0, got2 = 0;
    std::vector<double> g_want(n), gt_want(n), g_got(n), gt_got(n);
    ssim_loss_forward_backward(host_view(s.data(), d), host_view(t.data(), d), host_scalar(&want),
                               host_view(g_want.data(), d), host_view(gt_want.data(), d), o);
    auto g_nhwc = kdloss_test::relayout(g_got, d, {0, 3, 2, 1}, 2);
    auto gt_nhwc = kdloss_test::relayout(gt_got, d, {0, 2, 3, 1});
    ssim_loss_forward_backward(View<const double>(s_nhwc.view), View<const double>(t_pad.view), host_scalar(&got1),
                               g_nhwc.view, gt_nhwc.view, o);
    ssim_loss(View<const double>(s_nhwc.view), View<const double>(t_rev.view), host_scalar(&got2), o);
    CHECK(got1 == doctest::Approx(want).epsilon(1e-13));
    CHECK(got2 == doctest::Approx(want).epsilon(1e-13));
    check_close(kdloss_test::to_vector(g_nhwc.view), g_want, 1e-12, 1e-16, "grad_student");
    check_close(kdloss_test::to_vector(gt_nhwc.view), gt_want, 1e-12, 1e-16, "grad_teacher");
  }
  // Every other channel of a wider tensor, and a view with negative strides (flipped rows).
  const Dims wide{2, 8, 11, 13};
  const auto big = random_vector<double>(static_cast<std::size_t>(wide.product()), 61, 0, 1);
  auto sliced = host_view(big.data(), wide).slice(1, 1, 8, 2);
  const auto sliced_copy = kdloss_test::to_vector(sliced);
  double want = 0, got = 0;
  ssim_loss(host_view(sliced_copy.data(), d), host_view(t.data(), d), host_scalar(&want));
  ssim_loss(View<const double>(sliced), host_view(t.data(), d), host_scalar(&got));
  CHECK(got == doctest::Approx(want).epsilon(1e-13));
  auto flipped = host_view(s.data() + 10 * 13, d, {4 * 11 * 13, 11 * 13, -13, 1});
  const auto flipped_copy = kdloss_test::to_vector(flipped);
  ssim_loss(host_view(flipped_copy.data(), d), host_view(t.data(), d), host_scalar(&want));
  ssim_loss(View<const double>(flipped), host_view(t.data(), d), host_scalar(&got));
  CHECK(got == doctest::Approx(want).epsilon(1e-13));
}

TEST_CASE("student = teacher gives loss 0 and a zero gradient (kornia form)") {
  const Dims d{2, 3, 10, 9};
  const auto n = static_cast<std::size_t>(d.product());
  const auto s = random_vector<double>(n, 70, 0, 1);
  for (ops::Padding pad : kPaddings) {
    const std::string pad_name = ops::to_string(pad);
        CAPTURE(pad_name);
    SsimOptions o;
    o.window_size = 5;
    o.padding = pad;
    o.eps = 0;  // exact: S = A1 A2 / (B1 B2) = 1 when x = y (A1 = B1, A2 = B2 term by term)
    double loss = -1;
    std::vector<double> g(n, -1.0);
    ssim_loss_forward_backward(host_view(s.data(), d), host_view(s.data(), d), host_scalar(&loss), host_view(g.data(), d), o);
    CHECK(std::fabs(loss) <= 1e-14);
    for (double v : g) REQUIRE(std::fabs(v) <= 1e-12);
    // kornia's eps = 1e-12: S = B1 B2 / (B1 B2 + eps), so the loss is at most eps / (2 C1 C2)
    // = 1e-12 / (2 * 1e-4 * 9e-4) ~ 5.6e-6 (B1 >= C1, B2 >= C2), and the gradient is O(eps) too.
    o.eps = 1e-12;
    ssim_loss_forward_backward(host_view(s.data(), d), host_view(s.data(), d), host_scalar(&loss), host_view(g.data(), d), o);
    CHECK(loss >= 0.0);
    CHECK(loss <= 1e-12 / (2 * 1e-4 * 9e-4));
    for (double v : g) REQUIRE(std::fabs(v) <= 1e-6);
  }
}

TEST_CASE("constant patches, zero maps and anti-correlated inputs give finite values and gradients") {
  const Dims d{1, 2, 12, 11};
  const auto n = static_cast<std::size_t>(d.product());
  std::vector<double> s = random_vector<double>(n, 80, 0, 1), t(n);
  std::vector<double> constant(n, 0.3), zeros(n, 0.0);
  for (std::size_t i = 0; i < n; ++i) t[i] = 1.0 - s[i];  // anti-correlated: cov = -var, s = -1 in the limit
  // Half of every plane constant in the student.
  std::vector<double> half_flat = s;
  for (std::size_t i = 0; i < n; ++i)
    if ((i / 11) % 12 < 6) half_flat[i] = 0.5;
  struct Pair {
    const std::vector<double>* a;
    const std::vector<double>* b;
  };
  const Pair pairs[] = {{&constant, &s}, {&constant, &constant}, {&zeros, &zeros}, {&zeros, &s}, {&s, &t}, {&half_flat, &t}};
  const double sets[][3] = {{1, 1, 1}, {0, 1, 1}, {1, 1, 0.5}, {1, 0.5, 1}};
  for (const auto& e : sets)
    for (bool normalize : {false, true})
      for (const Pair& p : pairs) {
        SsimOptions o;
        o.alpha = e[0], o.beta = e[1], o.gamma = e[2], o.normalize = normalize;
        o.window_size = 5;
        double loss = -1;
        std::vector<double> gs(n), gt(n);
        ssim_loss_forward_backward(host_view(p.a->data(), d), host_view(p.b->data(), d), host_scalar(&loss),
                                   host_view(gs.data(), d), host_view(gt.data(), d), o);
        CHECK(std::isfinite(loss));
        CHECK(kdloss_test::all_finite(gs));
        CHECK(kdloss_test::all_finite(gt));
        CAPTURE(e[0]);
        CAPTURE(e[1]);
        CAPTURE(e[2]);
        CAPTURE(normalize);
        CAPTURE(&p - pairs);
        // A constant patch has variance 0 up to rounding (~1e-17), whose square root (~3e-9) enters c and s;
        // with a fractional beta or gamma the value is not differentiable there and that rounding shows
        // at ~1e-7 relative. Elsewhere the library and the reference agree to 1e-10.
        const bool fractional = (e[1] != 0 && e[1] != 1) || (e[2] != 0 && e[2] != 1);
        CHECK(loss == doctest::Approx(ref_loss(*p.a, *p.b, d, o, Reduction::mean)[0]).epsilon(fractional ? 1e-5 : 1e-10));
      }
  // Anti-correlated with the default options: S < 0 and the loss lies above 1/2.
  double loss = 0;
  ssim_loss(host_view(s.data(), d), host_view(t.data(), d), host_scalar(&loss));
  CHECK(loss > 0.5);
}

TEST_CASE("the clamp of (1 - S)/2 passes the gradient on [0, 1] (bounds included) and stops it outside") {
  using ssim::detail::finish;
  using ssim::detail::ValueKind;
  double d = 0;
  CHECK(finish(ValueKind::clamped_loss, 0.2, &d) == doctest::Approx(0.4));
  CHECK(d == -0.5);
  CHECK(finish(ValueKind::clamped_loss, 1.0, &d) == 0.0);  // (1 - 1)/2 = 0: bound, gradient passes
  CHECK(d == -0.5);
  CHECK(finish(ValueKind::clamped_loss, 1.5, &d) == 0.0);  // (1 - 1.5)/2 < 0: clamped, no gradient
  CHECK(d == 0.0);
  CHECK(finish(ValueKind::clamped_loss, -1.5, &d) == 1.0);  // (1 + 1.5)/2 > 1: clamped
  CHECK(d == 0.0);
  CHECK(finish(ValueKind::half_loss, -1.5, &d) == doctest::Approx(1.25));
  CHECK(d == -0.5);
}

TEST_CASE("ssim_pyramid_loss is the sum of the levels' mean losses (thesis equation 1)") {
  const Dims dims[] = {Dims{2, 3, 20, 24}, Dims{2, 3, 10, 12}, Dims{2, 3, 5, 6}};
  std::vector<std::vector<double>> s(3), t(3), g(3);
  std::vector<View<const double>> sv, tv;
  std::vector<View<double>> gv;
  SsimOptions o;
  o.window_size = 5;
  o.normalize = true;
  double want = 0;
  for (int l = 0; l < 3; ++l) {
    make_pair(dims[l], 90 + l, s[l], t[l]);
    g[l].assign(s[l].size(), 0.0);
    sv.push_back(host_view(s[l].data(), dims[l]));
    tv.push_back(host_view(t[l].data(), dims[l]));
    gv.push_back(host_view(g[l].data(), dims[l]));
    want += ref_loss(s[l], t[l], dims[l], o, Reduction::mean)[0];
  }
  double got = 0, fused = 0;
  ssim_pyramid_loss(sv, tv, host_scalar(&got), o);
  CHECK(got == doctest::Approx(want).epsilon(1e-12));
  const double up = 0.5;
  ssim_pyramid_loss_backward(sv, tv, host_scalar<const double>(&up), gv, o);
  for (int l = 0; l < 3; ++l) {
    std::vector<double> level(s[l].size());
    ssim_loss_backward(sv[l], tv[l], host_scalar<const double>(&up), host_view(level.data(), dims[l]), o);
    check_close(g[l], level, 1e-13, 1e-18, "level gradient");
  }
  ssim_pyramid_loss_forward_backward(sv, tv, host_scalar(&fused), gv, o);
  CHECK(fused == doctest::Approx(want).epsilon(1e-12));
  CHECK(ssim_pyramid_loss_workspace_bytes(sv, o) > 0);
}

TEST_CASE("ssim_loss: bad input throws a clear error and leaves outputs untouched") {
  const Dims d{2, 3, 8, 8};
  const auto n = static_cast<std::size_t>(d.product());
  const auto s = random_vector<float>(n, 100, 0, 1), t = random_vector<float>(n, 101, 0, 1);
  std::vector<float> g(n, 42.0f);
  float out = 42.0f, one = 1.0f;
  auto sv = host_view(s.data(), d);
  auto tv = host_view(t.data(), d);
  auto check = [&](auto&& call, const std::string& needle) {
    throws_with(call, needle);
    CHECK(out == 42.0f);
    for (float v : g) REQUIRE(v == 42.0f);
  };
  auto with = [](auto f) {
    SsimOptions o;
    f(o);
    return o;
  };
  check([&] { ssim_loss(sv, tv, host_scalar(&out), with([](SsimOptions& o) { o.window_size = 6; })); },
        "kdloss::ssim_loss: argument 'window_size' must be odd but is 6");
  check([&] { ssim_loss(sv, tv, host_scalar(&out), with([](SsimOptions& o) { o.sigma = -1; })); },
        "'sigma' must be finite and > 0 but is -1");
  check([&] { ssim_loss(sv, tv, host_scalar(&out), with([](SsimOptions& o) { o.padding = ops::Padding::valid; })); },
        "'valid' padding needs maps of at least 11x11 (the window) but the inputs have shape [2, 3, 8, 8]");
  check([&] { ssim_loss(sv, tv, host_scalar(&out), with([](SsimOptions& o) { o.gamma = -0.5; })); },
        "option 'gamma' must be finite and >= 0");
  check([&] { ssim_loss(sv, tv, host_scalar(&out), with([](SsimOptions& o) { o.max_val = 0; })); },
        "option 'max_val' must be finite and > 0");
  check([&] { ssim_loss(sv, host_view(t.data(), {2, 3, 8, 7}), host_scalar(&out)); },
        "'student' [2, 3, 8, 8] and 'teacher' [2, 3, 8, 7] must have the same shape");
  check([&] { ssim_loss(host_view(s.data(), {6, 8, 8}), host_view(t.data(), {6, 8, 8}), host_scalar(&out)); },
        "argument 'student' must have rank 4 but has shape [6, 8, 8]");
  check([&] { ssim_loss(sv, tv, host_view(g.data(), {2, 3, 8, 7}), {}, Reduction::none); },
        "argument 'out' has shape [2, 3, 8, 7] but expected [2, 3, 8, 8]");
  check([&] { ssim_loss(sv, tv, host_scalar(&out), {}, Reduction::batchmean); }, "only kl_div offers");
  check([&] { ssim_loss(sv, cuda_view(t.data(), d), host_scalar(&out)); },
        "'teacher' is on cuda:0 but the call runs on host");
  check([&] { ssim_loss_backward(sv, tv, host_scalar<const float>(&one), host_view(g.data(), d, {0, 64, 8, 1})); },
        "'grad_student' with shape [2, 3, 8, 8] and strides [0, 64, 8, 1] addresses some element twice");
  check([&] { ssim_loss_backward(sv, tv, host_view<const float>(g.data(), {2}), host_view(g.data(), d)); },
        "'grad_out' must hold one element");
  check([&] { ssim_loss_backward(sv, tv, host_scalar<const float>(&one), View<float>{}, View<float>{}); },
        "no gradient requested");
  check([&] { ssim_loss_forward_backward(sv, tv, host_scalar(&out), host_view(g.data(), d), host_view(g.data(), d)); },
        "'grad_student' overlaps the memory of argument 'grad_teacher'");
  {
    std::vector<float> s_copy = s;
    auto s_mut = host_view(s_copy.data(), d);
    throws_with([&] { ssim_loss_backward(View<const float>(s_mut), tv, host_scalar<const float>(&one), s_mut); },
                "'grad_student' overlaps the memory of argument 'student'");
    CHECK(s_copy == s);
  }
  std::vector<View<const float>> two{sv, sv}, one_level{tv};
  check([&] { ssim_pyramid_loss(two, one_level, host_scalar(&out)); }, "2 student levels but 1 teacher levels");
  check([&] { ssim_pyramid_loss(std::vector<View<const float>>{}, std::vector<View<const float>>{}, host_scalar(&out)); },
        "kdloss::ssim_pyramid_loss: argument 'students' is empty");
  {  // messages name the level
    auto t_short = host_view(t.data(), {2, 3, 8, 7});
    std::vector<View<const float>> ss{sv, sv}, ts{tv, t_short};
    check([&] { ssim_pyramid_loss(ss, ts, host_scalar(&out)); },
          "arguments 'students[1]' [2, 3, 8, 8] and 'teachers[1]' [2, 3, 8, 7] must have the same shape");
    std::vector<View<float>> g_one{host_view(g.data(), d)};
    check([&] { ssim_pyramid_loss_forward_backward(two, two, host_scalar(&out), g_one); },
          "argument 'grad_students' must have one view per level (2) but has 1");
    std::vector<View<float>> g_same{host_view(g.data(), d), host_view(g.data(), d)};
    check([&] { ssim_pyramid_loss_forward_backward(two, two, host_scalar(&out), g_same); },
          "'grad_students[1]' overlaps the memory of argument 'grad_students[0]'");
  }
  // GPU calls size their workspace from a host-only build; a host call may pass none.
  CHECK(ssim_loss_workspace_bytes(cuda_view(s.data(), d)) > 0);
  alignas(256) static unsigned char small[256];
  check([&] { ssim_loss(sv, tv, host_scalar(&out), {}, Reduction::mean, Exec{Workspace{small, 8}, Stream()}); },
        "argument 'workspace' has 8 bytes but this call needs");
#if !KDLOSS_CUDA_ENABLED
  check([&] { ssim_loss(cuda_view(s.data(), d), cuda_view(t.data(), d), cuda_scalar(&out)); }, "compiled without CUDA");
#endif
}

KDLOSS_GPU_TEST("ssim_loss / ssim_map: GPU agrees with CPU (paddings, windows, reductions, dtypes, teacher, nu)") {
#if KDLOSS_TEST_CUDA
  const Dims d{2, 5, 37, 45};
  std::vector<double> s, t;
  make_pair(d, 110, s, t);
  for (ops::Padding pad : kPaddings)
    for (int window : {3, 11, 15})
      for (Reduction r : kReductions)
        for (bool fused : {false, true}) {
          const std::string pad_name = ops::to_string(pad);
        CAPTURE(pad_name);
          CAPTURE(window);
          const std::string red_name = to_string(r);
        CAPTURE(red_name);
          CAPTURE(fused);
          kdloss_test::GpuSsimCall call;
          call.kind = kdloss_test::GpuSsimKind::loss;
          call.shape = d;
          call.ssim.window_size = window;
          call.ssim.padding = pad;
          call.ssim.normalize = window == 11;
          call.reduction = r;
          call.fused = fused;
          call.teacher_grad = true;
          call.channel_last = window == 15;
          const Dims md = map_shape(d, call.ssim);
          const bool none = r == Reduction::none;
          std::vector<double> value(none ? static_cast<std::size_t>(md.product()) : 1), gs(s.size()), gt(s.size());
          ssim_loss_forward_backward(host_view(s.data(), d), host_view(t.data(), d),
                                     none ? host_view(value.data(), md) : host_scalar(value.data()),
                                     host_view(gs.data(), d), host_view(gt.data(), d), call.ssim, r);
          call.dtype = 1;
          auto g64 = kdloss_test::ssim_on_gpu(call, s, t);
          check_close(g64.value, value, 1e-12, 1e-14, "double value");
          check_close(g64.grad_s, gs, 1e-10, 1e-14, "double grad_student");
          check_close(g64.grad_t, gt, 1e-10, 1e-14, "double grad_teacher");
          // float and half / bfloat16: the reference is the CPU double run on the inputs as the dtype
          // holds them. Values and gradients accumulate in float; a gradient element sums about taps^2
          // products of partials that cancel, so its error is relative to the largest gradient (1e-4 of
          // it), not to itself; low-precision outputs add the format's rounding (2^-11, 2^-8, twice).
          for (int dtype : {0, 2, 3}) {
            CAPTURE(dtype);
            const auto sr = kdloss_test::as_gpu_dtype(dtype, s), tr = kdloss_test::as_gpu_dtype(dtype, t);
            std::vector<double> value_r(value.size()), gs_r(s.size()), gt_r(s.size());
            ssim_loss_forward_backward(host_view(sr.data(), d), host_view(tr.data(), d),
                                       none ? host_view(value_r.data(), md) : host_scalar(value_r.data()),
                                       host_view(gs_r.data(), d), host_view(gt_r.data(), d), call.ssim, r);
            call.dtype = dtype;
            const auto got = kdloss_test::ssim_on_gpu(call, s, t);
            const double rel = dtype == 0 ? 1e-5 : dtype == 2 ? 1e-3 : 8e-3;
            const auto max_abs = [](const std::vector<double>& v) {
              double m = 0;
              for (double x : v) m = std::max(m, std::fabs(x));
              return m;
            };
            check_close(got.value, value_r, rel, 1e-6 * max_abs(value_r), "value");
            check_close(got.grad_s, gs_r, std::max(rel, 1e-4), 1e-4 * max_abs(gs_r), "grad_student");
            check_close(got.grad_t, gt_r, std::max(rel, 1e-4), 1e-4 * max_abs(gt_r), "grad_teacher");
          }
        }
  // The map and the three-component form.
  kdloss_test::GpuSsimCall call;
  call.kind = kdloss_test::GpuSsimKind::map;
  call.shape = d;
  call.dtype = 1;
  call.teacher_grad = true;
  call.ssim.alpha = 0.5, call.ssim.beta = 1.5, call.ssim.gamma = 2;
  std::vector<double> map(s.size()), gx(s.size()), gy(s.size()), ones(s.size(), 1.0);
  ssim_map(host_view(s.data(), d), host_view(t.data(), d), host_view(map.data(), d), call.ssim);
  ssim_map_backward(host_view(s.data(), d), host_view(t.data(), d), host_view(ones.data(), d), host_view(gx.data(), d),
                    host_view(gy.data(), d), call.ssim);
  auto g = kdloss_test::ssim_on_gpu(call, s, t);
  check_close(g.value, map, 1e-12, 1e-14, "map");
  check_close(g.grad_s, gx, 1e-10, 1e-14, "map grad_x");
  check_close(g.grad_t, gy, 1e-10, 1e-14, "map grad_y");
#endif
}

KDLOSS_GPU_TEST("ssim_loss: a GPU call with a too small or null workspace throws and writes nothing") {
#if KDLOSS_TEST_CUDA
  float after = 0;
  const auto too_small = kdloss_test::ssim_gpu_workspace_error(8, &after);
  CHECK_MESSAGE(too_small.find("argument 'workspace' has 8 bytes but this call needs") != std::string::npos, too_small);
  CHECK(after == 42.0f);
  const auto null_ws = kdloss_test::ssim_gpu_workspace_error(0, &after);
  CHECK_MESSAGE(null_ws.find("argument 'workspace' is null") != std::string::npos, null_ws);
  CHECK(after == 42.0f);
#endif
}

TEST_CASE("ssim entry shape: Args structs, _check, _workspace_bytes and one run per Mode equal the wrappers") {
  const Dims d{2, 2, 14, 16};
  std::vector<double> s, t;
  make_pair(d, 31, s, t);
  const auto sv = host_view<const double>(s.data(), d), tv = host_view<const double>(t.data(), d);
  SsimOptions o;
  o.window_size = 5;
  // ssim_loss(args, forward_backward) == the wrappers, and kdloss:: names are the kdloss::ssim:: ones.
  double want = 0, got = 0;
  std::vector<double> want_gs(s.size()), want_gt(s.size()), gs(s.size(), 3.0), gt(s.size(), 3.0);
  kdloss::ssim_loss_forward_backward(sv, tv, host_scalar(&want), host_view(want_gs.data(), d),
                                     host_view(want_gt.data(), d), o, Reduction::sum);
  ssim::SsimLossArgs<double> a;
  a.student = sv;
  a.teacher = tv;
  a.out = host_scalar(&got);
  a.grad_student = host_view(gs.data(), d);
  a.grad_teacher = host_view(gt.data(), d);
  a.options = o;
  a.reduction = Reduction::sum;
  CHECK(ssim::ssim_loss_workspace_bytes(a) == kdloss::ssim_loss_workspace_bytes(sv, o));
  ssim::ssim_loss_check(a, Mode::forward_backward);
  ssim::ssim_loss(a, Mode::forward_backward);
  CHECK(got == want);
  check_close(gs, want_gs, 0, 0, "grad_student");
  check_close(gt, want_gt, 0, 0, "grad_teacher");
  // _check throws before anything is written: a grad_out that is not one element.
  a.grad_out = host_view<const double>(s.data(), d);
  std::fill(gs.begin(), gs.end(), 3.0);
  throws_with([&] { ssim::ssim_loss(a, Mode::backward); }, "kdloss::ssim_loss_backward: argument 'grad_out' must hold one element");
  for (double v : gs) REQUIRE(v == 3.0);
  throws_with([&] { ssim::ssim_loss_check(a, Mode::backward); }, "kdloss::ssim_loss_check");

  // ssim_map(args, forward_backward): the map and the gradient of its sum.
  ssim::SsimMapArgs<double> m;
  m.student = sv;
  m.teacher = tv;
  m.options = o;
  std::vector<double> map(s.size()), want_map(s.size()), ones(s.size(), 1.0), gm(s.size()), want_gm(s.size());
  kdloss::ssim_map(sv, tv, host_view(want_map.data(), d), o);
  kdloss::ssim_map_backward(sv, tv, host_view<const double>(ones.data(), d), host_view(want_gm.data(), d), o);
  m.out = host_view(map.data(), d);
  m.grad_student = host_view(gm.data(), d);
  CHECK(ssim::ssim_map_workspace_bytes(m) == kdloss::ssim_map_workspace_bytes(sv, o));
  ssim::ssim_map(m, Mode::forward_backward);
  check_close(map, want_map, 0, 0, "map");
  check_close(gm, want_gm, 1e-12, 1e-14, "map gradient");

  // ssim_pyramid_loss(args, mode) == the wrapper.
  ssim::SsimPyramidLossArgs<double> p;
  p.students = {sv, sv};
  p.teachers = {tv, tv};
  p.out = host_scalar(&got);
  p.options = o;
  kdloss::ssim_pyramid_loss(p.students, p.teachers, host_scalar(&want), o);
  ssim::ssim_pyramid_loss(p, Mode::forward);
  CHECK(got == want);
  CHECK(ssim::ssim_pyramid_loss_workspace_bytes(p) == kdloss::ssim_pyramid_loss_workspace_bytes(p.students, o));
}
