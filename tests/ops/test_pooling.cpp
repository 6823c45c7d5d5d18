// ops::mean_over_channels / mean_over_positions (plain and abs) with their backward: reference,
// central differences, layouts, bad inputs, CPU/GPU agreement.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "kdloss/ops/pooling.hpp"
#include "losses/fbkd/fbkd_gpu.hpp"
#include "reference/losses/fbkd.hpp"
#include "reference/ops/pooling.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

kdloss_ref::ops::Shape ref_shape(const Dims& d) { return {d[0], d[1], d[2], d[3]}; }

// op 0: over channels, op 1: over positions.
std::vector<double> ref_pool(int op, const std::vector<double>& x, const Dims& shape, bool absolute) {
  return op == 0 ? kdloss_ref::ops::mean_over_channels(x, ref_shape(shape), absolute)
                 : kdloss_ref::ops::mean_over_positions(x, ref_shape(shape), absolute);
}
Dims pooled_shape(int op, const Dims& x, bool rank4) {
  if (op == 0) return rank4 ? Dims{x[0], 1, x[2], x[3]} : Dims{x[0], x[2], x[3]};
  return rank4 ? Dims{x[0], x[1], 1, 1} : Dims{x[0], x[1]};
}
template <class T>
void pool(int op, View<const T> x, View<T> out, bool absolute) {
  if (op == 0)
    ops::mean_over_channels(x, out, {absolute});
  else
    ops::mean_over_positions(x, out, {absolute});
}
template <class T>
void pool_backward(int op, View<const T> x, View<const T> g, View<T> gx, bool absolute) {
  if (op == 0)
    ops::mean_over_channels_backward(x, g, gx, {absolute});
  else
    ops::mean_over_positions_backward(x, g, gx, {absolute});
}

}  // namespace

TEST_CASE("pooling: means over channels and positions match the double reference (float and double)") {
  // {2, 3, 70, 65}: 4550 positions, more than one block of the host pass per image.
  for (Dims shape : {Dims{2, 5, 4, 3}, Dims{1, 1, 1, 1}, Dims{3, 1, 2, 7}, Dims{2, 6, 1, 1}, Dims{2, 3, 70, 65}}) {
    const auto n = static_cast<std::size_t>(shape.product());
    const auto xd = random_vector<double>(n, 1);
    const std::vector<float> xf(xd.begin(), xd.end());
    for (int op : {0, 1})
      for (bool absolute : {false, true})
        for (bool rank4 : {false, true}) {
          CAPTURE(op);
          CAPTURE(absolute);
          CAPTURE(shape.str());
          const auto want = ref_pool(op, xd, shape, absolute);
          std::vector<double> got_d(want.size(), -1);
          std::vector<float> got_f(want.size(), -1);
          pool<double>(op, host_view(xd.data(), shape), host_view(got_d.data(), pooled_shape(op, shape, rank4)),
                       absolute);
          pool<float>(op, host_view(xf.data(), shape), host_view(got_f.data(), pooled_shape(op, shape, rank4)),
                      absolute);
          check_close(got_d, want, 1e-13, 1e-15);
          check_close(got_f, want, 1e-5, 1e-6);
        }
  }
}

TEST_CASE("pooling: backward equals central differences of <g, pool(x)> (double)") {
  const Dims shape{2, 3, 4, 5};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto x = random_vector<double>(n, 2);
  for (int op : {0, 1})
    for (bool absolute : {false, true}) {
      CAPTURE(op);
      CAPTURE(absolute);
      const auto g = random_vector<double>(ref_pool(op, x, shape, absolute).size(), 3);
      auto objective = [&](const std::vector<double>& xv) {
        const auto y = ref_pool(op, xv, shape, absolute);
        double acc = 0;
        for (std::size_t i = 0; i < y.size(); ++i) acc += y[i] * g[i];
        return acc;
      };
      const auto want = kdloss_test::numeric_gradient(x, objective);
      std::vector<double> got(n, -1);
      pool_backward<double>(op, host_view(x.data(), shape), host_view(g.data(), pooled_shape(op, shape, false)),
                            host_view(got.data(), shape), absolute);
      check_close(got, want, 1e-7, 1e-10, "grad");
    }
  // sign(0) = 0: a zero input gets no gradient through |x|.
  std::vector<double> zeros(n, 0.0), g(2 * 4 * 5, 1.0), got(n, -1);
  ops::mean_over_channels_backward(host_view(zeros.data(), shape), host_view(g.data(), {2, 4, 5}),
                                   host_view(got.data(), shape), {true});
  for (double v : got) CHECK(v == 0.0);
}

