// ops::non_local: the composed block z = x + BN(W y) against the double reference composed from the
// parts' references (tests/reference/ops/non_local.hpp), central differences of that reference, every
// mode, pooling 1/2/4 on maps not divisible by it, use_scale, training and evaluation BN, reserve kept
// or recomputed, channels-last x, H*W = 1, maps smaller than the pool, bad input, threads.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "data/non_local_mmcv.hpp"
#include "kdloss/ops/non_local.hpp"
#include "ops/non_local_gpu.hpp"
#include "reference/ops/non_local.hpp"
#include "support/gpu.hpp"
#include "support/test_support.hpp"

#include "support/threads.hpp"

using namespace kdloss;
using kdloss_ref::ops::NonLocal;
using kdloss_ref::ops::NonLocalParams;
using kdloss_test::check_close;

namespace {

using RMode = NonLocal::Mode;

ops::NonLocalMode to_mode(RMode m) {
  switch (m) {
    case NonLocal::embedded_gaussian: return ops::NonLocalMode::embedded_gaussian;
    case NonLocal::gaussian: return ops::NonLocalMode::gaussian;
    case NonLocal::dot_product: return ops::NonLocalMode::dot_product;
    default: return ops::NonLocalMode::concatenation;
  }
}

/// One block: sizes, options, and deterministic values for x, every parameter and grad_z.
struct Case {
  NonLocal ref;
  std::vector<double> x, gz;
  NonLocalParams p;
  bool out_bias = true;
  Case(std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W, std::int64_t m, RMode mode, std::int64_t pool,
       bool training = true, bool use_scale = true, std::uint32_t seed = 7)
      : ref{B, C, H, W, m, mode, use_scale, pool, pool, training} {
    const auto rnd = [&](std::size_t n, double lo = -1.0, double hi = 1.0) {
      return kdloss_test::random_vector<double>(n, seed++, lo, hi);
    };
    const std::size_t mc = static_cast<std::size_t>(m * C), cm = mc;
    x = rnd(static_cast<std::size_t>(B * C * H * W));
    gz = rnd(x.size());
    p.g_w = rnd(mc);
    p.g_b = rnd(static_cast<std::size_t>(m));
    if (mode != NonLocal::gaussian) {
      p.theta_w = rnd(mc);
      p.theta_b = rnd(static_cast<std::size_t>(m));
      p.phi_w = rnd(mc);
      p.phi_b = rnd(static_cast<std::size_t>(m));
    }
    if (mode == NonLocal::concatenation) p.concat_w = rnd(static_cast<std::size_t>(2 * m));
    p.out_w = rnd(cm);
    p.out_b = rnd(static_cast<std::size_t>(C));
    p.bn_w = rnd(static_cast<std::size_t>(C), 0.5, 1.5);
    p.bn_b = rnd(static_cast<std::size_t>(C));
    if (!training) {
      p.running_mean = rnd(static_cast<std::size_t>(C));
      p.running_var = rnd(static_cast<std::size_t>(C), 0.5, 2.0);
    }
  }
};

/// The library's outputs, as doubles: z, the BN batch statistics, grad_x and every parameter gradient.
struct Result {
  std::vector<double> z, mean, var, x;
  NonLocalParams p;
};

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <class T>
std::vector<double> back(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

/// How a run keeps its state: in a reserve filled by a separate forward, recomputed by backward, or in
/// one forward_backward call.
enum class Run { reserve, recompute, fused };

template <class T>
Result run_block(const Case& c, Run run, bool channels_last = false, double beta = 0.0, bool want_grad_x = true) {
  const Exec exec{};
  const NonLocal& r = c.ref;
  const std::int64_t B = r.B, C = r.C, H = r.H, W = r.W, m = r.m;
  const Dims shape{B, C, H, W};
  const Dims strides = channels_last ? Dims{C * H * W, 1, W * C, C} : contiguous_strides(shape);
  // x and grad_z stored in `strides` order.
  const auto store = [&](const std::vector<double>& v) {
    std::vector<T> s(v.size());
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t ch = 0; ch < C; ++ch)
        for (std::int64_t p = 0; p < H * W; ++p)
          s[b * strides[0] + ch * strides[1] + (p / W) * strides[2] + (p % W) * strides[3]] =
              static_cast<T>(v[(b * C + ch) * H * W + p]);
    return s;
  };
  const auto load = [&](const std::vector<T>& s) {
    std::vector<double> v(s.size());
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t ch = 0; ch < C; ++ch)
        for (std::int64_t p = 0; p < H * W; ++p)
          v[(b * C + ch) * H * W + p] = static_cast<double>(s[b * strides[0] + ch * strides[1] + (p / W) * strides[2] +
                                                              (p % W) * strides[3]]);
    return v;
  };
  std::vector<T> x = store(c.x), gz = store(c.gz), z(x.size(), T(-7)), gx(x.size(), T(0.25));
  const NonLocalParams& p = c.p;
  std::vector<T> gw = cast<T>(p.g_w), gb = cast<T>(p.g_b), tw = cast<T>(p.theta_w), tb = cast<T>(p.theta_b),
                 pw = cast<T>(p.phi_w), pb = cast<T>(p.phi_b), cw = cast<T>(p.concat_w), ow = cast<T>(p.out_w),
                 ob = cast<T>(p.out_b), bw = cast<T>(p.bn_w), bb = cast<T>(p.bn_b), rm = cast<T>(p.running_mean),
                 rv = cast<T>(p.running_var);
  // Gradients start at 0.5 so that beta = 1 is visible.
  const auto like = [](const std::vector<T>& v) { return std::vector<T>(v.size(), T(0.5)); };
  std::vector<T> d_gw = like(gw), d_gb = like(gb), d_tw = like(tw), d_tb = like(tb), d_pw = like(pw), d_pb = like(pb),
                 d_cw = like(cw), d_ow = like(ow), d_ob = like(ob), d_bw = like(bw), d_bb = like(bb),
                 mean(C, T(-9)), var(C, T(-9));
  ops::NonLocalArgs<T> a;
  a.x = host_view<const T>(x.data(), shape, strides);
  a.g_weight = host_view<const T>(gw.data(), {m, C, 1, 1});  // mmcv's state_dict shape
  a.g_bias = host_view<const T>(gb.data(), {m});
  if (!tw.empty()) {
    a.theta_weight = host_view<const T>(tw.data(), {m, C});
    a.theta_bias = host_view<const T>(tb.data(), {m});
    a.phi_weight = host_view<const T>(pw.data(), {m, C});
    a.phi_bias = host_view<const T>(pb.data(), {m});
    a.grad_theta_weight = host_view(d_tw.data(), {m, C});
    a.grad_theta_bias = host_view(d_tb.data(), {m});
    a.grad_phi_weight = host_view(d_pw.data(), {m, C, 1, 1});
    a.grad_phi_bias = host_view(d_pb.data(), {m});
  }
  if (!cw.empty()) {
    a.concat_project_weight = host_view<const T>(cw.data(), {1, 2 * m, 1, 1});
    a.grad_concat_project_weight = host_view(d_cw.data(), {2 * m});
  }
  a.conv_out_weight = host_view<const T>(ow.data(), {C, m});
  if (c.out_bias) a.conv_out_bias = host_view<const T>(ob.data(), {C});
  if (r.norm) {
    a.bn_weight = host_view<const T>(bw.data(), {C});
    a.bn_bias = host_view<const T>(bb.data(), {C});
    a.grad_bn_weight = host_view(d_bw.data(), {C});
    a.grad_bn_bias = host_view(d_bb.data(), {C});
  }
  if (!r.norm) {
  } else if (!r.training) {
    a.bn_running_mean = host_view<const T>(rm.data(), {C});
    a.bn_running_var = host_view<const T>(rv.data(), {C});
  } else {
    a.bn_batch_mean = host_view(mean.data(), {C});
    a.bn_batch_var = host_view(var.data(), {C});
  }
  a.z = host_view(z.data(), shape, strides);
  a.grad_z = host_view<const T>(gz.data(), shape, strides);
  if (want_grad_x) a.grad_x = host_view(gx.data(), shape, strides);
  a.grad_g_weight = host_view(d_gw.data(), {m, C});
  a.grad_g_bias = host_view(d_gb.data(), {m});
  a.grad_conv_out_weight = host_view(d_ow.data(), {C, m, 1, 1});
  if (c.out_bias) a.grad_conv_out_bias = host_view(d_ob.data(), {C});
  a.options.norm = r.norm;
  a.options.mode = to_mode(r.mode);
  a.options.use_scale = r.use_scale;
  a.options.pool_g = r.pool_g;
  a.options.pool_phi = r.pool_phi;
  a.options.training = r.training;
  a.options.param_grads.beta = beta;
  std::vector<unsigned char> keep_buf;
  if (run == Run::fused) {
    ops::non_local(a, Mode::forward_backward, exec);
  } else {
    const std::size_t bytes = ops::non_local_reserve_bytes(a);
    keep_buf.resize(bytes + 256);
    void* keep = keep_buf.data() + (256 - reinterpret_cast<std::uintptr_t>(keep_buf.data()) % 256) % 256;
    if (run == Run::reserve) a.reserve = {keep, bytes};
    ops::non_local(a, Mode::forward, exec);
    ops::non_local(a, Mode::backward, exec);
  }
  Result out;
  out.z = load(z);
  out.x = load(gx);
  out.mean = back(mean);
  out.var = back(var);
  out.p = {back(d_gw), back(d_gb), back(d_tw), back(d_tb), back(d_pw), back(d_pb), back(d_cw), back(d_ow),
           back(d_ob), back(d_bw), back(d_bb), {}, {}};
  return out;
}

