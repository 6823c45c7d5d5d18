// detr::logits_distillation_loss (losses.md 4.2, the official code path): K layers, per layer the teacher's
// predictions as pseudo-targets (sigmoid, clamped pixel boxes), the DistillHungarianAssigner cost and scipy's
// assignment, then soft-BCE / N_pos + 5 L1 / N' + 2 (1 - GIoU) / N'. Against the brute-force double reference
// (reference/losses/detr/distill.hpp LogitsDistill): values, central-difference gradients, backward with
// upstream gradients; the split option (positives full cost, negatives box cost; background / teacher_soft /
// none for a matched negative); a NaN teacher logit throws with outputs untouched; wrong shapes.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "kdloss/losses/detr/logits_distillation.hpp"
#include "losses/detr/logits_distillation_gpu.hpp"
#include "reference/losses/detr/distill.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

struct LDCase {
  std::int64_t K = 2, B = 2, Q = 4, C = 3;
  kdloss_ref::detr::LogitsDistill ref{K, B, Q, C, {300, 400, 200, 250}};
  std::vector<double> sl, sb, tl, tb;
  LDCase() {
    sl = random_vector<double>(static_cast<std::size_t>(K * B * Q * C), 1, -3, 3);
    tl = random_vector<double>(sl.size(), 2, -3, 3);
    sb = boxes(3);
    tb = boxes(4);
    tb[2] = 0.95;  // a teacher box reaching past the image: clamped
  }
  std::vector<double> boxes(std::uint32_t seed) const {
    const auto r = random_vector<double>(static_cast<std::size_t>(K * B * Q * 4), seed, 0.0, 1.0);
    std::vector<double> v(r.size());
    for (std::size_t i = 0; i < v.size(); i += 4)
      v[i] = 0.2 + 0.6 * r[i], v[i + 1] = 0.2 + 0.6 * r[i + 1], v[i + 2] = 0.1 + 0.4 * r[i + 2],
      v[i + 3] = 0.1 + 0.4 * r[i + 3];
    return v;
  }
  detr::LogitsDistillationArgs<double> args(const std::vector<double>& l, const std::vector<double>& b) const {
    detr::LogitsDistillationArgs<double> a;
    a.student_logits = host_view<const double>(l.data(), {K, B, Q, C});
    a.student_boxes = host_view<const double>(b.data(), {K, B, Q, 4});
    a.teacher_logits = host_view<const double>(tl.data(), {K, B, Q, C});
    a.teacher_boxes = host_view<const double>(tb.data(), {K, B, Q, 4});
    a.sizes = host_view<const double>(ref.sizes.data(), {B, 2});
    return a;
  }
};

}  // namespace

TEST_CASE("detr::logits_distillation_loss: the code path against the brute-force reference") {
  LDCase c;
  const auto want = c.ref.value(c.sl, c.sb, c.tl, c.tb);
  std::vector<double> gl(c.sl.size()), gb(c.sb.size());
  double cls = -1, l1 = -1, giou = -1;
  auto a = c.args(c.sl, c.sb);
  a.out_cls = host_scalar(&cls);
  a.out_l1 = host_scalar(&l1);
  a.out_giou = host_scalar(&giou);
  a.grad_student_logits = host_view(gl.data(), {c.K, c.B, c.Q, c.C});
  a.grad_student_boxes = host_view(gb.data(), {c.K, c.B, c.Q, 4});
  detr::logits_distillation_loss(a, Mode::forward_backward);
  CHECK(cls == doctest::Approx(want[0]).epsilon(1e-12));
  CHECK(l1 == doctest::Approx(want[1]).epsilon(1e-12));
  CHECK(giou == doctest::Approx(want[2]).epsilon(1e-12));
  const auto total = [&](const std::vector<double>& l, const std::vector<double>& b) {
    const auto v = c.ref.value(l, b, c.tl, c.tb);
    return v[0] + v[1] + v[2];
  };
  check_close(gl, kdloss_test::numeric_gradient(c.sl, [&](const std::vector<double>& x) { return total(x, c.sb); }), 1e-6,
              1e-8, "grad_student_logits");
  check_close(gb, kdloss_test::numeric_gradient(c.sb, [&](const std::vector<double>& x) { return total(c.sl, x); }), 1e-6,
              1e-8, "grad_student_boxes");
  // backward with upstream gradients
  std::vector<double> gl2(c.sl.size());
  const double u[3] = {2, 0, 0};
  auto b = c.args(c.sl, c.sb);
  b.grad_out_cls = host_scalar(&u[0]);
  b.grad_out_l1 = host_scalar(&u[1]);
  b.grad_out_giou = host_scalar(&u[2]);
  b.grad_student_logits = host_view(gl2.data(), {c.K, c.B, c.Q, c.C});
  detr::logits_distillation_loss_backward(b);
  for (std::size_t i = 0; i < gl.size(); ++i) {
    // the box terms do not depend on the logits: 2 * the class gradient
    const auto num = kdloss_test::numeric_gradient(c.sl, [&](const std::vector<double>& x) {
      return 2 * c.ref.value(x, c.sb, c.tl, c.tb)[0];
    });
    check_close(gl2, num, 1e-6, 1e-8, "backward grad_student_logits");
    break;
  }
}

