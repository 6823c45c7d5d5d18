// Host-callable GPU runs of the CUDA executor (implemented in executor_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

#include "kdloss/core/view.hpp"

namespace kdloss_test {

/// One operand for the GPU helpers: its storage, copied to the device as is, and the view's
/// geometry inside it (the data pointer is storage + offset).
struct GpuOperand {
  std::vector<double> storage;
  std::int64_t offset = 0;
  kdloss::Dims shape, strides;
};

/// Element type of the inputs on the device. f16 inputs accumulate in float and write float
/// from reduce_into; transform_reduce writes its map output as f16.
enum class GpuDtype { f32, f64, f16 };

struct GpuTransformReduceResult {
  double total = 0;
  std::vector<double> out_storage;  // the whole output storage after the call
};

/// backend::cuda::transform_reduce of DiffAndProduct over `full` (inputs a, b; output out).
GpuTransformReduceResult gpu_transform_reduce(GpuDtype dtype, const kdloss::Dims& full, const GpuOperand& a,
                                              const GpuOperand& b, const GpuOperand& out);

/// backend::cuda::reduce_into of ProductPlusSelf over `full` into out; returns the whole output storage.
std::vector<double> gpu_reduce_into(GpuDtype dtype, const kdloss::Dims& full, const GpuOperand& a,
                                    const GpuOperand& b, const GpuOperand& out);

}  // namespace kdloss_test
