// Host-callable GPU runs of ops::dot_relation and ops::concat_relation (relation_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// One forward_backward call on the GPU (fresh stream and cuBLAS handle) over row-major [B, N, m] theta,
/// [B, K, m] phi, [B, K, c] g, [B, N, c] grad_y and (concat) w [2m]; operands stored as
/// kdloss_test::relation_order(layout) lays them out. dtype 0 float, 1 double, 2 half, 3 bfloat16.
/// Returns y, grad_theta, grad_phi, grad_g and (concat) grad_w, concatenated, row-major.
std::vector<double> relation_on_gpu(bool concat, int dtype, int layout, std::int64_t B, std::int64_t N,
                                    std::int64_t K, std::int64_t m, std::int64_t c, const std::vector<double>& theta,
                                    const std::vector<double>& phi, const std::vector<double>& g,
                                    const std::vector<double>& w, const std::vector<double>& grad_y);

}  // namespace kdloss_test
