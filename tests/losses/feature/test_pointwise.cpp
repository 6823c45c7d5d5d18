// MSE, L1 and smooth-L1: values, gradients, layouts, degenerate and bad inputs, CPU/GPU agreement.
#include <doctest/doctest.h>

#include <limits>
#include <string>
#include <vector>

#include "kdloss/losses/feature/pointwise.hpp"
#include "losses/feature/nonfinite.hpp"
#include "losses/feature/pointwise_gpu.hpp"
#include "reference/losses/feature.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

enum class Kind { mse, l1, smooth_l1 };
const Kind kKinds[] = {Kind::mse, Kind::l1, Kind::smooth_l1};
const Reduction kReductions[] = {Reduction::mean, Reduction::sum, Reduction::none};

const char* name(Kind k) { return k == Kind::mse ? "mse" : k == Kind::l1 ? "l1" : "smooth_l1"; }

template <class T>
void forward(Kind k, View<const T> s, View<const T> t, View<T> out, Reduction r, double beta, const Exec& ex = {}) {
  switch (k) {
    case Kind::mse: mse_loss(s, t, out, {r}, ex); break;
    case Kind::l1: l1_loss(s, t, out, {r}, ex); break;
    case Kind::smooth_l1: smooth_l1_loss(s, t, out, {beta, r}, ex); break;
  }
}
template <class T>
void backward(Kind k, View<const T> s, View<const T> t, View<const T> up, View<T> g, Reduction r, double beta) {
  switch (k) {
    case Kind::mse: mse_loss_backward(s, t, up, g, {r}); break;
    case Kind::l1: l1_loss_backward(s, t, up, g, {r}); break;
    case Kind::smooth_l1: smooth_l1_loss_backward(s, t, up, g, {beta, r}); break;
  }
}
template <class T>
void fused(Kind k, View<const T> s, View<const T> t, View<T> out, View<T> g, Reduction r, double beta) {
  switch (k) {
    case Kind::mse: mse_loss_forward_backward(s, t, out, g, {r}); break;
    case Kind::l1: l1_loss_forward_backward(s, t, out, g, {r}); break;
    case Kind::smooth_l1: smooth_l1_loss_forward_backward(s, t, out, g, {beta, r}); break;
  }
}

kdloss_ref::Red ref_red(Reduction r) {
  return r == Reduction::none ? kdloss_ref::Red::none : r == Reduction::sum ? kdloss_ref::Red::sum : kdloss_ref::Red::mean;
}
std::vector<double> reference(Kind k, const std::vector<double>& s, const std::vector<double>& t, Reduction r,
                              double beta) {
  switch (k) {
    case Kind::mse: return kdloss_ref::pointwise(s, t, ref_red(r), kdloss_ref::mse_elem);
    case Kind::l1: return kdloss_ref::pointwise(s, t, ref_red(r), kdloss_ref::l1_elem);
    default: return kdloss_ref::pointwise(s, t, ref_red(r), [beta](double d) { return kdloss_ref::smooth_l1_elem(d, beta); });
  }
}

template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

}  // namespace

namespace detail_check {
struct Scalars {
  double mse, l1, smooth_l1;
};
/// The formulas as the GPU evaluates them: on plain doubles.
inline Scalars scalar_grads(double d, double beta) {
  return {kdloss::detail::SquaredError{}.grad(d, 0.5), kdloss::feature::detail::AbsoluteError{}.grad(d, 0.5),
          kdloss::feature::detail::SmoothL1Error{beta}.grad(d, 0.5)};
}
}  // namespace detail_check

