// ops::softmax_relation: values and the three gradients against the naive double reference (which stores
// the N x N' matrix), central differences, scale != 1, N != N', strided and channels-first operands, tile
// boundaries, N = 1 / N' = 1, large logits, NaN / -inf scores as torch's softmax gives them, bad input
// with outputs untouched, thread-count determinism, and the kept state against the recomputed one.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "kdloss/backend/cpu/attention.hpp"
#include "kdloss/backend/cpu/gemm.hpp"
#include "kdloss/config.hpp"
#include "kdloss/ops/softmax_relation.hpp"
#include "reference/ops/relation.hpp"
#include "support/test_support.hpp"
#if KDLOSS_TEST_CUDA
#include "ops/softmax_relation_gpu.hpp"
#endif

#include "support/threads.hpp"

using namespace kdloss;
using kdloss_test::check_close;
using kdloss_test::check_same_nonfinite;
using kdloss_test::random_vector;

namespace {

struct Problem {
  std::int64_t batch, n, nk, m, c;
  double scale;
  kdloss_ref::ops::SoftmaxRelation ref() const { return {batch, n, nk, m, c, scale}; }
};

struct Inputs {
  std::vector<double> theta, phi, g, gy;
};
Inputs make_inputs(const Problem& p, std::uint32_t seed, double amp = 1.0) {
  return {random_vector<double>(p.batch * p.n * p.m, seed, -amp, amp),
          random_vector<double>(p.batch * p.nk * p.m, seed + 1, -amp, amp),
          random_vector<double>(p.batch * p.nk * p.c, seed + 2), random_vector<double>(p.batch * p.n * p.c, seed + 3)};
}

/// rows: [B, R, C] row-major; channels_first: stored [B, C, R] (a [B, C, H, W] map read as [B, H*W, C]);
/// padded: rows padded by 3 elements.
enum class Layout { rows, channels_first, padded };
const Layout kLayouts[] = {Layout::rows, Layout::channels_first, Layout::padded};

template <class T>
kdloss_test::Strided<T> store(const std::vector<double>& v, const Dims& shape, Layout layout) {
  const std::vector<T> t(v.begin(), v.end());
  if (layout == Layout::channels_first) return kdloss_test::relayout(t, shape, {0, 2, 1});
  return kdloss_test::relayout(t, shape, {0, 1, 2}, layout == Layout::padded ? 3 : 0);
}

/// A 256-byte aligned host buffer (reserves and workspaces).
struct Aligned {
  std::unique_ptr<unsigned char[]> raw;
  void* data = nullptr;
  std::size_t bytes = 0;
  explicit Aligned(std::size_t n) : raw(new unsigned char[n + 256]), bytes(n) {
    data = raw.get() + (256 - reinterpret_cast<std::uintptr_t>(raw.get()) % 256) % 256;
  }
};

struct Out {
  std::vector<double> y, gt, gp, gg;
};

/// How the gradients are obtained: forward_backward; forward keeping the reserve, then backward reading
/// y and the reserve; forward without a reserve, then backward with neither (recomputed).
enum class How { forward_backward, kept, recomputed };

template <class T>
Out run(const Problem& p, const Inputs& in, Layout layout, How how, bool grads = true) {
  auto th = store<T>(in.theta, {p.batch, p.n, p.m}, layout), ph = store<T>(in.phi, {p.batch, p.nk, p.m}, layout);
  auto g = store<T>(in.g, {p.batch, p.nk, p.c}, layout), gy = store<T>(in.gy, {p.batch, p.n, p.c}, layout);
  auto y = store<T>(std::vector<double>(p.batch * p.n * p.c, 5.0), {p.batch, p.n, p.c}, layout);
  auto gt = store<T>(std::vector<double>(in.theta.size(), 5.0), {p.batch, p.n, p.m}, layout);
  auto gp = store<T>(std::vector<double>(in.phi.size(), 5.0), {p.batch, p.nk, p.m}, layout);
  auto gg = store<T>(std::vector<double>(in.g.size(), 5.0), {p.batch, p.nk, p.c}, layout);
  ops::SoftmaxRelationArgs<T> a;
  a.theta = th.view;
  a.phi = ph.view;
  a.g = g.view;
  a.y = y.view;
  a.options.scale = p.scale;
  Aligned reserve(ops::softmax_relation_reserve_bytes(a));
  auto vec = [](const auto& s) {
    const auto v = kdloss_test::to_vector(s.view);
    return std::vector<double>(v.begin(), v.end());
  };
  if (!grads) {
    ops::softmax_relation(a, Mode::forward);
    return {vec(y), {}, {}, {}};
  }
  a.grad_y = gy.view;
  a.grad_theta = gt.view;
  a.grad_phi = gp.view;
  a.grad_g = gg.view;
  if (how == How::forward_backward) {
    ops::softmax_relation(a, Mode::forward_backward);
  } else {
    if (how == How::kept) a.reserve = {reserve.data, reserve.bytes};
    ops::softmax_relation(a, Mode::forward);
    if (how == How::recomputed) a.y = {};
    ops::softmax_relation(a, Mode::backward);
  }
  return {vec(y), vec(gt), vec(gp), vec(gg)};
}

/// The reference's y and gradients of one problem (computed once, compared with every run).
struct Expected {
  std::vector<double> y;
  kdloss_ref::ops::SoftmaxRelation::Grads grads;
  Expected(const Problem& p, const Inputs& in)
      : y(p.ref().forward(in.theta, in.phi, in.g)), grads(p.ref().backward(in.theta, in.phi, in.g, in.gy)) {}
};

template <class T>
void check_against_reference(const Problem& p, const Inputs& in, const Expected& want, Layout layout, How how,
                             double rel, double abs) {
  const Out r = run<T>(p, in, layout, how);
  check_close(r.y, want.y, rel, abs, "y");
  check_close(r.gt, want.grads.theta, rel, abs, "grad_theta");
  check_close(r.gp, want.grads.phi, rel, abs, "grad_phi");
  check_close(r.gg, want.grads.g, rel, abs, "grad_g");
}

// Tiles of the host backend: 192 queries x 384 keys (forward, grad_theta), 192 keys x 384 queries
// (grad_phi, grad_g). The sizes below straddle them.
const Problem kProblems[] = {
    {2, 7, 5, 3, 4, 0.7},      {1, 1, 1, 3, 2, 1.0},      {1, 1, 9, 4, 3, 0.5},    {3, 9, 1, 2, 5, 1.3},
    {2, 193, 385, 5, 3, 0.4},  {1, 385, 193, 4, 6, 0.45}, {1, 192, 384, 17, 33, 1.0 / std::sqrt(17.0)},
    {1, 40, 30, 260, 3, 0.05},  // depth beyond one GEMM block
};

}  // namespace

