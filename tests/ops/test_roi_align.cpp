// ops::roi_align: the double reference (torchvision's per-sample formula, mmcv's max mode), both
// aligned modes, sampling ratios and scales, boxes outside / on the border / of zero area / smaller
// than a bin, 0, 1 and 2 boxes per image, ragged boxes against [K, 5], central differences, strided
// layouts, GradAccumulate, NaN propagation, bad inputs (outputs untouched), bit-identity across
// thread counts, CPU/GPU agreement and GPU determinism.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kdloss/ops/roi_align.hpp"
#include "support/threads.hpp"
#include "ops/roi_align_gpu.hpp"
#include "reference/ops/roi_align.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

template <class T>
std::vector<T> typed(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

/// Memory layouts: 0 contiguous NCHW, 1 channel-last, 2 rows padded, 3 H and W swapped in memory.
std::vector<int> order_of(int l) {
  switch (l) {
    case 1: return {0, 2, 3, 1};
    case 3: return {0, 1, 3, 2};
    default: return {0, 1, 2, 3};
  }
}

kdloss_ref::ops::RoiAlignRefOptions ref_options(const ops::RoiAlignOptions& o) {
  kdloss_ref::ops::RoiAlignRefOptions r;
  r.ph = o.output_height, r.pw = o.output_width, r.scale = o.spatial_scale, r.sampling = o.sampling_ratio;
  r.aligned = o.aligned, r.max_mode = o.pool_mode == ops::RoiPoolMode::max;
  return r;
}

ops::RoiAlignOptions options(std::int64_t ph, std::int64_t pw, double scale, std::int64_t sampling, bool aligned,
                             bool max_mode = false) {
  ops::RoiAlignOptions o;
  o.output_height = ph, o.output_width = pw, o.spatial_scale = scale, o.sampling_ratio = sampling;
  o.aligned = aligned;
  o.pool_mode = max_mode ? ops::RoiPoolMode::max : ops::RoiPoolMode::avg;
  return o;
}

struct Result {
  std::vector<double> y, gx;
};

/// One call of the op: y (forward / forward_backward) and grad_x (backward / forward_backward) back as
/// row-major doubles. ragged: the boxes (grouped by image) go as [K, 4] with offsets.
template <class T>
Result run_op(const std::vector<double>& xd, const Dims& xs, const std::vector<double>& boxes5,
              const ops::RoiAlignOptions& o, Mode mode, const std::vector<double>& gyd, int layout = 0,
              bool ragged = false, double beta = 0.0, const std::vector<double>& gx_old = {}) {
  const std::int64_t K = static_cast<std::int64_t>(boxes5.size() / 5);
  const Dims ys{K, xs[1], o.output_height, o.output_width};
  auto x = kdloss_test::relayout(typed<T>(xd), xs, order_of(layout), layout == 2 ? 3 : 0);
  auto y = kdloss_test::relayout(std::vector<T>(static_cast<std::size_t>(ys.product()), T(-123)), ys,
                                 order_of(layout), layout == 2 ? 2 : 0);
  auto gy = kdloss_test::relayout(gyd.empty() ? std::vector<T>(static_cast<std::size_t>(ys.product()), T(0))
                                              : typed<T>(gyd),
                                  ys, order_of(layout), layout == 2 ? 1 : 0);
  auto gx = kdloss_test::relayout(gx_old.empty() ? std::vector<T>(xd.size(), T(-321)) : typed<T>(gx_old), xs,
                                  order_of(layout), layout == 2 ? 5 : 0);
  std::vector<T> boxes;
  std::vector<std::int64_t> offsets;
  if (ragged) {
    offsets.assign(static_cast<std::size_t>(xs[0] + 1), 0);
    for (std::int64_t k = 0; k < K; ++k) {
      for (int j = 1; j < 5; ++j) boxes.push_back(static_cast<T>(boxes5[5 * k + j]));
      ++offsets[static_cast<std::size_t>(boxes5[5 * k]) + 1];
    }
    for (std::size_t b = 1; b < offsets.size(); ++b) offsets[b] += offsets[b - 1];
  } else {
    boxes = typed<T>(boxes5);
  }
  ops::RoiAlignArgs<T> a;
  a.x = x.view;
  a.boxes = host_view<const T>(boxes.data(), {K, ragged ? 4 : 5});
  if (ragged) a.offsets = host_view<const std::int64_t>(offsets.data(), {xs[0] + 1});
  a.options = o;
  a.options.input_grad.beta = beta;
  if (writes_value(mode)) a.y = y.view;
  if (writes_gradients(mode)) a.grad_y = gy.view, a.grad_x = gx.view;
  ops::roi_align(a, mode);
  Result r;
  if (writes_value(mode)) {
    const auto v = kdloss_test::to_vector(y.view);
    r.y.assign(v.begin(), v.end());
  }
  if (writes_gradients(mode)) {
    const auto v = kdloss_test::to_vector(gx.view);
    r.gx.assign(v.begin(), v.end());
  }
  return r;
}

/// Boxes (image-grouped, [K, 5]) that exercise every geometric case on an H x W map at `scale`:
/// inside, partly and wholly outside, on the border, zero area, smaller than a bin, reversed.
std::vector<double> mixed_boxes(std::int64_t B, std::int64_t H, std::int64_t W, double scale, std::uint32_t seed) {
  const double h = double(H) / scale, w = double(W) / scale;
  std::vector<double> v;
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (std::int64_t b = 0; b < B; ++b) {
    const auto add = [&](double x1, double y1, double x2, double y2) {
      v.insert(v.end(), {double(b), x1, y1, x2, y2});
    };
    for (int i = 0; i < 3; ++i) {  // random, mostly inside
      const double x1 = u(gen) * w * 0.8 - 0.1 * w, y1 = u(gen) * h * 0.8 - 0.1 * h;
      add(x1, y1, x1 + u(gen) * w * 0.7, y1 + u(gen) * h * 0.7);
    }
    add(-0.3 * w, -0.2 * h, 0.4 * w, 0.5 * h);      // partly outside (top-left)
    add(0.6 * w, 0.5 * h, 1.3 * w, 1.4 * h);        // partly outside (bottom-right)
    add(1.2 * w, 1.1 * h, 1.5 * w, 1.6 * h);        // wholly outside
    add(-2.0 * w, -1.5 * h, -1.2 * w, -1.0 * h);    // wholly outside (negative)
    add(0, 0, w, h);                                // the border
    add(w - 1 / scale, h - 1 / scale, w, h);        // last cell
    add(0.3 * w, 0.4 * h, 0.3 * w, 0.4 * h);        // zero area
    add(0.5 * w, 0.5 * h, 0.5 * w + 0.3, 0.5 * h + 0.2);  // smaller than a bin
    add(0.7 * w, 0.6 * h, 0.2 * w, 0.1 * h);        // reversed
  }
  return v;
}

template <class T>
void check_against_reference(const std::vector<double>& xd, const Dims& xs, const std::vector<double>& boxes,
                             const ops::RoiAlignOptions& o, double rel, double abs_tol, int layout = 0,
                             bool ragged = false) {
  const std::int64_t K = static_cast<std::int64_t>(boxes.size() / 5);
  const auto gy = random_vector<double>(static_cast<std::size_t>(K * xs[1] * o.output_height * o.output_width), 7);
  std::vector<double> ry, rgx;
  kdloss_ref::ops::roi_align(xd, xs[0], xs[1], xs[2], xs[3], boxes, ref_options(o), &ry, &gy, &rgx);
  const Result fb = run_op<T>(xd, xs, boxes, o, Mode::forward_backward, gy, layout, ragged);
  check_close(fb.y, ry, rel, abs_tol, "y");
  check_close(fb.gx, rgx, rel, abs_tol, "grad_x");
  const Result f = run_op<T>(xd, xs, boxes, o, Mode::forward, {}, layout, ragged);
  const Result b = run_op<T>(xd, xs, boxes, o, Mode::backward, gy, layout, ragged);
  CHECK(f.y == fb.y);
  CHECK(b.gx == fb.gx);
}

}  // namespace