TEST_CASE("detr::logits_distillation_loss: the positive/negative split option") {
  LDCase c;
  double base[3], split[3];
  auto a = c.args(c.sl, c.sb);
  a.out_cls = host_scalar(&base[0]);
  a.out_l1 = host_scalar(&base[1]);
  a.out_giou = host_scalar(&base[2]);
  detr::logits_distillation_loss_forward(a);
  // threshold 0: every teacher prediction is positive, the split equals the code path
  a.out_cls = host_scalar(&split[0]);
  a.out_l1 = host_scalar(&split[1]);
  a.out_giou = host_scalar(&split[2]);
  a.options.split = detr::LogitsDistillationOptions::Split::score_threshold;
  a.options.score_threshold = 0.0;
  detr::logits_distillation_loss_forward(a);
  for (int k = 0; k < 3; ++k) CHECK(split[k] == doctest::Approx(base[k]).epsilon(1e-14));
  // threshold 2: every prediction is negative: boxes matched on the box cost alone, no class pairs
  a.options.score_threshold = 2.0;
  for (auto neg : {detr::LogitsDistillationOptions::NegativeClass::background,
                   detr::LogitsDistillationOptions::NegativeClass::teacher_soft,
                   detr::LogitsDistillationOptions::NegativeClass::none}) {
    a.options.negative_class = neg;
    std::vector<double> gl(c.sl.size(), 9.0), gb(c.sb.size());
    a.grad_student_logits = host_view(gl.data(), {c.K, c.B, c.Q, c.C});
    a.grad_student_boxes = host_view(gb.data(), {c.K, c.B, c.Q, 4});
    detr::logits_distillation_loss(a, Mode::forward_backward);
    CHECK(std::isfinite(split[0]));
    CHECK(split[1] > 0);
    if (neg == detr::LogitsDistillationOptions::NegativeClass::none) {
      CHECK(split[0] == doctest::Approx(0.0).epsilon(1e-12));
      for (double g : gl) CHECK(g == 0.0);
    }
    if (neg == detr::LogitsDistillationOptions::NegativeClass::background) {
      // every query against target 0, divided by N_pos = 0 clamped... (mmdet_num_pos: 0 pairs + eps)
      CHECK(split[0] > 0);
    }
  }
}

TEST_CASE("detr::logits_distillation_loss: a NaN cost and wrong shapes throw with outputs untouched") {
  LDCase c;
  std::vector<double> gl(c.sl.size(), 7.0);
  double cls = -9, l1 = -9, giou = -9;
  const auto untouched = [&] {
    CHECK(cls == -9);
    for (double v : gl) REQUIRE(v == 7.0);
  };
  auto tl = c.tl;
  tl[c.tl.size() - 2] = std::nan("");  // layer 1: layer 0 must not have been written
  auto a = c.args(c.sl, c.sb);
  a.teacher_logits = host_view<const double>(tl.data(), {c.K, c.B, c.Q, c.C});
  a.out_cls = host_scalar(&cls);
  a.out_l1 = host_scalar(&l1);
  a.out_giou = host_scalar(&giou);
  a.grad_student_logits = host_view(gl.data(), {c.K, c.B, c.Q, c.C});
  kdloss_test::expect_error([&] { detr::logits_distillation_loss(a, Mode::forward_backward); }, "layer 1", untouched);
  a.teacher_logits = host_view<const double>(c.tl.data(), {c.K, c.B, c.Q, c.C - 1});
  kdloss_test::expect_error([&] { detr::logits_distillation_loss(a, Mode::forward_backward); },
                            "must agree in layers, batch and classes", untouched);
  a.teacher_logits = host_view<const double>(c.tl.data(), {c.K, c.B, c.Q, c.C});
  a.sizes = View<const double>{};
  kdloss_test::expect_error([&] { detr::logits_distillation_loss(a, Mode::forward_backward); }, "'sizes' is absent",
                            untouched);
}

KDLOSS_GPU_TEST("detr::logits_distillation_loss: the GPU agrees with the CPU (float, double)") {
#if KDLOSS_TEST_CUDA
  LDCase c;
  std::vector<double> want(4), gl(c.sl.size()), gb(c.sb.size());
  auto a = c.args(c.sl, c.sb);
  a.out_cls = host_scalar(&want[0]);
  a.out_l1 = host_scalar(&want[1]);
  a.out_giou = host_scalar(&want[2]);
  a.out = host_scalar(&want[3]);
  a.grad_student_logits = host_view(gl.data(), {c.K, c.B, c.Q, c.C});
  a.grad_student_boxes = host_view(gb.data(), {c.K, c.B, c.Q, 4});
  detr::logits_distillation_loss(a, Mode::forward_backward);
  want.insert(want.end(), gl.begin(), gl.end());
  want.insert(want.end(), gb.begin(), gb.end());
  for (int dtype : {1, 0}) {
    CAPTURE(dtype);
    const auto got = kdloss_test::logits_distillation_on_gpu(dtype, c.K, c.B, c.Q, c.C, c.sl, c.sb, c.tl, c.tb, c.ref.sizes);
    const double tol = dtype == 1 ? 1e-10 : 2e-4;
    check_close(got, want, tol, tol * 1e-2, "out_cls, out_l1, out_giou, out, grad_student_logits, grad_student_boxes");
  }
#endif
}
