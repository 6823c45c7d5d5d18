// DETRDistill losses (losses.md 4.3, 4.5): detr::contrastive_query_loss and detr::target_aware_feature_loss
// against the naive double references (reference/losses/detr/distill.hpp): values, central-difference
// gradients, backward with an upstream gradient, strided inputs, degenerate inputs (an image without
// ground truth, repeated top-k queries, ragged ground truth, one pair), the NaN rules, and bad input with
// clear errors and outputs untouched.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kdloss/backend/cpu/topk.hpp"
#include "kdloss/losses/detr/contrastive.hpp"
#include "kdloss/losses/detr/feature_distillation.hpp"
#include "losses/detr/contrastive_gpu.hpp"
#include "losses/detr/feature_distillation_gpu.hpp"
#include "reference/losses/detr/distill.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// ---------------------------------------------------------------- contrastive
template <class T>
void contrastive_case(std::int64_t K, std::int64_t N, std::int64_t D, bool normalize, bool strided, double rel) {
  CAPTURE(K);
  CAPTURE(N);
  CAPTURE(D);
  CAPTURE(normalize);
  CAPTURE(strided);
  const Dims dims = K > 1 ? Dims{K, N, D} : Dims{N, D};
  const auto pt = random_vector<double>(static_cast<std::size_t>(K * N * D), 11);
  const auto ps = random_vector<double>(static_cast<std::size_t>(K * N * D), 12);
  kdloss_ref::detr::ContrastiveQuery ref{K, N, D};
  ref.normalize = normalize;
  const double want = ref.value(pt, ps);
  // storage: contiguous or with the last two axes swapped in memory and padded rows
  std::vector<int> order = K > 1 ? std::vector<int>{0, 2, 1} : std::vector<int>{1, 0};
  if (!strided) order = K > 1 ? std::vector<int>{0, 1, 2} : std::vector<int>{0, 1};
  auto st = kdloss_test::relayout(cast<T>(pt), dims, order, strided ? 3 : 0);
  auto ss = kdloss_test::relayout(cast<T>(ps), dims, order, strided ? 3 : 0);
  auto gt = kdloss_test::relayout(std::vector<T>(pt.size()), dims, order, strided ? 1 : 0);
  auto gs = kdloss_test::relayout(std::vector<T>(pt.size()), dims, order, strided ? 1 : 0);
  T loss = -1;
  detr::ContrastiveQueryArgs<T> a;
  a.teacher = View<const T>(st.view.data, st.view.shape, st.view.strides, st.view.device);
  a.student = View<const T>(ss.view.data, ss.view.shape, ss.view.strides, ss.view.device);
  a.out = host_scalar(&loss);
  a.grad_teacher = gt.view;
  a.grad_student = gs.view;
  a.options.normalize = normalize;
  detr::contrastive_query_loss(a, Mode::forward_backward);
  CHECK(kdloss_test::close(loss, want, rel));
  // central differences of the reference
  const auto num_t = kdloss_test::numeric_gradient(pt, [&](const std::vector<double>& x) { return ref.value(x, ps); });
  const auto num_s = kdloss_test::numeric_gradient(ps, [&](const std::vector<double>& x) { return ref.value(pt, x); });
  check_close(kdloss_test::to_vector(gt.view), num_t, rel * 10, 1e-6, "grad_teacher");
  check_close(kdloss_test::to_vector(gs.view), num_s, rel * 10, 1e-6, "grad_student");
  // backward with an upstream gradient recomputes the forward and scales
  const T up = T(0.5);
  auto gt2 = kdloss_test::relayout(std::vector<T>(pt.size()), dims, order, 0);
  detr::ContrastiveQueryArgs<T> b = a;
  b.out = View<T>{};
  b.grad_out = host_scalar(&up);
  b.grad_teacher = gt2.view;
  b.grad_student = View<T>{};
  detr::contrastive_query_loss_backward(b);
  auto half = num_t;
  for (auto& v : half) v *= 0.5;
  check_close(kdloss_test::to_vector(gt2.view), half, rel * 10, 1e-6, "backward grad_teacher");
}

}  // namespace

