// kdloss/expr/rows.hpp: a tensor seen as rows along one axis (softmax, log-softmax, KL over classes,
// attention masks over positions). Every index of the other axes is one row.
#pragma once
#include <cstdint>

#include "kdloss/config.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/expr/space.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

struct Rows {
  Space outer;                                // the row index space (axis removed), per-operand strides
  std::int64_t length = 0;                    // elements per row
  std::int64_t step[kMaxOperands] = {};       // per-operand stride along the row
  KDLOSS_HOST_DEVICE std::int64_t count() const { return outer.numel; }
};

/// Rows of `full` along `axis` for operands given as broadcast stride rows.
inline Rows make_rows(const Dims& full, int axis, const std::int64_t (*op_strides)[kMaxRank], int operands) {
  Rows r;
  Dims outer_shape;
  outer_shape.rank = full.rank - 1;
  std::int64_t outer_strides[kMaxOperands][kMaxRank] = {};
  for (int d = 0, o = 0; d < full.rank; ++d) {
    if (d == axis) continue;
    outer_shape[o] = full[d];
    for (int k = 0; k < operands; ++k) outer_strides[k][o] = op_strides[k][d];
    ++o;
  }
  r.length = full[axis];
  for (int k = 0; k < operands; ++k) r.step[k] = op_strides[k][axis];
  r.outer = make_space(outer_shape, outer_strides, operands, /*reorder=*/false);
  if (r.length == 0) r.outer.numel = 0;
  return r;
}

} } }  // namespace kdloss::expr
