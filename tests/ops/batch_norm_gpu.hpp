// Host-callable GPU run of ops::batch_norm (batch_norm_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// ops::batch_norm on the GPU over x [B, C, H, W] (contiguous, or channels-last when `channels_last`):
/// forward (training: with batch_mean, batch_var and a reserve), then backward reading the reserve with
/// param_grads beta = 1 over old_gw / old_gb. dtype 0 float, 1 double, 2 half, 3 bfloat16 (x, grad_y and
/// the parameters rounded to it). Returns y, [batch_mean, batch_var when training,] grad_x, grad_weight,
/// grad_bias, concatenated (row-major NCHW). `rounded`, when given, receives the inputs as the GPU saw
/// them (x, w, b, running_mean, running_var, grad_y, old_gw, old_gb rounded to dtype), for a reference
/// that isolates the kernels' error from the input rounding.
std::vector<double> batch_norm_on_gpu(int dtype, bool channels_last, bool training, const std::vector<double>& x,
                                      const std::vector<double>& w, const std::vector<double>& b,
                                      const std::vector<double>& running_mean, const std::vector<double>& running_var,
                                      const std::vector<double>& grad_y, const std::vector<double>& old_gw,
                                      const std::vector<double>& old_gb, std::int64_t batch, std::int64_t channels,
                                      std::int64_t h, std::int64_t w_, std::vector<std::vector<double>>* rounded = nullptr);

}  // namespace kdloss_test