TEST_CASE("detr::contrastive_query_loss: value and gradients against the double reference") {
  contrastive_case<double>(1, 5, 4, true, false, 1e-9);
  contrastive_case<double>(3, 6, 5, true, true, 1e-9);
  contrastive_case<double>(2, 4, 3, false, true, 1e-9);
  contrastive_case<double>(1, 1, 3, true, false, 1e-9);  // one pair: CE of a single logit is 0
  contrastive_case<float>(2, 7, 8, true, true, 2e-4);
}

KDLOSS_GPU_TEST("detr::contrastive_query_loss: the GPU agrees with the CPU (float, double)") {
#if KDLOSS_TEST_CUDA
  const std::int64_t K = 2, N = 37, D = 20;
  const auto pt = random_vector<double>(static_cast<std::size_t>(K * N * D), 21);
  const auto ps = random_vector<double>(static_cast<std::size_t>(K * N * D), 22);
  for (bool normalize : {true, false}) {
    CAPTURE(normalize);
    std::vector<double> want(1 + 2 * pt.size());
    detr::ContrastiveQueryArgs<double> a;
    a.teacher = host_view<const double>(pt.data(), {K, N, D});
    a.student = host_view<const double>(ps.data(), {K, N, D});
    a.out = host_scalar(&want[0]);
    a.grad_teacher = host_view(want.data() + 1, {K, N, D});
    a.grad_student = host_view(want.data() + 1 + pt.size(), {K, N, D});
    a.options.normalize = normalize;
    detr::contrastive_query_loss(a, Mode::forward_backward);
    for (int dtype : {1, 0}) {
      CAPTURE(dtype);
      const auto got = kdloss_test::contrastive_on_gpu(dtype, K, N, D, normalize, pt, ps);
      const double tol = dtype == 1 ? 1e-10 : 2e-4;
      check_close(got, want, tol, tol * 1e-2, "value, grad_teacher, grad_student");
    }
  }
#endif
}

TEST_CASE("detr::contrastive_query_loss: InfoNCE at the code's sizes matches a closed form") {
  // identical unit rows on both sides: logits all 1/T, loss = weight * K * log N, gradients cancel
  const std::int64_t K = 2, N = 600, D = 16;
  std::vector<float> p(K * N * D, 0.25f), g(K * N * D, 7.0f);
  float loss = 0;
  detr::ContrastiveQueryArgs<float> a;
  a.teacher = host_view<const float>(p.data(), {K, N, D});
  a.student = host_view<const float>(p.data(), {K, N, D});
  a.out = host_scalar(&loss);
  a.grad_student = host_view(g.data(), {K, N, D});
  detr::contrastive_query_loss(a, Mode::forward_backward);
  CHECK(loss == doctest::Approx(0.2 * 2 * std::log(600.0)).epsilon(1e-5));
  for (float v : g) REQUIRE(std::fabs(v) < 1e-6f);
}

TEST_CASE("detr::contrastive_query_loss: NaN propagates; zero rows follow F.normalize") {
  std::vector<double> t = {1, 0, 0, 1, std::nan(""), 0}, s = {1, 0, 0, 1, 1, 1}, gt(6);
  double loss = 0;
  detr::ContrastiveQueryArgs<double> a;
  a.teacher = host_view<const double>(t.data(), {3, 2});
  a.student = host_view<const double>(s.data(), {3, 2});
  a.out = host_scalar(&loss);
  a.grad_teacher = host_view(gt.data(), {3, 2});
  detr::contrastive_query_loss(a, Mode::forward_backward);
  CHECK(std::isnan(loss));
  // an all-zero row normalises to 0 (norm clamped to eps) and its gradient is dy / eps, finite
  t = {0, 0, 0, 1, 1, 0};
  detr::contrastive_query_loss(a, Mode::forward_backward);
  kdloss_ref::detr::ContrastiveQuery ref{1, 3, 2};
  CHECK(loss == doctest::Approx(ref.value(t, s)).epsilon(1e-12));
  CHECK(kdloss_test::all_finite(gt));
}