TEST_CASE("softmax_relation: values and gradients match the double reference (float and double, every layout)") {
  int k = 0;
  for (const Problem& p : kProblems) {
    const Inputs in = make_inputs(p, 100 + 7 * k);
    const Expected want(p, in);
    for (Layout layout : kLayouts) {
      CAPTURE(k);
      CAPTURE(static_cast<int>(layout));
      check_against_reference<double>(p, in, want, layout, How::forward_backward, 1e-10, 1e-12);
      check_against_reference<float>(p, in, want, layout, How::kept, 2e-4, 2e-5);
    }
    ++k;
  }
}

TEST_CASE("softmax_relation: gradients match central differences of the op itself (double)") {
  const Problem p{2, 5, 4, 3, 2, 0.8};
  const Inputs in = make_inputs(p, 7);
  const Out r = run<double>(p, in, Layout::channels_first, How::forward_backward);
  auto loss_of = [&](int which) {
    return [&, which](const std::vector<double>& x) {
      Inputs v = in;
      (which == 0 ? v.theta : which == 1 ? v.phi : v.g) = x;
      const Out o = run<double>(p, v, Layout::rows, How::forward_backward, false);
      double s = 0;
      for (std::size_t i = 0; i < o.y.size(); ++i) s += o.y[i] * in.gy[i];
      return s;
    };
  };
  check_close(r.gt, kdloss_test::numeric_gradient(in.theta, loss_of(0)), 1e-6, 1e-8, "grad_theta");
  check_close(r.gp, kdloss_test::numeric_gradient(in.phi, loss_of(1)), 1e-6, 1e-8, "grad_phi");
  check_close(r.gg, kdloss_test::numeric_gradient(in.g, loss_of(2)), 1e-6, 1e-8, "grad_g");
}

