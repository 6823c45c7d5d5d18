// ops::batch_norm (training and evaluation): double reference, central differences for x, γ and β,
// reserve against recomputation, GradAccumulate, thread-count determinism, layouts, degenerate and
// bad input, NaN propagation, PyTorch values, GPU agreement.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "kdloss/ops/batch_norm.hpp"
#include "ops/batch_norm_gpu.hpp"
#include "reference/ops/batch_norm.hpp"
#include "support/test_support.hpp"

#include "support/threads.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// A layout of x (and grad_y, y, grad_x): a logical shape, the memory order of its dims and a row pad.
struct Layout {
  Dims shape;
  std::vector<int> order;
  std::int64_t pad = 0;
  std::int64_t channels() const { return shape[1]; }
  std::int64_t batch() const { return shape[0]; }
  std::int64_t positions() const {
    std::int64_t p = 1;
    for (int d = 2; d < shape.rank; ++d) p *= shape[d];
    return p;
  }
  kdloss_ref::ops::BatchNorm ref(bool training = true, double eps = 1e-5) const {
    return {batch(), channels(), positions(), training, eps};
  }
};
Layout nchw(std::int64_t b, std::int64_t c, std::int64_t h, std::int64_t w) { return {Dims{b, c, h, w}, {0, 1, 2, 3}}; }

/// Aligned caller-owned memory for a reserve.
struct Aligned {
  std::vector<unsigned char> storage;
  void* data = nullptr;
  explicit Aligned(std::size_t bytes) : storage(bytes + 256) {
    auto p = reinterpret_cast<std::uintptr_t>(storage.data());
    data = storage.data() + ((256 - p % 256) % 256);
  }
};

struct Run {
  std::vector<double> y, mean, var, gx, gw, gb;
};
/// How a training call is made: one forward_backward; forward then backward reading the reserve;
/// forward then backward without a reserve (recomputed statistics).
enum class How { fused, reserve, recompute };

