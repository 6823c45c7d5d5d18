// The iteration space: broadcast strides, dimension reordering and merging, and linear offsets.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kdloss/expr/space.hpp"
#include "support/test_support.hpp"

using namespace kdloss;
using expr::kMaxOperands;
using expr::Space;

namespace {

float* fake_data() {
  static float storage[1];
  return storage;
}

/// Broadcast stride rows of views against `full`, ready for make_space.
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

Space space_of(const Dims& full, const StrideRows& rows, bool reorder) {
  return expr::make_space(full, rows.rows, rows.count, reorder);
}

std::vector<std::int64_t> shape_of(const Space& s) { return {s.shape, s.shape + s.rank}; }
std::vector<std::int64_t> strides_of(const Space& s, int op) { return {s.strides[op], s.strides[op] + s.rank}; }
using Ints = std::vector<std::int64_t>;

/// (offset of operand 0, offset of operand 1, ...) at every point of `full`, in row-major order.
std::vector<Ints> naive_offsets(const Dims& full, const StrideRows& rows) {
  std::vector<Ints> result;
  for (std::int64_t i = 0; i < full.product(); ++i) {
    Ints off(static_cast<std::size_t>(rows.count), 0);
    std::int64_t rem = i;
    for (int d = full.rank - 1; d >= 0; --d) {
      const std::int64_t idx = rem % full[d];
      rem /= full[d];
      for (int k = 0; k < rows.count; ++k) off[k] += idx * rows.rows[k][d];
    }
    result.push_back(off);
  }
  return result;
}

std::vector<Ints> space_offsets(const Space& s) {
  std::vector<Ints> result;
  for (std::int64_t i = 0; i < s.numel; ++i) {
    std::int64_t off[kMaxOperands];
    s.offsets(i, off);
    result.emplace_back(off, off + s.operands);
  }
  return result;
}

}  // namespace

TEST_CASE("broadcast_strides follows numpy's right-aligned rules") {
  float* p = fake_data();
  std::int64_t out[kMaxRank];
  const Dims full{2, 3, 4, 5};

  SUBCASE("same shape keeps strides, except 0 on extents of 1") {
    REQUIRE(expr::broadcast_strides(host_view(p, full), full, out));
    CHECK(Ints(out, out + 4) == Ints{60, 20, 5, 1});
    REQUIRE(expr::broadcast_strides(host_view(p, {1, 3, 1, 5}, {99, 5, 99, 1}), Dims{1, 3, 1, 5}, out));
    CHECK(Ints(out, out + 4) == Ints{0, 5, 0, 1});
  }
  SUBCASE("spatial mask [B,1,H,W] against [B,C,H,W]") {
    REQUIRE(expr::broadcast_strides(host_view(p, {2, 1, 4, 5}), full, out));
    CHECK(Ints(out, out + 4) == Ints{20, 0, 5, 1});
  }
  SUBCASE("channel mask [B,C,1,1] against [B,C,H,W]") {
    REQUIRE(expr::broadcast_strides(host_view(p, {2, 3, 1, 1}), full, out));
    CHECK(Ints(out, out + 4) == Ints{3, 1, 0, 0});
  }
  SUBCASE("lower rank operands are aligned on the right") {
    REQUIRE(expr::broadcast_strides(host_view(p, {4, 5}), full, out));
    CHECK(Ints(out, out + 4) == Ints{0, 0, 5, 1});
    REQUIRE(expr::broadcast_strides(host_scalar(p), full, out));
    CHECK(Ints(out, out + 4) == Ints{0, 0, 0, 0});
  }
  SUBCASE("negative and permuted strides pass through") {
    REQUIRE(expr::broadcast_strides(host_view(p, full, {-60, 1, -15, 3}), full, out));
    CHECK(Ints(out, out + 4) == Ints{-60, 1, -15, 3});
  }
  SUBCASE("incompatible shapes are refused") {
    CHECK_FALSE(expr::broadcast_strides(host_view(p, {2, 2, 4, 5}), full, out));
    CHECK_FALSE(expr::broadcast_strides(host_view(p, {1, 2, 3, 4, 5}), full, out));
    CHECK_FALSE(expr::broadcast_strides(host_view(p, {5, 4}), full, out));
  }
}

