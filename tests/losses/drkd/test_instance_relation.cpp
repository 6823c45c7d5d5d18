// drkd::instance_relation_loss (the official code's ObjectRelation_1 form of DRKD's instance relation):
// the double reference, central differences for every input and parameter, strided inputs, degenerate
// box counts, identical instances, the NaN rule, bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kdloss/losses/drkd/instance_relation.hpp"
#include "losses/drkd/instance_relation_args.hpp"
#include "losses/drkd/instance_relation_gpu.hpp"
#include "reference/losses/drkd_instance_relation.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_ref::losses::InstanceRelation;
using kdloss_ref::losses::InstanceRelationInputs;
using kdloss_test::check_close;
using kdloss_test::random_vector;
using In = InstanceRelationInputs;

namespace {

In random_inputs(const InstanceRelation& r, std::uint32_t seed) {
  In in;
  const auto s = kdloss_test::instance_relation_shapes(r);
  for (int k = 0; k < In::count; ++k)
    if (s[k].rank > 0) in.v[k] = random_vector<double>(static_cast<std::size_t>(s[k].product()), seed + k, -1.0, 1.0);
  return in;
}

template <class T>
struct Result {
  double value = 0;
  std::vector<std::vector<double>> grads = std::vector<std::vector<double>>(In::count);
};

/// Runs the library on the reference problem in `mode` (backward with grad_out = upstream), asking for
/// every gradient; `student_view` overrides the student's layout when set.
template <class T>
Result<T> run(const InstanceRelation& r, const In& in, Mode mode, double upstream = 1.0,
              const View<const T>* student_view = nullptr) {
  const auto s = kdloss_test::instance_relation_shapes(r);
  std::vector<std::vector<T>> store(In::count), grads(In::count);
  std::vector<View<const T>> v(In::count);
  std::vector<View<T>> g(In::count);
  for (int k = 0; k < In::count; ++k) {
    if (s[k].rank == 0) continue;  // absent
    store[k].assign(in.v[k].begin(), in.v[k].end());
    v[k] = host_view<const T>(store[k].data(), s[k]);
    grads[k].assign(store[k].size(), T(-7));
    g[k] = host_view<T>(grads[k].data(), s[k]);
  }
  drkd::InstanceRelationLossArgs<T> a = kdloss_test::instance_relation_args<T>(r, v, g, mode);
  if (student_view) a.student = *student_view;
  T out = T(-7), up = static_cast<T>(upstream);
  if (writes_value(mode)) a.out = host_scalar(&out);
  if (mode == Mode::backward) a.grad_out = host_scalar<const T>(&up);
  drkd::instance_relation_loss(a, mode);
  Result<T> res;
  res.value = static_cast<double>(out);
  for (int k = 0; k < In::count; ++k) res.grads[k].assign(grads[k].begin(), grads[k].end());
  return res;
}

InstanceRelation problem(std::vector<std::int64_t> offsets, bool filter = true, bool fg = true) {
  InstanceRelation r;
  r.offsets = std::move(offsets);
  r.Cs = 2;
  r.Ct = 3;
  r.P = 2;
  r.Q = 1;
  r.Is = 3;
  r.It = 2;
  r.relation_weight = 0.7;  // large weights: the checks see every term
  r.feature_weight = 0.3;
  r.filter = filter;
  r.fg = fg;
  return r;
}

}  // namespace

TEST_CASE("drkd::instance_relation_loss: value and every gradient match the reference and central differences") {
  for (bool filter : {true, false})
    for (bool fg : {true, false}) {
      CAPTURE(filter);
      CAPTURE(fg);
      const InstanceRelation r = problem({0, 2, 2, 5, 6}, filter, fg);  // 2, 0, 3 and 1 boxes
      const In in = random_inputs(r, 11);
      const auto got = run<double>(r, in, Mode::forward_backward);
      CHECK(kdloss_test::close(got.value, r.loss(in), 1e-12));
      for (int k = 0; k < In::count; ++k) {
        if (in.v[k].empty() || k == In::teacher) continue;
        CAPTURE(k);
        In probe = in;
        const auto f = [&](const std::vector<double>& x) {
          probe.v[k] = x;
          return r.loss(probe);
        };
        check_close(got.grads[k], kdloss_test::numeric_gradient(in.v[k], f), 1e-6, 1e-9, "gradient");
      }
      // backward scales by grad_out; forward writes the same value
      const auto bw = run<double>(r, in, Mode::backward, 0.5);
      for (int k = 0; k < In::count; ++k) {
        if (in.v[k].empty() || k == In::teacher) continue;
        std::vector<double> half = got.grads[k];
        for (auto& x : half) x *= 0.5;
        check_close(bw.grads[k], half, 1e-12, 1e-15, "backward");
      }
      CHECK(run<double>(r, in, Mode::forward).value == got.value);
      const auto fl = run<float>(r, in, Mode::forward_backward);
      CHECK(kdloss_test::close(fl.value, got.value, 1e-5));
      check_close(fl.grads[In::student], got.grads[In::student], 1e-4, 1e-6, "float gradient");
    }
}

