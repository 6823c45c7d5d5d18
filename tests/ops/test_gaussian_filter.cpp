// ops::gaussian_window and ops::gaussian_filter / _backward: window values, every padding against a
// direct 2-D window sum over an explicitly padded copy, the adjoint identity <Gx, y> = <x, G^T y>,
// strided inputs, tiny maps, bad input, CPU/GPU agreement.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kdloss/ops/filter.hpp"
#include "losses/ssim/ssim_gpu.hpp"
#include "reference/losses/ssim.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;
namespace ref = kdloss_ref::ssim;

namespace {

const ops::Padding kPaddings[] = {ops::Padding::reflect, ops::Padding::zeros, ops::Padding::valid};

ref::Pad ref_pad(ops::Padding p) {
  return p == ops::Padding::reflect ? ref::Pad::reflect : p == ops::Padding::zeros ? ref::Pad::zeros : ref::Pad::valid;
}

/// Direct 2-D filter of every plane: the mu_x statistic of the SSIM reference.
std::vector<double> reference_filter(const std::vector<double>& x, const Dims& s, int window, double sigma,
                                     ops::Padding pad) {
  std::vector<double> out;
  const std::int64_t hw = s[2] * s[3];
  for (std::int64_t p = 0; p < s[0] * s[1]; ++p) {
    const auto st = ref::plane_stats(x.data() + p * hw, x.data() + p * hw, s[2], s[3], window, sigma, ref_pad(pad), false);
    out.insert(out.end(), st.mx.begin(), st.mx.end());
  }
  return out;
}

Dims filtered(const Dims& s, int window, ops::Padding pad) {
  if (pad != ops::Padding::valid) return s;
  return Dims{s[0], s[1], s[2] - window + 1, s[3] - window + 1};
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double t = 0;
  for (std::size_t i = 0; i < a.size(); ++i) t += a[i] * b[i];
  return t;
}

}  // namespace

TEST_CASE("gaussian_window is kornia's normalised Gaussian") {
  // Size 3, sigma 1: weights e^{-1/2}, 1, e^{-1/2} over their sum 1 + 2 e^{-1/2}.
  const auto w = ops::gaussian_window(3, 1.0);
  const double e = std::exp(-0.5), total = 1 + 2 * e;
  CHECK(w[0] == doctest::Approx(e / total).epsilon(1e-15));
  CHECK(w[1] == doctest::Approx(1 / total).epsilon(1e-15));
  for (int size = 3; size <= 15; size += 2) {
    const auto g = ops::gaussian_window(size, 1.5);
    double sum = 0;
    for (int i = 0; i < size; ++i) {
      sum += g[i];
      CHECK(g[i] == g[size - 1 - i]);
    }
    CHECK(sum == doctest::Approx(1.0).epsilon(1e-14));
    check_close(g, ref::gauss(size, 1.5), 1e-15, 0, "window");
  }
}

TEST_CASE("gaussian_filter matches a direct 2-D window sum (every padding, windows 3 to 15, float and double)") {
  const Dims shapes[] = {Dims{2, 3, 17, 23}, Dims{1, 2, 15, 16}, Dims{1, 1, 31, 15}};
  for (const Dims& shape : shapes)
    for (ops::Padding pad : kPaddings)
      for (int window = 3; window <= 15; window += 2) {
        if (pad == ops::Padding::valid && (shape[2] < window || shape[3] < window)) continue;
        CAPTURE(shape.str());
        const std::string pad_name = ops::to_string(pad);
        CAPTURE(pad_name);
        CAPTURE(window);
        const auto n = static_cast<std::size_t>(shape.product());
        const auto x = random_vector<double>(n, 1 + window);
        const double sigma = 0.8 + 0.1 * window;
        const Dims fs = filtered(shape, window, pad);
        const auto want = reference_filter(x, shape, window, sigma, pad);
        std::vector<double> got(static_cast<std::size_t>(fs.product()));
        ops::gaussian_filter(host_view(x.data(), shape), host_view(got.data(), fs), {window, sigma, pad});
        check_close(got, want, 1e-12, 1e-14, "double");
        const std::vector<float> xf(x.begin(), x.end());
        std::vector<float> gotf(got.size());
        ops::gaussian_filter(host_view(xf.data(), shape), host_view(gotf.data(), fs), {window, sigma, pad});
        check_close(gotf, want, 1e-5, 1e-6, "float");
      }
}

