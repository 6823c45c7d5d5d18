// GPU side of test_ssim.cpp, test_ms_ssim.cpp and test_gaussian_filter.cpp: runs the library on
// device buffers with a stream and a queried workspace.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>

#include "kdloss/losses/ssim/ssim.hpp"
#include "kdloss/ops/filter.hpp"
#include "losses/ssim/ssim_gpu.hpp"
#include "support/device_buffer.cuh"

using namespace kdloss;

namespace kdloss_test {
namespace {


/// NCHW values stored channel-last when asked: returns storage and the logical view's strides.
std::vector<double> store(const std::vector<double>& v, const Dims& shape, bool channel_last, Dims* strides) {
  if (!channel_last) {
    *strides = contiguous_strides(shape);
    return v;
  }
  const std::int64_t B = shape[0], C = shape[1], H = shape[2], W = shape[3];
  *strides = Dims{H * W * C, 1, W * C, C};
  std::vector<double> out(v.size());
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t w = 0; w < W; ++w) out[((b * H + h) * W + w) * C + c] = v[((b * C + c) * H + h) * W + w];
  return out;
}
std::vector<double> load(const std::vector<double>& stored, const Dims& shape, bool channel_last) {
  if (!channel_last) return stored;
  const std::int64_t B = shape[0], C = shape[1], H = shape[2], W = shape[3];
  std::vector<double> out(stored.size());
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t w = 0; w < W; ++w) out[((b * C + c) * H + h) * W + w] = stored[((b * H + h) * W + w) * C + c];
  return out;
}

/// Output shape of a call (one element for reduced values).
Dims value_shape(const GpuSsimCall& c, const Dims& map_shape) {
  switch (c.kind) {
    case GpuSsimKind::loss: return c.reduction == Reduction::none ? map_shape : Dims{};
    case GpuSsimKind::map: return map_shape;
    case GpuSsimKind::mixture: return Dims{};
    default:
      return c.channel == ChannelReduction::mean        ? Dims{}
             : c.channel == ChannelReduction::per_image ? Dims{c.shape[0]}
                                                        : Dims{c.shape[0], c.shape[1]};
  }
}

template <class T>
GpuSsimResult run(const GpuSsimCall& c, const std::vector<double>& s_host, const std::vector<double>& t_host) {
  cudaStream_t stream;
  cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  const Dims& shape = c.shape;
  Dims strides;
  DeviceBuffer<T> s(from_double<T>(store(s_host, shape, c.channel_last, &strides)));
  DeviceBuffer<T> t(from_double<T>(store(t_host, shape, c.channel_last, &strides)));
  auto sv = cuda_view<const T>(s.ptr, shape, strides);
  auto tv = cuda_view<const T>(t.ptr, shape, strides);
  const std::int64_t k = c.ssim.window_size;
  const bool valid = c.ssim.padding == ops::Padding::valid;
  const Dims map_shape{shape[0], shape[1], valid ? shape[2] - k + 1 : shape[2], valid ? shape[3] - k + 1 : shape[3]};
  const Dims vshape = value_shape(c, map_shape);
  const auto vn = static_cast<std::size_t>(vshape.product());
  DeviceBuffer<T> out(vn), gs(s.count), gt(s.count), up(std::vector<T>(vn, T(1.0f)));
  auto ov = View<T>(out.ptr, vshape, contiguous_strides(vshape), Device::cuda());
  auto upv = View<const T>(up.ptr, vshape, contiguous_strides(vshape), Device::cuda());
  auto gsv = cuda_view(gs.ptr, shape, strides);
  auto gtv = c.teacher_grad ? cuda_view(gt.ptr, shape, strides) : View<T>{};
  std::size_t bytes = 0;
  MsSsimL1Options mix;
  mix.ms_ssim = c.ms;
  mix.l1_weight = c.l1_weight;
  switch (c.kind) {
    case GpuSsimKind::loss:
    case GpuSsimKind::map: bytes = ssim_loss_workspace_bytes(sv, c.ssim); break;
    case GpuSsimKind::index: bytes = ssim_index_workspace_bytes(sv, c.ms); break;
    case GpuSsimKind::ms_ssim: bytes = ms_ssim_workspace_bytes(sv, c.ms); break;
    case GpuSsimKind::mixture: bytes = ms_ssim_l1_loss_workspace_bytes(sv, mix); break;
  }
  DeviceBuffer<unsigned char> ws(bytes);
  const Exec ex{Workspace{ws.ptr, bytes}, Stream(stream)};
  switch (c.kind) {
    case GpuSsimKind::loss:
      if (c.fused) ssim_loss_forward_backward(sv, tv, ov, gsv, gtv, c.ssim, c.reduction, ex);
      else ssim_loss(sv, tv, ov, c.ssim, c.reduction, ex), ssim_loss_backward(sv, tv, upv, gsv, gtv, c.ssim, c.reduction, ex);
      break;
    case GpuSsimKind::map:
      ssim_map(sv, tv, ov, c.ssim, ex);
      ssim_map_backward(sv, tv, upv, gsv, gtv, c.ssim, ex);
      break;
    case GpuSsimKind::index:
      if (c.fused) ssim_index_forward_backward(sv, tv, ov, gsv, c.ms, c.channel, ex);
      else ssim_index(sv, tv, ov, c.ms, c.channel, ex), ssim_index_backward(sv, tv, upv, gsv, gtv, c.ms, c.channel, ex);
      break;
    case GpuSsimKind::ms_ssim:
      if (c.fused) ms_ssim_forward_backward(sv, tv, ov, gsv, c.ms, c.channel, ex);
      else ms_ssim(sv, tv, ov, c.ms, c.channel, ex), ms_ssim_backward(sv, tv, upv, gsv, gtv, c.ms, c.channel, ex);
      break;
    case GpuSsimKind::mixture:
      if (c.fused) ms_ssim_l1_loss_forward_backward(sv, tv, ov, gsv, mix, ex);
      else ms_ssim_l1_loss(sv, tv, ov, mix, ex), ms_ssim_l1_loss_backward(sv, tv, upv, gsv, mix, ex);
      break;
  }
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  cudaStreamDestroy(stream);
  GpuSsimResult r;
  r.value = to_double(out.to_host());
  r.grad_s = load(to_double(gs.to_host()), shape, c.channel_last);
  if (c.teacher_grad) r.grad_t = load(to_double(gt.to_host()), shape, c.channel_last);
  return r;
}

