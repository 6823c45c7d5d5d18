// kdloss/backend/dispatch_window_max.hpp: sends a window-maximum pass (expr/window_max.hpp) to the
// backend of the call's device. The companion of dispatch.hpp and dispatch_window.hpp.
#pragma once
#include "kdloss/backend/cpu/window_max.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/expr/window_max.hpp"

#if KDLOSS_CUDA_ENABLED
#include "kdloss/backend/cuda/window_max.cuh"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detail {

/// Runs one window-maximum pass on `device` (nothing when it has no plane). No workspace on either
/// backend: the host keeps a chunk of one output row on the stack, the GPU nothing between kernels.
template <class T, class I>
void window_max(Device device, Stream stream, const expr::WindowMaxPass<T, I>& P) {
  if (P.planes() == 0) return;
  if (device.is_host()) {
    if constexpr (host_types_v<T>) backend::cpu::window_max::run(P);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::window_max::run(P, backend::cuda::stream_of(stream));
#else
  (void)stream;
#endif
}

} } }  // namespace kdloss::detail
