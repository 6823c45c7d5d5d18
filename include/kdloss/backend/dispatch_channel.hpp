// kdloss/backend/dispatch_channel.hpp: sends the per-channel passes of expr/channel_stats.hpp to the
// backend of the device their views live on (backend/cpu/channel_stats.hpp, backend/cuda/channel_stats.cuh).
// Views are rank 4 [B, C, H, W] (expr::as_channel_space); the functors are KDLOSS_HOST_DEVICE and run
// where the statistics live.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kdloss/backend/cpu/channel_stats.hpp"
#include "kdloss/backend/cuda/channel_stats_geometry.hpp"
#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/channel_stats.hpp"

#if KDLOSS_CUDA_ENABLED
#include "kdloss/backend/cuda/channel_stats.cuh"
#endif

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detail {

/// Scratch of one per-channel reduction over a [B, C, H, W] space: the GPU's per-slice partials (the
/// host keeps its own). Sized the same whether or not this translation unit has the CUDA backend.
inline double* carve_channel_partials(Carver& carver, Device device, const Dims& shape) {
  if (device.is_host()) return nullptr;
  return carver.take<double>(static_cast<std::size_t>(
      backend::cuda::channel_stats::partial_doubles(shape[1], shape[0] * shape[2] * shape[3])));
}

/// fin(c, count, mean, m2) for every channel of x (m2: sum of squared deviations from the mean).
template <class Acc, class T, class Fin>
void channel_moments(Device device, Stream stream, const View<const T>& x, double* partials, Fin fin) {
  if (device.is_host()) {
    if constexpr (host_types_v<T>) backend::cpu::channel_moments(x, fin);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::channel_stats::channel_moments<Acc>(x, partials, fin, backend::cuda::stream_of(stream));
#else
  (void)stream;
  (void)partials;
#endif
}

/// fin(c, sum g, sum g * (x - center(c))) for every channel.
template <class Acc, class X, class G, class Center, class Fin>
void channel_cross_sums(Device device, Stream stream, const View<const X>& x, const View<const G>& g, Center center,
                        double* partials, Fin fin) {
  if (device.is_host()) {
    if constexpr (host_types_v<X, G>) backend::cpu::channel_cross_sums(x, g, center, fin);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::channel_stats::channel_cross_sums<Acc>(x, g, center, partials, fin, backend::cuda::stream_of(stream));
#else
  (void)stream;
  (void)partials;
#endif
}

/// out = scale_g[c] * g + scale_x[c] * (x - center[c]) + shift[c] (x, g unread when their scale is null).
template <class Acc, class X, class G, class O>
void channel_affine(Device device, Stream stream, const View<const X>& x, const View<const G>& g, const View<O>& out,
                    const expr::ChannelAffine& f) {
  if (device.is_host()) {
    if constexpr (host_types_v<X, G, O>) backend::cpu::channel_affine(x, g, out, f);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::channel_stats::channel_affine<Acc>(x, g, out, f, backend::cuda::stream_of(stream));
#else
  (void)stream;
#endif
}

/// f(c) for c in [0, n) on `device` (per-channel coefficients from parameters that live there).
template <class F>
void for_each_channel(Device device, Stream stream, std::int64_t n, F f) {
  if (device.is_host()) {
    if constexpr (KDLOSS_HOST_BACKEND_ENABLED) backend::cpu::for_each_channel(n, f);
    return;
  }
#if KDLOSS_CUDA_ENABLED
  backend::cuda::DeviceGuard guard(device);
  backend::cuda::channel_stats::for_each_channel(n, f, backend::cuda::stream_of(stream));
#else
  (void)stream;
#endif
}

} } }  // namespace kdloss::detail
