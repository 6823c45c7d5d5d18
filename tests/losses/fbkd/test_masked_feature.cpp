// FBKD masked feature loss L_AM: reference, gradients (with and without the channel mask), fused vs
// split, layouts, batch behaviour, degenerate and bad inputs, CPU/GPU agreement.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kdloss/losses/fbkd/masked_feature.hpp"
#include "losses/fbkd/fbkd_gpu.hpp"
#include "losses/fbkd/fbkd_test_util.hpp"

using namespace kdloss;
using fbkd_test::Vec;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

struct Case {
  Dims shape;
  Vec a, t, ms, mc;  // masks as [B,HW] and [B,C]
};
Case make_case(const Dims& shape, std::uint32_t seed) {
  Case c{shape, {}, {}, {}, {}};
  const auto n = static_cast<std::size_t>(shape.product());
  c.a = random_vector<double>(n, seed);
  c.t = random_vector<double>(n, seed + 1);
  c.ms = random_vector<double>(static_cast<std::size_t>(shape[0] * shape[2] * shape[3]), seed + 2, 0.1, 3.0);
  c.mc = random_vector<double>(static_cast<std::size_t>(shape[0] * shape[1]), seed + 3, 0.1, 3.0);
  return c;
}
double ref_value(const Case& c, const Vec& a, bool channel) {
  return kdloss_ref::fbkd::masked_feature(a, c.t, c.ms, channel ? c.mc : Vec{}, fbkd_test::ref_shape(c.shape));
}

template <class T>
struct Run {
  double value;
  Vec grad;
};
/// mode 0: forward only; 1: forward then backward (upstream up); 2: forward_backward.
template <class T>
Run<T> run(const Case& c, bool channel, int mode, double up = 1.0) {
  const std::vector<T> a(c.a.begin(), c.a.end()), t(c.t.begin(), c.t.end()), ms(c.ms.begin(), c.ms.end()),
      mc(c.mc.begin(), c.mc.end());
  std::vector<T> g(a.size(), T(-7));
  T out = T(-7), upv = static_cast<T>(up);
  const Dims& sh = c.shape;
  auto av = host_view(a.data(), sh);
  auto tv = host_view(t.data(), sh);
  auto msv = host_view(ms.data(), {sh[0], sh[2], sh[3]});
  auto mcv = channel ? host_view(mc.data(), {sh[0], sh[1], 1, 1}) : View<const T>{};
  if (mode == 0) fbkd::masked_feature_loss(av, tv, msv, mcv, host_scalar(&out));
  if (mode == 1) {
    fbkd::masked_feature_loss(av, tv, msv, mcv, host_scalar(&out));
    fbkd::masked_feature_loss_backward(av, tv, msv, mcv, host_scalar<const T>(&upv), host_view(g.data(), sh));
  }
  if (mode == 2)
    fbkd::masked_feature_loss_forward_backward(av, tv, msv, mcv, host_scalar(&out), host_view(g.data(), sh));
  return {static_cast<double>(out), Vec(g.begin(), g.end())};
}

}  // namespace

TEST_CASE("fbkd L_AM: value matches the double reference, with and without the channel mask") {
  for (Dims shape : {Dims{2, 5, 4, 3}, Dims{1, 1, 1, 1}, Dims{3, 2, 1, 1}, Dims{2, 1, 3, 4}}) {
    const Case c = make_case(shape, 1);
    for (bool channel : {false, true})
      for (int mode : {0, 1, 2}) {
        CAPTURE(shape.str());
        CAPTURE(channel);
        CAPTURE(mode);
        const double want = ref_value(c, c.a, channel);
        CHECK(run<double>(c, channel, mode).value == doctest::Approx(want).epsilon(1e-13));
        CHECK(run<float>(c, channel, mode).value == doctest::Approx(want).epsilon(1e-5));
      }
  }
}