TEST_CASE("softmax_relation: the kept reserve, recomputation and forward_backward give the same bits") {
  const Problem p{2, 200, 390, 9, 7, 0.3};
  const Inputs in = make_inputs(p, 21);
  for (Layout layout : {Layout::rows, Layout::channels_first}) {
    const Out a = run<float>(p, in, layout, How::forward_backward), b = run<float>(p, in, layout, How::kept),
              c = run<float>(p, in, layout, How::recomputed);
    CHECK(a.y == b.y);
    CHECK(a.y == c.y);
    for (const Out* o : {&b, &c}) {
      CHECK(o->gt == a.gt);
      CHECK(o->gp == a.gp);
      CHECK(o->gg == a.gg);
    }
  }
}

TEST_CASE("softmax_relation: results are bitwise the same with 1, 2 and 3 threads") {
#if KDLOSS_OPENMP
  const Problem p{2, 401, 500, 16, 8, 0.25};
  const Inputs in = make_inputs(p, 31);
  kdloss_test::ThreadScope scope;
  // Channels-first gradients are summed in scratch accumulators, row-major ones in place.
  for (Layout layout : {Layout::channels_first, Layout::rows}) {
    std::vector<Out> runs;
    for (int threads : {1, 2, 3}) {
      scope.set(threads);
      runs.push_back(run<float>(p, in, layout, How::forward_backward));
    }
    for (int i = 1; i < 3; ++i) {
      CHECK(runs[i].y == runs[0].y);
      CHECK(runs[i].gt == runs[0].gt);
      CHECK(runs[i].gp == runs[0].gp);
      CHECK(runs[i].gg == runs[0].gg);
    }
  }
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}

TEST_CASE("softmax_relation: large logits do not overflow (online softmax)") {
  const Problem p{1, 50, 420, 4, 3, 1.0};
  const Inputs in = make_inputs(p, 41, 30.0);  // scores up to a few thousand
  const Out r = run<float>(p, in, Layout::rows, How::forward_backward);
  CHECK(kdloss_test::all_finite(r.y));
  CHECK(kdloss_test::all_finite(r.gt));
  const auto ref = p.ref();
  check_close(r.y, ref.forward(in.theta, in.phi, in.g), 1e-3, 1e-4, "y");
  const auto gr = ref.backward(in.theta, in.phi, in.g, in.gy);
  // The float scores carry an absolute error of about 1e-4 at this magnitude, amplified by the gradient.
  check_close(r.gg, gr.g, 1e-2, 1e-3, "grad_g");
  check_close(r.gp, gr.phi, 2e-2, 5e-2, "grad_phi");
}

