// The weighted FBKD total over pyramid levels: presets against the reference, gradients by central
// differences, level and batch behaviour, agreement with the single-term entry points, layouts,
// switched-off terms, degenerate and bad inputs, CPU/GPU agreement.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kdloss/losses/fbkd/fbkd.hpp"
#include "losses/fbkd/fbkd_gpu.hpp"
#include "losses/fbkd/fbkd_test_util.hpp"

using namespace kdloss;
using fbkd_test::Vec;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

std::vector<kdloss_ref::fbkd::Level> two_levels(std::uint32_t seed, bool with_adapted = true) {
  return {fbkd_test::random_level({2, 4, 5, 6}, seed, with_adapted),
          fbkd_test::random_level({2, 4, 3, 3}, seed + 10, with_adapted)};
}

}  // namespace

TEST_CASE("fbkd total: every preset matches the double reference (float and double, forward and fused)") {
  const auto levels = two_levels(1);
  for (const auto& p : fbkd_test::presets()) {
    CAPTURE(std::string(p.name));
    const double want = kdloss_ref::fbkd::total(levels, fbkd_test::ref_config(p.config));
    CHECK(want > 0);
    for (int mode : {0, 2}) {
      CAPTURE(mode);
      CHECK(fbkd_test::run_total<double>(levels, p.config, mode).value == doctest::Approx(want).epsilon(1e-13));
      CHECK(fbkd_test::run_total<float>(levels, p.config, mode).value == doctest::Approx(want).epsilon(1e-5));
    }
  }
}

TEST_CASE("fbkd total: gradients equal central differences for every preset (double), float to 1e-5") {
  for (bool with_adapted : {true, false}) {
    const auto levels = two_levels(2, with_adapted);
    for (const auto& p : fbkd_test::presets()) {
      CAPTURE(std::string(p.name));
      CAPTURE(with_adapted);
      const auto want = fbkd_test::numeric_grads(levels, p.config);
      const auto fused = fbkd_test::run_total<double>(levels, p.config, 2);
      const auto split = fbkd_test::run_total<double>(levels, p.config, 1, 0.6);
      const auto f32 = fbkd_test::run_total<float>(levels, p.config, 2);
      for (std::size_t l = 0; l < levels.size(); ++l) {
        fbkd_test::check_grads(fused.grads[l], want[l], 1e-6, "fused, level " + std::to_string(l), 2e-5);
        const fbkd_test::Grads scaled{fbkd_test::scaled(want[l].a, 0.6), fbkd_test::scaled(want[l].s, 0.6),
                                      fbkd_test::scaled(want[l].c, 0.6), fbkd_test::scaled(want[l].sp, 0.6)};
        fbkd_test::check_grads(split.grads[l], scaled, 1e-6, "backward, level " + std::to_string(l), 2e-5);
        fbkd_test::check_grads(f32.grads[l], want[l], 1e-5, "float, level " + std::to_string(l));
      }
      // The backward writes no value; the fused call writes the forward's.
      CHECK(split.value == -7.0);
      CHECK(fused.value == doctest::Approx(fbkd_test::run_total<double>(levels, p.config, 0).value).epsilon(1e-15));
    }
  }
}

TEST_CASE("fbkd total: gradients are exact where a term's derivative vanishes or is switched off") {
  const auto levels = two_levels(3);
  auto cfg = fbkd::Config::code_two_stage();
  auto r = fbkd_test::run_total<double>(levels, cfg, 2);
  for (const auto& g : r.grads)
    for (double v : g.s) REQUIRE(v == 0.0);  // code form: S only feeds the (detached) masks
  cfg = fbkd::Config::paper_one_stage();
  r = fbkd_test::run_total<double>(levels, cfg, 2);
  for (const auto& g : r.grads) {
    for (double v : g.c) REQUIRE(v == 0.0);  // paper form: C_hat and S_hat are not read
    for (double v : g.sp) REQUIRE(v == 0.0);
  }
  cfg.w_am = 0;
  r = fbkd_test::run_total<double>(levels, cfg, 2);
  CHECK(r.value == doctest::Approx(cfg.w_at * (kdloss_ref::fbkd::transfer_paper(levels[0].s, levels[0].t, levels[0].shape) +
                                               kdloss_ref::fbkd::transfer_paper(levels[1].s, levels[1].t, levels[1].shape)))
                       .epsilon(1e-13));
  for (const auto& g : r.grads)
    for (double v : g.a) REQUIRE(v == 0.0);
  cfg.w_am = 1;
  cfg.w_at = 0;
  r = fbkd_test::run_total<double>(levels, cfg, 2);
  for (const auto& g : r.grads)
    for (double v : g.s) REQUIRE(v == 0.0);
  // With w_am = 0 the code-form L_AT needs no student at all.
  std::vector<double> value(1, -1);
  fbkd::Level<double> lv;
  lv.teacher = host_view(levels[0].t.data(), {2, 4, 5, 6});
  lv.student_channel = host_view(levels[0].c_hat.data(), {2, 4});
  lv.student_spatial = host_view(levels[0].s_hat.data(), {2, 5, 6});
  auto only_at = fbkd::Config::code_two_stage();
  only_at.w_am = 0;
  fbkd::total_loss(std::vector<fbkd::Level<double>>{lv}, host_scalar(value.data()), only_at);
  CHECK(value[0] == doctest::Approx(only_at.w_at * kdloss_ref::fbkd::transfer_code(levels[0].c_hat, levels[0].s_hat,
                                                                           levels[0].t, levels[0].shape))
                        .epsilon(1e-13));
}

