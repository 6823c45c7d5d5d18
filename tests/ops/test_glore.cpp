// ops::glore (the DRKD code's GloRe unit): composed double reference, central differences for x and all
// ten parameters, reserve against recomputation, GradAccumulate, layouts, degenerate inputs, bad input,
// NaN propagation, thread-count determinism, PyTorch parity (bench/glore_torch_reference.py), GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "kdloss/ops/glore.hpp"
#include "ops/glore_gpu.hpp"
#include "reference/ops/glore.hpp"
#include "support/test_support.hpp"

#include "support/threads.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;
using Ref = kdloss_ref::ops::Glore;

namespace {

struct Shape {
  std::int64_t b, c, m, h, w;
  std::vector<int> order{0, 1, 2, 3};  // memory order of x / out / grad_out / grad_x
  std::int64_t pad = 0;
  std::int64_t n() const { return h * w; }
  Ref ref(double eps = 1e-4) const { return {b, c, m, n(), eps}; }
  Dims dims() const { return Dims{b, c, h, w}; }
};

/// Inputs of one case: x, the parameters and grad_out (row-major NCHW doubles); rm / rv: the blocker's
/// running statistics, empty in training mode (evaluation mode when set).
struct Inputs {
  std::vector<double> x, g;
  Ref::Params p;
  std::vector<double> rm{}, rv{};
  bool eval() const { return !rm.empty(); }
};
Inputs make_inputs(const Shape& s, std::uint32_t seed) {
  const std::int64_t m = s.m, s2 = 2 * s.m, C = s.c;
  const auto r = [&](std::int64_t n, double scale) {
    auto v = random_vector<double>(static_cast<std::size_t>(n), seed++);
    for (auto& x : v) x *= scale;
    return v;
  };
  Inputs in;
  in.x = r(s.b * C * s.n(), 1.0);
  in.g = r(s.b * C * s.n(), 1.0);
  in.p.state_w = r(s2 * C, 0.5);
  in.p.state_b = r(s2, 0.3);
  in.p.proj_w = r(m * C, 0.5);
  in.p.proj_b = r(m, 0.3);
  in.p.conv1_w = r(m * m, 0.5);
  in.p.conv1_b = r(m, 0.3);
  in.p.conv2_w = r(s2 * s2, 0.5);
  in.p.extend_w = r(C * s2, 0.5);
  in.p.bn_w = r(C, 1.0);
  for (auto& v : in.p.bn_w) v += 1.5;
  in.p.bn_b = r(C, 0.3);
  return in;
}
/// make_inputs with running statistics: evaluation mode (running_var in [0.5, 1.5]).
Inputs make_eval_inputs(const Shape& s, std::uint32_t seed) {
  Inputs in = make_inputs(s, seed);
  in.rm = random_vector<double>(static_cast<std::size_t>(s.c), seed + 50);
  in.rv = random_vector<double>(static_cast<std::size_t>(s.c), seed + 51);
  for (auto& v : in.rv) v = 1.0 + 0.5 * v;
  return in;
}

std::vector<std::vector<double>*> params_of(Ref::Params& p) {
  return {&p.state_w, &p.state_b, &p.proj_w, &p.proj_b, &p.conv1_w, &p.conv1_b, &p.conv2_w, &p.extend_w, &p.bn_w, &p.bn_b};
}
const char* const kParamNames[] = {"state_weight",     "state_bias",    "proj_weight", "proj_bias",
                                   "gcn_conv1_weight", "gcn_conv1_bias", "gcn_conv2_weight", "extend_weight",
                                   "bn_weight",        "bn_bias"};

/// Everything a call writes, as row-major NCHW doubles.
struct Run {
  std::vector<double> out, mean, var, gx;
  std::vector<std::vector<double>> gp;  // the ten parameter gradients
};

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

/// The ten parameters' shapes, in GloreArgs order.
std::vector<Dims> param_shapes(const Shape& s) {
  const std::int64_t C = s.c, m = s.m, s2 = 2 * m;
  return {Dims{s2, C}, Dims{s2}, Dims{m, C}, Dims{m}, Dims{m, m}, Dims{m}, Dims{s2, s2}, Dims{C, s2}, Dims{C}, Dims{C}};
}

template <class T>
std::vector<double> cast_back(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

/// One call (or forward then backward through a reserve when `split`), over x in `s`'s layout.
/// old: parameter gradients' previous contents with beta (empty: beta 0, NaN garbage before).
template <class T>
Run run_glore(const Shape& s, const Inputs& in, bool split, bool use_reserve = true, double beta = 0.0,
              const std::vector<std::vector<double>>& old = {}) {
  const Dims d = s.dims();
  auto x = kdloss_test::relayout(cast<T>(in.x), d, s.order, s.pad);
  auto g = kdloss_test::relayout(cast<T>(in.g), d, s.order, s.pad);
  auto out = kdloss_test::relayout(std::vector<T>(in.x.size(), T(-5)), d, s.order, s.pad);
  auto gx = kdloss_test::relayout(std::vector<T>(in.x.size(), std::numeric_limits<T>::quiet_NaN()), d, s.order, s.pad);
  Inputs copy = in;
  const auto ps = params_of(copy.p);
  std::vector<std::vector<T>> pv, gpv;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    pv.push_back(cast<T>(*ps[i]));
    gpv.push_back(old.empty() ? std::vector<T>(ps[i]->size(), std::numeric_limits<T>::quiet_NaN()) : cast<T>(old[i]));
  }
  std::vector<T> mean(s.c, T(-7)), var(s.c, T(-7));
  const std::vector<T> rm = cast<T>(in.rm), rv = cast<T>(in.rv);
  const std::int64_t C = s.c;
  const auto pshape = param_shapes(s);
  ops::GloreArgs<T> a;
  a.x = x.view;
  const View<const T>* pin[] = {&a.state_weight, &a.state_bias, &a.proj_weight, &a.proj_bias, &a.gcn_conv1_weight,
                                &a.gcn_conv1_bias, &a.gcn_conv2_weight, &a.extend_weight, &a.bn_weight, &a.bn_bias};
  View<T>* pgr[] = {&a.grad_state_weight, &a.grad_state_bias, &a.grad_proj_weight, &a.grad_proj_bias,
                    &a.grad_gcn_conv1_weight, &a.grad_gcn_conv1_bias, &a.grad_gcn_conv2_weight,
                    &a.grad_extend_weight, &a.grad_bn_weight, &a.grad_bn_bias};
  for (int i = 0; i < 10; ++i) {
    *const_cast<View<const T>*>(pin[i]) = host_view<const T>(pv[i].data(), pshape[i]);
    *pgr[i] = host_view(gpv[i].data(), pshape[i]);
  }
  a.out = out.view;
  if (in.eval()) {  // evaluation mode: running statistics in, no batch statistics out
    a.options.training = false;
    a.bn_running_mean = host_view<const T>(rm.data(), {C});
    a.bn_running_var = host_view<const T>(rv.data(), {C});
  } else {
    a.bn_batch_mean = host_view(mean.data(), {C});
    a.bn_batch_var = host_view(var.data(), {C});
  }
  a.grad_out = g.view;
  a.grad_x = gx.view;
  a.options.param_grads.beta = beta;
  const std::size_t rb = ops::glore_reserve_bytes(a);
  void* keep = use_reserve ? std::aligned_alloc(256, (rb + 255) / 256 * 256) : nullptr;
  if (use_reserve) a.reserve = {keep, rb};
  if (split) {
    ops::glore(a, Mode::forward);
    ops::glore(a, Mode::backward);
  } else {
    ops::glore(a, Mode::forward_backward);
  }
  std::free(keep);
  Run r;
  r.out = cast_back(kdloss_test::to_vector(View<const T>(out.view)));
  r.gx = cast_back(kdloss_test::to_vector(View<const T>(gx.view)));
  r.mean = cast_back(mean);
  r.var = cast_back(var);
  for (auto& v : gpv) r.gp.push_back(std::vector<double>(v.begin(), v.end()));
  return r;
}

/// Reference forward and gradients of the case.
struct Want {
  Ref::State st;
  Ref::Grads gr;
  std::vector<double> mean, var;
};
/// The case's reference unit (evaluation mode when the inputs carry running statistics).
Ref ref_of(const Shape& s, const Inputs& in) {
  Ref R = s.ref();
  R.training = !in.eval();
  R.running_mean = in.rm;
  R.running_var = in.rv;
  return R;
}
/// Evaluation mode writes no batch statistics: want.mean / want.var hold the sentinel run_glore set.
Want reference(const Shape& s, const Inputs& in) {
  const Ref R = ref_of(s, in);
  Want w;
  w.st = R.forward(in.x, in.p);
  w.gr = R.backward(in.x, in.p, in.g);
  if (in.eval()) {
    w.mean = w.var = std::vector<double>(static_cast<std::size_t>(s.c), -7.0);
    return w;
  }
  const auto stats = R.blocker().stats(w.st.e, {}, {});
  w.mean = stats.mean;
  w.var = stats.var_unbiased;
  return w;
}

void check_against(const Run& got, const Want& want, double rel, double abs_tol) {
  check_close(got.out, want.st.out, rel, abs_tol, "out");
  check_close(got.mean, want.mean, rel, abs_tol, "bn_batch_mean");
  check_close(got.var, want.var, rel, abs_tol, "bn_batch_var");
  check_close(got.gx, want.gr.x, rel, abs_tol, "grad_x");
  Ref::Grads gr = want.gr;
  const auto ps = params_of(gr.p);
  for (int i = 0; i < 10; ++i) {
    CAPTURE(kParamNames[i]);
    // gradients judged against the size of the layer's largest one (BN cancels some to ~0)
    double scale = 0;
    for (double v : *ps[i]) scale = std::max(scale, std::fabs(v));
    check_close(got.gp[i], *ps[i], rel, abs_tol * std::max(1.0, scale), kParamNames[i]);
  }
}

const Shape kSmall{2, 6, 2, 3, 4};

/// GloreArgs over contiguous x and the ten parameters (GloreArgs order), nothing else set.
ops::GloreArgs<double> bind_args(const Shape& s, const std::vector<double>& x, const std::vector<std::vector<double>>& pv) {
  const auto pshape = param_shapes(s);
  ops::GloreArgs<double> a;
  a.x = host_view<const double>(x.data(), s.dims());
  View<const double>* pin[] = {&a.state_weight, &a.state_bias, &a.proj_weight, &a.proj_bias, &a.gcn_conv1_weight,
                               &a.gcn_conv1_bias, &a.gcn_conv2_weight, &a.extend_weight, &a.bn_weight, &a.bn_bias};
  for (int i = 0; i < 10; ++i) *pin[i] = host_view<const double>(pv[i].data(), pshape[i]);
  return a;
}

}  // namespace

