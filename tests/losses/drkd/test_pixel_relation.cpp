// drkd::pixel_relation_loss: value and gradient against the composed double reference (op reference
// kdloss_ref::ops::SoftmaxRelation), central differences of the loss, NCHW / channels-last / padded (copied)
// / broadcast inputs, H*W = 1, C = 1, B = 0, tile-straddling N, the three modes, NaN propagation, a
// caller workspace, bad input with outputs untouched, and CPU/GPU agreement (skipped without a GPU).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "kdloss/losses/drkd/drkd.hpp"
#include "losses/drkd/pixel_relation_gpu.hpp"
#include "reference/losses/drkd.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

struct Shape {
  std::int64_t b, c, h, w;
  Dims dims() const { return {b, c, h, w}; }
  std::int64_t numel() const { return b * c * h * w; }
};

/// 0 NCHW, 1 channels-last, 2 NCHW with padded rows (H and W do not merge: the loss copies), 3 channels-last
/// with padded channels.
constexpr int kLayouts = 4;
template <class T>
kdloss_test::Strided<T> store(const std::vector<double>& v, const Shape& s, int layout) {
  const std::vector<T> t(v.begin(), v.end());
  switch (layout) {
    case 1: return kdloss_test::relayout(t, s.dims(), {0, 2, 3, 1});
    case 2: return kdloss_test::relayout(t, s.dims(), {0, 1, 2, 3}, 3);
    case 3: return kdloss_test::relayout(t, s.dims(), {0, 2, 3, 1}, 2);
    default: return kdloss_test::relayout(t, s.dims(), {0, 1, 2, 3});
  }
}

std::vector<double> as_double(const View<float>& v) {
  const auto x = kdloss_test::to_vector(v);
  return {x.begin(), x.end()};
}
std::vector<double> as_double(const View<double>& v) { return kdloss_test::to_vector(v); }

struct Result {
  double value = 0;
  std::vector<double> grad;
};

/// One call in `mode` (backward with upstream 0.75); value 0 and no gradient where the mode writes none.
template <class T>
Result run(const Shape& s, const std::vector<double>& sv, const std::vector<double>& tv, int layout, Mode mode,
           drkd::PixelRelationOptions o = {}) {
  auto st = store<T>(sv, s, layout), te = store<T>(tv, s, (layout + 1) % kLayouts);
  auto gs = store<T>(std::vector<double>(sv.size(), 9.0), s, layout);
  T out = T(-5), up = T(0.75);
  drkd::PixelRelationLossArgs<T> a;
  a.student = st.view;
  a.teacher = te.view;
  a.options = o;
  if (writes_value(mode)) a.out = host_scalar(&out);
  if (mode == Mode::backward) a.grad_out = host_scalar<const T>(&up);
  if (writes_gradients(mode)) a.grad_student = gs.view;
  drkd::pixel_relation_loss(a, mode);
  Result r;
  if (writes_value(mode)) r.value = double(out);
  if (writes_gradients(mode)) r.grad = as_double(gs.view);
  return r;
}

template <class T>
void check_all_modes(const Shape& s, const std::vector<double>& sv, const std::vector<double>& tv, bool mean,
                     double scale, double rel, double abs) {
  const kdloss_ref::drkd::PixelRelation ref{s.b, s.c, s.h, s.w, mean, scale};
  const double want = ref.value(sv, tv);
  const std::vector<double> grad = ref.grad(sv, tv), grad_up = ref.grad(sv, tv, 0.75);
  drkd::PixelRelationOptions o;
  o.reduction = mean ? Reduction::mean : Reduction::sum;
  o.scale = scale;
  for (int layout = 0; layout < kLayouts; ++layout) {
    CAPTURE(layout);
    const Result f = run<T>(s, sv, tv, layout, Mode::forward, o);
    const Result fb = run<T>(s, sv, tv, layout, Mode::forward_backward, o);
    const Result b = run<T>(s, sv, tv, layout, Mode::backward, o);
    check_close(std::vector<double>{f.value}, std::vector<double>{want}, rel, abs * 1e-2, "forward value");
    check_close(std::vector<double>{fb.value}, std::vector<double>{want}, rel, abs * 1e-2, "forward_backward value");
    check_close(fb.grad, grad, rel, abs, "forward_backward grad_student");
    check_close(b.grad, grad_up, rel, abs, "backward grad_student");
  }
}

