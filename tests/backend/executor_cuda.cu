// GPU side of test_executor.cpp: runs backend::cuda::transform_reduce and reduce_into on device
// copies of strided operands, on a stream of its own.
#include <cuda_fp16.h>

#include <tuple>
#include <vector>

#include "backend/executor_functors.hpp"
#include "backend/executor_gpu.hpp"
#include "kdloss/backend/cuda/executor.cuh"
#include "kdloss/backend/cuda/launch.hpp"
#include "support/device_buffer.cuh"

using namespace kdloss;

namespace kdloss_test {
namespace {

/// The reduced sum as it is.
struct Identity {
  KDLOSS_HOST_DEVICE double operator()(double total) const { return total; }
};

template <class T>
std::vector<T> to_type(const std::vector<double>& v) {
  std::vector<T> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = static_cast<T>(v[i]);
  return r;
}
template <>
std::vector<__half> to_type<__half>(const std::vector<double>& v) {
  std::vector<__half> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = __float2half_rn(static_cast<float>(v[i]));
  return r;
}
template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = static_cast<double>(v[i]);
  return r;
}
template <>
std::vector<double> to_double<__half>(const std::vector<__half>& v) {
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = static_cast<double>(__half2float(v[i]));
  return r;
}

/// An operand's storage on the device and its view.
template <class T>
struct DeviceOperand {
  DeviceBuffer<T> buffer;
  View<T> view;
  explicit DeviceOperand(const GpuOperand& op)
      : buffer(to_type<T>(op.storage)), view(cuda_view(buffer.ptr + op.offset, op.shape, op.strides)) {}
};

class ScopedStream {
 public:
  ScopedStream() { cuda_check(cudaStreamCreate(&stream_), "cudaStreamCreate"); }
  ~ScopedStream() { cudaStreamDestroy(stream_); }
  ScopedStream(const ScopedStream&) = delete;
  ScopedStream& operator=(const ScopedStream&) = delete;
  cudaStream_t get() const { return stream_; }
  void sync() const { cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

 private:
  cudaStream_t stream_{};
};

template <class T, class Acc, class O>
GpuTransformReduceResult run_transform_reduce(const Dims& full, const GpuOperand& a, const GpuOperand& b,
                                              const GpuOperand& out) {
  ScopedStream stream;
  DeviceOperand<T> da(a), db(b);
  DeviceOperand<O> dout(out);
  DeviceBuffer<double> partials(static_cast<std::size_t>(backend::cuda::reduce_blocks(full.product())));
  DeviceBuffer<double> total(std::vector<double>{-1.0});
  backend::cuda::transform_reduce<Acc>(full, DiffAndProduct{},
                                       std::tuple<View<const T>, View<const T>>{da.view, db.view},
                                       std::tuple<View<O>>{dout.view}, partials.ptr, Identity{}, total.ptr,
                                       stream.get());
  stream.sync();
  return {total.to_host()[0], to_double(dout.buffer.to_host())};
}

template <class T, class Acc, class O>
std::vector<double> run_reduce_into(const Dims& full, const GpuOperand& a, const GpuOperand& b,
                                    const GpuOperand& out) {
  ScopedStream stream;
  DeviceOperand<T> da(a), db(b);
  DeviceOperand<O> dout(out);
  backend::cuda::reduce_into<Acc>(full, ProductPlusSelf{}, std::tuple<View<const T>, View<const T>>{da.view, db.view},
                                  dout.view, stream.get());
  stream.sync();
  return to_double(dout.buffer.to_host());
}

}  // namespace

GpuTransformReduceResult gpu_transform_reduce(GpuDtype dtype, const Dims& full, const GpuOperand& a,
                                              const GpuOperand& b, const GpuOperand& out) {
  switch (dtype) {
    case GpuDtype::f32: return run_transform_reduce<float, float, float>(full, a, b, out);
    case GpuDtype::f64: return run_transform_reduce<double, double, double>(full, a, b, out);
    default: return run_transform_reduce<__half, float, __half>(full, a, b, out);
  }
}

std::vector<double> gpu_reduce_into(GpuDtype dtype, const Dims& full, const GpuOperand& a, const GpuOperand& b,
                                    const GpuOperand& out) {
  switch (dtype) {
    case GpuDtype::f32: return run_reduce_into<float, float, float>(full, a, b, out);
    case GpuDtype::f64: return run_reduce_into<double, double, double>(full, a, b, out);
    default: return run_reduce_into<__half, float, float>(full, a, b, out);
  }
}

}  // namespace kdloss_test
