// ops/boxes.hpp: conversions, scaling and clamping, pairwise IoU / GIoU in the three forms, the aligned
// GIoU loss and its gradients (torch 2.15 autograd at the kinks, central differences elsewhere), the
// degenerate-box rule, strided views, bad input, NaN, GPU agreement.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kdloss/ops/boxes.hpp"
#include "ops/boxes_gpu.hpp"
#include "reference/ops/boxes.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;
using kdloss::ops::BoxFormat;
using kdloss::ops::OverlapForm;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// Random valid xyxy boxes (x2 > x1, y2 > y1) in [0, 10].
std::vector<double> random_boxes(std::int64_t n, std::uint32_t seed) {
  auto u = random_vector<double>(static_cast<std::size_t>(4 * n), seed, 0.0, 1.0);
  std::vector<double> b(u.size());
  for (std::int64_t i = 0; i < n; ++i) {
    const double cx = 10 * u[4 * i], cy = 10 * u[4 * i + 1], w = 0.5 + 4 * u[4 * i + 2], h = 0.5 + 4 * u[4 * i + 3];
    b[4 * i] = cx - w / 2, b[4 * i + 1] = cy - h / 2, b[4 * i + 2] = cx + w / 2, b[4 * i + 3] = cy + h / 2;
  }
  return b;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

struct Form {
  OverlapForm form;
  double eps;
  int ref;
};
const Form kForms[3] = {{OverlapForm::detr, 0.0, 0}, {OverlapForm::mmdet, 1e-6, 1}, {OverlapForm::torchvision, 1e-7, 2}};

/// torch 2.15 autograd of 1 - GIoU for one pair (python: mmdet's bbox_overlaps / DETR's form written out,
/// torchvision.ops.generalized_box_iou_loss): form, eps, pred, target, {GIoU, d loss / d pred, d loss / d target}.
struct TorchCase {
  int form;
  double eps;
  double p[4], t[4], want[9];
};
const TorchCase kTorch[] = {
    {0, 0, {0, 0, 2, 2}, {1, 1, 3, 3}, {-0.07936507936507936, -0.07785336356764927, -0.07785336356764927, -0.23356009070294784, -0.23356009070294784, 0.23356009070294784, 0.23356009070294784, 0.07785336356764927, 0.07785336356764927}},
    {0, 0, {0, 0, 2, 2}, {2, 0, 4, 2}, {0.0, 0.0, 0.0, -0.25, 0.0, 0.25, 0.0, 0.0, 0.0}},
    {0, 0, {0, 0, 2, 2}, {0, 0, 2, 3}, {0.6666666666666666, -0.02777777777777779, 0.05555555555555555, 0.02777777777777779, -0.3333333333333333, 0.027777777777777762, 0.05555555555555555, -0.027777777777777762, 0.2222222222222222}},
    {0, 0, {0, 0, 2, 2}, {3, 3, 4, 4}, {-0.6875, 0.046875, 0.046875, -0.125, -0.125, 0.0625, 0.0625, 0.015625, 0.015625}},
    {0, 0, {1, 1, 2, 2}, {0, 0, 3, 3}, {0.1111111111111111, 0.1111111111111111, 0.1111111111111111, -0.1111111111111111, -0.1111111111111111, -0.037037037037037035, -0.037037037037037035, 0.037037037037037035, 0.037037037037037035}},
    {0, 0, {0, 0, 2, 2}, {0, 0, 2, 2}, {1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0}},
    {0, 0, {0, 0, 0.0001, 0.0001}, {5e-05, 0.0, 0.0002, 0.0001}, {0.25, -1250.0, -937.5, -5000.0, 937.5, 5000.0, 937.5000000000009, 1250.0, -937.5000000000009}},
    {1, 1e-06, {0, 0, 2, 2}, {2, 0, 4, 2}, {0.0, 0.0, 0.0, -0.25, 0.0, 0.25, 0.0, 0.0, 0.0}},
    {1, 1e-06, {0, 0, 2, 2}, {0, 0, 2, 3}, {0.6666666666666666, -0.02777777777777779, 0.05555555555555555, 0.02777777777777779, -0.3333333333333333, 0.027777777777777762, 0.05555555555555555, -0.027777777777777762, 0.2222222222222222}},
    {1, 1e-06, {0, 0, 2, 2}, {0, 0, 2, 2}, {1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0}},
    {1, 1e-06, {0, 0, 0.0001, 0.0001}, {5e-05, 0.0, 0.0002, 0.0001}, {0.005, 0.0, 25.0, -100.0, -25.0, 100.0, 25.0, 0.0, -25.0}},
    {1, 1e-06, {0, 0, 0, 0}, {0, 0, 0, 0}, {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0}},
    {2, 1e-07, {0, 0, 2, 2}, {1, 1, 3, 3}, {-0.07936507893675993, -0.07785336281299116, -0.07785336281299116, -0.23356008801065403, -0.23356008801065403, 0.23356008801065403, 0.23356008801065403, 0.07785336281299116, 0.07785336281299116}},
    {2, 1e-07, {0, 0, 2, 2}, {2, 0, 4, 2}, {0.0, 0.0, 0.0, -0.24999999687500005, 0.0, 0.24999999687500005, 0.0, 0.0, 0.0}},
    {2, 1e-07, {0, 0, 2, 2}, {0, 0, 2, 3}, {0.6666666555555557, -0.027777775462963006, 0.055555556481481444, 0.027777775462963006, -0.33333332777777785, 0.02777778101851841, 0.055555556481481444, -0.02777778101851841, 0.22222221481481497}},
    {2, 1e-07, {0, 0, 2, 2}, {0, 0, 2, 2}, {0.9999999750000006, 6.249999712215626e-09, 6.249999712215626e-09, -6.249999712215626e-09, -6.249999712215626e-09, 6.249999712215626e-09, 6.249999712215626e-09, -6.249999712215626e-09, -6.249999712215626e-09}},
    {2, 1e-07, {0, 0, 0.0001, 0.0001}, {5e-05, 0.0, 0.0002, 0.0001}, {0.04166666666666663, -34.722222222222285, -26.041666666666742, -833.3333333333334, 26.041666666666742, 833.3333333333334, 373.26388888888914, 34.722222222222285, -373.26388888888914}},
    {2, 1e-07, {0, 0, 0, 0}, {0, 0, 0, 0}, {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0}},
};

/// loss and both gradients of ops::giou_loss (reduction sum) on double pairs.
struct LossRun {
  double loss;
  std::vector<double> gp, gt;
};
LossRun run_giou(const std::vector<double>& p, const std::vector<double>& t, const ops::GIoULossOptions& o,
                 const std::vector<double>& w = {}) {
  const std::int64_t n = static_cast<std::int64_t>(p.size() / 4);
  LossRun r{0, std::vector<double>(p.size()), std::vector<double>(p.size())};
  ops::GIoULossArgs<double> a;
  a.pred = host_view<const double>(p.data(), {n, 4});
  a.target = host_view<const double>(t.data(), {n, 4});
  if (!w.empty()) a.weight = host_view<const double>(w.data(), {n});
  a.out = host_scalar(&r.loss);
  a.grad_pred = host_view(r.gp.data(), {n, 4});
  a.grad_target = host_view(r.gt.data(), {n, 4});
  a.options = o;
  ops::giou_loss(a, Mode::forward_backward);
  return r;
}

}  // namespace

