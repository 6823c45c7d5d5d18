// drkd::instance_relation_paper_loss (the seed's form: cosine relation, confidence and distance filters,
// MSE): the double reference and central differences over the option grid, strided input, degenerate
// boxes, zero and identical instances, the NaN rule, bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kdloss/losses/drkd/instance_relation_paper.hpp"
#include "losses/drkd/instance_relation_gpu.hpp"
#include "reference/losses/drkd_instance_paper.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_ref::losses::InstancePaper;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

struct Got {
  double value;
  std::vector<double> grad;
};

template <class T>
Got run(const InstancePaper& r, const std::vector<double>& xs, const std::vector<double>& xt,
        const std::vector<double>& ct, const std::vector<double>& cs, Mode mode = Mode::forward_backward,
        double up = 1.0, const View<const T>* student = nullptr) {
  const std::int64_t n = r.offsets.back();
  std::vector<T> s(xs.begin(), xs.end()), t(xt.begin(), xt.end()), c1(ct.begin(), ct.end()), c2(cs.begin(), cs.end()),
      g(xs.size(), T(-7));
  drkd::InstanceRelationPaperLossArgs<T> a;
  a.student = student ? *student : host_view<const T>(s.data(), {n, r.Ds / 2, 2, 1});
  a.teacher = host_view<const T>(t.data(), {n, r.Dt});
  a.boxes.offsets = host_view<const std::int64_t>(r.offsets.data(), {static_cast<std::int64_t>(r.offsets.size())});
  if (!ct.empty()) a.teacher_scores = host_view<const T>(c1.data(), {n});
  if (!cs.empty()) a.student_scores = host_view<const T>(c2.data(), {n});
  a.options.weight = r.weight;
  a.options.threshold_from = r.teacher_mean ? drkd::ConfidenceThreshold::teacher_mean : drkd::ConfidenceThreshold::fixed;
  a.options.threshold = r.threshold;
  a.options.mask_columns = r.columns;
  a.options.alpha = r.alpha;
  a.options.reduction = r.mean ? Reduction::mean : Reduction::sum;
  T out = T(-7), u = static_cast<T>(up);
  if (writes_value(mode)) a.out = host_scalar(&out);
  if (mode == Mode::backward) a.grad_out = host_scalar<const T>(&u);
  a.grad_student = host_view(g.data(), {n, r.Ds / 2, 2, 1});
  drkd::instance_relation_paper_loss(a, mode);
  return {static_cast<double>(out), std::vector<double>(g.begin(), g.end())};
}

}  // namespace

TEST_CASE("drkd::instance_relation_paper_loss: the option grid matches the reference and central differences") {
  InstancePaper r;
  r.offsets = {0, 3, 3, 7, 8};
  r.Ds = 4;
  r.Dt = 5;
  const std::int64_t n = 8;
  const auto xs = random_vector<double>(n * r.Ds, 31), xt = random_vector<double>(n * r.Dt, 32);
  const auto ct = random_vector<double>(n, 33, 0.0, 1.0), cs = random_vector<double>(n, 34, 0.0, 1.0);
  for (int variant = 0; variant < 6; ++variant) {
    CAPTURE(variant);
    InstancePaper v = r;
    std::vector<double> c_t = ct, c_s;
    if (variant == 1) v.columns = true;
    if (variant == 2) v.teacher_mean = false, v.threshold = 0.4, c_s = cs;
    if (variant == 3) v.alpha = 1.3, v.mean = false, v.weight = 2.0;
    if (variant == 4) c_t.clear();  // plain MSE of the cosine relations
    if (variant == 5) v.alpha = 1.1, v.columns = true, c_s = cs;
    const Got got = run<double>(v, xs, xt, c_t, c_s);
    CHECK(kdloss_test::close(got.value, v.loss(xs, xt, c_t, c_s), 1e-12));
    const auto f = [&](const std::vector<double>& x) { return v.loss(x, xt, c_t, c_s); };
    check_close(got.grad, kdloss_test::numeric_gradient(xs, f), 1e-6, 1e-9, "gradient");
    const Got bw = run<double>(v, xs, xt, c_t, c_s, Mode::backward, 3.0);
    for (std::size_t k = 0; k < bw.grad.size(); ++k) CHECK(kdloss_test::close(bw.grad[k], 3.0 * got.grad[k], 1e-12, 1e-15));
    const Got fl = run<float>(v, xs, xt, c_t, c_s);
    CHECK(kdloss_test::close(fl.value, got.value, 1e-5, 1e-7));
  }
}

