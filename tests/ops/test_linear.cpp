// ops::linear (rows and 1x1-convolution forms): reference, central differences for the input and the
// parameters, the GradAccumulate convention, thread-count determinism, degenerate shapes, bad input, GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kdloss/ops/linear.hpp"
#include "ops/matmul_gpu.hpp"
#include "reference/ops/matmul.hpp"
#include "support/test_support.hpp"
#include "support/threads.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

/// [B, C, P] <-> the layouts the layer is called with: rows ([N, C] with B = 1), NCHW, NHWC.
enum class Form { rows, nchw, nhwc };

struct Layer {
  Form form;
  std::int64_t batch, in, out, h, w;
  std::int64_t positions() const { return h * w; }
  kdloss_ref::ops::Linear ref() const { return {batch, in, out, positions()}; }
  Dims shape(std::int64_t c) const { return form == Form::rows ? Dims{positions(), c} : Dims{batch, c, h, w}; }
  Dims strides(std::int64_t c) const {
    if (form == Form::rows) return Dims{c, 1};
    if (form == Form::nchw) return contiguous_strides(Dims{batch, c, h, w});
    return Dims{h * w * c, 1, w * c, c};
  }
  /// Storage of [B, C, P] reference values in the form's layout.
  template <class T>
  std::vector<T> store(const std::vector<double>& v, std::int64_t c) const {
    const Dims st = strides(c);
    std::vector<T> s(v.size());
    if (v.empty()) return s;
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t ch = 0; ch < c; ++ch)
        for (std::int64_t p = 0; p < positions(); ++p) {
          const std::int64_t off = form == Form::rows ? p * st[0] + ch * st[1]
                                                      : b * st[0] + ch * st[1] + (p / w) * st[2] + (p % w) * st[3];
          s[off] = static_cast<T>(v[(b * c + ch) * positions() + p]);
        }
    return s;
  }
  template <class T>
  std::vector<double> load(const std::vector<T>& s, std::int64_t c) const {
    const Dims st = strides(c);
    std::vector<double> v(s.size());
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t ch = 0; ch < c; ++ch)
        for (std::int64_t p = 0; p < positions(); ++p) {
          const std::int64_t off = form == Form::rows ? p * st[0] + ch * st[1]
                                                      : b * st[0] + ch * st[1] + (p / w) * st[2] + (p % w) * st[3];
          v[(b * c + ch) * positions() + p] = static_cast<double>(s[off]);
        }
    return v;
  }
  template <class T>
  View<T> view(T* p, std::int64_t c) const {
    return host_view(p, shape(c), strides(c));
  }
};

const Layer kLayers[] = {{Form::rows, 1, 7, 5, 1, 37}, {Form::nchw, 3, 6, 9, 4, 5}, {Form::nhwc, 2, 11, 4, 3, 7},
                         {Form::nchw, 2, 64, 40, 9, 11}};

template <class T>
struct Run {
  std::vector<double> y, gx, gw, gb;
};

/// forward_backward with bias; param grads accumulate onto old_gw/old_gb with `beta`.
template <class T>
Run<T> run_layer(const Layer& L, const std::vector<double>& x, const std::vector<double>& w,
                 const std::vector<double>& bias, const std::vector<double>& gy, const std::vector<double>& old_gw,
                 const std::vector<double>& old_gb, double beta, Mode mode = Mode::forward_backward) {
  auto xs = L.store<T>(x, L.in), gys = L.store<T>(gy, L.out);
  std::vector<T> ws(w.begin(), w.end()), bs(bias.begin(), bias.end()), gws(old_gw.begin(), old_gw.end()),
      gbs(old_gb.begin(), old_gb.end());
  std::vector<T> ys(L.batch * L.out * L.positions(), T(-3)), gxs(L.batch * L.in * L.positions(), T(-3));
  ops::LinearArgs<T> a;
  a.x = L.view<const T>(xs.data(), L.in);
  a.weight = host_view<const T>(ws.data(), {L.out, L.in});
  if (!bias.empty()) a.bias = host_view<const T>(bs.data(), {L.out});
  if (writes_value(mode)) a.y = L.view(ys.data(), L.out);
  if (writes_gradients(mode)) {
    a.grad_y = L.view<const T>(gys.data(), L.out);
    a.grad_x = L.view(gxs.data(), L.in);
    a.grad_weight = host_view(gws.data(), {L.out, L.in});
    if (!bias.empty()) a.grad_bias = host_view(gbs.data(), {L.out});
  }
  a.options.param_grads.beta = beta;
  ops::linear(a, mode);
  return {L.load(ys, L.out), L.load(gxs, L.in), std::vector<double>(gws.begin(), gws.end()),
          std::vector<double>(gbs.begin(), gbs.end())};
}

}  // namespace