TEST_CASE("gaussian_filter_backward is the adjoint: <G x, y> = <x, G^T y> (reflect fold, zeros, valid crop)") {
  for (const Dims& shape : {Dims{1, 2, 19, 13}, Dims{2, 1, 4, 9}, Dims{1, 1, 2, 3}, Dims{1, 1, 1, 7}})
    for (ops::Padding pad : kPaddings)
      for (int window = 3; window <= 15; window += 2) {
        if (pad == ops::Padding::valid && (shape[2] < window || shape[3] < window)) continue;
        CAPTURE(shape.str());
        const std::string pad_name = ops::to_string(pad);
        CAPTURE(pad_name);
        CAPTURE(window);
        const Dims fs = filtered(shape, window, pad);
        const auto x = random_vector<double>(static_cast<std::size_t>(shape.product()), 7);
        const auto y = random_vector<double>(static_cast<std::size_t>(fs.product()), 8);
        std::vector<double> gx(y.size()), gty(x.size());
        const ops::FilterOptions o{window, 1.5, pad};
        ops::gaussian_filter(host_view(x.data(), shape), host_view(gx.data(), fs), o);
        ops::gaussian_filter_backward(host_view(y.data(), fs), host_view(gty.data(), shape), o);
        const double lhs = dot(gx, y), rhs = dot(x, gty);
        CHECK(lhs == doctest::Approx(rhs).epsilon(1e-12));
        CHECK(kdloss_test::all_finite(gty));
      }
}

TEST_CASE("gaussian_filter on maps smaller than the half window reflects repeatedly (numpy.pad 'reflect')") {
  // PyTorch's reflect pad refuses pads >= the size; kdloss keeps reflecting, and a 1-pixel axis
  // repeats its pixel: a 1 x 1 map filtered by any normalised window is unchanged.
  const std::vector<double> one{3.25};
  double out = 0;
  ops::gaussian_filter(host_view(one.data(), {1, 1}), host_view(&out, {1, 1}), {15, 1.5, ops::Padding::reflect});
  CHECK(out == doctest::Approx(3.25).epsilon(1e-15));
  for (const Dims& shape : {Dims{1, 1, 2, 5}, Dims{1, 1, 3, 3}, Dims{1, 2, 1, 4}}) {
    const auto x = random_vector<double>(static_cast<std::size_t>(shape.product()), 9);
    std::vector<double> got(x.size());
    ops::gaussian_filter(host_view(x.data(), shape), host_view(got.data(), shape), {11, 1.5, ops::Padding::reflect});
    check_close(got, reference_filter(x, shape, 11, 1.5, ops::Padding::reflect), 1e-13, 1e-15);
  }
}

TEST_CASE("gaussian_filter: rank 2 and 3 views, channel-last and padded strides equal contiguous copies") {
  const Dims shape{2, 3, 12, 14};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto x = random_vector<double>(n, 10);
  std::vector<double> want(n), got(n);
  ops::gaussian_filter(host_view(x.data(), shape), host_view(want.data(), shape), {5, 1.0, ops::Padding::reflect});
  const auto nhwc = kdloss_test::relayout(x, shape, {0, 2, 3, 1}, 2);
  auto out_nhwc = kdloss_test::relayout(got, shape, {0, 3, 2, 1});
  ops::gaussian_filter(View<const double>(nhwc.view), out_nhwc.view, {5, 1.0, ops::Padding::reflect});
  check_close(kdloss_test::to_vector(out_nhwc.view), want, 1e-14, 1e-15);
  // The first plane as a rank-2 view, and the first image as rank 3.
  std::vector<double> plane(12 * 14), image(3 * 12 * 14);
  ops::gaussian_filter(host_view(x.data(), {12, 14}), host_view(plane.data(), {12, 14}), {5, 1.0, ops::Padding::reflect});
  ops::gaussian_filter(host_view(x.data(), {3, 12, 14}), host_view(image.data(), {3, 12, 14}), {5, 1.0, ops::Padding::reflect});
  check_close(plane, std::vector<double>(want.begin(), want.begin() + 12 * 14), 1e-15, 0);
  check_close(image, std::vector<double>(want.begin(), want.begin() + 3 * 12 * 14), 1e-15, 0);
}

TEST_CASE("gaussian_filter: bad input throws a clear error and leaves the output untouched") {
  const Dims shape{1, 2, 8, 8};
  const auto x = random_vector<float>(128, 11);
  std::vector<float> out(128, 42.0f);
  auto xv = host_view(x.data(), shape);
  auto ov = host_view(out.data(), shape);
  auto throws_with = [&](auto&& call, const std::string& needle) {
    kdloss_test::expect_error(call, needle, [&] { for (float v : out) REQUIRE(v == 42.0f); });
  };
  throws_with([&] { ops::gaussian_filter(xv, ov, {4, 1.5, ops::Padding::reflect}); }, "'window_size' must be odd but is 4");
  throws_with([&] { ops::gaussian_filter(xv, ov, {17, 1.5, ops::Padding::reflect}); }, "'window_size' must be in [3, 15]");
  throws_with([&] { ops::gaussian_filter(xv, ov, {5, -1.0, ops::Padding::reflect}); }, "'sigma' must be finite and > 0");
  throws_with([&] { ops::gaussian_filter(xv, host_view(out.data(), {1, 2, 1, 1}), {9, 1.5, ops::Padding::valid}); },
              "'valid' padding needs maps of at least 9x9");
  throws_with([&] { ops::gaussian_filter(xv, host_view(out.data(), {1, 2, 8, 7})); }, "argument 'out' has shape [1, 2, 8, 7]");
  throws_with([&] { ops::gaussian_filter(xv, host_view(out.data(), {1, 2, 8, 8}, {128, 0, 8, 1})); },
              "addresses some element twice");
  CHECK_THROWS_AS(ops::gaussian_window(6, 1.0), Error);
}

