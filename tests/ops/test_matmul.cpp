// ops::matmul: every host kernel against the double reference; strided, transposed and broadcast operands;
// sums over the batch; epilogues; thread-count determinism; degenerate shapes; NaN rules; bad input; GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kdloss/backend/cpu/gemm.hpp"
#include "kdloss/ops/matmul.hpp"
#include "ops/matmul_gpu.hpp"
#include "reference/ops/matmul.hpp"
#include "support/test_support.hpp"
#include "support/threads.hpp"

using namespace kdloss;
using kdloss::backend::cpu::GemmKernel;
using kdloss_test::check_close;
using kdloss_test::random_vector;

namespace {

const GemmKernel kKernels[] = {GemmKernel::eigen, GemmKernel::avx2, GemmKernel::avx512};

/// Pins a host kernel for the scope (restores automatic).
struct KernelScope {
  explicit KernelScope(GemmKernel k) { backend::cpu::set_gemm_kernel(k); }
  ~KernelScope() { backend::cpu::set_gemm_kernel(GemmKernel::automatic); }
};

using kdloss_test::ThreadScope;

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

/// Row-major [batch, rows, cols] values stored transposed ([batch, cols, rows]) when `trans`.
std::vector<double> stored(const std::vector<double>& logical, std::int64_t batch, std::int64_t rows,
                           std::int64_t cols, bool trans) {
  if (!trans) return logical;
  std::vector<double> s(logical.size());
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) s[(b * cols + c) * rows + r] = logical[(b * rows + r) * cols + c];
  return s;
}
Dims mat_dims(std::int64_t batch, std::int64_t rows, std::int64_t cols, bool trans) {
  return trans ? Dims{batch, cols, rows} : Dims{batch, rows, cols};
}

template <class T>
double tol(std::int64_t k) {
  return std::is_same_v<T, double> ? 1e-12 : 2e-6 * static_cast<double>(k + 1);
}

template <class T>
void reference_case(GemmKernel kernel, std::int64_t batch, std::int64_t m, std::int64_t n, std::int64_t k, bool ta,
                    bool tb, double alpha, double beta) {
  CAPTURE(backend::cpu::to_string(kernel));
  CAPTURE(batch);
  CAPTURE(m);
  CAPTURE(n);
  CAPTURE(k);
  CAPTURE(ta);
  CAPTURE(tb);
  CAPTURE(beta);
  KernelScope ks(kernel);
  const auto a = random_vector<double>(batch * m * k, 1), b = random_vector<double>(batch * k * n, 2);
  const auto c0 = random_vector<double>(batch * m * n, 3);
  auto as = cast<T>(stored(a, batch, m, k, ta)), bs = cast<T>(stored(b, batch, k, n, tb));
  auto c = cast<T>(c0);
  ops::matmul(host_view<const T>(as.data(), mat_dims(batch, m, k, ta)),
              host_view<const T>(bs.data(), mat_dims(batch, k, n, tb)), host_view(c.data(), {batch, m, n}),
              {ta, tb, alpha, beta});
  check_close(c, kdloss_ref::ops::matmul(a, true, b, true, c0, batch, m, n, k, alpha, beta), tol<T>(k), tol<T>(k));
}

}  // namespace

TEST_CASE("matmul: every host kernel matches the double reference (transposes, alpha, beta, edges, deep k)") {
  struct S {
    std::int64_t batch, m, n, k;
  };
  // Includes narrow products (n < 8), which run transposed.
  const S shapes[] = {{1, 1, 1, 1}, {2, 37, 29, 300}, {3, 13, 70, 5}, {1, 97, 33, 257}, {2, 50, 1, 300}, {1, 40, 5, 20}};
  for (GemmKernel kernel : kKernels)
    for (const S& s : shapes)
      for (int t = 0; t < 4; ++t) {
        reference_case<double>(kernel, s.batch, s.m, s.n, s.k, t & 1, t & 2, 1.5, 0.5);
        reference_case<float>(kernel, s.batch, s.m, s.n, s.k, t & 1, t & 2, 1.0, 0.0);
      }
}