struct Inputs {
  std::vector<double> x, w, b, rm, rv, gy, old_gw, old_gb;
};

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <class T>
std::vector<double> widen(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

template <class T>
Run run_bn(const Layout& L, const Inputs& in, ops::BatchNormOptions opt, Mode mode, How how = How::fused) {
  const std::int64_t C = L.channels();
  auto xs = kdloss_test::relayout(cast<T>(in.x), L.shape, L.order, L.pad);
  std::vector<T> sentinel(static_cast<std::size_t>(L.shape.product()), T(-99));
  auto ys = kdloss_test::relayout(sentinel, L.shape, L.order, L.pad);
  auto gxs = kdloss_test::relayout(sentinel, L.shape, L.order, L.pad);
  kdloss_test::Strided<T> gys;
  if (!in.gy.empty()) gys = kdloss_test::relayout(cast<T>(in.gy), L.shape, L.order, L.pad);
  std::vector<T> w = cast<T>(in.w), b = cast<T>(in.b), rm = cast<T>(in.rm), rv = cast<T>(in.rv);
  std::vector<T> mean(C, T(-99)), var(C, T(-99));
  std::vector<T> gw = in.old_gw.empty() ? std::vector<T>(C, T(kNaN)) : cast<T>(in.old_gw);
  std::vector<T> gb = in.old_gb.empty() ? std::vector<T>(C, T(kNaN)) : cast<T>(in.old_gb);
  const auto param = [&](std::vector<T>& v) { return v.empty() ? View<const T>{} : host_view<const T>(v.data(), {C}); };
  ops::BatchNormArgs<T> a;
  a.x = xs.view;
  a.weight = param(w);
  a.bias = param(b);
  a.running_mean = param(rm);
  a.running_var = param(rv);
  a.options = opt;
  const bool fwd = writes_value(mode), bwd = writes_gradients(mode);
  if (fwd) {
    a.y = ys.view;
    if (opt.training) {
      a.batch_mean = host_view(mean.data(), {C});
      a.batch_var = host_view(var.data(), {C});
    }
  }
  if (bwd) {
    a.grad_y = gys.view;
    a.grad_x = gxs.view;
    a.grad_weight = host_view(gw.data(), {C});
    a.grad_bias = host_view(gb.data(), {C});
  }
  Aligned keep(ops::batch_norm_reserve_bytes(a));
  if (how == How::fused || mode != Mode::forward_backward) {
    if (how == How::reserve) a.reserve = Reserve{keep.data, keep.storage.size() - 256};
    ops::batch_norm(a, mode);
  } else {
    if (how == How::reserve) a.reserve = Reserve{keep.data, keep.storage.size() - 256};
    auto f = a;
    f.grad_y = {};
    f.grad_x = f.grad_weight = f.grad_bias = {};
    ops::batch_norm(f, Mode::forward);
    auto g = a;
    g.y = g.batch_mean = g.batch_var = {};
    ops::batch_norm(g, Mode::backward);
  }
  Run r;
  if (fwd) {
    r.y = widen(kdloss_test::to_vector(ys.view));
    if (opt.training) r.mean = widen(mean), r.var = widen(var);
  }
  if (bwd) {
    r.gx = widen(kdloss_test::to_vector(gxs.view));
    r.gw = widen(gw);
    r.gb = widen(gb);
  }
  return r;
}

Inputs make_inputs(const Layout& L, std::uint32_t seed, bool params = true) {
  const auto n = static_cast<std::size_t>(L.shape.product()), C = static_cast<std::size_t>(L.channels());
  Inputs in;
  in.x = random_vector<double>(n, seed, -2.0, 3.0);
  for (std::size_t i = 0; i < n; ++i) in.x[i] += 0.5 * static_cast<double>((i / static_cast<std::size_t>(L.positions())) % C);
  if (params) {
    in.w = random_vector<double>(C, seed + 1, 0.5, 1.5);
    in.b = random_vector<double>(C, seed + 2);
  }
  in.rm = random_vector<double>(C, seed + 3);
  in.rv = random_vector<double>(C, seed + 4, 0.5, 2.0);
  in.gy = random_vector<double>(n, seed + 5);
  return in;
}

void check_all(const Layout& L, const Inputs& in, const Run& r, bool training, double tol) {
  const auto ref = L.ref(training);
  check_close(r.y, ref.forward(in.x, in.w, in.b, in.rm, in.rv), tol, tol, "y");
  if (training) {
    const auto s = ref.stats(in.x, in.rm, in.rv);
    check_close(r.mean, s.mean, tol, tol, "batch_mean");
    check_close(r.var, s.var_unbiased, tol, tol, "batch_var");
  }
  const auto g = ref.backward(in.x, in.w, in.gy, in.rm, in.rv);
  check_close(r.gx, g.x, tol, tol, "grad_x");
  check_close(r.gw, g.w, tol, tol * 10, "grad_weight");
  check_close(r.gb, g.b, tol, tol * 10, "grad_bias");
}

std::vector<Layout> layouts() {
  return {
      nchw(2, 3, 4, 5),
      {Dims{3, 4, 5, 6}, {0, 2, 3, 1}},       // channels last
      {Dims{2, 3, 4, 5}, {1, 0, 2, 3}, 3},    // channel-major, padded rows
      {Dims{7, 3}, {0, 1}},                   // [N, C]
      {Dims{7, 3}, {1, 0}},                   // [N, C] stored transposed
      {Dims{2, 3, 9}, {0, 1, 2}, 2},          // [B, C, L], padded
      {Dims{2, 5, 70, 71}, {0, 1, 2, 3}},     // several host tasks per channel
      {Dims{2, 4, 60, 70}, {0, 2, 3, 1}},     // several tasks, channels last
  };
}

}  // namespace

TEST_CASE("batch_norm: training forward and backward match the double reference in every layout") {
  for (const Layout& L : layouts()) {
    CAPTURE(L.shape.str());
    const Inputs in = make_inputs(L, 100);
    for (How how : {How::fused, How::reserve, How::recompute}) {
      check_all(L, in, run_bn<double>(L, in, {}, Mode::forward_backward, how), true, 1e-11);
      check_all(L, in, run_bn<float>(L, in, {}, Mode::forward_backward, how), true, 2e-5);
    }
  }
}

TEST_CASE("batch_norm: evaluation forward and backward match the double reference in every layout") {
  for (const Layout& L : layouts()) {
    CAPTURE(L.shape.str());
    const Inputs in = make_inputs(L, 200);
    ops::BatchNormOptions o;
    o.training = false;
    o.eps = 1e-4;
    const auto ref = L.ref(false, 1e-4);
    for (int dtype : {0, 1}) {
      const Run r = dtype ? run_bn<double>(L, in, o, Mode::forward_backward) : run_bn<float>(L, in, o, Mode::forward_backward);
      const double tol = dtype ? 1e-12 : 2e-6;
      check_close(r.y, ref.forward(in.x, in.w, in.b, in.rm, in.rv), tol, tol, "y");
      const auto g = ref.backward(in.x, in.w, in.gy, in.rm, in.rv);
      check_close(r.gx, g.x, tol, tol, "grad_x");
      check_close(r.gw, g.w, tol, tol * 10, "grad_weight");
      check_close(r.gb, g.b, tol, tol * 10, "grad_bias");
    }
  }
}