TEST_CASE("detr::contrastive_query_loss: bad input throws a clear error and writes nothing") {
  std::vector<float> t(12, 0.5f), s(12, 0.5f), g(12, -3.0f);
  float loss = -9.0f;
  detr::ContrastiveQueryArgs<float> a;
  a.teacher = host_view<const float>(t.data(), {3, 4});
  a.student = host_view<const float>(s.data(), {4, 3});
  a.out = host_scalar(&loss);
  a.grad_teacher = host_view(g.data(), {3, 4});
  const auto untouched = [&] {
    CHECK(loss == -9.0f);
    for (float v : g) CHECK(v == -3.0f);
  };
  kdloss_test::expect_error([&] { detr::contrastive_query_loss(a, Mode::forward_backward); },
                            "arguments 'teacher' [3, 4] and 'student' [4, 3] must have the same shape", untouched);
  a.student = host_view<const float>(s.data(), {3, 4});
  a.options.temperature = 0;
  kdloss_test::expect_error([&] { detr::contrastive_query_loss(a, Mode::forward_backward); }, "option 'temperature'",
                            untouched);
  a.options.temperature = 0.07;
  a.grad_teacher = host_view(const_cast<float*>(t.data()), {3, 4});
  kdloss_test::expect_error([&] { detr::contrastive_query_loss(a, Mode::forward_backward); },
                            "output argument 'grad_teacher' overlaps the memory of argument 'teacher'", untouched);
  a.grad_teacher = host_view(g.data(), {3, 4});
  kdloss_test::expect_error([&] { detr::contrastive_query_loss(a, Mode::backward); }, "reads 'grad_out'", untouched);
  a.teacher = host_view<const float>(t.data(), {0, 4});
  a.student = host_view<const float>(s.data(), {0, 4});
  kdloss_test::expect_error([&] { detr::contrastive_query_loss(a, Mode::forward); }, "has no rows", untouched);
}

// ---------------------------------------------------------------- target-aware feature distillation
namespace {

struct FeatureCase {
  std::int64_t K = 2, B = 2, Q = 7, C = 5, D = 6;
  std::vector<std::int64_t> H{3, 2}, W{4, 3};
  std::vector<std::int64_t> gt_offsets{0, 2, 2};  // image 1 has no ground truth
  std::int64_t topk = 9;
  bool channels_last = false;
  bool repeat_queries = false;

  std::vector<double> scores, boxes, queries, gt;
  std::vector<std::vector<double>> ft, fs;