TEST_CASE(
    "pooling: channel-last, padded, sliced and broadcast inputs and strided outputs equal the contiguous result") {
  const Dims shape{2, 6, 4, 5};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto x = random_vector<double>(n, 4);
  const auto x_nhwc = kdloss_test::relayout(x, shape, {0, 2, 3, 1});
  const auto x_pad = kdloss_test::relayout(x, shape, {0, 1, 2, 3}, 3);
  for (int op : {0, 1})
    for (bool absolute : {false, true}) {
      CAPTURE(op);
      CAPTURE(absolute);
      const Dims out_shape = pooled_shape(op, shape, false);
      const auto m = static_cast<std::size_t>(out_shape.product());
      std::vector<double> want(m), got1(m), got2(m);
      pool<double>(op, host_view(x.data(), shape), host_view(want.data(), out_shape), absolute);
      pool<double>(op, View<const double>(x_nhwc.view), host_view(got1.data(), out_shape), absolute);
      // Output written through a transposed (strided) view.
      std::vector<double> zeros(m, 0.0);
      auto out_t =
          kdloss_test::relayout(zeros, out_shape, op == 0 ? std::vector<int>{2, 1, 0} : std::vector<int>{1, 0});
      pool<double>(op, View<const double>(x_pad.view), out_t.view, absolute);
      check_close(got1, want, 1e-14, 1e-15);
      check_close(kdloss_test::to_vector(out_t.view), want, 1e-14, 1e-15);
      // Backward through a channel-last gradient view and a broadcast upstream gradient.
      const auto g = random_vector<double>(m, 5);
      std::vector<double> gx_want(n), gx0(n, 0.0);
      pool_backward<double>(op, host_view(x.data(), shape), host_view(g.data(), out_shape),
                            host_view(gx_want.data(), shape), absolute);
      auto gx_nhwc = kdloss_test::relayout(gx0, shape, {0, 2, 3, 1});
      pool_backward<double>(op, View<const double>(x_nhwc.view), host_view(g.data(), out_shape), gx_nhwc.view,
                            absolute);
      check_close(kdloss_test::to_vector(gx_nhwc.view), gx_want, 1e-14, 1e-15, "grad");
    }
  // A channel slice with a step, and an input broadcast along the batch (stride 0).
  const auto big = random_vector<double>(2 * 12 * 4 * 5, 6);
  auto sliced = host_view(big.data(), {2, 12, 4, 5}).slice(1, 1, 12, 2);  // 6 channels
  const auto sliced_copy = kdloss_test::to_vector(sliced);
  const auto one = random_vector<double>(6 * 4 * 5, 7);
  auto bcast = host_view(one.data(), shape, {0, 20, 5, 1});
  const auto bcast_copy = kdloss_test::to_vector(bcast);
  for (int op : {0, 1}) {
    const Dims out_shape = pooled_shape(op, shape, true);
    const auto m = static_cast<std::size_t>(out_shape.product());
    std::vector<double> want(m), got(m), want_b(m), got_b(m);
    pool<double>(op, host_view(sliced_copy.data(), shape), host_view(want.data(), out_shape), true);
    pool<double>(op, View<const double>(sliced), host_view(got.data(), out_shape), true);
    pool<double>(op, host_view(bcast_copy.data(), shape), host_view(want_b.data(), out_shape), false);
    pool<double>(op, View<const double>(bcast), host_view(got_b.data(), out_shape), false);
    check_close(got, want, 1e-14, 1e-15);
    check_close(got_b, want_b, 1e-14, 1e-15);
  }
}