TEST_CASE("batch_norm: a one-pass forward_backward, forward + backward with the reserve, and with recomputation agree bitwise") {
  for (const Layout& L : {nchw(2, 5, 70, 71), Layout{Dims{2, 4, 60, 70}, {0, 2, 3, 1}}}) {
    const Inputs in = make_inputs(L, 300);
    const Run a = run_bn<float>(L, in, {}, Mode::forward_backward, How::fused);
    const Run b = run_bn<float>(L, in, {}, Mode::forward_backward, How::reserve);
    const Run c = run_bn<float>(L, in, {}, Mode::forward_backward, How::recompute);
    for (const Run* r : {&b, &c}) {
      CHECK(r->y == a.y);
      CHECK(r->gx == a.gx);
      CHECK(r->gw == a.gw);
      CHECK(r->gb == a.gb);
    }
  }
}

TEST_CASE("batch_norm: central differences for x, weight and bias (training and evaluation, double)") {
  const Layout L = nchw(2, 3, 2, 3);
  Inputs in = make_inputs(L, 400);
  for (bool training : {true, false}) {
    CAPTURE(training);
    const auto ref = L.ref(training);
    // L(x, w, b) = sum(y * gy): its gradients are exactly what backward returns for grad_y = gy.
    const auto loss = [&](const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& b) {
      const auto y = ref.forward(x, w, b, in.rm, in.rv);
      double s = 0;
      for (std::size_t i = 0; i < y.size(); ++i) s += y[i] * in.gy[i];
      return s;
    };
    ops::BatchNormOptions o;
    o.training = training;
    const Run r = run_bn<double>(L, in, o, Mode::backward);
    const auto nx = kdloss_test::numeric_gradient(in.x, [&](const std::vector<double>& v) { return loss(v, in.w, in.b); });
    const auto nw = kdloss_test::numeric_gradient(in.w, [&](const std::vector<double>& v) { return loss(in.x, v, in.b); });
    const auto nb = kdloss_test::numeric_gradient(in.b, [&](const std::vector<double>& v) { return loss(in.x, in.w, v); });
    check_close(r.gx, nx, 1e-6, 1e-8, "grad_x");
    check_close(r.gw, nw, 1e-6, 1e-8, "grad_weight");
    check_close(r.gb, nb, 1e-6, 1e-8, "grad_bias");
  }
}

TEST_CASE("batch_norm: a per-channel bias feeding training-mode BN gets a zero gradient (judged against grad_x's scale)") {
  // x' = x + d[c]: BN removes d, so dL/dd[c] = sum over the channel of grad_x = 0 in theory.
  const Layout L = nchw(2, 4, 30, 31);
  const Inputs in = make_inputs(L, 500);
  for (int dtype : {0, 1}) {
    const Run r = dtype ? run_bn<double>(L, in, {}, Mode::forward_backward) : run_bn<float>(L, in, {}, Mode::forward_backward);
    const std::int64_t P = L.positions();
    for (std::int64_t c = 0; c < L.channels(); ++c) {
      double sum = 0, scale = 0;
      for (std::int64_t b = 0; b < L.batch(); ++b)
        for (std::int64_t p = 0; p < P; ++p) {
          const double g = r.gx[static_cast<std::size_t>((b * L.channels() + c) * P + p)];
          sum += g;
          scale += std::fabs(g);
        }
      CHECK(std::fabs(sum) <= (dtype ? 1e-13 : 1e-6) * scale);
    }
  }
}

TEST_CASE("batch_norm: GradAccumulate beta 0 overwrites NaN garbage, beta 1 adds to the old gradient") {
  const Layout L = nchw(2, 3, 4, 4);
  Inputs in = make_inputs(L, 600);
  const auto g = L.ref().backward(in.x, in.w, in.gy);
  ops::BatchNormOptions o;
  const Run r0 = run_bn<double>(L, in, o, Mode::backward);  // old gradients are NaN
  check_close(r0.gw, g.w, 1e-12, 1e-12);
  check_close(r0.gb, g.b, 1e-12, 1e-12);
  in.old_gw = {1, 2, 3};
  in.old_gb = {-1, -2, -3};
  o.param_grads.beta = 1.0;
  const Run r1 = run_bn<double>(L, in, o, Mode::backward);
  for (std::size_t c = 0; c < 3; ++c) {
    CHECK(r1.gw[c] == doctest::Approx(g.w[c] + in.old_gw[c]).epsilon(1e-12));
    CHECK(r1.gb[c] == doctest::Approx(g.b[c] + in.old_gb[c]).epsilon(1e-12));
  }
  CHECK(r1.gx == r0.gx);
}

