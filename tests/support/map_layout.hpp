// [B, C, H, W] feature maps laid out contiguous (NCHW) or channel-last, for the map ops' GPU test helpers
// (tests/ops/max_pool_cuda.cu, tests/ops/roi_align_cuda.cu): the strides of a layout, and a row-major
// [B, C, H, W] host array placed into that storage and gathered back (dense layouts: same element count).
#pragma once
#include <cstdint>
#include <vector>

#include "kdloss/core/view.hpp"

namespace kdloss_test {

/// [B, C, H, W] strides: contiguous, or channel-last storage ([B, H, W, C]).
inline kdloss::Dims map_strides(const kdloss::Dims& shape, bool channels_last) {
  if (!channels_last) return kdloss::contiguous_strides(shape);
  const std::int64_t C = shape[1], H = shape[2], W = shape[3];
  return kdloss::Dims{C * H * W, 1, W * C, C};
}

/// Row-major [B, C, H, W] values to storage at the given strides (to_storage) or back.
inline std::vector<double> map_permute(const std::vector<double>& v, const kdloss::Dims& shape, const kdloss::Dims& st,
                                       bool to_storage) {
  std::vector<double> out(v.size());
  std::int64_t k = 0;
  for (std::int64_t b = 0; b < shape[0]; ++b)
    for (std::int64_t c = 0; c < shape[1]; ++c)
      for (std::int64_t h = 0; h < shape[2]; ++h)
        for (std::int64_t w = 0; w < shape[3]; ++w, ++k) {
          const std::int64_t at = b * st[0] + c * st[1] + h * st[2] + w * st[3];
          (to_storage ? out[at] : out[k]) = to_storage ? v[k] : v[at];
        }
  return out;
}
inline std::vector<double> map_place(const std::vector<double>& v, const kdloss::Dims& shape, const kdloss::Dims& st) {
  return map_permute(v, shape, st, true);
}
inline std::vector<double> map_gather(const std::vector<double>& s, const kdloss::Dims& shape,
                                      const kdloss::Dims& st) {
  return map_permute(s, shape, st, false);
}

}  // namespace kdloss_test
