// GPU probe shared by the test main, the GPU cases and their *_cuda.cu helpers.
#pragma once
#include <string>
#include <vector>

namespace kdloss_test {
/// True when a CUDA device is present (always false in builds without CUDA).
bool gpu_available();
/// What the probe found, printed by the test main.
std::string gpu_status();
/// The values as a device element type holds them (dtype 0 float, 1 double, 2 half, 3 bfloat16; the
/// device's own conversions), for references computed on exactly the inputs a GPU run saw. CUDA builds only.
std::vector<double> as_gpu_dtype(int dtype, const std::vector<double>& values);
}  // namespace kdloss_test
