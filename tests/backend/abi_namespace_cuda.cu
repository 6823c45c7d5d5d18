// The nvcc side of test_abi_namespace.cpp (see abi_namespace_gpu.hpp).
#include "backend/abi_namespace_gpu.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/losses/feature/pointwise.hpp"

namespace kdloss_test {

std::string abi_namespace_of_cuda_tu() { return KDLOSS_TEST_STRINGIFY(KDLOSS_ABI_NAMESPACE); }

const void* require_backend_address_in_cuda_tu() {
  return reinterpret_cast<const void*>(&kdloss::detail::require_backend<float>);
}

bool cuda_tu_accepts_device_views() {
  try {
    kdloss::detail::require_backend<float>("abi test", kdloss::Device::cuda(0));
    return true;
  } catch (const kdloss::Error&) {
    return false;
  }
}

float mse_loss_in_cuda_tu(const kdloss::View<const float>& student, const kdloss::View<const float>& teacher) {
  float value = -1.f;
  kdloss::mse_loss(student, teacher, kdloss::host_scalar(&value));
  return value;
}

}  // namespace kdloss_test
