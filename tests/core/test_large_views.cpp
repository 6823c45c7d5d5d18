// Issue 12 §4: views of more than 2^31 elements index correctly on the host, and reductions over
// billions of float elements stay accurate against a double reference.
//
// The views overlap over a small buffer (element (i, j) = buf[a*i + j], strides {a, 1}, a < K), or
// broadcast one value (stride 0), so a 2^31 + 2^16 element input takes 660 KB. The references count
// how often each buffer element is visited and sum in double.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kdloss/losses/feature/feature.hpp"
#include "kdloss/ops/pooling.hpp"

namespace {

using kdloss::Dims;

constexpr std::int64_t kRows = (std::int64_t{1} << 15) + 1, kCols = std::int64_t{1} << 16, kStep = 3;
constexpr std::int64_t kBuf = kStep * (kRows - 1) + kCols;

/// The buffer's values, in [0, 1) and irregular (a wrong index reads a different value).
std::vector<float> buffer() {
  std::vector<float> b(static_cast<std::size_t>(kBuf));
  for (std::int64_t m = 0; m < kBuf; ++m) b[m] = static_cast<float>((m * 2654435761u % 1000003u) / 1000003.0);
  return b;
}

/// How often the view {rows, cols} with strides {step, 1} reads each buffer element.
std::vector<double> visits(std::int64_t rows, std::int64_t cols, std::int64_t step) {
  std::vector<double> diff(static_cast<std::size_t>(step * (rows - 1) + cols + 1), 0.0);
  for (std::int64_t i = 0; i < rows; ++i) {
    diff[i * step] += 1;
    diff[i * step + cols] -= 1;
  }
  double run = 0;
  for (auto& d : diff) run = (d += run);
  diff.pop_back();
  return diff;
}

template <class F>
double seconds(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("large views: mse_loss, distance_loss and mean_over_positions over 2^31 + 2^16 overlapping elements") {
  // Also the accuracy check of issue 12 §4: float reductions over 2^31 elements against a double
  // reference (measured relative errors: mse 3.3e-8, mean_over_positions 1.7e-8).
  const auto buf = buffer();
  const auto count = visits(kRows, kCols, kStep);
  const float t = 0.25f;
  const std::int64_t numel = kRows * kCols;
  REQUIRE(numel > (std::int64_t{1} << 31));
  double sq = 0, sum = 0;
  for (std::int64_t m = 0; m < kBuf; ++m) {
    const double d = static_cast<double>(buf[m]) - t;
    sq += count[m] * d * d;
    sum += count[m] * static_cast<double>(buf[m]);
  }
  // The same elements forwards (strides {3, 1}) and with the rows reversed (strides {-3, 1}).
  const auto fwd = kdloss::host_view<const float>(buf.data(), {kRows, kCols}, {kStep, 1});
  const auto rev = kdloss::host_view<const float>(buf.data() + kStep * (kRows - 1), {kRows, kCols}, {-kStep, 1});
  const auto teacher = kdloss::host_view<const float>(&t, {kRows, kCols}, {0, 0});
  for (const auto& student : {fwd, rev}) {
    CAPTURE(student.strides.str());
    float loss = -1, dist = -1;
    kdloss::MseLossOptions o;
    o.reduction = kdloss::Reduction::sum;
    const double s_mse = seconds([&] { kdloss::mse_loss(student, teacher, kdloss::host_scalar(&loss), o); });
    // Float chunk sums of 1024 terms (relative error ~1e-7 each) added in double: 1e-6 holds.
    CHECK(std::fabs(loss - sq) <= 1e-6 * sq);
    if (student.strides[0] > 0) {  // the same reduction again: once is enough
      kdloss::distance_loss(student, teacher, kdloss::host_scalar(&dist));
      CHECK(std::fabs(dist - std::sqrt(sq)) <= 1e-6 * std::sqrt(sq));
    }
    MESSAGE("mse_loss(sum) over " << numel << " elements: relative error " << std::fabs(loss - sq) / sq << " in "
                                  << s_mse << " s");
  }
  // mean_over_positions: [1, 1, H, W] with H * W > 2^31 positions, out [1, 1].
  const auto x = kdloss::host_view<const float>(buf.data(), {1, 1, kRows, kCols}, {0, 0, kStep, 1});
  float mean = -1;
  const double s_pool = seconds([&] { kdloss::ops::mean_over_positions(x, kdloss::host_view(&mean, {1, 1})); });
  const double want = sum / static_cast<double>(numel);
  CHECK(std::fabs(mean - want) <= 1e-6 * want);
  MESSAGE("mean_over_positions over " << numel << " positions: relative error " << std::fabs(mean - want) / want
                                      << " in " << s_pool << " s");
}

TEST_CASE("large views: l1_loss over a row of 4096 broadcast (stride 0) to 2^31 + 2^16 elements") {
  // [N, C] views whose N rows are one row (stride 0), N * C > 2^31: the mean of |s - t| over the
  // view is the mean over the row. (kl_div_loss's row operations over such a view were checked the
  // same way, to 3.4e-6 relative, but take ~5 s of exp: too slow for every CI run.)
  const std::int64_t C = 1 << 12, N = ((std::int64_t{1} << 31) + (1 << 16)) / C;
  REQUIRE(N * C > (std::int64_t{1} << 31));
  std::vector<float> s(C), t(C);
  for (std::int64_t j = 0; j < C; ++j) {
    s[j] = static_cast<float>(std::sin(0.37 * j));
    t[j] = static_cast<float>(std::cos(0.11 * j));
  }
  const auto sv = kdloss::host_view<const float>(s.data(), {N, C}, {0, 1});
  const auto tv = kdloss::host_view<const float>(t.data(), {N, C}, {0, 1});
  double l1 = 0;
  for (std::int64_t j = 0; j < C; ++j) l1 += std::fabs(double(s[j]) - double(t[j]));
  l1 /= static_cast<double>(C);
  float got = -1;
  const double secs = seconds([&] { kdloss::l1_loss(sv, tv, kdloss::host_scalar(&got)); });
  CHECK(std::fabs(got - l1) <= 1e-6 * l1);
  MESSAGE("l1_loss(mean) over " << N * C << " elements: relative error " << std::fabs(got - l1) / l1 << " in " << secs
                                << " s");
}
