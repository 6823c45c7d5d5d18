// FBKD attention-transfer loss L_AT in both forms: reference, gradients, layouts, degenerate and bad inputs.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kdloss/losses/fbkd/attention_transfer.hpp"
#include "losses/fbkd/fbkd_test_util.hpp"

using namespace kdloss;
using fbkd_test::Vec;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

/// Paper form through the library: mode 0 forward, 1 backward (upstream up), 2 fused.
template <class T>
std::pair<double, Vec> paper(const Vec& s, const Vec& t, const Dims& shape, int mode, double up = 1.0) {
  const std::vector<T> sf(s.begin(), s.end()), tf(t.begin(), t.end());
  std::vector<T> g(s.size(), T(-7));
  T out = T(-7), u = static_cast<T>(up);
  auto sv = host_view(sf.data(), shape);
  auto tv = host_view(tf.data(), shape);
  if (mode == 0) fbkd::attention_transfer_loss(sv, tv, host_scalar(&out));
  if (mode == 1) fbkd::attention_transfer_loss_backward(sv, tv, host_scalar<const T>(&u), host_view(g.data(), shape));
  if (mode == 2) fbkd::attention_transfer_loss_forward_backward(sv, tv, host_scalar(&out), host_view(g.data(), shape));
  return {static_cast<double>(out), Vec(g.begin(), g.end())};
}

struct CodeOut {
  double value;
  Vec gc, gs;
};
template <class T>
CodeOut code(const Vec& c_hat, const Vec& s_hat, const Vec& t, const Dims& shape, int mode, double up = 1.0) {
  const std::vector<T> cf(c_hat.begin(), c_hat.end()), sf(s_hat.begin(), s_hat.end()), tf(t.begin(), t.end());
  std::vector<T> gc(c_hat.size(), T(-7)), gs(s_hat.size(), T(-7));
  T out = T(-7), u = static_cast<T>(up);
  auto cv = host_view(cf.data(), {shape[0], shape[1]});
  auto sv = host_view(sf.data(), {shape[0], 1, shape[2], shape[3]});
  auto tv = host_view(tf.data(), shape);
  auto gcv = host_view(gc.data(), {shape[0], shape[1], 1, 1});
  auto gsv = host_view(gs.data(), {shape[0], shape[2], shape[3]});
  if (mode == 0) fbkd::pooled_attention_transfer_loss(cv, sv, tv, host_scalar(&out));
  if (mode == 1) fbkd::pooled_attention_transfer_loss_backward(cv, sv, tv, host_scalar<const T>(&u), gcv, gsv);
  if (mode == 2) fbkd::pooled_attention_transfer_loss_forward_backward(cv, sv, tv, host_scalar(&out), gcv, gsv);
  return {static_cast<double>(out), Vec(gc.begin(), gc.end()), Vec(gs.begin(), gs.end())};
}

}  // namespace

TEST_CASE("fbkd L_AT (paper form): value and gradient match the reference; float to 1e-5") {
  for (Dims shape : {Dims{2, 3, 4, 5}, Dims{1, 1, 1, 1}, Dims{2, 1, 3, 2}, Dims{3, 4, 1, 1}}) {
    CAPTURE(shape.str());
    const auto n = static_cast<std::size_t>(shape.product());
    const auto s = random_vector<double>(n, 1), t = random_vector<double>(n, 2);
    const auto rs = fbkd_test::ref_shape(shape);
    const double want = kdloss_ref::fbkd::transfer_paper(s, t, rs);
    for (int mode : {0, 2}) {
      CHECK(paper<double>(s, t, shape, mode).first == doctest::Approx(want).epsilon(1e-13));
      CHECK(paper<float>(s, t, shape, mode).first == doctest::Approx(want).epsilon(1e-5));
    }
    const auto g_want =
        kdloss_test::numeric_gradient(s, [&](const Vec& x) { return kdloss_ref::fbkd::transfer_paper(x, t, rs); });
    const double tol = 1e-8 * fbkd_test::max_abs(g_want);
    check_close(paper<double>(s, t, shape, 2).second, g_want, 1e-7, tol, "fused grad");
    check_close(paper<double>(s, t, shape, 1, -1.5).second, fbkd_test::scaled(g_want, -1.5), 1e-7, 1.5 * tol,
                "backward grad");
    check_close(paper<float>(s, t, shape, 2).second, g_want, 1e-5, 1e-5 * fbkd_test::max_abs(g_want), "float grad");
  }
}