TEST_CASE("matmul: strided, transposed and broadcast operands give the bits of their contiguous copies") {
  const std::int64_t batch = 3, m = 41, n = 35, k = 67;
  const auto a = random_vector<double>(batch * m * k, 4), b1 = random_vector<double>(k * n, 5);
  std::vector<double> b(batch * k * n);  // b1 repeated over the batch
  for (std::int64_t i = 0; i < batch; ++i) std::copy(b1.begin(), b1.end(), b.begin() + i * k * n);
  for (GemmKernel kernel : kKernels) {
    CAPTURE(backend::cpu::to_string(kernel));
    KernelScope ks(kernel);
    std::vector<double> want(batch * m * n);
    ops::matmul(host_view<const double>(a.data(), {batch, m, k}), host_view<const double>(b.data(), {batch, k, n}),
                host_view(want.data(), {batch, m, n}));
    // a: channel-last-like memory order with padding; b: one matrix broadcast by a stride-0 batch,
    // read transposed; c: column-major with padding.
    const auto a_strided = kdloss_test::relayout(a, {batch, m, k}, {1, 2, 0}, 3);
    const auto bt = stored(b1, 1, k, n, true);
    const View<const double> b_bcast(bt.data(), Dims{batch, n, k}, Dims{0, k, 1}, Device::host());
    std::vector<double> c_storage(batch * (m + 2) * n, -1.0);
    const View<double> c_colmajor(c_storage.data(), Dims{batch, m, n}, Dims{1, batch, batch * (m + 2)}, Device::host());
    ops::matmul(View<const double>(a_strided.view), b_bcast, c_colmajor, {false, true});
    CHECK(kdloss_test::to_vector(c_colmajor) == want);
    // A rank-2 b and a batch-extent-1 b broadcast the same way.
    std::vector<double> c2(batch * m * n);
    ops::matmul(host_view<const double>(a.data(), {batch, m, k}), host_view<const double>(b1.data(), {k, n}),
                host_view(c2.data(), {batch, m, n}));
    CHECK(c2 == want);
    ops::matmul(host_view<const double>(a.data(), {batch, m, k}), host_view<const double>(b1.data(), {1, k, n}),
                host_view(c2.data(), {batch, m, n}));
    CHECK(c2 == want);
  }
}

TEST_CASE("matmul: sum_batches adds alpha * A[b] B[b] over the batch into one C") {
  const std::int64_t batch = 4, m = 19, n = 23, k = 45;
  const auto a = random_vector<double>(batch * m * k, 6), b = random_vector<double>(batch * k * n, 7);
  const auto c0 = random_vector<double>(m * n, 8);
  for (GemmKernel kernel : kKernels) {
    KernelScope ks(kernel);
    auto c = c0;
    ops::MatmulOptions o;
    o.alpha = 0.5;
    o.beta = 1.0;
    o.sum_batches = true;
    ops::matmul(host_view<const double>(a.data(), {batch, m, k}), host_view<const double>(b.data(), {batch, k, n}),
                host_view(c.data(), {m, n}), o);
    check_close(c, kdloss_ref::ops::matmul(a, true, b, true, c0, batch, m, n, k, 0.5, 1.0, true), 1e-12, 1e-12);
  }
}

namespace {
struct RowColEpilogue {  // v * 2 + i - j, and the batch index
  template <class V>
  V operator()(V v, std::int64_t b, std::int64_t i, std::int64_t j) const {
    return v * V(2) + V(i) - V(j) + V(100 * b);
  }
};
}  // namespace

TEST_CASE("matmul: the epilogue sees every final element with its (batch, i, j), for any C layout") {
  const std::int64_t batch = 2, m = 30, n = 27, k = 300;
  const auto a = random_vector<double>(batch * m * k, 9), b = random_vector<double>(batch * k * n, 10);
  const auto c0 = random_vector<double>(batch * m * n, 11);
  auto want = kdloss_ref::ops::matmul(a, true, b, true, c0, batch, m, n, k, 1.0, 0.25);
  for (std::int64_t o = 0; o < batch; ++o)
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double& v = want[(o * m + i) * n + j];
        v = v * 2 + double(i) - double(j) + 100.0 * double(o);
      }
  for (GemmKernel kernel : kKernels)
    for (bool colmajor : {false, true}) {
      CAPTURE(backend::cpu::to_string(kernel));
      CAPTURE(colmajor);
      KernelScope ks(kernel);
      auto c = colmajor ? stored(c0, batch, m, n, true) : c0;
      const View<double> cv = colmajor ? View<double>(c.data(), Dims{batch, m, n}, Dims{m * n, 1, m}, Device::host())
                                       : host_view(c.data(), {batch, m, n});
      ops::MatmulArgs<double, RowColEpilogue> args{host_view<const double>(a.data(), {batch, m, k}),
                                                   host_view<const double>(b.data(), {batch, k, n}), cv};
      args.options.beta = 0.25;
      ops::matmul(args);
      check_close(kdloss_test::to_vector(cv), want, 1e-12, 1e-12);
    }
}