TEST_CASE("drkd::instance_relation_paper_loss: strided student, degenerate and identical instances, NaN") {
  InstancePaper r;
  r.offsets = {0, 2, 5};
  r.Ds = 4;
  r.Dt = 4;
  const std::int64_t n = 5;
  auto xs = random_vector<double>(n * r.Ds, 41);
  const auto xt = random_vector<double>(n * r.Dt, 42), ct = random_vector<double>(n, 43, 0.0, 1.0);
  const auto st = kdloss_test::relayout(xs, Dims{n, 2, 2, 1}, {0, 2, 3, 1}, 1);
  const View<const double> sv(st.view);
  const Got a = run<double>(r, xs, xt, ct, {}, Mode::forward_backward, 1.0, &sv), b = run<double>(r, xs, xt, ct, {});
  CHECK(a.value == b.value);
  CHECK(a.grad == b.grad);
  // zero and identical instances: no NaN, values as the reference
  for (std::int64_t k = 0; k < r.Ds; ++k) xs[2 * r.Ds + k] = 0.0, xs[3 * r.Ds + k] = xs[4 * r.Ds + k];
  const Got z = run<double>(r, xs, xt, ct, {});
  CHECK(kdloss_test::close(z.value, r.loss(xs, xt, ct, {}), 1e-12));
  CHECK(kdloss_test::all_finite(z.grad));
  // one box per image, and no box at all (mean of nothing: NaN, as torch's mse_loss of empty tensors)
  InstancePaper one = r;
  one.offsets = {0, 1, 2};
  const Got o = run<double>(one, std::vector<double>(xs.begin(), xs.begin() + 8), std::vector<double>(xt.begin(), xt.begin() + 8),
                            {0.9, 0.8}, {});
  CHECK(o.value == 0.0);  // 1 x 1 relations are 1 on both sides
  InstancePaper none = r;
  none.offsets = {0, 0};
  CHECK(std::isnan(run<double>(none, {}, {}, {}, {}).value));
  // a NaN feature: NaN loss
  xs[1] = std::numeric_limits<double>::quiet_NaN();
  CHECK(std::isnan(run<double>(r, xs, xt, ct, {}).value));
}

TEST_CASE("drkd::instance_relation_paper_loss: bad input throws a clear error and writes nothing") {
  const std::vector<std::int64_t> off{0, 2, 4};
  std::vector<double> s(16, 0.5), t(16, 0.25), c(3, 0.5), g(16, -7.0);
  double out = -7.0;
  drkd::InstanceRelationPaperLossArgs<double> a;
  a.student = host_view<const double>(s.data(), {4, 4});
  a.teacher = host_view<const double>(t.data(), {4, 4});
  a.boxes.offsets = host_view<const std::int64_t>(off.data(), {3});
  a.teacher_scores = host_view<const double>(c.data(), {3});
  a.out = host_scalar(&out);
  a.grad_student = host_view(g.data(), {4, 4});
  const auto untouched = [&] {
    CHECK(out == -7.0);
    for (double x : g) CHECK(x == -7.0);
  };
  kdloss_test::expect_error([&] { drkd::instance_relation_paper_loss(a, Mode::forward_backward); },
                            "argument 'teacher_scores' has shape [3] but expected [4]", untouched);
  a.teacher_scores = {};
  auto bad = a;
  bad.options.alpha = -1;
  kdloss_test::expect_error([&] { drkd::instance_relation_paper_loss(bad, Mode::forward); }, "option 'alpha'", untouched);
  bad = a;
  bad.teacher = host_view<const double>(t.data(), {2, 8});
  kdloss_test::expect_error([&] { drkd::instance_relation_paper_loss(bad, Mode::forward); },
                            "must have the same number of boxes", untouched);
}

KDLOSS_GPU_TEST("drkd::instance_relation_paper_loss: the GPU agrees with the CPU over the option grid and repeats its bits") {
#if KDLOSS_TEST_CUDA
  InstancePaper r;
  r.offsets = {0, 3, 3, 7, 8};
  r.Ds = 6;
  r.Dt = 5;
  const std::int64_t n = 8;
  const auto xs = random_vector<double>(n * r.Ds, 61), xt = random_vector<double>(n * r.Dt, 62);
  const auto ct = random_vector<double>(n, 63, 0.0, 1.0), cs = random_vector<double>(n, 64, 0.0, 1.0);
  for (int variant = 0; variant < 4; ++variant) {
    CAPTURE(variant);
    InstancePaper v = r;
    std::vector<double> c_t = ct, c_s;
    if (variant == 1) v.columns = true, c_s = cs;
    if (variant == 2) v.teacher_mean = false, v.threshold = 0.4, v.alpha = 1.3, v.mean = false;
    if (variant == 3) c_t.clear();  // plain MSE of the cosine relations
    const Got cpu = run<double>(v, xs, xt, c_t, c_s);
    std::vector<double> want{cpu.value};
    want.insert(want.end(), cpu.grad.begin(), cpu.grad.end());
    for (int dtype : {1, 0}) {
      CAPTURE(dtype);
      const auto got = kdloss_test::instance_relation_paper_on_gpu(dtype, v, xs, xt, c_t, c_s);
      const double tol = dtype == 1 ? 1e-10 : 2e-4;
      check_close(got, want, tol, tol * 5e-2, "value, grad_student");
      CHECK(kdloss_test::instance_relation_paper_on_gpu(dtype, v, xs, xt, c_t, c_s) == got);
    }
  }
#endif
}
