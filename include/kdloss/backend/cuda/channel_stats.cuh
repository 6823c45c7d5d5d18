// kdloss/backend/cuda/channel_stats.cuh: the per-channel passes of expr/channel_stats.hpp on the GPU
// (the counterparts of backend/cpu/channel_stats.hpp).
//
// A reduction runs one block per (slice, channel): slice s of a channel is a fixed range of its
// B*H*W elements (channel_stats_geometry.hpp), each thread reduces a fixed stride of it in the
// accumulation type, and the block combines its threads with CUB's BlockReduce (a fixed tree). A
// second kernel, one thread per channel, merges the slices in order in double and calls the
// finaliser. No atomics: the bits depend on the shape alone. Moments use Welford's update per
// thread and Chan's merge (expr::Moments) across threads and slices.
#pragma once
#include <cub/block/block_reduce.cuh>
#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>

#include "kdloss/backend/cuda/channel_stats_geometry.hpp"
#include "kdloss/backend/cuda/runtime.cuh"
#include "kdloss/config.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/expr/channel_stats.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda::channel_stats {

namespace detail {

/// Where element e (row-major over b, h, w) of channel c of a rank-4 view lies.
struct Plane {
  std::int64_t h, w, sb, sc, sh, sw;
  __device__ std::int64_t offset(std::int64_t c, std::int64_t e) const {
    const std::int64_t hw = h * w, b = e / hw, r = e - b * hw, y = r / w, x = r - y * w;
    return c * sc + b * sb + y * sh + x * sw;
  }
};
template <class T>
Plane plane_of(const View<T>& v) {
  return Plane{v.shape[2], v.shape[3], v.strides[0], v.strides[1], v.strides[2], v.strides[3]};
}

/// What a reduction keeps per thread, block and slice: expr::Moments (count, mean, m2) for
/// channel_moments, or (sum g, sum g (x - center), unused) for channel_cross_sums.
template <class Acc>
using Summary = expr::Moments<Acc>;

/// channel_moments: Welford's update per value, Chan's merge; the slices merge in order in double.
struct MomentsPass {
  template <class Acc>
  __device__ static void add(Summary<Acc>& s, Acc x, Acc, Acc) {
    s.count += Acc(1);
    const Acc d = x - s.mean;
    s.mean += d / s.count;
    s.m2 += d * (x - s.mean);
  }
  template <class Acc>
  __device__ static Summary<Acc> merge(const Summary<Acc>& a, const Summary<Acc>& b) {
    return Summary<Acc>::merge(a, b);
  }
  template <class Fin>
  __device__ static void finish(std::int64_t c, const Summary<double>& s, const Fin& fin) {
    fin(c, s.count, s.count == 0 ? CUDART_NAN : s.mean, s.m2);
  }
};
/// channel_cross_sums: plain sums of g and g (x - center).
struct CrossPass {
  template <class Acc>
  __device__ static void add(Summary<Acc>& s, Acc x, Acc g, Acc center) {
    s.count += g;
    s.mean += g * (x - center);
  }
  template <class Acc>
  __device__ static Summary<Acc> merge(const Summary<Acc>& a, const Summary<Acc>& b) {
    return Summary<Acc>{a.count + b.count, a.mean + b.mean, Acc(0)};
  }
  template <class Fin>
  __device__ static void finish(std::int64_t c, const Summary<double>& s, const Fin& fin) {
    fin(c, s.count, s.mean);
  }
};
template <class Pass>
struct MergeOp {
  template <class Acc>
  __device__ Summary<Acc> operator()(const Summary<Acc>& a, const Summary<Acc>& b) const {
    return Pass::merge(a, b);
  }
};

/// Zero centre (channel_moments reads no g and no centre).
struct NoCenter {
  __device__ double operator()(std::int64_t) const { return 0.0; }
};

/// One block per (slice, channel): the slice's summary, three doubles per (channel, slice) in `part`.
/// Slice s of a channel is its elements [s * chunk, (s + 1) * chunk). g may be null (channel_moments).
template <class Acc, class Pass, class X, class G, class Center>
__global__ void __launch_bounds__(kThreads) partial_kernel(const X* x, Plane px, const G* g, Plane pg, Center center,
                                                           std::int64_t channels, std::int64_t per, int splits,
                                                           double* part) {
  using Reduce = cub::BlockReduce<Summary<Acc>, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  const std::int64_t chunk = (per + splits - 1) / splits, e0 = blockIdx.x * chunk;
  const std::int64_t e1 = e0 + chunk < per ? e0 + chunk : per;
  for (std::int64_t c = blockIdx.y; c < channels; c += gridDim.y) {
    const Acc m = static_cast<Acc>(center(c));
    Summary<Acc> s{Acc(0), Acc(0), Acc(0)};
    for (std::int64_t e = e0 + threadIdx.x; e < e1; e += kThreads)
      Pass::add(s, load_as<Acc>(x + px.offset(c, e)), g ? load_as<Acc>(g + pg.offset(c, e)) : Acc(0), m);
    const Summary<Acc> r = Reduce(temp).Reduce(s, MergeOp<Pass>{});
    if (threadIdx.x == 0) {
      double* p = part + (c * splits + blockIdx.x) * 3;
      p[0] = static_cast<double>(r.count);
      p[1] = static_cast<double>(r.mean);
      p[2] = static_cast<double>(r.m2);
    }
    __syncthreads();
  }
}

/// One thread per channel: merges the channel's slices in order (double) and calls the finaliser.
template <class Pass, class Fin>
__global__ void final_kernel(const double* part, std::int64_t channels, int splits, Fin fin) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  Summary<double> s{0, 0, 0};
  for (int k = 0; k < splits; ++k) {
    const double* p = part + (c * splits + k) * 3;
    s = Pass::merge(s, Summary<double>{p[0], p[1], p[2]});
  }
  Pass::finish(c, s, fin);
}