TEST_CASE("pooling: pool_sums takes sums of several inputs over both axes in one pass (layouts, multi-block)") {
  const Dims shape{2, 3, 70, 65};  // 4550 positions: two host blocks per image
  const std::int64_t nb = 2, nc = 3, np = 70 * 65;
  const auto n = static_cast<std::size_t>(shape.product());
  const auto x = random_vector<double>(n, 11), y = random_vector<double>(n, 12);
  const auto x_pad = kdloss_test::relayout(x, shape, {0, 1, 2, 3}, 3);  // padded rows: positions not mergeable
  const auto y_nhwc = kdloss_test::relayout(y, shape, {0, 2, 3, 1});
  // Naive double sums: |x| and x*y over channels, y and x*y over positions.
  std::vector<double> abs_c(static_cast<std::size_t>(nb * np)), xy_c(abs_c.size());
  std::vector<double> y_p(static_cast<std::size_t>(nb * nc)), xy_p(y_p.size());
  for (std::int64_t b = 0; b < nb; ++b)
    for (std::int64_t c = 0; c < nc; ++c)
      for (std::int64_t j = 0; j < np; ++j) {
        const auto i = static_cast<std::size_t>((b * nc + c) * np + j);
        abs_c[static_cast<std::size_t>(b * np + j)] += std::fabs(x[i]);
        xy_c[static_cast<std::size_t>(b * np + j)] += x[i] * y[i];
        y_p[static_cast<std::size_t>(b * nc + c)] += y[i];
        xy_p[static_cast<std::size_t>(b * nc + c)] += x[i] * y[i];
      }
  const auto x_nhwc = kdloss_test::relayout(x, shape, {0, 2, 3, 1});
  const Dims sp{nb, 1, 70, 65}, ch{nb, nc, 1, 1};
  auto product = [](const auto& a, const auto& b) { return a * b; };
  using ops::detail::MeanTerm;
  using ops::detail::OnInputs;
  using Product = decltype(product);
  // Mixed layouts walk channel by channel; all channel-last inputs walk position by position.
  for (const auto* xv : {&x_pad.view, &x_nhwc.view}) {
    CAPTURE(xv == &x_nhwc.view);
    std::vector<double> g_abs_c(abs_c.size(), -1), g_xy_c(abs_c.size(), -1), g_y_p(y_p.size(), -1),
        g_xy_p(y_p.size(), -1);
    detail::pool_sums<double>(
        Device::host(), Stream{}, shape, std::tuple{View<const double>(*xv), View<const double>(y_nhwc.view)},
        std::tuple{expr::PoolTerm<OnInputs<MeanTerm<true>, 0>, double>{{{1.0}}, host_view(g_abs_c.data(), sp),
                                                                      expr::PoolAxis::channels},
                   expr::PoolTerm<Product, double>{product, host_view(g_xy_c.data(), sp), expr::PoolAxis::channels},
                   expr::PoolTerm<OnInputs<MeanTerm<false>, 1>, double>{{{1.0}}, host_view(g_y_p.data(), ch),
                                                                       expr::PoolAxis::positions},
                   expr::PoolTerm<Product, double>{product, host_view(g_xy_p.data(), ch), expr::PoolAxis::positions},
                   expr::PoolTerm<Product, double>{product, View<double>{}, expr::PoolAxis::positions}});
    check_close(g_abs_c, abs_c, 1e-13, 1e-13, "|x| over channels");
    check_close(g_xy_c, xy_c, 1e-13, 1e-13, "x*y over channels");
    check_close(g_y_p, y_p, 1e-12, 1e-12, "y over positions");
    check_close(g_xy_p, xy_p, 1e-12, 1e-12, "x*y over positions");
  }
}

