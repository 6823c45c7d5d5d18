// kdloss/backend/dispatch_additive_relu.hpp: sends an expr::AdditiveReluPass to the backend of the call's
// device and sizes its scratch the same whether or not this translation unit has the CUDA backend.
#pragma once
#include <cstddef>

#include "kdloss/backend/cpu/additive_relu.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/additive_relu.hpp"

#if KDLOSS_CUDA_ENABLED
#include "kdloss/backend/cuda/additive_relu.cuh"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detail {

/// The GPU's scratch: the scores a [B, N] and b [B, N'] and, for a backward, their gradients, in Acc.
template <class Acc>
struct AdditiveReluGpuScratch {
  Acc *a = nullptr, *b = nullptr, *ga = nullptr, *gb = nullptr;
};
template <class T>
AdditiveReluGpuScratch<acc_t<T>> carve_additive_relu_gpu(Carver& carver, const expr::AdditiveReluPass<T>& P) {
  using Acc = acc_t<T>;
  AdditiveReluGpuScratch<Acc> s;
  const auto n = static_cast<std::size_t>(P.batch * P.n), n2 = static_cast<std::size_t>(P.batch * P.n2);
  s.a = carver.take<Acc>(n);
  s.b = carver.take<Acc>(n2);
  if (P.backward()) {
    s.ga = carver.take<Acc>(n);
    s.gb = carver.take<Acc>(n2);
  }
  return s;
}

/// Scratch bytes of additive_relu(device, ..., P, ...).
template <class T>
std::size_t additive_relu_bytes(Device device, const expr::AdditiveReluPass<T>& P) {
  if (device.is_host()) {
    if constexpr (host_types_v<T>) return backend::cpu::additive_relu::scratch_bytes(P);
    return 0;
  }
  Carver counter;
  carve_additive_relu_gpu(counter, P);
  return counter.bytes();
}

/// Evaluates P on `device` with `scratch` of additive_relu_bytes(device, P) bytes.
template <class T>
void additive_relu(Device device, Stream stream, const expr::AdditiveReluPass<T>& P, void* scratch) {
  if (device.is_host()) {
    if constexpr (host_types_v<T>) backend::cpu::additive_relu::run(P, scratch);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  Carver carver(scratch);
  const auto s = carve_additive_relu_gpu(carver, P);
  backend::cuda::additive_relu::run(P, s.a, s.b, s.ga, s.gb, backend::cuda::stream_of(stream));
#else
  (void)stream;
  (void)scratch;
#endif
}

} } }  // namespace kdloss::detail