TEST_CASE("roi_align: matches the double reference (aligned, sampling ratios, scales, box cases)") {
  const Dims xs{2, 3, 11, 14};
  const auto x = random_vector<double>(static_cast<std::size_t>(xs.product()), 1);
  for (bool aligned : {false, true})
    for (double scale : {1.0, 0.5, 0.25, 0.3})
      for (std::int64_t sr : {-1, 0, 1, 2, 3}) {
        CAPTURE(aligned);
        CAPTURE(scale);
        CAPTURE(sr);
        const auto boxes = mixed_boxes(2, xs[2], xs[3], scale, 3);
        check_against_reference<double>(x, xs, boxes, options(3, 3, scale, sr, aligned), 1e-12, 1e-12);
        check_against_reference<float>(x, xs, boxes, options(2, 4, scale, sr, aligned), 1e-4, 1e-5);
      }
}

TEST_CASE("roi_align: max mode (mmcv) matches the reference") {
  const Dims xs{2, 2, 9, 12};
  auto x = random_vector<double>(static_cast<std::size_t>(xs.product()), 2);
  x[5] = -20000.0;  // below mmcv's floor
  for (bool aligned : {false, true})
    for (std::int64_t sr : {-1, 2}) {
      CAPTURE(aligned);
      CAPTURE(sr);
      const auto boxes = mixed_boxes(2, xs[2], xs[3], 0.5, 5);
      check_against_reference<double>(x, xs, boxes, options(3, 2, 0.5, sr, aligned, true), 1e-12, 1e-12);
      check_against_reference<float>(x, xs, boxes, options(3, 2, 0.5, sr, aligned, true), 1e-5, 1e-5);
    }
}

