// kdloss/core/ragged.hpp: integer views (indices, labels, assignments) and ragged batches, where
// image b owns rows [offsets[b], offsets[b + 1]) of a packed view (boxes, queries, instances).
#pragma once
#include <cstdint>
#include <type_traits>

#include "kdloss/config.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {

/// Index element types: int32 and int64, as DLPack and PyTorch hand them over.
template <class T>
inline constexpr bool is_index_type_v =
    std::is_same_v<std::remove_cv_t<T>, std::int32_t> || std::is_same_v<std::remove_cv_t<T>, std::int64_t>;

/// Per-image counts of a ragged batch: offsets has B + 1 entries, offsets[0] = 0, nondecreasing,
/// offsets[B] = the packed extent. An image with no rows (offsets[b] == offsets[b + 1]) is legal,
/// and so is B = 0 (offsets = [0]).
///
///   std::int64_t offsets[] = {0, 3, 3, 7};  // 3 boxes, none, 4 boxes
///   kdloss::Segments<std::int64_t> images{kdloss::host_view<const std::int64_t>(offsets, {4})};
template <class I>
struct Segments {
  static_assert(is_index_type_v<I>, "kdloss::Segments: offsets are int32 or int64");
  View<const I> offsets;

  std::int64_t count() const { return offsets.numel() > 0 ? offsets.numel() - 1 : 0; }
  /// Host views only (validation reads them; GPU entry points take a host copy or read them on the device).
  std::int64_t begin(std::int64_t b) const { return static_cast<std::int64_t>(offsets(b)); }
  std::int64_t end(std::int64_t b) const { return static_cast<std::int64_t>(offsets(b + 1)); }
  std::int64_t size(std::int64_t b) const { return end(b) - begin(b); }
};

namespace detail {

/// Rank, dtype-independent shape and pointer checks of an index view.
template <class I>
void check_index_view(const Checker& ck, const View<I>& v, const char* arg, int rank) {
  static_assert(is_index_type_v<I>, "index views are int32 or int64");
  ck.not_null(v, arg);
  ck.rank(v, arg, rank);
}

/// Validates a ragged batch against the packed extent it indexes. Reads the offsets, so on the GPU
/// the caller passes them on the host (or validates them on the device); the message names the
/// argument, the offending image and the values.
template <class I>
void check_segments(const Checker& ck, const Segments<I>& seg, const char* arg, std::int64_t packed_extent) {
  check_index_view(ck, seg.offsets, arg, 1);
  require(seg.offsets.device.is_host(), ck.fn, ": argument '", arg, "' is on ", seg.offsets.device.str(),
          " but offsets are read during validation; pass them in host memory");
  require(seg.offsets.numel() >= 1, ck.fn, ": argument '", arg,
          "' must have B + 1 entries (at least [0]) but has shape ", seg.offsets.shape.str());
  require(seg.begin(0) == 0, ck.fn, ": argument '", arg, "' must start at 0 but starts at ", seg.begin(0));
  for (std::int64_t b = 0; b < seg.count(); ++b)
    require(seg.end(b) >= seg.begin(b), ck.fn, ": argument '", arg, "' decreases at image ", b, ": offsets[", b,
            "] = ", seg.begin(b), " > offsets[", b + 1, "] = ", seg.end(b));
  const std::int64_t last = static_cast<std::int64_t>(seg.offsets(seg.offsets.numel() - 1));
  require(last == packed_extent, ck.fn, ": argument '", arg, "' ends at ", last, " but the packed view has ",
          packed_extent, " rows");
}

}  // namespace detail
} }  // namespace kdloss
