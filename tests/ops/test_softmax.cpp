// ops::softmax / log_softmax forward and backward: reference, gradients, strided axes, errors, GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kdloss/ops/softmax.hpp"
#include "ops/softmax_gpu.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

// Naive double softmax of a row-major [outer, n, inner] tensor along the middle axis.
std::vector<double> ref_softmax(const std::vector<double>& x, std::int64_t outer, std::int64_t n, std::int64_t inner,
                                double t, double scale, bool log_form) {
  std::vector<double> y(x.size());
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t i = 0; i < inner; ++i) {
      double m = -INFINITY, z = 0;
      for (std::int64_t j = 0; j < n; ++j) m = std::max(m, x[(o * n + j) * inner + i] / t);
      for (std::int64_t j = 0; j < n; ++j) z += std::exp(x[(o * n + j) * inner + i] / t - m);
      for (std::int64_t j = 0; j < n; ++j) {
        const double v = x[(o * n + j) * inner + i] / t - m - std::log(z);
        y[(o * n + j) * inner + i] = log_form ? v : scale * std::exp(v);
      }
    }
  return y;
}

}  // namespace

TEST_CASE("softmax and log_softmax along every axis match the double reference") {
  const Dims shape{3, 4, 5};
  const auto x = random_vector<double>(60, 1, -3, 3);
  for (int axis = 0; axis < 3; ++axis)
    for (bool log_form : {false, true}) {
      CAPTURE(axis);
      std::int64_t outer = 1, inner = 1;
      for (int d = 0; d < axis; ++d) outer *= shape[d];
      for (int d = axis + 1; d < 3; ++d) inner *= shape[d];
      const auto want = ref_softmax(x, outer, shape[axis], inner, 0.7, 2.5, log_form);
      std::vector<double> y(60);
      if (log_form) ops::log_softmax(host_view(x.data(), shape), axis, host_view(y.data(), shape), {0.7});
      else ops::softmax(host_view(x.data(), shape), axis, host_view(y.data(), shape), {0.7, 2.5});
      check_close(y, want, 1e-13, 1e-15);
    }
}

TEST_CASE("softmax is stable for large logits and exact for a single class") {
  std::vector<float> x{1000.f, 1001.f, -1000.f}, y(3);
  ops::softmax(host_view(x.data(), {1, 3}), 1, host_view(y.data(), {1, 3}));
  CHECK(kdloss_test::all_finite(y));
  CHECK(y[1] == doctest::Approx(1 / (1 + std::exp(-1.0))).epsilon(1e-6));
  std::vector<float> one{5.f}, p(1);
  ops::softmax(host_view(one.data(), {1, 1}), 1, host_view(p.data(), {1, 1}), {1.0, 7.0});
  CHECK(p[0] == 7.0f);
}

TEST_CASE("softmax and log_softmax backward equal central differences") {
  const Dims shape{2, 5, 3};
  const auto x = random_vector<double>(30, 2, -2, 2);
  const auto g = random_vector<double>(30, 3);
  for (bool log_form : {false, true}) {
    for (int axis : {1, 2}) {
      CAPTURE(axis);
      std::int64_t outer = 1, inner = 1;
      for (int d = 0; d < axis; ++d) outer *= shape[d];
      for (int d = axis + 1; d < 3; ++d) inner *= shape[d];
      auto objective = [&](const std::vector<double>& xv) {
        const auto y = ref_softmax(xv, outer, shape[axis], inner, 0.5, 3.0, log_form);
        double acc = 0;
        for (std::size_t i = 0; i < y.size(); ++i) acc += y[i] * g[i];
        return acc;
      };
      const auto want = kdloss_test::numeric_gradient(x, objective);
      const auto y = ref_softmax(x, outer, shape[axis], inner, 0.5, 3.0, log_form);
      std::vector<double> dx(30);
      if (log_form)
        ops::log_softmax_backward(host_view(y.data(), shape), host_view(g.data(), shape), axis,
                                  host_view(dx.data(), shape), {0.5});
      else
        ops::softmax_backward(host_view(y.data(), shape), host_view(g.data(), shape), axis, host_view(dx.data(), shape),
                              {0.5, 3.0});
      check_close(dx, want, 1e-7, 1e-9, "grad");
    }
  }
}