TEST_CASE("pointwise losses match the double reference (float and double, every reduction)") {
  const Dims shape{2, 3, 5, 7};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto sd = random_vector<double>(n, 1), td = random_vector<double>(n, 2);
  const std::vector<float> sf(sd.begin(), sd.end()), tf(td.begin(), td.end());
  for (Kind k : kKinds)
    for (Reduction r : kReductions)
      for (double beta : {1.0, 0.3, 0.0}) {
        if (k != Kind::smooth_l1 && beta != 1.0) continue;
        CAPTURE(name(k));
        CAPTURE(to_string(r));
        CAPTURE(beta);
        const auto want = reference(k, sd, td, r, beta);
        std::vector<double> got_d(want.size());
        std::vector<float> got_f(want.size());
        const bool none = r == Reduction::none;
        forward<double>(k, host_view(sd.data(), shape), host_view(td.data(), shape),
                        none ? host_view(got_d.data(), shape) : host_scalar(got_d.data()), r, beta);
        forward<float>(k, host_view(sf.data(), shape), host_view(tf.data(), shape),
                       none ? host_view(got_f.data(), shape) : host_scalar(got_f.data()), r, beta);
        check_close(got_d, want, 1e-12, 1e-15);
        // float: per-element rounding of the inputs dominates; 1e-5 relative as DESIGN asks of fp32.
        check_close(got_f, want, 1e-5, 1e-6);
      }
}

TEST_CASE("pointwise gradients equal central differences of the reference (double)") {
  const Dims shape{2, 3, 4, 3};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<double>(n, 3), t = random_vector<double>(n, 4);
  for (Kind k : kKinds)
    for (Reduction r : kReductions) {
      CAPTURE(name(k));
      CAPTURE(to_string(r));
      const double beta = 0.5;
      // Upstream gradient: a scalar for mean/sum, a map for none; the check differentiates <up, loss>.
      const auto up = r == Reduction::none ? random_vector<double>(n, 5) : std::vector<double>{0.7};
      auto objective = [&](const std::vector<double>& x) {
        const auto v = reference(k, x, t, r, beta);
        double acc = 0;
        for (std::size_t i = 0; i < v.size(); ++i) acc += v[i] * up[i];
        return acc;
      };
      const auto want = kdloss_test::numeric_gradient(s, objective);
      std::vector<double> got(n);
      backward<double>(k, host_view(s.data(), shape), host_view(t.data(), shape),
                       r == Reduction::none ? host_view(up.data(), shape) : host_scalar(up.data()),
                       host_view(got.data(), shape), r, beta);
      check_close(got, want, 1e-7, 1e-9, "grad");
    }
}

TEST_CASE("fused forward_backward equals forward then backward with a unit upstream gradient") {
  const Dims shape{2, 4, 6, 5};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<float>(n, 6), t = random_vector<float>(n, 7);
  for (Kind k : kKinds)
    for (Reduction r : kReductions) {
      CAPTURE(name(k));
      CAPTURE(to_string(r));
      const bool none = r == Reduction::none;
      std::vector<float> v1(none ? n : 1), v2(none ? n : 1), g1(n), g2(n), ones(n, 1.0f);
      auto sv = host_view(s.data(), shape);
      auto tv = host_view(t.data(), shape);
      forward<float>(k, sv, tv, none ? host_view(v1.data(), shape) : host_scalar(v1.data()), r, 0.5);
      backward<float>(k, sv, tv, none ? host_view(ones.data(), shape) : host_scalar(ones.data()),
                      host_view(g1.data(), shape), r, 0.5);
      fused<float>(k, sv, tv, none ? host_view(v2.data(), shape) : host_scalar(v2.data()), host_view(g2.data(), shape),
                   r, 0.5);
      check_close(v2, v1, 1e-6, 0, "value");
      check_close(g2, g1, 1e-6, 0, "grad");
    }
}