TEST_CASE("fbkd L_AT (code form): value and gradients wrt C_hat and S_hat match the reference") {
  for (Dims shape : {Dims{2, 3, 4, 5}, Dims{1, 1, 1, 1}, Dims{2, 5, 1, 1}}) {
    CAPTURE(shape.str());
    const auto n = static_cast<std::size_t>(shape.product());
    const auto t = random_vector<double>(n, 3);
    const auto c_hat = random_vector<double>(static_cast<std::size_t>(shape[0] * shape[1]), 4);
    const auto s_hat = random_vector<double>(static_cast<std::size_t>(shape[0] * shape[2] * shape[3]), 5);
    const auto rs = fbkd_test::ref_shape(shape);
    const double want = kdloss_ref::fbkd::transfer_code(c_hat, s_hat, t, rs);
    CHECK(code<double>(c_hat, s_hat, t, shape, 0).value == doctest::Approx(want).epsilon(1e-13));
    CHECK(code<float>(c_hat, s_hat, t, shape, 2).value == doctest::Approx(want).epsilon(1e-5));
    const auto gc =
        kdloss_test::numeric_gradient(c_hat, [&](const Vec& x) { return kdloss_ref::fbkd::transfer_code(x, s_hat, t, rs); });
    const auto gs =
        kdloss_test::numeric_gradient(s_hat, [&](const Vec& x) { return kdloss_ref::fbkd::transfer_code(c_hat, x, t, rs); });
    const auto fused = code<double>(c_hat, s_hat, t, shape, 2);
    check_close(fused.gc, gc, 1e-7, 1e-10, "grad C_hat");
    check_close(fused.gs, gs, 1e-7, 1e-10, "grad S_hat");
    const auto split = code<double>(c_hat, s_hat, t, shape, 1, 2.0);
    check_close(split.gc, fbkd_test::scaled(gc, 2.0), 1e-7, 1e-10, "backward grad C_hat");
    check_close(split.gs, fbkd_test::scaled(gs, 2.0), 1e-7, 1e-10, "backward grad S_hat");
  }
}

TEST_CASE("fbkd L_AT: channel-last, sliced and rank-variant views equal their contiguous copies") {
  const Dims shape{2, 6, 3, 4};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<double>(n, 6), t = random_vector<double>(n, 7);
  const auto want = paper<double>(s, t, shape, 2);
  const auto s_nhwc = kdloss_test::relayout(s, shape, {0, 2, 3, 1});
  const auto t_pad = kdloss_test::relayout(t, shape, {0, 1, 2, 3}, 2);
  Vec zeros(n, 0.0);
  auto g_nhwc = kdloss_test::relayout(zeros, shape, {0, 2, 3, 1});
  double got = -1;
  fbkd::attention_transfer_loss_forward_backward(View<const double>(s_nhwc.view), View<const double>(t_pad.view),
                                                 host_scalar(&got), g_nhwc.view);
  CHECK(got == doctest::Approx(want.first).epsilon(1e-13));
  check_close(kdloss_test::to_vector(g_nhwc.view), want.second, 1e-13, 1e-16, "grad");
  // Code form: C_hat sliced from a wider buffer, S_hat transposed, both gradients through strided views.
  const auto c_big = random_vector<double>(2 * 12, 8);
  auto c_slice = host_view(c_big.data(), {2, 12}).slice(1, 0, 12, 2);
  const auto c_copy = kdloss_test::to_vector(c_slice);
  const auto s_hat = random_vector<double>(2 * 12, 9);
  const auto s_hat_t = kdloss_test::relayout(s_hat, {2, 3, 4}, {2, 1, 0});
  const auto want_c = code<double>(c_copy, s_hat, t, shape, 2);
  Vec zc(12, 0.0), zs(24, 0.0);
  auto gc_t = kdloss_test::relayout(zc, {2, 6}, {1, 0}, 1);
  auto gs_t = kdloss_test::relayout(zs, {2, 3, 4}, {1, 2, 0});
  fbkd::pooled_attention_transfer_loss_forward_backward(View<const double>(c_slice), View<const double>(s_hat_t.view),
                                                        View<const double>(t_pad.view), host_scalar(&got), gc_t.view,
                                                        gs_t.view);
  CHECK(got == doctest::Approx(want_c.value).epsilon(1e-13));
  check_close(kdloss_test::to_vector(gc_t.view), want_c.gc, 1e-13, 1e-16, "grad C_hat");
  check_close(kdloss_test::to_vector(gs_t.view), want_c.gs, 1e-13, 1e-16, "grad S_hat");
}

