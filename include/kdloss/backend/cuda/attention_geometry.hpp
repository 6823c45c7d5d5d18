// kdloss/backend/cuda/attention_geometry.hpp: the device scratch of the GPU attention pass
// (attention.cuh), free of CUDA headers so a host translation unit can answer a GPU workspace query.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kdloss/config.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda::attention_geometry {

/// One value of `value_bytes` per query row (batch * n_q), rounded up to 256 bytes.
inline std::size_t row_bytes(std::int64_t batch, std::int64_t n_q, std::size_t value_bytes) {
  const std::size_t rows = batch > 0 && n_q > 0 ? static_cast<std::size_t>(batch) * static_cast<std::size_t>(n_q) : 0;
  return (rows * value_bytes + 255) / 256 * 256;
}

/// Scratch of attention_forward for elements of `element_bytes` bytes: the half / bfloat16 forward
/// (2-byte elements, tensor cores) keeps lse there, one float per row, when the caller keeps none.
inline std::size_t forward_scratch_bytes(std::int64_t batch, std::int64_t n_q, std::size_t element_bytes,
                                         bool keeps_lse) {
  return element_bytes == 2 && !keeps_lse ? row_bytes(batch, n_q, sizeof(float)) : 0;
}

/// Scratch of attention_backward: D = rowsum(grad_o o), one accumulator (`acc_bytes`) per row.
inline std::size_t backward_scratch_bytes(std::int64_t batch, std::int64_t n_q, std::size_t acc_bytes) {
  return row_bytes(batch, n_q, acc_bytes);
}

} } }  // namespace kdloss::backend::cuda::attention_geometry
