// fbkd::non_local_loss (L_NLD of one level) against the double reference composed from the ops'
// references (tests/reference/losses/fbkd_non_local.hpp), central differences of that reference for the
// student, both blocks' parameters and the adaptation conv, T untouched and gradient-free, channels-last
// inputs, split forward/backward with an upstream, accumulation, bad inputs, NaN, the zero-norm rule,
// thread-count determinism.
#include <doctest/doctest.h>

#include <cmath>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "kdloss/losses/fbkd/fbkd.hpp"
#include "reference/losses/fbkd_non_local.hpp"
#include "support/test_support.hpp"

#include "support/threads.hpp"

using namespace kdloss;
using kdloss_ref::ops::NonLocal;
using kdloss_ref::ops::NonLocalParams;
using kdloss_test::check_close;

namespace {

using Vec = std::vector<double>;

struct Case {
  kdloss_ref::fbkd::NonLocalLoss ref;
  Vec s, t, aw, ab;
  NonLocalParams ps, pt;
  Case(std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W, std::int64_t m, NonLocal::Mode mode,
       std::int64_t pool, double weight, std::uint32_t seed = 3) {
    ref.block = NonLocal{B, C, H, W, m, mode, true, pool, pool, true};
    ref.weight = weight;
    const auto rnd = [&](std::size_t n, double lo = -1.0, double hi = 1.0) {
      return kdloss_test::random_vector<double>(n, seed++, lo, hi);
    };
    const auto n = static_cast<std::size_t>(B * C * H * W), mc = static_cast<std::size_t>(m * C);
    s = rnd(n);
    t = rnd(n);
    aw = rnd(static_cast<std::size_t>(C * C));
    ab = rnd(static_cast<std::size_t>(C));
    for (NonLocalParams* p : {&ps, &pt}) {
      p->g_w = rnd(mc);
      p->g_b = rnd(static_cast<std::size_t>(m));
      if (mode != NonLocal::gaussian) {
        p->theta_w = rnd(mc);
        p->theta_b = rnd(static_cast<std::size_t>(m));
        p->phi_w = rnd(mc);
        p->phi_b = rnd(static_cast<std::size_t>(m));
      }
      p->out_w = rnd(mc);
      p->out_b = rnd(static_cast<std::size_t>(C));
      p->bn_w = rnd(static_cast<std::size_t>(C), 0.5, 1.5);
      p->bn_b = rnd(static_cast<std::size_t>(C));
    }
  }
};

ops::NonLocalMode to_mode(NonLocal::Mode m) {
  return m == NonLocal::embedded_gaussian ? ops::NonLocalMode::embedded_gaussian
         : m == NonLocal::gaussian        ? ops::NonLocalMode::gaussian
         : m == NonLocal::dot_product     ? ops::NonLocalMode::dot_product
                                          : ops::NonLocalMode::concatenation;
}

/// One block's parameters and gradient outputs (gradients start at 0.5 so that beta = 1 shows).
template <class T>
struct BlockBuffers {
  std::vector<T> gw, gb, tw, tb, pw, pb, ow, ob, bw, bb;
  std::vector<T> d_gw, d_gb, d_tw, d_tb, d_pw, d_pb, d_ow, d_ob, d_bw, d_bb, mean, var;
  BlockBuffers(const NonLocalParams& p, std::int64_t C) {
    const auto cast = [](const Vec& v) { return std::vector<T>(v.begin(), v.end()); };
    const auto like = [](const std::vector<T>& v) { return std::vector<T>(v.size(), T(0.5)); };
    gw = cast(p.g_w), gb = cast(p.g_b), tw = cast(p.theta_w), tb = cast(p.theta_b), pw = cast(p.phi_w);
    pb = cast(p.phi_b), ow = cast(p.out_w), ob = cast(p.out_b), bw = cast(p.bn_w), bb = cast(p.bn_b);
    d_gw = like(gw), d_gb = like(gb), d_tw = like(tw), d_tb = like(tb), d_pw = like(pw), d_pb = like(pb);
    d_ow = like(ow), d_ob = like(ob), d_bw = like(bw), d_bb = like(bb);
    mean.assign(static_cast<std::size_t>(C), T(-9));
    var.assign(static_cast<std::size_t>(C), T(-9));
  }
  void bind(ops::NonLocalArgs<T>& a, std::int64_t C, std::int64_t m, bool grads, bool stats) {
    a.g_weight = host_view<const T>(gw.data(), {m, C, 1, 1});
    a.g_bias = host_view<const T>(gb.data(), {m});
    if (!tw.empty()) {
      a.theta_weight = host_view<const T>(tw.data(), {m, C});
      a.theta_bias = host_view<const T>(tb.data(), {m});
      a.phi_weight = host_view<const T>(pw.data(), {m, C});
      a.phi_bias = host_view<const T>(pb.data(), {m});
    }
    a.conv_out_weight = host_view<const T>(ow.data(), {C, m});
    a.conv_out_bias = host_view<const T>(ob.data(), {C});
    a.bn_weight = host_view<const T>(bw.data(), {C});
    a.bn_bias = host_view<const T>(bb.data(), {C});
    if (stats) {
      a.bn_batch_mean = host_view(mean.data(), {C});
      a.bn_batch_var = host_view(var.data(), {C});
    }
    if (!grads) return;
    a.grad_g_weight = host_view(d_gw.data(), {m, C});
    a.grad_g_bias = host_view(d_gb.data(), {m});
    if (!tw.empty()) {
      a.grad_theta_weight = host_view(d_tw.data(), {m, C, 1, 1});
      a.grad_theta_bias = host_view(d_tb.data(), {m});
      a.grad_phi_weight = host_view(d_pw.data(), {m, C});
      a.grad_phi_bias = host_view(d_pb.data(), {m});
    }
    a.grad_conv_out_weight = host_view(d_ow.data(), {C, m});
    a.grad_conv_out_bias = host_view(d_ob.data(), {C});
    a.grad_bn_weight = host_view(d_bw.data(), {C});
    a.grad_bn_bias = host_view(d_bb.data(), {C});
  }
  NonLocalParams grads() const {
    const auto back = [](const std::vector<T>& v) { return Vec(v.begin(), v.end()); };
    NonLocalParams p;
    p.g_w = back(d_gw), p.g_b = back(d_gb), p.theta_w = back(d_tw), p.theta_b = back(d_tb), p.phi_w = back(d_pw);
    p.phi_b = back(d_pb), p.out_w = back(d_ow), p.out_b = back(d_ob), p.bn_w = back(d_bw), p.bn_b = back(d_bb);
    return p;
  }
};

struct Result {
  double value = 0;
  Vec s, aw, ab, t_before, t_after;
  NonLocalParams ps, pt;
  Vec mean_s, var_s;
};

enum class Run { fused, split };

/// The library on host buffers: fused (forward_backward) or forward then backward with upstream `up`;
/// channels-last S, T and grad_student when `cl`; gradients accumulate with `beta`.
template <class T>
Result run(const Case& c, Run how, double up = 1.0, bool cl = false, double beta = 0.0, bool teacher_grads = true,
           Exec exec = {}) {
  const NonLocal& r = c.ref.block;
  const std::int64_t B = r.B, C = r.C, H = r.H, W = r.W, m = r.m;
  const Dims shape{B, C, H, W};
  const Dims strides = cl ? Dims{C * H * W, 1, W * C, C} : contiguous_strides(shape);
  const auto at = [&](std::int64_t i) {
    const std::int64_t w = i % W, h = i / W % H, ch = i / (H * W) % C, b = i / (C * H * W);
    return b * strides[0] + ch * strides[1] + h * strides[2] + w * strides[3];
  };
  const auto store = [&](const Vec& v) {
    std::vector<T> o(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) o[static_cast<std::size_t>(at(std::int64_t(i)))] = static_cast<T>(v[i]);
    return o;
  };
  const auto load = [&](const std::vector<T>& o) {
    Vec v(o.size());
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(o[static_cast<std::size_t>(at(std::int64_t(i)))]);
    return v;
  };
  std::vector<T> s = store(c.s), t = store(c.t), gs(s.size(), T(0.5)), aw(c.aw.begin(), c.aw.end()),
                 ab(c.ab.begin(), c.ab.end()), gaw(aw.size(), T(0.5)), gab(ab.size(), T(0.5));
  BlockBuffers<T> bs(c.ps, C), bt(c.pt, C);
  fbkd::NonLocalLossArgs<T> a;
  a.student = host_view<const T>(s.data(), shape, strides);
  a.teacher = host_view<const T>(t.data(), shape, strides);
  bs.bind(a.student_block, C, m, true, true);
  bt.bind(a.teacher_block, C, m, teacher_grads, true);
  a.adapt_weight = host_view<const T>(aw.data(), {C, C, 1, 1});
  a.adapt_bias = host_view<const T>(ab.data(), {C});
  a.grad_student = host_view(gs.data(), shape, strides);
  a.grad_adapt_weight = host_view(gaw.data(), {C, C});
  a.grad_adapt_bias = host_view(gab.data(), {C});
  a.options.weight = c.ref.weight;
  a.options.block.mode = to_mode(r.mode);
  a.options.block.pool_g = r.pool_g;
  a.options.block.pool_phi = r.pool_phi;
  a.options.param_grads.beta = beta;
  T value = T(-3);
  const T upstream = static_cast<T>(up);
  a.out = host_scalar(&value);
  if (how == Run::fused) {
    fbkd::non_local_loss(a, Mode::forward_backward, exec);
  } else {
    fbkd::non_local_loss(a, Mode::forward, exec);
    a.grad_out = host_scalar<const T>(&upstream);
    fbkd::non_local_loss(a, Mode::backward, exec);
  }
  Result o;
  o.value = static_cast<double>(value);
  o.s = load(gs);
  o.t_before = load(store(c.t));
  o.t_after = load(t);
  o.aw = Vec(gaw.begin(), gaw.end());
  o.ab = Vec(gab.begin(), gab.end());
  o.ps = bs.grads();
  o.pt = bt.grads();
  o.mean_s = Vec(bs.mean.begin(), bs.mean.end());
  o.var_s = Vec(bs.var.begin(), bs.var.end());
  return o;
}

double max_abs(const Vec& v) {
  double s = 1e-12;
  for (double e : v) s = std::max(s, std::fabs(e));
  return s;
}
Vec plus(const Vec& v, double b) {
  Vec r(v);
  for (double& e : r) e += b;
  return r;
}

void compare_params(const NonLocalParams& got, const NonLocalParams& want, double tol, double beta,
                    const std::string& who) {
  CAPTURE(who);
  // Biases that feed a softmax or a training-mode BN have gradients 0 in theory: every gradient of the
  // block is judged against the block's scale.
  const double scale = std::max({max_abs(want.g_w), max_abs(want.out_w), max_abs(want.bn_w)});
  const auto one = [&](const Vec& g, const Vec& w, const char* name) {
    if (w.empty()) return;
    check_close(g, plus(w, 0.5 * beta), tol, tol * scale, name);
  };
  one(got.g_w, want.g_w, "g_w");
  one(got.g_b, want.g_b, "g_b");
  one(got.theta_w, want.theta_w, "theta_w");
  one(got.theta_b, want.theta_b, "theta_b");
  one(got.phi_w, want.phi_w, "phi_w");
  one(got.phi_b, want.phi_b, "phi_b");
  one(got.out_w, want.out_w, "out_w");
  one(got.out_b, want.out_b, "out_b");
  one(got.bn_w, want.bn_w, "bn_w");
  one(got.bn_b, want.bn_b, "bn_b");
}

void compare(const Result& got, const Case& c, double tol, double up = 1.0, double beta = 0.0) {
  const auto want = c.ref.backward(c.s, c.t, c.ps, c.pt, c.aw, c.ab, up);
  CHECK(got.value == doctest::Approx(c.ref.value(c.s, c.t, c.ps, c.pt, c.aw, c.ab)).epsilon(tol));
  check_close(got.s, want.s, tol, tol * max_abs(want.s), "grad_student");
  check_close(got.aw, plus(want.aw, 0.5 * beta), tol, tol * max_abs(want.aw), "grad_adapt_weight");
  check_close(got.ab, plus(want.ab, 0.5 * beta), tol, tol * max_abs(want.ab), "grad_adapt_bias");
  compare_params(got.ps, want.ps, tol, beta, "student block");
  compare_params(got.pt, want.pt, tol, beta, "teacher block");
  CHECK(got.t_after == got.t_before);  // T is read only
}

}  // namespace