TEST_CASE("softmax over a strided (channel-last) axis equals the contiguous result") {
  const Dims shape{2, 6, 3, 4};
  const auto x = random_vector<double>(144, 4);
  std::vector<double> want(144);
  ops::softmax(host_view(x.data(), shape), 1, host_view(want.data(), shape), {0.3});
  const auto x_nhwc = kdloss_test::relayout(x, shape, {0, 2, 3, 1});
  std::vector<double> zeros(144, 0.0);
  auto y_nhwc = kdloss_test::relayout(zeros, shape, {0, 2, 3, 1}, 2);
  ops::softmax(View<const double>(x_nhwc.view), 1, y_nhwc.view, {0.3});
  check_close(kdloss_test::to_vector(y_nhwc.view), want, 1e-14, 0);
}

TEST_CASE("softmax rejects bad arguments and writes nothing") {
  std::vector<float> x(12, 1.f), y(12, 9.f);
  auto expect = [&](auto&& call, const std::string& needle) {
    kdloss_test::expect_error(call, needle, [&] { for (float v : y) REQUIRE(v == 9.f); });
  };
  expect([&] { ops::softmax(host_view(x.data(), {3, 4}), 2, host_view(y.data(), {3, 4})); }, "'axis' is 2");
  expect([&] { ops::softmax(host_view(x.data(), {3, 4}), 1, host_view(y.data(), {4, 3})); }, "'out' has shape [4, 3]");
  expect([&] { ops::softmax(host_view(x.data(), {3, 4}), 1, host_view(y.data(), {3, 4}), {0.0}); },
         "'options.temperature' must be > 0");
  expect([&] { ops::softmax(host_view(x.data(), {3, 4}), 1, host_view(y.data(), {3, 4}, {0, 1})); },
         "addresses some element twice");
  expect([&] { ops::softmax(host_view(x.data(), {3, 4}), 1, host_view(x.data(), {3, 4})); }, "overlaps");
}

#if KDLOSS_TEST_CUDA
namespace {
/// The CPU double run of softmax-op `op` (see softmax_op_on_gpu) on x and g.
std::vector<double> softmax_op_on_cpu(int op, const std::vector<double>& x, const std::vector<double>& g,
                                      const Dims& shape) {
  std::vector<double> want(x.size());
  if (op == 0) ops::softmax(host_view(x.data(), shape), 1, host_view(want.data(), shape), {0.5, 3.0});
  if (op == 1) ops::log_softmax(host_view(x.data(), shape), 1, host_view(want.data(), shape), {0.5});
  if (op == 2)
    ops::softmax_backward(host_view(x.data(), shape), host_view(g.data(), shape), 1, host_view(want.data(), shape),
                          {0.5, 3.0});
  if (op == 3)
    ops::log_softmax_backward(host_view(x.data(), shape), host_view(g.data(), shape), 1, host_view(want.data(), shape),
                              {0.5});
  return want;
}

/// A float bound on |GPU - reference| per element of softmax-op `op` over rows along axis 1 of
/// [B, L, R], from the inputs already rounded to float. A row sum on the GPU adds about L/32 (warp rows,
/// L < 2048) or L/256 (block rows) terms per thread in sequence, then a tree of at most 8 levels:
/// gamma = (terms + 10) 2^-24 relative to the sum of the terms' magnitudes. The backward's row sum
/// cancels against g, so its error is gamma times the magnitudes, not times the result.
std::vector<double> softmax_op_float_bound(int op, const std::vector<double>& x, const std::vector<double>& g,
                                           const Dims& shape, const std::vector<double>& want) {
  const std::int64_t B = shape[0], L = shape[1], R = shape[2];
  const double u = std::ldexp(1.0, -24), T = 0.5, s = 3.0;
  const double gamma = (double((L < 2048 ? (L + 31) / 32 : (L + 255) / 256)) + 10) * u;
  std::vector<double> bound(x.size());
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t r = 0; r < R; ++r) {
      const auto at = [&](std::int64_t j) { return static_cast<std::size_t>((b * L + j) * R + r); };
      double sum_abs_gy = 0, sum_abs_g = 0;
      for (std::int64_t j = 0; j < L; ++j) sum_abs_gy += std::fabs(g[at(j)] * x[at(j)]), sum_abs_g += std::fabs(g[at(j)]);
      for (std::int64_t j = 0; j < L; ++j) {
        const std::size_t i = at(j);
        if (op == 0) bound[i] = (gamma + 40 * u) * std::fabs(want[i]);  // exp of an argument up to 16, over a positive sum
        if (op == 1) bound[i] = gamma + 32 * u * (1 + std::fabs(want[i]));  // x/T - max - log(sum), each up to 16
        if (op == 2) bound[i] = std::fabs(x[i]) / T * (gamma * sum_abs_gy / s + 4 * u * std::fabs(g[i]));
        if (op == 3) bound[i] = (std::exp(x[i]) * gamma * sum_abs_g + 4 * u * std::fabs(g[i])) / T;
      }
    }
  return bound;
}
}  // namespace
#endif