TEST_CASE("drkd::instance_relation_loss: a strided student equals its contiguous copy") {
  const InstanceRelation r = problem({0, 3, 5});
  const In in = random_inputs(r, 5);
  const auto st = kdloss_test::relayout(in.v[In::student], Dims{r.n(), r.Cs, r.P, r.Q}, {0, 2, 3, 1}, 2);
  const View<const double> sv(st.view);
  const auto a = run<double>(r, in, Mode::forward_backward, 1.0, &sv);
  const auto b = run<double>(r, in, Mode::forward_backward);
  CHECK(a.value == b.value);
  for (int k = 0; k < In::count; ++k) CHECK(a.grads[k] == b.grads[k]);
}

TEST_CASE("drkd::instance_relation_loss: degenerate boxes and identical instances") {
  // no boxes at all: 0 and zero gradients of the adapters
  {
    const InstanceRelation r = problem({0, 0, 0});
    const In in = random_inputs(r, 3);
    const auto got = run<double>(r, in, Mode::forward_backward);
    CHECK(got.value == 0.0);
    for (double x : got.grads[In::rel_adapt_w]) CHECK(x == 0.0);
  }
  // one box per image; identical instances within an image (equal rows): finite, matches the reference
  {
    const InstanceRelation r = problem({0, 1, 2});
    const In in = random_inputs(r, 4);
    const auto got = run<double>(r, in, Mode::forward_backward);
    CHECK(kdloss_test::close(got.value, r.loss(in), 1e-12));
  }
  {
    const InstanceRelation r = problem({0, 3});
    In in = random_inputs(r, 6);
    for (auto k : {In::student, In::teacher}) {
      const std::size_t w = in.v[k].size() / 3;
      for (std::size_t e = w; e < in.v[k].size(); ++e) in.v[k][e] = in.v[k][e % w];
    }
    const auto got = run<double>(r, in, Mode::forward_backward);
    CHECK(kdloss_test::close(got.value, r.loss(in), 1e-12));
    CHECK(kdloss_test::all_finite(got.grads[In::student]));
  }
  // student == teacher after the adapters (zero distance): gradient 0, no NaN
  {
    InstanceRelation r = problem({0, 2});
    r.Ct = r.Cs;
    r.It = r.Is;
    In in = random_inputs(r, 7);
    in.v[In::teacher] = in.v[In::student];
    for (int k = 0; k < 8; ++k) in.v[In::t_theta_w + k] = in.v[In::s_theta_w + k];
    in.v[In::t_filter_w] = in.v[In::s_filter_w];
    in.v[In::t_filter_b] = in.v[In::s_filter_b];
    for (auto k : {In::rel_adapt_w, In::fg_adapt_w}) in.v[k] = {1, 0, 0, 1};
    for (auto k : {In::rel_adapt_b, In::fg_adapt_b}) in.v[k] = {0, 0};
    const auto got = run<double>(r, in, Mode::forward_backward);
    CHECK(got.value == 0.0);
    for (double x : got.grads[In::student]) CHECK(x == 0.0);
  }
}

TEST_CASE("drkd::instance_relation_loss: a NaN feature gives a NaN loss") {
  const InstanceRelation r = problem({0, 2, 4});
  In in = random_inputs(r, 8);
  in.v[In::student][3] = std::numeric_limits<double>::quiet_NaN();
  const auto got = run<double>(r, in, Mode::forward_backward);
  CHECK(std::isnan(got.value));
  CHECK(std::isnan(got.grads[In::student][3]));
}