TEST_CASE("ops::box_convert: every format pair against the formulas, round trips, backward, strided") {
  const auto boxes = random_boxes(7, 11);
  for (int from = 0; from < 3; ++from)
    for (int to = 0; to < 3; ++to) {
      std::vector<double> in(boxes.size()), want(boxes.size()), got(boxes.size(), kNaN);
      for (std::size_t i = 0; i < boxes.size() / 4; ++i) {
        const kdloss_ref::ops::Box xy{boxes[4 * i], boxes[4 * i + 1], boxes[4 * i + 2], boxes[4 * i + 3]};
        const auto a = kdloss_ref::ops::box_from_xyxy(xy, from), b = kdloss_ref::ops::box_from_xyxy(xy, to);
        for (int k = 0; k < 4; ++k) in[4 * i + k] = a[k], want[4 * i + k] = b[k];
      }
      const ops::BoxConvertOptions o{static_cast<BoxFormat>(from), static_cast<BoxFormat>(to)};
      ops::box_convert(host_view<const double>(in.data(), {7, 4}), host_view(got.data(), {7, 4}), o);
      check_close(got, want, 1e-14, 1e-14);
      // backward: the Jacobian's transpose, checked by central differences of <g, convert(x)>
      const auto g = random_vector<double>(in.size(), 5);
      std::vector<double> gin(in.size());
      ops::box_convert_backward(host_view<const double>(g.data(), {7, 4}), host_view(gin.data(), {7, 4}), o);
      const auto num = kdloss_test::numeric_gradient(in, [&](const std::vector<double>& x) {
        std::vector<double> y(x.size());
        ops::box_convert(host_view<const double>(x.data(), {7, 4}), host_view(y.data(), {7, 4}), o);
        double s = 0;
        for (std::size_t i = 0; i < y.size(); ++i) s += g[i] * y[i];
        return s;
      });
      check_close(gin, num, 1e-7, 1e-8);
    }
  // [B, N, 4] stored coordinate-major (strides {4N, 1, N}) against the contiguous call, float
  const auto f = cast<float>(random_vector<double>(2 * 3 * 4, 9, 0.0, 5.0));
  std::vector<float> strided(f.size()), want(f.size()), got(f.size());
  for (int b = 0; b < 2; ++b)
    for (int i = 0; i < 3; ++i)
      for (int k = 0; k < 4; ++k) strided[b * 12 + k * 3 + i] = f[(b * 3 + i) * 4 + k];
  ops::box_convert(host_view<const float>(f.data(), {2, 3, 4}), host_view(want.data(), {2, 3, 4}));
  ops::box_convert(host_view<const float>(strided.data(), {2, 3, 4}, {12, 1, 3}), host_view(got.data(), {2, 3, 4}));
  CHECK(got == want);
  // a single [4] box
  float one[4] = {1, 1, 2, 2}, one_out[4];
  ops::box_convert(host_view<const float>(one, {4}), host_view(one_out, {4}));
  CHECK(one_out[0] == 0.0f);
  CHECK(one_out[3] == 2.0f);
}