KDLOSS_GPU_TEST("gaussian_filter: GPU agrees with CPU (forward and adjoint, every padding, float/double/half/bf16)") {
#if KDLOSS_TEST_CUDA
  const Dims shape{2, 3, 37, 45};
  const auto x = random_vector<double>(static_cast<std::size_t>(shape.product()), 12);
  for (ops::Padding pad : kPaddings)
    for (int window : {3, 11, 15}) {
      const std::string pad_name = ops::to_string(pad);
        CAPTURE(pad_name);
      CAPTURE(window);
      const Dims fs = filtered(shape, window, pad);
      const auto want = reference_filter(x, shape, window, 1.5, pad);
      // The padding crosses to the .cu file as its value (option types are per kind of translation unit).
      const auto on_gpu = [&](int dtype, const std::vector<double>& in, bool adjoint) {
        return kdloss_test::filter_on_gpu(dtype, in, shape, window, 1.5, static_cast<int>(pad), adjoint);
      };
      check_close(on_gpu(1, x, false), want, 1e-12, 1e-14, "double");
      check_close(on_gpu(0, x, false), want, 1e-5, 1e-6, "float");
      check_close(on_gpu(2, x, false), want, 2e-2, 2e-3, "half");
      // bfloat16: the reference filters the input as bf16 holds it; the GPU runs two float passes of at
      // most 15 products of float-rounded weights (summing to 1) and |x| <= 1, an error below
      // 2 * 17 * 2^-24 ~ 2e-6 (4e-6 allowed), then rounds the result once to bf16 (2^-8 relative).
      const auto want_bf16 = reference_filter(kdloss_test::as_gpu_dtype(3, x), shape, window, 1.5, pad);
      check_close(on_gpu(3, x, false), want_bf16, std::ldexp(1.0, -8), 4e-6, "bfloat16");
      const auto y = random_vector<double>(static_cast<std::size_t>(fs.product()), 13);
      std::vector<double> adj(x.size());
      ops::gaussian_filter_backward(host_view(y.data(), fs), host_view(adj.data(), shape), {window, 1.5, pad});
      check_close(on_gpu(1, y, true), adj, 1e-12, 1e-14, "adjoint");
    }
#endif
}

TEST_CASE("gaussian_filter entry shape: Args, _check, _workspace_bytes, one run per Mode") {
  const Dims shape{2, 3, 13, 17};
  const auto x = random_vector<double>(static_cast<std::size_t>(shape.product()), 21);
  const auto g = random_vector<double>(static_cast<std::size_t>(shape.product()), 22);
  std::vector<double> out(x.size(), 7.0), gx(x.size(), 7.0), want_out(x.size()), want_gx(x.size());
  ops::gaussian_filter(host_view(x.data(), shape), host_view(want_out.data(), shape));
  ops::gaussian_filter_backward(host_view(g.data(), shape), host_view(want_gx.data(), shape));
  ops::GaussianFilterArgs<double> a;
  a.x = host_view(x.data(), shape);
  a.out = host_view(out.data(), shape);
  a.grad_out = host_view(g.data(), shape);
  a.grad_x = host_view(gx.data(), shape);
  CHECK(ops::gaussian_filter_workspace_bytes(a) == ops::gaussian_filter_workspace_bytes(host_view(x.data(), shape)));
  ops::gaussian_filter_check(a, Mode::forward_backward);
  ops::gaussian_filter(a, Mode::forward_backward);
  check_close(out, want_out, 1e-15, 1e-15, "forward_backward value");
  check_close(gx, want_gx, 1e-15, 1e-15, "forward_backward gradient");
  // Backward needs no x: the unfiltered shape comes from grad_x.
  ops::GaussianFilterArgs<double> b;
  b.grad_out = a.grad_out;
  b.grad_x = a.grad_x;
  std::fill(gx.begin(), gx.end(), 7.0);
  ops::gaussian_filter(b, Mode::backward);
  check_close(gx, want_gx, 1e-15, 1e-15, "backward without x");
  // A forward without x, or an output aliasing grad_out, throws and writes nothing.
  std::fill(out.begin(), out.end(), 7.0);
  kdloss_test::expect_error([&] { ops::gaussian_filter(b, Mode::forward); }, "argument 'x' is absent",
                            [&] { for (double v : out) REQUIRE(v == 7.0); });
  ops::GaussianFilterArgs<double> c = a;
  c.out = host_view(const_cast<double*>(g.data()), shape);
  kdloss_test::expect_error([&] { ops::gaussian_filter_check(c, Mode::forward_backward); }, "overlap",
                            [&] { for (std::size_t i = 0; i < gx.size(); ++i) REQUIRE(gx[i] == want_gx[i]); });
}
