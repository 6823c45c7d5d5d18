// Frobenius distance (torch.dist): values, gradients, layouts, degenerate and bad inputs, CPU/GPU agreement.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kdloss/losses/feature/distance.hpp"
#include "losses/feature/distance_gpu.hpp"
#include "losses/feature/nonfinite.hpp"
#include "reference/losses/feature.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

}  // namespace

TEST_CASE("distance_loss matches the double reference (float and double)") {
  for (Dims shape : {Dims{2, 3, 5, 7}, Dims{4, 256, 3, 3}, Dims{3000}}) {
    CAPTURE(shape.str());
    const auto n = static_cast<std::size_t>(shape.product());
    const auto sd = random_vector<double>(n, 1), td = random_vector<double>(n, 2, -2, 0.5);
    const double want = kdloss_ref::frobenius(sd, td);
    double got_d = -1;
    distance_loss(host_view(sd.data(), shape), host_view(td.data(), shape), host_scalar(&got_d));
    CHECK(kdloss_test::close(got_d, want, 1e-12));
    // float inputs: the reference is evaluated on the float-rounded inputs; 1e-5 relative (DESIGN, fp32).
    const auto sf = cast<float>(sd), tf = cast<float>(td);
    float got_f = -1;
    distance_loss(host_view(sf.data(), shape), host_view(tf.data(), shape), host_scalar(&got_f));
    CHECK_MESSAGE(kdloss_test::close(got_f, kdloss_ref::frobenius(as_double(sf), as_double(tf)), 1e-5), got_f);
    // The value is the norm itself: not squared, not divided by numel or batch.
    CHECK(got_d * got_d ==
          doctest::Approx(kdloss_ref::pointwise(sd, td, kdloss_ref::Red::sum, kdloss_ref::mse_elem)[0]).epsilon(1e-12));
  }
}

TEST_CASE("distance_loss gradients equal central differences of the reference (double)") {
  const Dims shape{2, 3, 4, 3};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<double>(n, 3), t = random_vector<double>(n, 4);
  for (double up : {1.0, 0.37, -2.5}) {
    CAPTURE(up);
    const auto want = kdloss_test::numeric_gradient(
        s, [&](const std::vector<double>& x) { return up * kdloss_ref::frobenius(x, t); });
    std::vector<double> got(n, -9);
    distance_loss_backward(host_view(s.data(), shape), host_view(t.data(), shape), host_scalar(&up),
                           host_view(got.data(), shape));
    check_close(got, want, 1e-7, 1e-9, "backward grad");
    if (up == 1.0) {
      std::vector<double> fused(n, -9);
      double value = -1;
      distance_loss_forward_backward(host_view(s.data(), shape), host_view(t.data(), shape), host_scalar(&value),
                                     host_view(fused.data(), shape));
      check_close(fused, want, 1e-7, 1e-9, "fused grad");
      CHECK(kdloss_test::close(value, kdloss_ref::frobenius(s, t), 1e-12));
    }
  }
  // The analytic reference used by the float and GPU cases agrees with the differences too.
  check_close(
      kdloss_ref::frobenius_grad(s, t),
      kdloss_test::numeric_gradient(s, [&](const std::vector<double>& x) { return kdloss_ref::frobenius(x, t); }), 1e-7,
      1e-9, "reference grad");
}

TEST_CASE("distance_loss float gradient matches the double reference; fused equals forward then backward") {
  const Dims shape{2, 8, 6, 5};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<float>(n, 6), t = random_vector<float>(n, 7);
  const auto want = kdloss_ref::frobenius_grad(as_double(s), as_double(t));
  auto sv = host_view(s.data(), shape);
  auto tv = host_view(t.data(), shape);
  float v1 = -1, v2 = -1, one = 1.0f;
  std::vector<float> g1(n), g2(n);
  distance_loss(sv, tv, host_scalar(&v1));
  distance_loss_backward(sv, tv, host_scalar(&one), host_view(g1.data(), shape));
  distance_loss_forward_backward(sv, tv, host_scalar(&v2), host_view(g2.data(), shape));
  // fp32 gradient: 1e-5 relative on the elements, with an absolute floor at float resolution of the largest.
  check_close(g1, want, 1e-5, 1e-8, "backward grad");
  check_close(g2, want, 1e-5, 1e-8, "fused grad");
  CHECK(v1 == v2);
  check_close(g2, g1, 1e-6, 0, "fused vs split");
}