TEST_CASE("fbkd L_AM: the gradient equals central differences (double), float to 1e-5, upstream scaling") {
  const Case c = make_case({2, 3, 4, 5}, 2);
  for (bool channel : {false, true}) {
    CAPTURE(channel);
    const auto want = kdloss_test::numeric_gradient(c.a, [&](const Vec& a) { return ref_value(c, a, channel); });
    const double tol = 1e-8 * fbkd_test::max_abs(want);
    const auto fused = run<double>(c, channel, 2);
    check_close(fused.grad, want, 1e-7, tol, "fused grad");
    const auto split = run<double>(c, channel, 1, 0.37);
    check_close(split.grad, fbkd_test::scaled(want, 0.37), 1e-7, 0.37 * tol, "backward grad");
    // The formula itself: dL/dA = (A - T) M / L.
    const double l = ref_value(c, c.a, channel);
    Vec closed(c.a.size());
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t ch = 0; ch < 3; ++ch)
        for (std::int64_t p = 0; p < 20; ++p) {
          const auto i = static_cast<std::size_t>((b * 3 + ch) * 20 + p);
          closed[i] = (c.a[i] - c.t[i]) * c.ms[b * 20 + p] * (channel ? c.mc[b * 3 + ch] : 1.0) / l;
        }
    check_close(fused.grad, closed, 1e-12, 1e-15, "closed form");
    const auto f32 = run<float>(c, channel, 2);
    check_close(f32.grad, want, 1e-5, 1e-5 * fbkd_test::max_abs(want), "float grad");
  }
}

TEST_CASE("fbkd L_AM: strided, sliced and broadcast inputs equal their contiguous copies") {
  const Dims shape{2, 4, 3, 5};
  const Case c = make_case(shape, 3);
  const auto n = static_cast<std::size_t>(shape.product());
  const auto a_nhwc = kdloss_test::relayout(c.a, shape, {0, 2, 3, 1});
  const auto t_rev = kdloss_test::relayout(c.t, shape, {3, 2, 1, 0}, 1);
  const auto ms_t = kdloss_test::relayout(c.ms, {2, 1, 3, 5}, {3, 2, 1, 0});
  const auto mc_pad = kdloss_test::relayout(c.mc, {2, 4}, {1, 0}, 3);
  for (bool channel : {false, true}) {
    const auto want = run<double>(c, channel, 2);
    double got = -1;
    Vec zeros(n, 0.0);
    auto g_nhwc = kdloss_test::relayout(zeros, shape, {0, 2, 3, 1});
    fbkd::masked_feature_loss_forward_backward(
        View<const double>(a_nhwc.view), View<const double>(t_rev.view), View<const double>(ms_t.view),
        channel ? View<const double>(mc_pad.view) : View<const double>{}, host_scalar(&got), g_nhwc.view);
    CHECK(got == doctest::Approx(want.value).epsilon(1e-13));
    check_close(kdloss_test::to_vector(g_nhwc.view), want.grad, 1e-13, 1e-16, "grad");
  }
  // A mask broadcast over the batch (stride 0) and a teacher sliced from a larger tensor.
  const auto t_big = random_vector<double>(static_cast<std::size_t>(2 * 8 * 3 * 5), 4);
  auto t_slice = host_view(t_big.data(), {2, 8, 3, 5}).slice(1, 0, 8, 2);
  const auto t_copy = kdloss_test::to_vector(t_slice);
  const Vec ms_one(c.ms.begin(), c.ms.begin() + 15);
  auto ms_bcast = host_view(ms_one.data(), {2, 3, 5}, {0, 5, 1});
  const auto ms_copy = kdloss_test::to_vector(ms_bcast);
  double want = -1, got = -1;
  fbkd::masked_feature_loss(host_view(c.a.data(), shape), host_view(t_copy.data(), shape),
                            host_view(ms_copy.data(), {2, 3, 5}), View<const double>{}, host_scalar(&want));
  fbkd::masked_feature_loss(host_view(c.a.data(), shape), View<const double>(t_slice), View<const double>(ms_bcast),
                            View<const double>{}, host_scalar(&got));
  CHECK(got == doctest::Approx(want).epsilon(1e-13));
}

