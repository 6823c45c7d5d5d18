// Host-callable GPU run of ops::glore (glore_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// ops::glore on the GPU over contiguous x [B, C, H, W] with the ten parameters in GloreArgs order
/// (state_weight, state_bias, proj_weight, proj_bias, gcn_conv1_weight, gcn_conv1_bias, gcn_conv2_weight,
/// extend_weight, bn_weight, bn_bias): forward into a reserve, then backward reading it. dtype 0 float,
/// 1 double. Returns out, grad_x and the ten parameter gradients, concatenated (row-major).
std::vector<double> glore_on_gpu(int dtype, const std::vector<double>& x, const std::vector<std::vector<double>>& params,
                                 const std::vector<double>& grad_out, std::int64_t batch, std::int64_t channels,
                                 std::int64_t mid, std::int64_t h, std::int64_t w);

}  // namespace kdloss_test