TEST_CASE("glore: the composed reference matches central differences for x and all ten parameters (training and evaluation BN)") {
  const Shape s = kSmall;
  for (const Inputs& in : {make_inputs(s, 100), make_eval_inputs(s, 100)}) {
    CAPTURE(in.eval());
    const Ref R = ref_of(s, in);
    const auto loss = [&](const std::vector<double>& x, const Ref::Params& p) {
      const auto out = R.forward(x, p).out;
      double l = 0;
      for (std::size_t i = 0; i < out.size(); ++i) l += in.g[i] * out[i];
      return l;
    };
    Ref::Grads gr = R.backward(in.x, in.p, in.g);
    check_close(gr.x, kdloss_test::numeric_gradient(in.x, [&](const std::vector<double>& x) { return loss(x, in.p); }),
                1e-6, 1e-7, "grad_x");
    Inputs work = in;
    const auto ps = params_of(work.p);
    const auto gs = params_of(gr.p);
    for (int i = 0; i < 10; ++i) {
      CAPTURE(kParamNames[i]);
      const auto num = kdloss_test::numeric_gradient(*ps[i], [&](const std::vector<double>& v) {
        Ref::Params p = work.p;
        *params_of(p)[i] = v;
        return loss(in.x, p);
      });
      check_close(*gs[i], num, 1e-6, 1e-7, kParamNames[i]);
    }
  }
}