const Shape kShapes[] = {
    {2, 5, 3, 4},    // small
    {1, 3, 1, 1},    // H*W = 1: G(F) = F, the loss is MSE(T, S)
    {2, 1, 3, 3},    // C = 1
    {1, 4, 15, 14},  // N = 210 straddles the op's 192-query tiles
    {3, 6, 1, 7},    // H = 1
};

}  // namespace

TEST_CASE("pixel_relation_loss: value and gradient match the double reference in every mode and layout") {
  int k = 0;
  for (const Shape& s : kShapes) {
    CAPTURE(k);
    // Amplitude 2: the softmax rows are far from uniform, so the relation's gradient matters.
    const auto sv = random_vector<double>(s.numel(), 300 + k, -2, 2), tv = random_vector<double>(s.numel(), 400 + k, -2, 2);
    for (bool mean : {true, false}) {
      CAPTURE(mean);
      check_all_modes<double>(s, sv, tv, mean, 0.0, 1e-10, 1e-13);
      check_all_modes<float>(s, sv, tv, mean, 0.0, 3e-4, 3e-6);
    }
    ++k;
  }
  // An explicit scale instead of 1/sqrt(C).
  const Shape s{2, 4, 3, 3};
  const auto sv = random_vector<double>(s.numel(), 11, -1, 1), tv = random_vector<double>(s.numel(), 12, -1, 1);
  check_all_modes<double>(s, sv, tv, true, 0.9, 1e-10, 1e-13);
}

TEST_CASE("pixel_relation_loss: H*W = 1 reduces to the MSE of the maps") {
  const Shape s{2, 3, 1, 1};
  const auto sv = random_vector<double>(s.numel(), 5), tv = random_vector<double>(s.numel(), 6);
  double mse = 0;
  for (std::size_t i = 0; i < sv.size(); ++i) mse += (sv[i] - tv[i]) * (sv[i] - tv[i]) / double(sv.size());
  const Result r = run<double>(s, sv, tv, 0, Mode::forward_backward);
  CHECK(r.value == doctest::Approx(mse).epsilon(1e-14));
  for (std::size_t i = 0; i < sv.size(); ++i) CHECK(r.grad[i] == doctest::Approx(2 * (sv[i] - tv[i]) / 6).epsilon(1e-12));
}

TEST_CASE("pixel_relation_loss: the gradient matches central differences of the loss (double)") {
  const Shape s{2, 3, 2, 3};
  const auto sv = random_vector<double>(s.numel(), 21, -1.5, 1.5), tv = random_vector<double>(s.numel(), 22, -1.5, 1.5);
  for (int layout : {0, 2}) {
    const Result r = run<double>(s, sv, tv, layout, Mode::forward_backward);
    const auto num = kdloss_test::numeric_gradient(
        sv, [&](const std::vector<double>& x) { return run<double>(s, x, tv, 0, Mode::forward).value; });
    check_close(r.grad, num, 1e-6, 1e-9, "grad_student");
  }
}

TEST_CASE("pixel_relation_loss: a teacher broadcast over the batch (stride 0) equals its copies") {
  const Shape s{3, 4, 3, 5};
  const auto sv = random_vector<double>(s.numel(), 31), one = random_vector<double>(4 * 3 * 5, 32);
  std::vector<double> tv;
  for (int b = 0; b < 3; ++b) tv.insert(tv.end(), one.begin(), one.end());
  const Result want = run<double>(s, sv, tv, 0, Mode::forward_backward);
  std::vector<double> st = sv, gs(sv.size());
  double out = 0;
  drkd::pixel_relation_loss_forward_backward(host_view<const double>(st.data(), s.dims()),
                                             host_view<const double>(one.data(), s.dims(), {0, 15, 5, 1}),
                                             host_scalar(&out), host_view(gs.data(), s.dims()));
  CHECK(out == doctest::Approx(want.value).epsilon(1e-14));
  check_close(gs, want.grad, 1e-13, 1e-15, "grad_student");
}

