// GPU side of the FBKD and pooling tests: runs the library on device buffers with a stream and a
// workspace sized by the queries.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <memory>
#include <string>
#include <vector>

#include "kdloss/losses/fbkd/fbkd.hpp"
#include "losses/fbkd/fbkd_gpu.hpp"
#include "losses/fbkd/fbkd_test_util.hpp"
#include "support/device_buffer.cuh"

using namespace kdloss;

namespace kdloss_test {
namespace {


struct StreamGuard {
  cudaStream_t stream{};
  StreamGuard() { cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate"); }
  ~StreamGuard() { cudaStreamDestroy(stream); }
};

template <class T>
std::vector<double> pooling(int op, const std::vector<double>& xh, const std::vector<double>& gh, const Dims& shape,
                            bool absolute) {
  StreamGuard sg;
  const Exec ex{Workspace{}, Stream(sg.stream)};
  DeviceBuffer<T> x(from_double<T>(xh)), g(from_double<T>(gh));
  const Dims spatial{shape[0], shape[2], shape[3]}, channel{shape[0], shape[1]};
  auto xv = cuda_view<const T>(x.ptr, shape);
  if (op == 0 || op == 1) {
    DeviceBuffer<T> out(static_cast<std::size_t>(op == 0 ? spatial.product() : channel.product()));
    if (op == 0)
      ops::mean_over_channels(xv, cuda_view(out.ptr, spatial), {absolute}, ex);
    else
      ops::mean_over_positions(xv, cuda_view(out.ptr, channel), {absolute}, ex);
    return to_double(out.to_host());
  }
  DeviceBuffer<T> gx(x.count);
  if (op == 2)
    ops::mean_over_channels_backward(xv, cuda_view<const T>(g.ptr, spatial), cuda_view(gx.ptr, shape), {absolute}, ex);
  else
    ops::mean_over_positions_backward(xv, cuda_view<const T>(g.ptr, channel), cuda_view(gx.ptr, shape), {absolute}, ex);
  return to_double(gx.to_host());
}

template <class T>
std::vector<double> masks(const std::vector<double>& sh, const std::vector<double>& th, const Dims& shape,
                          const fbkd::MaskOptions& options) {
  StreamGuard sg;
  DeviceBuffer<T> s(from_double<T>(sh)), t(from_double<T>(th));
  const Dims spatial{shape[0], shape[2], shape[3]}, channel{shape[0], shape[1]};
  DeviceBuffer<T> ms(static_cast<std::size_t>(spatial.product())), mc(static_cast<std::size_t>(channel.product()));
  auto sv = cuda_view<const T>(s.ptr, shape);
  DeviceBuffer<unsigned char> ws(fbkd::attention_masks_workspace_bytes(sv));
  fbkd::attention_masks(sv, cuda_view<const T>(t.ptr, shape), cuda_view(ms.ptr, spatial), cuda_view(mc.ptr, channel),
                        options, Exec{Workspace{ws.ptr, ws.count}, Stream(sg.stream)});
  auto r = to_double(ms.to_host());
  const auto c = to_double(mc.to_host());
  r.insert(r.end(), c.begin(), c.end());
  return r;
}

template <class T>
GpuLoss masked_feature(const std::vector<double>& ah, const std::vector<double>& th, const std::vector<double>& msh,
                       const std::vector<double>& mch, const Dims& shape, bool fused, double up) {
  StreamGuard sg;
  DeviceBuffer<T> a(from_double<T>(ah)), t(from_double<T>(th)), ms(from_double<T>(msh)), mc(from_double<T>(mch)), upv(from_double<T>({up})),
      out(1), grad(a.count);
  auto av = cuda_view<const T>(a.ptr, shape);
  auto tv = cuda_view<const T>(t.ptr, shape);
  auto msv = cuda_view<const T>(ms.ptr, {shape[0], shape[2], shape[3]});
  auto mcv = mch.empty() ? View<const T>{} : cuda_view<const T>(mc.ptr, {shape[0], shape[1]});
  DeviceBuffer<unsigned char> ws(fbkd::masked_feature_loss_workspace_bytes(av));
  const Exec ex{Workspace{ws.ptr, ws.count}, Stream(sg.stream)};
  if (fused) {
    fbkd::masked_feature_loss_forward_backward(av, tv, msv, mcv, cuda_scalar(out.ptr), cuda_view(grad.ptr, shape), ex);
  } else {
    fbkd::masked_feature_loss(av, tv, msv, mcv, cuda_scalar(out.ptr), ex);
    fbkd::masked_feature_loss_backward(av, tv, msv, mcv, cuda_scalar<const T>(upv.ptr), cuda_view(grad.ptr, shape), ex);
  }
  cuda_check(cudaStreamSynchronize(sg.stream), "cudaStreamSynchronize");
  return {to_double(out.to_host())[0], to_double(grad.to_host())};
}

template <class T>
GpuTotal total(const std::vector<GpuLevel>& levels, const fbkd::Config& config, int mode, double up) {
  StreamGuard sg;
  std::vector<std::unique_ptr<DeviceBuffer<T>>> keep;  // every device buffer of the call
  auto upload = [&](const std::vector<double>& host) {
    keep.push_back(std::make_unique<DeviceBuffer<T>>(from_double<T>(host)));
    return keep.back()->ptr;
  };
  auto alloc = [&](std::size_t n) {
    keep.push_back(std::make_unique<DeviceBuffer<T>>(n));
    return keep.back().get();
  };
  std::vector<fbkd::Level<T>> lv;
  struct Grads {
    DeviceBuffer<T>*a = nullptr, *s = nullptr, *c = nullptr, *sp = nullptr;
  };
  std::vector<Grads> grads;
  for (const GpuLevel& g : levels) {
    const Dims& sh = g.shape;
    const Dims spatial{sh[0], 1, sh[2], sh[3]}, channel{sh[0], sh[1]};
    fbkd::Level<T> l(cuda_view<const T>(upload(g.s), sh), cuda_view<const T>(upload(g.t), sh));
    if (!g.a.empty()) l.student_adapted = cuda_view<const T>(upload(g.a), sh);
    if (!g.c_hat.empty()) l.student_channel = cuda_view<const T>(upload(g.c_hat), channel);
    if (!g.s_hat.empty()) l.student_spatial = cuda_view<const T>(upload(g.s_hat), spatial);
    Grads gr;
    const auto n = static_cast<std::size_t>(sh.product());
    if (g.grad_a) l.grad_student_adapted = cuda_view((gr.a = alloc(n))->ptr, sh);
    if (g.grad_s) l.grad_student = cuda_view((gr.s = alloc(n))->ptr, sh);
    if (g.grad_c)
      l.grad_student_channel = cuda_view((gr.c = alloc(static_cast<std::size_t>(channel.product())))->ptr, channel);
    if (g.grad_sp)
      l.grad_student_spatial = cuda_view((gr.sp = alloc(static_cast<std::size_t>(spatial.product())))->ptr, spatial);
    lv.push_back(l);
    grads.push_back(gr);
  }
  DeviceBuffer<T> out(std::vector<T>{T(42.0f)}), upv(from_double<T>({up}));
  DeviceBuffer<unsigned char> ws(fbkd::total_loss_workspace_bytes(lv, config));
  const Exec ex{Workspace{ws.ptr, ws.count}, Stream(sg.stream)};
  if (mode == 0) fbkd::total_loss(lv, cuda_scalar(out.ptr), config, ex);
  if (mode == 1) fbkd::total_loss_backward(lv, cuda_scalar<const T>(upv.ptr), config, ex);
  if (mode == 2) fbkd::total_loss_forward_backward(lv, cuda_scalar(out.ptr), config, ex);
  cuda_check(cudaStreamSynchronize(sg.stream), "cudaStreamSynchronize");
  GpuTotal r;
  r.value = to_double(out.to_host())[0];
  for (const Grads& g : grads) {
    GpuLevelGrads h;
    if (g.a) h.a = to_double(g.a->to_host());
    if (g.s) h.s = to_double(g.s->to_host());
    if (g.c) h.c = to_double(g.c->to_host());
    if (g.sp) h.sp = to_double(g.sp->to_host());
    r.grads.push_back(h);
  }
  return r;
}

}  // namespace

std::vector<double> pooling_on_gpu(int op, int dtype, const std::vector<double>& x, const std::vector<double>& g,
                                   const Dims& shape, bool absolute) {
  switch (dtype) {
    case 0:
      return pooling<float>(op, x, g, shape, absolute);
    case 1:
      return pooling<double>(op, x, g, shape, absolute);
    case 2:
      return pooling<__half>(op, x, g, shape, absolute);
    default:
      return pooling<__nv_bfloat16>(op, x, g, shape, absolute);
  }
}

std::vector<double> masks_on_gpu(int dtype, const std::vector<double>& s, const std::vector<double>& t,
                                 const Dims& shape, int form, double spatial_temperature,
                                 double channel_temperature) {
  fbkd::MaskOptions options;
  options.form = static_cast<fbkd::MaskForm>(form);
  options.spatial_temperature = spatial_temperature;
  options.channel_temperature = channel_temperature;
  switch (dtype) {
    case 0:
      return masks<float>(s, t, shape, options);
    case 1:
      return masks<double>(s, t, shape, options);
    case 2:
      return masks<__half>(s, t, shape, options);
    default:
      return masks<__nv_bfloat16>(s, t, shape, options);
  }
}

GpuLoss masked_feature_on_gpu(int dtype, const std::vector<double>& a, const std::vector<double>& t,
                              const std::vector<double>& ms, const std::vector<double>& mc, const Dims& shape,
                              bool fused, double up) {
  switch (dtype) {
    case 0:
      return masked_feature<float>(a, t, ms, mc, shape, fused, up);
    case 1:
      return masked_feature<double>(a, t, ms, mc, shape, fused, up);
    case 2:
      return masked_feature<__half>(a, t, ms, mc, shape, fused, up);
    default:
      return masked_feature<__nv_bfloat16>(a, t, ms, mc, shape, fused, up);
  }
}

GpuTotal total_on_gpu(int dtype, const std::vector<GpuLevel>& levels, std::size_t preset, int mode, double up) {
  const fbkd::Config config = fbkd_test::presets().at(preset).config;
  switch (dtype) {
    case 0:
      return total<float>(levels, config, mode, up);
    case 1:
      return total<double>(levels, config, mode, up);
    case 2:
      return total<__half>(levels, config, mode, up);
    default:
      return total<__nv_bfloat16>(levels, config, mode, up);
  }
}

std::string total_gpu_workspace_error(std::size_t bytes, float* out_after) {
  const Dims shape{2, 4, 6, 5};
  const std::vector<double> host(static_cast<std::size_t>(shape.product()), 0.5);
  DeviceBuffer<float> s(from_double<float>(host)), t(from_double<float>(host)), out(std::vector<float>{42.0f});
  DeviceBuffer<float> c_hat(8), s_hat(60);
  fbkd::Level<float> l(cuda_view<const float>(s.ptr, shape), cuda_view<const float>(t.ptr, shape));
  l.student_channel = cuda_view<const float>(c_hat.ptr, {2, 4});
  l.student_spatial = cuda_view<const float>(s_hat.ptr, {2, 6, 5});
  DeviceBuffer<unsigned char> ws(bytes);
  std::string error;
  try {
    fbkd::total_loss(std::vector<fbkd::Level<float>>{l}, cuda_scalar(out.ptr), fbkd::Config::code_two_stage(),
                     Exec{Workspace{ws.ptr, bytes}, Stream()});
  } catch (const Error& e) {
    error = e.what();
  }
  *out_after = out.to_host()[0];
  return error;
}

}  // namespace kdloss_test
