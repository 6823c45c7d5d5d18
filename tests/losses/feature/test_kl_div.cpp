// Temperature KL divergence between logits: values, gradients, class axes and layouts, degenerate
// and bad inputs, CPU/GPU agreement.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kdloss/losses/feature/kl_div.hpp"
#include "losses/feature/kl_div_gpu.hpp"
#include "losses/feature/nonfinite.hpp"
#include "reference/losses/feature.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

const Reduction kReductions[] = {Reduction::batchmean, Reduction::sum, Reduction::mean, Reduction::none};

kdloss_ref::KlRed ref_red(Reduction r) {
  switch (r) {
    case Reduction::none:
      return kdloss_ref::KlRed::none;
    case Reduction::sum:
      return kdloss_ref::KlRed::sum;
    case Reduction::mean:
      return kdloss_ref::KlRed::mean;
    default:
      return kdloss_ref::KlRed::batchmean;
  }
}
std::vector<std::int64_t> dims(const Dims& d) { return std::vector<std::int64_t>(d.v.begin(), d.v.begin() + d.rank); }

std::vector<double> ref_value(const std::vector<double>& s, const std::vector<double>& t, const Dims& shape, int axis,
                              double temp, Reduction r) {
  return kdloss_ref::kl_div(s, t, dims(shape), axis, temp, ref_red(r));
}
std::vector<double> ref_grad(const std::vector<double>& s, const std::vector<double>& t, const Dims& shape, int axis,
                             double temp, Reduction r, const std::vector<double>& up) {
  return kdloss_ref::kl_div_grad(s, t, dims(shape), axis, temp, ref_red(r), up);
}

[[maybe_unused]] double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}
template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

/// Forward on contiguous host buffers; returns one element or the map.
template <class T>
std::vector<T> forward(const std::vector<T>& s, const std::vector<T>& t, const Dims& shape, int axis, double temp,
                       Reduction r) {
  const bool none = r == Reduction::none;
  std::vector<T> out(none ? s.size() : 1, T(-7));
  kl_div_loss(host_view(s.data(), shape), host_view(t.data(), shape),
              none ? host_view(out.data(), shape) : host_scalar(out.data()), {temp, axis, r});
  return out;
}
template <class T>
std::vector<T> backward(const std::vector<T>& s, const std::vector<T>& t, const Dims& shape, int axis, double temp,
                        Reduction r, const std::vector<T>& up) {
  std::vector<T> g(s.size(), T(-7));
  kl_div_loss_backward(host_view(s.data(), shape), host_view(t.data(), shape),
                       r == Reduction::none ? host_view(up.data(), shape) : host_scalar(up.data()),
                       host_view(g.data(), shape), {temp, axis, r});
  return g;
}

}  // namespace

TEST_CASE("kl_div_loss matches the double reference (every reduction, temperature and class axis)") {
  struct Case {
    Dims shape;
    int axis;
  };
  for (Case c : {Case{{2, 5, 3, 4}, 0}, Case{{2, 5, 3, 4}, 1}, Case{{2, 5, 3, 4}, 2}, Case{{2, 5, 3, 4}, 3},
                 Case{{6, 10}, 1}, Case{{7}, 0}, Case{{3, 80}, 1}})
    for (double temp : {1.0, 4.0, 0.5, 3.0})
      for (Reduction r : kReductions) {
        CAPTURE(c.shape.str());
        CAPTURE(c.axis);
        CAPTURE(temp);
        CAPTURE(std::string(to_string(r)));
        const auto n = static_cast<std::size_t>(c.shape.product());
        const auto s = random_vector<double>(n, 1, -3, 3), t = random_vector<double>(n, 2, -3, 3);
        const auto want = ref_value(s, t, c.shape, c.axis, temp, r);
        check_close(forward(s, t, c.shape, c.axis, temp, r), want, 1e-12, 1e-14 * temp * temp, "double");
        // float: the reference on the float-rounded logits; 1e-5 relative (DESIGN, fp32). Elements of the
        // none map can sit near 0 (p_t (log p_t - log p_s) changes sign), hence the absolute floor there.
        const auto sf = cast<float>(s), tf = cast<float>(t);
        const auto want_f = ref_value(as_double(sf), as_double(tf), c.shape, c.axis, temp, r);
        check_close(forward(sf, tf, c.shape, c.axis, temp, r), want_f, 1e-5,
                    r == Reduction::none ? 1e-7 * temp * temp : 0.0, "float");
      }
}

TEST_CASE("kl_div_loss reductions relate as PyTorch defines them") {
  const Dims shape{3, 7, 2, 5};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<double>(n, 3, -2, 2), t = random_vector<double>(n, 4, -2, 2);
  const double sum = forward(s, t, shape, 1, 2.0, Reduction::sum)[0];
  CHECK(forward(s, t, shape, 1, 2.0, Reduction::batchmean)[0] == doctest::Approx(sum / 3).epsilon(1e-14));
  CHECK(forward(s, t, shape, 1, 2.0, Reduction::mean)[0] == doctest::Approx(sum / double(n)).epsilon(1e-14));
  double map_sum = 0;
  for (double v : forward(s, t, shape, 1, 2.0, Reduction::none)) map_sum += v;
  CHECK(map_sum == doctest::Approx(sum).epsilon(1e-13));
  CHECK(sum > 0);
}