TEST_CASE("distance_loss: permuted, sliced, padded, channel-last and broadcast inputs equal their contiguous copies") {
  const Dims shape{2, 5, 4, 6};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<double>(n, 8), t = random_vector<double>(n, 9);
  const auto s_nhwc = kdloss_test::relayout(s, shape, {0, 2, 3, 1});            // channel-last memory
  const auto t_pad = kdloss_test::relayout(t, shape, {0, 1, 2, 3}, /*pad=*/3);  // padded rows
  const auto t_rev = kdloss_test::relayout(t, shape, {3, 2, 1, 0});             // fully permuted
  double want = 0, got1 = 0, got2 = 0, one = 1.0;
  distance_loss(host_view(s.data(), shape), host_view(t.data(), shape), host_scalar(&want));
  distance_loss(View<const double>(s_nhwc.view), View<const double>(t_pad.view), host_scalar(&got1));
  distance_loss(View<const double>(s_nhwc.view), View<const double>(t_rev.view), host_scalar(&got2));
  CHECK(got1 == doctest::Approx(want).epsilon(1e-12));
  CHECK(got2 == doctest::Approx(want).epsilon(1e-12));
  // Gradients written through a channel-last (and a padded) view hold the same values.
  std::vector<double> g_want(n);
  distance_loss_backward(host_view(s.data(), shape), host_view(t.data(), shape), host_scalar(&one),
                         host_view(g_want.data(), shape));
  const std::vector<double> zeros(n, 0.0);
  auto g_nhwc = kdloss_test::relayout(zeros, shape, {0, 2, 3, 1});
  distance_loss_backward(View<const double>(s_nhwc.view), View<const double>(t_rev.view), host_scalar(&one),
                         g_nhwc.view);
  check_close(kdloss_test::to_vector(g_nhwc.view), g_want, 1e-12, 1e-15, "channel-last grad");
  auto g_pad = kdloss_test::relayout(zeros, shape, {0, 1, 2, 3}, 2);
  double fused_value = 0;
  distance_loss_forward_backward(View<const double>(s_nhwc.view), View<const double>(t_pad.view),
                                 host_scalar(&fused_value), g_pad.view);
  check_close(kdloss_test::to_vector(g_pad.view), g_want, 1e-12, 1e-15, "padded fused grad");
  CHECK(fused_value == doctest::Approx(want).epsilon(1e-12));
  // A slice with a step, and a teacher broadcast along channels (stride 0).
  const auto big = random_vector<double>(2 * 10 * 4 * 6, 10);
  auto sliced = host_view(big.data(), {2, 10, 4, 6}).slice(1, 1, 10, 2);  // channels 1,3,5,7,9
  const auto sliced_copy = kdloss_test::to_vector(sliced);
  const auto t_one = random_vector<double>(2 * 1 * 4 * 6, 11);
  auto t_bcast = host_view(t_one.data(), {2, 5, 4, 6}, {24, 0, 6, 1});
  const auto t_bcast_copy = kdloss_test::to_vector(t_bcast);
  double w = 0, g = 0;
  std::vector<double> gw(n), gg(n);
  distance_loss_forward_backward(host_view(sliced_copy.data(), shape), host_view(t_bcast_copy.data(), shape),
                                 host_scalar(&w), host_view(gw.data(), shape));
  distance_loss_forward_backward(View<const double>(sliced), View<const double>(t_bcast), host_scalar(&g),
                                 host_view(gg.data(), shape));
  CHECK(g == doctest::Approx(w).epsilon(1e-12));
  CHECK(w == doctest::Approx(kdloss_ref::frobenius(sliced_copy, t_bcast_copy)).epsilon(1e-12));
  check_close(gg, gw, 1e-12, 1e-15, "sliced/broadcast grad");
}