TEST_CASE("roi_align: max mode ties take the first sample, values below -10000 give -10000") {
  const Dims xs{1, 1, 4, 4};
  std::vector<double> x(16, 2.0);
  // one bin over the whole map, 2 x 2 samples at y, x in {1, 3} -> equal values: the first wins
  const std::vector<double> boxes = {0, 0, 0, 4, 4};
  const auto o = options(1, 1, 1.0, 2, false, true);
  const Result r = run_op<double>(x, xs, boxes, o, Mode::forward_backward, {1.0});
  CHECK(r.y[0] == 2.0);
  // the first sample is (y, x) = (1, 1), exactly cell (1, 1): weight 1 there, 0 on its other corners
  CHECK(r.gx[1 * 4 + 1] == 1.0);
  double total = 0;
  for (double g : r.gx) total += g;
  CHECK(total == 1.0);
  std::vector<double> low(16, -30000.0);
  const Result l = run_op<double>(low, xs, boxes, o, Mode::forward_backward, {1.0});
  CHECK(l.y[0] == -10000.0);
  for (double g : l.gx) CHECK(g == 0.0);
}

TEST_CASE("roi_align: ragged boxes equal [K, 5] boxes; 0, 1 and 2 boxes per image, an empty image, K = 0") {
  const Dims xs{4, 3, 8, 10};
  const auto x = random_vector<double>(static_cast<std::size_t>(xs.product()), 4);
  // image 0: 2 boxes, image 1: none, image 2: 1 box, image 3: 2 boxes
  const std::vector<double> boxes = {0, 1, 1, 6, 5,   0, 0, 0, 9, 7,   2, 2.5, 1.5, 4, 3,
                                     3, -1, -1, 3, 3, 3, 5, 4, 12, 9};
  for (bool aligned : {false, true}) {
    const auto o = options(3, 3, 1.0, -1, aligned);
    check_against_reference<double>(x, xs, boxes, o, 1e-12, 1e-12, 0, true);
    const auto gy = random_vector<double>(5 * 3 * 9, 8);
    const Result a = run_op<double>(x, xs, boxes, o, Mode::forward_backward, gy, 0, false);
    const Result b = run_op<double>(x, xs, boxes, o, Mode::forward_backward, gy, 0, true);
    CHECK(a.y == b.y);
    CHECK(a.gx == b.gx);
    // image 1 has no box: its gradient is 0
    for (std::int64_t i = 3 * 80; i < 6 * 80; ++i) CHECK(b.gx[static_cast<std::size_t>(i)] == 0.0);
  }
  // K = 0: forward writes nothing, backward zeroes grad_x
  const Result e = run_op<double>(x, xs, {}, options(2, 2, 1.0, -1, false), Mode::forward_backward, {}, 0, true);
  CHECK(e.y.empty());
  for (double g : e.gx) CHECK(g == 0.0);
  const Result e5 = run_op<float>(x, xs, {}, options(2, 2, 1.0, -1, false), Mode::backward, {}, 0, false);
  for (double g : e5.gx) CHECK(g == 0.0);
}

