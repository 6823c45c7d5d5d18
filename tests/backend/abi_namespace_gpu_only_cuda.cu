// The nvcc side of test_abi_namespace.cpp for a .cu file built with KDLOSS_DISABLE_HOST_BACKEND (tests/CMakeLists.txt
// defines it for every *_cuda.cu file but abi_namespace_cuda.cu). Needs no GPU: only the device checks run.
#include "backend/abi_namespace_gpu.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/losses/feature/pointwise.hpp"

#if KDLOSS_HOST_BACKEND_ENABLED
#error "abi_namespace_gpu_only_cuda.cu must be compiled with KDLOSS_DISABLE_HOST_BACKEND (tests/CMakeLists.txt)"
#endif

namespace kdloss_test {

std::string abi_namespace_of_gpu_only_tu() { return KDLOSS_TEST_STRINGIFY(KDLOSS_ABI_NAMESPACE); }

bool gpu_only_tu_accepts_device_views() {
  try {
    kdloss::detail::require_backend<float>("abi test", kdloss::Device::cuda(0));
    return true;
  } catch (const kdloss::Error&) {
    return false;
  }
}

void mse_loss_in_gpu_only_tu(const kdloss::View<const float>& student, const kdloss::View<const float>& teacher,
                             float* value) {
  kdloss::mse_loss(student, teacher, kdloss::host_scalar(value));
}

}  // namespace kdloss_test