TEST_CASE("matmul: the bits do not depend on the thread count (1, 2, 3 threads)") {
#if KDLOSS_OPENMP
  // A tall C (threads split rows and share B's packed block) and a wide one (threads take column blocks).
  struct S {
    std::int64_t m, n, k;
  };
  for (const S& s : {S{300, 90, 270}, S{40, 4200, 100}})
  for (GemmKernel kernel : kKernels)
    for (bool sum : {false, true}) {
      const std::int64_t batch = 2, m = s.m, n = s.n, k = s.k;
      const auto a = cast<float>(random_vector<double>(batch * m * k, 12));
      const auto b = cast<float>(random_vector<double>(batch * k * n, 13));
      CAPTURE(backend::cpu::to_string(kernel));
      CAPTURE(sum);
      KernelScope ks(kernel);
      std::vector<std::vector<float>> results;
      for (int threads : {1, 2, 3}) {
        ThreadScope ts(threads);
        std::vector<float> c(sum ? m * n : batch * m * n, 1.0f);
        ops::MatmulOptions o;
        o.beta = 0.5;
        o.sum_batches = sum;
        ops::matmul(host_view<const float>(a.data(), {batch, m, k}), host_view<const float>(b.data(), {batch, k, n}),
                    sum ? host_view(c.data(), {m, n}) : host_view(c.data(), {batch, m, n}), o);
        results.push_back(c);
      }
      CHECK(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)) == 0);
      CHECK(std::memcmp(results[0].data(), results[2].data(), results[0].size() * sizeof(float)) == 0);
    }
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}

TEST_CASE("matmul: degenerate shapes (k = 0 gives beta * C, empty m or batch, alpha = 0 reads nothing)") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (GemmKernel kernel : kKernels) {
    KernelScope ks(kernel);
    std::vector<double> c = {1, 2, 3, 4, 5, 6};
    std::vector<double> empty;
    ops::MatmulOptions o;
    o.beta = 2.0;
    ops::matmul(host_view<const double>(empty.data(), {2, 0}), host_view<const double>(empty.data(), {0, 3}),
                host_view(c.data(), {2, 3}), o);
    CHECK(c == std::vector<double>{2, 4, 6, 8, 10, 12});
    c.assign(6, nan);  // beta = 0 with k = 0 writes zeros without reading the NaN
    ops::matmul(host_view<const double>(empty.data(), {2, 0}), host_view<const double>(empty.data(), {0, 3}),
                host_view(c.data(), {2, 3}));
    CHECK(c == std::vector<double>(6, 0.0));
    // m = 0 and batch = 0 write nothing.
    ops::matmul(host_view<const double>(empty.data(), {0, 4}), host_view<const double>(c.data(), {4, 1}),
                host_view(empty.data(), {0, 1}));
    ops::matmul(host_view<const double>(empty.data(), {0, 2, 3}), host_view<const double>(c.data(), {3, 2}),
                host_view(empty.data(), {0, 2, 2}));
    // alpha = 0: A and B are not read (BLAS), C = beta * C.
    std::vector<double> a(2 * 3, nan), b(3 * 3, 1.0);
    c = {1, 2, 3, 4, 5, 6};
    o.alpha = 0.0;
    o.beta = 1.0;
    ops::matmul(host_view<const double>(a.data(), {2, 3}), host_view<const double>(b.data(), {3, 3}),
                host_view(c.data(), {2, 3}), o);
    CHECK(c == std::vector<double>{1, 2, 3, 4, 5, 6});
  }
}