TEST_CASE("kl_div_loss gradients equal central differences of the reference (double, every reduction)") {
  struct Case {
    Dims shape;
    int axis;
  };
  for (Case c : {Case{{2, 4, 3, 2}, 1}, Case{{3, 6}, 1}, Case{{4, 3, 2}, 0}, Case{{2, 3, 5}, 2}})
    for (double temp : {1.0, 3.0})
      for (Reduction r : kReductions) {
        CAPTURE(c.shape.str());
        CAPTURE(c.axis);
        CAPTURE(temp);
        CAPTURE(std::string(to_string(r)));
        const auto n = static_cast<std::size_t>(c.shape.product());
        const auto s = random_vector<double>(n, 5, -2, 2), t = random_vector<double>(n, 6, -2, 2);
        // Upstream: a random scalar for a reduced loss, a random map for none; differentiate <up, loss>.
        const auto up = r == Reduction::none ? random_vector<double>(n, 7) : std::vector<double>{-0.6};
        auto objective = [&](const std::vector<double>& x) {
          const auto v = ref_value(x, t, c.shape, c.axis, temp, r);
          double acc = 0;
          for (std::size_t i = 0; i < v.size(); ++i) acc += v[i] * up[i];
          return acc;
        };
        // h = 1e-5: the objective is O(1-10), so h = 1e-6 would leave ~1e-9 of round-off in the differences.
        const auto want = kdloss_test::numeric_gradient(s, objective, 1e-5);
        check_close(backward(s, t, c.shape, c.axis, temp, r, up), want, 1e-7, 1e-9, "backward");
        // The analytic reference the float and GPU cases use agrees too.
        check_close(ref_grad(s, t, c.shape, c.axis, temp, r, up), want, 1e-7, 1e-9, "reference");
        // forward_backward: the gradient of the value itself (of the map's sum for none).
        const std::vector<double> ones(up.size(), 1.0);
        auto unit_objective = [&](const std::vector<double>& x) {
          double acc = 0;
          for (double v : ref_value(x, t, c.shape, c.axis, temp, r)) acc += v;
          return acc;
        };
        const auto want_unit = kdloss_test::numeric_gradient(s, unit_objective, 1e-5);
        const bool none = r == Reduction::none;
        std::vector<double> value(none ? n : 1), g(n);
        kl_div_loss_forward_backward(host_view(s.data(), c.shape), host_view(t.data(), c.shape),
                                     none ? host_view(value.data(), c.shape) : host_scalar(value.data()),
                                     host_view(g.data(), c.shape), {temp, c.axis, r});
        check_close(g, want_unit, 1e-7, 1e-9, "fused grad");
        check_close(value, ref_value(s, t, c.shape, c.axis, temp, r), 1e-12, 1e-14, "fused value");
      }
}

TEST_CASE("kl_div_loss float gradients match the double reference; fused equals forward then backward") {
  const Dims shape{4, 19, 3, 5};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<float>(n, 8, -3, 3), t = random_vector<float>(n, 9, -3, 3);
  for (double temp : {1.0, 4.0})
    for (Reduction r : kReductions) {
      CAPTURE(temp);
      CAPTURE(std::string(to_string(r)));
      const bool none = r == Reduction::none;
      const std::vector<float> ones(none ? n : 1, 1.0f);
      const auto want = ref_grad(as_double(s), as_double(t), shape, 1, temp, r, as_double(ones));
      const auto v1 = forward(s, t, shape, 1, temp, r);
      const auto g1 = backward(s, t, shape, 1, temp, r, ones);
      std::vector<float> v2(v1.size()), g2(n);
      kl_div_loss_forward_backward(host_view(s.data(), shape), host_view(t.data(), shape),
                                   none ? host_view(v2.data(), shape) : host_scalar(v2.data()),
                                   host_view(g2.data(), shape), {temp, 1, r});
      // fp32 gradients: 1e-5 relative, with an absolute floor at float resolution of T * max|p_s - p_t| * scale.
      double scale = temp * (r == Reduction::batchmean ? 1.0 / 4 : r == Reduction::mean ? 1.0 / double(n) : 1.0);
      check_close(g1, want, 1e-5, 1e-7 * scale, "backward");
      check_close(g2, want, 1e-5, 1e-7 * scale, "fused");
      check_close(v2, v1, 1e-6, 0, "fused vs split value");
      // For none the split backward takes an upstream map, T * (p_s * sum_k u_k p_t_k - u_j p_t_j), which
      // rounds differently from the fused T * (p_s - p_t) where p_s ~ p_t: an absolute floor there.
      check_close(g2, g1, 1e-6, none ? 1e-7 * temp : 0.0, "fused vs split grad");
    }
}