/// grad = beta * 0.5 + reference.
std::vector<double> with_beta(const std::vector<double>& v, double beta) {
  std::vector<double> r(v);
  for (double& e : r) e += beta * 0.5;
  return r;
}

/// The largest |value| of a gradient list: the scale an exactly-zero gradient is judged against.
double scale_of(const std::vector<double>& v) {
  double s = 0;
  for (double e : v) s = std::max(s, std::fabs(e));
  return s;
}

void compare(const Result& got, const Case& c, double tol, double beta = 0.0) {
  const auto want = c.ref.backward(c.x, c.p, c.gz);
  check_close(got.z, c.ref.forward(c.x, c.p), tol, tol, "z");
  check_close(got.x, want.x, tol, tol * scale_of(want.x), "grad_x");
  const double s = std::max({scale_of(want.p.g_w), scale_of(want.p.out_w), scale_of(want.p.bn_w), 1e-3});
  const auto param = [&](const std::vector<double>& g, const std::vector<double>& w, const char* name) {
    if (w.empty()) return;
    check_close(g, with_beta(w, beta), tol, tol * s, name);
  };
  param(got.p.g_w, want.p.g_w, "grad_g_weight");
  param(got.p.g_b, want.p.g_b, "grad_g_bias");
  param(got.p.theta_w, want.p.theta_w, "grad_theta_weight");
  param(got.p.theta_b, want.p.theta_b, "grad_theta_bias");
  param(got.p.phi_w, want.p.phi_w, "grad_phi_weight");
  param(got.p.phi_b, want.p.phi_b, "grad_phi_bias");
  param(got.p.concat_w, want.p.concat_w, "grad_concat_project_weight");
  param(got.p.out_w, want.p.out_w, "grad_conv_out_weight");
  // conv_out's bias feeds a training-mode BN: its gradient is 0 in theory, judged against the layer's scale.
  if (c.out_bias) param(got.p.out_b, want.p.out_b, "grad_conv_out_bias");
  param(got.p.bn_w, want.p.bn_w, "grad_bn_weight");
  param(got.p.bn_b, want.p.bn_b, "grad_bn_bias");
}