TEST_CASE("roi_align: central differences (avg and max)") {
  const Dims xs{2, 2, 6, 7};
  const auto x = random_vector<double>(static_cast<std::size_t>(xs.product()), 9);
  const std::vector<double> boxes = {0, 0.5, 1.2, 5.5, 4.8, 1, -1, 2, 4, 9, 1, 2.2, 0.3, 3.1, 2.0};
  for (bool max_mode : {false, true})
    for (bool aligned : {false, true}) {
      CAPTURE(max_mode);
      CAPTURE(aligned);
      const auto o = options(2, 3, 1.0, max_mode ? 2 : -1, aligned, max_mode);
      const auto gy = random_vector<double>(3 * 2 * 6, 10);
      const Result r = run_op<double>(x, xs, boxes, o, Mode::backward, gy);
      const auto num = kdloss_test::numeric_gradient(x, [&](const std::vector<double>& xv) {
        const Result f = run_op<double>(xv, xs, boxes, o, Mode::forward, {});
        double s = 0;
        for (std::size_t i = 0; i < gy.size(); ++i) s += gy[i] * f.y[i];
        return s;
      });
      check_close(r.gx, num, 1e-6, 1e-8, "grad_x vs central differences");
    }
}

TEST_CASE("roi_align: strided layouts equal the contiguous ones") {
  const Dims xs{2, 5, 9, 13};
  const auto x = random_vector<double>(static_cast<std::size_t>(xs.product()), 11);
  const auto boxes = mixed_boxes(2, xs[2], xs[3], 0.5, 12);
  for (bool max_mode : {false, true}) {
    const auto o = options(3, 2, 0.5, -1, false, max_mode);
    const auto gy = random_vector<double>(static_cast<std::size_t>(boxes.size() / 5 * 5 * 6), 13);
    const Result base = run_op<float>(x, xs, boxes, o, Mode::forward_backward, gy, 0);
    for (int l : {1, 2, 3}) {
      CAPTURE(l);
      const Result r = run_op<float>(x, xs, boxes, o, Mode::forward_backward, gy, l);
      CHECK(r.y == base.y);
      CHECK(r.gx == base.gx);
    }
  }
}