TEST_CASE("drkd::instance_relation_loss: bad input throws a clear error and writes nothing") {
  const InstanceRelation r = problem({0, 2, 4});
  const In in = random_inputs(r, 9);
  const auto s = kdloss_test::instance_relation_shapes(r);
  std::vector<std::vector<double>> store(in.v);
  std::vector<View<const double>> v(In::count);
  for (int k = 0; k < In::count; ++k)
    if (!store[k].empty()) v[k] = host_view<const double>(store[k].data(), s[k]);
  std::vector<double> gs(store[In::student].size(), -7.0);
  double out = -7.0;
  const std::vector<std::int64_t> off{0, 2, 4}, short_off{0, 2, 3};
  drkd::InstanceRelationLossArgs<double> a;
  a.student = v[In::student];
  a.teacher = v[In::teacher];
  a.boxes.offsets = host_view<const std::int64_t>(off.data(), {3});
  a.student_relation = {v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]};
  a.teacher_relation = {v[10], v[11], v[12], v[13], v[14], v[15], v[16], v[17]};
  a.student_filter = {v[In::s_filter_w], v[In::s_filter_b]};
  a.teacher_filter = {v[In::t_filter_w], v[In::t_filter_b]};
  a.relation_adapt_weight = v[In::rel_adapt_w];
  a.out = host_scalar(&out);
  a.grad_student = host_view(gs.data(), s[In::student]);
  const auto untouched = [&] {
    CHECK(out == -7.0);
    for (double x : gs) CHECK(x == -7.0);
  };
  drkd::instance_relation_loss(a, Mode::forward_backward);  // the good call runs
  out = -7.0;
  std::fill(gs.begin(), gs.end(), -7.0);
  auto bad = a;
  bad.boxes.offsets = host_view<const std::int64_t>(short_off.data(), {3});
  kdloss_test::expect_error([&] { drkd::instance_relation_loss(bad, Mode::forward_backward); },
                            "argument 'boxes' ends at 3 but the packed view has 4 rows", untouched);
  bad = a;
  bad.teacher_relation.W_weight = v[In::s_W_w];
  kdloss_test::expect_error([&] { drkd::instance_relation_loss(bad, Mode::forward_backward); },
                            "argument 'teacher_relation.W_weight' has shape [4, 3] but expected [6, 2]", untouched);
  bad = a;
  bad.student_filter.bias = {};
  kdloss_test::expect_error([&] { drkd::instance_relation_loss(bad, Mode::forward_backward); },
                            "'student_filter.weight' and 'student_filter.bias' come together", untouched);
  bad = a;
  bad.relation_adapt_weight = {};
  kdloss_test::expect_error([&] { drkd::instance_relation_loss(bad, Mode::forward); },
                            "argument 'relation_adapt_weight' is absent", untouched);
  bad = a;
  bad.grad_student = host_view(const_cast<double*>(store[In::student].data()), s[In::student]);
  kdloss_test::expect_error([&] { drkd::instance_relation_loss(bad, Mode::forward_backward); },
                            "output argument 'grad_student' overlaps the memory of argument 'student'", untouched);
  bad = a;
  bad.teacher = host_view<const double>(store[In::teacher].data(), {4, 3, 1, 2});
  kdloss_test::expect_error([&] { drkd::instance_relation_loss(bad, Mode::forward); },
                            "must have the same boxes and RoI size", untouched);
}

KDLOSS_GPU_TEST("drkd::instance_relation_loss: the GPU agrees with the CPU (every gradient; float, double) and repeats its bits") {
#if KDLOSS_TEST_CUDA
  for (bool filter : {true, false}) {
    CAPTURE(filter);
    const InstanceRelation r = problem({0, 2, 2, 5, 6}, filter, !filter);  // 2, 0, 3 and 1 boxes
    const In in = random_inputs(r, 17);
    const auto cpu = run<double>(r, in, Mode::forward_backward);
    std::vector<double> want{cpu.value};
    for (int k = 0; k < In::count; ++k)
      if (!in.v[k].empty() && k != In::teacher) want.insert(want.end(), cpu.grads[k].begin(), cpu.grads[k].end());
    for (int dtype : {1, 0}) {
      CAPTURE(dtype);
      const auto got = kdloss_test::instance_relation_on_gpu(dtype, r, in);
      const double tol = dtype == 1 ? 1e-10 : 3e-4;
      check_close(got, want, tol, tol * 5e-2, "value and every gradient");
      CHECK(kdloss_test::instance_relation_on_gpu(dtype, r, in) == got);
    }
  }
#endif
}
