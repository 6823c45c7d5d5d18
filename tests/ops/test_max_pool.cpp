// ops::max_pool2d (kernel = stride = s, floor mode): the double reference, central differences, the
// reserve (filled by forward, read by backward, or recomputed when absent), layouts, strides 1/2/3/8/17
// with H and W not divisible by s, PyTorch's tie / NaN / -inf rules, GradAccumulate, degenerate and bad
// inputs (outputs untouched), CPU/GPU agreement.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kdloss/ops/max_pool.hpp"
#include "support/threads.hpp"
#include "ops/max_pool_gpu.hpp"
#include "reference/ops/max_pool.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

Dims pooled(const Dims& x, std::int64_t s) { return Dims{x[0], x[1], x[2] / s, x[3] / s}; }

/// Memory layouts of the views: 0 contiguous NCHW, 1 channel-last, 2 rows padded by 3, 3 H and W
/// swapped in memory (W not unit-stride) with padding.
struct Layout {
  std::vector<int> order;
  std::int64_t pad;
};
Layout layout_of(int l) {
  switch (l) {
    case 1: return {{0, 2, 3, 1}, 0};
    case 2: return {{0, 1, 2, 3}, 3};
    case 3: return {{0, 1, 3, 2}, 1};
    default: return {{0, 1, 2, 3}, 0};
  }
}

template <class T>
std::vector<T> typed(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

/// One run of the op over views in layout `l`: y and grad_x back as row-major doubles.
struct Result {
  std::vector<double> y, gx;
  std::vector<unsigned char> reserve;
};
/// how: forward (y only), backward (forward, then a separate backward), forward_backward (fused).
template <class T>
Result run_pool(const std::vector<double>& xd, const std::vector<double>& gyd, const Dims& shape, std::int64_t s,
                int l, bool with_reserve, Mode how, double beta = 0.0, const std::vector<double>& gx_old = {}) {
  const Dims out = pooled(shape, s);
  const Layout lay = layout_of(l);
  auto x = kdloss_test::relayout(typed<T>(xd), shape, lay.order, lay.pad);
  auto gy = kdloss_test::relayout(gyd.empty() ? std::vector<T>(static_cast<std::size_t>(out.product()), T(0)) : typed<T>(gyd),
                                 out, lay.order, lay.pad);
  auto y = kdloss_test::relayout(std::vector<T>(static_cast<std::size_t>(out.product()), T(-123)), out, lay.order,
                                 lay.pad);
  auto gx = kdloss_test::relayout(
      gx_old.empty() ? std::vector<T>(xd.size(), T(-321)) : typed<T>(gx_old), shape, lay.order, lay.pad);
  ops::MaxPool2dArgs<T> a;
  a.x = x.view;
  a.options.stride = s;
  a.options.input_grad.beta = beta;
  kdloss::detail::HostScratch keep;
  const std::size_t bytes = ops::max_pool2d_reserve_bytes(a);
  if (with_reserve) a.reserve = {keep.get(bytes == 0 ? 1 : bytes), bytes};
  a.y = y.view;
  if (how == Mode::forward_backward) {
    a.grad_y = gy.view;
    a.grad_x = gx.view;
    ops::max_pool2d(a, Mode::forward_backward);
  } else {
    ops::max_pool2d(a, Mode::forward);
    if (how == Mode::backward) {
      ops::MaxPool2dArgs<T> b;
      b.x = x.view;
      b.grad_y = gy.view;
      b.grad_x = gx.view;
      b.reserve = a.reserve;
      b.options = a.options;
      ops::max_pool2d(b, Mode::backward);
    }
  }
  Result r;
  r.y = as_double(kdloss_test::to_vector(y.view));
  if (how != Mode::forward) r.gx = as_double(kdloss_test::to_vector(gx.view));
  if (with_reserve) {
    const auto* p = static_cast<const unsigned char*>(a.reserve.data);
    r.reserve.assign(p, p + bytes);
  }
  return r;
}

/// Values with no ties: a random permutation of distinct multiples of 1/64 (exact in float).
std::vector<double> distinct_values(std::size_t n, std::uint32_t seed) {
  auto r = random_vector<double>(n, seed);
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = (static_cast<double>(i) - static_cast<double>(n) / 2) / 64.0;
  // shuffle by sorting indices on the random keys
  std::vector<std::size_t> idx(n);
  for (std::size_t i = 0; i < n; ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return r[a] < r[b]; });
  std::vector<double> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = v[idx[i]];
  return out;
}

}  // namespace