  void make(std::uint32_t seed) {
    // distinct scores (no ties at the cut); with repeat_queries query 2 owns the top classes
    scores = random_vector<double>(static_cast<std::size_t>(K * B * Q * C), seed, 0.01, 0.6);
    if (repeat_queries)
      for (std::int64_t kb = 0; kb < K * B; ++kb)
        for (std::int64_t c = 0; c < C; ++c) scores[(kb * Q + 2) * C + c] = 0.9 + 0.01 * static_cast<double>(c);
    boxes.resize(static_cast<std::size_t>(K * B * Q * 4));
    const auto r = random_vector<double>(boxes.size(), seed + 1, 0.0, 1.0);
    for (std::size_t i = 0; i < boxes.size(); i += 4) {
      boxes[i] = 40 * r[i];
      boxes[i + 1] = 40 * r[i + 1];
      boxes[i + 2] = boxes[i] + 5 + 30 * r[i + 2];
      boxes[i + 3] = boxes[i + 1] + 5 + 30 * r[i + 3];
    }
    queries = random_vector<double>(static_cast<std::size_t>(K * B * Q * D), seed + 2);
    const std::int64_t G = gt_offsets.back();
    gt.resize(static_cast<std::size_t>(G * 4));
    const auto rg = random_vector<double>(gt.size(), seed + 3, 0.0, 1.0);
    for (std::int64_t g = 0; g < G; ++g) {
      gt[g * 4] = 30 * rg[g * 4];
      gt[g * 4 + 1] = 30 * rg[g * 4 + 1];
      gt[g * 4 + 2] = gt[g * 4] + 10 + 20 * rg[g * 4 + 2];
      gt[g * 4 + 3] = gt[g * 4 + 1] + 10 + 20 * rg[g * 4 + 3];
    }
    ft.clear();
    fs.clear();
    for (std::size_t l = 0; l < H.size(); ++l) {
      ft.push_back(random_vector<double>(static_cast<std::size_t>(B * D * H[l] * W[l]), seed + 10 + 2 * l));
      fs.push_back(random_vector<double>(static_cast<std::size_t>(B * D * H[l] * W[l]), seed + 11 + 2 * l));
    }
  }
  kdloss_ref::detr::TargetAwareFeature ref() const {
    kdloss_ref::detr::TargetAwareFeature r{K, B, Q, C, D, H, W, gt_offsets};
    r.topk = topk;
    return r;
  }
  Dims level(std::size_t l) const { return Dims{B, D, H[l], W[l]}; }
};

template <class T>
struct FeatureRun {
  std::vector<T> scores, boxes, queries, gt;
  std::vector<kdloss_test::Strided<T>> ft, fs, gs;
  T loss = -1;
  detr::TargetAwareFeatureArgs<T> args;

  explicit FeatureRun(const FeatureCase& c)
      : scores(cast<T>(c.scores)), boxes(cast<T>(c.boxes)), queries(cast<T>(c.queries)), gt(cast<T>(c.gt)) {
    const std::vector<int> order = c.channels_last ? std::vector<int>{0, 2, 3, 1} : std::vector<int>{0, 1, 2, 3};
    for (std::size_t l = 0; l < c.H.size(); ++l) {
      ft.push_back(kdloss_test::relayout(cast<T>(c.ft[l]), c.level(l), order, c.channels_last ? 2 : 0));
      fs.push_back(kdloss_test::relayout(cast<T>(c.fs[l]), c.level(l), order, c.channels_last ? 1 : 0));
      gs.push_back(kdloss_test::relayout(std::vector<T>(c.fs[l].size(), T(5)), c.level(l), order, 0));
    }
    auto& a = args;
    a.teacher_scores = host_view<const T>(scores.data(), {c.K, c.B, c.Q, c.C});
    a.teacher_boxes = host_view<const T>(boxes.data(), {c.K, c.B, c.Q, 4});
    a.teacher_queries = host_view<const T>(queries.data(), {c.K, c.B, c.Q, c.D});
    a.gt_boxes = host_view<const T>(gt.data(), {c.gt_offsets.back(), 4});
    a.gt_images = Segments<std::int64_t>{
        host_view<const std::int64_t>(c.gt_offsets.data(), {static_cast<std::int64_t>(c.gt_offsets.size())})};
    for (std::size_t l = 0; l < c.H.size(); ++l) {
      const auto cv = [](const View<T>& v) { return View<const T>(v.data, v.shape, v.strides, v.device); };
      a.teacher_features.push_back(cv(ft[l].view));
      a.student_features.push_back(cv(fs[l].view));
      a.grad_student_features.push_back(gs[l].view);
    }
    a.out = host_scalar(&loss);
    a.options.topk = c.topk;
  }
};

template <class T>
void feature_case(const FeatureCase& c, double rel) {
  const auto ref = c.ref();
  const double want = ref.value(c.scores, c.boxes, c.queries, c.gt, c.ft, c.fs);
  FeatureRun<T> run(c);
  detr::target_aware_feature_loss(run.args, Mode::forward_backward);
  CHECK(kdloss_test::close(run.loss, want, rel));
  for (std::size_t l = 0; l < c.H.size(); ++l) {
    CAPTURE(l);
    const auto num = kdloss_test::numeric_gradient(c.fs[l], [&](const std::vector<double>& x) {
      auto fs = c.fs;
      fs[l] = x;
      return ref.value(c.scores, c.boxes, c.queries, c.gt, c.ft, fs);
    });
    check_close(kdloss_test::to_vector(run.gs[l].view), num, rel * 100, 1e-7, "grad_student_features");
  }
}

}  // namespace

