// GPU probe of CUDA builds: runs the GPU cases only when a device answers.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "support/device_buffer.cuh"
#include "support/gpu.hpp"

namespace kdloss_test {
namespace {
int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}
}  // namespace
bool gpu_available() { return device_count() > 0; }
std::string gpu_status() {
  if (device_count() == 0) return "no GPU present: GPU test cases skipped";
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  return std::string("GPU present (") + prop.name + "): GPU test cases run";
}
std::vector<double> as_gpu_dtype(int dtype, const std::vector<double>& values) {
  switch (dtype) {
    case 0: return to_double(from_double<float>(values));
    case 1: return values;
    case 2: return to_double(from_double<__half>(values));
    default: return to_double(from_double<__nv_bfloat16>(values));
  }
}
}  // namespace kdloss_test