TEST_CASE("max_pool2d: forward and backward match the double reference (s = 1, 2, 3, 8, 17; layouts; modes)") {
  struct Case {
    Dims shape;
    std::int64_t s;
  };
  // W = 601 with s = 2: 300 output columns, more than one host chunk (256); 17 > 16 takes int32 indices.
  for (const Case& c : {Case{{2, 3, 5, 7}, 1}, Case{{2, 3, 9, 11}, 2}, Case{{1, 2, 5, 601}, 2}, Case{{2, 2, 10, 8}, 3},
                        Case{{1, 3, 19, 27}, 8}, Case{{2, 2, 8, 16}, 8}, Case{{1, 2, 17, 40}, 17}, Case{{3, 1, 1, 1}, 1}}) {
    const std::size_t n = static_cast<std::size_t>(c.shape.product());
    const auto x = random_vector<double>(n, 7);
    const Dims out = pooled(c.shape, c.s);
    const auto gy = random_vector<double>(static_cast<std::size_t>(out.product()), 8);
    const auto ref = kdloss_ref::ops::max_pool2d(x, c.shape[0], c.shape[1], c.shape[2], c.shape[3], c.s);
    const auto ref_gx = kdloss_ref::ops::max_pool2d_backward(x, gy, c.shape[0], c.shape[1], c.shape[2], c.shape[3], c.s);
    for (int l = 0; l < 4; ++l)
      for (bool with_reserve : {false, true})
        for (Mode how : {Mode::forward, Mode::backward, Mode::forward_backward}) {
          CAPTURE(c.shape.str());
          CAPTURE(c.s);
          CAPTURE(l);
          CAPTURE(with_reserve);
          CAPTURE(to_string(how));
          const auto d = run_pool<double>(x, gy, c.shape, c.s, l, with_reserve, how);
          check_close(d.y, ref.y, 0.0, 0.0, "y");
          const auto f = run_pool<float>(x, gy, c.shape, c.s, l, with_reserve, how);
          check_close(f.y, typed<float>(ref.y), 0.0, 0.0, "y (float)");
          if (how == Mode::forward) continue;
          check_close(d.gx, ref_gx, 0.0, 0.0, "grad_x");
          check_close(f.gx, typed<float>(ref_gx), 0.0, 0.0, "grad_x (float)");
        }
  }
}

TEST_CASE("max_pool2d: the reserve holds window-local argmaxes (uint8 up to s = 16, int32 above)") {
  const Dims shape{2, 3, 9, 11};
  for (std::int64_t s : {2, 3, 16, 17}) {
    CAPTURE(s);
    const Dims big{1, 2, 2 * s + 1, 3 * s + 2};
    const auto xb = random_vector<double>(static_cast<std::size_t>(big.product()), 5);
    const auto ref = kdloss_ref::ops::max_pool2d(xb, 1, 2, big[2], big[3], s);
    const auto r = run_pool<float>(xb, {}, big, s, 0, true, Mode::forward);
    const std::size_t outputs = ref.y.size(), width = s <= 16 ? 1 : 4;
    REQUIRE(r.reserve.size() == outputs * width);
    for (std::size_t o = 0; o < outputs; ++o) {
      std::int64_t k = 0;
      if (width == 1) {
        k = r.reserve[o];
      } else {
        std::int32_t v;
        std::memcpy(&v, r.reserve.data() + 4 * o, 4);
        k = v;
      }
      const std::int64_t rem = static_cast<std::int64_t>(o) % (big[2] / s * (big[3] / s));
      const std::int64_t i = rem / (big[3] / s), j = rem % (big[3] / s);
      CHECK(ref.argmax[o] == (i * s + k / s) * big[3] + j * s + k % s);
    }
  }
  ops::MaxPool2dArgs<float> a;
  std::vector<float> buf(static_cast<std::size_t>(shape.product()));
  a.x = host_view<const float>(buf.data(), shape);
  a.options.stride = 2;
  CHECK(ops::max_pool2d_reserve_bytes(a) == 2 * 3 * 4 * 5);
  CHECK(ops::max_pool2d_workspace_bytes(a) == 0);
  a.options.stride = 9;
  CHECK(ops::max_pool2d_reserve_bytes(a) == 2 * 3 * 1 * 1);
}

