// kdloss/backend/dispatch_gemm.hpp: sends one matrix product (expr::Gemm) to the backend of the device
// its views live on, and answers its scratch size the same way in host-only and CUDA translation units.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kdloss/backend/cpu/gemm.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/matmul.hpp"

#if KDLOSS_CUDA_ENABLED
#include "kdloss/backend/cuda/gemm.cuh"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detail {

/// Scratch bytes of one product on `device` (host: packed blocks for max_threads() threads; GPU: the
/// packs of operands cuBLAS cannot read in place, expr::blas_plan).
template <class T, class E>
std::size_t gemm_bytes(Device device, const expr::Gemm<T, T, T, E>& g) {
  if (g.m == 0 || g.n == 0 || g.outputs() == 0 || g.scale_only()) return 0;
  if (device.is_host()) {
    if constexpr (host_types_v<T>)
      return backend::cpu::gemm_scratch_bytes(g, backend::cpu::max_threads());
    return 0;
  }
  const expr::BlasPlan p = expr::blas_plan(g);
  return align_up(static_cast<std::size_t>(p.a_elems) * sizeof(T)) +
         align_up(static_cast<std::size_t>(p.b_elems) * sizeof(T)) +
         align_up(static_cast<std::size_t>(p.c_elems) * sizeof(T));
}

/// Runs g on `device` with `bytes` of scratch at `scratch` (at least gemm_bytes; the host uses fewer
/// threads when a caller's workspace was sized for fewer).
template <class T, class E>
void gemm(Device device, const Exec& exec, const expr::Gemm<T, T, T, E>& g, void* scratch, std::size_t bytes) {
  if (device.is_host()) {
    if constexpr (host_types_v<T>) {
      int threads = backend::cpu::max_threads();
      while (threads > 1 && backend::cpu::gemm_scratch_bytes(g, threads) > bytes) --threads;
      backend::cpu::gemm(g, scratch, threads);
    }
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::gemm(g, static_cast<cublasHandle_t>(exec.blas.handle), backend::cuda::stream_of(exec.stream), scratch);
#else
  (void)exec;
  (void)bytes;
#endif
}

/// p[0..n) = value on `device` (a vector of ones for sums written as products).
template <class T>
void gemm_fill(Device device, const Exec& exec, T* p, std::int64_t n, double value) {
  if (device.is_host()) {
    if constexpr (host_types_v<T>) std::fill(p, p + n, static_cast<T>(value));
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::fill(p, n, value, backend::cuda::stream_of(exec.stream));
#else
  (void)exec;
  (void)p;
  (void)n;
  (void)value;
#endif
}

} } }  // namespace kdloss::detail