TEST_CASE("permuted, sliced, padded, channel-last and broadcast inputs equal their contiguous copies") {
  const Dims shape{2, 5, 4, 6};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<double>(n, 8), t = random_vector<double>(n, 9);
  const auto s_nhwc = kdloss_test::relayout(s, shape, {0, 2, 3, 1});          // channel-last memory
  const auto t_pad = kdloss_test::relayout(t, shape, {0, 1, 2, 3}, /*pad=*/3);  // padded rows
  const auto t_rev = kdloss_test::relayout(t, shape, {3, 2, 1, 0});            // fully permuted
  for (Kind k : kKinds)
    for (Reduction r : {Reduction::mean, Reduction::sum}) {
      CAPTURE(name(k));
      double want = 0, got1 = 0, got2 = 0;
      std::vector<double> g_want(n), g_got(n), one{1.0};
      forward<double>(k, host_view(s.data(), shape), host_view(t.data(), shape), host_scalar(&want), r, 0.5);
      forward<double>(k, View<const double>(s_nhwc.view), View<const double>(t_pad.view), host_scalar(&got1), r, 0.5);
      forward<double>(k, View<const double>(s_nhwc.view), View<const double>(t_rev.view), host_scalar(&got2), r, 0.5);
      CHECK(got1 == doctest::Approx(want).epsilon(1e-12));
      CHECK(got2 == doctest::Approx(want).epsilon(1e-12));
      // The gradient written through a channel-last view holds the same values.
      auto g_nhwc = kdloss_test::relayout(g_got, shape, {0, 2, 3, 1});
      backward<double>(k, host_view(s.data(), shape), host_view(t.data(), shape), host_scalar(one.data()),
                       host_view(g_want.data(), shape), r, 0.5);
      backward<double>(k, View<const double>(s_nhwc.view), View<const double>(t_pad.view), host_scalar(one.data()),
                       g_nhwc.view, r, 0.5);
      check_close(kdloss_test::to_vector(g_nhwc.view), g_want, 1e-12, 0, "grad");
    }
  // A slice with a step, and a teacher broadcast along channels (stride 0).
  const auto big = random_vector<double>(2 * 10 * 4 * 6, 10);
  auto big_view = host_view(big.data(), {2, 10, 4, 6});
  auto sliced = big_view.slice(1, 1, 10, 2);  // channels 1,3,5,7,9
  const auto sliced_copy = kdloss_test::to_vector(sliced);
  const auto t_one = random_vector<double>(2 * 1 * 4 * 6, 11);
  auto t_bcast = host_view(t_one.data(), {2, 5, 4, 6}, {24, 0, 6, 1});
  const auto t_bcast_copy = kdloss_test::to_vector(t_bcast);
  for (Kind k : kKinds) {
    double want = 0, got = 0;
    forward<double>(k, host_view(sliced_copy.data(), shape), host_view(t_bcast_copy.data(), shape), host_scalar(&want),
                    Reduction::mean, 0.5);
    forward<double>(k, View<const double>(sliced), View<const double>(t_bcast), host_scalar(&got), Reduction::mean, 0.5);
    CHECK(got == doctest::Approx(want).epsilon(1e-12));
  }
}

TEST_CASE("degenerate inputs give finite values and gradients") {
  for (Dims shape : {Dims{2, 3, 4, 5}, Dims{2, 3, 1, 1}, Dims{2, 1, 4, 5}, Dims{1, 1, 1, 1}}) {
    const auto n = static_cast<std::size_t>(shape.product());
    const auto s = random_vector<float>(n, 12);
    const std::vector<float> zeros(n, 0.0f);
    for (Kind k : kKinds) {
      for (const auto* t : {&s, &zeros}) {
        const auto& in = t == &s ? s : zeros;  // S = T, and all-zero features (student = teacher = 0)
        float value = -1;
        std::vector<float> g(n, -1.0f);
        fused<float>(k, host_view(in.data(), shape), host_view(in.data(), shape), host_scalar(&value),
                     host_view(g.data(), shape), Reduction::mean, 1.0);
        CHECK(value == 0.0f);
        CHECK(kdloss_test::all_finite(g));
        for (float x : g) CHECK(x == 0.0f);
      }
    }
  }
  // An empty tensor reduces to 0 (PyTorch gives NaN for a mean over nothing; kdloss documents 0).
  float value = -1;
  mse_loss(host_view(static_cast<const float*>(nullptr), {0, 3}), host_view(static_cast<const float*>(nullptr), {0, 3}),
           host_scalar(&value));
  CHECK(value == 0.0f);
}