TEST_CASE("max_pool2d: backward with and without the reserve, and forward_backward, are bitwise the same") {
  const Dims shape{2, 4, 13, 21};
  auto x = random_vector<double>(static_cast<std::size_t>(shape.product()), 11);
  for (std::size_t i = 0; i < x.size(); i += 7) x[i] = std::round(x[i]);  // some ties
  x[5] = kNaN;
  x[40] = -kInf;
  for (std::int64_t s : {2, 3, 4}) {
    CAPTURE(s);
    const auto gy = random_vector<double>(static_cast<std::size_t>(pooled(shape, s).product()), 12);
    for (int l : {0, 1}) {
      const auto a = run_pool<float>(x, gy, shape, s, l, true, Mode::backward);
      const auto b = run_pool<float>(x, gy, shape, s, l, false, Mode::backward);
      const auto c = run_pool<float>(x, gy, shape, s, l, true, Mode::forward_backward);
      const auto d = run_pool<float>(x, gy, shape, s, l, false, Mode::forward_backward);
      CHECK(std::memcmp(a.gx.data(), b.gx.data(), a.gx.size() * sizeof(double)) == 0);
      CHECK(std::memcmp(a.gx.data(), c.gx.data(), a.gx.size() * sizeof(double)) == 0);
      CHECK(std::memcmp(a.gx.data(), d.gx.data(), a.gx.size() * sizeof(double)) == 0);
      CHECK(a.reserve == c.reserve);
    }
  }
}

TEST_CASE("max_pool2d: backward equals central differences of <g, max_pool2d(x)> away from ties (double)") {
  const Dims shape{2, 2, 7, 10};
  const auto x = distinct_values(static_cast<std::size_t>(shape.product()), 21);
  for (std::int64_t s : {2, 3}) {
    CAPTURE(s);
    const auto gy = random_vector<double>(static_cast<std::size_t>(pooled(shape, s).product()), 22);
    const auto got = run_pool<double>(x, gy, shape, s, 0, false, Mode::forward_backward).gx;
    const auto num = kdloss_test::numeric_gradient(
        x,
        [&](const std::vector<double>& v) {
          const auto y = run_pool<double>(v, gy, shape, s, 0, false, Mode::forward).y;
          double l = 0;
          for (std::size_t i = 0; i < y.size(); ++i) l += gy[i] * y[i];
          return l;
        },
        1e-4);  // the values are 1/64 apart: a step of 1e-4 never reorders a window
    check_close(got, num, 1e-8, 1e-8, "grad_x");
  }
}