TEST_CASE("fbkd total: levels add up (total of two levels = sum of the single-level calls)") {
  const auto levels = two_levels(4);
  for (const auto& p : fbkd_test::presets()) {
    CAPTURE(std::string(p.name));
    const auto both = fbkd_test::run_total<double>(levels, p.config, 2);
    const auto first = fbkd_test::run_total<double>({levels[0]}, p.config, 2);
    const auto second = fbkd_test::run_total<double>({levels[1]}, p.config, 2);
    CHECK(both.value == doctest::Approx(first.value + second.value).epsilon(1e-14));
    fbkd_test::check_grads(both.grads[0], first.grads[0], 1e-14, "level 0");
    fbkd_test::check_grads(both.grads[1], second.grads[0], 1e-14, "level 1");
    // No levels: the sum over nothing.
    double none = -1;
    fbkd::total_loss(std::vector<fbkd::Level<double>>{}, host_scalar(&none), p.config);
    CHECK(none == 0.0);
  }
}

TEST_CASE("fbkd total: batch behaviour (a duplicated batch scales every norm by sqrt 2; images are independent)") {
  const auto one = fbkd_test::random_level({1, 3, 4, 5}, 5);
  kdloss_ref::fbkd::Level twice = one;
  twice.shape.b = 2;
  for (Vec* v : {&twice.s, &twice.t, &twice.a, &twice.c_hat, &twice.s_hat}) v->insert(v->end(), v->begin(), v->end());
  for (const auto& p : fbkd_test::presets()) {
    CAPTURE(std::string(p.name));
    const auto r1 = fbkd_test::run_total<double>({one}, p.config, 2);
    const auto r2 = fbkd_test::run_total<double>({twice}, p.config, 2);
    CHECK(r2.value == doctest::Approx(std::sqrt(2.0) * r1.value).epsilon(1e-13));
    const auto& g1 = r1.grads[0];
    const auto& g2 = r2.grads[0];
    auto halves = [](const Vec& v) {
      return std::pair<Vec, Vec>{Vec(v.begin(), v.begin() + v.size() / 2), Vec(v.begin() + v.size() / 2, v.end())};
    };
    const std::vector<std::pair<const Vec*, const Vec*>> pairs{
        {&g2.a, &g1.a}, {&g2.s, &g1.s}, {&g2.c, &g1.c}, {&g2.sp, &g1.sp}};
    for (const auto& [got, want] : pairs) {
      const auto [h0, h1] = halves(*got);
      const auto expect = fbkd_test::scaled(*want, 1 / std::sqrt(2.0));
      check_close(h0, expect, 1e-12, 1e-300, "image 0");
      check_close(h1, expect, 1e-12, 1e-300, "image 1");
    }
  }
}

TEST_CASE("fbkd total: equals the weighted single-term entry points with masks from attention_masks") {
  const auto lv = fbkd_test::random_level({2, 5, 4, 3}, 6);
  const Dims sh{2, 5, 4, 3};
  auto s = host_view(lv.s.data(), sh);
  auto t = host_view(lv.t.data(), sh);
  auto a = host_view(lv.a.data(), sh);
  for (const auto& p : fbkd_test::presets()) {
    CAPTURE(std::string(p.name));
    const auto& c = p.config;
    Vec ms(24), mc(10);
    fbkd::attention_masks(s, t, host_view(ms.data(), {2, 4, 3}), host_view(mc.data(), {2, 5}), c.mask());
    double am = -1, at = -1;
    fbkd::masked_feature_loss(a, t, host_view<const double>(ms.data(), {2, 4, 3}),
                              c.use_channel_mask ? host_view<const double>(mc.data(), {2, 5}) : View<const double>{},
                              host_scalar(&am));
    if (c.transfer_form == fbkd::TransferForm::paper)
      fbkd::attention_transfer_loss(s, t, host_scalar(&at));
    else
      fbkd::pooled_attention_transfer_loss(host_view(lv.c_hat.data(), {2, 5}), host_view(lv.s_hat.data(), {2, 4, 3}), t,
                                           host_scalar(&at));
    const auto total = fbkd_test::run_total<double>({lv}, c, 0);
    CHECK(total.value == doctest::Approx(c.w_am * am + c.w_at * at).epsilon(1e-13));
  }
}

