// Host-callable GPU run of detr::contrastive_query_loss (contrastive_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// detr::contrastive_query_loss forward_backward on the GPU (default stream, a cuBLAS handle, a workspace
/// sized by the query) over teacher and student [K, N, D] (row-major), with `normalize`. dtype 0 float, 1
/// double. Returns the value, then grad_teacher and grad_student.
std::vector<double> contrastive_on_gpu(int dtype, std::int64_t K, std::int64_t N, std::int64_t D, bool normalize,
                                       const std::vector<double>& teacher, const std::vector<double>& student);

}  // namespace kdloss_test
