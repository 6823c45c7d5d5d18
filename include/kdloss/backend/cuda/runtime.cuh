// kdloss/backend/cuda/runtime.cuh: CUDA error checks, launch sizes and value conversions.
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <cstdint>
#include <string>

#include "kdloss/backend/cuda/launch.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/core/error.hpp"

namespace kdloss::backend::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    ::kdloss::detail::fail("kdloss: CUDA error in ", what, ": ", cudaGetErrorName(status), ": ",
                           cudaGetErrorString(status));
}

/// Checks the launch just issued (configuration errors surface here, asynchronously-detected ones later).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

inline cudaStream_t stream_of(Stream s) { return static_cast<cudaStream_t>(s.handle); }

/// Makes `device` current for the call and restores the caller's device after it.
class DeviceGuard {
 public:
  explicit DeviceGuard(Device device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device.index) check(cudaSetDevice(device.index), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

template <class Acc, class T>
__device__ __forceinline__ Acc load_as(const T* p) {
  return static_cast<Acc>(*p);
}
template <class Acc>
__device__ __forceinline__ Acc load_as(const __half* p) {
  return static_cast<Acc>(__half2float(*p));
}
template <class Acc>
__device__ __forceinline__ Acc load_as(const __nv_bfloat16* p) {
  return static_cast<Acc>(__bfloat162float(*p));
}
template <class T, class Acc>
__device__ __forceinline__ void store_as(T* p, Acc v) {
  *p = static_cast<T>(v);
}
template <>
__device__ __forceinline__ void store_as<__half, float>(__half* p, float v) {
  *p = __float2half_rn(v);
}
template <>
__device__ __forceinline__ void store_as<__nv_bfloat16, float>(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16_rn(v);
}

}  // namespace kdloss::backend::cuda