TEST_CASE("make_space merges a contiguous tensor into one row") {
  float* p = fake_data();
  const Dims full{2, 256, 25, 42};
  StrideRows rows;
  rows.add(host_view(p, full), full).add(host_view(p, full), full);
  for (bool reorder : {false, true}) {
    const Space s = space_of(full, rows, reorder);
    CHECK(s.rank == 1);
    CHECK(s.numel == full.product());
    CHECK(shape_of(s) == Ints{full.product()});
    CHECK(strides_of(s, 0) == Ints{1});
    CHECK(strides_of(s, 1) == Ints{1});
    CHECK(s.inner() == full.product());
    CHECK(s.inner_stride(1) == 1);
  }
}

TEST_CASE("make_space with a [B,1,H,W] mask against [B,C,H,W]") {
  float* p = fake_data();
  const Dims full{2, 3, 4, 5};
  StrideRows rows;
  rows.add(host_view(p, full), full).add(host_view(p, {2, 1, 4, 5}), full);
  for (bool reorder : {false, true}) {
    CAPTURE(reorder);
    const Space s = space_of(full, rows, reorder);
    // H and W merge; C cannot merge with B (the mask repeats over C) nor with HW.
    CHECK(shape_of(s) == Ints{2, 3, 20});
    CHECK(strides_of(s, 0) == Ints{60, 20, 1});
    CHECK(strides_of(s, 1) == Ints{20, 0, 1});
  }
}

TEST_CASE("make_space with a broadcast first operand moves the broadcast dimension outermost") {
  float* p = fake_data();
  const Dims full{2, 3, 4, 5};
  StrideRows rows;
  rows.add(host_view(p, {2, 1, 4, 5}), full).add(host_view(p, full), full);
  const Space s = space_of(full, rows, /*reorder=*/true);
  CHECK(shape_of(s) == Ints{3, 2, 20});
  CHECK(strides_of(s, 0) == Ints{0, 20, 1});
  CHECK(strides_of(s, 1) == Ints{20, 60, 1});
  // Without reordering the logical order stays.
  const Space kept = space_of(full, rows, /*reorder=*/false);
  CHECK(shape_of(kept) == Ints{2, 3, 20});
}

TEST_CASE("make_space on channel-last layouts") {
  float* p = fake_data();
  const Dims full{2, 3, 4, 5};                                    // logical NCHW
  const auto nhwc = host_view(p, full, Dims{60, 1, 15, 3});       // memory order N, H, W, C
  const auto nchw = host_view(p, full);

  SUBCASE("alone, reordering recovers one contiguous row") {
    StrideRows rows;
    rows.add(nhwc, full);
    const Space s = space_of(full, rows, true);
    CHECK(shape_of(s) == Ints{120});
    CHECK(strides_of(s, 0) == Ints{1});
  }
  SUBCASE("alone, without reordering only H and W merge") {
    StrideRows rows;
    rows.add(nhwc, full);
    const Space s = space_of(full, rows, false);
    CHECK(shape_of(s) == Ints{2, 3, 20});
    CHECK(strides_of(s, 0) == Ints{60, 1, 3});
  }
  SUBCASE("against a channel-first operand: reordered by the first operand, H and W merge") {
    StrideRows rows;
    rows.add(nhwc, full).add(nchw, full);
    const Space s = space_of(full, rows, true);
    CHECK(shape_of(s) == Ints{2, 20, 3});
    CHECK(strides_of(s, 0) == Ints{60, 3, 1});
    CHECK(strides_of(s, 1) == Ints{60, 1, 20});
  }
}