TEST_CASE("fbkd total: channel-last, padded, permuted, sliced and broadcast views equal their contiguous copies") {
  const Dims sh{2, 4, 3, 5};
  const auto lv = fbkd_test::random_level(sh, 7);
  // A teacher broadcast over the batch (the same image twice, stride 0).
  kdloss_ref::fbkd::Level ref = lv;
  for (std::size_t i = 0; i < 60; ++i) ref.t[60 + i] = ref.t[i];
  const auto s_nhwc = kdloss_test::relayout(lv.s, sh, {0, 2, 3, 1});
  const auto a_rev = kdloss_test::relayout(lv.a, sh, {3, 2, 1, 0}, 1);
  auto t_bcast = host_view(ref.t.data(), sh, {0, 15, 5, 1});
  const auto c_big = [&] {
    Vec big(16, -5.0);
    for (int i = 0; i < 8; ++i) big[2 * i] = lv.c_hat[i];
    return big;
  }();
  auto c_slice = host_view(c_big.data(), {2, 4, 1, 1}, {8, 2, 1, 1});
  const auto sp_t = kdloss_test::relayout(lv.s_hat, {2, 3, 5}, {2, 1, 0});
  for (const auto& p : fbkd_test::presets()) {
    CAPTURE(std::string(p.name));
    const auto want = fbkd_test::run_total<double>({ref}, p.config, 2);
    fbkd::Level<double> x(View<const double>(s_nhwc.view), t_bcast, View<const double>(a_rev.view));
    x.student_channel = c_slice;
    x.student_spatial = View<const double>(sp_t.view);
    Vec z(120, 0.0), zc(8, 0.0), zs(30, 0.0);
    auto ga = kdloss_test::relayout(z, sh, {0, 2, 3, 1});
    auto gs = kdloss_test::relayout(z, sh, {1, 0, 3, 2}, 2);
    auto gc = kdloss_test::relayout(zc, {2, 4}, {1, 0});
    auto gsp = kdloss_test::relayout(zs, {2, 1, 3, 5}, {0, 1, 3, 2});
    x.grad_student_adapted = ga.view;
    x.grad_student = gs.view;
    x.grad_student_channel = gc.view;
    x.grad_student_spatial = gsp.view;
    double value = -1;
    fbkd::total_loss_forward_backward(std::vector<fbkd::Level<double>>{x}, host_scalar(&value), p.config);
    CHECK(value == doctest::Approx(want.value).epsilon(1e-13));
    const fbkd_test::Grads got{kdloss_test::to_vector(ga.view), kdloss_test::to_vector(gs.view),
                               kdloss_test::to_vector(gc.view), kdloss_test::to_vector(gsp.view)};
    fbkd_test::check_grads(got, want.grads[0], 1e-12, "strided");
  }
}

TEST_CASE(
    "fbkd total: degenerate inputs (S = T, all-zero features, H = W = 1, C = 1) give finite values and gradients") {
  for (Dims shape : {Dims{2, 3, 4, 5}, Dims{2, 3, 1, 1}, Dims{2, 1, 4, 3}, Dims{1, 1, 1, 1}}) {
    CAPTURE(shape.str());
    const auto rs = fbkd_test::ref_shape(shape);
    // S = T = A, and adapted pooled features equal to the teacher's: every term is 0.
    kdloss_ref::fbkd::Level same = fbkd_test::random_level(shape, 8);
    same.s = same.a = same.t;
    same.c_hat = kdloss_ref::fbkd::mean_over_positions(same.t, rs, false);
    same.s_hat = kdloss_ref::fbkd::mean_over_channels(same.t, rs, false);
    // All-zero features and pooled features.
    kdloss_ref::fbkd::Level zero = same;
    for (Vec* v : {&zero.s, &zero.a, &zero.t, &zero.c_hat, &zero.s_hat}) std::fill(v->begin(), v->end(), 0.0);
    for (const auto& p : fbkd_test::presets()) {
      CAPTURE(std::string(p.name));
      for (const auto* lv : {&same, &zero}) {
        const auto r = fbkd_test::run_total<float>({*lv}, p.config, 2);
        CHECK(std::fabs(r.value) < 1e-6);
        for (const Vec* g : {&r.grads[0].a, &r.grads[0].s, &r.grads[0].c, &r.grads[0].sp})
          CHECK(kdloss_test::all_finite(*g));
      }
      // Random inputs at the degenerate shapes: finite, and the gradient still checks out.
      const auto rnd = fbkd_test::random_level(shape, 9);
      const auto r = fbkd_test::run_total<double>({rnd}, p.config, 2);
      CHECK(std::isfinite(r.value));
      fbkd_test::check_grads(r.grads[0], fbkd_test::numeric_grads({rnd}, p.config)[0], 1e-6, "degenerate shape", 2e-5);
    }
  }
}