TEST_CASE("fbkd L_AM: batch behaviour: the square adds over images, gradients follow") {
  const Dims shape{3, 4, 2, 5};
  const Case c = make_case(shape, 5);
  for (bool channel : {false, true}) {
    const auto whole = run<double>(c, channel, 2);
    double sum_sq = 0;
    for (std::int64_t b = 0; b < 3; ++b) {
      double lb = -1;
      Vec gb(40, 0.0);
      auto slice = [&](const Vec& v, const Dims& sh) { return host_view(v.data(), sh).slice(0, b, b + 1); };
      fbkd::masked_feature_loss_forward_backward(slice(c.a, shape), slice(c.t, shape), slice(c.ms, {3, 2, 5}),
                                                 channel ? slice(c.mc, {3, 4}) : View<const double>{}, host_scalar(&lb),
                                                 host_view(gb.data(), {1, 4, 2, 5}));
      sum_sq += lb * lb;
      // d L / d A_b = d L_b / d A_b * L_b / L.
      check_close(fbkd_test::scaled(gb, lb / whole.value),
                  Vec(whole.grad.begin() + b * 40, whole.grad.begin() + (b + 1) * 40), 1e-12, 1e-15, "per-image grad");
    }
    CHECK(std::sqrt(sum_sq) == doctest::Approx(whole.value).epsilon(1e-13));
  }
}

TEST_CASE("fbkd L_AM: A = T gives 0 with a zero (not NaN) gradient; zero features and tiny shapes are finite") {
  for (Dims shape : {Dims{2, 3, 4, 5}, Dims{1, 1, 1, 1}, Dims{2, 1, 1, 3}}) {
    Case c = make_case(shape, 6);
    c.a = c.t;  // identical: the reference code's sum() ** 0.5 has a NaN gradient here
    for (bool channel : {false, true})
      for (int mode : {1, 2}) {
        const auto r = run<float>(c, channel, mode);
        CHECK(r.value == 0.0);
        for (double g : r.grad) CHECK(g == 0.0);
      }
    Case z = make_case(shape, 7);
    std::fill(z.a.begin(), z.a.end(), 0.0);
    std::fill(z.t.begin(), z.t.end(), 0.0);
    const auto r0 = run<double>(z, true, 2);
    CHECK(r0.value == 0.0);
    CHECK(kdloss_test::all_finite(r0.grad));
    const auto r1 = run<double>(make_case(shape, 8), true, 2);
    CHECK(std::isfinite(r1.value));
    CHECK(r1.value > 0);
    CHECK(kdloss_test::all_finite(r1.grad));
  }
}