TEST_CASE("max_pool2d: PyTorch's tie, NaN and -inf rules (values checked with torch 2.x on CPU)") {
  // One 2x2 window, s = 2: the argmax torch.nn.functional.max_pool2d(return_indices=True) reports.
  struct Win {
    std::vector<double> v;
    double y;
    int argmax;
  };
  const std::vector<Win> wins{{{1, 1, 1, 1}, 1, 0},          {{0, 2, 2, 0}, 2, 1},
                              {{kNaN, 1, kNaN, 2}, kNaN, 2}, {{1, kNaN, 2, kNaN}, kNaN, 3},
                              {{1, kNaN, kNaN, 3}, kNaN, 2}, {{-kInf, -kInf, -kInf, -kInf}, -kInf, 0},
                              {{-kInf, kNaN, -kInf, -kInf}, kNaN, 1}, {{kInf, kInf, 1, 1}, kInf, 0},
                              {{kNaN, kNaN, kNaN, kNaN}, kNaN, 3}};
  for (const Win& w : wins) {
    CAPTURE(w.argmax);
    const Dims shape{1, 1, 2, 2};
    const auto ref = kdloss_ref::ops::max_pool2d(w.v, 1, 1, 2, 2, 2);
    CHECK(ref.argmax[0] == w.argmax);  // the reference itself is at parity with torch
    for (int l : {0, 1, 3})
      for (bool with_reserve : {false, true}) {
        const auto d = run_pool<double>(w.v, {0.5}, shape, 2, l, with_reserve, Mode::backward);
        const auto f = run_pool<float>(w.v, {0.5}, shape, 2, l, with_reserve, Mode::forward_backward);
        for (const auto* r : {&d, &f}) {
          if (std::isnan(w.y))
            CHECK(std::isnan(r->y[0]));
          else
            CHECK(r->y[0] == w.y);
          for (int k = 0; k < 4; ++k) CHECK(r->gx[static_cast<std::size_t>(k)] == (k == w.argmax ? 0.5 : 0.0));
        }
      }
  }
  // Larger windows: the reference (checked above) against the op over many tie / NaN / inf patterns.
  const Dims shape{2, 3, 11, 13};
  auto x = random_vector<double>(static_cast<std::size_t>(shape.product()), 31, -2, 2);
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = std::round(x[i]);  // many ties among {-2, ..., 2}
    if (i % 17 == 3) x[i] = kNaN;
    if (i % 13 == 5) x[i] = -kInf;
    if (i % 29 == 7) x[i] = kInf;
  }
  for (std::int64_t s : {2, 3, 4}) {
    CAPTURE(s);
    const auto gy = random_vector<double>(static_cast<std::size_t>(pooled(shape, s).product()), 32);
    const auto ref = kdloss_ref::ops::max_pool2d(x, 2, 3, 11, 13, s);
    const auto ref_gx = kdloss_ref::ops::max_pool2d_backward(x, gy, 2, 3, 11, 13, s);
    for (int l : {0, 1, 2, 3}) {
      CAPTURE(l);
      const auto r = run_pool<float>(x, gy, shape, s, l, l % 2 == 0, Mode::backward);
      kdloss_test::check_same_nonfinite(r.y, ref.y, 0.0, 0.0, "y");
      check_close(r.gx, typed<float>(ref_gx), 0.0, 0.0, "grad_x");
    }
  }
}

TEST_CASE("max_pool2d: input_grad beta accumulates into grad_x (rows and columns no window covers too)") {
  const Dims shape{1, 2, 7, 9};
  const auto x = random_vector<double>(static_cast<std::size_t>(shape.product()), 41);
  const auto gy = random_vector<double>(static_cast<std::size_t>(pooled(shape, 2).product()), 42);
  auto old = random_vector<double>(x.size(), 43);
  const auto ref_gx = kdloss_ref::ops::max_pool2d_backward(x, gy, 1, 2, 7, 9, 2);
  for (double beta : {1.0, 0.5}) {
    std::vector<double> want(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) want[i] = beta * old[i] + ref_gx[i];
    for (int l : {0, 3}) {
      check_close(run_pool<double>(x, gy, shape, 2, l, true, Mode::backward, beta, old).gx, want, 1e-15, 0.0);
      check_close(run_pool<double>(x, gy, shape, 2, l, false, Mode::forward_backward, beta, old).gx, want, 1e-15, 0.0);
    }
  }
  // beta 0 never reads grad_x: NaN garbage does not leak in.
  std::vector<double> garbage(x.size(), kNaN);
  check_close(run_pool<double>(x, gy, shape, 2, 0, false, Mode::backward, 0.0, garbage).gx, ref_gx, 0.0, 0.0);
}

TEST_CASE("max_pool2d: a reserve of out-of-window indices routes nothing and writes nothing out of bounds") {
  const Dims shape{1, 2, 6, 6};
  std::vector<float> x(36 * 2, 1.0f), gy(18, 1.0f), gx(72, 5.0f);
  // Guard zones on both sides of grad_x: an out-of-window index must not write there.
  std::vector<float> guarded(72 + 64, 9.0f);
  float* g = guarded.data() + 32;
  kdloss::detail::HostScratch keep;
  auto* r = static_cast<unsigned char*>(keep.get(18));
  std::memset(r, 255, 18);  // 255 is no position of a 2x2 window
  ops::max_pool2d_backward(host_view<const float>(x.data(), shape), host_view<const float>(gy.data(), {1, 2, 3, 3}),
                           host_view(g, shape), {2}, Reserve{r, 18});
  for (int i = 0; i < 72; ++i) CHECK(g[i] == 0.0f);
  for (int i = 0; i < 32; ++i) CHECK((guarded[i] == 9.0f && guarded[32 + 72 + i] == 9.0f));
}

