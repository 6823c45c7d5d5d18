// losses/detr/matched_losses.hpp: soft-label BCE and sigmoid focal over all queries with matched targets,
// L1 and GIoU over matched pairs; the normalisers; central differences; strided views; bad assignments.
#include <doctest/doctest.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

#include "kdloss/losses/detr/detr.hpp"
#include "ops/boxes_gpu.hpp"
#include "reference/losses/detr/elements.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

struct ClassCase {
  std::int64_t B = 2, Q = 5, C = 3, T = 4;
  std::vector<double> logits = random_vector<double>(2 * 5 * 3, 1, -4.0, 4.0);
  std::vector<double> probs = random_vector<double>(4 * 3, 2, 0.0, 1.0);
  std::vector<std::int64_t> labels = {2, 0, 1, 1};
  std::vector<std::int64_t> pred_rows = {1, 3, 6, 9}, target_rows = {2, 0, 1, 3};
};

struct ClassRun {
  double loss;
  std::vector<double> grad;
};

ClassRun run_class(const ClassCase& c, const std::vector<double>& logits, bool labels,
                   const detr::MatchedClassLossOptions& o) {
  ClassRun r{0, std::vector<double>(logits.size(), 0.0)};
  detr::MatchedClassLossArgs<double> a;
  a.logits = host_view<const double>(logits.data(), {c.B, c.Q, c.C});
  if (labels) a.target_labels = host_view<const std::int64_t>(c.labels.data(), {c.T});
  else a.target_probs = host_view<const double>(c.probs.data(), {c.T, c.C});
  a.pred_rows = host_view<const std::int64_t>(c.pred_rows.data(), {4});
  a.target_rows = host_view<const std::int64_t>(c.target_rows.data(), {4});
  a.out = host_scalar(&r.loss);
  a.grad_logits = host_view(r.grad.data(), {c.B, c.Q, c.C});
  a.options = o;
  detr::matched_class_loss(a, Mode::forward_backward);
  return r;
}

}  // namespace

TEST_CASE("detr::matched_class_loss: soft BCE and focal against the formulas, gradients by central differences") {
  const ClassCase c;
  using Kind = detr::MatchedClassLossOptions::Kind;
  for (Kind kind : {Kind::soft_bce, Kind::focal})
    for (bool labels : {false, true})
      for (int norm = 0; norm < 3; ++norm) {
        CAPTURE(static_cast<int>(kind));
        CAPTURE(labels);
        CAPTURE(norm);
        detr::MatchedClassLossOptions o;
        o.kind = kind;
        o.weight = 2.0;
        o.normalizer = norm == 0   ? detr::Normalizer::mmdet_num_pos()
                       : norm == 1 ? detr::Normalizer::detr_num_boxes(0.25)  // clamped to 1
                                   : detr::Normalizer{detr::Normalizer::Kind::sum};
        const double divisor = norm == 0 ? 4.0 + FLT_EPSILON : 1.0;
        const bool focal = kind == Kind::focal;
        const auto ref = [&](const std::vector<double>& z) {
          return 2.0 *
                 kdloss_ref::detr::class_loss_sum(z, c.B * c.Q, c.C, labels ? std::vector<double>{} : c.probs, c.labels,
                                                  c.pred_rows, c.target_rows, focal, 0.25, 2.0) /
                 divisor;
        };
        const auto r = run_class(c, c.logits, labels, o);
        CHECK(r.loss == doctest::Approx(ref(c.logits)).epsilon(1e-13));
        check_close(r.grad, kdloss_test::numeric_gradient(c.logits, ref), 1e-6, 1e-8);  // sums ~20: differences carry ~5e-9
      }
}

