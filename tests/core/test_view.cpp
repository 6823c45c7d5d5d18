// Dims, Device and View: shapes, strides, contiguity, uniqueness, extents, slicing and permuting.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kdloss/core/device.hpp"
#include "kdloss/core/view.hpp"
#include "support/test_support.hpp"

using namespace kdloss;

namespace {

/// Every element offset a view addresses, in row-major order of its indices.
template <class T>
std::vector<std::int64_t> all_offsets(const View<T>& v) {
  std::vector<std::int64_t> offsets;
  for (std::int64_t i = 0; i < v.numel(); ++i) {
    std::int64_t off = 0, rem = i;
    for (int d = v.rank() - 1; d >= 0; --d) {
      off += (rem % v.shape[d]) * v.strides[d];
      rem /= v.shape[d];
    }
    offsets.push_back(off);
  }
  return offsets;
}

template <class T>
bool offsets_are_distinct(const View<T>& v) {
  auto offsets = all_offsets(v);
  std::sort(offsets.begin(), offsets.end());
  return std::adjacent_find(offsets.begin(), offsets.end()) == offsets.end();
}

using Range = std::pair<std::int64_t, std::int64_t>;

float* fake_data() {
  static float storage[1];
  return storage;
}

}  // namespace

TEST_CASE("Dims: construction, product, equality and printing") {
  const Dims d{2, 3, 4};
  CHECK(d.size() == 3);
  CHECK(d[0] == 2);
  CHECK(d[2] == 4);
  CHECK(d.product() == 24);
  CHECK(d.str() == "[2, 3, 4]");
  CHECK(Dims{}.str() == "[]");
  CHECK(Dims{}.product() == 1);  // rank 0 holds one element
  CHECK(Dims{7}.str() == "[7]");
  CHECK(Dims{2, 0, 5}.product() == 0);
  CHECK(d == Dims{2, 3, 4});
  CHECK(d != Dims{2, 3});
  CHECK(d != Dims{2, 3, 5});

  const std::vector<int> list{5, 6};
  CHECK(Dims::from(list.begin(), list.end()) == Dims{5, 6});

  CHECK_THROWS_AS(Dims({1, 2, 3, 4, 5, 6, 7}), Error);
  const std::vector<int> too_long(kMaxRank + 1, 1);
  CHECK_THROWS_AS(Dims::from(too_long.begin(), too_long.end()), Error);
  CHECK_NOTHROW(Dims({1, 2, 3, 4, 5, 6}));
}

TEST_CASE("contiguous_strides is row-major and keeps strides sensible around zero extents") {
  CHECK(contiguous_strides(Dims{2, 3, 4}) == Dims{12, 4, 1});
  CHECK(contiguous_strides(Dims{5}) == Dims{1});
  CHECK(contiguous_strides(Dims{}) == Dims{});
  CHECK(contiguous_strides(Dims{2, 1, 3}) == Dims{3, 3, 1});
  // PyTorch gives the same strides to empty tensors: a zero extent counts as one.
  CHECK(contiguous_strides(Dims{2, 0, 3}) == Dims{3, 3, 1});
}

TEST_CASE("Device: equality ignores the index on the host and printing names it on CUDA") {
  CHECK(Device::host() == Device{DeviceKind::host, 3});
  CHECK(Device::cuda(0) == Device::cuda(0));
  CHECK(Device::cuda(0) != Device::cuda(1));
  CHECK(Device::cuda(0) != Device::host());
  CHECK(Device::host().str() == "host");
  CHECK(Device::cuda(2).str() == "cuda:2");
  CHECK(Device::cuda().is_cuda());
  CHECK(Device::host().is_host());
}

TEST_CASE("View construction: factories set device and strides; bad shapes throw") {
  float* p = fake_data();
  const auto h = host_view(p, {2, 3});
  CHECK(h.device == Device::host());
  CHECK(h.strides == Dims{3, 1});
  CHECK(h.numel() == 6);
  CHECK(h.size(1) == 3);
  CHECK(h.stride(0) == 3);

  const auto c = cuda_view(p, {4}, contiguous_strides(Dims{4}), 1);
  CHECK(c.device == Device::cuda(1));
  CHECK(cuda_view(p, {4}, Dims{2}).strides == Dims{2});
  // A braced single stride is a stride, not a device index.
  CHECK(cuda_view(p, {4}, {2}).strides == Dims{2});
  CHECK(cuda_view(p, {4}, {2}).device == Device::cuda(0));

  const auto s = host_scalar(p);
  CHECK(s.rank() == 0);
  CHECK(s.numel() == 1);
  CHECK(cuda_scalar(p, 1).device == Device::cuda(1));

  const View<const float> read_only = h;  // T converts to const T
  CHECK(read_only.data == p);
  CHECK(read_only.shape == h.shape);

  CHECK_THROWS_AS(host_view(p, {2, 3}, {1}), Error);
  CHECK_THROWS_AS(host_view(p, {2, -1}), Error);
  try {
    host_view(p, {2, -1});
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("[2, -1]") != std::string::npos);
  }
}

