// GPU side of test_softmax.cpp.
#include "kdloss/ops/softmax.hpp"
#include "ops/softmax_gpu.hpp"
#include "support/device_buffer.cuh"

namespace kdloss_test {
namespace {
template <class T>
std::vector<double> run(int op, const std::vector<double>& xh, const std::vector<double>& gh, const kdloss::Dims& shape) {
  using namespace kdloss;
  DeviceBuffer<T> x(std::vector<T>(xh.begin(), xh.end())), g(std::vector<T>(gh.begin(), gh.end())), y(xh.size());
  auto xv = cuda_view<const T>(x.ptr, shape);
  auto gv = cuda_view<const T>(g.ptr, shape);
  auto yv = cuda_view(y.ptr, shape);
  if (op == 0) ops::softmax(xv, 1, yv, {0.5, 3.0});
  if (op == 1) ops::log_softmax(xv, 1, yv, {0.5});
  if (op == 2) ops::softmax_backward(xv, gv, 1, yv, {0.5, 3.0});
  if (op == 3) ops::log_softmax_backward(xv, gv, 1, yv, {0.5});
  const auto host = y.to_host();
  return std::vector<double>(host.begin(), host.end());
}
}  // namespace
std::vector<double> softmax_op_on_gpu(int op, int dtype, const std::vector<double>& x, const std::vector<double>& g,
                                      const kdloss::Dims& shape) {
  return dtype == 1 ? run<double>(op, x, g, shape) : run<float>(op, x, g, shape);
}
}  // namespace kdloss_test
