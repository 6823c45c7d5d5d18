// Host-callable GPU runs of ops::softmax_relation (softmax_relation_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// ops::softmax_relation on the GPU (fresh stream), row-major [B, N, m] theta, [B, K, m] phi, [B, K, c] g and
/// [B, N, c] grad_y, stored channels-first ([B, C, rows]) when `channels_first`. dtype 0 float, 1 double,
/// 2 half, 3 bfloat16. `fused`: forward_backward; otherwise forward keeping the reserve, then backward.
/// Returns y, grad_theta, grad_phi, grad_g concatenated, row-major.
std::vector<double> softmax_relation_on_gpu(int dtype, bool channels_first, bool fused, std::int64_t B,
                                            std::int64_t N, std::int64_t K, std::int64_t m, std::int64_t c,
                                            double scale, const std::vector<double>& theta,
                                            const std::vector<double>& phi, const std::vector<double>& g,
                                            const std::vector<double>& grad_y);

}  // namespace kdloss_test