KDLOSS_GPU_TEST("softmax ops: GPU agrees with CPU for short (warp) and long (block) rows, float/double/half/bf16") {
#if KDLOSS_TEST_CUDA
  for (Dims shape : {Dims{4, 37, 5}, Dims{2, 5000, 3}, Dims{2, 70000, 1}}) {
    CAPTURE(shape.str());
    const auto n = static_cast<std::size_t>(shape.product());
    const auto x = random_vector<double>(n, 5, -4, 4);
    const auto g = random_vector<double>(n, 6);
    // The float run sees the inputs rounded to float: its reference is the double run on those.
    std::vector<double> x32(n), g32(n);
    for (std::size_t i = 0; i < n; ++i) x32[i] = static_cast<float>(x[i]), g32[i] = static_cast<float>(g[i]);
    for (int op = 0; op < 4; ++op) {
      CAPTURE(op);
      const auto got64 = kdloss_test::softmax_op_on_gpu(op, /*dtype double*/ 1, x, g, shape);
      check_close(got64, softmax_op_on_cpu(op, x, g, shape), 1e-12, 1e-15, "double");
      const auto got32 = kdloss_test::softmax_op_on_gpu(op, 0, x, g, shape);
      const auto want32 = softmax_op_on_cpu(op, x32, g32, shape);
      const auto bound = softmax_op_float_bound(op, x32, g32, shape, want32);
      std::size_t bad = 0;
      for (std::size_t i = 0; i < n; ++i) bad += !(std::fabs(got32[i] - want32[i]) <= bound[i]);
      CHECK_MESSAGE(bad == 0, bad, " float elements outside their rounding bound");
      // half / bfloat16: read into float, computed in float (acc_t), the result rounded once to the
      // format. The reference is the double run on the inputs as the format holds them; the bound is
      // the float bound on those plus the output's rounding, u |want| (u = 2^-11 half, 2^-8 bf16),
      // and half's subnormal spacing / 2 = 2^-25 below 2^-14. g is scaled by 1/8 so that the
      // log-softmax backward's exp(y) sum(g) / T (up to ~5e4 on the 70000-long rows) stays inside
      // half's range (65504).
      std::vector<double> g8(n);
      for (std::size_t i = 0; i < n; ++i) g8[i] = g[i] / 8;
      for (int dtype : {2, 3}) {
        CAPTURE(dtype);
        const auto xr = kdloss_test::as_gpu_dtype(dtype, x), gr = kdloss_test::as_gpu_dtype(dtype, g8);
        const auto got = kdloss_test::softmax_op_on_gpu(op, dtype, x, g8, shape);
        const auto want = softmax_op_on_cpu(op, xr, gr, shape);
        const auto fb = softmax_op_float_bound(op, xr, gr, shape, want);
        const double u = std::ldexp(1.0, dtype == 2 ? -11 : -8), floor = dtype == 2 ? std::ldexp(1.0, -25) : 0.0;
        std::size_t low_bad = 0;
        for (std::size_t i = 0; i < n; ++i)
          low_bad += !(std::fabs(got[i] - want[i]) <= fb[i] + u * std::fabs(want[i]) + floor);
        CHECK_MESSAGE(low_bad == 0, low_bad, " low-precision elements outside their rounding bound");
      }
    }
  }
#endif
}

