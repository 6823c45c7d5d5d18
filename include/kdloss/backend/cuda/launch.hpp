// kdloss/backend/cuda/launch.hpp: launch geometry of the GPU backend, free of CUDA headers so a
// host-only translation unit can answer a GPU workspace query.
#pragma once
#include <cstdint>

#include "kdloss/config.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda {

inline constexpr int kBlock = 256;
/// Upper bound on blocks of a full reduction: also the number of partial sums in the workspace.
inline constexpr int kMaxReduceBlocks = 1024;

inline int reduce_blocks(std::int64_t numel) {
  const std::int64_t want = (numel + kBlock * 8 - 1) / (kBlock * 8);
  return static_cast<int>(want < 1 ? 1 : (want > kMaxReduceBlocks ? kMaxReduceBlocks : want));
}
inline int grid_for(std::int64_t work, int per_block = kBlock) {
  const std::int64_t want = (work + per_block - 1) / per_block;
  return static_cast<int>(want < 1 ? 1 : (want > 65535 * 16 ? 65535 * 16 : want));
}

/// Blocks of a row operation (rowwise.cuh): capped so a reduction's partials fit kMaxReduceBlocks.
/// Rows shorter than 2048 get a warp each, 8 per block; longer rows a block each; `rows_per_block`,
/// when given, overrides (a thread per row: kBlock). The default count is the most any launch uses.
inline int rowwise_blocks(std::int64_t rows, std::int64_t length, std::int64_t rows_per_block = 0) {
  const std::int64_t per_block = rows_per_block > 0 ? rows_per_block : (length >= 2048 ? 1 : kBlock / 32);
  const std::int64_t want = (rows + per_block - 1) / per_block;
  return static_cast<int>(want < 1 ? 1 : (want > kMaxReduceBlocks ? kMaxReduceBlocks : want));
}

} } }  // namespace kdloss::backend::cuda
