// kdloss/backend/cuda/channel_stats.cuh: the per-channel passes of expr/channel_stats.hpp on the GPU
// (the counterparts of backend/cpu/channel_stats.hpp).
//
// A reduction runs one block per (slice, channel): slice s of a channel is a fixed range of its
// B*H*W elements (channel_stats_geometry.hpp), each thread reduces a fixed stride of it in the
// accumulation type, and the block combines its threads with CUB's BlockReduce (a fixed tree). A
// second kernel, one thread per channel, merges the slices in order in double and calls the
// finaliser. No atomics: the bits depend on the shape alone. Moments use Welford's update per
// thread and Chan's merge across threads and slices.
#pragma once
#include <cub/block/block_reduce.cuh>
#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>

#include "kdloss/backend/cuda/channel_stats_geometry.hpp"
#include "kdloss/backend/cuda/runtime.cuh"
#include "kdloss/core/view.hpp"
#include "kdloss/expr/channel_stats.hpp"

namespace kdloss::backend::cuda::channel_stats {

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

template <class Acc>
struct Moments {
  Acc count, mean, m2;
};
/// Chan et al.'s merge of two (count, mean, m2) summaries.
template <class Acc>
struct MergeMoments {
  __device__ Moments<Acc> operator()(const Moments<Acc>& a, const Moments<Acc>& b) const {
    if (b.count == Acc(0)) return a;
    if (a.count == Acc(0)) return b;
    const Acc total = a.count + b.count, delta = b.mean - a.mean;
    return Moments<Acc>{total, a.mean + delta * (b.count / total), a.m2 + b.m2 + delta * delta * (a.count * b.count / total)};
  }
};
template <class Acc>
struct Pair {
  Acc g, gx;
};
template <class Acc>
struct AddPair {
  __device__ Pair<Acc> operator()(const Pair<Acc>& a, const Pair<Acc>& b) const { return Pair<Acc>{a.g + b.g, a.gx + b.gx}; }
};

__device__ inline void slice_range(std::int64_t per, int splits, std::int64_t& e0, std::int64_t& e1) {
  const std::int64_t chunk = (per + splits - 1) / splits;
  e0 = blockIdx.x * chunk;
  e1 = e0 + chunk < per ? e0 + chunk : per;
}

template <class Acc, class T>
__global__ void __launch_bounds__(kThreads)
    moments_partial(const T* x, Plane px, std::int64_t channels, std::int64_t per, int splits, double* part) {
  using Reduce = cub::BlockReduce<Moments<Acc>, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  std::int64_t e0, e1;
  slice_range(per, splits, e0, e1);
  for (std::int64_t c = blockIdx.y; c < channels; c += gridDim.y) {
    Moments<Acc> m{Acc(0), Acc(0), Acc(0)};
    for (std::int64_t e = e0 + threadIdx.x; e < e1; e += kThreads) {
      const Acc v = load_as<Acc>(x + px.offset(c, e));
      m.count += Acc(1);
      const Acc d = v - m.mean;
      m.mean += d / m.count;
      m.m2 += d * (v - m.mean);
    }
    const Moments<Acc> r = Reduce(temp).Reduce(m, MergeMoments<Acc>{});
    if (threadIdx.x == 0) {
      double* p = part + (c * splits + blockIdx.x) * 3;
      p[0] = static_cast<double>(r.count);
      p[1] = static_cast<double>(r.mean);
      p[2] = static_cast<double>(r.m2);
    }
    __syncthreads();
  }
}

template <class Fin>
__global__ void moments_final(const double* part, std::int64_t channels, int splits, Fin fin) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  double count = 0, mean = 0, m2 = 0;
  for (int s = 0; s < splits; ++s) {
    const double* p = part + (c * splits + s) * 3;
    if (p[0] == 0) continue;
    const double total = count + p[0], delta = p[1] - mean;
    mean = count == 0 ? p[1] : mean + delta * (p[0] / total);
    m2 = count == 0 ? p[2] : m2 + p[2] + delta * delta * (count * p[0] / total);
    count = total;
  }
  fin(c, count, count == 0 ? CUDART_NAN : mean, m2);
}

template <class Acc, class X, class G, class Center>
__global__ void __launch_bounds__(kThreads) cross_partial(const X* x, Plane px, const G* g, Plane pg, Center center,
                                                          std::int64_t channels, std::int64_t per, int splits,
                                                          double* part) {
  using Reduce = cub::BlockReduce<Pair<Acc>, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  std::int64_t e0, e1;
  slice_range(per, splits, e0, e1);
  for (std::int64_t c = blockIdx.y; c < channels; c += gridDim.y) {
    const Acc m = static_cast<Acc>(center(c));
    Pair<Acc> s{Acc(0), Acc(0)};
    for (std::int64_t e = e0 + threadIdx.x; e < e1; e += kThreads) {
      const Acc gv = load_as<Acc>(g + pg.offset(c, e));
      s.g += gv;
      s.gx += gv * (load_as<Acc>(x + px.offset(c, e)) - m);
    }
    const Pair<Acc> r = Reduce(temp).Reduce(s, AddPair<Acc>{});
    if (threadIdx.x == 0) {
      double* p = part + (c * splits + blockIdx.x) * 3;
      p[0] = static_cast<double>(r.g);
      p[1] = static_cast<double>(r.gx);
    }
    __syncthreads();
  }
}

template <class Fin>
__global__ void cross_final(const double* part, std::int64_t channels, int splits, Fin fin) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  double sg = 0, sx = 0;
  for (int s = 0; s < splits; ++s) {
    sg += part[(c * splits + s) * 3];
    sx += part[(c * splits + s) * 3 + 1];
  }
  fin(c, sg, sx);
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

/// fin(c, count, mean, m2) per channel of x [B, C, H, W]; `part` holds partial_doubles(C, B*H*W).
template <class Acc, class T, class Fin>
void channel_moments(const View<const T>& x, double* part, Fin fin, cudaStream_t stream) {
  const std::int64_t channels = x.shape[1], per = x.shape[0] * x.shape[2] * x.shape[3];
  if (channels == 0) return;
  const int s = splits(per);
  detail::moments_partial<Acc><<<detail::reduce_grid(channels, s), kThreads, 0, stream>>>(x.data, detail::plane_of(x),
                                                                                       channels, per, s, part);
  check_launch("channel_moments");
  detail::moments_final<<<detail::channel_blocks(channels), kThreads, 0, stream>>>(part, channels, s, fin);
  check_launch("channel_moments (merge)");
}

/// fin(c, sum g, sum g * (x - center(c))) per channel.
template <class Acc, class X, class G, class Center, class Fin>
void channel_cross_sums(const View<const X>& x, const View<const G>& g, Center center, double* part, Fin fin,
                        cudaStream_t stream) {
  const std::int64_t channels = x.shape[1], per = x.shape[0] * x.shape[2] * x.shape[3];
  if (channels == 0) return;
  const int s = splits(per);
  detail::cross_partial<Acc><<<detail::reduce_grid(channels, s), kThreads, 0, stream>>>(
      x.data, detail::plane_of(x), g.data, detail::plane_of(g), center, channels, per, s, part);
  check_launch("channel_cross_sums");
  detail::cross_final<<<detail::channel_blocks(channels), kThreads, 0, stream>>>(part, channels, s, fin);
  check_launch("channel_cross_sums (merge)");
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

}  // namespace kdloss::backend::cuda::channel_stats