TEST_CASE("softmax entry points: Args + Mode, forward_backward = forward then backward, check writes nothing") {
  const Dims shape{3, 5, 2};
  const auto x = random_vector<double>(30, 21, -3, 3), g = random_vector<double>(30, 22);
  for (bool log_form : {false, true}) {
    CAPTURE(log_form);
    std::vector<double> y(30), gx(30), y2(30, -9), gx2(30, -9);
    if (log_form) {
      ops::log_softmax(host_view(x.data(), shape), 1, host_view(y.data(), shape), {0.7});
      ops::log_softmax_backward(host_view(y.data(), shape), host_view(g.data(), shape), 1, host_view(gx.data(), shape),
                                {0.7});
      ops::LogSoftmaxArgs<double> a{host_view(x.data(), shape), 1, host_view(y2.data(), shape), {},
                                    host_view(g.data(), shape), host_view(gx2.data(), shape), {0.7}};
      CHECK(ops::log_softmax_workspace_bytes(a) == 0);
      ops::log_softmax(a, Mode::forward_backward);
    } else {
      ops::softmax(host_view(x.data(), shape), 1, host_view(y.data(), shape), {0.7, 2.5});
      ops::softmax_backward(host_view(y.data(), shape), host_view(g.data(), shape), 1, host_view(gx.data(), shape),
                            {0.7, 2.5});
      std::vector<double> y3(30), gx3(30);
      ops::softmax_forward_backward(host_view(x.data(), shape), host_view(g.data(), shape), 1,
                                    host_view(y3.data(), shape), host_view(gx3.data(), shape), {0.7, 2.5});
      CHECK(y3 == y);
      CHECK(gx3 == gx);
      ops::SoftmaxArgs<double> a{host_view(x.data(), shape), 1, host_view(y2.data(), shape), {},
                                 host_view(g.data(), shape), host_view(gx2.data(), shape), {0.7, 2.5}};
      CHECK(ops::softmax_workspace_bytes(a) == 0);
      ops::softmax(a, Mode::forward_backward);
    }
    CHECK(y2 == y);
    CHECK(gx2 == gx);
  }
  // Each mode checks what it reads and writes, and names the entry point by its mode.
  std::vector<float> xf(12, 1.f), yf(12, 9.f), gf(12, 1.f);
  ops::SoftmaxArgs<float> a;
  a.x = host_view<const float>(xf.data(), {3, 4});
  a.axis = 1;
  a.grad_x = host_view(yf.data(), {3, 4});
  auto untouched = [&] { for (float v : yf) REQUIRE(v == 9.f); };
  kdloss_test::expect_error([&] { ops::softmax(a, Mode::forward); }, "kdloss::ops::softmax: argument 'out' is absent",
                            untouched);
  kdloss_test::expect_error([&] { ops::softmax_check(a, Mode::backward); },
                            "kdloss::ops::softmax_backward: argument 'y' is absent", untouched);
  a.y = host_view<const float>(xf.data(), {3, 4});
  kdloss_test::expect_error([&] { ops::softmax(a, Mode::backward); }, "argument 'grad_out' is absent", untouched);
  a.grad_out = host_view<const float>(gf.data(), {4, 3});
  kdloss_test::expect_error([&] { ops::softmax(a, Mode::backward); }, "arguments 'grad_out' [4, 3] and 'y' [3, 4]",
                            untouched);
  a.grad_out = host_view<const float>(gf.data(), {3, 4});
  a.options.scale = 0;
  kdloss_test::expect_error([&] { ops::softmax(a, Mode::backward); }, "'options.scale' must be non-zero", untouched);
  a.options.scale = 1;
  a.out = host_view(gf.data(), {3, 4});
  kdloss_test::expect_error([&] { ops::softmax(a, Mode::forward_backward); },
                            "softmax_forward_backward: output argument 'out' overlaps the memory of argument 'grad_out'",
                            untouched);
}

