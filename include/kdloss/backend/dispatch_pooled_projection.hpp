// kdloss/backend/dispatch_pooled_projection.hpp: the host's fused backward through a max-pooled 1x1
// projection (expr/pooled_projection.hpp). The companion of dispatch.hpp. Host only: on the GPU the op runs
// the pooling's and the projection's backward as they are.
#pragma once
#include <cstddef>

#include "kdloss/backend/cpu/pooled_projection.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/expr/pooled_projection.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detail {

/// Scratch bytes of pooled_projection_back for every host thread.
template <class T>
std::size_t pooled_projection_back_bytes(const expr::PooledProjectionBackPass<T>& P) {
  return backend::cpu::pooled_projection::scratch_bytes(P, host_threads());
}

/// Runs P on the host with `bytes` of scratch (a host call only: the caller branches on the device).
template <class T>
void pooled_projection_back(Device device, const expr::PooledProjectionBackPass<T>& P, void* scratch,
                            std::size_t bytes) {
  require(device.is_host(), "pooled_projection_back: internal: a host-only pass was given views on ", device.str());
  if constexpr (host_types_v<T>) backend::cpu::pooled_projection::run(P, scratch, bytes);
}

} } }  // namespace kdloss::detail
