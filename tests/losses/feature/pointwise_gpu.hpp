// Host-callable GPU runs of the pointwise losses (implemented in pointwise_cuda.cu).
#pragma once
#include <vector>

#include "kdloss/core/types.hpp"
#include "kdloss/core/view.hpp"

namespace kdloss_test {

struct GpuLossResult {
  std::vector<double> value;  // one element, or the map for reduction none
  std::vector<double> grad;
  std::vector<double> student, teacher;  // the inputs as the device held them (rounded to the dtype)
};

/// kind: 0 mse, 1 l1, 2 smooth_l1. dtype: 0 float, 1 double, 2 half, 3 bfloat16 (inputs given in double).
/// fused: forward_backward; otherwise forward, then backward with a unit upstream gradient.
GpuLossResult pointwise_on_gpu(int kind, int dtype, const std::vector<double>& s, const std::vector<double>& t,
                               const kdloss::Dims& shape, kdloss::Reduction r, double beta, bool fused);

/// Runs mse_loss on the GPU with a workspace of `bytes` (null when 0); returns the error text or "".
std::string pointwise_gpu_workspace_error(std::size_t bytes, float* out_after);

}  // namespace kdloss_test