TEST_CASE("fbkd L_NLD: value and every gradient match the composed reference (dot product, embedded gaussian)") {
  for (auto mode : {NonLocal::dot_product, NonLocal::embedded_gaussian})
    for (std::int64_t pool : {1, 2}) {
      CAPTURE(int(mode));
      CAPTURE(pool);
      const Case c(2, 4, 5, 6, 2, mode, pool, 7e-2);
      compare(run<double>(c, Run::fused), c, 1e-9);
      compare(run<double>(c, Run::split, 0.5), c, 1e-9, 0.5);
      compare(run<float>(c, Run::fused), c, 2e-4);
    }
}

TEST_CASE("fbkd L_NLD: the reference's gradients agree with central differences (S and every parameter)") {
  const Case c(2, 4, 4, 6, 2, NonLocal::dot_product, 2, 0.3, 21);
  const auto& R = c.ref;
  const auto want = R.backward(c.s, c.t, c.ps, c.pt, c.aw, c.ab);
  const auto num = [](const Vec& x, const std::function<double(const Vec&)>& f) {
    return kdloss_test::numeric_gradient(x, f);
  };
  check_close(num(c.s, [&](const Vec& v) { return R.value(v, c.t, c.ps, c.pt, c.aw, c.ab); }), want.s, 1e-5, 1e-8,
              "grad_student");
  check_close(num(c.aw, [&](const Vec& v) { return R.value(c.s, c.t, c.ps, c.pt, v, c.ab); }), want.aw, 1e-5, 1e-8,
              "grad_adapt_weight");
  check_close(num(c.ab, [&](const Vec& v) { return R.value(c.s, c.t, c.ps, c.pt, c.aw, v); }), want.ab, 1e-5, 1e-8,
              "grad_adapt_bias");
  for (Vec NonLocalParams::*f : {&NonLocalParams::g_w, &NonLocalParams::g_b, &NonLocalParams::theta_w,
                                 &NonLocalParams::theta_b, &NonLocalParams::phi_w, &NonLocalParams::phi_b,
                                 &NonLocalParams::out_w, &NonLocalParams::out_b, &NonLocalParams::bn_w,
                                 &NonLocalParams::bn_b}) {
    const Vec ns = num(c.ps.*f, [&](const Vec& v) {
      NonLocalParams q = c.ps;
      q.*f = v;
      return R.value(c.s, c.t, q, c.pt, c.aw, c.ab);
    });
    check_close(ns, want.ps.*f, 1e-5, 1e-8, "student block parameter");
    const Vec nt = num(c.pt.*f, [&](const Vec& v) {
      NonLocalParams q = c.pt;
      q.*f = v;
      return R.value(c.s, c.t, c.ps, q, c.aw, c.ab);
    });
    check_close(nt, want.pt.*f, 1e-5, 1e-8, "teacher block parameter");
  }
}

