// detr::query_prior_loss (losses.md 4.4): the Deformable-DETR loss of 6 student layers under the teacher's fixed
// assignments, against the double reference (reference/losses/detr/distill.hpp QueryPrior): the three sums,
// central-difference gradients of logits and boxes, backward with upstream gradients, ragged pairs (a layer
// with fewer pairs, an image without ground truth), num_pos given, strided inputs, and bad input (wrong layer
// offsets, a repeated prediction row, an out-of-range target) with outputs untouched.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "kdloss/losses/detr/query_prior.hpp"
#include "losses/detr/query_prior_gpu.hpp"
#include "reference/losses/detr/distill.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

struct QPCase {
  std::int64_t K = 3, B = 2, Q = 5, C = 4;
  kdloss_ref::detr::QueryPrior ref{K, B, Q, C, {}, {}, {}, {}};
  std::vector<double> logits, boxes;
  std::vector<std::int64_t> pred, target, layers{0};

  QPCase() {
    logits = random_vector<double>(static_cast<std::size_t>(K * B * Q * C), 1, -3, 3);
    boxes.resize(static_cast<std::size_t>(K * B * Q * 4));
    const auto r = random_vector<double>(boxes.size(), 2, 0.0, 1.0);
    for (std::size_t i = 0; i < boxes.size(); i += 4)
      boxes[i] = 0.2 + 0.6 * r[i], boxes[i + 1] = 0.2 + 0.6 * r[i + 1], boxes[i + 2] = 0.05 + 0.3 * r[i + 2],
      boxes[i + 3] = 0.05 + 0.3 * r[i + 3];
    // image 0: 3 ground-truth boxes, image 1: none
    ref.labels = {2, 0, 3};
    ref.gt = {0.5, 0.5, 0.2, 0.3, 0.3, 0.4, 0.2, 0.2, 0.6, 0.6, 0.3, 0.1};
    ref.sizes = {480, 640, 300, 500};
    ref.pairs = {{{1, 0}, {3, 1}, {4, 2}}, {{0, 2}, {2, 0}}, {{4, 0}, {1, 1}, {0, 2}}};  // layer 1: a box unmatched
    for (const auto& layer : ref.pairs) {
      for (auto [p, t] : layer) pred.push_back(p), target.push_back(t);
      layers.push_back(static_cast<std::int64_t>(pred.size()));
    }
  }
  template <class T>
  detr::QueryPriorLossArgs<T> args(const std::vector<T>& lg, const std::vector<T>& bx, const std::vector<T>& gt,
                                   const std::vector<T>& hw) const {
    detr::QueryPriorLossArgs<T> a;
    a.logits = host_view<const T>(lg.data(), {K, B, Q, C});
    a.boxes = host_view<const T>(bx.data(), {K, B, Q, 4});
    a.gt_labels = host_view<const std::int64_t>(ref.labels.data(), {3});
    a.gt_boxes = host_view<const T>(gt.data(), {3, 4});
    a.sizes = host_view<const T>(hw.data(), {B, 2});
    a.pred_rows = host_view<const std::int64_t>(pred.data(), {static_cast<std::int64_t>(pred.size())});
    a.target_rows = host_view<const std::int64_t>(target.data(), {static_cast<std::int64_t>(target.size())});
    a.layers = Segments<std::int64_t>{
        host_view<const std::int64_t>(layers.data(), {static_cast<std::int64_t>(layers.size())})};
    return a;
  }
};

/// forward_backward on the host in double: out_cls, out_l1, out_giou, then grad_logits and grad_boxes.
std::vector<double> host_forward_backward(const QPCase& c, double num_pos) {
  std::vector<double> r(3 + c.logits.size() + c.boxes.size(), -1.0);
  auto a = c.args<double>(c.logits, c.boxes, c.ref.gt, c.ref.sizes);
  a.options.num_pos = num_pos;
  a.out_cls = host_scalar(&r[0]);
  a.out_l1 = host_scalar(&r[1]);
  a.out_giou = host_scalar(&r[2]);
  a.grad_logits = host_view(r.data() + 3, {c.K, c.B, c.Q, c.C});
  a.grad_boxes = host_view(r.data() + 3 + c.logits.size(), {c.K, c.B, c.Q, 4});
  detr::query_prior_loss(a, Mode::forward_backward);
  return r;
}

}  // namespace