TEST_CASE("distance_loss degenerate inputs: zero distance has value 0 and gradient exactly 0") {
  for (Dims shape : {Dims{2, 3, 4, 5}, Dims{2, 3, 1, 1}, Dims{2, 1, 4, 5}, Dims{1, 1, 1, 1}}) {
    CAPTURE(shape.str());
    const auto n = static_cast<std::size_t>(shape.product());
    const auto s = random_vector<float>(n, 12);
    const std::vector<float> zeros(n, 0.0f);
    for (const auto* in : {&s, &zeros}) {  // S = T, and all-zero features
      float value = -1, one = 1.0f;
      std::vector<float> g(n, -1.0f), gb(n, -1.0f);
      distance_loss_forward_backward(host_view(in->data(), shape), host_view(in->data(), shape), host_scalar(&value),
                                     host_view(g.data(), shape));
      distance_loss_backward(host_view(in->data(), shape), host_view(in->data(), shape), host_scalar(&one),
                             host_view(gb.data(), shape));
      CHECK(value == 0.0f);
      // PyTorch's norm backward gives 0 here; FBKD's `x.sum()**0.5` would give NaN.
      for (float x : g) REQUIRE(x == 0.0f);
      for (float x : gb) REQUIRE(x == 0.0f);
    }
  }
  // H = W = 1 and a single differing element: the gradient is that element's sign.
  {
    std::vector<double> s{1, 2, 3, 4}, t{1, 2, 3, 4}, g(4);
    t[2] = 3.5;
    double value = 0;
    distance_loss_forward_backward(host_view(s.data(), {2, 2, 1, 1}), host_view(t.data(), {2, 2, 1, 1}),
                                   host_scalar(&value), host_view(g.data(), {2, 2, 1, 1}));
    CHECK(value == 0.5);
    CHECK(g == std::vector<double>{0, 0, -1, 0});
  }
  // A tiny distance still gives a finite unit gradient.
  {
    std::vector<float> s{1e-18f, 0.0f}, t{0.0f, 0.0f}, g(2, -1.0f);
    float value = 0;
    distance_loss_forward_backward(host_view(s.data(), {2}), host_view(t.data(), {2}), host_scalar(&value),
                                   host_view(g.data(), {2}));
    CHECK(value == doctest::Approx(1e-18f).epsilon(1e-6));
    CHECK(g[0] == doctest::Approx(1.0f).epsilon(1e-6));
    CHECK(g[1] == 0.0f);
  }
  // An empty tensor has distance 0.
  float value = -1;
  distance_loss(host_view(static_cast<const float*>(nullptr), {0, 3}),
                host_view(static_cast<const float*>(nullptr), {0, 3}), host_scalar(&value));
  CHECK(value == 0.0f);
}