TEST_CASE("kl_div_loss: channel-last, permuted, padded, sliced and broadcast logits equal their contiguous copies") {
  const Dims shape{2, 6, 4, 5};  // [B, C, H, W], class axis 1
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<double>(n, 10, -3, 3), t = random_vector<double>(n, 11, -3, 3);
  const std::vector<double> zeros(n, 0.0);
  for (Reduction r : kReductions) {
    CAPTURE(std::string(to_string(r)));
    const bool none = r == Reduction::none;
    const auto up = none ? random_vector<double>(n, 12) : std::vector<double>{1.3};
    const auto want_v = forward(s, t, shape, 1, 2.0, r);
    const auto want_g = backward(s, t, shape, 1, 2.0, r, up);
    const std::vector<std::vector<int>> layouts{{0, 2, 3, 1}, {3, 2, 1, 0}, {1, 0, 3, 2}, {0, 1, 2, 3}};
    for (const auto& order : layouts) {
      CAPTURE(order[0]);
      CAPTURE(order[3]);
      const std::int64_t pad = order == layouts[3] ? 3 : 0;
      const auto sl = kdloss_test::relayout(s, shape, order, pad), tl = kdloss_test::relayout(t, shape, order);
      auto ol = kdloss_test::relayout(zeros, shape, order, pad);
      auto gl = kdloss_test::relayout(zeros, shape, order, pad);
      const auto ul = kdloss_test::relayout(up, none ? shape : Dims{}, order, 0);
      double scalar = -1;
      kl_div_loss(View<const double>(sl.view), View<const double>(tl.view), none ? ol.view : host_scalar(&scalar), {2.0, 1, r});
      check_close(none ? kdloss_test::to_vector(ol.view) : std::vector<double>{scalar}, want_v, 1e-12, 1e-15, "value");
      kl_div_loss_backward(View<const double>(sl.view), View<const double>(tl.view),
                           none ? View<const double>(ul.view) : host_scalar(up.data()), gl.view, {2.0, 1, r});
      check_close(kdloss_test::to_vector(gl.view), want_g, 1e-12, 1e-15, "grad");
    }
  }
  // Logically permuted views: NHWC memory seen as NCHW with class axis 1 equals NHWC with class axis 3.
  {
    const Dims nhwc{2, 4, 5, 6};
    double a = 0, b = 0;
    kl_div_loss(host_view(s.data(), nhwc), host_view(t.data(), nhwc), host_scalar(&a), {2.0, 3});
    kl_div_loss(host_view(s.data(), nhwc).permute({0, 3, 1, 2}), host_view(t.data(), nhwc).permute({0, 3, 1, 2}),
                host_scalar(&b), {2.0, 1});
    CHECK(b == doctest::Approx(a).epsilon(1e-13));
  }
  // A slice with a step along the classes and the batch, and a teacher broadcast over H (stride 0).
  const auto big = random_vector<double>(4 * 12 * 4 * 5, 13, -3, 3);
  auto sliced = host_view(big.data(), {4, 12, 4, 5}).slice(1, 1, 12, 2).slice(0, 0, 4, 2);  // [2, 6, 4, 5]
  const auto sliced_copy = kdloss_test::to_vector(sliced);
  const auto t_row = random_vector<double>(2 * 6 * 1 * 5, 14, -3, 3);
  auto t_bcast = host_view(t_row.data(), shape, {30, 5, 0, 1});
  const auto t_bcast_copy = kdloss_test::to_vector(t_bcast);
  for (Reduction r : kReductions) {
    CAPTURE(std::string(to_string(r)));
    const bool none = r == Reduction::none;
    std::vector<double> v1(none ? n : 1), v2(none ? n : 1), g1(n), g2(n);
    kl_div_loss_forward_backward(host_view(sliced_copy.data(), shape), host_view(t_bcast_copy.data(), shape),
                                 none ? host_view(v1.data(), shape) : host_scalar(v1.data()),
                                 host_view(g1.data(), shape), {0.7, 1, r});
    kl_div_loss_forward_backward(View<const double>(sliced), View<const double>(t_bcast),
                                 none ? host_view(v2.data(), shape) : host_scalar(v2.data()),
                                 host_view(g2.data(), shape), {0.7, 1, r});
    check_close(v2, v1, 1e-13, 1e-15, "value");
    check_close(g2, g1, 1e-13, 1e-15, "grad");
    check_close(v1, ref_value(sliced_copy, t_bcast_copy, shape, 1, 0.7, r), 1e-12, 1e-14, "reference");
  }
}

