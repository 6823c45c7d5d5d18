// Host-callable GPU runs of the Frobenius distance (implemented in distance_cuda.cu).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "kdloss/core/view.hpp"

namespace kdloss_test {

struct GpuDistanceResult {
  double value = 0;
  std::vector<double> grad;              // row-major over the shape
  std::vector<double> student, teacher;  // the inputs as the GPU saw them (rounded to half/bfloat16)
};

/// dtype: 0 float, 1 double, 2 half, 3 bfloat16 (inputs given in double). The student is contiguous;
/// the teacher is the storage `t` read through `t_strides` (e.g. zero strides for a broadcast).
/// fused: forward_backward; otherwise forward, then backward with the upstream gradient `upstream`
/// (held on the device). Runs on a non-default stream with the queried workspace.
GpuDistanceResult distance_on_gpu(int dtype, const std::vector<double>& s, const std::vector<double>& t,
                                  const kdloss::Dims& shape, const kdloss::Dims& t_strides, double upstream,
                                  bool fused);

/// Runs call 0 forward, 1 backward, 2 forward_backward (float, 1000 elements) with a workspace of
/// `bytes` (null when 0); returns the error text or "" and what `out` and grad[0] hold afterwards
/// (both start at 42).
std::string distance_gpu_workspace_error(int call, std::size_t bytes, float* out_after, float* grad_after);

}  // namespace kdloss_test
