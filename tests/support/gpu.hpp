// GPU probe shared by the test main, the GPU cases and their *_cuda.cu helpers.
#pragma once
#include <string>

namespace kdloss_test {
/// True when a CUDA device is present (always false in builds without CUDA).
bool gpu_available();
/// What the probe found, printed by the test main.
std::string gpu_status();
}  // namespace kdloss_test