TEST_CASE("pooling: bad inputs throw a clear error and leave outputs untouched") {
  const Dims shape{2, 3, 4, 5};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto x = random_vector<float>(n, 8);
  std::vector<float> out(n, 42.0f), gx(n, 42.0f);
  auto xv = host_view(x.data(), shape);
  auto untouched = [&] {
    for (float v : out) REQUIRE(v == 42.0f);
    for (float v : gx) REQUIRE(v == 42.0f);
  };
  auto throws_with = [&](auto&& call, const std::string& needle) { kdloss_test::expect_error(call, needle, untouched); };
  throws_with(
      [&] {
        ops::mean_over_channels(host_view(x.data(), {2, 3, 20}), host_view(out.data(), {2, 20}));
      },
      "kdloss::ops::mean_over_channels: argument 'x' must have rank 4 but has shape [2, 3, 20]");
  throws_with(
      [&] {
        ops::mean_over_channels(xv, host_view(out.data(), {2, 3, 4, 5}));
      },
      "argument 'out' has shape [2, 3, 4, 5] but expected [2, 1, 4, 5] or [2, 4, 5]");
  throws_with(
      [&] {
        ops::mean_over_positions(xv, host_view(out.data(), {2, 4}));
      },
      "kdloss::ops::mean_over_positions: argument 'out' has shape [2, 4] but expected [2, 3] or [2, 3, 1, 1]");
  throws_with(
      [&] {
        ops::mean_over_positions(host_view(static_cast<const float*>(nullptr), shape), host_view(out.data(), {2, 3}));
      },
      "argument 'x' has a null data pointer");
  throws_with(
      [&] {
        ops::mean_over_positions(xv, host_view(out.data(), {2, 3}, {0, 1}));
      },
      "output argument 'out' with shape [2, 3] and strides [0, 1] addresses some element twice");
  throws_with(
      [&] {
        ops::mean_over_positions(xv, cuda_view(out.data(), {2, 3}));
      },
      "argument 'out' is on cuda:0 but the call runs on host");
  throws_with(
      [&] {
        ops::mean_over_channels(host_view(x.data(), {2, 0, 4, 5}), host_view(out.data(), {2, 4, 5}));
      },
      "has no channels to average over");
  {
    std::vector<float> x_copy = x;
    auto xm = host_view(x_copy.data(), shape);
    try {
      ops::mean_over_positions(View<const float>(xm), xm.slice(1, 0, 1).with({2, 3}, {60, 1}));
      FAIL("aliased output accepted");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("'out' overlaps the memory of argument 'x'") != std::string::npos);
    }
    CHECK(x_copy == x);
  }
  std::vector<float> g(2 * 4 * 5, 1.0f);
  throws_with(
      [&] {
        ops::mean_over_channels_backward(xv, host_view(g.data(), {2, 5, 4}), host_view(gx.data(), shape));
      },
      "argument 'grad_out' has shape [2, 5, 4] but expected [2, 1, 4, 5] or [2, 4, 5]");
  throws_with(
      [&] {
        ops::mean_over_channels_backward(xv, host_view(g.data(), {2, 4, 5}), host_view(gx.data(), {2, 3, 20}));
      },
      "argument 'grad_x' has shape [2, 3, 20] but expected [2, 3, 4, 5]");
  throws_with(
      [&] {
        ops::mean_over_channels_backward(xv, host_view(g.data(), {2, 4, 5}),
                                         host_view(gx.data(), shape, {0, 20, 5, 1}));
      },
      "'grad_x' with shape [2, 3, 4, 5] and strides [0, 20, 5, 1] addresses some element twice");
  throws_with(
      [&] {
        ops::mean_over_channels_backward(xv, host_view(gx.data(), {2, 4, 5}), host_view(gx.data(), shape));
      },
      "'grad_x' overlaps the memory of argument 'grad_out'");
#if !KDLOSS_CUDA_ENABLED
  throws_with(
      [&] {
        ops::mean_over_channels(cuda_view(x.data(), shape), cuda_view(out.data(), {2, 4, 5}));
      },
      "compiled without CUDA");
#endif
}