TEST_CASE("make_space with negative strides merges only runs that step the same way") {
  float* p = fake_data();
  const Dims full{3, 4};
  SUBCASE("fully reversed: one row walking backwards") {
    StrideRows rows;
    rows.add(host_view(p, full, {-4, -1}), full);
    const Space s = space_of(full, rows, true);
    CHECK(shape_of(s) == Ints{12});
    CHECK(strides_of(s, 0) == Ints{-1});
  }
  SUBCASE("rows reversed: nothing merges") {
    StrideRows rows;
    rows.add(host_view(p, full, {4, -1}), full);
    const Space s = space_of(full, rows, true);
    CHECK(shape_of(s) == Ints{3, 4});
    CHECK(strides_of(s, 0) == Ints{4, -1});
  }
}

TEST_CASE("make_space drops extents of 1 and handles rank 0 and empty shapes") {
  float* p = fake_data();
  SUBCASE("extents of 1 vanish") {
    const Dims full{1, 3, 1, 4};
    StrideRows rows;
    rows.add(host_view(p, full, {7, 4, 9, 1}), full);
    const Space s = space_of(full, rows, false);
    CHECK(shape_of(s) == Ints{12});
  }
  SUBCASE("all ones: rank 0 holding one element") {
    const Dims full{1, 1, 1};
    StrideRows rows;
    rows.add(host_view(p, full), full);
    const Space s = space_of(full, rows, true);
    CHECK(s.rank == 0);
    CHECK(s.numel == 1);
    CHECK(s.inner() == 1);
    std::int64_t off[kMaxOperands];
    s.offsets(0, off);
    CHECK(off[0] == 0);
  }
  SUBCASE("rank 0") {
    const Dims full{};
    StrideRows rows;
    rows.add(host_scalar(p), full).add(host_scalar(p), full);
    const Space s = space_of(full, rows, true);
    CHECK(s.rank == 0);
    CHECK(s.numel == 1);
  }
  SUBCASE("empty") {
    const Dims full{2, 0, 3};
    StrideRows rows;
    rows.add(host_view(p, full), full);
    const Space s = space_of(full, rows, true);
    CHECK(s.numel == 0);
    CHECK(s.rank == 0);
  }
}

TEST_CASE("Space::offsets visits the same operand positions as a naive loop (random layouts)") {
  std::mt19937 gen(5);
  int reordered_spaces = 0, merged_spaces = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const int rank = 1 + trial % 5;
    Dims full;
    full.rank = rank;
    for (int d = 0; d < rank; ++d) full[d] = 1 + static_cast<std::int64_t>(gen() % 4);
    StrideRows rows;
    const int operands = 1 + static_cast<int>(gen() % 3);
    for (int k = 0; k < operands; ++k) {
      // Dense storage in a random memory order, some dims broadcast (extent 1), some flipped.
      Dims shape = full;
      for (int d = 0; d < rank; ++d)
        if (k > 0 && gen() % 4 == 0) shape[d] = 1;
      std::vector<int> order(static_cast<std::size_t>(rank));
      for (int d = 0; d < rank; ++d) order[d] = d;
      std::shuffle(order.begin(), order.end(), gen);
      Dims strides;
      strides.rank = rank;
      std::int64_t step = 1;
      for (int j = rank - 1; j >= 0; --j) {
        strides[order[j]] = (gen() % 5 == 0 ? -step : step);
        step *= shape[order[j]];
      }
      rows.add(host_view(fake_data(), shape, strides), full);
    }
    const auto want = naive_offsets(full, rows);
    CAPTURE(full.str());
    CAPTURE(operands);
    {
      // Logical order kept: the same positions in the same order.
      const Space s = space_of(full, rows, false);
      CHECK(s.numel == full.product());
      CHECK(space_offsets(s) == want);
      int non_unit = 0;
      for (int d = 0; d < rank; ++d) non_unit += full[d] != 1;
      if (s.rank < non_unit) ++merged_spaces;
    }
    {
      // Reordered: the same positions, visited in another order.
      const Space s = space_of(full, rows, true);
      auto got = space_offsets(s);
      if (got != want) ++reordered_spaces;
      auto sorted_want = want;
      std::sort(got.begin(), got.end());
      std::sort(sorted_want.begin(), sorted_want.end());
      CHECK(got == sorted_want);
    }
  }
  // The trials did exercise merging and reordering.
  CHECK(merged_spaces > 20);
  CHECK(reordered_spaces > 50);
}