TEST_CASE("fbkd total: bad inputs throw a clear error naming the argument and leave outputs untouched") {
  const Dims sh{2, 3, 4, 5}, sh1{2, 3, 2, 2};
  const auto l0 = fbkd_test::random_level(sh, 10);
  const auto l1 = fbkd_test::random_level(sh1, 11);
  auto make = [](const kdloss_ref::fbkd::Level& l, const Dims& d) {
    fbkd::Level<double> x(host_view(l.s.data(), d), host_view(l.t.data(), d), host_view(l.a.data(), d));
    x.student_channel = host_view(l.c_hat.data(), {d[0], d[1]});
    x.student_spatial = host_view(l.s_hat.data(), {d[0], d[2], d[3]});
    return x;
  };
  Vec g0(120, 42.0), g1(24, 42.0), gc(6, 42.0), gs(40, 42.0);
  double out = 42.0, one = 1.0;
  auto base = [&] {
    std::vector<fbkd::Level<double>> lv{make(l0, sh), make(l1, sh1)};
    lv[0].grad_student_adapted = host_view(g0.data(), sh);
    lv[1].grad_student_adapted = host_view(g1.data(), sh1);
    lv[0].grad_student_channel = host_view(gc.data(), {2, 3});
    lv[0].grad_student_spatial = host_view(gs.data(), {2, 4, 5});
    return lv;
  };
  const auto cfg = fbkd::Config::code_one_stage();
  auto check = [&](auto mutate, const std::string& needle, int mode = 2,
                   fbkd::Config c = fbkd::Config::code_one_stage(), Exec ex = {}) {
    auto lv = base();
    mutate(lv);
    fbkd_test::expect_error(
        [&] {
          if (mode == 0) fbkd::total_loss(lv, host_scalar(&out), c, ex);
          if (mode == 1) fbkd::total_loss_backward(lv, host_scalar<const double>(&one), c, ex);
          if (mode == 2) fbkd::total_loss_forward_backward(lv, host_scalar(&out), c, ex);
        },
        needle);
    CHECK(out == 42.0);
    for (const Vec* v : {&g0, &g1, &gc, &gs})
      for (double x : *v) REQUIRE(x == 42.0);
  };
  using L = std::vector<fbkd::Level<double>>;
  check(
      [&](L& lv) {
        lv[1].teacher = host_view(l1.t.data(), {2, 3, 2, 1});
      },
      "kdloss::fbkd::total_loss_forward_backward: arguments 'levels[1].student' [2, 3, 2, 2] and 'levels[1].teacher' "
      "[2, 3, 2, 1] must have the same shape");
  check(
      [&](L& lv) {
        lv[1].student_adapted = host_view(l1.a.data(), {2, 3, 4, 1});
      },
      "arguments 'levels[1].student_adapted' [2, 3, 4, 1] and 'levels[1].teacher' [2, 3, 2, 2] must have the same "
      "shape",
      0);
  check(
      [&](L& lv) {
        lv[0].student_channel = host_view(l0.c_hat.data(), {3, 2});
      },
      "argument 'levels[0].student_channel' has shape [3, 2] but expected [2, 3] or [2, 3, 1, 1]");
  check(
      [&](L& lv) {
        lv[0].student_spatial = host_view(l0.s_hat.data(), {2, 2, 4, 5});
      },
      "argument 'levels[0].student_spatial' has shape [2, 2, 4, 5] but expected [2, 1, 4, 5] or [2, 4, 5]");
  check(
      [&](L& lv) {
        lv[0].grad_student_spatial = host_view(gs.data(), {2, 5, 4});
      },
      "argument 'levels[0].grad_student_spatial' has shape [2, 5, 4] but expected [2, 1, 4, 5] or [2, 4, 5]", 1);
  check(
      [&](L& lv) {
        lv[1].grad_student_adapted = host_view(g1.data(), {2, 3, 4});
      },
      "argument 'levels[1].grad_student_adapted' has shape [2, 3, 4] but expected [2, 3, 2, 2]");
  check([&](L& lv) { lv[1].teacher = host_view(static_cast<const double*>(nullptr), sh1); },
        "argument 'levels[1].teacher' has a null data pointer");
  check([&](L& lv) { lv[1].teacher = View<const double>{}; }, "argument 'levels[1].teacher' is absent");
  check([&](L& lv) { lv[0].student = View<const double>{}; },
        "argument 'levels[0].student' is absent but the configuration needs it");
  check([&](L& lv) { lv[1].student_spatial = View<const double>{}; },
        "argument 'levels[1].student_spatial' is absent but the code-form L_AT needs it", 0);
  check([&](L& lv) { lv[1].student = cuda_view(l1.s.data(), sh1); },
        "argument 'levels[1].student' is on cuda:0 but the call runs on host");
  check([&](L& lv) { lv[0].grad_student_adapted = cuda_view(g0.data(), sh); },
        "argument 'levels[0].grad_student_adapted' is on cuda:0 but the call runs on host", 1);
  check(
      [&](L& lv) {
        lv[0].grad_student = host_view(g0.data(), sh, {0, 20, 5, 1});
      },
      "output argument 'levels[0].grad_student' with shape [2, 3, 4, 5] and strides [0, 20, 5, 1] addresses some "
      "element twice");
  check([&](L& lv) { lv[0].grad_student = host_view(g0.data(), sh); },
        "output argument 'levels[0].grad_student_adapted' overlaps the memory of argument 'levels[0].grad_student'");
  check([&](L& lv) { lv[0].student_adapted = View<const double>{}; },
        "argument 'levels[0].grad_student_adapted' is given but 'levels[0].student_adapted' is absent: A is the "
        "student itself, and 'levels[0].grad_student' receives the whole gradient (L_AM included)",
        1);
  check(
      [&](L& lv) {
        lv[1].grad_student_channel = host_view(g0.data() + 100, {2, 3});
      },
      "output argument 'levels[0].grad_student_adapted' overlaps the memory of argument "
      "'levels[1].grad_student_channel'");
  {
    // A gradient aliasing an input: the input must not change either.
    Vec a_copy = l0.a;
    check(
        [&](L& lv) {
          lv[0].student_adapted = host_view<const double>(a_copy.data(), sh);
          lv[1].grad_student = host_view(a_copy.data() + 2, sh1);
        },
        "output argument 'levels[1].grad_student' overlaps the memory of argument 'levels[0].student_adapted'");
    CHECK(a_copy == l0.a);
  }
  auto bad_out = [&](auto&& call, const std::string& needle) {
    auto lv = base();
    fbkd_test::expect_error([&] { call(lv); }, needle);
    CHECK(out == 42.0);
    for (double x : g0) REQUIRE(x == 42.0);
  };
  bad_out(
      [&](L& lv) {
        fbkd::total_loss(lv, host_view(g1.data(), {2, 2}), cfg);
      },
      "argument 'out' must hold exactly one element");
  bad_out([&](L& lv) { fbkd::total_loss_forward_backward(lv, host_scalar(g0.data() + 7), cfg); },
          "output argument 'levels[0].grad_student_adapted' overlaps the memory of argument 'out'");
  bad_out([&](L& lv) { fbkd::total_loss_backward(lv, host_view<const double>(&one, {2}), cfg); },
          "argument 'grad_out' must hold one element");
  bad_out([&](L& lv) { fbkd::total_loss_backward(lv, host_scalar<const double>(g0.data()), cfg); },
          "output argument 'levels[0].grad_student_adapted' overlaps the memory of argument 'grad_out'");
  auto bad_cfg = [&](fbkd::Config c, const std::string& needle) { check([](L&) {}, needle, 2, c); };
  auto c = cfg;
  c.spatial_temperature = 0;
  bad_cfg(c, "argument 'config.spatial_temperature' must be > 0 and finite but is 0");
  c = cfg;
  c.channel_temperature = -0.5;
  bad_cfg(c, "argument 'config.channel_temperature' must be > 0 and finite but is -0.5");
  c = cfg;
  c.w_am = std::nan("");
  bad_cfg(c, "argument 'config.w_am' must be finite");
  alignas(256) static unsigned char small[256];
  check([](L&) {}, "argument 'workspace' has 8 bytes but this call needs", 2, cfg, Exec{Workspace{small, 8}, Stream()});
#if !KDLOSS_CUDA_ENABLED
  bad_out(
      [&](L& lv) {
        for (auto& x : lv) {
          x.student = cuda_view(const_cast<double*>(x.student.data), x.student.shape);
          x.teacher = cuda_view(const_cast<double*>(x.teacher.data), x.teacher.shape);
          x.student_adapted = cuda_view(const_cast<double*>(x.student_adapted.data), x.student_adapted.shape);
        }
        fbkd::total_loss(lv, cuda_scalar(&out), cfg);
      },
      "compiled without CUDA");
#endif
}