const RMode kModes[] = {NonLocal::embedded_gaussian, NonLocal::gaussian, NonLocal::dot_product,
                        NonLocal::concatenation};

}  // namespace

TEST_CASE("non_local: z and every gradient match the composed reference in all modes, pools 1/2/4, both BN modes") {
  for (RMode mode : kModes)
    for (std::int64_t pool : {1, 2, 4})
      for (bool training : {true, false}) {
        CAPTURE(int(mode));
        CAPTURE(pool);
        CAPTURE(training);
        const Case c(2, 4, 5, 6, 2, mode, pool, training);
        compare(run_block<double>(c, Run::reserve), c, 1e-9);
        compare(run_block<float>(c, Run::fused), c, 2e-4);
      }
}

TEST_CASE("non_local: the reference's gradients agree with central differences (every input and parameter)") {
  for (RMode mode : kModes)
    for (std::int64_t pool : {1, 2}) {
      CAPTURE(int(mode));
      CAPTURE(pool);
      // Concatenation: small positive scores stay away from the ReLU kink for h = 1e-6.
      Case c(2, 4, 5, 6, 2, mode, pool, true, true, 11);
      const auto want = c.ref.backward(c.x, c.p, c.gz);
      const auto loss = [&](const NonLocalParams& p, const std::vector<double>& x) {
        const auto z = c.ref.forward(x, p);
        double s = 0;
        for (std::size_t i = 0; i < z.size(); ++i) s += z[i] * c.gz[i];
        return s;
      };
      check_close(kdloss_test::numeric_gradient(c.x, [&](const std::vector<double>& x) { return loss(c.p, x); }), want.x,
                  1e-5, 1e-7, "grad_x");
      const auto param = [&](std::vector<double> NonLocalParams::*field, const char* name) {
        if ((c.p.*field).empty()) return;
        const auto num = kdloss_test::numeric_gradient(c.p.*field, [&](const std::vector<double>& v) {
          NonLocalParams q = c.p;
          q.*field = v;
          return loss(q, c.x);
        });
        check_close(num, want.p.*field, 1e-5, 1e-7, name);
      };
      param(&NonLocalParams::g_w, "g_w");
      param(&NonLocalParams::g_b, "g_b");
      param(&NonLocalParams::theta_w, "theta_w");
      param(&NonLocalParams::theta_b, "theta_b");
      param(&NonLocalParams::phi_w, "phi_w");
      param(&NonLocalParams::phi_b, "phi_b");
      param(&NonLocalParams::concat_w, "concat_w");
      param(&NonLocalParams::out_w, "out_w");
      param(&NonLocalParams::out_b, "out_b");
      param(&NonLocalParams::bn_w, "bn_w");
      param(&NonLocalParams::bn_b, "bn_b");
    }
}

TEST_CASE("non_local: use_scale off, backward without a reserve, channels-last x, accumulation") {
  for (RMode mode : kModes) {
    CAPTURE(int(mode));
    const Case c(2, 4, 5, 6, 2, mode, 2, true, false);
    compare(run_block<double>(c, Run::recompute), c, 1e-9);
    compare(run_block<double>(c, Run::fused, true), c, 1e-9);
    compare(run_block<double>(c, Run::reserve, true, 1.0), c, 1e-9, 1.0);
  }
  Case nb(2, 4, 5, 6, 2, NonLocal::dot_product, 2);  // mmrazor's ConvModule: conv_out without bias
  nb.out_bias = false;
  nb.p.out_b.clear();
  compare(run_block<double>(nb, Run::reserve), nb, 1e-9);
  for (RMode mode : kModes) {  // mmcv's default norm_cfg=None: z = x + W y
    CAPTURE(int(mode));
    Case c(2, 4, 5, 6, 2, mode, 2);
    c.ref.norm = false;
    compare(run_block<double>(c, Run::reserve), c, 1e-9);
    compare(run_block<double>(c, Run::recompute), c, 1e-9);
    compare(run_block<float>(c, Run::fused), c, 2e-4);
  }
}