TEST_CASE("roi_align: GradAccumulate adds beta * grad_x") {
  const Dims xs{1, 2, 6, 6};
  const auto x = random_vector<double>(72, 14);
  const std::vector<double> boxes = {0, 1, 1, 4, 5};
  const auto o = options(2, 2, 1.0, 2, false);
  const auto gy = random_vector<double>(8, 15);
  const auto old = random_vector<double>(72, 16);
  const Result plain = run_op<double>(x, xs, boxes, o, Mode::backward, gy);
  const Result acc = run_op<double>(x, xs, boxes, o, Mode::backward, gy, 0, false, 0.5, old);
  std::vector<double> want(72);
  for (std::size_t i = 0; i < 72; ++i) want[i] = 0.5 * old[i] + plain.gx[i];
  check_close(acc.gx, want, 1e-14, 1e-15);
  // beta 0 never reads the old contents: NaN there does not leak
  const Result over = run_op<double>(x, xs, boxes, o, Mode::backward, gy, 0, false, 0.0, std::vector<double>(72, kNaN));
  CHECK(over.gx == plain.gx);
}

TEST_CASE("roi_align: NaN propagates as in torchvision (a sampled cell, even at weight 0; never an unsampled one)") {
  const Dims xs{1, 1, 5, 5};
  std::vector<double> x(25, 1.0);
  x[2 * 5 + 3] = kNaN;  // cell (2, 3)
  // box over cells 0..1 only (aligned, sampling 1: one sample at (0.5, 0.5) -> corners (0..1, 0..1))
  const auto o = options(1, 1, 1.0, 1, false);
  const Result far = run_op<double>(x, xs, {0, 0, 0, 1, 1}, o, Mode::forward, {});
  CHECK(far.y[0] == 1.0);
  // a sample at y = 2, x = 3 exactly (weights 1 on (2, 3), 0 on its neighbours)
  const Result on = run_op<double>(x, xs, {0, 2.5, 1.5, 3.5, 2.5}, o, Mode::forward, {});
  CHECK(std::isnan(on.y[0]));
  // a sample at (2, 2): (2, 3) is its zero-weight corner -> NaN as in torchvision (0 * NaN)
  const Result corner = run_op<double>(x, xs, {0, 1.5, 1.5, 2.5, 2.5}, o, Mode::forward, {});
  CHECK(std::isnan(corner.y[0]));
  // NaN in grad_y reaches the four corners of the samples only
  const Result g = run_op<double>(std::vector<double>(25, 1.0), xs, {0, 1.5, 1.5, 2.5, 2.5}, o, Mode::backward, {kNaN});
  int nans = 0;
  for (double v : g.gx) nans += std::isnan(v) ? 1 : 0;
  CHECK(nans == 4);
  CHECK(g.gx[0] == 0.0);
}

TEST_CASE("roi_align: bit-identical across thread counts and runs") {
  const Dims xs{2, 19, 23, 29};
  const auto x = random_vector<double>(static_cast<std::size_t>(xs.product()), 17);
  std::vector<double> boxes;
  std::mt19937 gen(18);
  std::uniform_real_distribution<double> u(-5.0, 60.0);
  for (int k = 0; k < 40; ++k) {
    const double x1 = u(gen), y1 = u(gen);
    boxes.insert(boxes.end(), {double(k % 2), x1, y1, x1 + u(gen) / 2 + 6, y1 + u(gen) / 2 + 6});
  }
  const auto gy = random_vector<double>(static_cast<std::size_t>(40 * 19 * 9), 19);
  for (bool max_mode : {false, true}) {
    const auto o = options(3, 3, 0.5, -1, false, max_mode);
    kdloss_test::ThreadScope scope(1);
    const Result one = run_op<float>(x, xs, boxes, o, Mode::forward_backward, gy);
    scope.set(4);
    const Result four = run_op<float>(x, xs, boxes, o, Mode::forward_backward, gy);
    const Result again = run_op<float>(x, xs, boxes, o, Mode::forward_backward, gy);
    CHECK(std::memcmp(one.gx.data(), four.gx.data(), one.gx.size() * sizeof(double)) == 0);
    CHECK(four.gx == again.gx);
    CHECK(one.y == four.y);
  }
}