TEST_CASE("detr::target_aware_feature_loss: value and gradient against the double reference") {
  FeatureCase c;
  c.make(3);
  SUBCASE("contiguous, double") { feature_case<double>(c, 1e-10); }
  SUBCASE("channels-last padded, double") {
    c.channels_last = true;
    feature_case<double>(c, 1e-10);
  }
  SUBCASE("float") { feature_case<float>(c, 2e-5); }
  SUBCASE("repeated top-k queries") {
    c.repeat_queries = true;
    c.make(4);
    feature_case<double>(c, 1e-10);
  }
  SUBCASE("ragged ground truth, every image with boxes, one level, one layer") {
    c.K = 1;
    c.gt_offsets = {0, 1, 4};
    c.H = {5};
    c.W = {2};
    c.make(5);
    feature_case<double>(c, 1e-10);
  }
  SUBCASE("no ground truth anywhere, top-k = Q * C") {
    c.gt_offsets = {0, 0, 0};
    c.topk = c.Q * c.C;
    c.make(6);
    feature_case<double>(c, 1e-10);
  }
}

#if KDLOSS_TEST_CUDA
namespace {
kdloss_test::FeatureGpuInputs gpu_inputs(const FeatureCase& c) {
  kdloss_test::FeatureGpuInputs in;
  in.K = c.K, in.B = c.B, in.Q = c.Q, in.C = c.C, in.D = c.D, in.topk = c.topk;
  in.H = c.H, in.W = c.W, in.gt_offsets = c.gt_offsets;
  in.scores = c.scores, in.boxes = c.boxes, in.queries = c.queries, in.gt = c.gt, in.ft = c.ft, in.fs = c.fs;
  return in;
}
/// The host's value then every level's gradient (contiguous case), forward_backward.
std::vector<double> host_feature(const FeatureCase& c) {
  FeatureRun<double> run(c);
  detr::target_aware_feature_loss(run.args, Mode::forward_backward);
  std::vector<double> r{run.loss};
  for (const auto& g : run.gs)
    for (double v : kdloss_test::to_vector(g.view)) r.push_back(v);
  return r;
}
}  // namespace
#endif