TEST_CASE("non_local: parameter gradients without grad_x (FBKD's teacher block: x_T gets no gradient)") {
  for (RMode mode : kModes)
    for (bool training : {true, false}) {
      CAPTURE(int(mode));
      CAPTURE(training);
      const Case c(2, 4, 5, 6, 2, mode, 2, training);
      for (Run run : {Run::reserve, Run::recompute, Run::fused}) {
        Result got = run_block<double>(c, run, false, 0.0, false);
        CHECK(got.x == std::vector<double>(got.x.size(), 0.25));  // grad_x absent: its buffer untouched
        got.x = c.ref.backward(c.x, c.p, c.gz).x;                // compare() checks the rest
        compare(got, c, 1e-9);
      }
    }
}

TEST_CASE("non_local: BN batch statistics are returned for the running-statistics update") {
  const Case c(2, 4, 5, 6, 2, NonLocal::embedded_gaussian, 2);
  const auto got = run_block<double>(c, Run::reserve);
  const auto s = c.ref.run(c.x, c.p);
  const auto st = kdloss_ref::ops::BatchNorm{2, 4, 30}.stats(s.wy, {}, {});
  check_close(got.mean, st.mean, 1e-10, 1e-12, "bn_batch_mean");
  check_close(got.var, st.var_unbiased, 1e-10, 1e-12, "bn_batch_var");
}

TEST_CASE("non_local: H*W = 1 without pooling, and a map smaller than the pool factor") {
  for (RMode mode : kModes) {
    CAPTURE(int(mode));
    const Case c(3, 4, 1, 1, 2, mode, 1);
    compare(run_block<double>(c, Run::reserve), c, 1e-9);
  }
  const Case small(2, 4, 3, 5, 2, NonLocal::dot_product, 4);  // H = 3 < 4
  kdloss_test::expect_error([&] { run_block<float>(small, Run::fused); },
                            "kdloss::ops::non_local_forward_backward: in the block's phi max pooling "
                            "(options.pool_phi): kdloss::ops::max_pool2d",
                            [] {});
  const Case small_fb(2, 4, 3, 5, 2, NonLocal::gaussian, 4);
  kdloss_test::expect_error([&] { run_block<double>(small_fb, Run::fused); }, "PyTorch's max_pool2d raises", [] {});
}

TEST_CASE("non_local: bad input throws naming the argument and writes nothing") {
  const std::int64_t B = 2, C = 4, H = 5, W = 6, m = 2;
  std::vector<float> x(B * C * H * W, 0.5f), z(x.size(), 9.f), gz(x.size(), 1.f), gx(x.size(), 9.f), wg(m * C, 0.1f),
      wt(m * C, 0.1f), wp(m * C, 0.1f), wo(C * m, 0.1f), gwo(C * m, 9.f), cw(2 * m, 0.1f);
  const auto untouched = [&] {
    CHECK(z == std::vector<float>(z.size(), 9.f));
    CHECK(gx == std::vector<float>(gx.size(), 9.f));
    CHECK(gwo == std::vector<float>(gwo.size(), 9.f));
  };
  const auto base = [&] {
    ops::NonLocalArgs<float> a;
    a.x = host_view<const float>(x.data(), {B, C, H, W});
    a.g_weight = host_view<const float>(wg.data(), {m, C});
    a.theta_weight = host_view<const float>(wt.data(), {m, C});
    a.phi_weight = host_view<const float>(wp.data(), {m, C});
    a.conv_out_weight = host_view<const float>(wo.data(), {C, m});
    a.z = host_view(z.data(), {B, C, H, W});
    a.grad_z = host_view<const float>(gz.data(), {B, C, H, W});
    a.grad_x = host_view(gx.data(), {B, C, H, W});
    a.grad_conv_out_weight = host_view(gwo.data(), {C, m});
    a.options.mode = ops::NonLocalMode::dot_product;
    a.options.pool_g = a.options.pool_phi = 2;
    return a;
  };
  auto a = base();
  a.options.mode = ops::NonLocalMode::gaussian;
  kdloss_test::expect_error([&] { ops::non_local(a, Mode::forward_backward); },
                            "kdloss::ops::non_local_forward_backward: argument 'theta_weight' is given but gaussian mode",
                            untouched);
  a = base();
  a.conv_out_weight = host_view<const float>(wo.data(), {m, C});
  kdloss_test::expect_error([&] { ops::non_local(a, Mode::forward); },
                            "argument 'conv_out_weight' has shape [2, 4] but needs [4, 2]", untouched);
  a = base();
  a.z = host_view(z.data(), {B, C, W, H});
  kdloss_test::expect_error([&] { ops::non_local(a, Mode::forward); }, "argument 'z' has shape [2, 4, 6, 5]", untouched);
  a = base();
  a.options.pool_phi = 4;
  kdloss_test::expect_error([&] { ops::non_local(a, Mode::forward); }, "to different key grids [2, 3] and [1, 1]",
                            untouched);
  a = base();
  a.concat_project_weight = host_view<const float>(cw.data(), {2 * m});
  kdloss_test::expect_error([&] { ops::non_local(a, Mode::forward); }, "only mode concatenation uses it", untouched);
  a = base();
  a.grad_z = {};
  kdloss_test::expect_error([&] { ops::non_local(a, Mode::backward); }, "reads 'grad_z' but it is absent", untouched);
  a = base();
  a.grad_x = host_view(const_cast<float*>(x.data()), {B, C, H, W});
  kdloss_test::expect_error([&] { ops::non_local(a, Mode::backward); }, "'grad_x' overlaps", untouched);
  a = base();
  a.grad_conv_out_weight = host_view(gwo.data(), {C, m + 1});
  kdloss_test::expect_error([&] { ops::non_local(a, Mode::forward_backward); },
                            "in the block's conv_out projection (conv_out_weight, conv_out_bias): kdloss::ops::linear",
                            untouched);
  a = base();
  a.options.training = false;  // evaluation without running statistics
  kdloss_test::expect_error([&] { ops::non_local(a, Mode::forward); }, "in the block's batch norm", untouched);
  a = base();
  std::vector<float> gamma(C, 1.f);
  a.bn_weight = host_view<const float>(gamma.data(), {C});
  a.options.norm = false;
  kdloss_test::expect_error([&] { ops::non_local(a, Mode::forward); },
                            "argument 'bn_weight' is given but options.norm is false", untouched);
  a = base();
  std::vector<unsigned char> small(64);
  a.reserve = {small.data(), small.size()};
  kdloss_test::expect_error([&] { ops::non_local(a, Mode::forward); }, "argument 'reserve' has 64 bytes", untouched);
}