TEST_CASE("max_pool2d: empty batch or channels is legal and writes nothing; H or W below the stride is an error") {
  for (Dims shape : {Dims{0, 3, 8, 8}, Dims{2, 0, 8, 8}}) {
    CAPTURE(shape.str());
    std::vector<float> none;
    ops::MaxPool2dArgs<float> a;
    a.x = View<const float>(nullptr, shape, contiguous_strides(shape), Device::host());
    a.y = View<float>(nullptr, pooled(shape, 2), contiguous_strides(pooled(shape, 2)), Device::host());
    a.grad_y = View<const float>(a.y);
    a.grad_x = View<float>(nullptr, shape, contiguous_strides(shape), Device::host());
    CHECK(ops::max_pool2d_reserve_bytes(a) == 0);
    for (Mode m : {Mode::forward, Mode::backward, Mode::forward_backward}) CHECK_NOTHROW(ops::max_pool2d(a, m));
  }
  // s = H = W: one window per plane.
  const auto x = random_vector<double>(2 * 8 * 8, 51);
  const auto r = run_pool<double>(x, {1.0, 2.0}, {2, 1, 8, 8}, 8, 0, true, Mode::forward_backward);
  const auto ref = kdloss_ref::ops::max_pool2d(x, 2, 1, 8, 8, 8);
  check_close(r.y, ref.y, 0.0);
}

