// kdloss/backend/cuda/runtime.cuh: CUDA error checks, launch sizes and value conversions.
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <cstdint>
#include <string>

#include "kdloss/backend/cuda/launch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/convert.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/core/error.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    ::kdloss::detail::fail("kdloss: CUDA error in ", what, ": ", cudaGetErrorName(status), ": ",
                           cudaGetErrorString(status));
}

/// Checks the launch just issued (configuration errors surface here, asynchronously-detected ones later).
/// DeviceGuard has already refused to start over an error pending from earlier CUDA work, so an error
/// read here belongs to kdloss's own launches.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

/// Refuses to launch over an error that earlier CUDA work (not kdloss) left pending: cudaGetLastError
/// after our launch would return it, and kdloss would report someone else's error as its own. The error
/// is peeked, not cleared, so its owner's check still sees it.
inline void check_no_pending_error() {
  const cudaError_t earlier = cudaPeekAtLastError();
  if (earlier != cudaSuccess)
    ::kdloss::detail::fail("kdloss: a CUDA error was already pending before this kdloss call, left by earlier CUDA "
                           "work (not by kdloss); kdloss launched nothing: ",
                           cudaGetErrorName(earlier), ": ", cudaGetErrorString(earlier));
}

inline cudaStream_t stream_of(Stream s) { return static_cast<cudaStream_t>(s.handle); }

/// Makes `device` current for the call and restores the caller's device after it. Every dispatch to the
/// CUDA backend opens one, so it is also where an error pending from earlier work is refused.
class DeviceGuard {
 public:
  explicit DeviceGuard(Device device) {
    check_no_pending_error();
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device.index) check(cudaSetDevice(device.index), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// Element conversions: the one helper in core/convert.hpp.
using ::kdloss::load_as;
using ::kdloss::store_as;

} } }  // namespace kdloss::backend::cuda