TEST_CASE("batch_norm: results are bitwise the same with 1, 2 and 3 threads") {
#if KDLOSS_OPENMP
  for (const Layout& L : {nchw(2, 5, 70, 71), Layout{Dims{2, 4, 60, 70}, {0, 2, 3, 1}}}) {
    const Inputs in = make_inputs(L, 700);
    std::vector<Run> runs;
    kdloss_test::ThreadScope scope;
    for (int threads : {1, 2, 3}) {
      scope.set(threads);
      runs.push_back(run_bn<float>(L, in, {}, Mode::forward_backward));
    }
    for (int i = 1; i < 3; ++i) {
      CHECK(runs[i].y == runs[0].y);
      CHECK(runs[i].mean == runs[0].mean);
      CHECK(runs[i].var == runs[0].var);
      CHECK(runs[i].gx == runs[0].gx);
      CHECK(runs[i].gw == runs[0].gw);
      CHECK(runs[i].gb == runs[0].gb);
    }
  }
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}

TEST_CASE("batch_norm: absent weight and bias act as 1 and 0 (affine=False)") {
  const Layout L = nchw(3, 2, 3, 3);
  const Inputs in = make_inputs(L, 800, /*params=*/false);
  const Run r = run_bn<double>(L, in, {}, Mode::forward_backward);
  check_all(L, in, r, true, 1e-12);
  Inputs ones = in;
  ones.w = {1, 1};
  ones.b = {0, 0};
  const Run r1 = run_bn<double>(L, ones, {}, Mode::forward_backward);
  CHECK(r.y == r1.y);
  CHECK(r.gx == r1.gx);
}

TEST_CASE("batch_norm: a constant channel gives y = bias and finite gradients") {
  const Layout L = nchw(2, 2, 3, 3);
  Inputs in = make_inputs(L, 900);
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t p = 0; p < 9; ++p) in.x[static_cast<std::size_t>((b * 2 + 1) * 9 + p)] = 0.3;  // channel 1
  for (int dtype : {0, 1}) {
    const Run r = dtype ? run_bn<double>(L, in, {}, Mode::forward_backward) : run_bn<float>(L, in, {}, Mode::forward_backward);
    CHECK(kdloss_test::all_finite(r.y));
    CHECK(kdloss_test::all_finite(r.gx));
    CHECK(kdloss_test::all_finite(r.gw));
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t p = 0; p < 9; ++p)
        CHECK(r.y[static_cast<std::size_t>((b * 2 + 1) * 9 + p)] == static_cast<double>(dtype ? in.b[1] : float(in.b[1])));
    CHECK(r.var[1] == 0.0);
    CHECK(r.gw[1] == 0.0);
    check_all(L, in, r, true, dtype ? 1e-10 : 2e-5);
  }
}

TEST_CASE("batch_norm: one value per channel is an error in training and legal in evaluation") {
  std::vector<float> x(3, 1.f), y(3, 9.f);
  ops::BatchNormArgs<float> a;
  a.x = host_view<const float>(x.data(), {1, 3, 1, 1});
  a.y = host_view(y.data(), {1, 3, 1, 1});
  kdloss_test::expect_error([&] { ops::batch_norm(a, Mode::forward); },
                            "Expected more than 1 value per channel when training, got input 'x' of shape [1, 3, 1, 1]",
                            [&] { CHECK(y == std::vector<float>(3, 9.f)); });
  a.x = host_view<const float>(x.data(), {1, 3});
  a.y = host_view(y.data(), {1, 3});
  kdloss_test::expect_error([&] { ops::batch_norm(a, Mode::forward); }, "Expected more than 1 value per channel",
                            [&] { CHECK(y == std::vector<float>(3, 9.f)); });
  std::vector<float> rm{1.f, 1.f, 1.f}, rv{4.f, 4.f, 4.f};
  a.options.training = false;
  a.running_mean = host_view<const float>(rm.data(), {3});
  a.running_var = host_view<const float>(rv.data(), {3});
  ops::batch_norm(a, Mode::forward);
  CHECK(y[0] == doctest::Approx(0.0));
}

TEST_CASE("batch_norm: an empty batch writes an empty y, NaN batch statistics and zero parameter gradients") {
  std::vector<double> mean(2, 5), var(2, 5), gw(2, kNaN), gb(2, kNaN);
  ops::BatchNormArgs<double> a;
  a.x = host_view<const double>(nullptr, {0, 2, 3, 3});
  a.y = host_view<double>(nullptr, {0, 2, 3, 3});
  a.batch_mean = host_view(mean.data(), {2});
  a.batch_var = host_view(var.data(), {2});
  a.grad_y = host_view<const double>(nullptr, {0, 2, 3, 3});
  a.grad_x = host_view<double>(nullptr, {0, 2, 3, 3});
  a.grad_weight = host_view(gw.data(), {2});
  a.grad_bias = host_view(gb.data(), {2});
  ops::batch_norm(a, Mode::forward_backward);
  CHECK(std::isnan(mean[0]));
  CHECK(std::isnan(var[1]));
  CHECK(gw == std::vector<double>{0, 0});
  CHECK(gb == std::vector<double>{0, 0});
}