TEST_CASE("kl_div_loss degenerate inputs: identical logits, one class, zero logits, H = W = 1, large logits") {
  for (Dims shape : {Dims{2, 5, 3, 4}, Dims{2, 5, 1, 1}, Dims{2, 1, 3, 4}, Dims{1, 1, 1, 1}})
    for (double temp : {1.0, 3.0})
      for (Reduction r : kReductions) {
        CAPTURE(shape.str());
        CAPTURE(std::string(to_string(r)));
        const auto n = static_cast<std::size_t>(shape.product());
        const auto x = random_vector<float>(n, 15, -5, 5);
        const auto y = random_vector<float>(n, 16, -5, 5);
        const std::vector<float> zeros(n, 0.0f);
        const bool none = r == Reduction::none;
        // S = T, all-zero logits (S = T = 0), and (for C = 1) different logits: all give exactly 0.
        std::vector<std::pair<const std::vector<float>*, const std::vector<float>*>> pairs{{&x, &x}, {&zeros, &zeros}};
        if (shape[1] == 1) pairs.push_back({&x, &y});
        for (auto [s, t] : pairs) {
          std::vector<float> value(none ? n : 1, -1.0f), g(n, -1.0f);
          kl_div_loss_forward_backward(host_view(s->data(), shape), host_view(t->data(), shape),
                                       none ? host_view(value.data(), shape) : host_scalar(value.data()),
                                       host_view(g.data(), shape), {temp, 1, r});
          for (float v : value) REQUIRE(v == 0.0f);
          for (float v : g) REQUIRE(v == 0.0f);
          // With a uniform upstream the gradient vanishes too: exactly for a reduced loss and for C = 1;
          // for none it is T * p_s * (sum_k u p_t_k - u), 0 up to the rounding of sum_k p_t_k.
          const std::vector<float> up(none ? n : 1, 0.5f);
          const double tol = none && shape[1] > 1 ? 1e-6 * temp : 0.0;
          for (float v : backward(*s, *t, shape, 1, temp, r, up)) REQUIRE(std::fabs(v) <= tol);
        }
      }
  // Large logits: stable (no overflow in exp), equal to the double reference.
  {
    const Dims shape{3, 8};
    auto s = random_vector<double>(24, 17, -1000, 1000), t = random_vector<double>(24, 18, -1000, 1000);
    std::vector<float> sf = cast<float>(s), tf = cast<float>(t), g(24);
    float value = -1;
    kl_div_loss_forward_backward(host_view(sf.data(), shape), host_view(tf.data(), shape), host_scalar(&value),
                                 host_view(g.data(), shape), {2.0, 1});
    CHECK(std::isfinite(value));
    CHECK(kdloss_test::all_finite(g));
    CHECK(kdloss_test::close(value, ref_value(as_double(sf), as_double(tf), shape, 1, 2.0, Reduction::batchmean)[0],
                             1e-5));
  }
  // xlogy: a teacher probability of exactly 0 (a -inf logit) contributes 0, not NaN.
  {
    const Dims shape{2, 4};
    std::vector<double> s{0.3, -1.0, 2.0, 0.5, 1.0, 1.0, -2.0, 0.0};
    std::vector<double> t{1.0, -std::numeric_limits<double>::infinity(), 0.5, 0.0, 0.2, 0.1, 0.0, -0.3};
    for (Reduction r : kReductions) {
      CAPTURE(std::string(to_string(r)));
      const bool none = r == Reduction::none;
      const auto got = forward(s, t, shape, 1, 1.5, r);
      CHECK(kdloss_test::all_finite(got));
      check_close(got, ref_value(s, t, shape, 1, 1.5, r), 1e-12, 1e-15, "value");
      if (none) CHECK(got[1] == 0.0);
      const std::vector<double> up(none ? 8 : 1, 1.0);
      const auto g = backward(s, t, shape, 1, 1.5, r, up);
      CHECK(kdloss_test::all_finite(g));
      check_close(g, ref_grad(s, t, shape, 1, 1.5, r, up), 1e-12, 1e-15, "grad");
    }
  }
  // Empty logits reduce to 0 (PyTorch's batchmean over an empty batch divides by 0; kdloss documents 0).
  for (Reduction r : {Reduction::batchmean, Reduction::sum, Reduction::mean}) {
    float value = -1;
    kl_div_loss(host_view(static_cast<const float*>(nullptr), {0, 5}),
                host_view(static_cast<const float*>(nullptr), {0, 5}), host_scalar(&value), {2.0, 1, r});
    CHECK(value == 0.0f);
    value = -1;
    kl_div_loss(host_view(static_cast<const float*>(nullptr), {3, 0}),
                host_view(static_cast<const float*>(nullptr), {3, 0}), host_scalar(&value), {2.0, 1, r});
    CHECK(value == 0.0f);
  }
}

