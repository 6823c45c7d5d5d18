// GPU probe of CUDA builds: runs the GPU cases only when a device answers.
#include <cuda_runtime.h>

#include <string>

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
}  // namespace kdloss_test