TEST_CASE("detr::matched_class_loss: gamma and alpha variants, extreme logits stay finite, strided logits, float") {
  ClassCase c;
  c.logits[0] = 60, c.logits[1] = -60, c.logits[4] = 30;  // rows 0 (unmatched) and 1 (matched)
  for (double gamma : {0.0, 1.0, 1.5, 2.0})
    for (double alpha : {-1.0, 0.25}) {
      detr::MatchedClassLossOptions o;
      o.kind = detr::MatchedClassLossOptions::Kind::focal;
      o.gamma = gamma;
      o.alpha = alpha;
      const auto ref = [&](const std::vector<double>& z) {
        return kdloss_ref::detr::class_loss_sum(z, c.B * c.Q, c.C, c.probs, c.labels, c.pred_rows, c.target_rows,
                                                true, alpha, gamma) /
               (4.0 + FLT_EPSILON);
      };
      const auto r = run_class(c, c.logits, false, o);
      CHECK(r.loss == doctest::Approx(ref(c.logits)).epsilon(1e-12));
      CHECK(kdloss_test::all_finite(r.grad));
      check_close(r.grad, kdloss_test::numeric_gradient(c.logits, ref, 1e-5), 1e-5, 1e-8);
    }
  // logits stored [C, B, Q] (permuted) and float against the contiguous double run
  const auto want = run_class(c, c.logits, false, {});
  std::vector<float> perm(c.logits.size()), grad(c.logits.size());
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t q = 0; q < c.Q; ++q)
      for (std::int64_t k = 0; k < c.C; ++k)
        perm[(k * c.B + b) * c.Q + q] = static_cast<float>(c.logits[(b * c.Q + q) * c.C + k]);
  const std::vector<float> probs(c.probs.begin(), c.probs.end());
  float loss = 0;
  detr::MatchedClassLossArgs<float> a;
  a.logits = host_view<const float>(perm.data(), {c.B, c.Q, c.C}, {c.Q, 1, c.B * c.Q});
  a.target_probs = host_view<const float>(probs.data(), {c.T, c.C});
  a.pred_rows = host_view<const std::int64_t>(c.pred_rows.data(), {4});
  a.target_rows = host_view<const std::int64_t>(c.target_rows.data(), {4});
  a.out = host_scalar(&loss);
  a.grad_logits = host_view(grad.data(), {c.B, c.Q, c.C}, {c.Q, 1, c.B * c.Q});
  detr::matched_class_loss(a, Mode::forward_backward);
  CHECK(loss == doctest::Approx(want.loss).epsilon(1e-5));
  std::vector<double> g(grad.size());
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t q = 0; q < c.Q; ++q)
      for (std::int64_t k = 0; k < c.C; ++k) g[(b * c.Q + q) * c.C + k] = grad[(k * c.B + b) * c.Q + q];
  check_close(g, want.grad, 1e-4, 1e-7);
  // backward with an upstream gradient of 3: 3x the forward_backward gradient
  std::vector<double> gb(c.logits.size());
  const double up = 3.0;
  detr::MatchedClassLossArgs<double> ab;
  ab.logits = host_view<const double>(c.logits.data(), {c.B, c.Q, c.C});
  ab.target_probs = host_view<const double>(c.probs.data(), {c.T, c.C});
  ab.pred_rows = host_view<const std::int64_t>(c.pred_rows.data(), {4});
  ab.target_rows = host_view<const std::int64_t>(c.target_rows.data(), {4});
  ab.grad_out = host_scalar<const double>(&up);
  ab.grad_logits = host_view(gb.data(), {c.B, c.Q, c.C});
  detr::matched_class_loss(ab, Mode::backward);
  for (std::size_t i = 0; i < gb.size(); ++i) CHECK(gb[i] == doctest::Approx(3.0 * want.grad[i]));
  // no pairs: every query is background
  double empty = -1;
  ab.pred_rows = host_view<const std::int64_t>(nullptr, {0});
  ab.target_rows = host_view<const std::int64_t>(nullptr, {0});
  ab.out = host_scalar(&empty);
  ab.options.normalizer = detr::Normalizer::detr_num_boxes(0);
  detr::matched_class_loss(ab, Mode::forward);
  CHECK(empty == doctest::Approx(kdloss_ref::detr::class_loss_sum(c.logits, c.B * c.Q, c.C, c.probs, {}, {}, {}, false,
                                                                   0, 0)));
}

TEST_CASE("detr::matched_class_loss: NaN logits propagate to the loss and their own gradient") {
  ClassCase c;
  c.logits[4] = std::numeric_limits<double>::quiet_NaN();
  const auto r = run_class(c, c.logits, false, {});
  CHECK(std::isnan(r.loss));
  CHECK(std::isnan(r.grad[4]));
  CHECK(std::isfinite(r.grad[5]));
}