KDLOSS_GPU_TEST("detr::target_aware_feature_loss: the GPU agrees with the CPU (float, double)") {
#if KDLOSS_TEST_CUDA
  const auto agree = [](const FeatureCase& c) {
    const auto want = host_feature(c);
    for (int dtype : {1, 0}) {
      CAPTURE(dtype);
      const double tol = dtype == 1 ? 1e-10 : 2e-4;
      check_close(kdloss_test::target_aware_feature_on_gpu(dtype, gpu_inputs(c), 0.0), want, tol, tol * 1e-2,
                  "value, grad_student_features");
    }
  };
  FeatureCase c;
  SUBCASE("random scores, ragged ground truth, an image without any") {
    c.make(3);
    agree(c);
  }
  SUBCASE("repeated top-k queries") {
    c.repeat_queries = true;
    c.make(4);
    agree(c);
  }
  SUBCASE("no ground truth anywhere, top-k = Q * C") {
    c.gt_offsets = {0, 0, 0};
    c.topk = c.Q * c.C;
    c.make(6);
    agree(c);
  }
  SUBCASE("backward scales by grad_out") {
    c.make(7);
    auto want = host_feature(c);
    want.erase(want.begin());
    for (auto& v : want) v *= -2.0;
    check_close(kdloss_test::target_aware_feature_on_gpu(1, gpu_inputs(c), -2.0), want, 1e-10, 1e-12, "backward");
  }
  SUBCASE("equal scores across the k-th place: the lowest indices, as torch.topk on CUDA") {
    c.make(5);
    FeatureCase tied = c, cut = c;
    for (auto& v : tied.scores) v = 0.5;
    // the same pairs made strictly larger: flat indices [0, topk) of every (layer, image) row
    for (std::size_t i = 0; i < cut.scores.size(); ++i)
      cut.scores[i] = static_cast<std::int64_t>(i % static_cast<std::size_t>(c.Q * c.C)) < c.topk ? 0.5 : 0.25;
    const auto got = kdloss_test::target_aware_feature_on_gpu(1, gpu_inputs(tied), 0.0);
    CHECK(got == kdloss_test::target_aware_feature_on_gpu(1, gpu_inputs(cut), 0.0));
    check_close(got, host_feature(cut), 1e-10, 1e-12, "the lowest-index pairs");
  }
  SUBCASE("a teacher box that is not xyxy: a NaN value on the GPU (the host rejects it)") {
    c.make(8);
    c.scores[0] = 0.99;                 // layer 0, image 0 (which has ground truth), query 0 is taken first
    c.boxes[2] = c.boxes[0] - 1;        // and its box has x2 < x1
    CHECK(std::isnan(kdloss_test::target_aware_feature_on_gpu(1, gpu_inputs(c), 0.0)[0]));
  }
#endif
}

TEST_CASE("detr::target_aware_feature_loss: backward scales by grad_out; gradients only where asked") {
  FeatureCase c;
  c.make(7);
  FeatureRun<double> full(c);
  detr::target_aware_feature_loss(full.args, Mode::forward_backward);
  FeatureRun<double> back(c);
  const double up = -2.0;
  back.args.out = View<double>{};
  back.args.grad_out = host_scalar(&up);
  back.args.grad_student_features[1] = View<double>{};  // level 1 not requested: untouched
  detr::target_aware_feature_loss_backward(back.args);
  auto want = kdloss_test::to_vector(full.gs[0].view);
  for (auto& v : want) v *= -2.0;
  check_close(kdloss_test::to_vector(back.gs[0].view), want, 1e-14, 0, "backward");
  for (double v : kdloss_test::to_vector(back.gs[1].view)) REQUIRE(v == 5.0);
  // forward alone equals the forward_backward value
  FeatureRun<double> fwd(c);
  fwd.args.grad_student_features.clear();
  detr::target_aware_feature_loss(fwd.args, Mode::forward);
  CHECK(fwd.loss == full.loss);
}

TEST_CASE("detr::target_aware_feature_loss: torch.topk's order on ties (partial_sort and nth_element paths)") {
  // expected orders printed by torch 2.15: x.topk(5) of [0.5]*10 + [0.7]*3 and x.topk(20) of the
  // 50-element 0/1/2 vector below (the second uses nth_element: k * 64 > n)
  using E = std::pair<double, std::int64_t>;
  std::vector<E> q;
  for (int i = 0; i < 13; ++i) q.push_back({i < 10 ? 0.5 : 0.7, i});
  std::vector<std::int64_t> idx(5);
  kdloss::backend::cpu::torch_topk(q, 5, idx.data());
  CHECK(idx == std::vector<std::int64_t>{12, 10, 11, 9, 7});
  const double v[50] = {2, 1, 0, 1, 0, 2, 1, 2, 0, 2, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0,
                        2, 2, 1, 0, 1, 2, 0, 2, 0, 1, 1, 0, 2, 1, 2, 2, 1, 0, 1, 1, 0, 1, 1, 2, 1};
  q.clear();
  for (int i = 0; i < 50; ++i) q.push_back({v[i], i});
  idx.resize(20);
  kdloss::backend::cpu::torch_topk(q, 20, idx.data());
  CHECK(idx == std::vector<std::int64_t>{25, 5, 48, 0, 7, 9, 39, 37, 32, 30, 26, 40, 46, 43, 41, 27, 29, 47, 35, 38});
}