TEST_CASE("linear: rows, NCHW and NHWC forms match the double reference, forward and backward") {
  for (const Layer& L : kLayers)
    for (double beta : {0.0, 1.0}) {
      CAPTURE(static_cast<int>(L.form));
      CAPTURE(beta);
      const auto ref = L.ref();
      const auto x = random_vector<double>(L.batch * L.in * L.positions(), 1);
      const auto w = random_vector<double>(L.out * L.in, 2), bias = random_vector<double>(L.out, 3);
      const auto gy = random_vector<double>(L.batch * L.out * L.positions(), 4);
      auto old_gw = random_vector<double>(L.out * L.in, 5), old_gb = random_vector<double>(L.out, 6);
      std::vector<double> want_gw = ref.grad_w(x, gy), want_gb = ref.grad_bias(gy);
      for (std::size_t i = 0; i < want_gw.size(); ++i) want_gw[i] += beta * old_gw[i];
      for (std::size_t i = 0; i < want_gb.size(); ++i) want_gb[i] += beta * old_gb[i];
      if (beta == 0) {  // overwrite never reads the old contents
        old_gw.assign(old_gw.size(), std::numeric_limits<double>::quiet_NaN());
        old_gb.assign(old_gb.size(), std::numeric_limits<double>::quiet_NaN());
      }
      const auto r = run_layer<double>(L, x, w, bias, gy, old_gw, old_gb, beta);
      check_close(r.y, ref.forward(x, w, bias), 1e-12, 1e-12, "y");
      check_close(r.gx, ref.grad_x(w, gy), 1e-12, 1e-12, "grad_x");
      check_close(r.gw, want_gw, 1e-12, 1e-12, "grad_weight");
      check_close(r.gb, want_gb, 1e-12, 1e-12, "grad_bias");
      const auto rf = run_layer<float>(L, x, w, bias, gy, old_gw, old_gb, beta);
      const double t = 2e-6 * static_cast<double>(L.in + L.batch * L.positions());
      check_close(rf.y, ref.forward(x, w, bias), t, t, "y (float)");
      check_close(rf.gw, want_gw, t, t, "grad_weight (float)");
    }
}

TEST_CASE("linear: central differences of L = sum(g * y) for the input, the weight and the bias") {
  const Layer L{Form::nhwc, 2, 3, 4, 2, 3};
  const auto x = random_vector<double>(L.batch * L.in * L.positions(), 7);
  const auto w = random_vector<double>(L.out * L.in, 8), bias = random_vector<double>(L.out, 9);
  const auto g = random_vector<double>(L.batch * L.out * L.positions(), 10);
  const std::vector<double> zw(w.size(), 0.0), zb(bias.size(), 0.0);
  const auto loss = [&](const std::vector<double>& xx, const std::vector<double>& ww, const std::vector<double>& bb) {
    const auto y = run_layer<double>(L, xx, ww, bb, g, zw, zb, 0.0, Mode::forward).y;
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i) s += g[i] * y[i];
    return s;
  };
  const auto r = run_layer<double>(L, x, w, bias, g, zw, zb, 0.0, Mode::backward);
  check_close(r.gx, kdloss_test::numeric_gradient(x, [&](const auto& v) { return loss(v, w, bias); }), 1e-7, 1e-8, "grad_x");
  check_close(r.gw, kdloss_test::numeric_gradient(w, [&](const auto& v) { return loss(x, v, bias); }), 1e-7, 1e-8, "grad_weight");
  check_close(r.gb, kdloss_test::numeric_gradient(bias, [&](const auto& v) { return loss(x, w, v); }), 1e-7, 1e-8, "grad_bias");
}

