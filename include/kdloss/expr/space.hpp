// kdloss/expr/space.hpp: the iteration space of an expression: one common shape, and each operand's
// strides in it (0 where the operand is broadcast), with dimensions reordered and merged so the
// backends loop over as few, as long and as contiguous rows as the layout allows (xtensor's
// trivial-broadcast idea, generalised).
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <numeric>

#include "kdloss/config.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/view.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

inline constexpr int kMaxOperands = 8;

struct Space {
  int rank = 0;
  int operands = 0;
  std::int64_t shape[kMaxRank] = {};
  std::int64_t strides[kMaxOperands][kMaxRank] = {};
  std::int64_t numel = 0;

  KDLOSS_HOST_DEVICE std::int64_t inner() const { return rank ? shape[rank - 1] : 1; }
  KDLOSS_HOST_DEVICE std::int64_t inner_stride(int op) const { return rank ? strides[op][rank - 1] : 0; }

  /// Element offsets of every operand at a linear index (row-major over `shape`).
  KDLOSS_HOST_DEVICE void offsets(std::int64_t linear, std::int64_t* off) const {
    for (int k = 0; k < operands; ++k) off[k] = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const std::int64_t extent = shape[d];
      const std::int64_t i = linear % extent;
      linear /= extent;
      for (int k = 0; k < operands; ++k) off[k] += i * strides[k][d];
    }
  }
};

/// Strides of `v` when broadcast (numpy rules, right-aligned) to `full`; false when it cannot be.
template <class T>
bool broadcast_strides(const View<T>& v, const Dims& full, std::int64_t* out) {
  if (v.rank() > full.rank) return false;
  const int lead = full.rank - v.rank();
  for (int d = 0; d < full.rank; ++d) {
    if (d < lead) {
      out[d] = 0;
      continue;
    }
    const std::int64_t extent = v.shape[d - lead];
    if (extent == full[d]) out[d] = extent == 1 ? 0 : v.strides[d - lead];
    else if (extent == 1) out[d] = 0;
    else return false;
  }
  return true;
}

/// Builds the space over `full` for operands given as stride rows (already broadcast).
/// reorder: sort dimensions by the first operand's |stride| (innermost = smallest), valid when the
/// consumer does not depend on the logical order (elementwise maps, full reductions).
inline Space make_space(const Dims& full, const std::int64_t (*op_strides)[kMaxRank], int operands, bool reorder) {
  Space s;
  s.operands = operands;
  s.numel = full.product();
  std::array<int, kMaxRank> order{};
  int n = 0;
  for (int d = 0; d < full.rank; ++d)
    if (full[d] != 1) order[n++] = d;
  if (reorder && operands > 0) {
    // Stable: keeps logical order among equal strides; zero strides (broadcast) go outermost.
    auto key = [&](int d) {
      const auto st = op_strides[0][d] < 0 ? -op_strides[0][d] : op_strides[0][d];
      return st == 0 ? INT64_MAX : st;
    };
    for (int i = 1; i < n; ++i)  // stable insertion sort, outermost (largest stride) first
      for (int j = i; j > 0 && key(order[j]) > key(order[j - 1]); --j) std::swap(order[j], order[j - 1]);
  }
  // Merge dimension pairs that every operand walks as one.
  for (int i = 0; i < n; ++i) {
    const int d = order[i];
    if (s.rank > 0) {
      bool mergeable = true;
      for (int k = 0; k < operands && mergeable; ++k)
        mergeable = s.strides[k][s.rank - 1] == op_strides[k][d] * full[d];
      if (mergeable) {
        s.shape[s.rank - 1] *= full[d];
        for (int k = 0; k < operands; ++k) s.strides[k][s.rank - 1] = op_strides[k][d];
        continue;
      }
    }
    s.shape[s.rank] = full[d];
    for (int k = 0; k < operands; ++k) s.strides[k][s.rank] = op_strides[k][d];
    ++s.rank;
  }
  if (s.numel == 0) s.rank = 0;
  return s;
}

} } }  // namespace kdloss::expr
