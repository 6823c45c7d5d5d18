// Host-callable GPU runs of the softmax ops (softmax_cuda.cu).
#pragma once
#include <vector>

#include "kdloss/core/view.hpp"

namespace kdloss_test {
/// op: 0 softmax(T=0.5, scale 3), 1 log_softmax(T=0.5), 2 softmax_backward(y=x, g), 3 log_softmax_backward(y=x, g);
/// axis 1; dtype 0 float, 1 double, 2 half, 3 bfloat16 (the inputs converted through float, as
/// as_gpu_dtype does).
std::vector<double> softmax_op_on_gpu(int op, int dtype, const std::vector<double>& x, const std::vector<double>& g,
                                      const kdloss::Dims& shape);
}  // namespace kdloss_test
