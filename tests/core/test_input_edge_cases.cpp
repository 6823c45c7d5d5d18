// Issue 12 §5 (a): non-finite inputs (docs/conventions.md "Non-finite inputs") for the entry points
// whose own test files had no such case: ops::gaussian_filter (as torch's conv2d with a Gaussian
// kernel: a NaN or inf reaches exactly the outputs whose window covers it) and ssim_pyramid_loss (a
// level's NaN makes the value NaN and stays in that level's gradient). The others have theirs:
//   mse/l1/smooth_l1: losses/feature/test_pointwise.cpp   distance: test_distance.cpp   KL: test_kl_div.cpp
//   fbkd maps, masks: losses/fbkd/test_masks.cpp   L_AT (both forms): test_attention_transfer.cpp
//   L_AM: test_masked_feature.cpp   total_loss: test_total.cpp
//   ssim_loss, ssim_map, nu, ssim_index, ms_ssim, ms_ssim_l1_loss: losses/ssim/test_ssim_nonfinite.cpp
//   softmax, log_softmax: ops/test_softmax.cpp   pooling means: ops/test_pooling.cpp
//   matmul: ops/test_matmul.cpp   linear: ops/test_linear.cpp
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kdloss/losses/ssim/ssim.hpp"
#include "kdloss/ops/filter.hpp"

namespace {

using kdloss::Dims;
using kdloss::host_view;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN(), kInf = std::numeric_limits<double>::infinity();

std::vector<double> ramp(std::size_t n, double step) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::sin(step * static_cast<double>(i));
  return v;
}

/// Filter (or its adjoint) of x in double.
std::vector<double> filtered(const std::vector<double>& x, const Dims& in, const Dims& out, kdloss::ops::Padding pad,
                             bool adjoint) {
  std::vector<double> y(static_cast<std::size_t>(out.product()));
  const kdloss::ops::FilterOptions o{7, 1.5, pad};
  if (adjoint)
    kdloss::ops::gaussian_filter_backward(host_view<const double>(x.data(), in), host_view(y.data(), out), o);
  else
    kdloss::ops::gaussian_filter(host_view<const double>(x.data(), in), host_view(y.data(), out), o);
  return y;
}

}  // namespace

TEST_CASE("gaussian_filter: NaN and +-inf reach exactly the outputs whose window covers them (forward and adjoint)") {
  using kdloss::ops::Padding;
  for (Padding pad : {Padding::reflect, Padding::zeros, Padding::valid})
    for (bool adjoint : {false, true}) {
      const std::string pad_name = kdloss::ops::to_string(pad);
      CAPTURE(pad_name);
      CAPTURE(adjoint);
      const Dims big{1, 2, 19, 17}, small = pad == Padding::valid ? Dims{1, 2, 13, 11} : big;
      const Dims in = adjoint ? small : big, out = adjoint ? big : small;
      const auto n = static_cast<std::size_t>(in.product());
      const auto x = ramp(n, 0.37);
      const auto clean = filtered(x, in, out, pad, adjoint);
      // Where each of two elements reaches: the filter of its indicator is > 0 there (positive taps).
      const std::size_t at_a = 1 * 19 * 17 / (adjoint ? 2 : 1) % n, at_b = at_a + 3;
      std::vector<double> ind_a(n, 0.0), ind_b(n, 0.0);
      ind_a[at_a] = 1, ind_b[at_b] = 1;
      const auto reach_a = filtered(ind_a, in, out, pad, adjoint), reach_b = filtered(ind_b, in, out, pad, adjoint);
      std::size_t reached = 0;
      for (double r : reach_a) reached += r > 0;
      REQUIRE(reached > 0);  // the element is read (a corner: by one valid output, by 4 x 4 or more padded ones)
      struct Case {
        double a, b;
      };
      for (Case c : {Case{kNaN, 0.5}, Case{kInf, 0.5}, Case{-kInf, 0.5}, Case{kInf, -kInf}}) {
        CAPTURE(c.a);
        CAPTURE(c.b);
        auto xs = x;
        xs[at_a] = c.a;
        xs[at_b] = c.b == 0.5 ? xs[at_b] : c.b;
        const auto got = filtered(xs, in, out, pad, adjoint);
        std::size_t bad = 0;
        for (std::size_t i = 0; i < got.size(); ++i) {
          const bool ra = reach_a[i] > 0, rb = reach_b[i] > 0 && c.b != 0.5;
          double want = clean[i];
          if (std::isnan(c.a) && ra) want = kNaN;
          else if (ra && rb) want = kNaN;  // inf - inf
          else if (ra) want = c.a;
          else if (rb) want = c.b;
          const bool ok = std::isnan(want) ? std::isnan(got[i]) : std::isinf(want) ? got[i] == want : got[i] == clean[i];
          bad += !ok;
        }
        CHECK_MESSAGE(bad == 0, bad, " outputs break the rule");
      }
    }
}

TEST_CASE("ssim_pyramid_loss: a NaN or inf in one level makes the value NaN; the other level's gradient stays finite") {
  const Dims p0{1, 2, 24, 20}, p1{1, 2, 12, 10};
  for (double bad : {kNaN, kInf, -kInf}) {
    CAPTURE(bad);
    auto s0 = ramp(static_cast<std::size_t>(p0.product()), 0.11), t0 = ramp(s0.size(), 0.13);
    auto s1 = ramp(static_cast<std::size_t>(p1.product()), 0.17), t1 = ramp(s1.size(), 0.19);
    s1[37] = bad;
    std::vector<double> g0(s0.size(), 9.0), g1(s1.size(), 9.0);
    double value = 0;
    kdloss::ssim::SsimPyramidLossArgs<double> a;
    a.students = {host_view<const double>(s0.data(), p0), host_view<const double>(s1.data(), p1)};
    a.teachers = {host_view<const double>(t0.data(), p0), host_view<const double>(t1.data(), p1)};
    a.out = kdloss::host_scalar(&value);
    a.grad_students = {host_view(g0.data(), p0), host_view(g1.data(), p1)};
    kdloss::ssim::ssim_pyramid_loss(a, kdloss::Mode::forward_backward);
    CHECK(std::isnan(value));
    std::size_t finite0 = 0, finite1 = 0;
    for (double g : g0) finite0 += std::isfinite(g);
    for (double g : g1) finite1 += std::isfinite(g);
    CHECK(finite0 == g0.size());
    CHECK(finite1 < g1.size());      // the windows around the bad element are not finite
    CHECK(finite1 >= g1.size() / 2);  // its level's other channel (and the far part of its own) is
  }
}