TEST_CASE("fbkd L_NLD: channels-last inputs, accumulation, BN statistics, T gets no gradient") {
  const Case c(2, 4, 5, 6, 2, NonLocal::dot_product, 2, 1.0);
  compare(run<double>(c, Run::fused, 1.0, true), c, 1e-9);
  compare(run<double>(c, Run::split, 2.0, true, 1.0), c, 1e-9, 2.0, 1.0);
  // The student block's batch statistics: those of W y inside NL_S(S).
  const auto got = run<double>(c, Run::fused);
  const auto st = c.ref.block.run(c.s, c.ps);
  const auto bn = kdloss_ref::ops::BatchNorm{2, 4, 30}.stats(st.wy, {}, {});
  check_close(got.mean_s, bn.mean, 1e-10, 1e-12, "bn_batch_mean");
  check_close(got.var_s, bn.var_unbiased, 1e-10, 1e-12, "bn_batch_var");
  // Without teacher-block gradient outputs the teacher's backward is skipped; every other gradient is the same.
  const auto no_t = run<double>(c, Run::fused, 1.0, false, 0.0, false);
  CHECK(no_t.s == got.s);
  CHECK(no_t.aw == got.aw);
  CHECK(no_t.pt.g_w == Vec(c.pt.g_w.size(), 0.5));  // untouched
  CHECK(no_t.t_after == no_t.t_before);
}