TEST_CASE("detr::matched_box_loss: L1 and GIoU (normalised and pixel) against the formulas, central differences") {
  const std::int64_t B = 2, Q = 4, T = 3;
  auto pred = random_vector<double>(B * Q * 4, 5, 0.2, 0.6), target = random_vector<double>(T * 4, 6, 0.2, 0.6);
  const std::vector<std::int64_t> pred_rows = {0, 2, 5}, target_rows = {1, 0, 2};
  const std::vector<double> sizes = {480, 640, 300, 200};
  for (bool pixels : {false, true})
    for (int form : {0, 1}) {
      CAPTURE(pixels);
      CAPTURE(form);
      detr::MatchedBoxLossOptions o;
      o.form = form == 0 ? ops::OverlapForm::detr : ops::OverlapForm::mmdet;
      o.eps = form == 0 ? 0.0 : 1e-6;
      o.normalizer = detr::Normalizer::mmdet_avg_factor(3.0);
      const double div = 3.0 + FLT_EPSILON;
      const auto sums = [&](const std::vector<double>& p) {
        return kdloss_ref::detr::box_loss_sums(p, Q, target, pred_rows, target_rows,
                                               pixels ? sizes : std::vector<double>{}, 1, form, o.eps);
      };
      double l1 = 0, giou = 0;
      std::vector<double> grad(pred.size(), std::numeric_limits<double>::quiet_NaN());
      detr::MatchedBoxLossArgs<double> a;
      a.pred_boxes = host_view<const double>(pred.data(), {B, Q, 4});
      a.target_boxes = host_view<const double>(target.data(), {T, 4});
      a.pred_rows = host_view<const std::int64_t>(pred_rows.data(), {3});
      a.target_rows = host_view<const std::int64_t>(target_rows.data(), {3});
      if (pixels) a.sizes = host_view<const double>(sizes.data(), {B, 2});
      a.out_l1 = host_scalar(&l1);
      a.out_giou = host_scalar(&giou);
      a.grad_pred_boxes = host_view(grad.data(), {B, Q, 4});
      a.options = o;
      detr::matched_box_loss(a, Mode::forward_backward);
      const auto want = sums(pred);
      CHECK(l1 == doctest::Approx(5.0 * want.first / div).epsilon(1e-13));
      CHECK(giou == doctest::Approx(2.0 * want.second / div).epsilon(1e-13));
      const auto num = kdloss_test::numeric_gradient(pred, [&](const std::vector<double>& p) {
        const auto s = sums(p);
        return (5.0 * s.first + 2.0 * s.second) / div;
      });
      check_close(grad, num, 1e-6, 1e-8);
      for (int k = 0; k < 4; ++k) CHECK(grad[4 * 1 + k] == 0.0);  // unmatched row 1
      // backward of the GIoU term alone with upstream 2
      const double up = 2.0;
      std::vector<double> gb(pred.size());
      a.out_l1 = {};
      a.out_giou = {};
      a.grad_out_giou = host_scalar<const double>(&up);
      a.grad_pred_boxes = host_view(gb.data(), {B, Q, 4});
      detr::matched_box_loss(a, Mode::backward);
      const auto num_g = kdloss_test::numeric_gradient(pred, [&](const std::vector<double>& p) {
        return 2.0 * 2.0 * sums(p).second / div;
      });
      check_close(gb, num_g, 1e-6, 1e-8);
    }
}