template <class T>
std::vector<double> run_filter(const std::vector<double>& x_host, const Dims& shape, int window, double sigma,
                               ops::Padding padding, bool adjoint) {
  const ops::FilterOptions o{window, sigma, padding};
  const bool valid = padding == ops::Padding::valid;
  const Dims fshape{shape[0], shape[1], valid ? shape[2] - window + 1 : shape[2], valid ? shape[3] - window + 1 : shape[3]};
  const Dims in_shape = adjoint ? fshape : shape, out_shape = adjoint ? shape : fshape;
  DeviceBuffer<T> x(from_double<T>(x_host)), out(static_cast<std::size_t>(out_shape.product()));
  const std::size_t bytes = ops::gaussian_filter_workspace_bytes(cuda_view<const T>(x.ptr, shape), o);
  DeviceBuffer<unsigned char> ws(bytes);
  const Exec ex{Workspace{ws.ptr, bytes}, Stream()};
  if (adjoint) ops::gaussian_filter_backward(cuda_view<const T>(x.ptr, in_shape), cuda_view(out.ptr, out_shape), o, ex);
  else ops::gaussian_filter(cuda_view<const T>(x.ptr, in_shape), cuda_view(out.ptr, out_shape), o, ex);
  return to_double(out.to_host());
}

}  // namespace

GpuSsimResult ssim_on_gpu(const GpuSsimCall& call, const std::vector<double>& s, const std::vector<double>& t) {
  switch (call.dtype) {
    case 0: return run<float>(call, s, t);
    case 1: return run<double>(call, s, t);
    case 2: return run<__half>(call, s, t);
    default: return run<__nv_bfloat16>(call, s, t);
  }
}

std::vector<double> filter_on_gpu(int dtype, const std::vector<double>& x, const Dims& shape, int window, double sigma,
                                  int padding_value, bool adjoint) {
  // Option types are per kind of translation unit (config.hpp): the .cpp side passes the enum's value.
  const auto padding = static_cast<ops::Padding>(padding_value);
  switch (dtype) {
    case 0: return run_filter<float>(x, shape, window, sigma, padding, adjoint);
    case 1: return run_filter<double>(x, shape, window, sigma, padding, adjoint);
    case 2: return run_filter<__half>(x, shape, window, sigma, padding, adjoint);
    default: return run_filter<__nv_bfloat16>(x, shape, window, sigma, padding, adjoint);
  }
}

std::string ssim_gpu_workspace_error(std::size_t bytes, float* out_after) {
  const std::vector<double> host(2 * 3 * 16 * 16, 0.5);
  const Dims shape{2, 3, 16, 16};
  DeviceBuffer<float> s(from_double<float>(host)), t(from_double<float>(host)), out(std::vector<float>{42.0f});
  DeviceBuffer<unsigned char> ws(bytes);
  std::string error;
  try {
    ssim_loss(cuda_view<const float>(s.ptr, shape), cuda_view<const float>(t.ptr, shape), cuda_scalar(out.ptr), {},
              Reduction::mean, Exec{Workspace{ws.ptr, bytes}, Stream()});
  } catch (const Error& e) {
    error = e.what();
  }
  *out_after = out.to_host()[0];
  return error;
}

}  // namespace kdloss_test