TEST_CASE("glore: double forward and every gradient match the reference (forward_backward, and forward + backward through the reserve or recomputation)") {
  for (const Shape& s : {kSmall, Shape{3, 5, 3, 4, 2}, Shape{2, 4, 1, 1, 1}}) {
    CAPTURE(s.c);
    CAPTURE(s.m);
    const Inputs in = make_inputs(s, 200);
    const Want want = reference(s, in);
    check_against(run_glore<double>(s, in, false), want, 1e-10, 1e-11);
    check_against(run_glore<double>(s, in, false, false), want, 1e-10, 1e-11);
    check_against(run_glore<double>(s, in, true), want, 1e-10, 1e-11);
    check_against(run_glore<double>(s, in, true, false), want, 1e-10, 1e-11);
  }
}

TEST_CASE("glore: evaluation-mode BN (running statistics) matches the reference: value and every gradient, all modes, layouts, float") {
  Shape nhwc = kSmall;
  nhwc.order = {0, 2, 3, 1};
  for (const Shape& s : {kSmall, Shape{3, 5, 3, 4, 2}, nhwc, Shape{1, 4, 2, 1, 1}}) {
    CAPTURE(s.b * s.h * s.w);  // 1: legal in evaluation mode (no batch statistics)
    const Inputs in = make_eval_inputs(s, 250);
    const Want want = reference(s, in);
    check_against(run_glore<double>(s, in, false), want, 1e-10, 1e-11);
    check_against(run_glore<double>(s, in, true), want, 1e-10, 1e-11);         // through the reserve
    check_against(run_glore<double>(s, in, true, false), want, 1e-10, 1e-11);  // recomputing the state
    check_against(run_glore<float>(s, in, true), want, 2e-4, 2e-5);
  }
  // the blocker is an affine map with the running statistics: out differs from training mode's
  const Inputs ev = make_eval_inputs(kSmall, 260);
  Inputs tr = ev;
  tr.rm.clear();
  tr.rv.clear();
  const Run a = run_glore<double>(kSmall, ev, false), b = run_glore<double>(kSmall, tr, false);
  CHECK(a.out != b.out);
  CHECK(a.gx != b.gx);
}

