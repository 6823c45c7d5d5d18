// Host-callable GPU checks of kdloss's launch plumbing (launch_cuda.cu).
#pragma once
#include <cstdint>
#include <string>

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

}  // namespace kdloss_test