TEST_CASE("fbkd total: the workspace query covers every level, and a too small buffer is refused") {
  const auto levels = two_levels(12);
  std::vector<fbkd::Level<float>> one, two;
  std::vector<std::vector<float>> keep;
  for (const auto& l : levels) {
    keep.emplace_back(l.t.begin(), l.t.end());
    const Dims d{l.shape.b, l.shape.c, l.shape.h, l.shape.w};
    two.emplace_back(host_view<const float>(keep.back().data(), d), host_view<const float>(keep.back().data(), d));
  }
  one.push_back(two[0]);
  for (const auto& p : fbkd_test::presets()) {
    CAPTURE(std::string(p.name));
    const auto b1 = fbkd::total_loss_workspace_bytes(one, p.config),
               b2 = fbkd::total_loss_workspace_bytes(two, p.config);
    CHECK(b1 > 0);
    CHECK(b2 > b1);
    // A host call accepts a caller buffer of exactly the queried size.
    std::vector<unsigned char> buf(b2 + 256);
    void* aligned = reinterpret_cast<void*>((reinterpret_cast<std::uintptr_t>(buf.data()) + 255) / 256 * 256);
    auto lv = two;
    std::vector<float> sp0(60), sp1(18), c0(8), c1(8);
    lv[0].student_channel = host_view<const float>(c0.data(), {2, 4});
    lv[0].student_spatial = host_view<const float>(sp0.data(), {2, 5, 6});
    lv[1].student_channel = host_view<const float>(c1.data(), {2, 4});
    lv[1].student_spatial = host_view<const float>(sp1.data(), {2, 3, 3});
    float value = -1;
    fbkd::total_loss(lv, host_scalar(&value), p.config, Exec{Workspace{aligned, b2}, Stream()});
    CHECK(std::isfinite(value));
  }
  // The GPU query (answered in this host-only translation unit too) adds the reduction scratch.
  auto gpu = two;
  for (auto& x : gpu) {
    x.student = cuda_view(const_cast<float*>(x.student.data), x.student.shape);
    x.teacher = cuda_view(const_cast<float*>(x.teacher.data), x.teacher.shape);
  }
  CHECK(fbkd::total_loss_workspace_bytes(gpu) > fbkd::total_loss_workspace_bytes(two));
}