TEST_CASE("kl_div_loss: bad inputs throw a clear error and leave outputs untouched") {
  const Dims shape{2, 3, 4, 4};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<float>(n, 19), t = random_vector<float>(n, 20);
  std::vector<float> g(n, 42.0f), map(n, 42.0f);
  float out = 42.0f, one = 1.0f;
  auto sv = host_view(s.data(), shape);
  auto tv = host_view(t.data(), shape);
  auto gv = host_view(g.data(), shape);
  auto untouched = [&] {
    CHECK(out == 42.0f);
    for (float x : g) REQUIRE(x == 42.0f);
    for (float x : map) REQUIRE(x == 42.0f);
  };
  auto throws_with = [&](auto&& call, const std::string& needle) { kdloss_test::expect_error(call, needle, untouched); };
  const auto* null_f = static_cast<const float*>(nullptr);
  const auto none = Reduction::none;
  // Axis, temperature, reduction.
  throws_with([&] { kl_div_loss(sv, tv, host_scalar(&out), {1.0, 4}); },
              "kdloss::kl_div_loss: argument 'class_axis' is 4 but 'student_logits' has shape [2, 3, 4, 4]");
  throws_with([&] { kl_div_loss_backward(sv, tv, host_scalar(&one), gv, {1.0, -1}); },
              "kdloss::kl_div_loss_backward: argument 'class_axis' is -1 but 'student_logits' has shape [2, 3, 4, 4]");
  throws_with([&] { kl_div_loss_forward_backward(sv, tv, host_scalar(&out), gv, {0.0, 1}); },
              "argument 'temperature' must be finite and > 0 but is 0");
  throws_with([&] { kl_div_loss(sv, tv, host_scalar(&out), {-2.0, 1}); },
              "argument 'temperature' must be finite and > 0 but is -2");
  throws_with([&] { kl_div_loss(sv, tv, host_scalar(&out), {std::nan(""), 1}); },
              "argument 'temperature' must be finite");
  throws_with([&] { kl_div_loss(sv, tv, host_scalar(&out), {std::numeric_limits<double>::infinity(), 1}); },
              "argument 'temperature' must be finite");
  throws_with([&] { kl_div_loss(sv, tv, host_scalar(&out), {1.0, 1, static_cast<Reduction>(9)}); },
              "argument 'reduction' is 9, not one of none, mean, sum, batchmean");
  // Shapes and ranks.
  throws_with(
      [&] {
        kl_div_loss(sv, host_view(t.data(), {2, 4, 3, 4}), host_scalar(&out), {1.0, 1});
      },
      "arguments 'student_logits' [2, 3, 4, 4] and 'teacher_logits' [2, 4, 3, 4] must have the same shape");
  throws_with([&] { kl_div_loss(host_scalar(s.data()), host_scalar(t.data()), host_scalar(&out), {1.0, 0}); },
              "argument 'student_logits' must have rank 1 to 6 but has shape []");
  throws_with(
      [&] {
        kl_div_loss(sv, tv, host_view(map.data(), {2, 2}), {1.0, 1});
      },
      "'out' must hold exactly one element (the reduced loss) but has shape [2, 2]");
  throws_with(
      [&] {
        kl_div_loss(sv, tv, host_view(map.data(), {2, 3, 16}), {1.0, 1, none});
      },
      "argument 'out' has shape [2, 3, 16] but expected [2, 3, 4, 4]");
  throws_with([&] { kl_div_loss_backward(sv, tv, host_view(map.data(), {2}), gv, {1.0, 1}); },
              "'grad_out' must hold one element (the upstream gradient of the reduced loss) but has shape [2]");
  throws_with([&] { kl_div_loss_backward(sv, tv, host_scalar(&one), gv, {1.0, 1, none}); },
              "argument 'grad_out' has shape [] but expected [2, 3, 4, 4]");
  throws_with(
      [&] {
        kl_div_loss_backward(sv, tv, host_scalar(&one), host_view(g.data(), {2, 3, 16}), {1.0, 1});
      },
      "argument 'grad_student' has shape [2, 3, 16] but expected [2, 3, 4, 4]");
  // Null pointers.
  throws_with([&] { kl_div_loss(host_view(null_f, shape), tv, host_scalar(&out), {1.0, 1}); },
              "'student_logits' has a null data pointer");
  throws_with([&] { kl_div_loss(sv, host_view(null_f, shape), host_scalar(&out), {1.0, 1}); },
              "'teacher_logits' has a null data pointer");
  throws_with([&] { kl_div_loss(sv, tv, host_scalar(static_cast<float*>(nullptr)), {1.0, 1}); },
              "'out' has a null data pointer");
  throws_with([&] { kl_div_loss(sv, tv, host_view(static_cast<float*>(nullptr), shape), {1.0, 1, none}); },
              "'out' has a null data pointer");
  throws_with([&] { kl_div_loss_backward(sv, tv, host_scalar(null_f), gv, {1.0, 1}); }, "'grad_out' has a null data pointer");
  throws_with([&] { kl_div_loss_backward(sv, tv, host_view(null_f, shape), gv, {1.0, 1, none}); },
              "'grad_out' has a null data pointer");
  throws_with(
      [&] {
        kl_div_loss_forward_backward(sv, tv, host_scalar(&out), host_view(static_cast<float*>(nullptr), shape), {1.0, 1});
      },
      "'grad_student' has a null data pointer");
  // Devices.
  throws_with([&] { kl_div_loss(sv, cuda_view(t.data(), shape), host_scalar(&out), {1.0, 1}); },
              "'teacher_logits' is on cuda:0 but the call runs on host");
  throws_with([&] { kl_div_loss(sv, tv, cuda_scalar(&out), {1.0, 1}); }, "'out' is on cuda:0 but the call runs on host");
  throws_with([&] { kl_div_loss_backward(sv, tv, cuda_scalar(&one), gv, {1.0, 1}); },
              "'grad_out' is on cuda:0 but the call runs on host");
  throws_with([&] { kl_div_loss_backward(sv, tv, host_scalar(&one), cuda_view(g.data(), shape), {1.0, 1}); },
              "'grad_student' is on cuda:0 but the call runs on host");
#if !KDLOSS_CUDA_ENABLED
  throws_with([&] { kl_div_loss(cuda_view(s.data(), shape), cuda_view(t.data(), shape), cuda_scalar(&out), {1.0, 1}); },
              "compiled without CUDA");
#endif
  // Outputs: zero stride, overlapping strides, aliasing.
  throws_with(
      [&] {
        kl_div_loss_backward(sv, tv, host_scalar(&one), host_view(g.data(), shape, {16, 0, 4, 1}), {1.0, 1});
      },
      "'grad_student' with shape [2, 3, 4, 4] and strides [16, 0, 4, 1] addresses some element twice");
  throws_with(
      [&] {
        kl_div_loss(sv, tv, host_view(map.data(), shape, {0, 16, 4, 1}), {1.0, 1, none});
      },
      "output argument 'out' with shape [2, 3, 4, 4] and strides [0, 16, 4, 1] addresses some element twice");
  throws_with([&] { kl_div_loss_forward_backward(sv, tv, host_view(g.data(), shape), gv, {1.0, 1, none}); },
              "'grad_student' overlaps the memory of argument 'out'");
  throws_with([&] { kl_div_loss_backward(sv, tv, View<const float>(gv), gv, {1.0, 1, none}); },
              "'grad_student' overlaps the memory of argument 'grad_out'");
  {
    std::vector<float> s_copy = s;
    auto s_mut = host_view(s_copy.data(), shape);
    for (int which = 0; which < 2; ++which) {
      try {
        if (which == 0)
          kl_div_loss_forward_backward(View<const float>(s_mut), tv, host_scalar(&out), s_mut, {1.0, 1});
        else
          kl_div_loss(tv, View<const float>(s_mut), s_mut, {1.0, 1, none});
        FAIL("aliased output accepted");
      } catch (const Error& e) {
        const std::string msg = e.what();
        CHECK_MESSAGE(
            msg.find(which == 0 ? "'grad_student' overlaps the memory of argument 'student_logits'"
                                : "'out' overlaps the memory of argument 'teacher_logits'") != std::string::npos,
            msg);
      }
    }
    CHECK(s_copy == s);
  }
  // Workspace: 0 on the host and for none; the row reduction's partials on a GPU (run for real below).
  CHECK(kl_div_loss_workspace_bytes(sv, {1.0, 1}) == 0);
  CHECK(kl_div_loss_workspace_bytes(cuda_view(s.data(), shape), {1.0, 1, none}) == 0);
  const std::size_t gpu_bytes = kl_div_loss_workspace_bytes(cuda_view(s.data(), shape), {1.0, 1});
  CHECK(gpu_bytes == detail::align_up(sizeof(double) * backend::cuda::rowwise_blocks(32, 3)));
  throws_with([&] { (void)kl_div_loss_workspace_bytes(sv, {1.0, 7}); }, "argument 'class_axis' is 7");
  alignas(256) static unsigned char small[256];
  throws_with(
      [&] {
        detail::HostScratch scratch;
        detail::resolve_workspace("kdloss::kl_div_loss", Device::cuda(), Workspace{small, 0 + 8}, gpu_bytes, scratch);
      },
      "kdloss::kl_div_loss: argument 'workspace' has 8 bytes but this call needs");
}