TEST_CASE("softmax_relation: NaN and inf propagate as torch's softmax gives them") {
  const Problem p{2, 6, 400, 3, 2, 1.0};
  const auto ref = p.ref();
  SUBCASE("a NaN in theta makes that query row NaN, the others stay finite") {
    Inputs in = make_inputs(p, 51);
    in.theta[(1 * p.n + 2) * p.m + 1] = std::numeric_limits<double>::quiet_NaN();
    const Out r = run<float>(p, in, Layout::rows, How::forward_backward);
    check_same_nonfinite(r.y, ref.forward(in.theta, in.phi, in.g), 1e-4, 1e-5, "y");
    const auto gr = ref.backward(in.theta, in.phi, in.g, in.gy);
    check_same_nonfinite(r.gt, gr.theta, 1e-4, 1e-5, "grad_theta");
    check_same_nonfinite(r.gp, gr.phi, 1e-4, 1e-5, "grad_phi");
    check_same_nonfinite(r.gg, gr.g, 1e-4, 1e-5, "grad_g");
    CHECK(std::isfinite(r.y[0]));
  }
  SUBCASE("a NaN in phi (past the first key tile) makes every row of its batch NaN") {
    Inputs in = make_inputs(p, 52);
    in.phi[(0 * p.nk + 390) * p.m] = std::numeric_limits<double>::quiet_NaN();
    const Out r = run<double>(p, in, Layout::rows, How::kept);
    check_same_nonfinite(r.y, ref.forward(in.theta, in.phi, in.g), 1e-10, 1e-12, "y");
    const auto gr = ref.backward(in.theta, in.phi, in.g, in.gy);
    check_same_nonfinite(r.gt, gr.theta, 1e-10, 1e-12, "grad_theta");
    check_same_nonfinite(r.gg, gr.g, 1e-10, 1e-12, "grad_g");
  }
  SUBCASE("a row of only -inf scores is NaN; -inf scores among finite ones get weight 0") {
    Inputs in = make_inputs(p, 53);
    // Row (0, 1): theta = (-inf, 0, 0) against phi[:, 0] > 0: all scores -inf.
    for (std::int64_t j = 0; j < p.nk; ++j) in.phi[j * p.m] = 0.5 + 0.001 * j;
    in.theta[(0 * p.n + 1) * p.m + 0] = -std::numeric_limits<double>::infinity();
    in.theta[(0 * p.n + 1) * p.m + 1] = 0;
    in.theta[(0 * p.n + 1) * p.m + 2] = 0;
    // Row (1, 3): a score of about -1e60 at key 5 (-inf in float), finite elsewhere.
    in.theta[(1 * p.n + 3) * p.m + 0] = 1e30;
    for (std::int64_t j = 0; j < p.nk; ++j) in.phi[(1 * p.nk + j) * p.m] = j == 5 ? -1e30 : 0.0;
    const Out r = run<float>(p, in, Layout::channels_first, How::recomputed);
    const auto want = ref.forward(in.theta, in.phi, in.g);
    check_same_nonfinite(r.y, want, 1e-4, 1e-5, "y");
    CHECK(std::isnan(r.y[(0 * p.n + 1) * p.c]));
    CHECK(std::isfinite(r.y[(1 * p.n + 3) * p.c]));
    const auto gr = ref.backward(in.theta, in.phi, in.g, in.gy);
    check_same_nonfinite(r.gg, gr.g, 1e-4, 1e-5, "grad_g");
  }
}