TEST_CASE("non_local: bits do not depend on the thread count") {
#if KDLOSS_OPENMP
  // The second shape is large enough for the pooled projections' backward to split its channels (73
  // of them, unevenly) among the threads: windows of 64 positions, each x strip 512 values per channel.
  for (RMode mode : kModes)
    for (const Case& c : {Case(2, 8, 9, 11, 4, mode, 2), Case(1, 73, 16, 64, 8, mode, 8)}) {
      CAPTURE(c.ref.C);
      kdloss_test::ThreadScope scope(1);
      const auto r1 = run_block<float>(c, Run::fused);
      scope.set(2);
      const auto r2 = run_block<float>(c, Run::fused);
      CHECK(r1.z == r2.z);
      CHECK(r1.x == r2.x);
      CHECK(r1.p.g_w == r2.p.g_w);
      CHECK(r1.p.theta_w == r2.p.theta_w);
      CHECK(r1.p.concat_w == r2.p.concat_w);
      CHECK(r1.p.out_w == r2.p.out_w);
      CHECK(r1.p.bn_w == r2.p.bn_w);
    }
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}

// ---- parity with mmcv's NonLocal2d ----
// tests/data/non_local_mmcv.hpp was written by bench/non_local_mmcv_reference.py, which ran mmcv-lite
// 2.1.0's NonLocal2d (float64, training mode, sub_sample=True, i.e. pool 2; conv_out = conv + BN, and once
// mmcv's default norm_cfg=None) on the deterministic fills below; rerun that script to regenerate it. mmcv's
// concatenation backward raises (in-place ReLU), so that case holds z only: its gradients are checked
// against the composed reference above.
namespace {

/// The fill bench/non_local_mmcv_reference.py uses: 0.5 sin(0.7 k + offset) + 0.1 cos(1.3 k).
std::vector<double> mmcv_fill(std::size_t n, double offset) {
  std::vector<double> v(n);
  for (std::size_t k = 0; k < n; ++k) v[k] = 0.5 * std::sin(0.7 * double(k) + offset) + 0.1 * std::cos(1.3 * double(k));
  return v;
}

struct MmcvCase {
  std::string mode;
  bool norm = true;
  std::map<std::string, std::vector<double>> rows;  // "z", "grad:x", "grad:<state_dict key>"
};

std::vector<MmcvCase> mmcv_cases() {
  std::vector<MmcvCase> cases;
  std::istringstream in(kdloss_test::kNonLocalMmcv);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string head;
    ls >> head;
    if (head == "case") {
      cases.emplace_back();
      int norm = 1;
      ls >> cases.back().mode >> norm;
      cases.back().norm = norm != 0;
      continue;
    }
    std::vector<double> v;
    for (double e; ls >> e;) v.push_back(e);
    cases.back().rows[head] = v;
  }
  return cases;
}