namespace {
kdloss_ref::KlRed kl_red(Reduction r) {
  return r == Reduction::none ? kdloss_ref::KlRed::none
         : r == Reduction::sum ? kdloss_ref::KlRed::sum
         : r == Reduction::mean ? kdloss_ref::KlRed::mean
                                : kdloss_ref::KlRed::batchmean;
}

/// Forward, backward and fused on T logits against PyTorch's evaluation order (torch_order::kl_div).
template <class T>
void check_kl_nonfinite(const std::vector<double>& s_in, const std::vector<double>& t_in, const Dims& shape, int axis,
                        double temp, Reduction r, double rel, double abs_tol) {
  const std::vector<T> s(s_in.begin(), s_in.end()), t(t_in.begin(), t_in.end());
  const std::vector<double> sd(s.begin(), s.end()), td(t.begin(), t.end());
  const std::size_t n = s.size();
  const bool none = r == Reduction::none;
  const std::vector<std::int64_t> sh(shape.v.begin(), shape.v.begin() + shape.rank);
  const auto up = none ? random_vector<double>(n, 41) : std::vector<double>{0.7};
  const std::vector<T> up_t(up.begin(), up.end());
  std::vector<double> want_v, want_g, want_fused_g, unused;
  kdloss_ref::torch_order::kl_div(sd, td, sh, axis, temp, kl_red(r), std::vector<double>(up_t.begin(), up_t.end()),
                                  want_v, want_g);
  kdloss_ref::torch_order::kl_div(sd, td, sh, axis, temp, kl_red(r), std::vector<double>(none ? n : 1, 1.0), unused,
                                  want_fused_g);
  auto sv = host_view(s.data(), shape);
  auto tv = host_view(t.data(), shape);
  const KlDivOptions o{temp, axis, r};
  std::vector<T> v(want_v.size(), T(-7)), g(n, T(-7)), v2(want_v.size(), T(-7)), g2(n, T(-7));
  kl_div_loss(sv, tv, none ? host_view(v.data(), shape) : host_scalar(v.data()), o);
  kl_div_loss_backward(sv, tv, none ? host_view(up_t.data(), shape) : host_scalar(up_t.data()),
                       host_view(g.data(), shape), o);
  kl_div_loss_forward_backward(sv, tv, none ? host_view(v2.data(), shape) : host_scalar(v2.data()),
                               host_view(g2.data(), shape), o);
  kdloss_test::check_modes(v, g, v2, g2, {want_v, want_g, want_fused_g}, rel, abs_tol);
}
}  // namespace