TEST_CASE("matmul: NaN in A reaches the rows that use it; beta = 0 never reads C") {
  const std::int64_t m = 20, n = 40, k = 30;
  for (GemmKernel kernel : kKernels)
    for (bool ta : {false, true}) {
      CAPTURE(backend::cpu::to_string(kernel));
      KernelScope ks(kernel);
      auto a = random_vector<double>(m * k, 14);
      a[7 * k + 3] = std::numeric_limits<double>::quiet_NaN();  // row 7
      auto b = random_vector<double>(k * n, 15);
      b[2] = 0.0;  // 0 * NaN is NaN too (no skipping of zero entries)
      const auto as = stored(a, 1, m, k, ta);
      std::vector<double> c(m * n, std::numeric_limits<double>::quiet_NaN());
      ops::matmul(host_view<const double>(as.data(), ta ? Dims{k, m} : Dims{m, k}), host_view<const double>(b.data(), {k, n}),
                  host_view(c.data(), {m, n}), {ta, false});
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) CHECK(std::isnan(c[i * n + j]) == (i == 7));
    }
}

TEST_CASE("matmul: bad input throws naming the argument and shapes, and leaves c untouched") {
  std::vector<float> a(6 * 4, 1.f), b(4 * 5, 1.f), c(6 * 5, 7.f);
  const auto untouched = [&] { CHECK(c == std::vector<float>(6 * 5, 7.f)); };
  const auto av = host_view<const float>(a.data(), {6, 4});
  const auto bv = host_view<const float>(b.data(), {4, 5});
  const auto cv = host_view(c.data(), {6, 5});
  kdloss_test::expect_error([&] { ops::matmul(av, host_view<const float>(b.data(), {5, 4}), cv); },
                            "arguments 'a' [6, 4] (m x k = 6 x 4) and 'b' [5, 4] (k x n = 5 x 4) disagree on k", untouched);
  kdloss_test::expect_error([&] { ops::matmul(av, bv, host_view(c.data(), {5, 6})); },
                            "argument 'c' has shape [5, 6] but op(a) [6, 4] times op(b) [4, 5] is 6 x 5", untouched);
  kdloss_test::expect_error(
      [&] { ops::matmul(host_view<const float>(a.data(), {2, 3, 4}), bv, host_view(c.data(), {3, 3, 5})); },
      "argument 'a' [2, 3, 4] has batch extent 2 but 'c' [3, 3, 5] has 3", untouched);
  kdloss_test::expect_error(
      [&] {
        ops::matmul(host_view<const float>(a.data(), {2, 3, 4}), bv, host_view(c.data(), {3, 6, 1}),
                    {false, false, 1.0, 0.0});
      },
      "argument 'c' has shape", untouched);
  kdloss_test::expect_error(
      [&] { ops::matmul(host_view<const float>(c.data(), {6, 4}), bv, cv); },  // c overlaps a
      "output argument 'c' overlaps the memory of argument 'a'", untouched);
  kdloss_test::expect_error(
      [&] { ops::matmul(av, bv, View<float>(c.data(), Dims{6, 5}, Dims{1, 1}, Device::host())); },
      "output argument 'c' with shape [6, 5] and strides [1, 1] addresses some element twice", untouched);
  kdloss_test::expect_error([&] { ops::matmul(av, cuda_view<const float>(b.data(), {4, 5}), cv); },
                            "argument 'b' is on cuda:0 but the call runs on host", untouched);
  kdloss_test::expect_error(
      [&] {
        ops::matmul(cuda_view<const float>(a.data(), {6, 4}), cuda_view<const float>(b.data(), {4, 5}),
                    cuda_view(c.data(), {6, 5}));
      },
      "Exec::blas is null", untouched);
  kdloss_test::expect_error([&] { ops::matmul(host_view<const float>(a.data(), {24}), bv, cv); },
                            "argument 'a' must have rank 2 to 3 but has shape [24]", untouched);
  kdloss_test::expect_error(
      [&] {
        ops::MatmulOptions o;
        o.sum_batches = true;
        ops::matmul(host_view<const float>(a.data(), {2, 3, 4}), host_view<const float>(b.data(), {3, 4, 1}),
                    host_view(c.data(), {3, 1}), o);
      },
      "have different batch extents (2 and 3)", untouched);
}