TEST_CASE("detr::query_prior_loss: sums and gradients against the double reference") {
  QPCase c;
  for (double num_pos : {0.0, 2.5}) {
    CAPTURE(num_pos);
    c.ref.num_pos = num_pos;
    const auto want = c.ref.value(c.logits, c.boxes);
    const auto got = host_forward_backward(c, num_pos);
    const double cls = got[0], l1 = got[1], giou = got[2];
    const std::vector<double> gl(got.begin() + 3, got.begin() + 3 + static_cast<std::ptrdiff_t>(c.logits.size())),
        gb(got.begin() + 3 + static_cast<std::ptrdiff_t>(c.logits.size()), got.end());
    CHECK(cls == doctest::Approx(want[0]).epsilon(1e-12));
    CHECK(l1 == doctest::Approx(want[1]).epsilon(1e-12));
    CHECK(giou == doctest::Approx(want[2]).epsilon(1e-12));
    const auto total = [&](const std::vector<double>& lg, const std::vector<double>& bx) {
      const auto v = c.ref.value(lg, bx);
      return v[0] + v[1] + v[2];
    };
    const auto num_l = kdloss_test::numeric_gradient(c.logits, [&](const std::vector<double>& x) { return total(x, c.boxes); });
    const auto num_b = kdloss_test::numeric_gradient(c.boxes, [&](const std::vector<double>& x) { return total(c.logits, x); });
    check_close(gl, num_l, 1e-6, 1e-8, "grad_logits");
    check_close(gb, num_b, 1e-6, 1e-8, "grad_boxes");
    // backward: upstream gradients 0.5 (cls), 2 (l1), -1 (giou) on the boxes only
    std::vector<double> gb2(c.boxes.size());
    const double u_cls = 0.5, u_l1 = 2, u_giou = -1;
    auto b = c.args<double>(c.logits, c.boxes, c.ref.gt, c.ref.sizes);
    b.options.num_pos = num_pos;
    b.grad_out_cls = host_scalar(&u_cls);
    b.grad_out_l1 = host_scalar(&u_l1);
    b.grad_out_giou = host_scalar(&u_giou);
    b.grad_boxes = host_view(gb2.data(), {c.K, c.B, c.Q, 4});
    detr::query_prior_loss_backward(b);
    const auto num_b2 = kdloss_test::numeric_gradient(c.boxes, [&](const std::vector<double>& x) {
      const auto v = c.ref.value(c.logits, x);
      return 2 * v[1] - v[2];
    });
    check_close(gb2, num_b2, 1e-6, 1e-8, "backward grad_boxes");
  }
}

TEST_CASE("detr::query_prior_loss: float and strided logits") {
  QPCase c;
  const auto want = c.ref.value(c.logits, c.boxes);
  // logits stored with the class axis outermost
  auto st = kdloss_test::relayout(std::vector<float>(c.logits.begin(), c.logits.end()), Dims{c.K, c.B, c.Q, c.C},
                                  {3, 0, 1, 2});
  std::vector<float> bx(c.boxes.begin(), c.boxes.end()), gt(c.ref.gt.begin(), c.ref.gt.end()),
      hw(c.ref.sizes.begin(), c.ref.sizes.end()), lg(c.logits.size());
  auto a = c.args<float>(lg, bx, gt, hw);
  a.logits = View<const float>(st.view.data, st.view.shape, st.view.strides, st.view.device);
  float cls = -1, l1 = -1, giou = -1;
  a.out_cls = host_scalar(&cls);
  a.out_l1 = host_scalar(&l1);
  a.out_giou = host_scalar(&giou);
  detr::query_prior_loss_forward(a);
  CHECK(cls == doctest::Approx(want[0]).epsilon(1e-5));
  CHECK(l1 == doctest::Approx(want[1]).epsilon(1e-5));
  CHECK(giou == doctest::Approx(want[2]).epsilon(1e-5));
}

TEST_CASE("detr::query_prior_loss: bad input throws a clear error and writes nothing") {
  QPCase c;
  std::vector<double> gl(c.logits.size(), 7.0);
  double cls = -9, l1 = -9, giou = -9;
  const auto untouched = [&] {
    CHECK(cls == -9);
    CHECK(l1 == -9);
    CHECK(giou == -9);
    for (double v : gl) REQUIRE(v == 7.0);
  };
  const auto run = [&](QPCase& cc) {
    auto a = cc.args<double>(cc.logits, cc.boxes, cc.ref.gt, cc.ref.sizes);
    a.out_cls = host_scalar(&cls);
    a.out_l1 = host_scalar(&l1);
    a.out_giou = host_scalar(&giou);
    a.grad_logits = host_view(gl.data(), {cc.K, cc.B, cc.Q, cc.C});
    detr::query_prior_loss(a, Mode::forward_backward);
  };
  SUBCASE("layer offsets for another K") {
    QPCase d = c;
    d.layers = {0, 3, 8};
    kdloss_test::expect_error([&] { run(d); }, "'layers' describes 2 layers", untouched);
  }
  SUBCASE("a prediction row twice in one layer") {
    QPCase d = c;
    d.pred[1] = d.pred[0];
    kdloss_test::expect_error([&] { run(d); }, "layer 0:", untouched);
  }
  SUBCASE("a target row out of range") {
    QPCase d = c;
    d.target[4] = 3;
    kdloss_test::expect_error([&] { run(d); }, "layer 1:", untouched);
  }
}

KDLOSS_GPU_TEST("detr::query_prior_loss: the GPU agrees with the CPU (float, double)") {
#if KDLOSS_TEST_CUDA
  QPCase c;
  const auto want = host_forward_backward(c, 0.0);
  for (int dtype : {1, 0}) {
    CAPTURE(dtype);
    const auto got = kdloss_test::query_prior_on_gpu(dtype, c.K, c.B, c.Q, c.C, c.logits, c.boxes, c.ref.labels, c.ref.gt,
                                                     c.ref.sizes, c.pred, c.target, c.layers);
    const double tol = dtype == 1 ? 1e-10 : 2e-4;
    check_close(got, want, tol, tol * 1e-2, "out_cls, out_l1, out_giou, grad_logits, grad_boxes");
  }
#endif
}