KDLOSS_GPU_TEST("pooling: GPU agrees with CPU (float, double; half and bfloat16 inputs)") {
#if KDLOSS_TEST_CUDA
  // 3000 positions: long reductions take the block-per-output path on the GPU.
  for (Dims shape : {Dims{2, 7, 5, 6}, Dims{2, 3, 50, 60}, Dims{1, 300, 2, 2}}) {
    const auto n = static_cast<std::size_t>(shape.product());
    const auto x = random_vector<double>(n, 9);
    for (int op = 0; op < 4; ++op)
      for (bool absolute : {false, true}) {
        CAPTURE(op);
        CAPTURE(absolute);
        CAPTURE(shape.str());
        const int fwd = op % 2;
        const auto g = random_vector<double>(ref_pool(fwd, x, shape, absolute).size(), 10);
        std::vector<double> want;
        if (op < 2) {
          want = ref_pool(op, x, shape, absolute);
        } else {
          want.assign(n, 0.0);
          pool_backward<double>(fwd, host_view(x.data(), shape), host_view(g.data(), pooled_shape(fwd, shape, false)),
                                host_view(want.data(), shape), absolute);
        }
        check_close(kdloss_test::pooling_on_gpu(op, 1, x, g, shape, absolute), want, 1e-12, 1e-15, "double");
        check_close(kdloss_test::pooling_on_gpu(op, 0, x, g, shape, absolute), want, 1e-5, 1e-6, "float");
        // half / bfloat16: inputs and outputs rounded to 11 / 8 significant bits.
        check_close(kdloss_test::pooling_on_gpu(op, 2, x, g, shape, absolute), want, 1e-2, 1e-3, "half");
        check_close(kdloss_test::pooling_on_gpu(op, 3, x, g, shape, absolute), want, 3e-2, 1e-2, "bfloat16");
      }
  }
#endif
}

TEST_CASE("pooling entry points: Args + Mode, forward_backward = forward then backward, check writes nothing") {
  const Dims shape{2, 3, 4, 5};
  const auto x = random_vector<double>(120, 31);
  for (int op = 0; op < 2; ++op)
    for (bool absolute : {false, true}) {
      CAPTURE(op);
      CAPTURE(absolute);
      const Dims map = pooled_shape(op, shape, false);
      const auto g = random_vector<double>(static_cast<std::size_t>(map.product()), 32);
      std::vector<double> out(g.size()), gx(120), out2(g.size(), -9), gx2(120, -9);
      pool<double>(op, host_view(x.data(), shape), host_view(out.data(), map), absolute);
      pool_backward<double>(op, host_view(x.data(), shape), host_view(g.data(), map), host_view(gx.data(), shape),
                            absolute);
      ops::MeanArgs<double> a{host_view(x.data(), shape), host_view(out2.data(), map), host_view(g.data(), map),
                              host_view(gx2.data(), shape), {absolute}};
      if (op == 0) {
        CHECK(ops::mean_over_channels_workspace_bytes(a) == 0);
        ops::mean_over_channels(a, Mode::forward_backward);
      } else {
        CHECK(ops::mean_over_positions_workspace_bytes(a) == 0);
        ops::mean_over_positions(a, Mode::forward_backward);
      }
      CHECK(out2 == out);
      CHECK(gx2 == gx);
      std::vector<double> out3(g.size()), gx3(120);
      if (op == 0)
        ops::mean_over_channels_forward_backward(host_view(x.data(), shape), host_view(g.data(), map),
                                                 host_view(out3.data(), map), host_view(gx3.data(), shape),
                                                 {absolute});
      else
        ops::mean_over_positions_forward_backward(host_view(x.data(), shape), host_view(g.data(), map),
                                                  host_view(out3.data(), map), host_view(gx3.data(), shape),
                                                  {absolute});
      CHECK(out3 == out);
      CHECK(gx3 == gx);
    }
  std::vector<float> xf(120, 1.f), of(20, 9.f), gf(120, 9.f);
  ops::MeanOverChannelsArgs<float> a;
  a.x = host_view<const float>(xf.data(), shape);
  a.out = host_view(of.data(), {2, 4, 5});
  auto untouched = [&] {
    for (float v : of) REQUIRE(v == 9.f);
    for (float v : gf) REQUIRE(v == 9.f);
  };
  kdloss_test::expect_error([&] { ops::mean_over_channels(a, Mode::forward_backward); },
                            "kdloss::ops::mean_over_channels_forward_backward: argument 'grad_out' is absent",
                            untouched);
  a.grad_out = host_view<const float>(xf.data(), {2, 4, 5});
  kdloss_test::expect_error([&] { ops::mean_over_channels_check(a, Mode::backward); },
                            "kdloss::ops::mean_over_channels_backward: argument 'grad_x' is absent", untouched);
  a.grad_x = host_view(gf.data(), shape);
  a.out = host_view(gf.data(), {2, 4, 5});
  kdloss_test::expect_error([&] { ops::mean_over_channels(a, Mode::forward_backward); },
                            "output argument 'grad_x' overlaps the memory of argument 'out'", untouched);
}

