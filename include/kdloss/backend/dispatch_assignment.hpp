// kdloss/backend/dispatch_assignment.hpp: sends a batched linear-sum-assignment call
// (expr/assignment.hpp) to the backend of the call's device. The companion of dispatch.hpp.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kdloss/backend/cpu/assignment.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/expr/assignment.hpp"

#if KDLOSS_CUDA_ENABLED
#include "kdloss/backend/cuda/assignment.cuh"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detail {

/// Scratch bytes of a batched assignment on `device`: one slot per problem on the GPU (all problems
/// run at once), one per host thread on the host.
inline std::size_t assignment_workspace_bytes(Device device, std::int64_t batch, std::int64_t N, std::int64_t M) {
  if (batch <= 0 || N <= 0) return 0;
  const std::size_t slot = expr::AssignmentSlot::make(N, M).bytes;
  const std::int64_t slots = device.is_host() ? backend::cpu::assignment::host_slots(batch) : batch;
  return slot * static_cast<std::size_t>(slots);
}

/// Runs every problem of P on `device`, with `workspace` (assignment_workspace_bytes of it).
template <class T>
void linear_sum_assignment(Device device, Stream stream, const expr::AssignmentBatch<T>& P, void* workspace) {
  if (P.batch == 0) return;
  if (device.is_host()) {
    if constexpr (host_types_v<T>) backend::cpu::assignment::run(P, workspace);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::assignment::run(P, workspace, backend::cuda::stream_of(stream));
#else
  (void)stream;
#endif
}

} } }  // namespace kdloss::detail
