// drkd::glore_relation_loss (DRKD's L_PR, one level): the composed double reference against central
// differences for S and every parameter; value and every gradient against the reference (forward,
// backward with an upstream gradient, forward_backward, GradAccumulate); the teacher map untouched and
// without a gradient; strided (channels-last, padded) maps; C_s != C_t; the zero-norm and NaN rules; bad
// input with outputs untouched; thread-count determinism; the GPU helper (skipped without a GPU).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kdloss/losses/drkd/glore_relation.hpp"
#include "losses/drkd/glore_relation_gpu.hpp"
#include "reference/losses/drkd_glore_relation.hpp"
#include "support/test_support.hpp"

#include "support/threads.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;
using Ref = kdloss_ref::drkd::GloreRelation;
using Params = Ref::Params;

namespace {

struct Case {
  std::int64_t b, cs, ct, ms, mt, h, w;
  std::vector<int> order{0, 1, 2, 3};  // memory order of S, T and grad_student
  std::int64_t pad = 0;
  std::int64_t n() const { return h * w; }
  Dims s_dims() const { return Dims{b, cs, h, w}; }
  Dims t_dims() const { return Dims{b, ct, h, w}; }
  Ref ref(double weight = 1e-3) const { return {b, cs, ct, ms, mt, n(), weight}; }
};

std::vector<std::vector<double>*> params_of(Params& p) {
  return {&p.state_w, &p.state_b, &p.proj_w, &p.proj_b, &p.conv1_w, &p.conv1_b, &p.conv2_w, &p.extend_w, &p.bn_w, &p.bn_b};
}
const char* const kParamNames[] = {"state_weight",     "state_bias",     "proj_weight",      "proj_bias",
                                   "gcn_conv1_weight", "gcn_conv1_bias", "gcn_conv2_weight", "extend_weight",
                                   "bn_weight",        "bn_bias"};
std::vector<Dims> param_shapes(std::int64_t C, std::int64_t m) {
  const std::int64_t s = 2 * m;
  return {Dims{s, C}, Dims{s}, Dims{m, C}, Dims{m}, Dims{m, m}, Dims{m}, Dims{s, s}, Dims{C, s}, Dims{C}, Dims{C}};
}

struct Inputs {
  std::vector<double> s, t, aw, ab;
  Params ps, pt;
};

Params make_params(std::int64_t C, std::int64_t m, std::uint32_t& seed) {
  const auto r = [&](std::int64_t n, double scale) {
    auto v = random_vector<double>(static_cast<std::size_t>(n), seed++);
    for (auto& x : v) x *= scale;
    return v;
  };
  const std::int64_t s = 2 * m;
  Params p;
  p.state_w = r(s * C, 0.5);
  p.state_b = r(s, 0.3);
  p.proj_w = r(m * C, 0.5);
  p.proj_b = r(m, 0.3);
  p.conv1_w = r(m * m, 0.5);
  p.conv1_b = r(m, 0.3);
  p.conv2_w = r(s * s, 0.5);
  p.extend_w = r(C * s, 0.5);
  p.bn_w = r(C, 1.0);
  for (auto& v : p.bn_w) v += 1.5;
  p.bn_b = r(C, 0.3);
  return p;
}

Inputs make_inputs(const Case& c, std::uint32_t seed) {
  Inputs in;
  in.s = random_vector<double>(static_cast<std::size_t>(c.b * c.cs * c.n()), seed++);
  in.t = random_vector<double>(static_cast<std::size_t>(c.b * c.ct * c.n()), seed++);
  in.aw = random_vector<double>(static_cast<std::size_t>(c.ct * c.cs), seed++, -0.6, 0.6);
  in.ab = random_vector<double>(static_cast<std::size_t>(c.ct), seed++, -0.3, 0.3);
  in.ps = make_params(c.cs, c.ms, seed);
  in.pt = make_params(c.ct, c.mt, seed);
  return in;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

/// Everything one call writes, as doubles.
struct Run {
  double value = 0;
  std::vector<double> gs, aw, ab, s_mean, s_var, t_mean, t_var;
  std::vector<std::vector<double>> ps, pt;  // the ten gradients of each unit
};

/// Host storage for a unit's parameters and their gradients, bound to the loss's views.
template <class T>
struct UnitStore {
  std::vector<std::vector<T>> values, grads;
  UnitStore(Params p, const std::vector<std::vector<double>>& old, T fill) {
    const auto ps = params_of(p);
    for (std::size_t i = 0; i < ps.size(); ++i) {
      values.push_back(cast<T>(*ps[i]));
      grads.push_back(old.empty() ? std::vector<T>(ps[i]->size(), fill) : cast<T>(old[i]));
    }
  }
  void bind(std::int64_t C, std::int64_t m, drkd::GloreUnitParams<T>& p, drkd::GloreUnitGrads<T>* g) {
    const auto sh = param_shapes(C, m);
    const View<const T>* pin[] = {&p.state_weight,     &p.state_bias,     &p.proj_weight,      &p.proj_bias,
                                  &p.gcn_conv1_weight, &p.gcn_conv1_bias, &p.gcn_conv2_weight, &p.extend_weight,
                                  &p.bn_weight,        &p.bn_bias};
    for (int i = 0; i < 10; ++i) *const_cast<View<const T>*>(pin[i]) = host_view<const T>(values[i].data(), sh[i]);
    if (!g) return;
    View<T>* pg[] = {&g->state_weight,     &g->state_bias,     &g->proj_weight,      &g->proj_bias,
                     &g->gcn_conv1_weight, &g->gcn_conv1_bias, &g->gcn_conv2_weight, &g->extend_weight,
                     &g->bn_weight,        &g->bn_bias};
    for (int i = 0; i < 10; ++i) *pg[i] = host_view(grads[i].data(), sh[i]);
  }
  std::vector<std::vector<double>> grads_back() const {
    std::vector<std::vector<double>> r;
    for (const auto& g : grads) r.emplace_back(g.begin(), g.end());
    return r;
  }
};

struct Options {
  Mode mode = Mode::forward_backward;
  double upstream = 1.0;
  double weight = 1e-3;
  double beta = 0.0;
  std::vector<std::vector<double>> old_ps, old_pt, old_adapter;  // beta's old contents (empty: NaN garbage)
};

template <class T>
Run run_loss(const Case& c, const Inputs& in, const Options& o = {}) {
  const T nan = std::numeric_limits<T>::quiet_NaN();
  auto s = kdloss_test::relayout(cast<T>(in.s), c.s_dims(), c.order, c.pad);
  auto t = kdloss_test::relayout(cast<T>(in.t), c.t_dims(), c.order, c.pad);
  auto gs = kdloss_test::relayout(std::vector<T>(in.s.size(), nan), c.s_dims(), c.order, c.pad);
  const std::vector<T> t_before = t.storage;
  UnitStore<T> us(in.ps, o.old_ps, nan), ut(in.pt, o.old_pt, nan);
  std::vector<T> aw = cast<T>(in.aw), ab = cast<T>(in.ab);
  std::vector<T> gaw = o.old_adapter.empty() ? std::vector<T>(aw.size(), nan) : cast<T>(o.old_adapter[0]);
  std::vector<T> gab = o.old_adapter.empty() ? std::vector<T>(ab.size(), nan) : cast<T>(o.old_adapter[1]);
  std::vector<T> sm(c.cs, nan), sv(c.cs, nan), tm(c.ct, nan), tv(c.ct, nan);
  T out = T(-5), up = T(o.upstream);
  drkd::GloreRelationLossArgs<T> a;
  a.student = s.view;
  a.teacher = t.view;
  us.bind(c.cs, c.ms, a.student_glore, &a.grad_student_glore);
  ut.bind(c.ct, c.mt, a.teacher_glore, &a.grad_teacher_glore);
  a.adapt_weight = host_view<const T>(aw.data(), {c.ct, c.cs});
  a.adapt_bias = host_view<const T>(ab.data(), {c.ct});
  a.out = host_scalar(&out);
  a.grad_out = host_scalar<const T>(&up);
  a.grad_student = gs.view;
  a.grad_adapt_weight = host_view(gaw.data(), {c.ct, c.cs});
  a.grad_adapt_bias = host_view(gab.data(), {c.ct});
  a.student_bn_stats = {host_view(sm.data(), {c.cs}), host_view(sv.data(), {c.cs})};
  a.teacher_bn_stats = {host_view(tm.data(), {c.ct}), host_view(tv.data(), {c.ct})};
  a.options.weight = o.weight;
  a.options.param_grads.beta = o.beta;
  // a caller-sized workspace in one case out of two
  std::vector<unsigned char> ws(drkd::glore_relation_loss_workspace_bytes(a) + 256);
  Exec exec;
  if (o.mode != Mode::backward) {
    const auto base = (reinterpret_cast<std::uintptr_t>(ws.data()) + 255) / 256 * 256;
    exec.workspace = {reinterpret_cast<void*>(base), ws.size() - 256};
  }
  drkd::glore_relation_loss(a, o.mode, exec);
  // the teacher map is read only (bytes: a NaN input compares unequal to itself)
  CHECK(std::memcmp(t.storage.data(), t_before.data(), t_before.size() * sizeof(T)) == 0);
  Run r;
  r.value = static_cast<double>(out);
  r.gs = std::vector<double>();
  for (T v : kdloss_test::to_vector(View<const T>(gs.view))) r.gs.push_back(static_cast<double>(v));
  r.aw.assign(gaw.begin(), gaw.end());
  r.ab.assign(gab.begin(), gab.end());
  r.s_mean.assign(sm.begin(), sm.end());
  r.s_var.assign(sv.begin(), sv.end());
  r.t_mean.assign(tm.begin(), tm.end());
  r.t_var.assign(tv.begin(), tv.end());
  r.ps = us.grads_back();
  r.pt = ut.grads_back();
  return r;
}

/// Compares every gradient of `got` with the reference's, times `scale`.
void check_grads(const Run& got, Ref::Grads want, double scale, double rel, double abs_tol) {
  const auto times = [&](std::vector<double> v) {
    for (auto& x : v) x *= scale;
    return v;
  };
  const auto judged = [&](const std::vector<double>& g, const std::vector<double>& w, const char* what) {
    double m = 0;  // judged against the largest entry (the blockers cancel some to ~0)
    for (double v : w) m = std::max(m, std::fabs(v));
    check_close(g, times(w), rel, abs_tol * std::max(m, 1e-300) * std::fabs(scale) + 1e-300, what);
  };
  judged(got.gs, want.s, "grad_student");
  judged(got.aw, want.aw, "grad_adapt_weight");
  judged(got.ab, want.ab, "grad_adapt_bias");
  const auto ps = params_of(want.ps), pt = params_of(want.pt);
  for (int i = 0; i < 10; ++i) {
    CAPTURE(kParamNames[i]);
    judged(got.ps[i], *ps[i], "grad_student_glore");
    judged(got.pt[i], *pt[i], "grad_teacher_glore");
  }
}

const Case kSmall{2, 6, 6, 2, 2, 3, 4};

}  // namespace

TEST_CASE("glore_relation_loss: the composed reference matches central differences for S, the adapter and both units") {
  const Case c = kSmall;
  const Inputs in = make_inputs(c, 10);
  const Ref R = c.ref(1.0);  // weight 1: the differences stay well above rounding
  const auto value = [&](const Inputs& x) { return R.forward(x.s, x.t, x.ps, x.pt, x.aw, x.ab).value; };
  const Ref::Grads g = R.backward(in.s, in.t, in.ps, in.pt, in.aw, in.ab);
  const auto numeric = [&](auto&& field) {
    Inputs work = in;
    std::vector<double>& v = field(work);
    return kdloss_test::numeric_gradient(v, [&](const std::vector<double>& p) {
      Inputs x = work;
      field(x) = p;
      return value(x);
    });
  };
  check_close(g.s, numeric([](Inputs& x) -> std::vector<double>& { return x.s; }), 1e-5, 1e-7, "dL/dS");
  check_close(g.aw, numeric([](Inputs& x) -> std::vector<double>& { return x.aw; }), 1e-5, 1e-7, "dL/dadapt_weight");
  check_close(g.ab, numeric([](Inputs& x) -> std::vector<double>& { return x.ab; }), 1e-5, 1e-7, "dL/dadapt_bias");
  Ref::Grads gw = g;
  const auto ps = params_of(gw.ps), pt = params_of(gw.pt);
  for (int i = 0; i < 10; ++i) {
    CAPTURE(kParamNames[i]);
    check_close(*ps[i], numeric([i](Inputs& x) -> std::vector<double>& { return *params_of(x.ps)[i]; }), 1e-5, 1e-7,
                "student unit");
    check_close(*pt[i], numeric([i](Inputs& x) -> std::vector<double>& { return *params_of(x.pt)[i]; }), 1e-5, 1e-7,
                "teacher unit");
  }
}

TEST_CASE("glore_relation_loss: value, batch statistics and every gradient match the reference (double and float)") {
  for (const Case& c : {kSmall, Case{3, 5, 7, 3, 2, 2, 3}}) {
    CAPTURE(c.cs);
    CAPTURE(c.ct);
    const Inputs in = make_inputs(c, 20);
    const Ref R = c.ref();
    const Ref::Forward f = R.forward(in.s, in.t, in.ps, in.pt, in.aw, in.ab);
    const Ref::Grads g = R.backward(in.s, in.t, in.ps, in.pt, in.aw, in.ab);
    const auto ss = R.unit_s().blocker().stats(f.s.e, {}, {}), ts = R.unit_t().blocker().stats(f.t.e, {}, {});
    // forward_backward
    Run r = run_loss<double>(c, in);
    check_close(std::vector<double>{r.value}, std::vector<double>{f.value}, 1e-10, 0, "value");
    check_close(r.s_mean, ss.mean, 1e-10, 1e-12, "student bn_batch_mean");
    check_close(r.s_var, ss.var_unbiased, 1e-10, 1e-12, "student bn_batch_var");
    check_close(r.t_mean, ts.mean, 1e-10, 1e-12, "teacher bn_batch_mean");
    check_close(r.t_var, ts.var_unbiased, 1e-10, 1e-12, "teacher bn_batch_var");
    check_grads(r, g, 1.0, 1e-9, 1e-10);
    // forward only: the value and the statistics, no gradient written
    Options fwd;
    fwd.mode = Mode::forward;
    r = run_loss<double>(c, in, fwd);
    check_close(std::vector<double>{r.value}, std::vector<double>{f.value}, 1e-10, 0, "forward value");
    check_close(r.t_var, ts.var_unbiased, 1e-10, 1e-12, "forward teacher bn_batch_var");
    CHECK(std::isnan(r.gs[0]));
    CHECK(std::isnan(r.pt[0][0]));
    // backward with an upstream gradient: value and statistics untouched
    Options bwd;
    bwd.mode = Mode::backward;
    bwd.upstream = -2.5;
    r = run_loss<double>(c, in, bwd);
    CHECK(r.value == -5.0);
    CHECK(std::isnan(r.s_mean[0]));
    check_grads(r, g, -2.5, 1e-9, 1e-10);
    // float
    const Run rf = run_loss<float>(c, in);
    check_close(std::vector<double>{rf.value}, std::vector<double>{f.value}, 1e-4, 0, "float value");
    check_grads(rf, g, 1.0, 2e-3, 2e-4);
  }
}

TEST_CASE("glore_relation_loss: channels-last and padded strided maps agree with the reference") {
  Case nhwc = kSmall;
  nhwc.order = {0, 2, 3, 1};
  Case padded{2, 5, 4, 2, 1, 4, 3, {0, 2, 3, 1}, 3};
  for (const Case& c : {nhwc, padded}) {
    const Inputs in = make_inputs(c, 30);
    const Ref R = c.ref();
    const double want = R.forward(in.s, in.t, in.ps, in.pt, in.aw, in.ab).value;
    const Run r = run_loss<double>(c, in);
    check_close(std::vector<double>{r.value}, std::vector<double>{want}, 1e-10, 0, "value");
    check_grads(r, R.backward(in.s, in.t, in.ps, in.pt, in.aw, in.ab), 1.0, 1e-9, 1e-10);
  }
}

TEST_CASE("glore_relation_loss: GradAccumulate beta = 1 adds onto every old parameter gradient") {
  const Case c = kSmall;
  const Inputs in = make_inputs(c, 40);
  const Ref R = c.ref();
  Ref::Grads want = R.backward(in.s, in.t, in.ps, in.pt, in.aw, in.ab);
  Options o;
  o.beta = 1.0;
  std::uint32_t seed = 41;
  const auto add_old = [&](std::vector<double>& w) {
    auto old = random_vector<double>(w.size(), seed++);
    for (std::size_t k = 0; k < w.size(); ++k) w[k] += old[k];
    return old;
  };
  o.old_adapter = {add_old(want.aw), add_old(want.ab)};
  for (auto* p : params_of(want.ps)) o.old_ps.push_back(add_old(*p));
  for (auto* p : params_of(want.pt)) o.old_pt.push_back(add_old(*p));
  check_grads(run_loss<double>(c, in, o), want, 1.0, 1e-9, 1e-10);
}

TEST_CASE("glore_relation_loss: adapted == GloRe_T(T) exactly gives 0 and zero gradients (torch's norm rule), not NaN") {
  // zero conv_extend weights: each unit is x + BN(0) = x + bn_bias; identity adapter, S = T, same bn_bias
  const Case c = kSmall;
  Inputs in = make_inputs(c, 50);
  in.t = in.s;
  for (auto& v : in.ps.extend_w) v = 0;
  in.pt = in.ps;
  in.aw.assign(in.aw.size(), 0.0);
  for (std::int64_t k = 0; k < c.cs; ++k) in.aw[k * c.cs + k] = 1.0;
  in.ab.assign(in.ab.size(), 0.0);
  const Run r = run_loss<double>(c, in);
  CHECK(r.value == 0.0);
  for (double v : r.gs) REQUIRE(v == 0.0);
  for (double v : r.aw) REQUIRE(v == 0.0);
  for (const auto& p : r.pt)
    for (double v : p) REQUIRE(v == 0.0);
}

TEST_CASE("glore_relation_loss: a NaN in S or T propagates as in the reference") {
  for (bool in_teacher : {false, true}) {
    CAPTURE(in_teacher);
    const Case c = kSmall;
    Inputs in = make_inputs(c, 60);
    (in_teacher ? in.t : in.s)[7] = std::numeric_limits<double>::quiet_NaN();
    const Ref R = c.ref();
    const Ref::Grads g = R.backward(in.s, in.t, in.ps, in.pt, in.aw, in.ab);
    const Run r = run_loss<double>(c, in);
    CHECK(std::isnan(r.value));
    kdloss_test::check_same_nonfinite(r.gs, g.s, 1e-9, 1e-12, "grad_student");
    kdloss_test::check_same_nonfinite(r.aw, g.aw, 1e-9, 1e-12, "grad_adapt_weight");
    Ref::Grads gw = g;
    const auto pt = params_of(gw.pt), ps = params_of(gw.ps);
    for (int i = 0; i < 10; ++i) {
      kdloss_test::check_same_nonfinite(r.pt[i], *pt[i], 1e-9, 1e-12, kParamNames[i]);
      kdloss_test::check_same_nonfinite(r.ps[i], *ps[i], 1e-9, 1e-12, kParamNames[i]);
    }
    CHECK(std::isnan(r.gs[0]));  // a NaN norm reaches every element
  }
}

TEST_CASE("glore_relation_loss: bad input throws a clear error naming the argument and writes nothing") {
  const Case c = kSmall;
  const Inputs in = make_inputs(c, 70);
  std::vector<double> s = in.s, t = in.t, aw = in.aw, ab = in.ab, gs(s.size(), -3.0), gaw(aw.size(), -3.0);
  double out = -3.0, up = 1.0;
  UnitStore<double> us(in.ps, {}, -3.0), ut(in.pt, {}, -3.0);
  const auto base = [&] {
    drkd::GloreRelationLossArgs<double> a;
    a.student = host_view<const double>(s.data(), c.s_dims());
    a.teacher = host_view<const double>(t.data(), c.t_dims());
    us.bind(c.cs, c.ms, a.student_glore, &a.grad_student_glore);
    ut.bind(c.ct, c.mt, a.teacher_glore, &a.grad_teacher_glore);
    a.adapt_weight = host_view<const double>(aw.data(), {c.ct, c.cs});
    a.adapt_bias = host_view<const double>(ab.data(), {c.ct});
    a.out = host_scalar(&out);
    a.grad_out = host_scalar<const double>(&up);
    a.grad_student = host_view(gs.data(), c.s_dims());
    a.grad_adapt_weight = host_view(gaw.data(), {c.ct, c.cs});
    return a;
  };
  const auto untouched = [&] {
    REQUIRE(out == -3.0);
    for (double v : gs) REQUIRE(v == -3.0);
    for (double v : gaw) REQUIRE(v == -3.0);
    for (const auto& g : us.grads)
      for (double v : g) REQUIRE(v == -3.0);
    for (const auto& g : ut.grads)
      for (double v : g) REQUIRE(v == -3.0);
  };
  const Mode fb = Mode::forward_backward;
  auto a = base();
  a.adapt_weight = host_view<const double>(aw.data(), {c.cs, c.ct - 1});
  kdloss_test::expect_error([&] { drkd::glore_relation_loss(a, fb); },
                            "argument 'adapt_weight' has shape [6, 5] but expected [6, 6]", untouched);
  a = base();
  a.teacher = host_view<const double>(t.data(), {2, 6, 4, 3});
  kdloss_test::expect_error([&] { drkd::glore_relation_loss(a, fb); },
                            "'student' [2, 6, 3, 4] and 'teacher' [2, 6, 4, 3] must have the same batch", untouched);
  a = base();
  a.student_glore.gcn_conv2_weight = host_view<const double>(us.values[6].data(), {4, 2});
  kdloss_test::expect_error([&] { drkd::glore_relation_loss(a, fb); },
                            "in 'student_glore': kdloss::ops::glore: argument 'gcn_conv2_weight' has shape [4, 2]",
                            untouched);
  a = base();
  a.teacher_glore.bn_bias = View<const double>{};
  kdloss_test::expect_error([&] { drkd::glore_relation_loss(a, fb); }, "in 'teacher_glore'", untouched);
  a = base();
  a.grad_teacher_glore.extend_weight = host_view(ut.grads[7].data(), {4, 6});
  kdloss_test::expect_error([&] { drkd::glore_relation_loss(a, fb); }, "grad_extend_weight", untouched);
  a = base();
  a.grad_out = View<const double>{};
  kdloss_test::expect_error([&] { drkd::glore_relation_loss(a, Mode::backward); }, "reads 'grad_out' but it is absent",
                            untouched);
  a = base();
  a.grad_student = host_view(const_cast<double*>(s.data()), c.s_dims());
  kdloss_test::expect_error([&] { drkd::glore_relation_loss(a, fb); },
                            "output argument 'grad_student' overlaps the memory of argument 'student'", untouched);
  a = base();
  a.out = View<double>{};
  kdloss_test::expect_error([&] { drkd::glore_relation_loss(a, Mode::forward); }, "argument 'out'", untouched);
  a = base();
  std::vector<double> stats(c.ct + 1, -3.0);
  a.teacher_bn_stats.bn_batch_var = host_view(stats.data(), {c.ct + 1});
  kdloss_test::expect_error([&] { drkd::glore_relation_loss(a, fb); },
                            "argument 'teacher_bn_stats.bn_batch_var' has shape [7] but expected [6]", untouched);
  for (double v : stats) CHECK(v == -3.0);
  a = base();
  a.options.weight = std::numeric_limits<double>::infinity();
  kdloss_test::expect_error([&] { drkd::glore_relation_loss(a, fb); }, "option 'weight'", untouched);
  a = base();
  std::vector<unsigned char> small(512);
  const auto aligned = (reinterpret_cast<std::uintptr_t>(small.data()) + 255) / 256 * 256;
  kdloss_test::expect_error(
      [&] { drkd::glore_relation_loss(a, fb, Exec{{reinterpret_cast<void*>(aligned), 256}}); },
      "argument 'workspace' has 256 bytes", untouched);
}

TEST_CASE("glore_relation_loss: results are bitwise the same with 1 and 2 threads") {
#if KDLOSS_OPENMP
  const Case c{2, 32, 32, 8, 8, 16, 20};
  const Inputs in = make_inputs(c, 80);
  kdloss_test::ThreadScope scope(1);
  const Run r1 = run_loss<float>(c, in);
  scope.set(2);
  const Run r2 = run_loss<float>(c, in);
  CHECK(r1.value == r2.value);
  CHECK(r1.gs == r2.gs);
  CHECK(r1.aw == r2.aw);
  CHECK(r1.ps == r2.ps);
  CHECK(r1.pt == r2.pt);
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}

KDLOSS_GPU_TEST("glore_relation_loss: the GPU agrees with the double reference (float, double)") {
#if KDLOSS_TEST_CUDA
  const Case c{2, 8, 8, 4, 2, 5, 6};
  const Inputs in = make_inputs(c, 90);
  const Ref R = c.ref();
  const double want = R.forward(in.s, in.t, in.ps, in.pt, in.aw, in.ab).value;
  const Ref::Grads g = R.backward(in.s, in.t, in.ps, in.pt, in.aw, in.ab);
  std::vector<std::vector<double>> ps, pt;
  Inputs copy = in;
  for (auto* p : params_of(copy.ps)) ps.push_back(*p);
  for (auto* p : params_of(copy.pt)) pt.push_back(*p);
  std::vector<double> expect{want};
  expect.insert(expect.end(), g.s.begin(), g.s.end());
  expect.insert(expect.end(), g.aw.begin(), g.aw.end());
  expect.insert(expect.end(), g.ab.begin(), g.ab.end());
  Ref::Grads gw = g;
  for (auto* p : params_of(gw.ps)) expect.insert(expect.end(), p->begin(), p->end());
  for (auto* p : params_of(gw.pt)) expect.insert(expect.end(), p->begin(), p->end());
  for (int dtype : {1, 0}) {
    CAPTURE(dtype);
    const auto got = kdloss_test::glore_relation_on_gpu(dtype, in.s, in.t, ps, pt, in.aw, in.ab, c.b, c.cs, c.ct, c.ms,
                                                        c.mt, c.h, c.w);
    const double t = dtype == 1 ? 1e-9 : 3e-3;
    double scale = 0;
    for (double v : expect) scale = std::max(scale, std::fabs(v));
    check_close(got, expect, t, t * scale, "value, grad_student, adapter and unit gradients");
    CHECK(kdloss_test::glore_relation_on_gpu(dtype, in.s, in.t, ps, pt, in.aw, in.ab, c.b, c.cs, c.ct, c.ms, c.mt, c.h,
                                             c.w) == got);
  }
#else
  MESSAGE("built without CUDA tests: the GPU agreement of glore_relation_loss is not run");
#endif
}

TEST_CASE("glore_relation_loss: parity with a PyTorch re-implementation of the DRKD code's L_PR (bench/glore_relation_torch_reference.py)") {
  // Produced by `python3 bench/glore_relation_torch_reference.py --emit-cpp` (float64, torch CPU, autograd): the
  // value and the weighted sums of every gradient on the fixed case below.
#include "losses/drkd/glore_relation_torch_values.inc"
  const Case c{kTorchB, kTorchC, kTorchC, kTorchMs, kTorchMt, kTorchH, kTorchW};
  const auto ramp = [](std::int64_t n, double a, double b) {
    std::vector<double> v(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) v[i] = std::sin(a * static_cast<double>(i) + b);
    return v;
  };
  const auto unit = [&](std::int64_t m, double off) {
    const std::int64_t C = c.cs, s = 2 * m;
    Params p;
    p.state_w = ramp(s * C, 0.5, 0.2 + off);
    p.state_b = ramp(s, 0.9, 0.3 + off);
    p.proj_w = ramp(m * C, 0.7, 0.4 + off);
    p.proj_b = ramp(m, 1.1, 0.5 + off);
    p.conv1_w = ramp(m * m, 1.3, 0.6 + off);
    p.conv1_b = ramp(m, 1.7, 0.7 + off);
    p.conv2_w = ramp(s * s, 0.3, 0.8 + off);
    p.extend_w = ramp(C * s, 0.23, 0.9 + off);
    p.bn_w = ramp(C, 0.61, 1.0 + off);
    p.bn_b = ramp(C, 0.83, 1.1 + off);
    return p;
  };
  Inputs in;
  in.s = ramp(c.b * c.cs * c.n(), 0.37, 0.1);
  in.t = ramp(c.b * c.ct * c.n(), 0.29, 0.6);
  in.aw = ramp(c.ct * c.cs, 0.41, 0.15);
  in.ab = ramp(c.ct, 0.57, 0.25);
  in.ps = unit(c.ms, 0.0);
  in.pt = unit(c.mt, 0.5);
  const Run r = run_loss<double>(c, in);
  const auto weighted = [](const std::vector<double>& v) {
    double acc = 0;
    for (std::size_t i = 0; i < v.size(); ++i) acc += v[i] * std::cos(0.01 * static_cast<double>(i));
    return acc;
  };
  std::vector<double> got{r.value, weighted(r.gs), weighted(r.aw), weighted(r.ab)};
  for (const auto& g : r.ps) got.push_back(weighted(g));
  for (const auto& g : r.pt) got.push_back(weighted(g));
  const std::vector<double> want(std::begin(kTorchSums), std::end(kTorchSums));
  check_close(got, want, 1e-9, 1e-12, "torch (value, grad_student, adapter, 10 + 10 unit gradients)");
}