TEST_CASE("pixel_relation_loss: B = 0 writes 0 and nothing else") {
  const Shape s{0, 4, 3, 3};
  for (Reduction r : {Reduction::mean, Reduction::sum}) {
    float out = -1;
    drkd::pixel_relation_loss_forward_backward(host_view<const float>(nullptr, s.dims()),
                                               host_view<const float>(nullptr, s.dims()), host_scalar(&out),
                                               host_view<float>(nullptr, s.dims()), {r});
    CHECK(out == 0.0f);
  }
}

TEST_CASE("pixel_relation_loss: a NaN in one image's student makes the loss and that image's gradient NaN") {
  // torch: SDPA's row of the NaN pixel is NaN, and its column makes every row of that image NaN; MSE's
  // gradient 2 (G(S) - G(T)) / numel is then NaN on that image only, finite on the others.
  const Shape s{2, 3, 2, 2};
  auto sv = random_vector<double>(s.numel(), 41), tv = random_vector<double>(s.numel(), 42);
  sv[5] = std::numeric_limits<double>::quiet_NaN();  // image 0, channel 1
  const kdloss_ref::drkd::PixelRelation ref{s.b, s.c, s.h, s.w};
  for (int layout = 0; layout < kLayouts; ++layout) {
    const Result d = run<double>(s, sv, tv, layout, Mode::forward_backward);
    const Result f = run<float>(s, sv, tv, layout, Mode::forward_backward);
    CHECK(std::isnan(d.value));
    CHECK(std::isnan(f.value));
    for (const Result* r : {&d, &f}) {
      for (std::int64_t i = 0; i < 12; ++i) CHECK(std::isnan(r->grad[i]));
      for (std::int64_t i = 12; i < 24; ++i) CHECK(std::isfinite(r->grad[i]));
    }
    kdloss_test::check_same_nonfinite(d.grad, ref.grad(sv, tv), 1e-10, 1e-13);
  }
  // The teacher's NaN: every gradient of its image is NaN too (2 (G(S) - NaN)).
  auto tn = random_vector<double>(s.numel(), 43);
  tn[13] = std::numeric_limits<double>::quiet_NaN();  // image 1
  const Result r = run<double>(s, random_vector<double>(s.numel(), 44), tn, 0, Mode::forward_backward);
  CHECK(std::isnan(r.value));
  for (std::int64_t i = 0; i < 12; ++i) CHECK(std::isfinite(r.grad[i]));
  for (std::int64_t i = 12; i < 24; ++i) CHECK(std::isnan(r.grad[i]));
}

TEST_CASE("pixel_relation_loss: a caller workspace sized by the query, and one too small") {
  const Shape s{2, 8, 5, 6};
  const auto sv = random_vector<double>(s.numel(), 51), tv = random_vector<double>(s.numel(), 52);
  const Result want = run<float>(s, sv, tv, 2, Mode::forward_backward);
  auto st = store<float>(sv, s, 2), te = store<float>(tv, s, 3);
  std::vector<float> gs(sv.size(), 9.0f);
  float out = -5;
  drkd::PixelRelationLossArgs<float> a;
  a.student = st.view;
  a.teacher = te.view;
  a.out = host_scalar(&out);
  a.grad_student = host_view(gs.data(), s.dims());
  const std::size_t bytes = drkd::pixel_relation_loss_workspace_bytes(a);
  std::unique_ptr<unsigned char[]> raw(new unsigned char[bytes + 256]);
  void* base = raw.get() + (256 - reinterpret_cast<std::uintptr_t>(raw.get()) % 256) % 256;
  drkd::pixel_relation_loss(a, Mode::forward_backward, {Workspace{base, bytes}});
  CHECK(double(out) == want.value);  // the same bits as with the loss's own allocation
  CHECK(std::vector<double>(gs.begin(), gs.end()) == want.grad);
  std::fill(gs.begin(), gs.end(), 9.0f);
  out = -5;
  kdloss_test::expect_error([&] { drkd::pixel_relation_loss(a, Mode::forward_backward, {Workspace{base, 256}}); },
                            "argument 'workspace' has 256 bytes", [&] { CHECK(out == -5.0f); });
}