TEST_CASE("glore: float, channels-last and padded strided x agree with the reference") {
  Shape nhwc = kSmall;
  nhwc.order = {0, 2, 3, 1};
  Shape padded = Shape{2, 5, 2, 4, 3, {0, 2, 3, 1}, 3};
  for (const Shape& s : {kSmall, nhwc, padded}) {
    const Inputs in = make_inputs(s, 300);
    const Want want = reference(s, in);
    check_against(run_glore<double>(s, in, true), want, 1e-10, 1e-11);
    check_against(run_glore<float>(s, in, true), want, 2e-4, 2e-5);
  }
}

TEST_CASE("glore: GradAccumulate beta = 1 adds onto the old parameter gradients") {
  const Shape s = kSmall;
  const Inputs in = make_inputs(s, 400);
  Want want = reference(s, in);
  std::vector<std::vector<double>> old;
  const auto ps = params_of(want.gr.p);
  for (int i = 0; i < 10; ++i) {
    old.push_back(random_vector<double>(ps[i]->size(), 410 + i));
    for (std::size_t k = 0; k < old.back().size(); ++k) (*ps[i])[k] += old.back()[k];
  }
  check_against(run_glore<double>(s, in, false, true, 1.0, old), want, 1e-10, 1e-11);
}

TEST_CASE("glore: H*W = 1 with B = 2, and a constant input (blocker variance 0)") {
  const Shape one{2, 4, 2, 1, 1};
  const Inputs in = make_inputs(one, 500);
  check_against(run_glore<double>(one, in, true), reference(one, in), 1e-10, 1e-11);
  Inputs flat = make_inputs(kSmall, 510);
  for (auto& v : flat.x) v = 0.25;
  const Want want = reference(kSmall, flat);
  const Run got = run_glore<double>(kSmall, flat, false);
  CHECK(kdloss_test::all_finite(got.out));
  CHECK(kdloss_test::all_finite(got.gx));
  // E is constant per channel: BN(E) = beta exactly, so out = x + beta and the variance is 0
  for (std::int64_t c = 0; c < kSmall.c; ++c) CHECK(std::fabs(got.var[c]) < 1e-12);
  check_against(got, want, 1e-9, 1e-9);
}