TEST_CASE("ops::box_scale: factors per image, normalise, clamp and its strict gradient rule") {
  // 2 images, 2 boxes each, sizes (h, w)
  const std::vector<double> boxes = {0.1, 0.2, 0.5, 1.2, -0.1, 0.0, 1.0, 0.5, 0.25, 0.25, 0.75, 0.75, 0.0, 0.5, 1.0, 1.0};
  const std::vector<double> hw = {100, 200, 50, 40};
  std::vector<double> out(16), want(16);
  for (int b = 0; b < 2; ++b)
    for (int i = 0; i < 2; ++i)
      for (int k = 0; k < 4; ++k) {
        const double f = k % 2 == 0 ? hw[2 * b + 1] : hw[2 * b];
        const double s = boxes[(b * 2 + i) * 4 + k] * f;
        want[(b * 2 + i) * 4 + k] = std::min(std::max(s, 0.0), f);
      }
  ops::box_scale(host_view<const double>(boxes.data(), {2, 2, 4}), host_view<const double>(hw.data(), {2, 2}),
                 host_view(out.data(), {2, 2, 4}), {false, true});
  check_close(out, want, 1e-15);
  // normalise undoes the scale (no clamp)
  std::vector<double> px(16), back(16);
  ops::box_scale(host_view<const double>(boxes.data(), {2, 2, 4}), host_view<const double>(hw.data(), {2, 2}),
                 host_view(px.data(), {2, 2, 4}));
  ops::box_scale(host_view<const double>(px.data(), {2, 2, 4}), host_view<const double>(hw.data(), {2, 2}),
                 host_view(back.data(), {2, 2, 4}), {true, false});
  check_close(back, boxes, 1e-15);
  // backward: factor strictly inside (0, size); 0 at the bounds (0.0 * w = 0 and 1.0 * w = w) and outside
  const std::vector<double> g(16, 1.0);
  std::vector<double> gb(16);
  ops::box_scale_backward(host_view<const double>(boxes.data(), {2, 2, 4}), host_view<const double>(hw.data(), {2, 2}),
                          host_view<const double>(g.data(), {2, 2, 4}), host_view(gb.data(), {2, 2, 4}),
                          {false, true});
  const std::vector<double> want_g = {200, 100, 200, 0, 0, 0, 0, 100, 40, 50, 40, 50, 0, 50, 0, 0};
  check_close(gb, want_g, 0);
}