TEST_CASE("bad inputs throw a clear error and leave outputs untouched") {
  const Dims shape{2, 3, 4, 4};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<float>(n, 13), t = random_vector<float>(n, 14);
  std::vector<float> g(n, 42.0f);
  float out = 42.0f, one = 1.0f;
  auto sv = host_view(s.data(), shape);
  auto tv = host_view(t.data(), shape);
  auto untouched = [&] {
    CHECK(out == 42.0f);
    for (float x : g) REQUIRE(x == 42.0f);
  };
  auto throws_with = [&](auto&& call, const std::string& needle) { kdloss_test::expect_error(call, needle, untouched); };
  throws_with([&] { mse_loss(sv, host_view(t.data(), {2, 3, 4, 3}), host_scalar(&out)); },
              "'student' [2, 3, 4, 4] and 'teacher' [2, 3, 4, 3] must have the same shape");
  throws_with([&] { mse_loss(sv, host_view(static_cast<const float*>(nullptr), shape), host_scalar(&out)); },
              "'teacher' has a null data pointer");
  throws_with([&] { mse_loss(sv, tv, host_scalar(static_cast<float*>(nullptr))); }, "'out' has a null data pointer");
  throws_with([&] { mse_loss(sv, tv, host_view(g.data(), {2, 2})); }, "'out' must hold exactly one element");
  throws_with([&] { mse_loss(sv, tv, host_view(g.data(), {2, 3}), {Reduction::none}); }, "'out' has shape [2, 3]");
  throws_with([&] { mse_loss(sv, cuda_view(t.data(), shape), host_scalar(&out)); },
              "'teacher' is on cuda:0 but the call runs on host");
#if !KDLOSS_CUDA_ENABLED
  throws_with([&] { mse_loss(cuda_view(s.data(), shape), cuda_view(t.data(), shape), cuda_scalar(&out)); },
              "compiled without CUDA");
#endif
  // Gradient outputs: zero stride (broadcast), overlapping another argument.
  throws_with([&] { mse_loss_backward(sv, tv, host_scalar(&one), host_view(g.data(), shape, {0, 16, 4, 1})); },
              "'grad_student' with shape [2, 3, 4, 4] and strides [0, 16, 4, 1] addresses some element twice");
  {
    std::vector<float> s_copy = s;
    auto s_mut = host_view(s_copy.data(), shape);
    try {
      mse_loss_backward(View<const float>(s_mut), tv, host_scalar(&one), s_mut);
      FAIL("aliased gradient accepted");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("'grad_student' overlaps the memory of argument 'student'") != std::string::npos);
    }
    CHECK(s_copy == s);
  }
  throws_with([&] { mse_loss_backward(sv, tv, host_view(g.data(), {2}), host_view(g.data(), shape)); },
              "'grad_out' must hold one element");
  throws_with([&] { smooth_l1_loss(sv, tv, host_scalar(&out), {-1.0}); }, "'beta' must be >= 0");
  throws_with([&] { mse_loss(sv, tv, host_scalar(&out), {Reduction::batchmean}); }, "only kl_div offers");
  // A GPU call reports its workspace need even from a host-only build; a too small buffer is refused.
  CHECK(mse_loss_workspace_bytes(cuda_view(s.data(), shape)) > 0);
  CHECK(mse_loss_workspace_bytes(sv) == 0);
  CHECK(mse_loss_workspace_bytes(cuda_view(s.data(), shape), {Reduction::none}) == 0);
  alignas(256) static unsigned char small[256];
  throws_with(
      [&] {
        detail::HostScratch scratch;
        detail::resolve_workspace("kdloss::mse_loss", Device::cuda(), Workspace{small, 8},
                                  mse_loss_workspace_bytes(cuda_view(s.data(), shape)), scratch);
      },
      "argument 'workspace' has 8 bytes but this call needs");
}

