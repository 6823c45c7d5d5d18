// Host-callable GPU checks of kdloss's launch plumbing (launch_cuda.cu).
#pragma once
#include <cstdint>
#include <string>

#include "kdloss/core/view.hpp"

namespace kdloss_test {

/// Leaves a launch-configuration error pending (a kernel launched with too many threads, unchecked),
/// then calls kdloss::mse_loss on the GPU. Returns the kdloss::Error message ("" if none was thrown);
/// `still_pending` says whether the foreign error was still there for its owner afterwards (peeked,
/// not cleared by kdloss); `later_call_ok` whether a call after clearing it ran.
std::string gpu_pending_error_blame(bool& still_pending, bool& later_call_ok);

/// backend::cuda::reduce_into over [kept, 2] broadcast inputs (a = 1, b = 2: every output 2 * (a b + a) = 6)
/// into a float output of `kept` elements; returns how many outputs differ from 6 (kept beyond the
/// capped grid's 268,431,360 threads needs the grid-stride loop).
std::int64_t gpu_reduce_into_wrong_outputs(std::int64_t kept);

struct HugeViewResult {
  double value = 0;         // the GPU's mse_loss
  double exact = 0;         // the exact mean, summed on the host in long double
  std::int64_t wrong_grads = -1;  // gradients off by more than float rounding (-1: not run)
};
/// kdloss::mse_loss on the GPU over a [rows, cols] student that slides over rows + cols - 1 floats
/// (strides {1, 1}) and a broadcast teacher: rows * cols may pass 2^31 with kilobytes of memory. With
/// `with_gradient` the fused call also writes a contiguous rows * cols gradient, checked on the device.
HugeViewResult gpu_huge_view_mse(std::int64_t rows, std::int64_t cols, bool with_gradient);

/// backend::cuda::rowwise_group for one operand of `shape`/`strides` with rows along `axis` (host code).
int rowwise_group_of(const kdloss::Dims& shape, const kdloss::Dims& strides, int axis);

}  // namespace kdloss_test