KDLOSS_GPU_TEST("fbkd total: GPU agrees with CPU for every preset (float, double, half; forward, backward, fused)") {
#if KDLOSS_TEST_CUDA
  // The second level has 2400 positions: the spatial masks take the block-per-row path.
  const std::vector<kdloss_ref::fbkd::Level> levels = {fbkd_test::random_level({2, 16, 9, 13}, 20),
                                               fbkd_test::random_level({2, 8, 48, 50}, 30, false)};
  std::vector<kdloss_test::GpuLevel> gpu;
  for (const auto& l : levels) {
    kdloss_test::GpuLevel g;
    g.shape = {l.shape.b, l.shape.c, l.shape.h, l.shape.w};
    g.s = l.s;
    g.t = l.t;
    g.a = l.a;
    g.c_hat = l.c_hat;
    g.s_hat = l.s_hat;
    g.grad_a = !l.a.empty();  // without an adapter grad_student takes the whole gradient
    g.grad_s = g.grad_c = g.grad_sp = true;
    gpu.push_back(g);
  }
  const auto presets = fbkd_test::presets();
  for (std::size_t preset = 0; preset < presets.size(); ++preset)
    for (int mode : {0, 1, 2}) {
      const auto& p = presets[preset];
      CAPTURE(std::string(p.name));
      CAPTURE(mode);
      const double up = mode == 1 ? 0.8 : 1.0;
      const auto want = fbkd_test::run_total<double>(levels, p.config, mode, up);
      const auto d = kdloss_test::total_on_gpu(1, gpu, preset, mode, up);
      const auto f = kdloss_test::total_on_gpu(0, gpu, preset, mode, up);
      const auto h = kdloss_test::total_on_gpu(2, gpu, preset, mode, up);
      if (mode != 1) {
        CHECK(d.value == doctest::Approx(want.value).epsilon(1e-12));
        CHECK(f.value == doctest::Approx(want.value).epsilon(1e-5));
        // half inputs: features rounded to 11 bits, masks from rounded maps; a few 1e-3.
        CHECK(h.value == doctest::Approx(want.value).epsilon(2e-2));
      } else {
        CHECK(d.value == 42.0);  // backward writes no value
      }
      if (mode == 0) continue;
      for (std::size_t l = 0; l < levels.size(); ++l) {
        const auto& w = want.grads[l];
        fbkd_test::check_grads({d.grads[l].a, d.grads[l].s, d.grads[l].c, d.grads[l].sp}, w, 1e-11, "double");
        fbkd_test::check_grads({f.grads[l].a, f.grads[l].s, f.grads[l].c, f.grads[l].sp}, w, 1e-5, "float");
        fbkd_test::check_grads({h.grads[l].a, h.grads[l].s, h.grads[l].c, h.grads[l].sp}, w, 5e-2, "half");
      }
    }
#endif
}

KDLOSS_GPU_TEST("fbkd total: a GPU call with a too small or null workspace throws and writes nothing") {
#if KDLOSS_TEST_CUDA
  float after = 0;
  const auto too_small = kdloss_test::total_gpu_workspace_error(8, &after);
  CHECK_MESSAGE(too_small.find("argument 'workspace' has 8 bytes but this call needs") != std::string::npos, too_small);
  CHECK(after == 42.0f);
  const auto null_ws = kdloss_test::total_gpu_workspace_error(0, &after);
  CHECK_MESSAGE(null_ws.find("argument 'workspace' is null") != std::string::npos, null_ws);
  CHECK(after == 42.0f);
#endif
}

