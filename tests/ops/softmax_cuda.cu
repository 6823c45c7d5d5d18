// GPU side of test_softmax.cpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kdloss/ops/softmax.hpp"
#include "ops/softmax_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {
template <class T>
std::vector<double> run(int op, const std::vector<double>& xh, const std::vector<double>& gh, const kdloss::Dims& shape) {
  using namespace kdloss;
  DeviceBuffer<T> x(from_double<T>(xh)), g(from_double<T>(gh)), y(xh.size());
  auto xv = cuda_view<const T>(x.ptr, shape);
  auto gv = cuda_view<const T>(g.ptr, shape);
  auto yv = cuda_view(y.ptr, shape);
  if (op == 0) ops::softmax(xv, 1, yv, {0.5, 3.0});
  if (op == 1) ops::log_softmax(xv, 1, yv, {0.5});
  if (op == 2) ops::softmax_backward(xv, gv, 1, yv, {0.5, 3.0});
  if (op == 3) ops::log_softmax_backward(xv, gv, 1, yv, {0.5});
  return to_double(y.to_host());
}
}  // namespace
std::vector<double> softmax_op_on_gpu(int op, int dtype, const std::vector<double>& x, const std::vector<double>& g,
                                      const kdloss::Dims& shape) {
  switch (dtype) {
    case 0: return run<float>(op, x, g, shape);
    case 1: return run<double>(op, x, g, shape);
    case 2: return run<__half>(op, x, g, shape);
    default: return run<__nv_bfloat16>(op, x, g, shape);
  }
}
}  // namespace kdloss_test