TEST_CASE("glore: results are bitwise the same with 1 and 2 threads") {
#if KDLOSS_OPENMP
  const Shape s{2, 32, 16, 32, 40};
  const Inputs in = make_inputs(s, 600);
  kdloss_test::ThreadScope scope(1);
  const Run r1 = run_glore<float>(s, in, false);
  scope.set(2);
  const Run r2 = run_glore<float>(s, in, false);
  CHECK(r1.out == r2.out);
  CHECK(r1.gx == r2.gx);
  for (int i = 0; i < 10; ++i) CHECK(r1.gp[i] == r2.gp[i]);
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}

TEST_CASE("glore: a NaN in x propagates as in the reference (torch's relu and threshold_backward rules)") {
  const Shape s = kSmall;
  Inputs in = make_inputs(s, 700);
  in.x[5] = std::numeric_limits<double>::quiet_NaN();
  const Want want = reference(s, in);
  const Run got = run_glore<double>(s, in, false);
  kdloss_test::check_same_nonfinite(got.out, want.st.out, 1e-10, 1e-11, "out");
  kdloss_test::check_same_nonfinite(got.gx, want.gr.x, 1e-10, 1e-11, "grad_x");
  Ref::Grads gr = want.gr;
  const auto ps = params_of(gr.p);
  for (int i = 0; i < 10; ++i) kdloss_test::check_same_nonfinite(got.gp[i], *ps[i], 1e-10, 1e-11, kParamNames[i]);
  CHECK(std::isnan(got.out[0]));  // the blocker's statistics spread the NaN over its image's channels
}

TEST_CASE("glore: a subset of the gradients (backward recomputing the state) writes only those, with the reference values") {
  const Shape s = kSmall;
  const std::int64_t C = s.c, m = s.m;
  const Inputs in = make_inputs(s, 850);
  const Want want = reference(s, in);
  Inputs copy = in;
  const auto ps = params_of(copy.p);
  std::vector<std::vector<double>> pv;
  for (auto* p : ps) pv.push_back(*p);
  std::vector<double> x = in.x, g = in.g, gb(C, -9.0), gc1(m, -9.0), gx(in.x.size(), -9.0);
  ops::GloreArgs<double> a = bind_args(s, x, pv);
  a.grad_out = host_view<const double>(g.data(), {2, C, 3, 4});
  a.grad_bn_bias = host_view(gb.data(), {C});  // the blocker alone
  ops::glore(a, Mode::backward);
  check_close(gb, want.gr.p.bn_b, 1e-10, 1e-11, "grad_bn_bias");
  a.grad_bn_bias = View<double>{};
  a.grad_gcn_conv1_bias = host_view(gc1.data(), {m});  // deep in the chain, grad_x absent
  ops::glore(a, Mode::backward);
  check_close(gc1, want.gr.p.conv1_b, 1e-10, 1e-11, "grad_gcn_conv1_bias");
  a.grad_gcn_conv1_bias = View<double>{};
  a.grad_x = host_view(gx.data(), {2, C, 3, 4});  // grad_x alone
  ops::glore(a, Mode::backward);
  check_close(gx, want.gr.x, 1e-10, 1e-11, "grad_x");
}

