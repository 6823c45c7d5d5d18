// core/ragged.hpp: index views and ragged batches (per-image offsets).
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "kdloss/core/ragged.hpp"
#include "support/test_support.hpp"

namespace {
template <class I>
void check(const std::vector<I>& offsets, std::int64_t packed) {
  const kdloss::detail::Checker ck{"kdloss::test"};
  kdloss::Segments<I> seg{kdloss::host_view<const I>(offsets.data(), {static_cast<std::int64_t>(offsets.size())})};
  kdloss::detail::check_segments(ck, seg, "offsets", packed);
}
}  // namespace

TEST_CASE_TEMPLATE("Segments: counts, sizes, empty images", I, std::int32_t, std::int64_t) {
  const std::vector<I> offsets{0, 3, 3, 7};
  kdloss::Segments<I> seg{kdloss::host_view<const I>(offsets.data(), {4})};
  CHECK(seg.count() == 3);
  CHECK(seg.size(0) == 3);
  CHECK(seg.size(1) == 0);  // an image with no box is legal
  CHECK(seg.begin(2) == 3);
  CHECK(seg.end(2) == 7);
  CHECK_NOTHROW(check<I>(offsets, 7));
  CHECK_NOTHROW(check<I>({0}, 0));        // no image at all
  CHECK_NOTHROW(check<I>({0, 0, 0}, 0));  // two empty images
}

TEST_CASE("Segments: bad offsets name the argument and the values") {
  using kdloss_test::expect_error;
  auto none = [] {};
  expect_error([] { check<std::int64_t>({1, 3}, 3); }, "'offsets' must start at 0 but starts at 1", none);
  expect_error([] { check<std::int64_t>({0, 4, 2}, 2); }, "'offsets' decreases at image 1: offsets[1] = 4 > offsets[2] = 2",
               none);
  expect_error([] { check<std::int64_t>({0, 2, 5}, 6); }, "'offsets' ends at 5 but the packed view has 6 rows", none);
  expect_error([] { check<std::int32_t>({}, 0); }, "'offsets' must have B + 1 entries (at least [0]) but has shape [0]", none);
  const std::vector<std::int64_t> two_d{0, 1, 2, 3};
  expect_error(
      [&] {
        kdloss::Segments<std::int64_t> seg{kdloss::host_view<const std::int64_t>(two_d.data(), {2, 2})};
        kdloss::detail::check_segments(kdloss::detail::Checker{"kdloss::test"}, seg, "offsets", 3);
      },
      "'offsets' must have rank 1 but has shape [2, 2]", none);
  const std::int64_t zero = 0;
  expect_error(
      [&] {
        kdloss::Segments<std::int64_t> seg{
            kdloss::View<const std::int64_t>(&zero, kdloss::Dims{1}, kdloss::Dims{1}, kdloss::Device::cuda(0))};
        kdloss::detail::check_segments(kdloss::detail::Checker{"kdloss::test"}, seg, "offsets", 0);
      },
      "'offsets' is on cuda:0 but offsets are read during validation", none);
}