TEST_CASE("fbkd L_AM: bad inputs throw a clear error and leave outputs untouched") {
  const Dims shape{2, 3, 4, 5};
  const Case c = make_case(shape, 9);
  const std::vector<float> a(c.a.begin(), c.a.end()), t(c.t.begin(), c.t.end()), ms(c.ms.begin(), c.ms.end()),
      mc(c.mc.begin(), c.mc.end());
  std::vector<float> g(a.size(), 42.0f);
  float out = 42.0f, one = 1.0f;
  auto av = host_view(a.data(), shape);
  auto tv = host_view(t.data(), shape);
  auto msv = host_view(ms.data(), {2, 4, 5});
  auto mcv = host_view(mc.data(), {2, 3});
  auto gv = host_view(g.data(), shape);
  auto check = [&](auto&& call, const std::string& needle) {
    fbkd_test::expect_error(call, needle);
    CHECK(out == 42.0f);
    for (float v : g) REQUIRE(v == 42.0f);
  };
  check(
      [&] {
        fbkd::masked_feature_loss(av, host_view(t.data(), {2, 3, 20}), msv, mcv, host_scalar(&out));
      },
      "kdloss::fbkd::masked_feature_loss: argument 'teacher' must have rank 4 but has shape [2, 3, 20]");
  check(
      [&] {
        fbkd::masked_feature_loss(host_view(a.data(), {2, 3, 5, 4}), tv, msv, mcv, host_scalar(&out));
      },
      "arguments 'student_adapted' [2, 3, 5, 4] and 'teacher' [2, 3, 4, 5] must have the same shape");
  check(
      [&] {
        fbkd::masked_feature_loss(av, tv, host_view(ms.data(), {2, 20}), mcv, host_scalar(&out));
      },
      "argument 'mask_spatial' has shape [2, 20] but expected [2, 1, 4, 5] or [2, 4, 5]");
  check(
      [&] {
        fbkd::masked_feature_loss(av, tv, msv, host_view(mc.data(), {2, 3, 1}), host_scalar(&out));
      },
      "argument 'mask_channel' has shape [2, 3, 1] but expected [2, 3] or [2, 3, 1, 1]");
  check([&] { fbkd::masked_feature_loss(av, tv, View<const float>{}, mcv, host_scalar(&out)); },
        "argument 'mask_spatial' is absent but L_AM needs the spatial mask");
  check([&] { fbkd::masked_feature_loss(av, tv, msv, mcv, host_scalar(static_cast<float*>(nullptr))); },
        "argument 'out' has a null data pointer");
  check([&] { fbkd::masked_feature_loss(av, tv, msv, mcv, host_view(g.data(), {2})); },
        "argument 'out' must hold exactly one element");
  check(
      [&] {
        fbkd::masked_feature_loss(av, tv, msv, cuda_view(mc.data(), {2, 3}), host_scalar(&out));
      },
      "argument 'mask_channel' is on cuda:0 but the call runs on host");
  check(
      [&] {
        fbkd::masked_feature_loss_backward(av, tv, msv, mcv, host_scalar(&one),
                                           host_view(g.data(), shape, {0, 20, 5, 1}));
      },
      "'grad_student_adapted' with shape [2, 3, 4, 5] and strides [0, 20, 5, 1] addresses some element twice");
  check(
      [&] {
        fbkd::masked_feature_loss_backward(av, tv, msv, mcv, host_view(&one, {1, 1, 2}), gv);
      },
      "argument 'grad_out' must hold one element");
  check([&] { fbkd::masked_feature_loss_forward_backward(av, tv, msv, mcv, host_scalar(g.data() + 3), gv); },
        "'grad_student_adapted' overlaps the memory of argument 'out'");
  check([&] { fbkd::masked_feature_loss_forward_backward(av, tv, msv, mcv, host_scalar(&out), View<float>{}); },
        "argument 'grad_student_adapted' is absent but this call writes the gradient there");
  {
    std::vector<float> a_copy = a;
    fbkd_test::expect_error(
        [&] {
          fbkd::masked_feature_loss_backward(host_view<const float>(a_copy.data(), shape), tv, msv, mcv,
                                             host_scalar(&one), host_view(a_copy.data(), shape));
        },
        "'grad_student_adapted' overlaps the memory of argument 'student_adapted'");
    CHECK(a_copy == a);
  }
  alignas(256) static unsigned char small[256];
  check(
      [&] {
        fbkd::masked_feature_loss(av, tv, msv, mcv, host_scalar(&out), Exec{Workspace{small, 8}, Stream()});
      },
      "argument 'workspace' has 8 bytes but this call needs");
  // The query answers for a GPU call even here: one slot, plus the reduction partials.
  CHECK(fbkd::masked_feature_loss_workspace_bytes(cuda_view(a.data(), shape)) >
        fbkd::masked_feature_loss_workspace_bytes(av));
}