TEST_CASE("fbkd L_AT: S = T (or exact pooled targets) gives 0 with zero gradients; zero features are finite") {
  for (Dims shape : {Dims{2, 3, 4, 5}, Dims{1, 1, 1, 1}}) {
    const auto n = static_cast<std::size_t>(shape.product());
    const auto s = random_vector<double>(n, 10);
    const Vec zeros(n, 0.0);
    for (const Vec* x : {&s, &zeros}) {
      const auto r = paper<float>(*x, *x, shape, 2);
      CHECK(r.first == 0.0);
      for (double g : r.second) CHECK(g == 0.0);
    }
    const auto rs = fbkd_test::ref_shape(shape);
    const auto c = code<double>(kdloss_ref::fbkd::mean_over_positions(s, rs, false), kdloss_ref::fbkd::mean_over_channels(s, rs, false),
                                s, shape, 2);
    CHECK(c.value < 1e-14);  // the pooled means agree up to rounding
    CHECK(kdloss_test::all_finite(c.gc));
    CHECK(kdloss_test::all_finite(c.gs));
  }
  // |S| = |T| elementwise: the maps agree, the loss is 0, the gradient 0 (no NaN from 0 / 0).
  const Dims shape{2, 3, 2, 2};
  const auto s = random_vector<double>(24, 11);
  Vec neg(s);
  for (double& v : neg) v = -v;
  const auto r = paper<double>(s, neg, shape, 2);
  CHECK(r.first == 0.0);
  CHECK(kdloss_test::all_finite(r.second));
}

TEST_CASE("fbkd L_AT: bad inputs throw a clear error and leave outputs untouched") {
  const Dims shape{2, 3, 4, 5};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<float>(n, 12), t = random_vector<float>(n, 13);
  const auto c_hat = random_vector<float>(6, 14), s_hat = random_vector<float>(40, 15);
  std::vector<float> g(n, 42.0f), gc(6, 42.0f), gs(40, 42.0f);
  float out = 42.0f, one = 1.0f;
  auto sv = host_view(s.data(), shape);
  auto tv = host_view(t.data(), shape);
  auto cv = host_view(c_hat.data(), {2, 3});
  auto spv = host_view(s_hat.data(), {2, 4, 5});
  auto check = [&](auto&& call, const std::string& needle) {
    fbkd_test::expect_error(call, needle);
    CHECK(out == 42.0f);
    for (float v : g) REQUIRE(v == 42.0f);
    for (float v : gc) REQUIRE(v == 42.0f);
    for (float v : gs) REQUIRE(v == 42.0f);
  };
  check(
      [&] {
        fbkd::attention_transfer_loss(sv, host_view(t.data(), {2, 3, 5, 4}), host_scalar(&out));
      },
      "kdloss::fbkd::attention_transfer_loss: arguments 'student' [2, 3, 4, 5] and 'teacher' [2, 3, 5, 4] must have "
      "the same shape");
  check([&] { fbkd::attention_transfer_loss(sv, tv, host_view(g.data(), {3})); },
        "argument 'out' must hold exactly one element");
  check(
      [&] {
        fbkd::attention_transfer_loss_backward(sv, tv, host_scalar(&one), host_view(g.data(), {2, 3, 4, 4}));
      },
      "argument 'grad_student' has shape [2, 3, 4, 4] but expected [2, 3, 4, 5]");
  check([&] { fbkd::attention_transfer_loss_backward(sv, tv, host_scalar(&one), View<float>{}); },
        "argument 'grad_student' is absent");
  check(
      [&] {
        fbkd::attention_transfer_loss_forward_backward(sv, tv, host_scalar(&out),
                                                       host_view(g.data(), shape, {0, 20, 5, 1}));
      },
      "'grad_student' with shape [2, 3, 4, 5] and strides [0, 20, 5, 1] addresses some element twice");
  check([&] { fbkd::attention_transfer_loss(sv, cuda_view(t.data(), shape), host_scalar(&out)); },
        "argument 'teacher' is on cuda:0 but the call runs on host");
  check(
      [&] {
        fbkd::pooled_attention_transfer_loss(host_view(c_hat.data(), {3, 2}), spv, tv, host_scalar(&out));
      },
      "kdloss::fbkd::pooled_attention_transfer_loss: argument 'student_channel' has shape [3, 2] but expected [2, 3] "
      "or [2, 3, 1, 1]");
  check(
      [&] {
        fbkd::pooled_attention_transfer_loss(cv, host_view(s_hat.data(), {2, 5, 4}), tv, host_scalar(&out));
      },
      "argument 'student_spatial' has shape [2, 5, 4] but expected [2, 1, 4, 5] or [2, 4, 5]");
  check([&] { fbkd::pooled_attention_transfer_loss(View<const float>{}, spv, tv, host_scalar(&out)); },
        "argument 'student_channel' is absent but the code-form L_AT needs it");
  check(
      [&] {
        fbkd::pooled_attention_transfer_loss(cv, spv, host_view(static_cast<const float*>(nullptr), shape),
                                             host_scalar(&out));
      },
      "argument 'teacher' has a null data pointer");
  check(
      [&] {
        fbkd::pooled_attention_transfer_loss_backward(cv, spv, tv, host_scalar(&one), View<float>{}, View<float>{});
      },
      "are both absent");
  check(
      [&] {
        fbkd::pooled_attention_transfer_loss_backward(cv, spv, tv, host_scalar(&one), host_view(gs.data(), {2, 3}),
                                                      host_view(gs.data(), {2, 4, 5}));
      },
      "output argument 'grad_student_channel' overlaps the memory of argument 'grad_student_spatial'");
  {
    std::vector<float> c_copy = c_hat;
    fbkd_test::expect_error(
        [&] {
          fbkd::pooled_attention_transfer_loss_forward_backward(host_view<const float>(c_copy.data(), {2, 3}), spv, tv,
                                                                host_scalar(&out), host_view(c_copy.data(), {2, 3}),
                                                                View<float>{});
        },
        "'grad_student_channel' overlaps the memory of argument 'student_channel'");
    CHECK(c_copy == c_hat);
    CHECK(out == 42.0f);
  }
  CHECK(fbkd::attention_transfer_loss_workspace_bytes(fbkd::AttentionTransferLossArgs<float>{sv, tv}) > 0);
  fbkd::PooledAttentionTransferLossArgs<float> host_args{cv, spv, tv}, gpu_args = host_args;
  gpu_args.teacher = cuda_view<const float>(t.data(), shape);
  CHECK(fbkd::pooled_attention_transfer_loss_workspace_bytes(gpu_args) >
        fbkd::pooled_attention_transfer_loss_workspace_bytes(host_args));
}

