// kdloss/backend/dispatch_attention.hpp: sends one tiled online-softmax attention pass
// (expr/attention.hpp) to the backend of the device its operands live on, and answers its scratch size
// the same way in host-only and CUDA translation units.
#pragma once
#include <cstddef>

#include "kdloss/backend/cpu/attention.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/attention.hpp"

#if KDLOSS_CUDA_ENABLED
#include "kdloss/backend/cuda/attention.cuh"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detail {

/// Scratch bytes of the forward pass on `device` (host: per-thread tiles for max_threads() threads).
template <class T, class Acc>
std::size_t attention_forward_bytes(Device device, const expr::AttentionForward<T, Acc>& f) {
  if (device.is_host()) {
    if constexpr (host_types_v<T>)
      return backend::cpu::attention_forward_scratch_bytes(f, backend::cpu::max_threads());
    return 0;
  }
#if KDLOSS_CUDA_ENABLED
  return backend::cuda::attention_forward_scratch_bytes(f);
#else
  return 0;
#endif
}

/// Scratch bytes of the backward pass on `device`.
template <class T, class Acc>
std::size_t attention_backward_bytes(Device device, const expr::AttentionBackward<T, Acc>& g) {
  if (device.is_host()) {
    if constexpr (host_types_v<T>)
      return backend::cpu::attention_backward_scratch_bytes(g, backend::cpu::max_threads());
    return 0;
  }
#if KDLOSS_CUDA_ENABLED
  return backend::cuda::attention_backward_scratch_bytes(g);
#else
  return 0;
#endif
}

/// Host threads that fit in `bytes` of scratch sized by `bytes_for(threads)` (a caller's workspace
/// sized for fewer threads runs on fewer; the bits do not depend on it).
template <class F>
int host_threads_within(std::size_t bytes, F bytes_for) {
  int threads = backend::cpu::max_threads();
  while (threads > 1 && bytes_for(threads) > bytes) --threads;
  return threads;
}

/// Runs the forward pass on `device` with `bytes` of scratch at `scratch`.
template <class T, class Acc>
void attention_forward(Device device, const Exec& exec, const expr::AttentionForward<T, Acc>& f, void* scratch,
                       std::size_t bytes) {
  if (device.is_host()) {
    if constexpr (host_types_v<T>) {
      const int threads = host_threads_within(
          bytes, [&](int t) { return backend::cpu::attention_forward_scratch_bytes(f, t); });
      backend::cpu::attention_forward(f, scratch, threads);
    }
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::attention_forward(f, scratch, backend::cuda::stream_of(exec.stream));
#else
  (void)exec;
#endif
}

/// Runs the backward pass on `device` with `bytes` of scratch at `scratch`.
template <class T, class Acc>
void attention_backward(Device device, const Exec& exec, const expr::AttentionBackward<T, Acc>& g, void* scratch,
                        std::size_t bytes) {
  if (device.is_host()) {
    if constexpr (host_types_v<T>) {
      const int threads = host_threads_within(
          bytes, [&](int t) { return backend::cpu::attention_backward_scratch_bytes(g, t); });
      backend::cpu::attention_backward(g, scratch, threads);
    }
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::attention_backward(g, scratch, backend::cuda::stream_of(exec.stream));
#else
  (void)exec;
#endif
}

} } }  // namespace kdloss::detail
