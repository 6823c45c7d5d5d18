// kdloss/backend/cuda/window_stats_geometry.hpp: tile geometry of the GPU windowed-statistics pass
// (window_stats.cuh), free of CUDA headers so a host translation unit can answer a GPU workspace query.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kdloss/config.hpp"
#include "kdloss/expr/filter.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda::window_stats {

/// Tiles of the kernels: 32 columns by 16 rows (float accumulation) or 8 rows (double).
inline constexpr int kTileW = 32;
KDLOSS_HOST_DEVICE constexpr int tile_h(std::size_t acc_bytes) { return acc_bytes == 8 ? 8 : 16; }
/// Per-block partial sums a pass may write: tiles of the input grid (which covers the output
/// grid) times planes.
inline std::int64_t partial_count(const expr::AxisPlan& rows, const expr::AxisPlan& cols, std::int64_t planes,
                                  std::size_t acc_bytes) {
  const std::int64_t th = tile_h(acc_bytes);
  return ((rows.n_in + th - 1) / th) * ((cols.n_in + kTileW - 1) / kTileW) * planes;
}

} } }  // namespace kdloss::backend::cuda::window_stats