TEST_CASE("ops::box_overlap: IoU and GIoU in the three forms against the reference, batched and shared") {
  const std::int64_t B = 2, N = 5, M = 4;
  auto a = random_boxes(B * N, 1), b = random_boxes(B * M, 2);
  b[0] = a[0], b[1] = a[1], b[2] = a[2], b[3] = a[3];  // one identical pair: IoU exactly 1
  for (const auto& f : kForms)
    for (bool giou : {false, true}) {
      CAPTURE(f.ref);
      CAPTURE(giou);
      std::vector<double> got(B * N * M, kNaN);
      ops::BoxOverlapOptions o{giou, f.form, f.eps};
      ops::box_overlap(ops::BoxOverlapArgs<double>{host_view<const double>(a.data(), {B, N, 4}),
                                                   host_view<const double>(b.data(), {B, M, 4}),
                                                   host_view(got.data(), {B, N, M}), o},
                       Mode::forward);
      const auto want = kdloss_ref::ops::box_overlap_pairwise(a, b, B, N, M, f.ref, f.eps, giou);
      check_close(got, want, 1e-13, 1e-15);
      if (f.form != OverlapForm::torchvision) CHECK(got[0] == 1.0);
      // float, boxes2 shared by both images (rank 2)
      const auto af = cast<float>(a), bf = cast<float>(b);
      std::vector<float> gf(B * N * M);
      ops::box_overlap(ops::BoxOverlapArgs<float>{host_view<const float>(af.data(), {B, N, 4}),
                                                  host_view<const float>(bf.data(), {M, 4}),
                                                  host_view(gf.data(), {B, N, M}), o},
                       Mode::forward);
      std::vector<double> a64(af.begin(), af.end()), b64(bf.begin(), bf.begin() + M * 4);
      b64.resize(B * M * 4);
      std::copy(b64.begin(), b64.begin() + M * 4, b64.begin() + M * 4);
      check_close(gf, kdloss_ref::ops::box_overlap_pairwise(a64, b64, B, N, M, f.ref, f.eps, giou), 1e-5, 1e-6);
    }
  // torchvision names, unbatched, boxes in cxcywh
  std::vector<double> c1 = {1, 1, 2, 2}, c2 = {2, 1, 2, 2}, iou(1), giou(1);
  ops::BoxOverlapOptions o;
  o.format = BoxFormat::cxcywh;
  ops::box_iou(host_view<const double>(c1.data(), {1, 4}), host_view<const double>(c2.data(), {1, 4}),
               host_view(iou.data(), {1, 1}), o);
  ops::generalized_box_iou(host_view<const double>(c1.data(), {1, 4}), host_view<const double>(c2.data(), {1, 4}),
                           host_view(giou.data(), {1, 1}), o);
  CHECK(iou[0] == doctest::Approx(2.0 / 6.0));
  CHECK(giou[0] == doctest::Approx(2.0 / 6.0));  // the enclosing box is the union
  // empty sides are legal
  std::vector<double> none;
  ops::box_iou(host_view<const double>(c1.data(), {0, 4}), host_view<const double>(c2.data(), {1, 4}),
               host_view(none.data(), {0, 1}));
}

TEST_CASE("ops::giou_loss: torch 2.15 autograd at the kinks (touching, ties, eps branch) in the three forms") {
  for (const auto& c : kTorch) {
    CAPTURE(c.form);
    CAPTURE(c.p[2]);
    CAPTURE(c.t[0]);
    const std::vector<double> p(c.p, c.p + 4), t(c.t, c.t + 4);
    ops::GIoULossOptions o;
    o.form = kForms[c.form].form;
    o.eps = c.eps;
    const auto r = run_giou(p, t, o);
    CHECK(1.0 - r.loss == doctest::Approx(c.want[0]).epsilon(1e-12));
    check_close(r.gp, std::vector<double>(c.want + 1, c.want + 5), 1e-9, 1e-12);
    check_close(r.gt, std::vector<double>(c.want + 5, c.want + 9), 1e-9, 1e-12);
  }
}