template <class T>
void check_mmcv_case(const MmcvCase& mc, double tol) {
  const std::int64_t B = 2, C = 4, H = 5, W = 4, m = 2;
  const bool gaussian = mc.mode == "gaussian", concat = mc.mode == "concatenation";
  const auto fill = [](std::size_t n, double offset) { return cast<T>(mmcv_fill(n, offset)); };
  const std::size_t mc_ = static_cast<std::size_t>(m * C), xn = static_cast<std::size_t>(B * C * H * W);
  std::vector<T> x = fill(xn, 0.25), r = fill(xn, 0.5), gw = fill(mc_, 1.0), gb = fill(m, 2.0), tw = fill(mc_, 3.0),
                 tb = fill(m, 4.0), pw = fill(mc_, 5.0), pb = fill(m, 6.0), cw = fill(2 * m, 7.0), ow = fill(mc_, 8.0),
                 ob = fill(C, 9.0), bw = fill(C, 10.0), bb = fill(C, 11.0);
  std::vector<T> z(xn), gx(xn), d_gw(mc_), d_gb(m), d_tw(mc_), d_tb(m), d_pw(mc_), d_pb(m), d_ow(mc_), d_ob(C),
      d_bw(C), d_bb(C);
  ops::NonLocalArgs<T> a;
  a.x = host_view<const T>(x.data(), {B, C, H, W});
  a.g_weight = host_view<const T>(gw.data(), {m, C, 1, 1});
  a.g_bias = host_view<const T>(gb.data(), {m});
  a.grad_g_weight = host_view(d_gw.data(), {m, C, 1, 1});
  a.grad_g_bias = host_view(d_gb.data(), {m});
  if (!gaussian) {
    a.theta_weight = host_view<const T>(tw.data(), {m, C, 1, 1});
    a.theta_bias = host_view<const T>(tb.data(), {m});
    a.phi_weight = host_view<const T>(pw.data(), {m, C, 1, 1});
    a.phi_bias = host_view<const T>(pb.data(), {m});
    a.grad_theta_weight = host_view(d_tw.data(), {m, C, 1, 1});
    a.grad_theta_bias = host_view(d_tb.data(), {m});
    a.grad_phi_weight = host_view(d_pw.data(), {m, C, 1, 1});
    a.grad_phi_bias = host_view(d_pb.data(), {m});
  }
  if (concat) a.concat_project_weight = host_view<const T>(cw.data(), {1, 2 * m, 1, 1});
  a.conv_out_weight = host_view<const T>(ow.data(), {C, m, 1, 1});
  a.grad_conv_out_weight = host_view(d_ow.data(), {C, m, 1, 1});
  if (mc.norm) {  // ConvModule before a norm: conv without bias
    a.bn_weight = host_view<const T>(bw.data(), {C});
    a.bn_bias = host_view<const T>(bb.data(), {C});
    a.grad_bn_weight = host_view(d_bw.data(), {C});
    a.grad_bn_bias = host_view(d_bb.data(), {C});
  } else {
    a.conv_out_bias = host_view<const T>(ob.data(), {C});
    a.grad_conv_out_bias = host_view(d_ob.data(), {C});
  }
  a.z = host_view(z.data(), {B, C, H, W});
  a.grad_z = host_view<const T>(r.data(), {B, C, H, W});
  a.grad_x = host_view(gx.data(), {B, C, H, W});
  const ops::NonLocalMode mode = gaussian ? ops::NonLocalMode::gaussian
                                 : concat ? ops::NonLocalMode::concatenation
                                 : mc.mode == "dot_product" ? ops::NonLocalMode::dot_product
                                                            : ops::NonLocalMode::embedded_gaussian;
  a.options = ops::non_local_mmcv_options(mode);  // sub_sample: pool 2
  a.options.norm = mc.norm;
  ops::non_local(a, Mode::forward_backward);
  const auto row = [&](const std::string& k) -> const std::vector<double>& { return mc.rows.at(k); };
  check_close(z, row("z"), tol, tol, "z");
  if (concat) return;
  check_close(gx, row("grad:x"), tol, tol, "grad_x");
  const std::map<std::string, const std::vector<T>*> grads{
      {"g.conv.weight", &d_gw},         {"g.conv.bias", &d_gb},         {"theta.conv.weight", &d_tw},
      {"theta.conv.bias", &d_tb},       {"phi.conv.weight", &d_pw},     {"phi.conv.bias", &d_pb},
      {"conv_out.conv.weight", &d_ow},  {"conv_out.conv.bias", &d_ob},  {"conv_out.bn.weight", &d_bw},
      {"conv_out.bn.bias", &d_bb}};
  std::size_t seen = 0;
  for (const auto& [row_name, v] : mc.rows) {
    const std::string& name = row_name;  // CAPTURE's lambda cannot name a structured binding before C++20
    if (name.rfind("grad:", 0) != 0 || name == "grad:x") continue;
    CAPTURE(name);
    check_close(*grads.at(name.substr(5)), v, tol, tol, name.c_str());
    ++seen;
  }
  CHECK(seen == (gaussian ? 2u : 6u) + (mc.norm ? 3u : 2u));
}

}  // namespace

TEST_CASE("non_local: parity with mmcv NonLocal2d (values from mmcv itself, all four modes, with and without BN)") {
  const auto cases = mmcv_cases();
  REQUIRE(cases.size() == 5);
  for (const auto& mc : cases) {
    CAPTURE(mc.mode);
    CAPTURE(mc.norm);
    check_mmcv_case<double>(mc, 1e-10);
    check_mmcv_case<float>(mc, 1e-5);
  }
}

TEST_CASE("non_local: one pool by 2s equals mmrazor's MaxPool(s) after MaxPool(2) (floor mode, no ties)") {
  using kdloss_ref::ops::max_pool2d;
  using kdloss_ref::ops::max_pool2d_backward;
  for (const auto& [H, W, s] : {std::tuple{9, 11, 2}, std::tuple{17, 13, 4}, std::tuple{5, 6, 2}}) {
    const int height = H, stride = s;  // CAPTURE's lambda cannot name a structured binding before C++20
    CAPTURE(height);
    CAPTURE(stride);
    const std::int64_t B = 2, C = 3, H2 = H / 2, W2 = W / 2;
    const auto x = kdloss_test::random_vector<double>(static_cast<std::size_t>(B * C * H * W), 21);
    const auto half = max_pool2d(x, B, C, H, W, 2).y;
    const auto nested = max_pool2d(half, B, C, H2, W2, s).y;
    // floor(floor(H / 2) / s) = floor(H / (2 s)): the same grid, and the max of the window maxima.
    REQUIRE(H2 / s == H / (2 * s));
    std::vector<double> y(static_cast<std::size_t>(B * C * (H / (2 * s)) * (W / (2 * s))));
    ops::max_pool2d(host_view<const double>(x.data(), {B, C, H, W}), host_view(y.data(), {B, C, H / (2 * s), W / (2 * s)}),
                    {2 * s});
    CHECK(y == nested);
    // Backward: the nested argmax is the single window's argmax (no ties in random data).
    const auto gy = kdloss_test::random_vector<double>(y.size(), 22);
    const auto g_half = max_pool2d_backward(half, gy, B, C, H2, W2, s);
    const auto g_nested = max_pool2d_backward(x, g_half, B, C, H, W, 2);
    std::vector<double> gx(x.size());
    ops::max_pool2d_backward(host_view<const double>(x.data(), {B, C, H, W}),
                             host_view<const double>(gy.data(), {B, C, H / (2 * s), W / (2 * s)}),
                             host_view(gx.data(), {B, C, H, W}), {2 * s});
    CHECK(gx == g_nested);
  }
}

