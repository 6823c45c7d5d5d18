// GPU side of test_max_pool.cpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kdloss/ops/max_pool.hpp"
#include "ops/max_pool_gpu.hpp"
#include "support/device_buffer.cuh"
#include "support/map_layout.hpp"

namespace kdloss_test {
namespace {

template <class T>
std::vector<double> run(bool channels_last, bool with_reserve, const std::vector<double>& x,
                        const std::vector<double>& gy, const kdloss::Dims& xs, std::int64_t s) {
  const kdloss::Dims ys{xs[0], xs[1], xs[2] / s, xs[3] / s};
  const kdloss::Dims xst = map_strides(xs, channels_last), yst = map_strides(ys, channels_last);
  DeviceBuffer<T> dx(from_double<T>(map_place(x, xs, xst))), dgy(from_double<T>(map_place(gy, ys, yst)));
  DeviceBuffer<T> dy(gy.size()), dgx(x.size()), dgx2(x.size()), dy2(gy.size());
  kdloss::ops::MaxPool2dArgs<T> a;
  a.x = kdloss::View<const T>(dx.ptr, xs, xst, kdloss::Device::cuda(0));
  a.options.stride = s;
  const std::size_t bytes = kdloss::ops::max_pool2d_reserve_bytes(a);
  DeviceBuffer<unsigned char> keep(bytes + 1);  // cudaMalloc is 256-byte aligned
  if (with_reserve) a.reserve = {keep.ptr, bytes};
  a.y = kdloss::View<T>(dy.ptr, ys, yst, kdloss::Device::cuda(0));
  kdloss::ops::max_pool2d(a, kdloss::Mode::forward);
  kdloss::ops::max_pool2d_backward(a.x, kdloss::View<const T>(dgy.ptr, ys, yst, kdloss::Device::cuda(0)),
                                   kdloss::View<T>(dgx.ptr, xs, xst, kdloss::Device::cuda(0)), a.options, a.reserve);
  kdloss::ops::max_pool2d_forward_backward(a.x, kdloss::View<const T>(dgy.ptr, ys, yst, kdloss::Device::cuda(0)),
                                           kdloss::View<T>(dy2.ptr, ys, yst, kdloss::Device::cuda(0)),
                                           kdloss::View<T>(dgx2.ptr, xs, xst, kdloss::Device::cuda(0)), a.options,
                                           a.reserve);
  std::vector<double> out = map_gather(to_double(dy.to_host()), ys, yst);
  const auto g1 = map_gather(to_double(dgx.to_host()), xs, xst), g2 = map_gather(to_double(dgx2.to_host()), xs, xst);
  out.insert(out.end(), g1.begin(), g1.end());
  out.insert(out.end(), g2.begin(), g2.end());
  return out;
}

}  // namespace

std::vector<double> max_pool_on_gpu(int dtype, bool channels_last, bool with_reserve, const std::vector<double>& x,
                                    const std::vector<double>& grad_y, std::int64_t B, std::int64_t C, std::int64_t H,
                                    std::int64_t W, std::int64_t s) {
  const kdloss::Dims xs{B, C, H, W};
  switch (dtype) {
    case 1: return run<double>(channels_last, with_reserve, x, grad_y, xs, s);
    case 2: return run<__half>(channels_last, with_reserve, x, grad_y, xs, s);
    case 3: return run<__nv_bfloat16>(channels_last, with_reserve, x, grad_y, xs, s);
    default: return run<float>(channels_last, with_reserve, x, grad_y, xs, s);
  }
}

}  // namespace kdloss_test
