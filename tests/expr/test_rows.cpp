// Rows along one axis (softmax, KL over classes): row length, per-operand steps, and the row index space.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "kdloss/expr/rows.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using expr::kMaxOperands;

namespace {

float* fake_data() {
  static float storage[1];
  return storage;
}

using Ints = std::vector<std::int64_t>;

/// Broadcast stride rows of views against `full`.
struct StrideRows {
  std::int64_t rows[kMaxOperands][kMaxRank] = {};
  int count = 0;
  template <class T>
  StrideRows& add(const View<T>& v, const Dims& full) {
    REQUIRE(expr::broadcast_strides(v, full, rows[count]));
    ++count;
    return *this;
  }
};

}  // namespace

TEST_CASE("make_rows along channels of [B,C,H,W] with a [B,1,H,W] operand") {
  const Dims full{2, 5, 3, 4};
  StrideRows ops;
  ops.add(host_view(fake_data(), full), full).add(host_view(fake_data(), {2, 1, 3, 4}), full);
  const auto rows = expr::make_rows(full, 1, ops.rows, ops.count);
  CHECK(rows.length == 5);
  CHECK(rows.step[0] == 12);
  CHECK(rows.step[1] == 0);  // broadcast along the row
  CHECK(rows.count() == 2 * 3 * 4);
  // The row index space keeps B apart and merges H with W.
  CHECK(rows.outer.rank == 2);
  CHECK(Ints(rows.outer.shape, rows.outer.shape + 2) == Ints{2, 12});
  CHECK(Ints(rows.outer.strides[0], rows.outer.strides[0] + 2) == Ints{60, 1});
  CHECK(Ints(rows.outer.strides[1], rows.outer.strides[1] + 2) == Ints{12, 1});
}

TEST_CASE("make_rows on the innermost axis, rank 1, and empty rows") {
  SUBCASE("innermost axis of a contiguous tensor: the outer dims merge") {
    const Dims full{2, 3, 7};
    StrideRows ops;
    ops.add(host_view(fake_data(), full), full);
    const auto rows = expr::make_rows(full, 2, ops.rows, ops.count);
    CHECK(rows.length == 7);
    CHECK(rows.step[0] == 1);
    CHECK(rows.outer.rank == 1);
    CHECK(rows.outer.shape[0] == 6);
    CHECK(rows.outer.strides[0][0] == 7);
  }
  SUBCASE("rank 1: one row") {
    const Dims full{9};
    StrideRows ops;
    ops.add(host_view(fake_data(), full, Dims{-2}), full);
    const auto rows = expr::make_rows(full, 0, ops.rows, ops.count);
    CHECK(rows.count() == 1);
    CHECK(rows.outer.rank == 0);
    CHECK(rows.length == 9);
    CHECK(rows.step[0] == -2);
  }
  SUBCASE("zero-length rows: no rows to run") {
    const Dims full{4, 0};
    StrideRows ops;
    ops.add(host_view(fake_data(), full), full);
    CHECK(expr::make_rows(full, 1, ops.rows, ops.count).count() == 0);
  }
  SUBCASE("no rows at all") {
    const Dims full{0, 6};
    StrideRows ops;
    ops.add(host_view(fake_data(), full), full);
    const auto rows = expr::make_rows(full, 1, ops.rows, ops.count);
    CHECK(rows.count() == 0);
    CHECK(rows.length == 6);
  }
}

TEST_CASE("make_rows visits every element once, at the offsets a naive loop computes (random layouts)") {
  std::mt19937 gen(21);
  for (int trial = 0; trial < 200; ++trial) {
    const int rank = 1 + trial % 4;
    Dims full;
    full.rank = rank;
    for (int d = 0; d < rank; ++d) full[d] = 1 + static_cast<std::int64_t>(gen() % 4);
    const int axis = static_cast<int>(gen() % static_cast<unsigned>(rank));
    // One dense operand in a random memory order, some dims flipped.
    std::vector<int> order(static_cast<std::size_t>(rank));
    for (int d = 0; d < rank; ++d) order[d] = d;
    std::shuffle(order.begin(), order.end(), gen);
    Dims strides;
    strides.rank = rank;
    std::int64_t step = 1;
    for (int j = rank - 1; j >= 0; --j) {
      strides[order[j]] = gen() % 3 == 0 ? -step : step;
      step *= full[order[j]];
    }
    StrideRows ops;
    ops.add(host_view(fake_data(), full, strides), full);
    const auto rows = expr::make_rows(full, axis, ops.rows, ops.count);
    CAPTURE(full.str());
    CAPTURE(strides.str());
    CAPTURE(axis);

    Ints got;
    for (std::int64_t r = 0; r < rows.count(); ++r) {
      std::int64_t base[kMaxOperands];
      rows.outer.offsets(r, base);
      for (std::int64_t j = 0; j < rows.length; ++j) got.push_back(base[0] + j * rows.step[0]);
    }
    Ints want;
    for (std::int64_t i = 0; i < full.product(); ++i) {
      std::int64_t off = 0, rem = i;
      for (int d = rank - 1; d >= 0; --d) {
        off += (rem % full[d]) * strides[d];
        rem /= full[d];
      }
      want.push_back(off);
    }
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    CHECK(got == want);
  }
}
