// Host-callable GPU runs of drkd::pixel_relation_loss (pixel_relation_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// On the GPU (fresh stream and cuBLAS handle, a workspace sized by the query): forward_backward, then
/// backward with upstream `upstream`, over row-major [B, C, H, W] values stored NCHW or channels-last.
/// dtype 0 float, 1 double, 2 half, 3 bfloat16. Returns the value, forward_backward's grad_student and
/// backward's, concatenated (row-major [B, C, H, W]).
std::vector<double> pixel_relation_on_gpu(int dtype, bool channels_last, std::int64_t B, std::int64_t C,
                                          std::int64_t H, std::int64_t W, const std::vector<double>& student,
                                          const std::vector<double>& teacher, double upstream);

}  // namespace kdloss_test