namespace {

/// PyTorch's gradient of one element for the upstream w (already times the reduction's factor).
double torch_grad(Kind k, double d, double w, double beta) {
  namespace to = kdloss_ref::torch_order;
  return k == Kind::mse ? to::mse_grad(d, w) : k == Kind::l1 ? to::l1_grad(d, w) : to::smooth_l1_grad(d, w, beta);
}

/// Forward, backward (upstream 0.7 or a map) and fused on T inputs against PyTorch's propagation.
template <class T>
void check_nonfinite(Kind k, Reduction r, double beta, const std::vector<double>& s_in, const std::vector<double>& t_in,
                     const Dims& shape, double rel, double abs_tol) {
  const std::vector<T> s(s_in.begin(), s_in.end()), t(t_in.begin(), t_in.end());
  const auto sd = as_double(s), td = as_double(t);  // the inputs as T holds them
  const std::size_t n = s.size();
  const bool none = r == Reduction::none;
  const double factor = r == Reduction::mean ? 1.0 / static_cast<double>(n) : 1.0;
  const auto up = none ? random_vector<double>(n, 31) : std::vector<double>{0.7};
  const std::vector<T> up_t(up.begin(), up.end());
  std::vector<double> want_g(n), want_fused_g(n);
  for (std::size_t i = 0; i < n; ++i) {
    want_g[i] = torch_grad(k, sd[i] - td[i], (none ? double(up_t[i]) : double(up_t[0])) * factor, beta);
    want_fused_g[i] = torch_grad(k, sd[i] - td[i], factor, beta);
  }
  const auto want_v = reference(k, sd, td, r, beta);
  auto sv = host_view(s.data(), shape);
  auto tv = host_view(t.data(), shape);
  std::vector<T> v(want_v.size(), T(-7)), g(n, T(-7)), v2(want_v.size(), T(-7)), g2(n, T(-7));
  forward<T>(k, sv, tv, none ? host_view(v.data(), shape) : host_scalar(v.data()), r, beta);
  backward<T>(k, sv, tv, none ? host_view(up_t.data(), shape) : host_scalar(up_t.data()), host_view(g.data(), shape), r,
              beta);
  fused<T>(k, sv, tv, none ? host_view(v2.data(), shape) : host_scalar(v2.data()), host_view(g2.data(), shape), r, beta);
  kdloss_test::check_modes(v, g, v2, g2, {want_v, want_g, want_fused_g}, rel, abs_tol);
}

}  // namespace

TEST_CASE("pointwise losses propagate NaN and +-inf as PyTorch does (forward, backward, fused; float, double)") {
  // PyTorch: NaN d gives a NaN value and a NaN gradient, except L1's sign(NaN) = 0; inf d gives an
  // inf value, an inf MSE gradient and +-1 L1 / smooth-L1 gradients; inf - inf is NaN.
  const Dims shape{2, 3, 4, 5};
  const auto n = static_cast<std::size_t>(shape.product());
  for (const auto& c : kdloss_test::nonfinite_cases(n))
    for (Kind k : kKinds)
      for (Reduction r : kReductions)
        for (double beta : {0.5, 0.0}) {
          if (k != Kind::smooth_l1 && beta != 0.5) continue;
          const std::string what = c.name, loss = name(k), red = to_string(r);
          CAPTURE(what);
          CAPTURE(loss);
          CAPTURE(red);
          CAPTURE(beta);
          auto s = random_vector<double>(n, 1), t = random_vector<double>(n, 2);
          kdloss_test::place(c, s, t);
          check_nonfinite<double>(k, r, beta, s, t, shape, 1e-12, 1e-15);
          check_nonfinite<float>(k, r, beta, s, t, shape, 1e-5, 1e-6);
        }
}