TEST_CASE("linear: without a bias, y = x W^T and no bias gradient is asked") {
  const Layer L{Form::rows, 1, 6, 3, 1, 10};
  const auto x = random_vector<double>(L.in * L.positions(), 11), w = random_vector<double>(L.out * L.in, 12);
  const auto gy = random_vector<double>(L.out * L.positions(), 13);
  const auto r = run_layer<double>(L, x, w, {}, gy, std::vector<double>(w.size()), {}, 0.0);
  check_close(r.y, L.ref().forward(x, w, {}), 1e-12, 1e-12);
  check_close(r.gw, L.ref().grad_w(x, gy), 1e-12, 1e-12);
}

TEST_CASE("linear: gradients are bitwise the same with 1, 2 and 3 threads") {
#if KDLOSS_OPENMP
  const Layer L{Form::nchw, 2, 64, 48, 30, 31};
  const auto x = random_vector<double>(L.batch * L.in * L.positions(), 14);
  const auto w = random_vector<double>(L.out * L.in, 15), bias = random_vector<double>(L.out, 16);
  const auto gy = random_vector<double>(L.batch * L.out * L.positions(), 17);
  const std::vector<double> ow(w.size(), 0.5), ob(bias.size(), 0.25);
  std::vector<Run<float>> runs;
  kdloss_test::ThreadScope scope;
  for (int threads : {1, 2, 3}) {
    scope.set(threads);
    runs.push_back(run_layer<float>(L, x, w, bias, gy, ow, ob, 1.0));
  }
  for (int i = 1; i < 3; ++i) {
    CHECK(runs[i].y == runs[0].y);
    CHECK(runs[i].gx == runs[0].gx);
    CHECK(runs[i].gw == runs[0].gw);
    CHECK(runs[i].gb == runs[0].gb);
  }
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}

TEST_CASE("linear: no rows gives y empty, grad_weight = beta * grad_weight, grad_bias = beta * grad_bias") {
  const Layer L{Form::rows, 1, 3, 2, 1, 0};
  std::vector<double> empty;
  const std::vector<double> w = {1, 2, 3, 4, 5, 6}, bias = {1, 2}, ow = {1, 1, 1, 1, 1, 1}, ob = {3, 4};
  const auto r = run_layer<double>(L, empty, w, bias, empty, ow, ob, 0.5);
  CHECK(r.y.empty());
  CHECK(r.gw == std::vector<double>(6, 0.5));
  CHECK(r.gb == std::vector<double>{1.5, 2.0});
  const auto r0 = run_layer<double>(L, empty, w, bias, empty, ow, ob, 0.0);
  CHECK(r0.gw == std::vector<double>(6, 0.0));
  CHECK(r0.gb == std::vector<double>{0.0, 0.0});
}

TEST_CASE("linear: NaN in x reaches the outputs of that position only") {
  const Layer L{Form::rows, 1, 4, 3, 1, 5};
  auto x = random_vector<double>(L.in * L.positions(), 18);
  x[1 * L.positions() + 2] = std::numeric_limits<double>::quiet_NaN();  // channel 1 of row 2
  const auto w = random_vector<double>(L.out * L.in, 19), bias = random_vector<double>(L.out, 20);
  const auto r = run_layer<double>(L, x, w, bias, {}, {}, {}, 0.0, Mode::forward);
  for (std::int64_t o = 0; o < L.out; ++o)
    for (std::int64_t p = 0; p < L.positions(); ++p) CHECK(std::isnan(r.y[o * L.positions() + p]) == (p == 2));
}