TEST_CASE("glore: bad input throws a clear error and writes nothing") {
  const Shape s = kSmall;
  const std::int64_t C = s.c, m = s.m, s2 = 2 * m;
  const Inputs in = make_inputs(s, 800);
  Inputs copy = in;
  const auto ps = params_of(copy.p);
  std::vector<std::vector<double>> pv;
  for (auto* p : ps) pv.push_back(*p);
  std::vector<double> x = in.x, g = in.g, out(in.x.size(), -3.0), gx(in.x.size(), -3.0), gw(s2 * C, -3.0);
  std::vector<double> x1(2 * C * 1 * 1, 1.0), out1(x1.size(), -3.0);
  const auto base = [&] {
    ops::GloreArgs<double> a = bind_args(s, x, pv);
    a.out = host_view(out.data(), {2, C, 3, 4});
    a.grad_out = host_view<const double>(g.data(), {2, C, 3, 4});
    a.grad_x = host_view(gx.data(), {2, C, 3, 4});
    a.grad_state_weight = host_view(gw.data(), {s2, C});
    return a;
  };
  const auto untouched = [&] {
    for (double v : out) REQUIRE(v == -3.0);
    for (double v : gx) REQUIRE(v == -3.0);
    for (double v : gw) REQUIRE(v == -3.0);
    for (double v : out1) REQUIRE(v == -3.0);
  };
  auto a = base();
  a.gcn_conv2_weight = host_view<const double>(pv[6].data(), {s2, m});
  kdloss_test::expect_error([&] { ops::glore(a, Mode::forward_backward); },
                            "argument 'gcn_conv2_weight' has shape [4, 2] but x [2, 6, 3, 4] and proj_weight [2, 6] "
                            "(num_mid = 2) need [4, 4]",
                            untouched);
  a = base();
  a.extend_weight = View<const double>{};
  kdloss_test::expect_error([&] { ops::glore(a, Mode::forward); }, "argument 'extend_weight' is absent", untouched);
  a = base();
  a.x = host_view<const double>(x1.data(), {1, C, 1, 1});
  a.out = host_view(out1.data(), {1, C, 1, 1});
  a.grad_out = View<const double>{};
  a.grad_x = View<double>{};
  a.grad_state_weight = View<double>{};
  kdloss_test::expect_error([&] { ops::glore(a, Mode::forward); }, "needs more than 1 value per channel", untouched);
  a = base();
  a.grad_out = View<const double>{};
  kdloss_test::expect_error([&] { ops::glore(a, Mode::backward); }, "reads 'grad_out' but it is absent", untouched);
  a = base();
  a.grad_x = host_view(out.data(), {2, C, 3, 4});
  kdloss_test::expect_error([&] { ops::glore(a, Mode::forward_backward); }, "grad_x", untouched);
  a = base();
  a.out = host_view(out.data(), {2, C, 4, 3});
  kdloss_test::expect_error([&] { ops::glore(a, Mode::forward); }, "'out'", untouched);
  std::vector<double> rm(C, 0.1), rv(C, 1.2), mean(C, -3.0);
  a = base();  // evaluation mode without running statistics
  a.options.training = false;
  a.bn_running_mean = host_view<const double>(rm.data(), {C});
  kdloss_test::expect_error([&] { ops::glore(a, Mode::forward_backward); },
                            "evaluation mode (options.training = false) reads 'bn_running_mean' and 'bn_running_var' "
                            "but 'bn_running_var' is absent",
                            untouched);
  a.bn_running_mean = View<const double>{};
  kdloss_test::expect_error([&] { ops::glore(a, Mode::backward); }, "but 'bn_running_mean' is absent", untouched);
  a = base();
  a.options.training = false;
  a.bn_running_mean = host_view<const double>(rm.data(), {C});
  a.bn_running_var = host_view<const double>(rv.data(), {C - 1});
  kdloss_test::expect_error([&] { ops::glore(a, Mode::forward); },
                            "argument 'bn_running_var' has shape [5] but x [2, 6, 3, 4] needs [6]", untouched);
  a.bn_running_var = host_view<const double>(rv.data(), {C});
  a.bn_batch_mean = host_view(mean.data(), {C});
  kdloss_test::expect_error([&] { ops::glore(a, Mode::forward); }, "written in training mode only",
                            [&] {
                              untouched();
                              for (double v : mean) REQUIRE(v == -3.0);
                            });
  a = base();
  alignas(256) static unsigned char small[256];
  a.reserve = {small, 256};
  kdloss_test::expect_error([&] { ops::glore(a, Mode::forward); }, "argument 'reserve' has 256 bytes", untouched);
  a = base();
  a.x = host_view<const double>(x.data(), {2, C, 3, 4}, {C * 12, 12, 1, 4});  // H and W transposed: no merge
  kdloss_test::expect_error([&] { ops::glore(a, Mode::forward); }, "cannot merge H and W", untouched);
}