TEST_CASE("fbkd L_NLD: a zero distance gives value 0 and zero gradients (PyTorch's norm rule), NaN propagates") {
  Case c(1, 3, 4, 4, 2, NonLocal::dot_product, 2, 0.5);
  c.t = c.s;
  c.pt = c.ps;
  c.aw.assign(9, 0.0);
  for (int i = 0; i < 3; ++i) c.aw[static_cast<std::size_t>(4 * i)] = 1.0;
  c.ab.assign(3, 0.0);
  const auto z = run<double>(c, Run::fused);
  CHECK(z.value == 0.0);
  CHECK(z.s == Vec(z.s.size(), 0.0));
  CHECK(z.aw == Vec(z.aw.size(), 0.0));
  CHECK(z.pt.g_w == Vec(z.pt.g_w.size(), 0.0));
  // A NaN in S: the value and every gradient of the student side are NaN, as autograd's.
  Case n(1, 3, 4, 4, 2, NonLocal::dot_product, 2, 0.5);
  n.s[5] = std::numeric_limits<double>::quiet_NaN();
  const auto r = run<double>(n, Run::fused);
  CHECK(std::isnan(r.value));
  for (double g : r.s) CHECK(std::isnan(g));
  for (double g : r.aw) CHECK(std::isnan(g));
  for (double g : r.pt.g_w) CHECK(std::isnan(g));
}