KDLOSS_GPU_TEST("matmul: GPU (cuBLAS) agrees with the CPU for float, double, half and bfloat16, any layout") {
#if KDLOSS_TEST_CUDA
  const std::int64_t batch = 3, m = 37, n = 29, k = 70;
  const auto a = random_vector<double>(batch * m * k, 16), b = random_vector<double>(batch * k * n, 17);
  const auto c0 = random_vector<double>(batch * m * n, 18);
  for (int layout = 0; layout < kdloss_test::kMatmulGpuLayouts; ++layout)
    for (int dtype = 0; dtype < 4; ++dtype) {
      CAPTURE(layout);
      CAPTURE(dtype);
      const auto got = kdloss_test::matmul_on_gpu(dtype, layout, a, b, c0, batch, m, n, k, 1.25, 0.5);
      const bool sum = layout == kdloss_test::kMatmulGpuSumLayout;
      const bool bcast = layout == kdloss_test::kMatmulGpuBroadcastLayout;
      const auto want = kdloss_ref::ops::matmul(a, true, b, !bcast, sum ? std::vector<double>(c0.begin(), c0.begin() + m * n) : c0,
                                           batch, m, n, k, 1.25, 0.5, sum);
      // half / bfloat16 inputs round to 11 / 8 bits; float may use TF32 where the handle allows it.
      const double t = dtype == 1 ? 1e-12 : (dtype == 0 ? 2e-3 : (dtype == 2 ? 2e-2 : 1e-1));
      check_close(got, want, t, t * std::sqrt(double(k)));
    }
#endif
}

TEST_CASE("matmul: the usage examples of ops/matmul.hpp compile and run") {
  std::vector<float> xb(2 * 100 * 167 * 256, 0.5f), wb(256 * 64, 0.25f), yb(2 * 100 * 167 * 64);
  const float* x = xb.data();
  const float* w = wb.data();
  float* y = yb.data();
  // --- from ops::matmul's comment ---
  kdloss::ops::MatmulArgs<float> p{kdloss::host_view(x, {2 * 100 * 167, 256}),
                                   kdloss::host_view(w, {256, 64}), kdloss::host_view(y, {2 * 100 * 167, 64})};
  kdloss::ops::matmul(p);
  // ---
  CHECK(yb.front() == doctest::Approx(256 * 0.125));
  CHECK(yb.back() == doctest::Approx(256 * 0.125));
  std::vector<float> qb(2 * 64 * 32, 1.f), kb(2 * 64 * 32, 2.f), sb(2 * 64 * 64);
  float *q = qb.data(), *k = kb.data(), *s = sb.data();
  // --- from the thin wrapper's comment ---
  kdloss::ops::matmul(kdloss::host_view(q, {2, 64, 32}), kdloss::host_view(k, {2, 64, 32}),
                      kdloss::host_view(s, {2, 64, 64}), {/*trans_a=*/false, /*trans_b=*/true});
  // ---
  CHECK(sb == std::vector<float>(sb.size(), 64.f));
}