TEST_CASE("roi_align: degenerate maps and sizes") {
  // a 1 x 1 map, a 1 x 1 output, an empty channel dimension
  const std::vector<double> boxes = {0, -0.5, -0.5, 0.7, 0.9, 0, 0, 0, 0, 0};
  check_against_reference<double>({3.0}, Dims{1, 1, 1, 1}, boxes, options(1, 1, 1.0, -1, false), 1e-12, 1e-12);
  check_against_reference<double>({3.0}, Dims{1, 1, 1, 1}, boxes, options(2, 3, 1.0, 2, true), 1e-12, 1e-12);
  const Result c0 = run_op<double>({}, Dims{1, 0, 4, 4}, boxes, options(2, 2, 1.0, -1, false), Mode::forward_backward, {});
  CHECK(c0.y.empty());
  CHECK(c0.gx.empty());
}

TEST_CASE("roi_align: bad inputs throw naming the argument and leave the outputs untouched") {
  std::vector<float> x(2 * 3 * 6 * 6, 1.0f), y(2 * 3 * 4, 7.0f), gy(y.size(), 1.0f), gx(x.size(), 9.0f);
  std::vector<float> b5 = {0, 1, 1, 4, 4, 1, 0, 0, 2, 2};
  std::vector<float> b4 = {1, 1, 4, 4, 0, 0, 2, 2};
  std::vector<std::int64_t> offs = {0, 1, 2};
  ops::RoiAlignArgs<float> a;
  a.x = host_view<const float>(x.data(), {2, 3, 6, 6});
  a.boxes = host_view<const float>(b5.data(), {2, 5});
  a.y = host_view(y.data(), {2, 3, 2, 2});
  a.grad_y = host_view<const float>(gy.data(), {2, 3, 2, 2});
  a.grad_x = host_view(gx.data(), {2, 3, 6, 6});
  a.options = options(2, 2, 1.0, -1, false);
  const auto untouched = [&] {
    for (float v : y) CHECK(v == 7.0f);
    for (float v : gx) CHECK(v == 9.0f);
  };
  const auto expect = [&](ops::RoiAlignArgs<float> bad, const std::string& needle) {
    kdloss_test::expect_error([&] { ops::roi_align(bad, Mode::forward_backward); }, needle, untouched);
  };
  ops::roi_align_check(a, Mode::forward_backward);  // the good call passes
  auto bad = a;
  b5[5] = 2;  // image index 2 with B = 2
  expect(a, "row 1 has image index 2");
  b5[5] = -1;
  expect(a, "image index -1");
  b5[5] = 1;
  b5[3] = std::numeric_limits<float>::quiet_NaN();
  expect(a, "non-finite coordinate");
  b5[3] = 4;
  bad = a, bad.boxes = host_view<const float>(b5.data(), {2, 4}, {5, 1});
  expect(bad, "'boxes' has shape [2, 4] but expected [K, 5]");
  bad = a, bad.boxes = host_view<const float>(b4.data(), {2, 4}), bad.offsets = host_view<const std::int64_t>(offs.data(), {2});
  expect(bad, "'offsets' has shape [2]");
  offs = {0, 2, 1};
  bad = a, bad.boxes = host_view<const float>(b4.data(), {2, 4}), bad.offsets = host_view<const std::int64_t>(offs.data(), {3});
  expect(bad, "decreases at image 1");
  offs = {0, 1, 3};
  expect(bad, "ends at 3");
  offs = {0, 1, 2};
  bad.boxes = host_view<const float>(b5.data(), {2, 5});
  expect(bad, "expected [K, 4]");
  bad = a, bad.options.output_height = 0;
  expect(bad, "output_height");
  bad = a, bad.options.spatial_scale = std::numeric_limits<double>::infinity();
  expect(bad, "spatial_scale");
  bad = a, bad.y = host_view(y.data(), {2, 3, 4, 1});
  expect(bad, "'y' has shape [2, 3, 4, 1] but expected [2, 3, 2, 2]");
  bad = a, bad.grad_x = host_view(gx.data(), {2, 3, 6, 5}, {108, 36, 6, 1});
  expect(bad, "'grad_x' has shape [2, 3, 6, 5]");
  bad = a, bad.grad_x = host_view(gx.data(), {2, 3, 6, 6}, {0, 36, 6, 1});
  expect(bad, "addresses some element twice");
  bad = a, bad.x = {};
  expect(bad, "'x' is absent");
  bad = a, bad.grad_x = host_view(x.data(), {2, 3, 6, 6});
  expect(bad, "overlaps");
  std::vector<float> huge = {0, 0, 0, 1e9f, 1e9f};
  bad = a, bad.boxes = host_view<const float>(huge.data(), {1, 5}), bad.y = host_view(y.data(), {1, 3, 2, 2}),
  bad.grad_y = host_view<const float>(gy.data(), {1, 3, 2, 2});
  expect(bad, "samples per bin exceed");
}