TEST_CASE("linear: bad input throws naming the argument and shapes, and writes nothing") {
  std::vector<float> x(4 * 3, 1.f), w(2 * 3, 1.f), y(4 * 2, 9.f), gy(4 * 2, 1.f), gw(2 * 3, 9.f), gx(4 * 3, 9.f);
  const auto untouched = [&] {
    CHECK(y == std::vector<float>(8, 9.f));
    CHECK(gw == std::vector<float>(6, 9.f));
    CHECK(gx == std::vector<float>(12, 9.f));
  };
  const auto base = [&] {
    ops::LinearArgs<float> a;
    a.x = host_view<const float>(x.data(), {4, 3});
    a.weight = host_view<const float>(w.data(), {2, 3});
    a.y = host_view(y.data(), {4, 2});
    a.grad_y = host_view<const float>(gy.data(), {4, 2});
    a.grad_weight = host_view(gw.data(), {2, 3});
    a.grad_x = host_view(gx.data(), {4, 3});
    return a;
  };
  auto a = base();
  a.weight = host_view<const float>(w.data(), {3, 2});
  kdloss_test::expect_error([&] { ops::linear(a, Mode::forward_backward); },
                            "argument 'weight' has shape [3, 2] but 'x' [4, 3] has 3 input channels", untouched);
  a = base();
  a.y = host_view(y.data(), {2, 4});
  kdloss_test::expect_error([&] { ops::linear(a, Mode::forward); }, "argument 'y' has shape [2, 4] but expected [4, 2]",
                            untouched);
  a = base();
  a.grad_weight = host_view(gx.data(), {2, 3});  // overlaps grad_x
  kdloss_test::expect_error([&] { ops::linear(a, Mode::backward); },
                            "output argument 'grad_x' overlaps the memory of argument 'grad_weight'", untouched);
  a = base();
  a.grad_x = host_view(const_cast<float*>(x.data()), {4, 3});  // aliases the input
  kdloss_test::expect_error([&] { ops::linear(a, Mode::backward); },
                            "output argument 'grad_x' overlaps the memory of argument 'x'", untouched);
  a = base();
  a.grad_y = View<const float>{};
  kdloss_test::expect_error([&] { ops::linear(a, Mode::backward); }, "reads 'grad_y' but it is absent", untouched);
  a = base();
  a.bias = cuda_view<const float>(w.data(), {2});
  kdloss_test::expect_error([&] { ops::linear(a, Mode::forward); }, "argument 'bias' is on cuda:0 but the call runs on host",
                            untouched);
  a = base();
  a.x = cuda_view<const float>(x.data(), {4, 3});
  kdloss_test::expect_error([&] { ops::linear(a, Mode::forward); }, "Exec::blas is null", untouched);
  a = base();
  std::vector<float> x4(2 * 3 * 4 * 4, 1.f), y4(2 * 2 * 4 * 4, 9.f);
  a.x = host_view<const float>(x4.data(), {2, 3, 4, 4}).slice(3, 0, 3);  // W cut: H and W do not merge
  a.y = host_view(y4.data(), {2, 2, 4, 3});
  kdloss_test::expect_error([&] { ops::linear(a, Mode::forward); }, "cannot merge H and W into one strided axis",
                            untouched);
}