TEST_CASE("softmax ops: NaN and +-inf propagate as torch.softmax / log_softmax and their autograd") {
  // A NaN or +inf in a row makes the whole row NaN (max and sum see it); -inf entries are legal (0 or
  // -inf) unless the whole row is -inf (NaN). Backward: y * (g - sum(g * y)) and g - exp(y) * sum(g),
  // so a NaN in y or g reaches its whole row, and an inf upstream entry gives inf and NaN as autograd.
  const double nan = std::nan(""), inf = HUGE_VAL;
  const std::vector<double> x = {nan, 1,    2,   3,  //
                                 inf, 1,    2,   3,    -inf, 1,    2,    3,  //
                                 -inf, -inf, -inf, -inf, 0.5, -1, 0.25, 2};
  const Dims shape{5, 4};
  const std::vector<double> g = {1, 2, 3, 4, 1, 2, 3, 4, 1, inf, 3, 4, 1, 2, 3, 4, nan, 2, 3, 4};
  for (bool log_form : {false, true}) {
    CAPTURE(log_form);
    const auto want_y = ref_softmax(x, 5, 4, 1, 0.5, 2.0, log_form);
    std::vector<double> want_gx(20);
    for (int r = 0; r < 5; ++r) {
      double acc = 0;
      for (int j = 0; j < 4; ++j) acc += log_form ? g[r * 4 + j] : g[r * 4 + j] * want_y[r * 4 + j];
      for (int j = 0; j < 4; ++j) {
        const double yj = want_y[r * 4 + j], gj = g[r * 4 + j];
        want_gx[r * 4 + j] = log_form ? 2.0 * (gj - std::exp(yj) * acc) : 2.0 * yj * (gj - acc / 2.0);
      }
    }
    std::vector<double> y(20), gx(20);
    std::vector<float> yf(20), gxf(20);
    const std::vector<float> xf(x.begin(), x.end()), gf(g.begin(), g.end());
    if (log_form) {
      ops::log_softmax_forward_backward(host_view(x.data(), shape), host_view(g.data(), shape), 1,
                                        host_view(y.data(), shape), host_view(gx.data(), shape), {0.5});
      ops::log_softmax_forward_backward(host_view(xf.data(), shape), host_view(gf.data(), shape), 1,
                                        host_view(yf.data(), shape), host_view(gxf.data(), shape), {0.5});
    } else {
      ops::softmax_forward_backward(host_view(x.data(), shape), host_view(g.data(), shape), 1,
                                    host_view(y.data(), shape), host_view(gx.data(), shape), {0.5, 2.0});
      ops::softmax_forward_backward(host_view(xf.data(), shape), host_view(gf.data(), shape), 1,
                                    host_view(yf.data(), shape), host_view(gxf.data(), shape), {0.5, 2.0});
    }
    kdloss_test::check_same_nonfinite(y, want_y, 1e-14, 1e-15, "y");
    kdloss_test::check_same_nonfinite(gx, want_gx, 1e-13, 1e-14, "grad_x");
    kdloss_test::check_same_nonfinite(yf, want_y, 1e-6, 1e-7, "float y");
    kdloss_test::check_same_nonfinite(gxf, want_gx, 1e-5, 1e-6, "float grad_x");
    // The same rows along axis 0 (strided rows, the column path).
    std::vector<double> xt(20), yt(20);
    for (int r = 0; r < 5; ++r)
      for (int j = 0; j < 4; ++j) xt[j * 5 + r] = x[r * 4 + j];
    if (log_form)
      ops::log_softmax(host_view(xt.data(), {4, 5}), 0, host_view(yt.data(), {4, 5}), {0.5});
    else
      ops::softmax(host_view(xt.data(), {4, 5}), 0, host_view(yt.data(), {4, 5}), {0.5, 2.0});
    std::vector<double> back(20);
    for (int r = 0; r < 5; ++r)
      for (int j = 0; j < 4; ++j) back[r * 4 + j] = yt[j * 5 + r];
    kdloss_test::check_same_nonfinite(back, want_y, 1e-14, 1e-15, "y along axis 0");
  }
}