TEST_CASE("fbkd entry points: Args + Mode equal the wrappers; checks name the mode's entry and write nothing") {
  const Dims shape{2, 3, 4, 5}, ch{2, 3}, sp{2, 1, 4, 5};
  const auto s = random_vector<double>(120, 41), t = random_vector<double>(120, 42), a = random_vector<double>(120, 43);
  const auto c_hat = random_vector<double>(6, 44), s_hat = random_vector<double>(40, 45);
  const auto sv = host_view(s.data(), shape), tv = host_view(t.data(), shape), av = host_view(a.data(), shape);
  const auto cv = host_view(c_hat.data(), ch), spv = host_view(s_hat.data(), sp);
  // Total: the Args form in every mode against the wrappers.
  for (const auto& p : fbkd_test::presets()) {
    CAPTURE(std::string(p.name));
    fbkd::Level<double> lv{sv, tv, av};
    lv.student_channel = cv;
    lv.student_spatial = spv;
    Vec ga(120), gs(120), gc(6), gsp(40);
    lv.grad_student_adapted = host_view(ga.data(), shape);
    lv.grad_student = host_view(gs.data(), shape);
    lv.grad_student_channel = host_view(gc.data(), ch);
    lv.grad_student_spatial = host_view(gsp.data(), sp);
    const std::vector<fbkd::Level<double>> levels{lv};
    double want = 0, got = -1;
    fbkd::total_loss_forward_backward(levels, host_scalar(&want), p.config);
    const Vec wa = ga, ws = gs, wc = gc, wsp = gsp;
    fbkd::TotalLossArgs<double> args{levels, host_scalar(&got), {}, p.config};
    CHECK(fbkd::total_loss_workspace_bytes(args) == fbkd::total_loss_workspace_bytes(levels, p.config));
    fbkd::total_loss(args, Mode::forward);
    CHECK(got == want);
    const double up = 0.5;
    args.grad_out = host_scalar(&up);
    fbkd::total_loss(args, Mode::backward);
    check_close(ga, fbkd_test::scaled(wa, 0.5), 1e-15, 0, "grad_student_adapted");
    check_close(gsp, fbkd_test::scaled(wsp, 0.5), 1e-15, 0, "grad_student_spatial");
    got = -1;
    fbkd::total_loss(args, Mode::forward_backward);
    CHECK(got == want);
    CHECK(ga == wa);
    CHECK(gs == ws);
    CHECK(gc == wc);
  }
  // The single-term entry points against their wrappers.
  double v1 = 0, v2 = -1;
  Vec g1(120), g2(120);
  fbkd::attention_transfer_loss_forward_backward(sv, tv, host_scalar(&v1), host_view(g1.data(), shape));
  fbkd::AttentionTransferLossArgs<double> at{sv, tv, host_scalar(&v2), {}, host_view(g2.data(), shape)};
  CHECK(fbkd::attention_transfer_loss_workspace_bytes(at) > 0);
  fbkd::attention_transfer_loss(at, Mode::forward_backward);
  CHECK(v1 == v2);
  CHECK(g1 == g2);
  Vec gc1(6), gc2(6);
  fbkd::pooled_attention_transfer_loss_forward_backward(cv, spv, tv, host_scalar(&v1), host_view(gc1.data(), ch),
                                                        View<double>{});
  fbkd::PooledAttentionTransferLossArgs<double> pat{cv, spv, tv, host_scalar(&v2), {}, host_view(gc2.data(), ch), {}};
  CHECK(fbkd::pooled_attention_transfer_loss_workspace_bytes(pat) > 0);
  fbkd::pooled_attention_transfer_loss(pat, Mode::forward_backward);
  CHECK(v1 == v2);
  CHECK(gc1 == gc2);
  Vec ms(40), mc(6), ms2(40, -1), mc2(6, -1);
  fbkd::attention_masks(sv, tv, host_view(ms.data(), {2, 4, 5}), host_view(mc.data(), ch));
  fbkd::AttentionMasksArgs<double> am{sv, tv, host_view(ms2.data(), sp), host_view(mc2.data(), {2, 3, 1, 1}), {}};
  CHECK(fbkd::attention_masks_workspace_bytes(am) == fbkd::attention_masks_workspace_bytes(sv));
  fbkd::attention_masks(am, Mode::forward);
  CHECK(ms2 == ms);
  CHECK(mc2 == mc);
  fbkd::masked_feature_loss_forward_backward(av, tv, host_view<const double>(ms.data(), {2, 4, 5}),
                                             host_view<const double>(mc.data(), ch), host_scalar(&v1),
                                             host_view(g1.data(), shape));
  fbkd::MaskedFeatureLossArgs<double> mf{av,  tv, host_view<const double>(ms.data(), {2, 4, 5}),
                                         host_view<const double>(mc.data(), ch), host_scalar(&v2), {},
                                         host_view(g2.data(), shape)};
  CHECK(fbkd::masked_feature_loss_workspace_bytes(mf) == fbkd::masked_feature_loss_workspace_bytes(av));
  fbkd::masked_feature_loss(mf, Mode::forward_backward);
  CHECK(v1 == v2);
  CHECK(g1 == g2);
  // Attention maps: forward and backward (sign(x) / n) against the abs forms of the ops.
  Vec gs_map(40), g_map = random_vector<double>(40, 46), gx1(120), gx2(120), gs2(40);
  fbkd::spatial_attention_forward_backward(sv, host_view<const double>(g_map.data(), {2, 4, 5}),
                                           host_view(gs_map.data(), {2, 4, 5}), host_view(gx1.data(), shape));
  ops::mean_over_channels_forward_backward(sv, host_view<const double>(g_map.data(), {2, 4, 5}),
                                           host_view(gs2.data(), {2, 4, 5}), host_view(gx2.data(), shape), {true});
  CHECK(gs_map == gs2);
  CHECK(gx1 == gx2);
  fbkd::channel_attention_backward(sv, host_view<const double>(g_map.data(), ch), host_view(gx1.data(), shape));
  ops::mean_over_positions_backward(sv, host_view<const double>(g_map.data(), ch), host_view(gx2.data(), shape),
                                    {true});
  CHECK(gx1 == gx2);
  CHECK(fbkd::spatial_attention_workspace_bytes(fbkd::SpatialAttentionArgs<double>{sv}) == 0);
  CHECK(fbkd::channel_attention_workspace_bytes(fbkd::ChannelAttentionArgs<double>{sv}) == 0);

  // Checks: the entry point named by its mode, nothing written.
  Vec keep(120, 9.0), keep_c(6, 9.0);
  double out = 42;
  auto untouched = [&] {
    for (double v : keep) REQUIRE(v == 9.0);
    for (double v : keep_c) REQUIRE(v == 9.0);
    REQUIRE(out == 42);
  };
  fbkd::AttentionTransferLossArgs<double> bad{sv, tv, host_scalar(&out), {}, {}};
  kdloss_test::expect_error([&] { fbkd::attention_transfer_loss(bad, Mode::forward_backward); },
                            "kdloss::fbkd::attention_transfer_loss_forward_backward: argument 'grad_student' is absent",
                            untouched);
  fbkd::PooledAttentionTransferLossArgs<double> bad_p{cv, spv, tv, host_scalar(&out), {}, {}, {}};
  kdloss_test::expect_error([&] { fbkd::pooled_attention_transfer_loss_check(bad_p, Mode::backward); },
                            "pooled_attention_transfer_loss_backward: arguments 'grad_student_channel' and "
                            "'grad_student_spatial' are both absent",
                            untouched);
  fbkd::AttentionMasksArgs<double> bad_m{sv, tv, host_view(keep.data(), {2, 4, 5}), {}, {}};
  kdloss_test::expect_error([&] { fbkd::attention_masks(bad_m, Mode::backward); },
                            "kdloss::fbkd::attention_masks: mode backward is not available", untouched);
  fbkd::MaskedFeatureLossArgs<double> bad_f{av, tv, {}, {}, host_scalar(&out), {}, host_view(keep.data(), shape)};
  kdloss_test::expect_error([&] { fbkd::masked_feature_loss(bad_f, Mode::forward_backward); },
                            "kdloss::fbkd::masked_feature_loss_forward_backward: argument 'mask_spatial' is absent",
                            untouched);
  fbkd::Level<double> lv{sv, tv};
  lv.grad_student = host_view(keep.data(), {2, 3, 5, 4});
  fbkd::TotalLossArgs<double> bad_t{{lv}, host_scalar(&out), {}, fbkd::Config::paper_two_stage()};
  kdloss_test::expect_error([&] { fbkd::total_loss_check(bad_t, Mode::forward_backward); },
                            "kdloss::fbkd::total_loss_forward_backward: argument 'levels[0].grad_student' has shape "
                            "[2, 3, 5, 4]",
                            untouched);
  fbkd::SpatialAttentionArgs<double> bad_s{sv, {}, host_view<const double>(g_map.data(), {2, 4, 5}), {}};
  kdloss_test::expect_error([&] { fbkd::spatial_attention(bad_s, Mode::backward); },
                            "kdloss::fbkd::spatial_attention_backward: argument 'grad_x' is absent", untouched);
}