TEST_CASE("distance_loss: bad inputs throw a clear error and leave outputs untouched") {
  const Dims shape{2, 3, 4, 4};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<float>(n, 13), t = random_vector<float>(n, 14);
  std::vector<float> g(n, 42.0f);
  float out = 42.0f, one = 1.0f;
  auto sv = host_view(s.data(), shape);
  auto tv = host_view(t.data(), shape);
  auto gv = host_view(g.data(), shape);
  auto untouched = [&] {
    CHECK(out == 42.0f);
    for (float x : g) REQUIRE(x == 42.0f);
  };
  auto throws_with = [&](auto&& call, const std::string& needle) { kdloss_test::expect_error(call, needle, untouched); };
  const auto* null_f = static_cast<const float*>(nullptr);
  // Shapes.
  throws_with(
      [&] {
        distance_loss(sv, host_view(t.data(), {2, 3, 4, 3}), host_scalar(&out));
      },
      "kdloss::distance_loss: arguments 'student' [2, 3, 4, 4] and 'teacher' [2, 3, 4, 3] must have the same shape");
  throws_with(
      [&] {
        distance_loss_backward(sv, host_view(t.data(), {2, 3, 16}), host_scalar(&one), gv);
      },
      "'student' [2, 3, 4, 4] and 'teacher' [2, 3, 16] must have the same shape");
  throws_with(
      [&] {
        distance_loss(sv, tv, host_view(g.data(), {2, 2}));
      },
      "'out' must hold exactly one element (the reduced loss) but has shape [2, 2]");
  throws_with([&] { distance_loss_backward(sv, tv, host_view(g.data(), {2}), gv); },
              "'grad_out' must hold one element (the upstream gradient of the distance) but has shape [2]");
  throws_with(
      [&] {
        distance_loss_backward(sv, tv, host_scalar(&one), host_view(g.data(), {2, 3, 16}));
      },
      "'grad_student' has shape [2, 3, 16] but expected [2, 3, 4, 4]");
  throws_with([&] { distance_loss_forward_backward(sv, tv, host_scalar(&out), host_view(g.data(), {96})); },
              "'grad_student' has shape [96] but expected [2, 3, 4, 4]");
  // Null pointers.
  throws_with([&] { distance_loss(host_view(null_f, shape), tv, host_scalar(&out)); },
              "'student' has a null data pointer");
  throws_with([&] { distance_loss(sv, host_view(null_f, shape), host_scalar(&out)); },
              "'teacher' has a null data pointer");
  throws_with([&] { distance_loss(sv, tv, host_scalar(static_cast<float*>(nullptr))); },
              "'out' has a null data pointer");
  throws_with([&] { distance_loss_backward(sv, tv, host_scalar(null_f), gv); }, "'grad_out' has a null data pointer");
  throws_with(
      [&] { distance_loss_backward(sv, tv, host_scalar(&one), host_view(static_cast<float*>(nullptr), shape)); },
      "'grad_student' has a null data pointer");
  // Devices.
  throws_with([&] { distance_loss(sv, cuda_view(t.data(), shape), host_scalar(&out)); },
              "'teacher' is on cuda:0 but the call runs on host");
  throws_with([&] { distance_loss(sv, tv, cuda_scalar(&out)); }, "'out' is on cuda:0 but the call runs on host");
  throws_with([&] { distance_loss_backward(sv, tv, cuda_scalar(&one), gv); },
              "'grad_out' is on cuda:0 but the call runs on host");
  throws_with([&] { distance_loss_forward_backward(sv, tv, host_scalar(&out), cuda_view(g.data(), shape)); },
              "'grad_student' is on cuda:0 but the call runs on host");
#if !KDLOSS_CUDA_ENABLED
  throws_with([&] { distance_loss(cuda_view(s.data(), shape), cuda_view(t.data(), shape), cuda_scalar(&out)); },
              "compiled without CUDA");
#endif
  // Gradient outputs: zero stride, overlapping strides, aliasing an input, the upstream or the value.
  throws_with(
      [&] {
        distance_loss_backward(sv, tv, host_scalar(&one), host_view(g.data(), shape, {0, 16, 4, 1}));
      },
      "'grad_student' with shape [2, 3, 4, 4] and strides [0, 16, 4, 1] addresses some element twice");
  throws_with(
      [&] {
        distance_loss_forward_backward(sv, tv, host_scalar(&out), host_view(g.data(), shape, {16, 8, 4, 1}));
      },
      "'grad_student' with shape [2, 3, 4, 4] and strides [16, 8, 4, 1] addresses some element twice");
  throws_with([&] { distance_loss_backward(sv, tv, host_scalar(&g[5]), gv); },
              "'grad_student' overlaps the memory of argument 'grad_out'");
  throws_with([&] { distance_loss_forward_backward(sv, tv, host_scalar(&g[7]), gv); },
              "'grad_student' overlaps the memory of argument 'out'");
  {
    std::vector<float> s_copy = s;
    auto s_mut = host_view(s_copy.data(), shape);
    try {
      distance_loss_forward_backward(View<const float>(s_mut), tv, host_scalar(&out), s_mut);
      FAIL("aliased gradient accepted");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("'grad_student' overlaps the memory of argument 'student'") !=
            std::string::npos);
    }
    try {
      distance_loss(View<const float>(s_mut), tv, host_scalar(&s_copy[3]));
      FAIL("aliased value accepted");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("'out' overlaps the memory of argument 'student'") != std::string::npos);
    }
    CHECK(s_copy == s);
  }
  // Workspace: the query covers the partials and the norm slot on a GPU and is 0 on the host;
  // a GPU call with less is refused (run for real in the GPU case below).
  CHECK(distance_loss_workspace_bytes(sv) == 0);
  const std::size_t gpu_bytes = distance_loss_workspace_bytes(cuda_view(s.data(), shape));
  CHECK(gpu_bytes == detail::align_up(sizeof(double) * backend::cuda::reduce_blocks(static_cast<std::int64_t>(n))) +
                         detail::align_up(sizeof(double)));
  alignas(256) static unsigned char small[256];
  throws_with(
      [&] {
        detail::HostScratch scratch;
        detail::resolve_workspace("kdloss::distance_loss", Device::cuda(), Workspace{small, 8}, gpu_bytes, scratch);
      },
      "kdloss::distance_loss: argument 'workspace' has 8 bytes but this call needs");
}