struct Strides4 {
  std::int64_t v[4];
};
template <class T>
Strides4 strides4(const View<T>& v) {
  return Strides4{{v.strides[0], v.strides[1], v.strides[2], v.strides[3]}};
}

template <class Acc, class X, class G, class O>
__global__ void affine_kernel(const X* x, Strides4 xs, const G* g, Strides4 gs, O* out, Strides4 os, std::int64_t C,
                              std::int64_t H, std::int64_t W, std::int64_t numel, expr::ChannelAffine f) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t w = i % W, h = (i / W) % H, c = (i / (W * H)) % C, b = i / (W * H * C);
    Acc v = f.shift ? static_cast<Acc>(f.shift[c]) : Acc(0);
    if (f.scale_x) {
      const Acc m = f.center ? static_cast<Acc>(f.center[c]) : Acc(0);
      v += static_cast<Acc>(f.scale_x[c]) *
           (load_as<Acc>(x + b * xs.v[0] + c * xs.v[1] + h * xs.v[2] + w * xs.v[3]) - m);
    }
    if (f.scale_g)
      v += static_cast<Acc>(f.scale_g[c]) * load_as<Acc>(g + b * gs.v[0] + c * gs.v[1] + h * gs.v[2] + w * gs.v[3]);
    store_as(out + b * os.v[0] + c * os.v[1] + h * os.v[2] + w * os.v[3], v);
  }
}

template <class F>
__global__ void index_kernel(std::int64_t n, F f) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c < n) f(c);
}

inline dim3 reduce_grid(std::int64_t channels, int splits) {
  return dim3(static_cast<unsigned>(splits), static_cast<unsigned>(channels < 65535 ? (channels < 1 ? 1 : channels) : 65535));
}
inline unsigned channel_blocks(std::int64_t channels) {
  return static_cast<unsigned>((channels + kThreads - 1) / kThreads < 1 ? 1 : (channels + kThreads - 1) / kThreads);
}

}  // namespace detail

/// Launches a reduction pass over the channels of x (and g) and its per-channel merge.
template <class Acc, class Pass, class X, class G, class Center, class Fin>
void reduce_channels(const View<const X>& x, const G* g, detail::Plane pg, Center center, double* part, Fin fin,
                     cudaStream_t stream, const char* what) {
  const std::int64_t channels = x.shape[1], per = x.shape[0] * x.shape[2] * x.shape[3];
  if (channels == 0) return;
  const int s = splits(per);
  detail::partial_kernel<Acc, Pass><<<detail::reduce_grid(channels, s), kThreads, 0, stream>>>(
      x.data, detail::plane_of(x), g, pg, center, channels, per, s, part);
  check_launch(what);
  detail::final_kernel<Pass><<<detail::channel_blocks(channels), kThreads, 0, stream>>>(part, channels, s, fin);
  check_launch(what);
}

/// fin(c, count, mean, m2) per channel of x [B, C, H, W]; `part` holds partial_doubles(C, B*H*W).
template <class Acc, class T, class Fin>
void channel_moments(const View<const T>& x, double* part, Fin fin, cudaStream_t stream) {
  reduce_channels<Acc, detail::MomentsPass>(x, static_cast<const T*>(nullptr), detail::Plane{}, detail::NoCenter{},
                                            part, fin, stream, "channel_moments");
}

/// fin(c, sum g, sum g * (x - center(c))) per channel.
template <class Acc, class X, class G, class Center, class Fin>
void channel_cross_sums(const View<const X>& x, const View<const G>& g, Center center, double* part, Fin fin,
                        cudaStream_t stream) {
  reduce_channels<Acc, detail::CrossPass>(x, g.data, detail::plane_of(g), center, part, fin, stream,
                                          "channel_cross_sums");
}

/// out = scale_g[c] * g + scale_x[c] * (x - center[c]) + shift[c].
template <class Acc, class X, class G, class O>
void channel_affine(const View<const X>& x, const View<const G>& g, const View<O>& out, const expr::ChannelAffine& f,
                    cudaStream_t stream) {
  const std::int64_t numel = out.numel();
  if (numel == 0) return;
  detail::affine_kernel<Acc><<<grid_for(numel), kBlock, 0, stream>>>(
      x.data, f.scale_x ? detail::strides4(x) : detail::Strides4{}, g.data, f.scale_g ? detail::strides4(g) : detail::Strides4{},
      out.data, detail::strides4(out), out.shape[1], out.shape[2], out.shape[3], numel, f);
  check_launch("channel_affine");
}

/// f(c) for c in [0, n), on the device.
template <class F>
void for_each_channel(std::int64_t n, F f, cudaStream_t stream) {
  if (n == 0) return;
  detail::index_kernel<<<detail::channel_blocks(n), kThreads, 0, stream>>>(n, f);
  check_launch("for_each_channel");
}

} } }  // namespace kdloss::backend::cuda::channel_stats