TEST_CASE("kl_div_loss propagates NaN and +-inf as PyTorch does (forward, backward, fused; float, double)") {
  // PyTorch: a NaN or +inf logit, or a row of -inf, makes the row's softmax NaN: every value and
  // gradient of the row is NaN. A -inf teacher logit has p_t = 0 (xlogy: term 0); a -inf student
  // logit gives an inf term where p_t > 0 and NaN (0 * -inf) where p_t = 0; gradients stay finite.
  struct Layout {
    Dims shape;
    int axis;
  };
  // Scalar rows (class axis innermost), packet rows (neighbouring rows along W), one class of each.
  const Layout layouts[] = {{Dims{3, 5}, 1}, {Dims{2, 5, 3, 4}, 1}, {Dims{4, 1}, 1}, {Dims{2, 1, 3, 4}, 1}};
  const double inf = std::numeric_limits<double>::infinity();
  for (const auto& l : layouts)
    for (Reduction r : {Reduction::none, Reduction::sum, Reduction::batchmean, Reduction::mean}) {
      const auto n = static_cast<std::size_t>(l.shape.product());
      auto cases = kdloss_test::nonfinite_cases(n);
      // Whole rows of -inf: row 0 of the student, of the teacher, of both.
      std::vector<std::size_t> row0;
      for (std::int64_t j = 0, step = n / l.shape[0] / l.shape[l.axis]; j < l.shape[l.axis]; ++j)
        row0.push_back(static_cast<std::size_t>(j * step));
      cases.push_back({"student row of -inf", -inf, 0, row0});
      cases.push_back({"teacher row of -inf", 0, -inf, row0});
      cases.push_back({"both rows of -inf", -inf, -inf, row0});
      for (const auto& c : cases) {
        CAPTURE(l.shape.str());
        const std::string red = to_string(r), what = c.name;
        CAPTURE(red);
        CAPTURE(what);
        auto s = random_vector<double>(n, 1, -3, 3), t = random_vector<double>(n, 2, -3, 3);
        kdloss_test::place(c, s, t);
        check_kl_nonfinite<double>(s, t, l.shape, l.axis, 2.0, r, 1e-10, 1e-13);
        check_kl_nonfinite<float>(s, t, l.shape, l.axis, 2.0, r, 1e-4, 1e-6);
      }
    }
}

KDLOSS_GPU_TEST("kl_div_loss: GPU agrees with CPU (warp, block and thread rows, strided class axis, every reduction)") {
#if KDLOSS_TEST_CUDA
  struct Case {
    Dims shape;
    int axis;
    std::vector<int> order;  // memory order of the storage (outermost first)
    std::int64_t pad;
  };
  const std::vector<Case> cases{{{4, 37, 5}, 1, {0, 1, 2}, 0},        // short rows: a warp each
                                {{2, 3000, 2}, 1, {0, 1, 2}, 0},      // long rows: a block each
                                {{2, 10, 6, 7}, 1, {0, 2, 3, 1}, 0},  // channel-last, class stride 1
                                {{3, 9, 4, 5}, 1, {0, 1, 2, 3}, 3},   // padded NCHW
                                {{5, 80}, 1, {0, 1}, 0},
                                // NCHW with >= kThreadRowMinRows rows: a thread per row (coalesced across rows)
                                {{2, 20, 64, 72}, 1, {0, 1, 2, 3}, 0}};
  for (const auto& c : cases) {
    const auto n = static_cast<std::size_t>(c.shape.product());
    const auto s = random_vector<double>(n, 21, -3, 3), t = random_vector<double>(n, 22, -3, 3);
    const auto sl = kdloss_test::relayout(s, c.shape, c.order, c.pad),
               tl = kdloss_test::relayout(t, c.shape, c.order, c.pad);
    for (double temp : {1.0, 2.0})
      for (Reduction r : kReductions)
        for (bool fused : {true, false}) {
          CAPTURE(c.shape.str());
          CAPTURE(temp);
          CAPTURE(std::string(to_string(r)));
          CAPTURE(fused);
          const bool none = r == Reduction::none;
          const auto up = fused ? std::vector<double>(none ? n : 1, 1.0)
                                : (none ? random_vector<double>(n, 23) : std::vector<double>{0.8});
          // CPU double run on the contiguous copy: the agreement target.
          const auto cpu_v = forward(s, t, c.shape, c.axis, temp, r);
          const auto cpu_g = backward(s, t, c.shape, c.axis, temp, r, up);
          const auto f64 = kdloss_test::kl_div_on_gpu(1, sl.storage, tl.storage, c.shape, sl.view.strides, c.axis, temp,
                                                      r, up, fused);
          check_close(f64.value, cpu_v, 1e-11, 1e-14, "double value");
          check_close(f64.grad, cpu_g, 1e-11, 1e-14, "double grad");
          const auto f32 = kdloss_test::kl_div_on_gpu(0, sl.storage, tl.storage, c.shape, sl.view.strides, c.axis, temp,
                                                      r, up, fused);
          // float vs the double reference on the float-rounded logits (rounding the layout changes nothing).
          const auto s32 = kdloss_test::to_vector(host_view(f32.student.data(), c.shape, sl.view.strides));
          const auto t32 = kdloss_test::to_vector(host_view(f32.teacher.data(), c.shape, sl.view.strides));
          check_close(f32.value, ref_value(s32, t32, c.shape, c.axis, temp, r), 1e-5, none ? 1e-7 * temp * temp : 0.0,
                      "float value");
          const double gscale = temp * (r == Reduction::batchmean ? 1.0 / double(c.shape[0])
                                        : r == Reduction::mean    ? 1.0 / double(n)
                                                                  : 1.0);
          check_close(f32.grad, ref_grad(s32, t32, c.shape, c.axis, temp, r, up), 1e-5, 1e-7 * gscale, "float grad");
        }
    // Identical logits give exactly 0 on the GPU too (value and gradient, every reduction).
    for (Reduction r : kReductions) {
      const bool none = r == Reduction::none;
      const auto same = kdloss_test::kl_div_on_gpu(0, sl.storage, sl.storage, c.shape, sl.view.strides, c.axis, 3.0, r,
                                                   std::vector<double>(none ? n : 1, 1.0), true);
      for (double v : same.value) REQUIRE(v == 0.0);
      for (double v : same.grad) REQUIRE(v == 0.0);
    }
    // half / bfloat16 logits, float accumulation, contiguous: reference on the rounded logits; the
    // tolerance is the output format's rounding (2^-11, 2^-8 relative) with a floor for the map.
    for (int dtype : {2, 3})
      for (Reduction r : kReductions) {
        CAPTURE(dtype);
        CAPTURE(std::string(to_string(r)));
        const bool none = r == Reduction::none;
        const std::vector<double> up(none ? n : 1, 1.0);
        const auto low =
            kdloss_test::kl_div_on_gpu(dtype, s, t, c.shape, contiguous_strides(c.shape), c.axis, 2.0, r, up, true);
        const double tol = dtype == 2 ? 2e-3 : 1e-2;
        const auto want_v = ref_value(low.student, low.teacher, c.shape, c.axis, 2.0, r);
        check_close(low.value, want_v, tol, none ? tol * max_abs(want_v) : 0.0, "low-precision value");
        const auto want_g = ref_grad(low.student, low.teacher, c.shape, c.axis, 2.0, r, up);
        check_close(low.grad, want_g, tol, tol * max_abs(want_g), "low-precision grad");
      }
  }
  // One class (C = 1): 0 whatever the logits, on a warp row and through a strided class axis.
  const auto s1 = random_vector<double>(12, 24, -3, 3), t1 = random_vector<double>(12, 25, -3, 3);
  for (Reduction r : kReductions)
    for (bool fused : {true, false}) {
      const bool none = r == Reduction::none;
      const auto up = none ? random_vector<double>(12, 26) : std::vector<double>{0.9};
      const auto one = kdloss_test::kl_div_on_gpu(0, s1, t1, Dims{3, 1, 4}, Dims{4, 4, 1}, 1, 3.0, r, up, fused);
      for (double v : one.value) REQUIRE(v == 0.0);
      for (double v : one.grad) REQUIRE(v == 0.0);
    }
#endif
}