namespace {
template <class T>
void check_distance_nonfinite(const std::vector<double>& s_in, const std::vector<double>& t_in, const Dims& shape,
                              double up, double rel, double abs_tol) {
  const std::vector<T> s(s_in.begin(), s_in.end()), t(t_in.begin(), t_in.end());
  const auto sd = as_double(s), td = as_double(t);
  const T up_t = T(up);
  const double want_v = kdloss_ref::frobenius(sd, td);
  const auto want_g = kdloss_ref::torch_order::frobenius_grad(sd, td, double(up_t));
  const auto want_fused_g = kdloss_ref::torch_order::frobenius_grad(sd, td, 1.0);
  auto sv = host_view(s.data(), shape);
  auto tv = host_view(t.data(), shape);
  T v = T(-7), v2 = T(-7);
  std::vector<T> g(s.size(), T(-7)), g2(s.size(), T(-7));
  distance_loss(sv, tv, host_scalar(&v));
  distance_loss_backward(sv, tv, host_scalar(&up_t), host_view(g.data(), shape));
  distance_loss_forward_backward(sv, tv, host_scalar(&v2), host_view(g2.data(), shape));
  kdloss_test::check_modes(std::vector<T>{v}, g, std::vector<T>{v2}, g2, {{want_v}, want_g, want_fused_g}, rel, abs_tol);
}
}  // namespace

TEST_CASE("distance_loss propagates NaN and +-inf as torch.dist does (forward, backward, fused; float, double)") {
  // torch.dist: a NaN input gives a NaN value and a NaN gradient at every element (the norm is NaN
  // and only norm == 0 is masked); an inf input gives an inf value, 0 gradients beside NaN at the
  // inf elements (x / inf and inf / inf).
  const Dims shape{2, 3, 4, 5};
  const auto n = static_cast<std::size_t>(shape.product());
  for (const auto& c : kdloss_test::nonfinite_cases(n)) {
    const std::string what = c.name;
    CAPTURE(what);
    auto s = random_vector<double>(n, 1), t = random_vector<double>(n, 2);
    kdloss_test::place(c, s, t);
    check_distance_nonfinite<double>(s, t, shape, 0.7, 1e-12, 1e-15);
    check_distance_nonfinite<float>(s, t, shape, 0.7, 1e-5, 1e-7);
  }
  // Zero distance with a NaN or inf upstream: PyTorch multiplies the masked 0 by it (NaN everywhere).
  const auto s = random_vector<double>(n, 3);
  for (double up : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    CAPTURE(up);
    check_distance_nonfinite<double>(s, s, shape, up, 1e-12, 1e-15);
  }
}

KDLOSS_GPU_TEST("distance_loss: GPU agrees with CPU (float, double, half, bfloat16; fused and split; broadcast)") {
#if KDLOSS_TEST_CUDA
  // 2 x 64 x 50 x 84 exercises many reduction blocks; the second shape is small.
  for (Dims shape : {Dims{2, 64, 50, 84}, Dims{3, 5, 7}}) {
    CAPTURE(shape.str());
    const auto n = static_cast<std::size_t>(shape.product());
    const auto s = random_vector<double>(n, 20), t = random_vector<double>(n, 21);
    const Dims strides = contiguous_strides(shape);
    for (bool fused : {true, false}) {
      CAPTURE(fused);
      const double up = fused ? 1.0 : 0.75;
      // CPU double run: the agreement target.
      double cpu_value = 0;
      std::vector<double> cpu_grad(n);
      distance_loss(host_view(s.data(), shape), host_view(t.data(), shape), host_scalar(&cpu_value));
      distance_loss_backward(host_view(s.data(), shape), host_view(t.data(), shape), host_scalar(&up),
                             host_view(cpu_grad.data(), shape));
      const auto f64 = kdloss_test::distance_on_gpu(1, s, t, shape, strides, up, fused);
      CHECK(kdloss_test::close(f64.value, cpu_value, 1e-12));
      check_close(f64.grad, cpu_grad, 1e-12, 1e-16, "double grad");
      const auto f32 = kdloss_test::distance_on_gpu(0, s, t, shape, strides, up, fused);
      const double want32 = kdloss_ref::frobenius(f32.student, f32.teacher);
      CHECK(kdloss_test::close(f32.value, want32, 1e-5));
      auto want_g32 = kdloss_ref::frobenius_grad(f32.student, f32.teacher);
      for (auto& x : want_g32) x *= up;
      check_close(f32.grad, want_g32, 1e-5, 1e-8, "float grad");
      // half / bfloat16 inputs, float accumulation: the reference on the rounded inputs; the tolerance
      // is the output format's rounding (2^-11 and 2^-8 relative).
      for (int dtype : {2, 3}) {
        CAPTURE(dtype);
        const auto low = kdloss_test::distance_on_gpu(dtype, s, t, shape, strides, up, fused);
        const double tol = dtype == 2 ? 1e-3 : 8e-3;
        CHECK(kdloss_test::close(low.value, kdloss_ref::frobenius(low.student, low.teacher), tol));
        auto want_g = kdloss_ref::frobenius_grad(low.student, low.teacher);
        for (auto& x : want_g) x *= up;
        check_close(low.grad, want_g, tol, 1e-6, "low-precision grad");
      }
    }
    // A teacher broadcast along dim 1 (stride 0) on the GPU equals its materialised copy on the CPU.
    Dims b_strides = strides;
    b_strides[1] = 0;
    const auto t_b = kdloss_test::to_vector(host_view(t.data(), shape, b_strides));
    double cpu_value = 0;
    std::vector<double> cpu_grad(n);
    distance_loss_forward_backward(host_view(s.data(), shape), host_view(t_b.data(), shape), host_scalar(&cpu_value),
                                   host_view(cpu_grad.data(), shape));
    const auto gpu = kdloss_test::distance_on_gpu(1, s, t, shape, b_strides, 1.0, true);
    CHECK(kdloss_test::close(gpu.value, cpu_value, 1e-12));
    check_close(gpu.grad, cpu_grad, 1e-12, 1e-16, "broadcast grad");
  }
  // S = T on the GPU: value 0 and a zero (not NaN) gradient.
  const auto s = random_vector<double>(600, 22);
  for (bool fused : {true, false}) {
    const auto same = kdloss_test::distance_on_gpu(0, s, s, Dims{6, 100}, Dims{100, 1}, 1.0, fused);
    CHECK(same.value == 0.0);
    for (double x : same.grad) REQUIRE(x == 0.0);
  }
#endif
}

