// kdloss/backend/dispatch_topk.hpp: sends a batched top-k (expr/topk.hpp) to the backend of the call's
// device. Neither backend takes workspace.
#pragma once
#include "kdloss/backend/cpu/topk.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/expr/topk.hpp"

#if KDLOSS_CUDA_ENABLED
#include "kdloss/backend/cuda/topk.cuh"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detail {

/// The k indices of every row of P on `device` (host: torch.topk's CPU order; GPU: torch's CUDA set, in
/// index order; see expr/topk.hpp).
template <class T>
void topk_rows(Device device, Stream stream, const expr::TopkRows<T>& P) {
  if (device.is_host()) {
    if constexpr (host_types_v<T>) backend::cpu::topk_rows(P);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::topk::topk_rows(P, backend::cuda::stream_of(stream));
#else
  (void)stream;
#endif
}

} } }  // namespace kdloss::detail