TEST_CASE("max_pool2d: bad inputs throw naming the argument and shapes, and leave every output untouched") {
  const Dims shape{2, 3, 7, 9}, out{2, 3, 3, 4};
  std::vector<float> x(static_cast<std::size_t>(shape.product()), 1.0f), gy(static_cast<std::size_t>(out.product()), 1.0f);
  std::vector<float> y(gy.size() + 8, -7.0f), gx(x.size() + 8, -7.0f);
  kdloss::detail::HostScratch keep_mem;
  auto* keep = static_cast<unsigned char*>(keep_mem.get(512));
  std::memset(keep, 0xAB, 512);
  const auto untouched = [&] {
    for (float v : y) CHECK(v == -7.0f);
    for (float v : gx) CHECK(v == -7.0f);
    for (int i = 0; i < 512; ++i) CHECK(keep[i] == 0xAB);
  };
  const auto args = [&] {
    ops::MaxPool2dArgs<float> a;
    a.x = host_view<const float>(x.data(), shape);
    a.y = host_view(y.data(), out);
    a.grad_y = host_view<const float>(gy.data(), out);
    a.grad_x = host_view(gx.data(), shape);
    a.reserve = {keep, 72};
    return a;
  };
  using kdloss_test::expect_error;
  const auto fails = [&](ops::MaxPool2dArgs<float> a, Mode m, const std::string& needle) {
    expect_error([&] { ops::max_pool2d(a, m); }, needle, untouched);
  };
  {
    auto a = args();
    a.y = host_view(y.data(), {2, 3, 4, 4});
    fails(a, Mode::forward, "argument 'y' has shape [2, 3, 4, 4] but expected [2, 3, 3, 4]");
  }
  {
    auto a = args();
    a.grad_y = host_view<const float>(gy.data(), {2, 3, 3, 5});
    fails(a, Mode::backward, "argument 'grad_y' has shape [2, 3, 3, 5] but expected [2, 3, 3, 4]");
  }
  {
    auto a = args();
    a.grad_x = host_view(gx.data(), {2, 3, 7, 8});
    fails(a, Mode::forward_backward, "argument 'grad_x' has shape [2, 3, 7, 8] but expected [2, 3, 7, 9]");
  }
  {
    auto a = args();
    a.x = host_view<const float>(x.data(), {2, 3, 7, 6});
    a.options.stride = 8;
    fails(a, Mode::forward, "argument 'x' has shape [2, 3, 7, 6], smaller than the stride 8");
    fails(a, Mode::backward, "Output size is too small");
    expect_error([&] { (void)ops::max_pool2d_reserve_bytes(a); }, "smaller than the stride 8", untouched);
  }
  {
    auto a = args();
    a.options.stride = 0;
    fails(a, Mode::forward, "argument 'options.stride' is 0");
    a.options.stride = -2;
    fails(a, Mode::backward, "argument 'options.stride' is -2");
  }
  {
    auto a = args();
    a.reserve.bytes = 71;
    fails(a, Mode::forward, "argument 'reserve' has 71 bytes but x [2, 3, 7, 9] with stride 2 needs 72");
    fails(a, Mode::backward, "argument 'reserve' has 71 bytes");
    a.reserve = {keep + 1, 100};
    fails(a, Mode::forward, "argument 'reserve' must be aligned to 256 bytes");
    a.reserve = {keep, 72};
    a.y = View<float>(reinterpret_cast<float*>(keep), out, contiguous_strides(out), Device::host());
    fails(a, Mode::forward, "output argument 'reserve' overlaps the memory of argument 'y'");
  }
  {
    auto a = args();
    a.x = {};
    fails(a, Mode::forward, "argument 'x' is absent");
    a = args();
    a.y = {};
    fails(a, Mode::forward, "argument 'y' is absent but forward writes it");
    a = args();
    a.grad_y = {};
    fails(a, Mode::backward, "argument 'grad_y' is absent but backward reads it");
    a = args();
    a.grad_x = {};
    fails(a, Mode::forward_backward, "argument 'grad_x' is absent but forward_backward writes it");
  }
  {
    auto a = args();
    a.x = host_view<const float>(x.data(), {2, 3, 63});
    fails(a, Mode::forward, "argument 'x' must have rank 4 but has shape [2, 3, 63]");
    a = args();
    a.grad_x = host_view(gx.data(), shape, {1, 1, 1, 1});
    fails(a, Mode::backward, "output argument 'grad_x' with shape [2, 3, 7, 9]");
    a = args();
    a.y = View<float>(reinterpret_cast<float*>(const_cast<float*>(x.data())), out, contiguous_strides(out),
                      Device::host());
    fails(a, Mode::forward, "output argument 'y' overlaps the memory of argument 'x'");
  }
}

KDLOSS_GPU_TEST("max_pool2d: GPU agrees with the reference (float, double, half, bfloat16; NCHW and NHWC; reserve)") {
#if KDLOSS_TEST_CUDA
  // Multiples of 1/16 in [-4, 4]: exact in every dtype, so ties stay ties; plus NaN and -inf.
  for (std::int64_t s : {1, 2, 3, 8}) {
    const Dims shape{2, 5, 2 * s + 3, 3 * s + 1};
    auto x = random_vector<double>(static_cast<std::size_t>(shape.product()), 61, -4, 4);
    for (std::size_t i = 0; i < x.size(); ++i) {
      x[i] = std::round(x[i] * 16) / 16;
      if (i % 23 == 4) x[i] = kNaN;
      if (i % 19 == 2) x[i] = -kInf;
    }
    auto gy = random_vector<double>(static_cast<std::size_t>(pooled(shape, s).product()), 62, -4, 4);
    for (auto& v : gy) v = std::round(v * 16) / 16;
    const auto ref = kdloss_ref::ops::max_pool2d(x, shape[0], shape[1], shape[2], shape[3], s);
    const auto ref_gx = kdloss_ref::ops::max_pool2d_backward(x, gy, shape[0], shape[1], shape[2], shape[3], s);
    for (int dtype = 0; dtype < 4; ++dtype)
      for (bool channels_last : {false, true})
        for (bool with_reserve : {false, true}) {
          CAPTURE(s);
          CAPTURE(dtype);
          CAPTURE(channels_last);
          CAPTURE(with_reserve);
          const auto got = kdloss_test::max_pool_on_gpu(dtype, channels_last, with_reserve, x, gy, shape[0],
                                                        shape[1], shape[2], shape[3], s);
          const std::size_t ny = ref.y.size(), nx = x.size();
          REQUIRE(got.size() == ny + 2 * nx);
          kdloss_test::check_same_nonfinite(std::vector<double>(got.begin(), got.begin() + ny), ref.y, 0.0, 0.0, "y");
          check_close(std::vector<double>(got.begin() + ny, got.begin() + ny + nx), ref_gx, 0.0, 0.0, "grad_x");
          check_close(std::vector<double>(got.begin() + ny + nx, got.end()), ref_gx, 0.0, 0.0,
                      "grad_x (forward_backward)");
        }
  }
#endif
}