TEST_CASE("pointwise gradient formulas keep PyTorch's NaN rule in their scalar (GPU) form too") {
  // The GPU runs the formulas on scalars; the host on Eigen arrays. Both forms, at NaN and +-inf.
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  for (double d : {nan, inf, -inf, 0.0, 0.25, -3.0}) {
    CAPTURE(d);
    const detail_check::Scalars got = detail_check::scalar_grads(d, 0.5);
    namespace to = kdloss_ref::torch_order;
    kdloss_test::check_same_propagation(std::vector<double>{got.mse, got.l1, got.smooth_l1},
                                        {to::mse_grad(d, 0.5), to::l1_grad(d, 0.5), to::smooth_l1_grad(d, 0.5, 0.5)},
                                        1e-15, 0, "scalar grad");
  }
}

KDLOSS_GPU_TEST("pointwise losses: GPU agrees with CPU (float, double, half, bfloat16; fused and split)") {
#if KDLOSS_TEST_CUDA
  const Dims shape{2, 16, 9, 13};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<double>(n, 20), t = random_vector<double>(n, 21);
  for (Kind k : kKinds)
    for (Reduction r : kReductions)
      for (bool fused_call : {true, false}) {
        CAPTURE(name(k));
        CAPTURE(to_string(r));
        // The reference runs on the inputs as each dtype holds them (float, half and bfloat16 round
        // them), so a sign or a smooth-L1 branch can never differ between the GPU and the reference.
        const auto want_on = [&](const kdloss_test::GpuLossResult& got) {
          return reference(k, got.student, got.teacher, r, 0.5);
        };
        const auto want_grad_on = [&](const kdloss_test::GpuLossResult& got) {  // unit upstream gradient
          std::vector<double> g(n);
          for (std::size_t i = 0; i < n; ++i) {
            const double d = got.student[i] - got.teacher[i];
            const double scale = r == Reduction::mean ? 1.0 / n : 1.0;
            g[i] = scale * (k == Kind::mse ? 2 * d : k == Kind::l1 ? (d > 0) - (d < 0)
                                                                   : (std::fabs(d) < 0.5 ? d / 0.5 : (d > 0) - (d < 0)));
          }
          return g;
        };
        const auto f64 = kdloss_test::pointwise_on_gpu(int(k), 1, s, t, shape, r, 0.5, fused_call);
        check_close(f64.value, want_on(f64), 1e-12, 1e-15, "double value");
        check_close(f64.grad, want_grad_on(f64), 1e-12, 1e-15, "double grad");
        // float: the sum of n terms accumulates in float (relative 2^-24 per step, about 1e-5 over the
        // block tree of 3744 terms); each gradient is one rounded float expression (a few ulps).
        const auto f32 = kdloss_test::pointwise_on_gpu(int(k), 0, s, t, shape, r, 0.5, fused_call);
        check_close(f32.value, want_on(f32), 1e-5, 1e-6, "float value");
        check_close(f32.grad, want_grad_on(f32), 1e-6, 1e-9, "float grad");
        // half / bfloat16: float accumulation, outputs rounded to the format (2^-11 and 2^-8 relative),
        // gradients too; the absolute floor covers a d near 0 whose 2d/n rounds in the format's subnormals.
        for (int dtype : {2, 3}) {
          CAPTURE(dtype);
          const auto low = kdloss_test::pointwise_on_gpu(int(k), dtype, s, t, shape, r, 0.5, fused_call);
          const double tol = dtype == 2 ? 1e-3 : 8e-3;
          check_close(low.value, want_on(low), tol, 1e-6, "low-precision value");
          check_close(low.grad, want_grad_on(low), tol, 1e-7, "low-precision grad");
        }
      }
#endif
}

KDLOSS_GPU_TEST("pointwise losses: a GPU call with a too small or null workspace throws and writes nothing") {
#if KDLOSS_TEST_CUDA
  float after = 0;
  const auto too_small = kdloss_test::pointwise_gpu_workspace_error(8, &after);
  CHECK_MESSAGE(too_small.find("argument 'workspace' has 8 bytes but this call needs") != std::string::npos, too_small);
  CHECK(after == 42.0f);
  const auto null_ws = kdloss_test::pointwise_gpu_workspace_error(0, &after);
  CHECK_MESSAGE(null_ws.find("argument 'workspace' is null") != std::string::npos, null_ws);
  CHECK(after == 42.0f);
#endif
}