KDLOSS_GPU_TEST("non_local: GPU agrees with the composed reference (all modes, pool 1 and 2, float and double)") {
#if KDLOSS_TEST_CUDA
  for (RMode mode : kModes)
    for (std::int64_t pool : {1, 2})
      for (bool channels_last : {false, true}) {
        CAPTURE(int(mode));
        CAPTURE(pool);
        CAPTURE(channels_last);
        const Case c(2, 4, 5, 6, 2, mode, pool, pool == 1);
        kdloss_test::NonLocalGpuCase g;
        g.mode = int(to_mode(mode));
        g.B = 2, g.C = 4, g.H = 5, g.W = 6, g.m = 2, g.pool = pool;
        g.training = c.ref.training;
        g.channels_last = channels_last;
        g.x = c.x;
        g.grad_z = c.gz;
        const NonLocalParams& p = c.p;
        g.params = {p.g_w, p.g_b, p.theta_w, p.theta_b, p.phi_w, p.phi_b, p.concat_w, p.out_w, p.out_b, p.bn_w, p.bn_b,
                    p.running_mean, p.running_var};
        const auto want = c.ref.backward(c.x, c.p, c.gz);
        const std::vector<const std::vector<double>*> grads{&want.p.g_w,   &want.p.g_b,      &want.p.theta_w,
                                                            &want.p.theta_b, &want.p.phi_w,  &want.p.phi_b,
                                                            &want.p.concat_w, &want.p.out_w, &want.p.out_b,
                                                            &want.p.bn_w,  &want.p.bn_b};
        for (int dtype : {1, 0}) {
          CAPTURE(dtype);
          const double tol = dtype == 1 ? 1e-9 : 2e-3;  // float products may run TF32
          const auto got = kdloss_test::non_local_on_gpu(dtype, g);
          check_close(got[0], c.ref.forward(c.x, c.p), tol, tol, "z");
          check_close(got[1], want.x, tol, tol * scale_of(want.x), "grad_x");
          for (std::size_t i = 0; i < grads.size(); ++i)
            if (!grads[i]->empty()) check_close(got[2 + i], *grads[i], tol, tol * scale_of(want.x), "param grad");
        }
      }
#endif
}

TEST_CASE("non_local: presets and non_local_check") {
  const auto mm = ops::non_local_mmcv_options(ops::NonLocalMode::dot_product, true, 8);  // mmrazor: 2 * 8
  CHECK(mm.pool_g == 16);
  CHECK(mm.pool_phi == 16);
  CHECK(ops::non_local_mmcv_options(ops::NonLocalMode::gaussian).pool_phi == 2);  // mmcv sub_sample
  CHECK(ops::non_local_mmcv_options(ops::NonLocalMode::gaussian, false).pool_g == 1);
  const std::int64_t want_pool[] = {8, 4, 2, 2, 2}, want_m[] = {64, 64, 128, 128, 128};
  for (int level = 0; level < 5; ++level) {
    const auto o = ops::non_local_fbkd_options(level);
    CHECK(o.mode == ops::NonLocalMode::dot_product);
    CHECK(o.pool_g == want_pool[level]);
    CHECK(o.pool_phi == want_pool[level]);
    CHECK(ops::non_local_fbkd_inter_channels(level) == want_m[level]);
  }
  std::vector<float> x(2 * 4 * 5 * 6, 1.f), z(x.size(), 9.f), w(8, 0.1f);
  ops::NonLocalArgs<float> a;
  a.x = host_view<const float>(x.data(), {2, 4, 5, 6});
  a.g_weight = host_view<const float>(w.data(), {2, 4});
  a.conv_out_weight = host_view<const float>(w.data(), {4, 2});
  a.z = host_view(z.data(), {2, 4, 5, 6});
  a.options.mode = ops::NonLocalMode::gaussian;
  ops::non_local_check(a, Mode::forward);
  a.options.pool_g = 2;  // g on a 2 x 3 grid, phi = x on 5 x 6
  kdloss_test::expect_error([&] { ops::non_local_check(a, Mode::forward); }, "different key grids", [] {});
  a.options.pool_phi = 2;
  ops::non_local_check(a, Mode::forward);
  CHECK(ops::non_local_workspace_bytes(a) > 0);
  CHECK(z == std::vector<float>(z.size(), 9.f));
}