TEST_CASE("pixel_relation_loss: bad input throws naming the argument and leaves the outputs untouched") {
  std::vector<float> s(2 * 4 * 3 * 3, 0.5f), t(2 * 4 * 3 * 3, 0.25f), gs(2 * 4 * 3 * 3, 7.0f), two(2, 3.0f);
  float out = -5, up = 1;
  auto untouched = [&] {
    CHECK(out == -5.0f);
    for (float g : gs) CHECK(g == 7.0f);
  };
  auto sv = host_view<const float>(s.data(), {2, 4, 3, 3}), tv = host_view<const float>(t.data(), {2, 4, 3, 3});
  auto gv = host_view(gs.data(), {2, 4, 3, 3});
  using kdloss_test::expect_error;
  expect_error([&] { drkd::pixel_relation_loss_forward_backward(sv, host_view<const float>(t.data(), {2, 4, 9, 1}),
                                                                host_scalar(&out), gv); },
               "arguments 'student' [2, 4, 3, 3] and 'teacher' [2, 4, 9, 1] must have the same shape", untouched);
  expect_error([&] { drkd::pixel_relation_loss_forward_backward(sv, tv.with(tv.shape, tv.strides), host_scalar(&out),
                                                                View<float>(gs.data(), gv.shape, gv.strides, Device::cuda(0))); },
               "argument 'grad_student' is on cuda:0", untouched);
  expect_error([&] { drkd::pixel_relation_loss(sv, View<const float>(t.data(), tv.shape, tv.strides, Device::cuda(0)),
                                               host_scalar(&out)); },
               "argument 'teacher' is on cuda:0", untouched);
  expect_error([&] { drkd::pixel_relation_loss_forward_backward(sv, tv, host_view(two.data(), {2}), gv); },
               "argument 'out' must hold exactly one element", untouched);
  expect_error([&] { drkd::pixel_relation_loss_forward_backward(host_view<const float>(s.data(), {2, 4, 9}),
                                                                host_view<const float>(t.data(), {2, 4, 9}),
                                                                host_scalar(&out), host_view(gs.data(), {2, 4, 9})); },
               "argument 'student' must have rank 4 but has shape [2, 4, 9]", untouched);
  expect_error([&] { drkd::pixel_relation_loss_forward_backward(sv, tv, host_scalar(&out), host_view(gs.data(), {2, 4, 3, 2})); },
               "argument 'grad_student' has shape [2, 4, 3, 2] but expected [2, 4, 3, 3]", untouched);
  expect_error([&] { drkd::pixel_relation_loss_forward_backward(sv, tv, host_scalar(&out), gv, {Reduction::none}); },
               "argument 'reduction' is none; the pixel relation loss offers mean and sum", untouched);
  expect_error([&] {
    drkd::PixelRelationOptions o;
    o.scale = std::numeric_limits<double>::infinity();
    drkd::pixel_relation_loss_forward_backward(sv, tv, host_scalar(&out), gv, o);
  }, "argument 'scale' must be finite", untouched);
  expect_error([&] { drkd::pixel_relation_loss_forward_backward(host_view<const float>(s.data(), {2, 0, 3, 3}),
                                                                host_view<const float>(t.data(), {2, 0, 3, 3}),
                                                                host_scalar(&out), host_view(gs.data(), {2, 0, 3, 3})); },
               "has no channels (C = 0)", untouched);
  expect_error([&] { drkd::pixel_relation_loss_forward_backward(host_view<const float>(s.data(), {2, 4, 0, 3}),
                                                                host_view<const float>(t.data(), {2, 4, 0, 3}),
                                                                host_scalar(&out), host_view(gs.data(), {2, 4, 0, 3})); },
               "has no pixels (H*W = 0)", untouched);
  expect_error([&] { drkd::pixel_relation_loss_forward_backward(sv, tv, host_scalar(&out),
                                                                host_view(gs.data(), {2, 4, 3, 3}, {0, 9, 3, 1})); },
               "addresses some element twice", untouched);
  expect_error([&] { drkd::pixel_relation_loss_forward_backward(sv, tv, host_scalar(&out),
                                                                host_view(const_cast<float*>(s.data()), {2, 4, 3, 3})); },
               "output argument 'grad_student' overlaps the memory of argument 'student'", [&] { CHECK(out == -5.0f); });
  expect_error([&] { drkd::pixel_relation_loss_backward(sv, tv, host_view<const float>(two.data(), {2}), gv); },
               "argument 'grad_out' must hold one element", untouched);
  expect_error([&] { drkd::pixel_relation_loss_backward(sv, tv, View<const float>{}, gv); },
               "argument 'grad_out' is absent but backward reads it", untouched);
  expect_error([&] { drkd::pixel_relation_loss(sv, tv, View<float>{}); }, "argument 'out' is absent", untouched);
  (void)up;
}