TEST_CASE("batch_norm: NaN and inf propagate as in PyTorch") {
  const Layout L = nchw(2, 3, 2, 2);
  Inputs in = make_inputs(L, 1000);
  in.x[1 * 4 + 0] = kNaN;                                  // b 0, channel 1
  in.x[(1 * 3 + 2) * 4 + 3] = std::numeric_limits<double>::infinity();  // b 1, channel 2
  const Run r = run_bn<double>(L, in, {}, Mode::forward_backward);
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t c = 0; c < 3; ++c)
      for (std::int64_t p = 0; p < 4; ++p) {
        const std::size_t i = static_cast<std::size_t>((b * 3 + c) * 4 + p);
        CHECK(std::isnan(r.y[i]) == (c != 0));  // torch: the whole channel is NaN (its mean and var are)
        CHECK(std::isnan(r.gx[i]) == (c != 0));
      }
  CHECK(std::isfinite(r.gw[0]));
  CHECK(std::isnan(r.gw[1]));
  CHECK(std::isnan(r.gw[2]));
  CHECK(kdloss_test::all_finite(r.gb));  // torch: grad_bias = sum grad_y stays finite
  // Evaluation: only the NaN element's output; grad_weight of its channel is NaN.
  ops::BatchNormOptions o;
  o.training = false;
  in.x[(1 * 3 + 2) * 4 + 3] = 1.0;
  const Run e = run_bn<double>(L, in, o, Mode::forward_backward);
  for (std::size_t i = 0; i < e.y.size(); ++i) CHECK(std::isnan(e.y[i]) == (i == 4));
  CHECK(kdloss_test::all_finite(e.gx));
  CHECK(std::isnan(e.gw[1]));
  CHECK(std::isfinite(e.gw[0]));
}

TEST_CASE("batch_norm: values and gradients of torch.nn.functional.batch_norm (float64)") {
  // x[i] = sin(0.7 i + 0.3) * 2 + 0.1 i over [2, 3, 1, 2] (i row-major), weight [0.5, -1.5, 2],
  // bias [0.1, 0.2, -0.3], grad_y[i] = cos(1.3 i); eps 1e-5 (training) and eps 1e-4 with running
  // mean [0.2, -0.1, 0.5], var [1.5, 0.7, 2.5] (evaluation). Expected values from PyTorch 2.x:
  //   y = F.batch_norm(x, rm, rv, w, b, training=..., momentum=1.0, eps=...); y.backward(gy)
  //   (torch_train_var: rv after the training call with momentum 1, i.e. the unbiased batch variance)
  const Layout L = nchw(2, 3, 1, 2);
  Inputs in;
  for (int i = 0; i < 12; ++i) {
    in.x.push_back(std::sin(0.7 * i + 0.3) * 2 + 0.1 * i);
    in.gy.push_back(std::cos(1.3 * i));
  }
  in.w = {0.5, -1.5, 2};
  in.b = {0.1, 0.2, -0.3};
  in.rm = {0.2, -0.1, 0.5};
  in.rv = {1.5, 0.7, 2.5};
  const std::vector<double> torch_train_y = {0.3364913816435199, 0.8039160178515712, -1.376858398847432, -0.3665190900491373, -1.4484949756496202, -2.985868694830973, -0.4267053630187701, -0.31370203647632094, 2.667288280615541, -0.1239107917189719, 1.3765250681473409, 1.857838602333253};
  const std::vector<double> torch_train_var = {2.167372955145359, 0.8330310990164237, 3.286730986206462};
  const std::vector<double> torch_train_gx = {0.2824021785150317, -0.14938924449138213, 0.8602279726613911, 0.6476245620014824, -0.2826701002896434, 0.12101733464801018, 0.14737635898331788, -0.2803892930069675, 0.4424387228141713, -1.9502912574770448, 0.723934303817354, -0.5622815381757208};
  const std::vector<double> torch_train_gw = {1.5768876786177228, -0.1123822728751793, -0.9947673433312465};
  const std::vector<double> torch_train_gb = {0.3737326470561244, -1.4962089763424387, 2.1904366419788786};
  const std::vector<double> torch_eval_y = {0.2596362591213126, 0.7462118129643768, -3.8933589588280775, -2.938911719467747, -0.32129900050474586, -1.8478606748767887, -0.5348295220104884, -0.41719632097821097, -0.07293486944695098, -2.70972453594368, 2.4838532369679363, 2.961781788417369};
  const std::vector<double> torch_eval_gx = {0.4082346828678902, 0.10920229947109053, 1.5361572079688073, 1.3013896345472344, 0.5926200689449964, 1.2352717876259398, 0.0220264740023966, -0.3868928276930433, 1.0056848187302811, -1.1609555844514987, 1.1478165178078639, -0.2050562432896824};
  const std::vector<double> torch_eval_gw = {1.57680558844156, -2.7033172544067097, 0.23790811252386534};
  const Run t = run_bn<double>(L, in, {}, Mode::forward_backward);
  check_close(t.y, torch_train_y, 1e-12, 1e-13, "y");
  check_close(t.var, torch_train_var, 1e-12, 1e-13, "batch_var");
  check_close(t.gx, torch_train_gx, 1e-11, 1e-13, "grad_x");
  check_close(t.gw, torch_train_gw, 1e-11, 1e-13, "grad_weight");
  check_close(t.gb, torch_train_gb, 1e-11, 1e-13, "grad_bias");
  ops::BatchNormOptions o;
  o.training = false;
  o.eps = 1e-4;
  const Run e = run_bn<double>(L, in, o, Mode::forward_backward);
  check_close(e.y, torch_eval_y, 1e-12, 1e-13, "eval y");
  check_close(e.gx, torch_eval_gx, 1e-12, 1e-13, "eval grad_x");
  check_close(e.gw, torch_eval_gw, 1e-11, 1e-13, "eval grad_weight");
}