TEST_CASE("fbkd total: NaN and +-inf inputs propagate to the value and the gradients as PyTorch autograd's") {
  // The reference (kdloss_ref::fbkd::autograd_total) follows autograd's backward formulas step by step; it
  // was checked against torch on these inputs. A NaN reaches every entry of a term's gradient through
  // its norm (a NaN norm); an inf makes the norm inf and its scale 0, so only the entries that
  // multiply the inf become NaN (0 * inf). Level 1 stays finite: each level has its own norms.
  for (bool with_adapted : {true, false})
    for (const auto& p : fbkd_test::presets())
      for (const auto& bad : fbkd_test::poisons()) {
        auto levels = two_levels(50, with_adapted);
        if (!fbkd_test::poison(levels[0], bad, 17)) continue;
        CAPTURE(std::string(p.name));
        CAPTURE(with_adapted);
        CAPTURE(std::string(bad.input));
        CAPTURE(bad.value);
        const kdloss_ref::fbkd::Config rc = fbkd_test::ref_config(p.config);
        std::vector<kdloss_ref::fbkd::Grads> want, want_up;
        const double value = kdloss_ref::fbkd::autograd_total(levels, rc, 1.0, &want);
        kdloss_ref::fbkd::autograd_total(levels, rc, 0.6, &want_up);
        const auto fused = fbkd_test::run_total<double>(levels, p.config, 2);
        const auto split = fbkd_test::run_total<double>(levels, p.config, 1, 0.6);
        const auto f32 = fbkd_test::run_total<float>(levels, p.config, 2);
        kdloss_test::check_same_nonfinite(std::vector<double>{fused.value}, std::vector<double>{value}, 1e-12, 0,
                                          "value");
        kdloss_test::check_same_nonfinite(std::vector<double>{f32.value}, std::vector<double>{value}, 1e-5, 0,
                                          "float value");
        for (std::size_t l = 0; l < levels.size(); ++l) {
          fbkd_test::check_grads_nonfinite(fused.grads[l], want[l], 1e-10, 1e-16, "fused, level " + std::to_string(l));
          fbkd_test::check_grads_nonfinite(split.grads[l], want_up[l], 1e-10, 1e-16,
                                           "backward, level " + std::to_string(l));
          fbkd_test::check_grads_nonfinite(f32.grads[l], want[l], 1e-4, 1e-9, "float, level " + std::to_string(l));
        }
      }
}
