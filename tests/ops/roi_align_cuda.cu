// GPU side of test_roi_align.cpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kdloss/ops/roi_align.hpp"
#include "ops/roi_align_gpu.hpp"
#include "support/device_buffer.cuh"
#include "support/map_layout.hpp"

namespace kdloss_test {
namespace {

template <class T>
std::vector<double> run(const RoiAlignGpuCase& c, const std::vector<double>& x, const std::vector<double>& boxes5,
                        const std::vector<double>& gy) {
  const std::int64_t K = static_cast<std::int64_t>(boxes5.size() / 5);
  const kdloss::Dims xs{c.B, c.C, c.H, c.W}, ys{K, c.C, c.ph, c.pw};
  const kdloss::Dims xst = map_strides(xs, c.channels_last), yst = map_strides(ys, c.channels_last);
  std::vector<double> boxes;
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(c.B + 1), 0);
  for (std::int64_t k = 0; k < K; ++k) {
    if (c.ragged) {
      boxes.insert(boxes.end(), boxes5.begin() + 5 * k + 1, boxes5.begin() + 5 * k + 5);
      ++offsets[static_cast<std::size_t>(boxes5[5 * k]) + 1];
    } else {
      boxes.insert(boxes.end(), boxes5.begin() + 5 * k, boxes5.begin() + 5 * k + 5);
    }
  }
  for (std::size_t b = 1; b < offsets.size(); ++b) offsets[b] += offsets[b - 1];
  DeviceBuffer<T> dx(from_double<T>(map_place(x, xs, xst))), dgy(from_double<T>(map_place(gy, ys, yst)));
  DeviceBuffer<T> dboxes(from_double<T>(boxes));
  DeviceBuffer<T> dy(gy.size()), dy2(gy.size()), dgx(x.size()), dgx2(x.size()), dgx3(x.size());
  const auto dev = kdloss::Device::cuda(0);
  kdloss::ops::RoiAlignArgs<T> a;
  a.x = kdloss::View<const T>(dx.ptr, xs, xst, dev);
  a.boxes = kdloss::View<const T>(dboxes.ptr, kdloss::Dims{K, c.ragged ? 4 : 5},
                                  kdloss::Dims{c.ragged ? 4 : 5, 1}, dev);
  if (c.ragged) a.offsets = kdloss::host_view<const std::int64_t>(offsets.data(), {c.B + 1});
  a.options.output_height = c.ph, a.options.output_width = c.pw, a.options.spatial_scale = c.scale;
  a.options.sampling_ratio = c.sampling, a.options.aligned = c.aligned;
  a.options.pool_mode = c.max_mode ? kdloss::ops::RoiPoolMode::max : kdloss::ops::RoiPoolMode::avg;
  const std::size_t bytes = kdloss::ops::roi_align_workspace_bytes(a);
  DeviceWorkspace ws(bytes + 1);
  const kdloss::Exec exec{kdloss::Workspace{ws.buffer.ptr, bytes}};
  const auto gyv = kdloss::View<const T>(dgy.ptr, ys, yst, dev);
  auto f = a;
  f.y = kdloss::View<T>(dy.ptr, ys, yst, dev);
  kdloss::ops::roi_align(f, kdloss::Mode::forward, exec);
  auto b = a;
  b.grad_y = gyv;
  b.grad_x = kdloss::View<T>(dgx.ptr, xs, xst, dev);
  kdloss::ops::roi_align(b, kdloss::Mode::backward, exec);
  b.grad_x = kdloss::View<T>(dgx2.ptr, xs, xst, dev);
  kdloss::ops::roi_align(b, kdloss::Mode::backward, exec);
  auto fb = b;
  fb.y = kdloss::View<T>(dy2.ptr, ys, yst, dev);
  fb.grad_x = kdloss::View<T>(dgx3.ptr, xs, xst, dev);
  kdloss::ops::roi_align(fb, kdloss::Mode::forward_backward, exec);
  cuda_check(cudaDeviceSynchronize(), "roi_align test sync");
  std::vector<double> out = map_gather(to_double(dy.to_host()), ys, yst);
  for (auto* buf : {&dgx, &dgx2}) {
    const auto g = map_gather(to_double(buf->to_host()), xs, xst);
    out.insert(out.end(), g.begin(), g.end());
  }
  const auto y2 = map_gather(to_double(dy2.to_host()), ys, yst);
  out.insert(out.end(), y2.begin(), y2.end());
  const auto g3 = map_gather(to_double(dgx3.to_host()), xs, xst);
  out.insert(out.end(), g3.begin(), g3.end());
  return out;
}

}  // namespace

std::vector<double> roi_align_on_gpu(const RoiAlignGpuCase& c, const std::vector<double>& x,
                                     const std::vector<double>& boxes5, const std::vector<double>& grad_y) {
  switch (c.dtype) {
    case 1: return run<double>(c, x, boxes5, grad_y);
    case 2: return run<__half>(c, x, boxes5, grad_y);
    case 3: return run<__nv_bfloat16>(c, x, boxes5, grad_y);
    default: return run<float>(c, x, boxes5, grad_y);
  }
}

}  // namespace kdloss_test