TEST_CASE("batch_norm: update_running_stats applies PyTorch's momentum rule") {
  std::vector<float> rm{0.f, 1.f}, rv{1.f, 2.f}, bm{2.f, 3.f}, bv{5.f, 6.f};
  ops::batch_norm_update_running_stats<float>(host_view(rm.data(), {2}), host_view(rv.data(), {2}),
                                              host_view<const float>(bm.data(), {2}),
                                              host_view<const float>(bv.data(), {2}), 0.1);
  CHECK(rm[0] == doctest::Approx(0.2f));
  CHECK(rm[1] == doctest::Approx(1.2f));
  CHECK(rv[0] == doctest::Approx(1.4f));
  CHECK(rv[1] == doctest::Approx(2.4f));
  kdloss_test::expect_error(
      [&] {
        ops::batch_norm_update_running_stats<float>(host_view(rm.data(), {2}), host_view(rv.data(), {2}),
                                                    host_view<const float>(bm.data(), {3}),
                                                    host_view<const float>(bv.data(), {2}), 0.1);
      },
      "argument 'batch_mean' has shape [3] but expected [2]", [&] { CHECK(rm[0] == doctest::Approx(0.2f)); });
}

TEST_CASE("batch_norm: reserve and workspace queries (host, and a GPU query from a host translation unit)") {
  ops::BatchNormArgs<float> a;
  a.x = host_view<const float>(nullptr, {2, 100, 7, 9});
  CHECK(ops::batch_norm_reserve_bytes(a) == 2 * kdloss::detail::align_up(100 * sizeof(double)));
  CHECK(ops::batch_norm_workspace_bytes(a) == 6 * kdloss::detail::align_up(100 * sizeof(double)));
  a.options.training = false;
  CHECK(ops::batch_norm_reserve_bytes(a) == 0);
  a.x = cuda_view<const float>(nullptr, {2, 100, 7, 9});  // plus the per-slice partials of the reductions
  CHECK(ops::batch_norm_workspace_bytes(a) ==
        6 * kdloss::detail::align_up(100 * sizeof(double)) +
            kdloss::detail::align_up(static_cast<std::size_t>(
                kdloss::backend::cuda::channel_stats::partial_doubles(100, 2 * 7 * 9)) * sizeof(double)));
}

