// Host-callable GPU runs of ops::matmul and ops::linear (matmul_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// Layouts of matmul_on_gpu: 0 contiguous; 1 a and b stored transposed; 2 c column-major (C^T = B^T A^T);
/// 3 a, b and c with non-unit inner strides (packed into the workspace); 4 b one matrix broadcast by a
/// stride-0 batch; 5 sum_batches into one [m, n] c.
inline constexpr int kMatmulGpuLayouts = 6;
inline constexpr int kMatmulGpuBroadcastLayout = 4;
inline constexpr int kMatmulGpuSumLayout = 5;

/// c = alpha * a b + beta * c on the GPU with a fresh cuBLAS handle and stream; dtype 0 float,
/// 1 double, 2 half, 3 bfloat16. Values row-major [batch, m, k], [batch, k, n], [batch, m, n] (with
/// layout 4 only b's first matrix is used; with layout 5 only c's first). Returns c row-major.
std::vector<double> matmul_on_gpu(int dtype, int layout, const std::vector<double>& a, const std::vector<double>& b,
                                  const std::vector<double>& c, std::int64_t batch, std::int64_t m, std::int64_t n,
                                  std::int64_t k, double alpha, double beta);

/// ops::linear in the 1x1-convolution form over x [B, in, P] (contiguous, or channel-last when
/// `channel_last`), forward then backward with grad_y, param_grads beta = 1 over the given old grads.
/// dtype 0 float, 1 double. Returns y, grad_x, grad_w, grad_b concatenated (row-major, [B, C, P]).
std::vector<double> linear_on_gpu(int dtype, bool channel_last, const std::vector<double>& x,
                                  const std::vector<double>& w, const std::vector<double>& bias,
                                  const std::vector<double>& grad_y, const std::vector<double>& old_gw,
                                  const std::vector<double>& old_gb, std::int64_t batch, std::int64_t in,
                                  std::int64_t out, std::int64_t positions);

}  // namespace kdloss_test