KDLOSS_GPU_TEST("distance_loss: a GPU call with a too small or null workspace throws and writes nothing") {
#if KDLOSS_TEST_CUDA
  for (int call : {0, 1, 2}) {
    CAPTURE(call);
    float out_after = 0, grad_after = 0;
    const auto too_small = kdloss_test::distance_gpu_workspace_error(call, 8, &out_after, &grad_after);
    CHECK_MESSAGE(too_small.find("argument 'workspace' has 8 bytes but this call needs") != std::string::npos,
                  too_small);
    CHECK(out_after == 42.0f);
    CHECK(grad_after == 42.0f);
    const auto null_ws = kdloss_test::distance_gpu_workspace_error(call, 0, &out_after, &grad_after);
    CHECK_MESSAGE(null_ws.find("argument 'workspace' is null") != std::string::npos, null_ws);
    CHECK(out_after == 42.0f);
    CHECK(grad_after == 42.0f);
  }
  // With the queried size every call succeeds.
  float out_after = 0, grad_after = 0;
  const std::size_t bytes = distance_loss_workspace_bytes(cuda_view<const float>(nullptr, {10, 100}));
  for (int call : {0, 1, 2})
    CHECK(kdloss_test::distance_gpu_workspace_error(call, bytes, &out_after, &grad_after).empty());
#endif
}

TEST_CASE("distance_loss entry-point shape: args + Mode equal the wrappers; per-entry query") {
  const Dims shape{2, 3, 4, 5};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<double>(n, 70), t = random_vector<double>(n, 71);
  auto sv = host_view(s.data(), shape);
  auto tv = host_view(t.data(), shape);
  double v1 = -1, v2 = -1, up = 0.3;
  std::vector<double> g1(n), g2(n), g3(n), g4(n);
  distance_loss_forward_backward(sv, tv, host_scalar(&v1), host_view(g1.data(), shape));
  distance_loss(DistanceLossArgs<double>{sv, tv, host_scalar(&v2), {}, host_view(g2.data(), shape)},
                Mode::forward_backward);
  CHECK(v2 == v1);
  CHECK(g2 == g1);
  distance_loss_backward(sv, tv, host_scalar(&up), host_view(g3.data(), shape));
  DistanceLossArgs<double> args{sv, tv, {}, host_scalar(&up), host_view(g4.data(), shape)};
  distance_loss_check(args, Mode::backward);
  distance_loss(args, Mode::backward);
  CHECK(g4 == g3);
  auto sd = cuda_view(s.data(), shape);
  CHECK(distance_loss_workspace_bytes(DistanceLossArgs<double>{sd, sd}) == distance_loss_workspace_bytes(sd));
}
