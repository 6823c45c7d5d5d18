// The nvcc side of test_abi_namespace.cpp: the same kdloss templates, instantiated in a .cu file.
#pragma once
#include <string>

#include "kdloss/core/view.hpp"

#define KDLOSS_TEST_STRINGIFY_(x) #x
#define KDLOSS_TEST_STRINGIFY(x) KDLOSS_TEST_STRINGIFY_(x)

namespace kdloss_test {
/// KDLOSS_ABI_NAMESPACE as the .cu translation unit sees it.
std::string abi_namespace_of_cuda_tu();
/// &kdloss::detail::require_backend<float> taken in the .cu translation unit.
const void* require_backend_address_in_cuda_tu();
/// kdloss::detail::require_backend<float> on a cuda:0 device, called in the .cu translation unit: true
/// when it accepts the device (the GPU backend is there; no GPU is needed, only the check runs).
bool cuda_tu_accepts_device_views();
/// kdloss::mse_loss in the .cu translation unit on host views the .cpp file built: the loss value, or the
/// kdloss::Error it throws (views are vocabulary types: one type on both sides).
float mse_loss_in_cuda_tu(const kdloss::View<const float>& student, const kdloss::View<const float>& teacher);

// The same from abi_namespace_gpu_only_cuda.cu, built with KDLOSS_DISABLE_HOST_BACKEND (GPU calls only).
std::string abi_namespace_of_gpu_only_tu();
bool gpu_only_tu_accepts_device_views();
/// kdloss::mse_loss there on host views: throws kdloss::Error, and *value stays as it was.
void mse_loss_in_gpu_only_tu(const kdloss::View<const float>& student, const kdloss::View<const float>& teacher,
                             float* value);
}  // namespace kdloss_test