TEST_CASE("batch_norm: bad input throws naming the argument and shapes, and writes nothing") {
  std::vector<float> x(2 * 3 * 4, 1.f), w(3, 1.f), y(24, 9.f), gy(24, 1.f), gx(24, 9.f), gw(3, 9.f), bm(3, 9.f);
  x[0] = 2.f;
  const auto untouched = [&] {
    CHECK(y == std::vector<float>(24, 9.f));
    CHECK(gx == std::vector<float>(24, 9.f));
    CHECK(gw == std::vector<float>(3, 9.f));
    CHECK(bm == std::vector<float>(3, 9.f));
  };
  const auto base = [&] {
    ops::BatchNormArgs<float> a;
    a.x = host_view<const float>(x.data(), {2, 3, 4});
    a.weight = host_view<const float>(w.data(), {3});
    a.y = host_view(y.data(), {2, 3, 4});
    a.batch_mean = host_view(bm.data(), {3});
    a.grad_y = host_view<const float>(gy.data(), {2, 3, 4});
    a.grad_x = host_view(gx.data(), {2, 3, 4});
    a.grad_weight = host_view(gw.data(), {3});
    return a;
  };
  using kdloss_test::expect_error;
  auto a = base();
  a.weight = host_view<const float>(w.data(), {1, 3});
  expect_error([&] { ops::batch_norm(a, Mode::forward_backward); }, "argument 'weight' has shape [1, 3] but expected [3]",
               untouched);
  a = base();
  a.x = host_view<const float>(x.data(), {24});
  expect_error([&] { ops::batch_norm(a, Mode::forward); }, "argument 'x' must have rank 2 to 4 but has shape [24]",
               untouched);
  a = base();
  a.y = host_view(y.data(), {2, 4, 3});
  expect_error([&] { ops::batch_norm(a, Mode::forward); }, "argument 'y' has shape [2, 4, 3] but expected [2, 3, 4]",
               untouched);
  a = base();
  a.grad_y = {};
  expect_error([&] { ops::batch_norm(a, Mode::backward); }, "reads 'grad_y' but it is absent", untouched);
  a = base();
  a.y = {};
  expect_error([&] { ops::batch_norm(a, Mode::forward); }, "writes 'y' but it is absent", untouched);
  a = base();
  a.grad_x = host_view(const_cast<float*>(gy.data()), {2, 3, 4});
  expect_error([&] { ops::batch_norm(a, Mode::backward); }, "output argument 'grad_x' overlaps the memory of argument 'grad_y'",
               untouched);
  a = base();
  a.grad_weight = host_view(bm.data(), {3});
  expect_error([&] { ops::batch_norm(a, Mode::forward_backward); },
               "output argument 'grad_weight' overlaps the memory of argument 'batch_mean'", untouched);
  a = base();
  a.options.training = false;
  a.batch_mean = {};
  expect_error([&] { ops::batch_norm(a, Mode::forward); }, "reads 'running_mean' and 'running_var' but 'running_mean' is absent",
               untouched);
  a = base();
  a.options.training = false;
  a.running_mean = a.running_var = host_view<const float>(w.data(), {3});
  expect_error([&] { ops::batch_norm(a, Mode::forward); }, "'batch_mean' and 'batch_var' are written in training mode only",
               untouched);
  a = base();
  a.options.eps = -1;
  expect_error([&] { ops::batch_norm(a, Mode::forward); }, "option 'eps' is -1 but must be >= 0", untouched);
  a = base();
  std::vector<double> small(1);
  a.reserve = Reserve{small.data(), 8};
  expect_error([&] { ops::batch_norm(a, Mode::forward); }, "argument 'reserve' has 8 bytes but x [2, 3, 4] needs", untouched);
  a = base();
  a.bias = cuda_view<const float>(w.data(), {3});
  expect_error([&] { ops::batch_norm(a, Mode::forward); }, "argument 'bias' is on cuda:0 but the call runs on host",
               untouched);
  a = base();
  a.y = host_view(y.data(), {2, 3, 4}, {0, 4, 1});
  expect_error([&] { ops::batch_norm(a, Mode::forward); }, "output argument 'y' with shape [2, 3, 4] and strides [0, 4, 1]",
               untouched);
}

KDLOSS_GPU_TEST("batch_norm: GPU agrees with the CPU reference (float, double, half, bfloat16; NCHW and NHWC) and is deterministic") {
#if KDLOSS_TEST_CUDA
  const Layout L = nchw(2, 6, 40, 37);
  for (bool channels_last : {false, true})
    for (bool training : {true, false})
      for (int dtype : {1, 0, 2, 3}) {
        CAPTURE(channels_last);
        CAPTURE(training);
        CAPTURE(dtype);
        Inputs in = make_inputs(L, 1100);
        in.old_gw = random_vector<double>(6, 1101);
        in.old_gb = random_vector<double>(6, 1102);
        std::vector<std::vector<double>> r;  // the inputs as the GPU saw them (rounded to half / bfloat16)
        const auto got = kdloss_test::batch_norm_on_gpu(dtype, channels_last, training, in.x, in.w, in.b, in.rm, in.rv,
                                                        in.gy, in.old_gw, in.old_gb, 2, 6, 40, 37, &r);
        const auto ref = L.ref(training);
        std::vector<double> want = ref.forward(r[0], r[1], r[2], r[3], r[4]);
        const auto s = ref.stats(r[0], r[3], r[4]);
        const auto g = ref.backward(r[0], r[1], r[5], r[3], r[4]);
        if (training) {
          want.insert(want.end(), s.mean.begin(), s.mean.end());
          want.insert(want.end(), s.var_unbiased.begin(), s.var_unbiased.end());
        }
        want.insert(want.end(), g.x.begin(), g.x.end());
        for (std::size_t c = 0; c < 6; ++c) want.push_back(g.w[c] + r[6][c]);
        for (std::size_t c = 0; c < 6; ++c) want.push_back(g.b[c] + r[7][c]);
        // float accumulates in float; half and bfloat16 round every output to 11 and 8 bits.
        const double t = dtype == 1 ? 1e-10 : dtype == 0 ? 1e-4 : dtype == 2 ? 5e-3 : 2e-2;
        check_close(got, want, t, t * 10);
        const auto again = kdloss_test::batch_norm_on_gpu(dtype, channels_last, training, in.x, in.w, in.b, in.rm,
                                                          in.rv, in.gy, in.old_gw, in.old_gb, 2, 6, 40, 37);
        CHECK(again == got);  // no atomics: the same bits every run
      }
#endif
}

