// backend::cpu::ordered_sum: the host's deterministic reduction (issue 12 §4).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kdloss/backend/cpu/parallel.hpp"

#include "support/threads.hpp"

namespace {
/// Terms whose double sum depends on the order they are added in.
double term(std::int64_t t) { return std::ldexp(1.0 + std::sin(static_cast<double>(t)), static_cast<int>(t % 61) - 30); }

/// The documented order: at most kReduceBlocks consecutive blocks (the first tasks % blocks one task
/// longer), each summed in task order, the block sums added in block order.
double blocked(std::int64_t tasks) {
  using kdloss::backend::cpu::kReduceBlocks;
  const std::int64_t blocks = std::min(tasks, kReduceBlocks), per = tasks / blocks, extra = tasks % blocks;
  double total = 0;
  std::int64_t t = 0;
  for (std::int64_t b = 0; b < blocks; ++b) {
    double s = 0;
    for (std::int64_t k = 0; k < per + (b < extra ? 1 : 0); ++k) s += term(t++);
    total += s;
  }
  REQUIRE(t == tasks);
  return total;
}
}  // namespace

TEST_CASE("ordered_sum: the documented block order, the same bits at 1, 2, 3 and 8 threads, parallel or not") {
  using kdloss::backend::cpu::ordered_sum;
  CHECK(ordered_sum(0, true, term) == 0.0);
  kdloss_test::ThreadScope scope;
  for (std::int64_t tasks : {1, 7, 255, 256, 257, 1000, 4099}) {
    CAPTURE(tasks);
    const double want = blocked(tasks);
    for (int threads : {1, 2, 3, 8}) {
      CAPTURE(threads);
      scope.set(threads);
      CHECK(ordered_sum(tasks, true, term) == want);
      CHECK(ordered_sum(tasks, false, term) == want);
    }
  }
}
