// Shared test helpers: deterministic random tensors, layouts, tolerances, finite differences.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kdloss/core/error.hpp"
#include "kdloss/core/view.hpp"
#include "support/gpu.hpp"

namespace kdloss_test {

template <class T>
std::vector<T> random_vector(std::size_t n, std::uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(gen));
  return v;
}

/// A buffer holding a logical [d0, d1, ...] tensor in a chosen physical layout, for strided tests.
template <class T>
struct Strided {
  std::vector<T> storage;
  kdloss::View<T> view;
};

/// Same values as `contiguous` (row-major over `shape`), stored with the dimensions permuted in
/// memory by `memory_order` (outermost first) and every row padded by `pad` elements.
template <class T>
Strided<T> relayout(const std::vector<T>& contiguous, const kdloss::Dims& shape, std::vector<int> memory_order,
                    std::int64_t pad = 0) {
  Strided<T> r;
  const int rank = shape.rank;
  kdloss::Dims strides;
  strides.rank = rank;
  std::int64_t step = 1;
  for (int k = rank - 1; k >= 0; --k) {
    const int d = memory_order[k];
    strides[d] = step;
    step *= shape[d] + (k == rank - 1 ? pad : 0);
  }
  r.storage.assign(static_cast<std::size_t>(std::max<std::int64_t>(step, 1)), T(-777));
  r.view = kdloss::host_view(r.storage.data(), shape, strides);
  const auto src = kdloss::host_view(const_cast<T*>(contiguous.data()), shape);
  std::vector<std::int64_t> idx(rank, 0);
  for (std::int64_t i = 0; i < shape.product(); ++i) {
    std::int64_t a = 0, b = 0, rem = i;
    for (int d = rank - 1; d >= 0; --d) {
      idx[d] = rem % shape[d];
      rem /= shape[d];
      a += idx[d] * src.strides[d];
      b += idx[d] * strides[d];
    }
    r.storage[b] = contiguous[a];
  }
  return r;
}

/// Copies a strided view into a row-major vector.
template <class T>
std::vector<std::remove_cv_t<T>> to_vector(const kdloss::View<T>& v) {
  std::vector<std::remove_cv_t<T>> out(static_cast<std::size_t>(v.numel()));
  for (std::int64_t i = 0; i < v.numel(); ++i) {
    std::int64_t off = 0, rem = i;
    for (int d = v.rank() - 1; d >= 0; --d) {
      off += (rem % v.shape[d]) * v.strides[d];
      rem /= v.shape[d];
    }
    out[i] = v.data[off];
  }
  return out;
}

/// |a - b| <= rel * max(|a|, |b|) + abs.
inline bool close(double a, double b, double rel, double abs_tol = 0.0) {
  if (std::isnan(a) || std::isnan(b)) return false;
  return std::fabs(a - b) <= rel * std::max(std::fabs(a), std::fabs(b)) + abs_tol;
}

/// Checks two arrays elementwise, reporting the first mismatch.
template <class A, class B>
void check_close(const std::vector<A>& got, const std::vector<B>& want, double rel, double abs_tol = 0.0,
                 const char* what = "values") {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!close(static_cast<double>(got[i]), static_cast<double>(want[i]), rel, abs_tol)) {
      FAIL_CHECK(std::string(what) << "[" << i << "] = " << static_cast<double>(got[i]) << " but expected "
                      << static_cast<double>(want[i]) << " (rel " << rel << ", abs " << abs_tol << ")");
      return;
    }
  }
}

/// Central differences of a scalar function of `x` (double), for gradient checks.
inline std::vector<double> numeric_gradient(std::vector<double> x, const std::function<double(const std::vector<double>&)>& f,
                                            double h = 1e-6) {
  std::vector<double> g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = f(x);
    x[i] = keep - h;
    const double down = f(x);
    x[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

/// Runs `call`, which must throw kdloss::Error with `needle` in its message, then `untouched()`:
/// the caller's check that the call wrote nothing.
template <class Call, class Untouched>
void expect_error(Call&& call, const std::string& needle, Untouched&& untouched) {
  try {
    call();
    FAIL("expected kdloss::Error containing: " << needle);
  } catch (const kdloss::Error& e) {
    CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, e.what());
  }
  untouched();
}

/// All finite.
template <class T>
bool all_finite(const std::vector<T>& v) {
  for (const auto& x : v)
    if (!std::isfinite(static_cast<double>(x))) return false;
  return true;
}

/// Checks two arrays elementwise where non-finite values are expected: the same NaN / +inf / -inf
/// at every index, and finite entries close (|a - b| <= rel * max(|a|, |b|) + abs). For the NaN rule:
/// non-finite inputs propagate as PyTorch autograd propagates them.
template <class A, class B>
void check_same_nonfinite(const std::vector<A>& got, const std::vector<B>& want, double rel, double abs_tol = 0.0,
                          const char* what = "values") {
  REQUIRE(got.size() == want.size());
  auto kind = [](double x) { return std::isnan(x) ? 'n' : std::isinf(x) ? (x > 0 ? '+' : '-') : 'f'; };
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]), w = static_cast<double>(want[i]);
    if (kind(g) != kind(w) || (kind(w) == 'f' && !close(g, w, rel, abs_tol))) {
      FAIL_CHECK(std::string(what) << "[" << i << "] = " << g << " but expected " << w << " (rel " << rel << ", abs "
                                   << abs_tol << ")");
      return;
    }
  }
}

}  // namespace kdloss_test

/// Decorator for test cases that need a GPU: reported as skipped when none is present.
#define KDLOSS_GPU_TEST(name) \
  TEST_CASE(name * doctest::skip(!kdloss_test::gpu_available()) * doctest::test_suite("gpu"))