KDLOSS_GPU_TEST("linear: GPU agrees with the CPU (NCHW and NHWC, forward and accumulated gradients)") {
#if KDLOSS_TEST_CUDA
  const std::int64_t batch = 2, in = 24, out = 16, positions = 35;
  const auto x = random_vector<double>(batch * in * positions, 21), w = random_vector<double>(out * in, 22);
  const auto bias = random_vector<double>(out, 23), gy = random_vector<double>(batch * out * positions, 24);
  const auto ow = random_vector<double>(out * in, 25), ob = random_vector<double>(out, 26);
  const Layer L{Form::nchw, batch, in, out, 5, 7};
  const auto ref = L.ref();
  std::vector<double> want = ref.forward(x, w, bias);
  const auto gx = ref.grad_x(w, gy);
  auto gw = ref.grad_w(x, gy), gb = ref.grad_bias(gy);
  for (std::size_t i = 0; i < gw.size(); ++i) gw[i] += ow[i];
  for (std::size_t i = 0; i < gb.size(); ++i) gb[i] += ob[i];
  want.insert(want.end(), gx.begin(), gx.end());
  want.insert(want.end(), gw.begin(), gw.end());
  want.insert(want.end(), gb.begin(), gb.end());
  for (bool channel_last : {false, true})
    for (int dtype : {1, 0}) {
      const auto got = kdloss_test::linear_on_gpu(dtype, channel_last, x, w, bias, gy, ow, ob, batch, in, out, positions);
      const double t = dtype == 1 ? 1e-12 : 2e-3;  // float may run TF32 where the handle allows it
      check_close(got, want, t, t * 10);
    }
#endif
}

TEST_CASE("linear: the usage examples of ops/linear.hpp compile and run") {
  std::vector<float> fb(2 * 256 * 100 * 167, 1.f), wb(64 * 256, 0.5f), bb(64, 1.f), ob(2 * 64 * 100 * 167),
      gob(2 * 64 * 100 * 167, 1.f), gwb(64 * 256, 2.f);
  const float *feat = fb.data(), *w = wb.data(), *b = bb.data(), *grad_out = gob.data();
  float *out = ob.data(), *grad_w = gwb.data();
  // --- from ops::linear's comment ---
  kdloss::ops::LinearArgs<float> l;
  l.x = kdloss::host_view<const float>(feat, {2, 256, 100, 167});   // NCHW
  l.weight = kdloss::host_view<const float>(w, {64, 256});
  l.bias = kdloss::host_view<const float>(b, {64});
  l.y = kdloss::host_view(out, {2, 64, 100, 167});
  kdloss::ops::linear(l, kdloss::Mode::forward);
  l.grad_y = kdloss::host_view<const float>(grad_out, {2, 64, 100, 167});
  l.grad_weight = kdloss::host_view(grad_w, {64, 256});
  l.options.param_grads.beta = 1.0;                                  // accumulate, as autograd does
  kdloss::ops::linear(l, kdloss::Mode::backward);
  // ---
  CHECK(ob.front() == doctest::Approx(129.f));
  CHECK(gwb.front() == doctest::Approx(2.f + 2 * 100 * 167));
  const std::int64_t N = 10;
  std::vector<float> xr(N * 256, 1.f), yr(N * 64);
  const float* xp = xr.data();
  float* yp = yr.data();
  // --- from linear_forward's comment (x, w, y renamed) ---
  kdloss::ops::linear_forward(kdloss::host_view<const float>(xp, {N, 256}), kdloss::host_view<const float>(w, {64, 256}),
                              kdloss::View<const float>{}, kdloss::host_view(yp, {N, 64}));
  // ---
  CHECK(yr == std::vector<float>(yr.size(), 128.f));
  std::vector<float> gxr(N * 256), gbr(64, 1.f), gyr(N * 64, 1.f), gwr(64 * 256, 1.f);
  const auto x = kdloss::host_view<const float>(xp, {N, 256});
  const auto wv = kdloss::host_view<const float>(w, {64, 256});
  const auto grad_y = kdloss::host_view<const float>(gyr.data(), {N, 64});
  const auto grad_x = kdloss::host_view(gxr.data(), {N, 256});
  const auto grad_wv = kdloss::host_view(gwr.data(), {64, 256});
  const auto grad_b = kdloss::host_view(gbr.data(), {64});
  // --- from linear_backward's comment (w, grad_w renamed) ---
  kdloss::ops::linear_backward(x, wv, grad_y, grad_x, grad_wv, grad_b, {{/*beta=*/1.0}});
  // ---
  CHECK(gbr == std::vector<float>(64, 1.f + N));
  CHECK(gwr == std::vector<float>(64 * 256, 1.f + N));
  CHECK(gxr == std::vector<float>(N * 256, 32.f));
}
