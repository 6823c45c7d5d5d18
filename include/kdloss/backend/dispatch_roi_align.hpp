// kdloss/backend/dispatch_roi_align.hpp: sends a RoIAlign pass (expr/roi_align.hpp) to the backend of
// the call's device, and answers its scratch query. The companion of dispatch.hpp.
#pragma once
#include <cstddef>

#include "kdloss/backend/cpu/roi_align.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/expr/roi_align.hpp"

#if KDLOSS_CUDA_ENABLED
#include "kdloss/backend/cuda/roi_align.cuh"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detail {

/// Scratch bytes of P on `device`. Host: the boxes grouped by image and one box's tables per thread
/// (reads the host boxes). GPU: the per-box geometry and, in max mode, one argmax per output
/// (independent of the box values, so the query needs no device read).
template <class T>
std::size_t roi_align_scratch_bytes(Device device, const expr::RoiAlignPass<T>& P) {
  if (device.is_host()) return backend::cpu::roi_align::workspace_bytes(P, backend::cpu::max_threads());
  return expr::roi_align_device_scratch_bytes<acc_t<T>>(P.K, P.C, P.PH, P.PW, P.pool);
}

/// Runs P on `device` with `scratch` (roi_align_scratch_bytes of it, 256-byte aligned).
template <class T>
void roi_align(Device device, Stream stream, const expr::RoiAlignPass<T>& P, void* scratch) {
  if (device.is_host()) {
    if constexpr (host_types_v<T>) backend::cpu::roi_align::run(P, scratch);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::roi_align::run(P, scratch, backend::cuda::stream_of(stream));
#else
  (void)stream;
  (void)scratch;
#endif
}

} } }  // namespace kdloss::detail