KDLOSS_GPU_TEST("fbkd L_AM: GPU agrees with CPU (float, double, half; fused and split)") {
#if KDLOSS_TEST_CUDA
  for (Dims shape : {Dims{2, 16, 9, 13}, Dims{1, 3, 1, 1}}) {
    const Case c = make_case(shape, 10);
    for (bool channel : {false, true})
      for (bool fused : {true, false}) {
        CAPTURE(shape.str());
        CAPTURE(channel);
        CAPTURE(fused);
        const double up = fused ? 1.0 : 0.5;
        const auto want = run<double>(c, channel, fused ? 2 : 1, up);
        const Vec mc = channel ? c.mc : Vec{};
        const auto d = kdloss_test::masked_feature_on_gpu(1, c.a, c.t, c.ms, mc, shape, fused, up);
        CHECK(d.value == doctest::Approx(want.value).epsilon(1e-12));
        check_close(d.grad, want.grad, 1e-12, 1e-15, "double grad");
        const auto f = kdloss_test::masked_feature_on_gpu(0, c.a, c.t, c.ms, mc, shape, fused, up);
        CHECK(f.value == doctest::Approx(want.value).epsilon(1e-5));
        check_close(f.grad, want.grad, 1e-5, 1e-5 * fbkd_test::max_abs(want.grad), "float grad");
        const auto h = kdloss_test::masked_feature_on_gpu(2, c.a, c.t, c.ms, mc, shape, fused, up);
        CHECK(h.value == doctest::Approx(want.value).epsilon(2e-2));
        check_close(h.grad, want.grad, 2e-2, 2e-2 * fbkd_test::max_abs(want.grad), "half grad");
      }
  }
#endif
}

TEST_CASE("fbkd L_AM: NaN and +-inf in A, T or the masks propagate as PyTorch autograd's") {
  // sum((T - A)^2 * M) ** 0.5: a NaN anywhere makes L_AM and every gradient entry NaN; an inf makes
  // L_AM inf and the gradient 0 except NaN where the inf enters (0 * inf), as autograd computes it.
  const Dims shape{2, 3, 4, 5};
  const auto rs = fbkd_test::ref_shape(shape);
  for (bool channel : {false, true})
    for (int input = 0; input < 4; ++input)
      for (double v : {std::nan(""), HUGE_VAL, -HUGE_VAL}) {
        if (input == 3 && !channel) continue;
        Case c = make_case(shape, 80);
        Vec& target = input == 0 ? c.a : input == 1 ? c.t : input == 2 ? c.ms : c.mc;
        target[5] = input >= 2 && v < 0 ? -v : v;  // masks are >= 0: +inf
        CAPTURE(channel);
        CAPTURE(input);
        CAPTURE(v);
        Vec want(c.a.size(), 0.0), want_up(c.a.size(), 0.0);
        const Vec mc = channel ? c.mc : Vec{};
        const double value = kdloss_ref::fbkd::masked_feature_autograd(c.a, c.t, c.ms, mc, rs, 1.0, &want);
        kdloss_ref::fbkd::masked_feature_autograd(c.a, c.t, c.ms, mc, rs, 0.6, &want_up);
        const auto fused = run<double>(c, channel, 2), split = run<double>(c, channel, 1, 0.6);
        const auto f32 = run<float>(c, channel, 2);
        kdloss_test::check_same_nonfinite(Vec{fused.value}, Vec{value}, 1e-12, 0, "value");
        kdloss_test::check_same_nonfinite(Vec{f32.value}, Vec{value}, 1e-5, 0, "float value");
        kdloss_test::check_same_nonfinite(fused.grad, want, 1e-10, 1e-16, "fused");
        kdloss_test::check_same_nonfinite(split.grad, want_up, 1e-10, 1e-16, "backward");
        kdloss_test::check_same_nonfinite(f32.grad, want, 1e-4, 1e-9, "float");
      }
}
