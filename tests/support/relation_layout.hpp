// [B, P, C] relation operands laid out contiguous or channels-first, for the relation ops' GPU test
// helpers (tests/ops/relation_cuda.cu, tests/ops/softmax_relation_cuda.cu): the strides of a layout,
// and a row-major [B, P, C] host array placed into it and gathered back.
#pragma once
#include <cstdint>
#include <vector>

#include "kdloss/core/view.hpp"

namespace kdloss_test {

/// [B, P, C] strides: contiguous, or channels-first storage ([B, C, P], as a [B, C, H, W] map is read).
inline kdloss::Dims relation_strides(bool channels_first, std::int64_t P, std::int64_t C) {
  return channels_first ? kdloss::Dims{P * C, 1, P} : kdloss::Dims{P * C, C, 1};
}

/// Copies between a row-major [B, P, C] array and the layout's storage (into the layout when `place`).
inline std::vector<double> relation_copy(const std::vector<double>& v, std::int64_t B, std::int64_t P, std::int64_t C,
                                         bool channels_first, bool place) {
  const kdloss::Dims s = relation_strides(channels_first, P, C);
  std::vector<double> out(v.size());
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t p = 0; p < P; ++p)
      for (std::int64_t c = 0; c < C; ++c) {
        const std::int64_t row_major = (b * P + p) * C + c, strided = b * s[0] + p * s[1] + c * s[2];
        if (place)
          out[strided] = v[row_major];
        else
          out[row_major] = v[strided];
      }
  return out;
}

/// The row-major [B, P, C] array v placed at the strides of the layout.
inline std::vector<double> relation_place(const std::vector<double>& v, std::int64_t B, std::int64_t P, std::int64_t C,
                                          bool channels_first) {
  return relation_copy(v, B, P, C, channels_first, true);
}

/// The inverse of relation_place: the layout's storage v back as a row-major [B, P, C] array.
inline std::vector<double> relation_gather(const std::vector<double>& v, std::int64_t B, std::int64_t P, std::int64_t C,
                                           bool channels_first) {
  return relation_copy(v, B, P, C, channels_first, false);
}

}  // namespace kdloss_test