TEST_CASE("pixel_relation_loss: the usage examples of losses/drkd/pixel_relation.hpp run") {
  std::vector<float> s(2 * 16 * 5 * 7, 0.5f), t(2 * 16 * 5 * 7, 0.25f), gs(2 * 16 * 5 * 7);
  float loss = -1;
  drkd::PixelRelationLossArgs<float> args;
  args.student = host_view<const float>(s.data(), {2, 16, 5, 7});
  args.teacher = host_view<const float>(t.data(), {2, 16, 5, 7});
  args.out = host_scalar(&loss);
  args.grad_student = host_view(gs.data(), {2, 16, 5, 7});
  drkd::pixel_relation_loss(args, Mode::forward_backward);
  // Constant maps: every row of G is the map's constant row, so the loss is (0.5 - 0.25)^2 exactly.
  CHECK(loss == doctest::Approx(0.0625).epsilon(1e-6));
  for (float g : gs) CHECK(g == doctest::Approx(2 * 0.25 / gs.size()).epsilon(1e-4));
}

KDLOSS_GPU_TEST("pixel_relation_loss: the GPU agrees with the double reference (float, double, half, bfloat16)") {
#if KDLOSS_TEST_CUDA
  const Shape s{2, 16, 9, 23};  // N = 207 straddles a 64 or 128-row tile
  const auto sv = random_vector<double>(s.numel(), 61), tv = random_vector<double>(s.numel(), 62);
  const kdloss_ref::drkd::PixelRelation ref{s.b, s.c, s.h, s.w};
  const double want = ref.value(sv, tv);
  const auto grad = ref.grad(sv, tv), grad_up = ref.grad(sv, tv, 0.75);
  for (int dtype = 0; dtype < 4; ++dtype)
    for (bool channels_last : {false, true}) {
      CAPTURE(dtype);
      CAPTURE(channels_last);
      const auto got = kdloss_test::pixel_relation_on_gpu(dtype, channels_last, s.b, s.c, s.h, s.w, sv, tv, 0.75);
      // float may run TF32 products; half / bfloat16 inputs round to 11 / 8 bits.
      const double t = dtype == 1 ? 1e-10 : (dtype == 0 ? 3e-3 : (dtype == 2 ? 3e-2 : 1e-1));
      check_close(std::vector<double>{got[0]}, std::vector<double>{want}, t, 0, "value");
      const std::vector<double> fb(got.begin() + 1, got.begin() + 1 + s.numel());
      const std::vector<double> bw(got.begin() + 1 + s.numel(), got.end());
      double scale = 0;
      for (double g : grad) scale = std::max(scale, std::fabs(g));
      check_close(fb, grad, t, t * scale, "forward_backward grad_student");
      check_close(bw, grad_up, t, t * scale, "backward grad_student");
    }
#endif
}