TEST_CASE("non_local: the fused pooled-projection backward gives the same bits from NCHW and channels-last x") {
  // The host walks channel planes for NCHW x and windows for channels-last x; each sum runs in the same
  // order in both. Ragged maps (H, W not multiples of s), -0 in grad_x where no argmax falls, NaN in x.
  const std::int64_t B = 2, C = 5, H = 7, W = 9, m = 3, s = 2, Hp = H / s, Wp = W / s;
  const Dims shape{B, C, H, W}, nchw = contiguous_strides(shape), nhwc{C * H * W, 1, W * C, C};
  std::vector<double> xv(B * C * H * W), gxv(xv.size()), gv(B * m * Hp * Wp), wv(m * C);
  for (std::size_t i = 0; i < xv.size(); ++i) xv[i] = std::sin(0.7 * i) * 3, gxv[i] = (i % 5 == 0) ? -0.0 : std::cos(1.3 * i);
  xv[0] = std::nan("");  // x[0, 0, 0, 0]: every o's argmax in window (0, 0) is position 0 (below)
  for (std::size_t i = 0; i < gv.size(); ++i) gv[i] = std::cos(0.37 * i + 1);
  for (std::size_t i = 0; i < wv.size(); ++i) wv[i] = std::sin(0.91 * i + 2);
  std::vector<unsigned char> argmax(gv.size());
  for (std::size_t i = 0; i < argmax.size(); ++i) argmax[i] = static_cast<unsigned char>((i * 7 + i / 3) % (s * s));
  const auto run = [&](const Dims& strides, bool want_x, std::vector<float>& gx, std::vector<float>& dw, std::vector<float>& db) {
    std::vector<float> x(xv.size());
    gx.assign(xv.size(), 0.f);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t p = 0; p < H * W; ++p) {
          const std::int64_t at = b * strides[0] + c * strides[1] + (p / W) * strides[2] + (p % W) * strides[3];
          x[at] = static_cast<float>(xv[(b * C + c) * H * W + p]);
          gx[at] = static_cast<float>(gxv[(b * C + c) * H * W + p]);
        }
    std::vector<float> g(gv.begin(), gv.end()), w(wv.begin(), wv.end());
    dw.assign(m * C, 0.5f), db.assign(m, 0.5f);
    expr::PooledProjectionBackPass<float> P;
    P.grad_y = host_view<const float>(g.data(), {B, m, Hp, Wp});
    P.argmax = argmax.data();
    P.narrow_argmax = true;
    P.stride = s;
    P.x = host_view<const float>(x.data(), shape, strides);
    P.weight = host_view<const float>(w.data(), {m, C});
    if (want_x) P.grad_x = host_view(gx.data(), shape, strides);
    P.grad_weight = host_view(dw.data(), {m, C});
    P.grad_bias = host_view(db.data(), {m});
    P.param_beta = 1.0;
    std::vector<unsigned char> scratch(kdloss::detail::pooled_projection_back_bytes(P) + 64);
    kdloss::detail::pooled_projection_back(Device::host(), P, scratch.data(), scratch.size());
    // back to NCHW order
    std::vector<float> out(gx.size());
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t p = 0; p < H * W; ++p)
          out[(b * C + c) * H * W + p] = gx[b * strides[0] + c * strides[1] + (p / W) * strides[2] + (p % W) * strides[3]];
    gx = out;
  };
  const auto bits = [](float v) {
    std::uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    return u;
  };
  for (bool want_x : {true, false}) {
    CAPTURE(want_x);
    std::vector<float> gx1, dw1, db1, gx2, dw2, db2;
    run(nchw, want_x, gx1, dw1, db1);
    run(nhwc, want_x, gx2, dw2, db2);
    for (std::size_t i = 0; i < gx1.size(); ++i) REQUIRE(bits(gx1[i]) == bits(gx2[i]));
    for (std::size_t i = 0; i < dw1.size(); ++i) REQUIRE(bits(dw1[i]) == bits(dw2[i]));
    for (std::size_t i = 0; i < db1.size(); ++i) REQUIRE(bits(db1[i]) == bits(db2[i]));
    if (!want_x) continue;
    // Positions no argmax hits keep grad_x as it was, -0 included; the rest moved.
    std::int64_t kept_negative_zero = 0, moved = 0;
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t h = 0; h < H; ++h)
          for (std::int64_t v = 0; v < W; ++v) {
            const std::int64_t i = ((b * C + c) * H + h) * W + v;
            bool hit = false;
            if (h < Hp * s && v < Wp * s)
              for (std::int64_t o = 0; o < m; ++o)
                hit = hit || argmax[((b * m + o) * Hp + h / s) * Wp + v / s] == (h % s) * s + v % s;
            if (!hit) {
              REQUIRE(bits(gx1[i]) == bits(static_cast<float>(gxv[i])));
              kept_negative_zero += gxv[i] == 0.0 && std::signbit(gxv[i]);
            } else {
              moved += gx1[i] != static_cast<float>(gxv[i]);
            }
          }
    CHECK(kept_negative_zero > 0);
    CHECK(moved > 0);
  }
  // NaN in x reaches W's gradient where an argmax reads it (as the dense product would): column c = 0.
  for (std::int64_t o = 0; o < m; ++o) REQUIRE(argmax[((0 * m + o) * Hp + 0) * Wp + 0] == 0);
  std::vector<float> gx, dw, db;
  run(nchw, true, gx, dw, db);
  for (std::int64_t o = 0; o < m; ++o)
    for (std::int64_t c = 0; c < C; ++c) CHECK(std::isnan(dw[o * C + c]) == (c == 0));
}