TEST_CASE("softmax_relation: B = 0 is a no-op; bad inputs throw and leave the outputs untouched") {
  const Problem p{2, 4, 3, 5, 2, 1.0};
  std::vector<float> th(p.batch * p.n * p.m, 0.5f), ph(p.batch * p.nk * p.m, 0.25f), g(p.batch * p.nk * p.c, 1.0f);
  std::vector<float> gy(p.batch * p.n * p.c, 1.0f), y(p.batch * p.n * p.c, 9.0f), gt(th.size(), 9.0f);
  const auto make = [&] {
    ops::SoftmaxRelationArgs<float> a;
    a.theta = host_view<const float>(th.data(), {p.batch, p.n, p.m});
    a.phi = host_view<const float>(ph.data(), {p.batch, p.nk, p.m});
    a.g = host_view<const float>(g.data(), {p.batch, p.nk, p.c});
    a.y = host_view(y.data(), {p.batch, p.n, p.c});
    a.grad_y = host_view<const float>(gy.data(), {p.batch, p.n, p.c});
    a.grad_theta = host_view(gt.data(), {p.batch, p.n, p.m});
    return a;
  };
  const auto untouched = [&] {
    for (float v : y) REQUIRE(v == 9.0f);
    for (float v : gt) REQUIRE(v == 9.0f);
  };
  {
    auto a = make();
    a.theta = host_view<const float>(th.data(), {0, p.n, p.m});
    a.phi = host_view<const float>(ph.data(), {0, p.nk, p.m});
    a.g = host_view<const float>(g.data(), {0, p.nk, p.c});
    a.y = host_view(y.data(), {0, p.n, p.c});
    a.grad_y = host_view<const float>(gy.data(), {0, p.n, p.c});
    a.grad_theta = host_view(gt.data(), {0, p.n, p.m});
    ops::softmax_relation(a, Mode::forward_backward);
    untouched();
  }
  using kdloss_test::expect_error;
  auto bad = [&](auto edit, Mode mode, const std::string& needle) {
    auto a = make();
    edit(a);
    expect_error([&] { ops::softmax_relation(a, mode); }, needle, untouched);
  };
  using A = ops::SoftmaxRelationArgs<float>&;
  bad([&](A a) { a.phi = host_view<const float>(ph.data(), {p.batch, p.nk, p.m - 1}); }, Mode::forward,
      "argument 'phi' has shape");
  bad([&](A a) {
    a.phi = host_view<const float>(ph.data(), {p.batch, 0, p.m});
    a.g = host_view<const float>(g.data(), {p.batch, 0, p.c});
  }, Mode::forward, "N' = 0");
  bad([&](A a) { a.g = host_view<const float>(g.data(), {p.batch, p.nk - 1, p.c}); }, Mode::forward,
      "argument 'g' has shape");
  bad([&](A a) { a.theta = host_view<const float>(th.data(), {p.batch * p.n, p.m}); }, Mode::forward,
      "argument 'theta' must have rank 3");
  bad([&](A a) { a.y = host_view(y.data(), {p.batch, p.n, p.c + 1}); }, Mode::forward, "argument 'y' has shape");
  bad([&](A a) { a.y = {}; }, Mode::forward, "argument 'y' is absent");
  bad([&](A a) { a.y = host_view(gt.data(), {p.batch, p.n, p.c}); a.theta = host_view<const float>(gt.data(), {p.batch, p.n, p.m}); },
      Mode::forward, "overlaps the memory of argument 'theta'");
  bad([&](A a) { a.options.scale = std::numeric_limits<double>::quiet_NaN(); }, Mode::forward, "options.scale");
  bad([&](A a) { a.grad_theta = {}; }, Mode::backward, "none of 'grad_theta'");
  bad([&](A a) { a.grad_y = {}; }, Mode::forward_backward, "argument 'grad_y' is absent");
  bad([&](A a) { a.grad_theta = host_view(gt.data(), {p.batch, p.n, p.m - 1}); }, Mode::backward,
      "argument 'grad_theta' has shape");
  Aligned small(64);
  bad([&](A a) { a.reserve = {small.data, 8}; }, Mode::forward, "argument 'reserve' has 8 bytes");
  bad([&](A a) { a.reserve = {static_cast<char*>(small.data) + 4, 4096}; }, Mode::forward, "aligned to 256");
  {
    auto a = make();
    const std::size_t need = ops::softmax_relation_workspace_bytes(a);
    Aligned ws(need);
    expect_error([&] { ops::softmax_relation(a, Mode::forward, Exec{Workspace{ws.data, 16}}); }, "workspace", untouched);
    ops::softmax_relation(a, Mode::forward_backward, Exec{Workspace{ws.data, need}});
    CHECK(y[0] != 9.0f);
  }
}