TEST_CASE("glore: queries (reserve holds the state; without a reserve the workspace holds it too)") {
  const Shape s = kSmall;
  const Inputs in = make_inputs(s, 900);
  std::vector<double> x = in.x;
  Inputs copy = in;
  std::vector<std::vector<double>> pv;
  for (auto* p : params_of(copy.p)) pv.push_back(*p);
  ops::GloreArgs<double> a = bind_args(s, x, pv);
  const std::size_t reserve = ops::glore_reserve_bytes(a), without = ops::glore_workspace_bytes(a);
  CHECK(reserve >= (2 * (2 * 12 * 4 + 2 * 12 * 2 + 3 * 4 * 2) * 8));  // S, P, Y, V, R, Z
  alignas(256) static unsigned char keep[1 << 14];
  REQUIRE(reserve <= sizeof(keep));
  a.reserve = {keep, reserve};
  const std::size_t with = ops::glore_workspace_bytes(a);
  CHECK(without >= with + reserve - 256 * 8);
  CHECK(with < without);
}

KDLOSS_GPU_TEST("glore: GPU agrees with the CPU reference (float, double) and is deterministic") {
#if KDLOSS_TEST_CUDA
  const Shape s{2, 8, 4, 5, 6};
  const Inputs in = make_inputs(s, 1000);
  const Want want = reference(s, in);
  for (int dtype : {1, 0}) {
    std::vector<std::vector<double>> params;
    Inputs copy = in;
    for (auto* p : params_of(copy.p)) params.push_back(*p);
    const auto got = kdloss_test::glore_on_gpu(dtype, in.x, params, in.g, s.b, s.c, s.m, s.h, s.w);
    std::vector<double> expect = want.st.out;
    expect.insert(expect.end(), want.gr.x.begin(), want.gr.x.end());
    Ref::Grads gr = want.gr;
    for (auto* p : params_of(gr.p)) expect.insert(expect.end(), p->begin(), p->end());
    const double t = dtype == 1 ? 1e-9 : 2e-3;
    check_close(got, expect, t, t);
    CHECK(kdloss_test::glore_on_gpu(dtype, in.x, params, in.g, s.b, s.c, s.m, s.h, s.w) == got);
  }
#endif
}

TEST_CASE("glore: parity with a PyTorch re-implementation of the DRKD GloRe_Unit (bench/glore_torch_reference.py)") {
  // Produced by `python3 bench/glore_torch_reference.py --emit-cpp` (float64, torch CPU): the sums of the
  // output and of every gradient on the fixed case below, with a grad_out of ones scaled by position.
#include "ops/glore_torch_values.inc"
  const Shape s{kTorchB, kTorchC, kTorchM, kTorchH, kTorchW};
  Inputs in;
  const auto ramp = [](std::int64_t n, double a, double b) {
    std::vector<double> v(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) v[i] = std::sin(a * static_cast<double>(i) + b);
    return v;
  };
  const std::int64_t C = s.c, m = s.m, s2 = 2 * m, n = s.b * C * s.n();
  in.x = ramp(n, 0.37, 0.1);
  in.g = ramp(n, 0.11, 0.7);
  in.p.state_w = ramp(s2 * C, 0.5, 0.2);
  in.p.state_b = ramp(s2, 0.9, 0.3);
  in.p.proj_w = ramp(m * C, 0.7, 0.4);
  in.p.proj_b = ramp(m, 1.1, 0.5);
  in.p.conv1_w = ramp(m * m, 1.3, 0.6);
  in.p.conv1_b = ramp(m, 1.7, 0.7);
  in.p.conv2_w = ramp(s2 * s2, 0.3, 0.8);
  in.p.extend_w = ramp(C * s2, 0.23, 0.9);
  in.p.bn_w = ramp(C, 0.61, 1.0);
  in.p.bn_b = ramp(C, 0.83, 1.1);
  const Run got = run_glore<double>(s, in, true);
  const auto weighted = [](const std::vector<double>& v) {
    double acc = 0;
    for (std::size_t i = 0; i < v.size(); ++i) acc += v[i] * std::cos(0.01 * static_cast<double>(i));
    return acc;
  };
  std::vector<double> got_sums{weighted(got.out), weighted(got.gx)};
  for (const auto& gp : got.gp) got_sums.push_back(weighted(gp));
  const std::vector<double> want(std::begin(kTorchSums), std::end(kTorchSums));
  check_close(got_sums, want, 1e-9, 1e-9, "torch weighted sums (out, grad_x, ten parameter gradients)");
}