TEST_CASE("View::is_contiguous") {
  float* p = fake_data();
  CHECK(host_view(p, {2, 3, 4}).is_contiguous());
  CHECK(host_scalar(p).is_contiguous());
  CHECK(host_view(p, {2, 0, 4}, {0, 0, 0}).is_contiguous());      // empty
  CHECK(host_view(p, {2, 1, 4}, {4, 999, 1}).is_contiguous());    // extent-1 strides do not matter
  CHECK(host_view(p, {1, 1}, {0, 0}).is_contiguous());            // one element

  const auto base = host_view(p, {2, 3, 4});
  CHECK_FALSE(base.permute({0, 2, 1}).is_contiguous());
  CHECK(base.slice(0, 1, 2).is_contiguous());       // a range of the outermost dim stays contiguous
  CHECK_FALSE(base.slice(2, 0, 3).is_contiguous());  // a shorter row leaves gaps
  CHECK_FALSE(base.slice(1, 0, 3, 2).is_contiguous());
  CHECK_FALSE(host_view(p, {2, 3}, {0, 1}).is_contiguous());  // broadcast
  CHECK_FALSE(host_view(p, {3}, {-1}).is_contiguous());      // reversed
  CHECK_FALSE(host_view(p, {2, 3}, {4, 1}).is_contiguous());  // padded rows
}

TEST_CASE("View::is_unique on the layouts gradients meet") {
  float* p = fake_data();
  CHECK(host_view(p, {2, 3, 4}).is_unique());
  CHECK(host_scalar(p).is_unique());
  CHECK(host_view(p, {2, 0, 3}, {0, 0, 0}).is_unique());  // empty: nothing is addressed twice

  SUBCASE("zero strides") {
    CHECK_FALSE(host_view(p, {2, 3}, {0, 1}).is_unique());
    CHECK_FALSE(host_view(p, {4}, {0}).is_unique());
    CHECK(host_view(p, {1, 3}, {0, 1}).is_unique());  // a zero stride on an extent of 1 is harmless
  }
  SUBCASE("overlapping strides") {
    CHECK_FALSE(host_view(p, {2, 3}, {2, 1}).is_unique());  // (0,2) and (1,0) share offset 2
    CHECK_FALSE(host_view(p, {3, 4}, {1, 1}).is_unique());  // sliding window
    CHECK_FALSE(host_view(p, {2, 2}, {1, 1}).is_unique());
    CHECK(host_view(p, {2, 3}, {3, 1}).is_unique());
  }
  SUBCASE("negative strides") {
    CHECK(host_view(p, {3, 4}, {-4, -1}).is_unique());
    CHECK(host_view(p, {3, 4}, {4, -1}).is_unique());
    CHECK_FALSE(host_view(p, {3, 4}, {-2, 1}).is_unique());
  }
  SUBCASE("permuted, sliced and padded") {
    const auto base = host_view(p, {2, 3, 4, 5});
    CHECK(base.permute({0, 2, 3, 1}).is_unique());
    CHECK(base.permute({3, 2, 1, 0}).is_unique());
    CHECK(base.slice(3, 1, 5, 2).is_unique());
    CHECK(base.slice(1, 0, 3, 2).slice(2, 1, 3).is_unique());
    CHECK(host_view(p, {2, 3}, {8, 2}).is_unique());
  }
}