TEST_CASE("entry-point shape: args + Mode equal the wrappers; check writes nothing; one workspace query per entry") {
  const Dims shape{2, 3, 4, 5};
  const auto n = static_cast<std::size_t>(shape.product());
  const auto s = random_vector<double>(n, 50), t = random_vector<double>(n, 51);
  auto sv = host_view(s.data(), shape);
  auto tv = host_view(t.data(), shape);
  double one = 1.0;
  for (Kind k : kKinds) {
    CAPTURE(name(k));
    double v1 = -1, v2 = -1;
    std::vector<double> g1(n, -1), g2(n, -1), g3(n, -1);
    fused<double>(k, sv, tv, host_scalar(&v1), host_view(g1.data(), shape), Reduction::sum, 0.5);
    auto run = [&](Mode mode, View<double> out, View<double> g) {
      switch (k) {
        case Kind::mse: mse_loss(MseLossArgs<double>{sv, tv, out, host_scalar(&one), g, {Reduction::sum}}, mode); break;
        case Kind::l1: l1_loss(L1LossArgs<double>{sv, tv, out, host_scalar(&one), g, {Reduction::sum}}, mode); break;
        case Kind::smooth_l1:
          smooth_l1_loss(SmoothL1LossArgs<double>{sv, tv, out, host_scalar(&one), g, {0.5, Reduction::sum}}, mode);
          break;
      }
    };
    run(Mode::forward_backward, host_scalar(&v2), host_view(g2.data(), shape));
    CHECK(v2 == v1);
    CHECK(g2 == g1);
    run(Mode::backward, {}, host_view(g3.data(), shape));  // backward reads grad_out, leaves out absent
    CHECK(g3 == g1);
    double v3 = -1;
    run(Mode::forward, host_scalar(&v3), {});  // forward needs no gradient output
    CHECK(v3 == v1);
  }
  // The check throws before anything is written, naming the entry point of the mode.
  std::vector<double> g(n, 42.0);
  MseLossArgs<double> bad{sv, host_view(t.data(), {2, 3, 4, 4}), {}, {}, host_view(g.data(), shape)};
  kdloss_test::expect_error([&] { mse_loss_check(bad, Mode::forward_backward); },
                            "kdloss::mse_loss_forward_backward: arguments 'student' [2, 3, 4, 5] and 'teacher' [2, 3, 4, 4]",
                            [&] { CHECK(g == std::vector<double>(n, 42.0)); });
  kdloss_test::expect_error(
      [&] { smooth_l1_loss_check(SmoothL1LossArgs<double>{sv, tv, host_scalar(&one), {}, {}, {-1.0}}, Mode::forward); },
      "kdloss::smooth_l1_loss: argument 'beta' must be >= 0", [] {});
  // One query per entry, from the arguments or from the view and options.
  auto sd = cuda_view(s.data(), shape);
  const std::size_t bytes = mse_loss_workspace_bytes(sd);
  CHECK(bytes > 0);
  CHECK(l1_loss_workspace_bytes(sd) == bytes);
  CHECK(smooth_l1_loss_workspace_bytes(sd, {0.5}) == bytes);
  CHECK(mse_loss_workspace_bytes(MseLossArgs<double>{sd, sd}) == bytes);
  CHECK(l1_loss_workspace_bytes(L1LossArgs<double>{sd, sd, {}, {}, {}, {Reduction::none}}) == 0);
  CHECK(smooth_l1_loss_workspace_bytes(SmoothL1LossArgs<double>{sv, tv}) == 0);
  // The family's namespace holds the same entities as the kdloss:: aliases.
  void (*f)(const MseLossArgs<double>&, Mode, const Exec&) = &feature::mse_loss<double>;
  const bool same = f == static_cast<void (*)(const MseLossArgs<double>&, Mode, const Exec&)>(&kdloss::mse_loss<double>);
  CHECK(same);
}