TEST_CASE("max_pool2d: mixed layouts (channel-last x with NCHW outputs and back) and more channels than a chunk") {
  for (const Dims shape : {Dims{2, 5, 9, 7}, Dims{1, 300, 5, 4}}) {
    CAPTURE(shape.str());
    const std::int64_t s = 2;
    const Dims out = pooled(shape, s);
    const auto xd = random_vector<double>(static_cast<std::size_t>(shape.product()), 71);
    const auto gyd = random_vector<double>(static_cast<std::size_t>(out.product()), 72);
    const auto ref = kdloss_ref::ops::max_pool2d(xd, shape[0], shape[1], shape[2], shape[3], s);
    const auto ref_gx = kdloss_ref::ops::max_pool2d_backward(xd, gyd, shape[0], shape[1], shape[2], shape[3], s);
    for (bool x_last : {true, false}) {
      CAPTURE(x_last);
      const std::vector<int> xo = x_last ? std::vector<int>{0, 2, 3, 1} : std::vector<int>{0, 1, 2, 3};
      const std::vector<int> oo = x_last ? std::vector<int>{0, 1, 2, 3} : std::vector<int>{0, 2, 3, 1};
      auto x = kdloss_test::relayout(typed<float>(xd), shape, xo);
      auto gy = kdloss_test::relayout(typed<float>(gyd), out, oo, 1);
      auto y = kdloss_test::relayout(std::vector<float>(ref.y.size(), -1.f), out, oo);
      auto gx = kdloss_test::relayout(std::vector<float>(xd.size(), -1.f), shape, oo, 2);
      for (bool with_reserve : {false, true}) {
        kdloss::detail::HostScratch keep;
        ops::MaxPool2dArgs<float> a;
        a.x = x.view;
        a.y = y.view;
        a.options.stride = s;
        const std::size_t bytes = ops::max_pool2d_reserve_bytes(a);
        if (with_reserve) a.reserve = {keep.get(bytes), bytes};
        ops::max_pool2d(a, Mode::forward);
        check_close(as_double(kdloss_test::to_vector(y.view)), typed<float>(ref.y), 0.0, 0.0, "y");
        ops::max_pool2d_backward(x.view, View<const float>(gy.view), gx.view, a.options, a.reserve);
        check_close(as_double(kdloss_test::to_vector(gx.view)), typed<float>(ref_gx), 0.0, 0.0, "grad_x");
      }
    }
  }
}

TEST_CASE("max_pool2d: results are bitwise the same with 1, 2 and 3 threads (planar and channel-last)") {
#if KDLOSS_OPENMP
  const Dims shape{2, 8, 64, 70};  // 71680 elements: above kParallelThreshold
  auto x = random_vector<double>(static_cast<std::size_t>(shape.product()), 81);
  for (std::size_t i = 0; i < x.size(); i += 5) x[i] = std::round(x[i]);
  const auto gy = random_vector<double>(static_cast<std::size_t>(pooled(shape, 4).product()), 82);
  kdloss_test::ThreadScope scope;
  for (int l : {0, 1}) {
    std::vector<Result> runs;
    for (int threads : {1, 2, 3}) {
      scope.set(threads);
      runs.push_back(run_pool<float>(x, gy, shape, 4, l, true, Mode::forward_backward));
    }
    for (int i = 1; i < 3; ++i) {
      CHECK(runs[i].y == runs[0].y);
      CHECK(runs[i].gx == runs[0].gx);
      CHECK(runs[i].reserve == runs[0].reserve);
    }
  }
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}