TEST_CASE("ops::giou_loss: central differences, weights, reductions, cxcywh, float") {
  const std::int64_t N = 6;
  const auto p = random_boxes(N, 21), t = random_boxes(N, 22);
  const auto w = random_vector<double>(N, 23, 0.5, 2.0);
  for (const auto& f : kForms)
    for (int format : {0, 1}) {
      CAPTURE(f.ref);
      CAPTURE(format);
      std::vector<double> pf = p, tf = t;
      for (std::int64_t i = 0; i < N; ++i) {
        const auto a = kdloss_ref::ops::box_from_xyxy({p[4 * i], p[4 * i + 1], p[4 * i + 2], p[4 * i + 3]}, format);
        const auto b = kdloss_ref::ops::box_from_xyxy({t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]}, format);
        for (int k = 0; k < 4; ++k) pf[4 * i + k] = a[k], tf[4 * i + k] = b[k];
      }
      ops::GIoULossOptions o;
      o.form = f.form;
      o.eps = f.eps;
      o.format = static_cast<BoxFormat>(format);
      o.reduction = Reduction::mean;
      o.scale = 2.0;
      const auto r = run_giou(pf, tf, o, w);
      const auto ref = kdloss_ref::ops::giou_losses(pf, tf, w, f.ref, f.eps, format);
      double want = 0;
      for (double v : ref) want += v;
      CHECK(r.loss == doctest::Approx(2.0 * want / N).epsilon(1e-13));
      const auto loss_of = [&](const std::vector<double>& pp, const std::vector<double>& tt) {
        double s = 0;
        for (double v : kdloss_ref::ops::giou_losses(pp, tt, w, f.ref, f.eps, format)) s += v;
        return 2.0 * s / N;
      };
      check_close(r.gp, kdloss_test::numeric_gradient(pf, [&](const std::vector<double>& x) { return loss_of(x, tf); }),
                  1e-6, 1e-9);
      check_close(r.gt, kdloss_test::numeric_gradient(tf, [&](const std::vector<double>& x) { return loss_of(pf, x); }),
                  1e-6, 1e-9);
      // reduction none and backward with a per-pair upstream gradient
      std::vector<double> each(N, kNaN), up = random_vector<double>(N, 4), gp(4 * N, kNaN);
      ops::GIoULossOptions on = o;
      on.reduction = Reduction::none;
      ops::GIoULossArgs<double> a;
      a.pred = host_view<const double>(pf.data(), {N, 4});
      a.target = host_view<const double>(tf.data(), {N, 4});
      a.weight = host_view<const double>(w.data(), {N});
      a.out = host_view(each.data(), {N});
      a.options = on;
      ops::giou_loss(a, Mode::forward);
      for (auto& v : const_cast<std::vector<double>&>(ref)) v *= 2.0;
      check_close(each, ref, 1e-13);
      a.out = {};
      a.grad_out = host_view<const double>(up.data(), {N});
      a.grad_pred = host_view(gp.data(), {N, 4});
      ops::giou_loss(a, Mode::backward);
      const auto num = kdloss_test::numeric_gradient(pf, [&](const std::vector<double>& x) {
        const auto l = kdloss_ref::ops::giou_losses(x, tf, w, f.ref, f.eps, format);
        double s = 0;
        for (std::int64_t i = 0; i < N; ++i) s += 2.0 * up[i] * l[i];
        return s;
      });
      check_close(gp, num, 1e-6, 1e-9);
    }
  // float against double
  const auto pf = cast<float>(p), tf = cast<float>(t);
  float lf = 0;
  std::vector<float> gpf(4 * N);
  ops::giou_loss_forward_backward(host_view<const float>(pf.data(), {N, 4}), host_view<const float>(tf.data(), {N, 4}),
                                  host_scalar(&lf), host_view(gpf.data(), {N, 4}), View<float>{});
  const auto r = run_giou(std::vector<double>(pf.begin(), pf.end()), std::vector<double>(tf.begin(), tf.end()), {});
  CHECK(lf == doctest::Approx(r.loss).epsilon(1e-5));
  check_close(gpf, r.gp, 1e-4, 1e-6);
}