TEST_CASE("detr matched losses: bad assignments and shapes name the argument, outputs untouched") {
  const ClassCase c;
  double loss = -7;
  std::vector<double> grad(c.logits.size(), -7.0);
  const auto untouched = [&] {
    CHECK(loss == -7);
    for (double v : grad) CHECK(v == -7.0);
  };
  std::vector<std::int64_t> dup = {1, 1}, tr = {0, 1}, far = {1, 99};
  detr::MatchedClassLossArgs<double> a;
  a.logits = host_view<const double>(c.logits.data(), {c.B, c.Q, c.C});
  a.target_probs = host_view<const double>(c.probs.data(), {c.T, c.C});
  a.pred_rows = host_view<const std::int64_t>(dup.data(), {2});
  a.target_rows = host_view<const std::int64_t>(tr.data(), {2});
  a.out = host_scalar(&loss);
  a.grad_logits = host_view(grad.data(), {c.B, c.Q, c.C});
  kdloss_test::expect_error([&] { detr::matched_class_loss(a, Mode::forward_backward); },
                            "kdloss::detr::matched_class_loss_forward_backward: argument 'pred_rows' lists row 1 twice",
                            untouched);
  a.pred_rows = host_view<const std::int64_t>(tr.data(), {2});
  a.target_rows = host_view<const std::int64_t>(far.data(), {2});
  kdloss_test::expect_error([&] { detr::matched_class_loss(a, Mode::forward_backward); },
                            "argument 'target_rows' has 99 at pair 1, outside [0, 4)", untouched);
  a.target_rows = host_view<const std::int64_t>(tr.data(), {1});
  kdloss_test::expect_error([&] { detr::matched_class_loss(a, Mode::forward_backward); },
                            "arguments 'pred_rows' [2] and 'target_rows' [1] must have the same shape", untouched);
  a.target_rows = host_view<const std::int64_t>(tr.data(), {2});
  a.target_probs = host_view<const double>(c.probs.data(), {2, 6});
  kdloss_test::expect_error([&] { detr::matched_class_loss(a, Mode::forward_backward); },
                            "argument 'target_probs' [2, 6] must have C = 3 classes as 'logits' [2, 5, 3]", untouched);
  a.target_labels = host_view<const std::int64_t>(c.labels.data(), {4});
  kdloss_test::expect_error([&] { detr::matched_class_loss(a, Mode::forward_backward); },
                            "pass exactly one of 'target_probs' [T, C] and 'target_labels' [T]", untouched);
  // box loss: wrong box shape, no term asked
  std::vector<double> boxes(24, 0.5);
  detr::MatchedBoxLossArgs<double> b;
  b.pred_boxes = host_view<const double>(boxes.data(), {2, 4, 3});
  b.target_boxes = host_view<const double>(boxes.data(), {3, 4});
  b.pred_rows = host_view<const std::int64_t>(tr.data(), {2});
  b.target_rows = host_view<const std::int64_t>(tr.data(), {2});
  b.out_l1 = host_scalar(&loss);
  kdloss_test::expect_error([&] { detr::matched_box_loss(b, Mode::forward); },
                            "argument 'pred_boxes' must be boxes of shape [4], [N, 4] or [B, N, 4]", untouched);
  b.pred_boxes = host_view<const double>(boxes.data(), {2, 3, 4});
  b.out_l1 = {};
  kdloss_test::expect_error([&] { detr::matched_box_loss(b, Mode::forward); },
                            "no term asked: pass 'out_l1' and/or 'out_giou'", untouched);
}

KDLOSS_GPU_TEST("detr::matched_class_loss: CPU and GPU agree (soft BCE and focal; float and double)") {
#if KDLOSS_TEST_CUDA
  const ClassCase c;
  for (bool focal : {false, true})
    for (int dtype = 0; dtype < 2; ++dtype) {
      detr::MatchedClassLossOptions o;
      if (focal) o.kind = detr::MatchedClassLossOptions::Kind::focal;
      const auto cpu = run_class(c, c.logits, false, o);
      const auto gpu = kdloss_test::matched_class_loss_on_gpu(dtype, c.logits, c.B, c.Q, c.C, c.probs, c.pred_rows,
                                                              c.target_rows, focal);
      const double tol = dtype == 1 ? 1e-12 : 1e-5;
      REQUIRE(gpu.size() == 1 + cpu.grad.size());
      CHECK(gpu[0] == doctest::Approx(cpu.loss).epsilon(tol));
      check_close(std::vector<double>(gpu.begin() + 1, gpu.end()), cpu.grad, tol, tol);
    }
#endif
}

TEST_CASE("detr::matched_class_loss: out_elementwise holds every element's loss (torchvision's reduction none)") {
  const ClassCase c;
  std::vector<double> elems(c.logits.size(), -1.0);
  double loss = 0;
  detr::MatchedClassLossArgs<double> a;
  a.logits = host_view<const double>(c.logits.data(), {c.B, c.Q, c.C});
  a.target_probs = host_view<const double>(c.probs.data(), {c.T, c.C});
  a.pred_rows = host_view<const std::int64_t>(c.pred_rows.data(), {4});
  a.target_rows = host_view<const std::int64_t>(c.target_rows.data(), {4});
  a.out = host_scalar(&loss);
  a.out_elementwise = host_view(elems.data(), {c.B, c.Q, c.C});
  a.options.kind = detr::MatchedClassLossOptions::Kind::focal;
  a.options.normalizer = detr::Normalizer{detr::Normalizer::Kind::sum};
  detr::matched_class_loss(a, Mode::forward);
  double s = 0;
  for (double v : elems) s += v;
  CHECK(s == doctest::Approx(loss).epsilon(1e-14));
  // element (row 1, class 0) is matched to target row 2: torchvision's per-element focal
  CHECK(elems[3] == doctest::Approx(kdloss_ref::detr::focal(c.logits[3], c.probs[6], 0.25, 2.0)).epsilon(1e-13));
  CHECK(elems[0] == doctest::Approx(kdloss_ref::detr::focal(c.logits[0], 0.0, 0.25, 2.0)).epsilon(1e-13));
}