TEST_CASE("pooling: NaN and +-inf propagate as torch.mean (of abs) and its autograd") {
  // Forward: the mean sees every entry (inf - inf = NaN). Backward: g / n broadcast, times sgn(x) for
  // the abs form with sgn(0) = sgn(NaN) = 0 (PyTorch's abs backward): a NaN x gets no gradient
  // through |x|, a NaN or inf upstream entry reaches its whole broadcast.
  const Dims shape{2, 3, 4, 5};
  auto x = random_vector<double>(120, 95);
  x[7] = std::nan("");
  x[30] = HUGE_VAL;
  x[50] = -HUGE_VAL;
  x[51] = HUGE_VAL;  // same (b, c) as 50: +inf - inf in the plain mean over positions
  x[90] = 0;
  for (int op = 0; op < 2; ++op)
    for (bool absolute : {false, true}) {
      CAPTURE(op);
      CAPTURE(absolute);
      const Dims map = pooled_shape(op, shape, false);
      auto g = random_vector<double>(static_cast<std::size_t>(map.product()), 96);
      g[1] = std::nan("");
      g[4] = HUGE_VAL;
      std::vector<double> out(g.size()), gx(120);
      const std::vector<float> xf(x.begin(), x.end()), gf(g.begin(), g.end());
      std::vector<float> outf(g.size()), gxf(120);
      if (op == 0) {
        ops::mean_over_channels_forward_backward(host_view(x.data(), shape), host_view(g.data(), map),
                                                 host_view(out.data(), map), host_view(gx.data(), shape), {absolute});
        ops::mean_over_channels_forward_backward(host_view(xf.data(), shape), host_view(gf.data(), map),
                                                 host_view(outf.data(), map), host_view(gxf.data(), shape),
                                                 {absolute});
      } else {
        ops::mean_over_positions_forward_backward(host_view(x.data(), shape), host_view(g.data(), map),
                                                  host_view(out.data(), map), host_view(gx.data(), shape), {absolute});
        ops::mean_over_positions_forward_backward(host_view(xf.data(), shape), host_view(gf.data(), map),
                                                  host_view(outf.data(), map), host_view(gxf.data(), shape),
                                                  {absolute});
      }
      const auto want = ref_pool(op, x, shape, absolute);
      std::vector<double> want_gx(120);
      for (std::int64_t b = 0; b < 2; ++b)
        for (std::int64_t c = 0; c < 3; ++c)
          for (std::int64_t p = 0; p < 20; ++p) {
            const std::int64_t k = (b * 3 + c) * 20 + p;
            const double up = op == 0 ? g[b * 20 + p] / 3.0 : g[b * 3 + c] / 20.0;
            want_gx[k] = absolute ? kdloss_ref::fbkd::sgn(x[k]) * up : up;
          }
      kdloss_test::check_same_nonfinite(out, want, 1e-14, 1e-15, "out");
      kdloss_test::check_same_nonfinite(gx, want_gx, 1e-14, 1e-15, "grad_x");
      kdloss_test::check_same_nonfinite(outf, want, 1e-6, 1e-7, "float out");
      kdloss_test::check_same_nonfinite(gxf, want_gx, 1e-6, 1e-7, "float grad_x");
    }
}