KDLOSS_GPU_TEST("kl_div_loss: a GPU call with a too small or null workspace throws and writes nothing") {
#if KDLOSS_TEST_CUDA
  for (int call : {0, 1}) {
    CAPTURE(call);
    float out_after = 0, grad_after = 0;
    const auto too_small = kdloss_test::kl_div_gpu_workspace_error(call, 8, &out_after, &grad_after);
    CHECK_MESSAGE(too_small.find("argument 'workspace' has 8 bytes but this call needs") != std::string::npos,
                  too_small);
    CHECK(out_after == 42.0f);
    CHECK(grad_after == 42.0f);
    const auto null_ws = kdloss_test::kl_div_gpu_workspace_error(call, 0, &out_after, &grad_after);
    CHECK_MESSAGE(null_ws.find("argument 'workspace' is null") != std::string::npos, null_ws);
    CHECK(out_after == 42.0f);
    CHECK(grad_after == 42.0f);
  }
  float out_after = 0, grad_after = 0;
  const std::size_t bytes = kl_div_loss_workspace_bytes(cuda_view<const float>(nullptr, {4, 100}), {1.0, 1});
  for (int call : {0, 1}) {
    CHECK(kdloss_test::kl_div_gpu_workspace_error(call, bytes, &out_after, &grad_after).empty());
    CHECK(std::isfinite(out_after));
    CHECK(out_after > 0.0f);
  }
#endif
}

TEST_CASE("kl_div_loss entry-point shape: args + Mode equal the wrappers; options struct; per-entry query") {
  const Dims shape{2, 6, 3, 4};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<double>(n, 60, -3, 3), t = random_vector<double>(n, 61, -3, 3);
  auto sv = host_view(s.data(), shape);
  auto tv = host_view(t.data(), shape);
  const KlDivOptions o{2.5, 1, Reduction::batchmean};
  double v1 = -1, v2 = -1, one = 1.0;
  std::vector<double> g1(n, -1), g2(n, -1), g3(n, -1);
  kl_div_loss_forward_backward(sv, tv, host_scalar(&v1), host_view(g1.data(), shape), o);
  KlDivLossArgs<double> args{sv, tv, host_scalar(&v2), host_scalar(&one), host_view(g2.data(), shape), o};
  kl_div_loss_check(args, Mode::forward_backward);
  kl_div_loss(args, Mode::forward_backward);
  CHECK(v2 == v1);
  CHECK(g2 == g1);
  args.grad_student = host_view(g3.data(), shape);
  kl_div_loss(args, Mode::backward);
  CHECK(g3 == g1);
  // Defaults: temperature 1, class axis 1, batchmean.
  double d1 = -1, d2 = -1;
  kl_div_loss(sv, tv, host_scalar(&d1));
  kl_div_loss(sv, tv, host_scalar(&d2), {1.0, 1, Reduction::batchmean});
  CHECK(d1 == d2);
  auto sd = cuda_view(s.data(), shape);
  CHECK(kl_div_loss_workspace_bytes(KlDivLossArgs<double>{sd, sd, {}, {}, {}, o}) == kl_div_loss_workspace_bytes(sd, o));
  CHECK(kl_div_loss_workspace_bytes(sd, o) > 0);
  KlDivLossArgs<double> bad = args;
  bad.options.class_axis = 4;
  std::vector<double> before = g3;
  kdloss_test::expect_error([&] { kl_div_loss(bad, Mode::backward); },
                            "kdloss::kl_div_loss_backward: argument 'class_axis' is 4", [&] { CHECK(g3 == before); });
}