namespace {

/// gemm_packed on slices of operands packed once (gemm_pack_a / gemm_pack_b) against gemm() on the same
/// strided operands: bitwise equal for the same depth blocks. A is m x k with row stride k + 3 (or stored
/// transposed), B is k x n stored transposed (or with column stride 2), C has padded rows.
template <class T>
void packed_case(GemmKernel kernel, std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t kb, std::int64_t r0,
                 std::int64_t c0, std::int64_t p0, bool ta, bool tb) {
  using backend::cpu::GemmPacked;
  CAPTURE(backend::cpu::to_string(kernel));
  CAPTURE(m);
  CAPTURE(n);
  CAPTURE(k);
  CAPTURE(kb);
  CAPTURE(r0);
  CAPTURE(c0);
  CAPTURE(p0);
  CAPTURE(ta);
  CAPTURE(tb);
  KernelScope ks(kernel);
  const std::int64_t lda = ta ? m + 1 : k + 3, ldb = tb ? k + 2 : 2 * n, ldc = n + 5;
  const auto av = cast<T>(random_vector<double>(lda * (ta ? k : m), 11));
  const auto bv = cast<T>(random_vector<double>(ldb * (tb ? n : k), 12));
  const expr::MatOperand<const T> a = ta ? expr::MatOperand<const T>{av.data(), 0, 1, lda}
                                         : expr::MatOperand<const T>{av.data(), 0, lda, 1};
  const expr::MatOperand<const T> b = tb ? expr::MatOperand<const T>{bv.data(), 0, 1, ldb}
                                         : expr::MatOperand<const T>{bv.data(), 0, ldb, 2};
  std::vector<T> apack(backend::cpu::gemm_pack_bytes<T>(m, k) / sizeof(T) + 1);
  std::vector<T> bpack(backend::cpu::gemm_pack_bytes<T>(n, k) / sizeof(T) + 1);
  // Packed in two parts (as threads do), the rows or columns split at a panel edge.
  const GemmPacked<T> pa = backend::cpu::gemm_packed_a<T>(m, k, kb, apack.data());
  const std::int64_t split = std::min<std::int64_t>(m, backend::cpu::gemm_pack_panel<T>());
  backend::cpu::gemm_pack_part(pa, a, 0, 0, split, 0, k);
  backend::cpu::gemm_pack_part(pa, a, 0, split, m, 0, k);
  const GemmPacked<T> pb = backend::cpu::gemm_pack_b<T>(b, 0, k, n, kb, bpack.data());
  const std::int64_t sm = m - r0, sn = n - c0, sk = k - p0;
  const auto c_init = cast<T>(random_vector<double>(m * ldc, 13));
  for (double beta : {0.0, 0.5}) {
    CAPTURE(beta);
    std::vector<T> got = c_init, want = c_init;
    backend::cpu::gemm_packed<T>(sm, sn, sk, pa.slice(r0, p0), pb.slice(c0, p0), {got.data(), 0, ldc, 1}, 1.5, beta);
    expr::Gemm<T, T, T> g;
    g.batch = 1;
    g.m = sm;
    g.n = sn;
    g.k = sk;
    g.a = {a.at(0, r0, p0), 0, a.row, a.col};
    g.b = {b.at(0, p0, c0), 0, b.row, b.col};
    g.c = {want.data(), 0, ldc, 1};
    g.alpha = 1.5;
    g.beta = beta;
    std::vector<unsigned char> scratch(backend::cpu::gemm_scratch_bytes<T>(sm, sn, sk, 1) + 64);
    backend::cpu::gemm(g, scratch.data(), 1);
    if (kernel == GemmKernel::eigen)  // Eigen reads the copy instead of the strided operands
      check_close(got, want, tol<T>(sk), tol<T>(sk));
    else
      CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(T)) == 0);
  }
}

}  // namespace

TEST_CASE("matmul: gemm_packed on operands packed once gives gemm's bits (odd sizes, strides, slices, kernels)") {
  const std::int64_t panel = backend::cpu::gemm_pack_panel<float>();
  for (GemmKernel kernel : kKernels)
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      // Whole operands, depth 256 blocks (gemm's): one and two depth blocks, odd edges.
      packed_case<float>(kernel, 37, 45, 300, 256, 0, 0, 0, ta, tb);
      packed_case<double>(kernel, 37, 45, 300, 256, 0, 0, 0, ta, tb);
      packed_case<float>(kernel, 13, 70, 5, 256, 0, 0, 0, ta, tb);
      packed_case<double>(kernel, 1, 1, 1, 256, 0, 0, 0, ta, tb);
      // Slices from a panel edge and a depth block: the last rows, columns and depth block.
      packed_case<float>(kernel, panel + 29, panel + 17, 300, 256, panel, panel, 256, ta, tb);
      packed_case<double>(kernel, 2 * panel + 5, panel + 3, 261, 256, panel, 0, 256, ta, tb);
      // Depth blocks of 64: a slice of one block is gemm of that depth range.
      packed_case<float>(kernel, 50, 40, 64 * 3 + 7, 64, 0, 0, 192, ta, tb);
      packed_case<double>(kernel, 50, 40, 64 * 3 + 7, 64, panel > 50 ? 0 : panel, 0, 192, ta, tb);
    }
}