TEST_CASE("batch_norm: the usage examples of ops/batch_norm.hpp compile and run") {
  std::vector<float> fb(2 * 256 * 50 * 84), ob(fb.size()), gob(fb.size(), 1.f), gxb(fb.size()), gwb(256), gbb(256);
  for (std::size_t i = 0; i < fb.size(); ++i) fb[i] = static_cast<float>(i % 97) * 0.01f;
  const float *feat = fb.data(), *grad_out = gob.data();
  float *out = ob.data(), *grad_x = gxb.data(), *grad_w = gwb.data(), *grad_b = gbb.data();
  // --- from ops::batch_norm's comment ---
  std::vector<float> gamma(256, 1.0f), beta(256, 0.0f), mean(256), var(256);
  kdloss::ops::BatchNormArgs<float> bn;
  bn.x = kdloss::host_view<const float>(feat, {2, 256, 50, 84});
  bn.weight = kdloss::host_view<const float>(gamma.data(), {256});
  bn.bias = kdloss::host_view<const float>(beta.data(), {256});
  bn.y = kdloss::host_view(out, {2, 256, 50, 84});
  bn.batch_mean = kdloss::host_view(mean.data(), {256});
  bn.batch_var = kdloss::host_view(var.data(), {256});             // unbiased, for running_var
  const std::size_t keep_bytes = kdloss::ops::batch_norm_reserve_bytes(bn);
  void* keep = std::aligned_alloc(256, keep_bytes);                  // caller-owned, 256-byte aligned
  bn.reserve = {keep, keep_bytes};
  kdloss::ops::batch_norm(bn, kdloss::Mode::forward);
  bn.grad_y = kdloss::host_view<const float>(grad_out, {2, 256, 50, 84});
  bn.grad_x = kdloss::host_view(grad_x, {2, 256, 50, 84});
  bn.grad_weight = kdloss::host_view(grad_w, {256});
  bn.grad_bias = kdloss::host_view(grad_b, {256});
  kdloss::ops::batch_norm(bn, kdloss::Mode::backward);             // reads the reserve
  std::free(keep);
  CHECK(mean[1] == doctest::Approx(0.48).epsilon(0.05));
  CHECK(gbb[0] == doctest::Approx(2 * 50 * 84));
  CHECK(std::fabs(gwb[0]) < 1e-2);  // grad_y = 1: sum of xhat is 0
  // --- from the wrappers' comments ---
  const auto g = kdloss::host_view<const float>(gamma.data(), {256});
  kdloss::ops::batch_norm_forward<float>(kdloss::host_view<const float>(feat, {2, 256, 50, 84}), g, {}, {}, {},
                                         kdloss::host_view(out, {2, 256, 50, 84}));   // training, eps 1e-5
  kdloss::ops::batch_norm_backward<float>(kdloss::host_view<const float>(feat, {2, 256, 50, 84}), g, {}, {},
                                          kdloss::host_view<const float>(grad_out, {2, 256, 50, 84}),
                                          kdloss::host_view(grad_x, {2, 256, 50, 84}), kdloss::host_view(grad_w, {256}),
                                          {}, {true, 1e-5, {/*beta=*/1.0}});   // recomputes the statistics
  std::vector<float> running_mean(256, 0.0f), running_var(256, 1.0f);
  kdloss::ops::batch_norm_update_running_stats<float>(kdloss::host_view(running_mean.data(), {256}),
                                                      kdloss::host_view(running_var.data(), {256}),
                                                      kdloss::host_view<const float>(mean.data(), {256}),
                                                      kdloss::host_view<const float>(var.data(), {256}), 0.1);
  CHECK(running_mean[1] == doctest::Approx(0.1 * mean[1]));
}
