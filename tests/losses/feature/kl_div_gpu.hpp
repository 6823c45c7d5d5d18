// Host-callable GPU runs of the temperature KL divergence (implemented in kl_div_cuda.cu).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "kdloss/core/types.hpp"
#include "kdloss/core/view.hpp"

namespace kdloss_test {

struct GpuKlResult {
  std::vector<double> value;             // one element, or the row-major map for reduction none
  std::vector<double> grad;              // row-major over the shape
  std::vector<double> student, teacher;  // the storages as the GPU saw them (rounded to half/bfloat16)
};

/// dtype: 0 float, 1 double, 2 half, 3 bfloat16 (inputs given in double). Student and teacher are
/// the storages `s` and `t` read through `strides` (any layout); value map and gradient are written
/// through views with the same strides and returned row-major. fused: forward_backward; otherwise
/// forward, then backward with `upstream` (one element, or a row-major map for none) on the device.
/// Runs on a non-default stream with the queried workspace.
GpuKlResult kl_div_on_gpu(int dtype, const std::vector<double>& s, const std::vector<double>& t,
                          const kdloss::Dims& shape, const kdloss::Dims& strides, int axis, double temperature,
                          kdloss::Reduction r, const std::vector<double>& upstream, bool fused);

/// Runs call 0 forward, 1 forward_backward (float logits [4, 100], class axis 1, batchmean) with a
/// workspace of `bytes` (null when 0); returns the error text or "" and what `out` and grad[0] hold
/// afterwards (both start at 42).
std::string kl_div_gpu_workspace_error(int call, std::size_t bytes, float* out_after, float* grad_after);

}  // namespace kdloss_test