TEST_CASE("View::is_unique never accepts a view that addresses an element twice (random layouts)") {
  std::mt19937 gen(7);
  std::uniform_int_distribution<int> rank_dist(1, 4), extent_dist(1, 4), stride_dist(-13, 13);
  int accepted = 0, rejected = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    Dims shape, strides;
    shape.rank = strides.rank = rank_dist(gen);
    for (int d = 0; d < shape.rank; ++d) {
      shape[d] = extent_dist(gen);
      strides[d] = stride_dist(gen);
    }
    const auto v = host_view(fake_data(), shape, strides);
    const bool distinct = offsets_are_distinct(v);
    if (v.is_unique()) {
      ++accepted;
      CAPTURE(shape.str());
      CAPTURE(strides.str());
      CHECK(distinct);
    } else {
      ++rejected;
    }
  }
  // Both answers occur, so the property above was exercised in both directions.
  CHECK(accepted > 100);
  CHECK(rejected > 100);
}

TEST_CASE("View::is_unique accepts every permutation, flip and padding of a dense layout") {
  std::mt19937 gen(11);
  for (int trial = 0; trial < 300; ++trial) {
    const Dims shape{2 + trial % 3, 3, 1 + trial % 4, 2};
    std::vector<int> order{0, 1, 2, 3};
    std::shuffle(order.begin(), order.end(), gen);
    std::vector<float> dense(static_cast<std::size_t>(shape.product()));
    auto r = kdloss_test::relayout(dense, shape, order, /*pad=*/trial % 2);
    View<float> v = r.view;
    for (int d = 0; d < 4; ++d)
      if (gen() % 2) v.strides[d] = -v.strides[d];
    CAPTURE(v.strides.str());
    CHECK(v.is_unique());
  }
}

TEST_CASE("View::extent_range spans exactly the addressed offsets") {
  float* p = fake_data();
  CHECK(host_view(p, {2, 3, 4}).extent_range() == Range{0, 24});
  CHECK(host_view(p, {3, 4}, {-4, -1}).extent_range() == Range{-11, 1});
  CHECK(host_view(p, {3, 4}, {-4, 1}).extent_range() == Range{-8, 4});
  CHECK(host_view(p, {5}, {0}).extent_range() == Range{0, 1});
  CHECK(host_view(p, {2, 0}, {1, 1}).extent_range() == Range{0, 0});
  CHECK(host_scalar(p).extent_range() == Range{0, 1});

  std::mt19937 gen(3);
  std::uniform_int_distribution<int> extent_dist(1, 4), stride_dist(-9, 9);
  for (int trial = 0; trial < 500; ++trial) {
    const Dims shape{extent_dist(gen), extent_dist(gen), extent_dist(gen)};
    const Dims strides{stride_dist(gen), stride_dist(gen), stride_dist(gen)};
    const auto v = host_view(p, shape, strides);
    const auto offsets = all_offsets(v);
    const auto [lo, hi] = v.extent_range();
    CAPTURE(shape.str());
    CAPTURE(strides.str());
    CHECK(lo == *std::min_element(offsets.begin(), offsets.end()));
    CHECK(hi == *std::max_element(offsets.begin(), offsets.end()) + 1);
  }
}

TEST_CASE("View element access, permute and slice address the expected elements") {
  std::vector<int> buf(24);
  for (int i = 0; i < 24; ++i) buf[i] = i;
  const auto v = host_view(buf.data(), {2, 3, 4});
  CHECK(v(1, 2, 3) == 23);
  CHECK(v(0, 1, 2) == 6);

  const auto p = v.permute({2, 0, 1});  // [4, 2, 3]
  CHECK(p.shape == Dims{4, 2, 3});
  CHECK(p.strides == Dims{1, 12, 4});
  CHECK(p(3, 1, 2) == v(1, 2, 3));

  const auto s = v.slice(2, 1, 4, 2);  // columns 1 and 3
  CHECK(s.shape == Dims{2, 3, 2});
  CHECK(s.strides == Dims{12, 4, 2});
  CHECK(s(0, 0, 0) == 1);
  CHECK(s(1, 2, 1) == 23);
  CHECK(v.slice(1, 1, 3).shape == Dims{2, 2, 4});
  CHECK(v.slice(1, 1, 3)(0, 0, 0) == 4);
  CHECK(v.slice(2, 0, 4, 3).shape[2] == 2);  // indices 0 and 3

  const auto b = v.slice(0, 0, 1).with(Dims{2, 3, 4}, Dims{0, 4, 1});  // first batch broadcast twice
  CHECK(b(1, 2, 3) == 11);
  CHECK(b.device == Device::host());

  v(0, 0, 0) = 100;  // non-const element type: writable through the view
  CHECK(buf[0] == 100);
}