KDLOSS_GPU_TEST("roi_align: GPU agrees with the CPU (dtypes, layouts, ragged, max) and repeats its bits") {
#if KDLOSS_TEST_CUDA
  const Dims xs{2, 6, 13, 17};
  const auto x = random_vector<double>(static_cast<std::size_t>(xs.product()), 31);
  auto boxes = mixed_boxes(2, xs[2], xs[3], 0.5, 32);
  for (auto& v : boxes) v = std::round(v * 2) / 2;  // multiples of 1/2: exact in every dtype
  const std::int64_t K = static_cast<std::int64_t>(boxes.size() / 5);
  for (int dtype : {0, 1, 2, 3})
    for (int variant = 0; variant < 4; ++variant) {
      kdloss_test::RoiAlignGpuCase c;
      c.dtype = dtype, c.B = xs[0], c.C = xs[1], c.H = xs[2], c.W = xs[3], c.ph = 3, c.pw = 2, c.scale = 0.5;
      c.channels_last = variant & 1, c.ragged = variant == 2, c.max_mode = variant == 3, c.aligned = variant >= 2;
      c.sampling = variant == 1 ? 2 : -1;
      CAPTURE(dtype);
      CAPTURE(variant);
      const auto xq = kdloss_test::as_gpu_dtype(dtype, x);
      const auto gy = kdloss_test::as_gpu_dtype(dtype, random_vector<double>(static_cast<std::size_t>(K * 6 * 6), 33));
      const auto o = options(3, 2, 0.5, c.sampling, c.aligned, c.max_mode);
      // the GPU computes the geometry in acc_t<T>: float, except for double
      const Result cpu = dtype == 1 ? run_op<double>(xq, xs, boxes, o, Mode::forward_backward, gy)
                                    : run_op<float>(xq, xs, boxes, o, Mode::forward_backward, gy);
      const auto got = kdloss_test::roi_align_on_gpu(c, xq, boxes, gy);
      const std::size_t ny = cpu.y.size(), ng = cpu.gx.size();
      REQUIRE(got.size() == 2 * ny + 3 * ng);
      const double rel = dtype == 0 ? 1e-5 : dtype == 1 ? 1e-12 : dtype == 2 ? 2e-2 : 1e-1;
      const double abs_tol = dtype <= 1 ? rel : 5e-2;
      const auto part = [&](std::size_t at, std::size_t n) {
        return std::vector<double>(got.begin() + static_cast<std::ptrdiff_t>(at),
                                   got.begin() + static_cast<std::ptrdiff_t>(at + n));
      };
      if (!c.max_mode || dtype <= 1) {  // max mode in half may pick another near-equal sample
        check_close(part(0, ny), cpu.y, rel, abs_tol, "y");
        check_close(part(ny, ng), cpu.gx, rel, abs_tol, "grad_x");
      }
      CHECK(part(ny, ng) == part(ny + ng, ng));  // two runs, identical bits
      CHECK(part(0, ny) == part(2 * ng + ny, ny));
      CHECK(part(ny, ng) == part(2 * ng + 2 * ny, ng));
    }
#endif
}