TEST_CASE("fbkd L_AT (both forms): NaN and +-inf inputs propagate as PyTorch autograd's") {
  const Dims shape{2, 3, 4, 5};
  for (bool paper_form : {true, false})
    for (const auto& bad : fbkd_test::poisons()) {
      auto l = fbkd_test::random_level(shape, 70, false);
      if (!fbkd_test::poison(l, bad, 11)) continue;
      CAPTURE(paper_form);
      CAPTURE(std::string(bad.input));
      CAPTURE(bad.value);
      kdloss_ref::fbkd::Config rc;
      rc.paper_transfer = paper_form;
      rc.w_am = 0;
      rc.w_at = 1;
      std::vector<kdloss_ref::fbkd::Grads> want, want_up;
      const double value = kdloss_ref::fbkd::autograd_total({l}, rc, 1.0, &want);
      kdloss_ref::fbkd::autograd_total({l}, rc, 0.6, &want_up);
      if (paper_form) {
        for (int mode : {1, 2}) {
          const auto r = paper<double>(l.s, l.t, shape, mode, 0.6);
          kdloss_test::check_same_nonfinite(r.second, mode == 1 ? want_up[0].s : want[0].s, 1e-10, 1e-16,
                                            "grad_student");
          if (mode == 2)
            kdloss_test::check_same_nonfinite(Vec{r.first}, Vec{value}, 1e-12, 0, "value");
        }
        const auto f = paper<float>(l.s, l.t, shape, 2);
        kdloss_test::check_same_nonfinite(f.second, want[0].s, 1e-4, 1e-9, "float grad_student");
      } else {
        for (int mode : {1, 2}) {
          const auto r = code<double>(l.c_hat, l.s_hat, l.t, shape, mode, 0.6);
          const auto& w = mode == 1 ? want_up[0] : want[0];
          kdloss_test::check_same_nonfinite(r.gc, w.c_hat, 1e-10, 1e-16, "grad_student_channel");
          kdloss_test::check_same_nonfinite(r.gs, w.s_hat, 1e-10, 1e-16, "grad_student_spatial");
          if (mode == 2) kdloss_test::check_same_nonfinite(Vec{r.value}, Vec{value}, 1e-12, 0, "value");
        }
      }
    }
}
