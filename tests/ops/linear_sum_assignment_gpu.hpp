// Host-callable GPU runs of ops::linear_sum_assignment (linear_sum_assignment_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// ops::linear_sum_assignment on the GPU over a contiguous padded cost [B, Q, T] (given in double,
/// converted to dtype 0 float, 1 double, 2 half, 3 bfloat16 on the device) with per-problem sizes
/// rows/cols [B] (copied to the device). Returns row_ind [B*K], col_ind [B*K], count [B], status [B]
/// concatenated, K = min(Q, T). The launch is also captured in a CUDA graph and replayed, and the
/// replay's outputs must equal the direct call's (checked inside: a mismatch returns an empty vector).
std::vector<std::int64_t> linear_sum_assignment_on_gpu(int dtype, bool maximize, const std::vector<double>& cost,
                                                       std::int64_t B, std::int64_t Q, std::int64_t T,
                                                       const std::vector<std::int64_t>& rows,
                                                       const std::vector<std::int64_t>& cols);

}  // namespace kdloss_test