TEST_CASE("ops::giou_loss: degenerate boxes (zero area, identical, inverted) give finite values and gradients") {
  // identical boxes of positive area: GIoU exactly 1 in detr and mmdet; zero-area identical: 1 by the rule (detr)
  {
    const auto r = run_giou({1, 2, 4, 7}, {1, 2, 4, 7}, {});
    CHECK(r.loss == 0.0);
    const auto z = run_giou({3, 3, 3, 3}, {3, 3, 3, 3}, {});  // torch gives NaN (0 / 0); the rule gives 1
    CHECK(z.loss == 0.0);
    CHECK(kdloss_test::all_finite(z.gp));
    CHECK(kdloss_test::all_finite(z.gt));
  }
  // zero-area boxes that differ, a point inside a box, inverted boxes, lines: all finite in every form
  const std::vector<std::vector<double>> pairs = {
      {0, 0, 0, 0, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0, 2, 2}, {0, 0, 2, 0, 0, 0, 2, 0}, {2, 2, 0, 0, 0, 0, 1, 1},
      {2, 0, 0, 2, 0, 0, 2, 2}, {0, 0, 1, 1, 1, 1, 0, 0}, {0, 0, 0, 1, 0, 0, 1, 0}};
  for (const auto& f : kForms)
    for (const auto& pq : pairs) {
      CAPTURE(f.ref);
      CAPTURE(pq[0]);
      ops::GIoULossOptions o;
      o.form = f.form;
      o.eps = f.eps;
      const auto r = run_giou({pq[0], pq[1], pq[2], pq[3]}, {pq[4], pq[5], pq[6], pq[7]}, o);
      CHECK(std::isfinite(r.loss));
      CHECK(kdloss_test::all_finite(r.gp));
      CHECK(kdloss_test::all_finite(r.gt));
      const double want = kdloss_ref::ops::giou_losses({pq[0], pq[1], pq[2], pq[3]}, {pq[4], pq[5], pq[6], pq[7]}, {},
                                                       f.ref, f.eps, 0)[0];
      CHECK(r.loss == doctest::Approx(want));
    }
  // NaN in a box propagates to its loss (torch: NaN), other pairs stay finite
  std::vector<double> each(2);
  const std::vector<double> p = {0, 0, kNaN, 1, 0, 0, 1, 1}, t = {0, 0, 1, 1, 0, 0, 2, 2};
  ops::GIoULossOptions o;
  o.reduction = Reduction::none;
  ops::giou_loss(host_view<const double>(p.data(), {2, 4}), host_view<const double>(t.data(), {2, 4}),
                 host_view(each.data(), {2}), o);
  CHECK(std::isnan(each[0]));
  CHECK(each[1] == doctest::Approx(0.75));
  // empty: sum 0, mean 0 (torchvision's 0.0 * loss.sum())
  double loss = kNaN;
  o.reduction = Reduction::mean;
  ops::giou_loss(host_view<const double>(p.data(), {0, 4}), host_view<const double>(t.data(), {0, 4}),
                 host_scalar(&loss), o);
  CHECK(loss == 0.0);
}