TEST_CASE("fbkd L_NLD: bad inputs throw naming the argument and write nothing") {
  const std::int64_t B = 1, C = 4, H = 4, W = 4, m = 2;
  const Case c(B, C, H, W, m, NonLocal::dot_product, 2, 1.0);
  std::vector<double> s(c.s), t(c.t), aw(c.aw), gs(s.size(), 7.0), gaw(aw.size(), 7.0);
  BlockBuffers<double> bs(c.ps, C), bt(c.pt, C);
  double value = 7.0;
  const auto make = [&] {
    fbkd::NonLocalLossArgs<double> a;
    a.student = host_view<const double>(s.data(), {B, C, H, W});
    a.teacher = host_view<const double>(t.data(), {B, C, H, W});
    bs.bind(a.student_block, C, m, true, true);
    bt.bind(a.teacher_block, C, m, true, true);
    a.adapt_weight = host_view<const double>(aw.data(), {C, C});
    a.out = host_scalar(&value);
    a.grad_student = host_view(gs.data(), {B, C, H, W});
    a.grad_adapt_weight = host_view(gaw.data(), {C, C});
    a.options.block = ops::non_local_mmcv_options(ops::NonLocalMode::dot_product);
    return a;
  };
  const auto untouched = [&] {
    CHECK(value == 7.0);
    CHECK(gs == Vec(gs.size(), 7.0));
    CHECK(gaw == Vec(gaw.size(), 7.0));
    CHECK(bs.d_gw == std::vector<double>(bs.d_gw.size(), 0.5));
    CHECK(bt.d_gw == std::vector<double>(bt.d_gw.size(), 0.5));
    CHECK(bs.mean == std::vector<double>(bs.mean.size(), -9.0));
  };
  const auto expect = [&](fbkd::NonLocalLossArgs<double> a, const char* needle) {
    kdloss_test::expect_error([&] { fbkd::non_local_loss(a, Mode::forward_backward); }, needle, untouched);
  };
  auto a = make();
  a.teacher = host_view<const double>(t.data(), {B, C, H, W - 1});
  expect(a, "teacher");
  a = make();
  a.adapt_weight = host_view<const double>(aw.data(), {C, C - 1});
  expect(a, "argument 'adapt_weight' has shape [4, 3]");
  a = make();
  a.adapt_weight = {};
  expect(a, "adapt_weight");
  a = make();
  a.student_block.x = a.student;
  expect(a, "argument 'student_block'");
  a = make();
  a.teacher_block.conv_out_weight = host_view<const double>(bt.ow.data(), {C - 1, m});
  expect(a, "teacher block");
  a = make();
  a.student_block.grad_g_weight = host_view(bs.d_gw.data(), {m, C + 1});
  expect(a, "student block");
  a = make();
  a.options.block.pool_g = a.options.block.pool_phi = 8;  // 4 x 4 maps smaller than the pool
  expect(a, "student block");
  a = make();
  a.out = {};
  expect(a, "out");
  a = make();
  kdloss_test::expect_error([&] { fbkd::non_local_loss(a, Mode::backward); }, "grad_out", untouched);
}

TEST_CASE("fbkd L_NLD: bits do not depend on the thread count") {
#if KDLOSS_OPENMP
  const Case c(2, 8, 9, 11, 4, NonLocal::dot_product, 2, 1.0);
  kdloss_test::ThreadScope scope(1);
  const auto r1 = run<float>(c, Run::fused);
  scope.set(2);
  const auto r2 = run<float>(c, Run::fused);
  CHECK(r1.value == r2.value);
  CHECK(r1.s == r2.s);
  CHECK(r1.aw == r2.aw);
  CHECK(r1.ps.theta_w == r2.ps.theta_w);
  CHECK(r1.pt.g_w == r2.pt.g_w);
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}
