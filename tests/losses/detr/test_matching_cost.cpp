// losses/detr/matching_cost.hpp: the DETR, Deformable DETR, mmdet and DETRDistill matcher costs against
// the matchers' formulas (soft BCE elementwise, not through the product), ragged targets with an empty
// image and padding, strided logits, float, bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kdloss/backend/cpu/boxes.hpp"
#include "kdloss/losses/detr/detr.hpp"
#include "ops/boxes_gpu.hpp"
#include "reference/losses/detr/matching_cost.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

struct Batch {
  std::int64_t B = 3, Q = 6, C = 5;
  std::vector<std::int64_t> offsets = {0, 4, 4, 7};  // 4 targets, none, 3
  std::int64_t T = 7, tmax = 5;                       // one padding column beyond the largest image
  std::vector<double> logits = random_vector<double>(3 * 6 * 5, 1, -3.0, 3.0);
  std::vector<double> boxes;  // normalised cxcywh
  std::vector<double> probs = random_vector<double>(7 * 5, 2, 0.0, 1.0);
  std::vector<std::int64_t> labels = {0, 4, 2, 2, 1, 3, 0};
  std::vector<double> tnorm;   // normalised cxcywh targets
  std::vector<double> tpixel;  // pixel xyxy targets
  std::vector<double> sizes = {480, 640, 100, 120, 300, 200};
  Batch() {
    const auto u = random_vector<double>(B * Q * 4, 3, 0.0, 1.0);
    for (std::int64_t r = 0; r < B * Q; ++r) {
      boxes.push_back(0.2 + 0.6 * u[4 * r]), boxes.push_back(0.2 + 0.6 * u[4 * r + 1]);
      boxes.push_back(0.05 + 0.3 * u[4 * r + 2]), boxes.push_back(0.05 + 0.3 * u[4 * r + 3]);
    }
    const auto v = random_vector<double>(T * 4, 4, 0.0, 1.0);
    for (std::int64_t t = 0; t < T; ++t) {
      const std::int64_t b = t < 4 ? 0 : 2;
      const double cx = 0.2 + 0.6 * v[4 * t], cy = 0.2 + 0.6 * v[4 * t + 1], w = 0.05 + 0.3 * v[4 * t + 2],
                   h = 0.05 + 0.3 * v[4 * t + 3];
      tnorm.insert(tnorm.end(), {cx, cy, w, h});
      const double W = sizes[2 * b + 1], H = sizes[2 * b];
      tpixel.insert(tpixel.end(), {(cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H});
    }
  }
};

kdloss_ref::detr::CostSpec spec_of(const detr::MatchingCostOptions& o) {
  kdloss_ref::detr::CostSpec s;
  s.class_cost = static_cast<int>(o.class_cost);
  s.wc = o.class_weight, s.wb = o.bbox_weight, s.wg = o.giou_weight;
  s.alpha = o.alpha, s.gamma = o.gamma, s.feps = o.focal_eps;
  s.pred_format = static_cast<int>(o.pred_format), s.target_format = static_cast<int>(o.target_format);
  s.target_in_pixels = o.target_in_pixels;
  s.giou_form = static_cast<int>(o.giou_form), s.giou_eps = o.giou_eps, s.pad = o.padding_value;
  return s;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

}  // namespace

TEST_CASE("detr::matching_cost: the four matchers' costs against their formulas, ragged targets and padding") {
  const Batch x;
  const detr::MatchingCostOptions presets[4] = {detr::MatchingCostOptions::detr(),
                                                detr::MatchingCostOptions::deformable_detr(),
                                                detr::MatchingCostOptions::mmdet_hungarian(),
                                                detr::MatchingCostOptions::detrdistill()};
  for (int k = 0; k < 4; ++k) {
    CAPTURE(k);
    auto o = presets[k];
    o.padding_value = 1e6;
    const bool pixels = o.target_in_pixels;
    const auto& tb = pixels ? x.tpixel : x.tnorm;
    std::vector<double> out(x.B * x.Q * x.tmax, std::numeric_limits<double>::quiet_NaN());
    detr::MatchingCostArgs<double> a;
    a.pred_logits = host_view<const double>(x.logits.data(), {x.B, x.Q, x.C});
    a.pred_boxes = host_view<const double>(x.boxes.data(), {x.B, x.Q, 4});
    if (o.class_cost == detr::MatchingCostOptions::ClassCost::soft_bce)
      a.target_probs = host_view<const double>(x.probs.data(), {x.T, x.C});
    else
      a.target_labels = host_view<const std::int64_t>(x.labels.data(), {x.T});
    a.target_boxes = host_view<const double>(tb.data(), {x.T, 4});
    a.targets = Segments<std::int64_t>{host_view<const std::int64_t>(x.offsets.data(), {x.B + 1})};
    if (pixels) a.sizes = host_view<const double>(x.sizes.data(), {x.B, 2});
    a.out = host_view(out.data(), {x.B, x.Q, x.tmax});
    a.options = o;
    detr::matching_cost(a);
    const auto want = kdloss_ref::detr::matching_cost(x.logits, x.boxes, x.B, x.Q, x.C, x.probs, x.labels, tb,
                                                      x.offsets, pixels ? x.sizes : std::vector<double>{}, x.tmax,
                                                      spec_of(o));
    check_close(out, want, 1e-12, 1e-12);
    // DETR's form in pixels too: the GIoU is invariant to the per-axis scale, so the costs agree
    if (k == 0) {
      std::vector<double> px(out.size());
      a.sizes = host_view<const double>(x.sizes.data(), {x.B, 2});
      a.out = host_view(px.data(), {x.B, x.Q, x.tmax});
      detr::matching_cost(a);
      check_close(px, out, 1e-12, 1e-12);
    }
    // float, logits stored [Q, B, C] (strided) against the double reference
    std::vector<float> lf(x.logits.size());
    for (std::int64_t b = 0; b < x.B; ++b)
      for (std::int64_t q = 0; q < x.Q; ++q)
        for (std::int64_t c = 0; c < x.C; ++c)
          lf[(q * x.B + b) * x.C + c] = static_cast<float>(x.logits[(b * x.Q + q) * x.C + c]);
    const auto bf = cast<float>(x.boxes), pf = cast<float>(x.probs), tf = cast<float>(tb), sf = cast<float>(x.sizes);
    std::vector<float> of(out.size());
    detr::MatchingCostArgs<float> af;
    af.pred_logits = host_view<const float>(lf.data(), {x.B, x.Q, x.C}, {x.C, x.B * x.C, 1});
    af.pred_boxes = host_view<const float>(bf.data(), {x.B, x.Q, 4});
    if (o.class_cost == detr::MatchingCostOptions::ClassCost::soft_bce)
      af.target_probs = host_view<const float>(pf.data(), {x.T, x.C});
    else
      af.target_labels = host_view<const std::int64_t>(x.labels.data(), {x.T});
    af.target_boxes = host_view<const float>(tf.data(), {x.T, 4});
    af.targets = a.targets;
    if (pixels) af.sizes = host_view<const float>(sf.data(), {x.B, 2});
    af.out = host_view(of.data(), {x.B, x.Q, x.tmax});
    af.options = o;
    detr::matching_cost(af);
    check_close(of, want, 1e-5, 1e-5);
  }
}

TEST_CASE("detr::matching_cost: single terms, weight 0 leaves a term out, class cost none needs no logits") {
  const Batch x;
  detr::MatchingCostOptions o = detr::MatchingCostOptions::deformable_detr();
  o.class_cost = detr::MatchingCostOptions::ClassCost::none;
  o.giou_weight = 0;
  std::vector<double> out(x.B * x.Q * x.tmax);
  detr::MatchingCostArgs<double> a;
  a.pred_boxes = host_view<const double>(x.boxes.data(), {x.B, x.Q, 4});
  a.target_boxes = host_view<const double>(x.tnorm.data(), {x.T, 4});
  a.targets = Segments<std::int64_t>{host_view<const std::int64_t>(x.offsets.data(), {x.B + 1})};
  a.out = host_view(out.data(), {x.B, x.Q, x.tmax});
  a.options = o;
  detr::matching_cost(a);
  auto s = spec_of(o);
  s.class_cost = 0;
  s.wg = 0;
  check_close(out, kdloss_ref::detr::matching_cost(x.logits, x.boxes, x.B, x.Q, x.C, {}, {}, x.tnorm, x.offsets, {},
                                                   x.tmax, s),
              1e-13, 1e-14);
}

TEST_CASE("detr::matching_cost: bad input names the argument and the shapes, out untouched") {
  const Batch x;
  std::vector<double> out(x.B * x.Q * x.tmax, -7.0);
  const auto untouched = [&] {
    for (double v : out) CHECK(v == -7.0);
  };
  detr::MatchingCostArgs<double> a;
  a.pred_logits = host_view<const double>(x.logits.data(), {x.B, x.Q, x.C});
  a.pred_boxes = host_view<const double>(x.boxes.data(), {x.B, x.Q, 4});
  a.target_labels = host_view<const std::int64_t>(x.labels.data(), {x.T});
  a.target_boxes = host_view<const double>(x.tpixel.data(), {x.T, 4});
  a.targets = Segments<std::int64_t>{host_view<const std::int64_t>(x.offsets.data(), {x.B + 1})};
  a.sizes = host_view<const double>(x.sizes.data(), {x.B, 2});
  a.out = host_view(out.data(), {x.B, x.Q, 3});
  kdloss_test::expect_error([&] { detr::matching_cost(a); },
                            "kdloss::detr::matching_cost: argument 'out' has shape [3, 6, 3] but expected [3, 6, T_max >= 4]",
                            untouched);
  a.out = host_view(out.data(), {x.B, x.Q, x.tmax});
  a.sizes = {};
  kdloss_test::expect_error([&] { detr::matching_cost(a); },
                            "argument 'sizes' [B, 2] (height, width) is absent but options.target_in_pixels needs it",
                            untouched);
  a.sizes = host_view<const double>(x.sizes.data(), {x.B, 2});
  std::vector<std::int64_t> bad = x.labels;
  bad[3] = 5;
  a.target_labels = host_view<const std::int64_t>(bad.data(), {x.T});
  kdloss_test::expect_error([&] { detr::matching_cost(a); },
                            "argument 'target_labels' has 5 at row 3, outside the C = 5 classes", untouched);
  a.target_labels = host_view<const std::int64_t>(x.labels.data(), {x.T});
  std::vector<std::int64_t> off = {0, 4, 7};
  a.targets = Segments<std::int64_t>{host_view<const std::int64_t>(off.data(), {3})};
  kdloss_test::expect_error([&] { detr::matching_cost(a); },
                            "argument 'targets' has offsets for 2 images but 'pred_boxes' [3, 6, 4] has B = 3", untouched);
  a.targets = Segments<std::int64_t>{host_view<const std::int64_t>(x.offsets.data(), {x.B + 1})};
  a.target_boxes = host_view<const double>(x.tpixel.data(), {x.T, 3});
  kdloss_test::expect_error([&] { detr::matching_cost(a); }, "argument 'target_boxes' must be boxes of shape", untouched);
  a.target_boxes = host_view<const double>(x.tpixel.data(), {x.T, 4});
  a.options = detr::MatchingCostOptions::detrdistill();
  kdloss_test::expect_error([&] { detr::matching_cost(a); },
                            "argument 'target_probs' [T, C] is absent but the soft_bce cost reads it", untouched);
  a.target_probs = host_view<const double>(x.probs.data(), {x.T, 4});
  kdloss_test::expect_error([&] { detr::matching_cost(a); }, "argument 'target_probs' has shape [7, 4] but expected [7, 5]",
                            untouched);
}

KDLOSS_GPU_TEST("detr::matching_cost: CPU and GPU agree for the four presets (float and double)") {
#if KDLOSS_TEST_CUDA
  const Batch x;
  const detr::MatchingCostOptions presets[4] = {detr::MatchingCostOptions::detr(),
                                                detr::MatchingCostOptions::deformable_detr(),
                                                detr::MatchingCostOptions::mmdet_hungarian(),
                                                detr::MatchingCostOptions::detrdistill()};
  for (int k = 0; k < 4; ++k)
    for (int dtype = 0; dtype < 2; ++dtype) {
      const auto& o = presets[k];
      const auto& tb = o.target_in_pixels ? x.tpixel : x.tnorm;
      const auto want = kdloss_ref::detr::matching_cost(x.logits, x.boxes, x.B, x.Q, x.C, x.probs, x.labels, tb,
                                                        x.offsets, o.target_in_pixels ? x.sizes : std::vector<double>{},
                                                        x.tmax, spec_of(o));
      const auto got = kdloss_test::matching_cost_on_gpu(dtype, k, x.logits, x.boxes, x.B, x.Q, x.C, x.probs, x.labels,
                                                         tb, x.offsets, x.sizes, x.tmax);
      check_close(got, want, dtype == 1 ? 1e-12 : 1e-5, dtype == 1 ? 1e-12 : 1e-5);
    }
#endif
}

namespace {

// Random xyxy boxes with the awkward cases mixed in: NaN coordinates, zero width or height, inverted
// boxes (x2 < x1), -0, and (in the targets) boxes identical to the prediction.
template <class A>
std::vector<A> awkward_boxes(std::int64_t n, std::uint32_t seed, const A px[4]) {
  auto v = random_vector<A>(static_cast<std::size_t>(4 * n), seed, -2.0, 12.0);
  std::mt19937 gen(seed + 99);
  for (std::int64_t j = 0; j < n; ++j) {
    A* b = v.data() + 4 * j;
    if (b[2] < b[0]) std::swap(b[0], b[2]);
    if (b[3] < b[1]) std::swap(b[1], b[3]);
    switch (gen() % 9) {
      case 0: b[gen() % 4] = std::numeric_limits<A>::quiet_NaN(); break;
      case 1: b[2] = b[0]; break;                        // zero width
      case 2: b[3] = b[1], b[2] = b[0]; break;           // a point
      case 3: std::swap(b[0], b[2]); break;              // inverted
      case 4: for (int k = 0; k < 4; ++k) b[k] = px[k]; break;  // identical to the prediction
      case 5: b[0] = A(-0.0), b[1] = A(0.0); break;
      case 6: b[0] = px[2], b[2] = px[2] + 1; break;     // touching
      default: break;
    }
  }
  return v;
}

template <class A>
bool same_bits(A x, A y) {
  if (x != x && y != y) return true;  // NaN where the scalar formula gives NaN (payloads aside)
  return std::memcmp(&x, &y, sizeof(A)) == 0;
}

template <class A, expr::boxes::OverlapForm Form>
void check_cost_row_bits() {
  const double weights[4][2] = {{5, 2}, {0, 2}, {5, 0}, {1.5, -0.75}};
  const A preds[5][4] = {{1, 2, 6, 7},
                         {A(-0.0), 0, 4, A(3.5)},
                         {2, 2, 2, 5},  // zero width
                         {5, 5, 1, 1},  // inverted
                         {0, 0, std::numeric_limits<A>::quiet_NaN(), 3}};
  std::int64_t checked = 0;
  for (std::int64_t n : {0, 1, 3, 4, 5, 7, 8, 9, 16, 37}) {
    for (int pi = 0; pi < 5; ++pi) {
      const A* px = preds[pi];
      // the L1 boxes: the xyxy ones shifted, so that the two terms read different planes
      A p[4];
      for (int k = 0; k < 4; ++k) p[k] = px[k] * A(0.1) - A(0.25);
      const auto yx = awkward_boxes<A>(n, static_cast<std::uint32_t>(17 * n + pi), px);
      const auto yc = awkward_boxes<A>(n, static_cast<std::uint32_t>(31 * n + pi + 5), p);
      std::vector<A> planes(static_cast<std::size_t>(8 * n + 1));
      for (std::int64_t j = 0; j < n; ++j)
        for (int k = 0; k < 4; ++k) planes[k * n + j] = yc[4 * j + k], planes[(4 + k) * n + j] = yx[4 * j + k];
      const A* plane[8];
      for (int k = 0; k < 8; ++k) plane[k] = planes.data() + k * n;
      for (const auto& w : weights)
        for (double eps : {0.0, 1e-6}) {
          const expr::boxes::Overlap o{Form, Form == expr::boxes::OverlapForm::detr ? 0.0 : eps, true};
          const auto start = random_vector<A>(static_cast<std::size_t>(n), static_cast<std::uint32_t>(n + 3), -1.0, 1.0);
          std::vector<A> got = start;
          backend::cpu::boxes::cost_row<Form>(got.data(), n, p, px, plane, w[0], w[1], o);
#if KDLOSS_BOX_VECTORS
          // the baseline packets too (cost_row takes the AVX copy where the machine has AVX2)
          std::vector<A> base = start;
          namespace cr = backend::cpu::boxes::cost_row_detail;
          const std::int64_t done =
              cr::packets<typename cr::vec<A, 16>::type, Form>(base.data(), n, p, px, plane, w[0], w[1], o);
          for (std::int64_t j = 0; j < done; ++j)
            if (!same_bits(base[j], got[j]))
              FAIL_CHECK("baseline packets: n " << n << " prediction " << pi << " target " << j << ": " << base[j]
                                                << " vs " << got[j]);
#endif
          for (std::int64_t j = 0; j < n; ++j) {
            const A* c = yc.data() + 4 * j;
            const A* x = yx.data() + 4 * j;
            const A want = expr::boxes::l1_giou_cost(start[j], p, px, c, x, w[0], w[1], o);
            if (!same_bits(got[j], want))
              FAIL_CHECK("n " << n << " prediction " << pi << " target " << j << " weights " << w[0] << ", " << w[1]
                              << " eps " << eps << ": packet " << got[j] << ", scalar " << want);
            ++checked;
          }
        }
    }
  }
  CHECK(checked > 1000);
}

}  // namespace

TEST_CASE("detr::matching_cost: the host's packet pass over targets gives the scalar formula's bits") {
  using F = expr::boxes::OverlapForm;
  check_cost_row_bits<float, F::detr>();
  check_cost_row_bits<float, F::mmdet>();
  check_cost_row_bits<float, F::torchvision>();
  check_cost_row_bits<double, F::detr>();
  check_cost_row_bits<double, F::mmdet>();
  check_cost_row_bits<double, F::torchvision>();
}