TEST_CASE("ops::boxes: bad input names the argument and the shapes, outputs untouched") {
  std::vector<float> p(12, 1.0f), t(12, 1.0f), out(12, -7.0f), g(12, -7.0f);
  const auto untouched = [&] {
    for (float v : out) CHECK(v == -7.0f);
    for (float v : g) CHECK(v == -7.0f);
  };
  kdloss_test::expect_error(
      [&] { ops::box_convert(host_view<const float>(p.data(), {4, 3}), host_view(out.data(), {4, 3})); },
      "argument 'boxes' must be boxes of shape [4], [N, 4] or [B, N, 4] (4 coordinates on the last axis) but has shape [4, 3]",
      untouched);
  kdloss_test::expect_error(
      [&] { ops::box_convert(host_view<const float>(p.data(), {3, 4}), host_view(out.data(), {2, 4})); },
      "argument 'out' has shape [2, 4] but expected [3, 4]", untouched);
  kdloss_test::expect_error(
      [&] {
        ops::box_convert(host_view<const float>(p.data(), {3, 4}), host_view(out.data(), {3, 4}),
                         {static_cast<BoxFormat>(7), BoxFormat::xyxy});
      },
      "argument 'options.in_fmt' is 7, not xyxy, cxcywh or xywh", untouched);
  kdloss_test::expect_error(
      [&] {
        ops::box_iou(host_view<const float>(p.data(), {2, 1, 4}), host_view<const float>(t.data(), {3, 1, 4}),
                     host_view(out.data(), {2, 1, 1}));
      },
      "arguments 'boxes1' [2, 1, 4] and 'boxes2' [3, 1, 4] must have the same batch B", untouched);
  kdloss_test::expect_error(
      [&] {
        ops::box_iou(host_view<const float>(p.data(), {3, 4}), host_view<const float>(t.data(), {2, 4}),
                     host_view(out.data(), {2, 3}));
      },
      "argument 'out' has shape [2, 3] but expected [3, 2]", untouched);
  float loss = -7.0f;
  kdloss_test::expect_error(
      [&] {
        ops::giou_loss_forward_backward(host_view<const float>(p.data(), {3, 4}), host_view<const float>(t.data(), {2, 4}),
                                        host_scalar(&loss), host_view(g.data(), {3, 4}), View<float>{});
      },
      "arguments 'pred' [3, 4] and 'target' [2, 4] must have the same shape", untouched);
  kdloss_test::expect_error(
      [&] {
        ops::giou_loss_forward_backward(host_view<const float>(p.data(), {3, 4}), host_view<const float>(t.data(), {3, 4}),
                                        host_scalar(&loss), View<float>{}, View<float>{});
      },
      "arguments 'grad_pred' and 'grad_target' are both absent", untouched);
  kdloss_test::expect_error(
      [&] {
        ops::GIoULossOptions o;
        o.form = OverlapForm::mmdet;
        o.eps = -1;
        ops::giou_loss(host_view<const float>(p.data(), {3, 4}), host_view<const float>(t.data(), {3, 4}),
                       host_scalar(&loss), o);
      },
      "argument 'options.eps' is -1 but the mmdet form needs a finite eps >= 0", untouched);
  kdloss_test::expect_error(
      [&] {
        ops::giou_loss_forward_backward(host_view<const float>(p.data(), {3, 4}), host_view<const float>(t.data(), {3, 4}),
                                        host_scalar(&loss), host_view(const_cast<float*>(p.data()), {3, 4}), View<float>{});
      },
      "output argument 'grad_pred' overlaps the memory of argument 'pred'", untouched);
  CHECK(loss == -7.0f);
  kdloss_test::expect_error(
      [&] {
        ops::box_scale(host_view<const float>(p.data(), {3, 4}), host_view<const float>(t.data(), {2, 2}),
                       host_view(out.data(), {3, 4}));
      },
      "argument 'sizes' has shape [2, 2] but expected [1, 2]", untouched);
}

KDLOSS_GPU_TEST("ops::boxes: CPU and GPU agree (convert, pairwise GIoU, GIoU loss fwd + bwd; float, double, half)") {
#if KDLOSS_TEST_CUDA
  const std::int64_t N = 37;
  auto p = random_boxes(N, 41), t = random_boxes(N, 42);
  for (auto* v : {&p, &t})  // multiples of 1/16 in [0, 16]: exact in half too
    for (auto& x : *v) x = std::round(x * 16) / 16;
  for (int dtype = 0; dtype < 3; ++dtype) {
    for (const auto& f : kForms) {
      ops::GIoULossOptions o;
      o.form = f.form;
      o.eps = f.eps;
      const auto cpu = run_giou(p, t, o);
      const auto gpu = kdloss_test::giou_loss_on_gpu(dtype, p, t, static_cast<int>(f.form), f.eps);
      const double tol = dtype == 1 ? 1e-12 : dtype == 0 ? 1e-5 : 2e-2;
      REQUIRE(gpu.size() == 1 + 8 * N);
      CHECK(gpu[0] == doctest::Approx(cpu.loss).epsilon(tol));
      check_close(std::vector<double>(gpu.begin() + 1, gpu.begin() + 1 + 4 * N), cpu.gp, tol, tol);
      check_close(std::vector<double>(gpu.begin() + 1 + 4 * N, gpu.end()), cpu.gt, tol, tol);
      const auto pair = kdloss_test::generalized_box_iou_on_gpu(dtype, p, t, N, N, static_cast<int>(f.form), f.eps);
      check_close(pair, kdloss_ref::ops::box_overlap_pairwise(p, t, 1, N, N, f.ref, f.eps, true), tol, tol);
    }
  }
#endif
}
