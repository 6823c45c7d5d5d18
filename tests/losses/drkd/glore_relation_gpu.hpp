// Host-callable GPU run of drkd::glore_relation_loss (glore_relation_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// On the GPU (fresh stream and cuBLAS handle, a workspace sized by the query), forward_backward over
/// row-major NCHW values. dtype 0 float, 1 double. The ten parameters of each unit in GloreArgs' order.
/// Returns the value, grad_student, the adapter's two gradients, then the student unit's ten and the
/// teacher unit's ten parameter gradients, concatenated.
std::vector<double> glore_relation_on_gpu(int dtype, const std::vector<double>& student,
                                          const std::vector<double>& teacher,
                                          const std::vector<std::vector<double>>& student_params,
                                          const std::vector<std::vector<double>>& teacher_params,
                                          const std::vector<double>& adapt_weight,
                                          const std::vector<double>& adapt_bias, std::int64_t B, std::int64_t Cs,
                                          std::int64_t Ct, std::int64_t ms, std::int64_t mt, std::int64_t H,
                                          std::int64_t W);

}  // namespace kdloss_test
