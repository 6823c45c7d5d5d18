// GPU probe of builds without CUDA.
#include "support/gpu.hpp"

namespace kdloss_test {
bool gpu_available() { return false; }
std::string gpu_status() { return "built without CUDA: GPU test cases skipped"; }
}  // namespace kdloss_test
