// kdloss/backend/cuda/channel_stats_geometry.hpp: launch geometry of the GPU per-channel reductions
// (channel_stats.cuh), free of CUDA headers so a host translation unit can answer a GPU workspace query.
#pragma once
#include <cstdint>

#include "kdloss/config.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda::channel_stats {

/// Threads of a reduction block.
inline constexpr int kThreads = 256;
/// Most blocks (slices) one channel is reduced in; each writes one partial.
inline constexpr int kMaxSplits = 64;

/// Slices of a channel of `per_channel` elements: about 16 elements per thread, fixed by the shape
/// alone, so the partials and their merge order (and the bits) do not depend on the GPU.
inline int splits(std::int64_t per_channel) {
  const std::int64_t want = (per_channel + kThreads * 16 - 1) / (kThreads * 16);
  return static_cast<int>(want < 1 ? 1 : (want > kMaxSplits ? kMaxSplits : want));
}
/// Doubles of partials a reduction over `channels` channels writes (3 per slice: count, mean, m2).
inline std::int64_t partial_doubles(std::int64_t channels, std::int64_t per_channel) {
  return channels * splits(per_channel) * 3;
}

} } }  // namespace kdloss::backend::cuda::channel_stats