TEST_CASE("detr::target_aware_feature_loss: NaN rules") {
  FeatureCase c;
  c.make(8);
  SUBCASE("a NaN score is taken first (torch.topk) and makes the loss NaN") {
    c.scores[3] = std::nan("");
    FeatureRun<double> run(c);
    detr::target_aware_feature_loss(run.args, Mode::forward);
    CHECK(std::isnan(run.loss));
  }
  SUBCASE("a NaN student element poisons the loss and only its own gradient") {
    c.fs[0][4] = std::nan("");
    FeatureRun<double> run(c);
    detr::target_aware_feature_loss(run.args, Mode::forward_backward);
    CHECK(std::isnan(run.loss));
    const auto g = kdloss_test::to_vector(run.gs[0].view);
    for (std::size_t i = 0; i < g.size(); ++i) CHECK(std::isnan(g[i]) == (i == 4));
  }
}

TEST_CASE("detr::target_aware_feature_loss: bad input throws a clear error and writes nothing") {
  FeatureCase c;
  c.make(9);
  FeatureRun<float> run(c);
  run.loss = -9.0f;
  const auto untouched = [&] {
    CHECK(run.loss == -9.0f);
    for (auto& g : run.gs)
      for (float v : kdloss_test::to_vector(g.view)) REQUIRE(v == 5.0f);
  };
  auto& a = run.args;
  const auto call = [&] { detr::target_aware_feature_loss(a, Mode::forward_backward); };
  SUBCASE("a cxcywh ground-truth box") {
    run.gt[2] = run.gt[0] - 1;
    kdloss_test::expect_error(call, "argument 'gt_boxes' row 0", untouched);
  }
  SUBCASE("a teacher box with x2 < x1") {
    run.boxes[4 * 3 + 2] = run.boxes[4 * 3] - 1;
    kdloss_test::expect_error(call, "argument 'teacher_boxes' [0, 0, 3]", untouched);
  }
  SUBCASE("mismatched levels") {
    a.student_features.pop_back();
    kdloss_test::expect_error(call, "'student_features' holds 1 levels but 'teacher_features' holds 2", untouched);
  }
  SUBCASE("a level of the wrong width") {
    a.teacher_features[1] = host_view<const float>(a.teacher_features[1].data, {c.B, c.D - 1, 1, 1});
    a.student_features[1] = host_view<const float>(a.student_features[1].data, {c.B, c.D - 1, 1, 1});
    kdloss_test::expect_error(call, "argument 'teacher_features[1]' has shape [2, 5, 1, 1]", untouched);
  }
  SUBCASE("gt offsets for another batch") {
    static const std::int64_t three[] = {0, 1, 2, 2};
    a.gt_images = Segments<std::int64_t>{host_view<const std::int64_t>(three, {4})};
    kdloss_test::expect_error(call, "'gt_images' describes 3 images", untouched);
  }
  SUBCASE("top-k beyond Q * C") {
    a.options.topk = c.Q * c.C + 1;
    kdloss_test::expect_error(call, "option 'topk'", untouched);
  }
  SUBCASE("queries of another shape") {
    a.teacher_queries = host_view<const float>(run.queries.data(), {c.K, c.B, c.Q - 1, c.D});
    kdloss_test::expect_error(call, "argument 'teacher_queries'", untouched);
  }
  SUBCASE("a gradient over an input") {
    a.grad_student_features[0] = host_view(const_cast<float*>(a.student_features[0].data), c.level(0));
    kdloss_test::expect_error(call, "overlaps the memory of argument 'student_features[0]'", [&] {
      CHECK(run.loss == -9.0f);
    });
  }
}