KDLOSS_GPU_TEST("softmax_relation: GPU agrees with the CPU (float, double, half, bfloat16; rows and channels-first)") {
#if KDLOSS_TEST_CUDA
  // Sizes off every tile multiple of both backends; the reference is the double op on the inputs as
  // each dtype holds them. float accumulates sums of up to K terms of size <= 1 (2^-24 each, about 1e-5
  // relative to the largest element); half / bfloat16 add the rounding of P and dS to the format before
  // the tensor-core products (2^-11, 2^-8) and of the outputs: tolerances relative to each output's
  // largest element.
  const Problem p{2, 75, 53, 40, 36, 1.0 / std::sqrt(40.0)};
  const Inputs in = make_inputs(p, 91);
  for (int dtype : {1, 0, 2, 3})
    for (bool cf : {false, true})
      for (bool fused : {true, false}) {
        CAPTURE(dtype);
        CAPTURE(cf);
        CAPTURE(fused);
        const auto th = kdloss_test::as_gpu_dtype(dtype, in.theta), ph = kdloss_test::as_gpu_dtype(dtype, in.phi);
        const auto gg = kdloss_test::as_gpu_dtype(dtype, in.g), gy = kdloss_test::as_gpu_dtype(dtype, in.gy);
        const auto ref = p.ref();
        const auto y = ref.forward(th, ph, gg);
        const auto grads = ref.backward(th, ph, gg, gy);
        std::vector<double> want;
        for (const auto* part : {&y, &grads.theta, &grads.phi, &grads.g}) want.insert(want.end(), part->begin(), part->end());
        const auto got = kdloss_test::softmax_relation_on_gpu(dtype, cf, fused, p.batch, p.n, p.nk, p.m, p.c, p.scale,
                                                              in.theta, in.phi, in.g, in.gy);
        REQUIRE(got.size() == want.size());
        const double rel = dtype == 1 ? 1e-12 : dtype == 0 ? 1e-5 : dtype == 2 ? 4e-3 : 3e-2;
        std::size_t offset = 0;
        for (const auto* part : {&y, &grads.theta, &grads.phi, &grads.g}) {
          double largest = 0;
          for (double v : *part) largest = std::max(largest, std::fabs(v));
          const std::vector<double> got_part(got.begin() + offset, got.begin() + offset + part->size());
          check_close(got_part, *part, 0.0, rel * largest);
          offset += part->size();
        }
      }
#endif
}

TEST_CASE("softmax_relation: every host GEMM kernel (AVX-512, AVX2, Eigen) on the packed operands gives the reference") {
  using backend::cpu::GemmKernel;
  // Partial tiles on both sides, odd feature sizes, and a depth beyond one 256 block (the operands packed once
  // per call are sliced per tile pair: every kernel's panels must line up with the tiles).
  const Problem problems[] = {{2, 193, 385, 5, 3, 0.4}, {1, 389, 200, 17, 33, 0.3}, {1, 40, 30, 260, 3, 0.05}};
  const GemmKernel kernels[] = {GemmKernel::avx512, GemmKernel::avx2, GemmKernel::eigen};
  struct Restore {
    ~Restore() { backend::cpu::set_gemm_kernel(GemmKernel::automatic); }
  } restore;
  int k = 0;
  for (const Problem& p : problems) {
    const Inputs in = make_inputs(p, 400 + 5 * k++);
    const Expected want(p, in);
    for (GemmKernel kernel : kernels) {
      CAPTURE(backend::cpu::to_string(kernel));
      CAPTURE(k);
      backend::cpu::set_gemm_kernel(kernel);
      for (Layout layout : {Layout::rows, Layout::channels_first}) {
        CAPTURE(static_cast<int>(layout));
        check_against_reference<double>(p, in, want, layout, How::forward_backward, 1e-10, 1e-12);
        check_against_reference<float>(p, in, want, layout, How::kept, 2e-4, 2e-5);
      }
    }
  }
}

TEST_CASE("softmax_relation: the host tile kernels give the same bits at every vector width (16, 32, 64 bytes)") {
  // The host runs the online-softmax and gradient tile steps at the width of the machine's instruction
  // set; every step is lane by lane, so under one instruction set each width gives the bits of the
  // others. Width 0 is the kernel picked for this machine (AVX-512, AVX2 or the baseline); the others
  // run as the baseline compiles them.
  using namespace kdloss::backend::cpu::attention_detail;
  const auto run = [](auto width, auto zero) {
    using A = decltype(zero);
    constexpr int Bytes = decltype(width)::value;
    const std::int64_t rows = 7, ld = 32;  // whole 64-byte packets of float and of double
    std::vector<A> s(rows * ld), m(ld), l(ld), corr(ld), shift(ld), dp(rows * ld), lse(ld), dd(ld);
    for (std::int64_t i = 0; i < rows * ld; ++i) s[i] = A(3) * std::sin(A(0.37) * i), dp[i] = std::cos(A(0.11) * i);
    for (std::int64_t c = 0; c < ld; ++c) {
      m[c] = c % 3 == 0 ? -std::numeric_limits<A>::infinity() : std::sin(A(c));  // a column's first tile too
      l[c] = A(0.5) + c, lse[c] = A(2) + std::cos(A(c)), dd[c] = std::sin(A(2) * c);
    }
    s[5] = std::numeric_limits<A>::quiet_NaN();
    s[ld + 9] = -std::numeric_limits<A>::infinity();
    for (std::int64_t j = 0; j < rows; ++j) s[j * ld + 17] = -std::numeric_limits<A>::infinity();  // all -inf
    std::vector<A> g = s;
    if constexpr (Bytes == 0) {  // the kernel this machine runs
      online_tile<A>(s.data(), rows, ld, m.data(), l.data(), corr.data(), shift.data());
      grad_tile<A>(g.data(), dp.data(), rows, ld, lse.data(), dd.data(), true);
    } else {
      online_tile_at<A, Bytes>(s.data(), rows, ld, m.data(), l.data(), corr.data(), shift.data());
      grad_tile_at<A, Bytes>(g.data(), dp.data(), rows, ld, lse.data(), dd.data(), true);
    }
    std::vector<A> all;
    for (const auto* v : {&s, &m, &l, &corr, &shift, &g, &dp}) all.insert(all.end(), v->begin(), v->end());
    return all;
  };
  const auto same_bits = [](const auto& a, const auto& b) {
    REQUIRE(a.size() == b.size());
    return std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0;
  };
  using W16 = std::integral_constant<int, 16>;
  using W32 = std::integral_constant<int, 32>;
  using W64 = std::integral_constant<int, 64>;
  using Machine = std::integral_constant<int, 0>;
  // The machine's kernel may contract a * b + c into one fused multiply-add where the baseline cannot:
  // the same values to rounding, the same NaN and infinities.
  const auto close = [](const auto& a, const auto& b, double rel) {
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      CAPTURE(i);
      REQUIRE(std::isnan(a[i]) == std::isnan(b[i]));
      if (std::isnan(a[i]) || std::isinf(a[i]) || a[i] == 0) {
        if (!std::isnan(a[i])) REQUIRE(a[i] == b[i]);
        continue;
      }
      REQUIRE(std::abs(a[i] - b[i]) <= rel * std::abs(a[i]));
    }
  };
  close(run(W16{}, 0.f), run(Machine{}, 0.f), 1e-6);
  close(run(W16{}, 0.0), run(Machine{}, 0.0), 1e-14);
  CHECK(same_bits(run(W16{}, 0.f), run(W32{}, 0.f)));
  CHECK(same_bits(run(W16{}, 0.f), run(W64{}, 0.f)));
  CHECK(same_bits(run(W16{}, 0.0), run(W32{}, 0.0)));
  CHECK(same_bits(run(W16{}, 0.0), run(W64{}, 0.0)));
  // and the kernels did something: the NaN score stays NaN after exp, the all -inf column's sum is its old one
  const auto f = run(W32{}, 0.f);
  CHECK(std::isnan(f[5]));
}
