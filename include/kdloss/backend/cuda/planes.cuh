// kdloss/backend/cuda/planes.cuh: small GPU passes over the (b, c) planes of [B, C, H, W] inputs
// given by pointer and element strides (the counterparts of backend/cpu/planes.hpp): per-plane
// min-max normalisation and its backward, the 2x2 average pool with ceil padding, sums of |x - y|,
// an index loop over a functor, and the scalar epilogue.
#pragma once
#include <cub/block/block_reduce.cuh>
#include <cuda_runtime.h>

#include <cstdint>

#include "kdloss/backend/cuda/executor.cuh"
#include "kdloss/backend/cuda/runtime.cuh"
#include "kdloss/config.hpp"
#include "kdloss/expr/window_stats.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda::planes {

inline constexpr int kThreads = 256;

namespace detail {

/// Strides of a [B, C, H, W] view, by value.
struct Strides4 {
  std::int64_t v[4];
};
inline Strides4 strides_of(const std::int64_t* s) { return Strides4{{s[0], s[1], s[2], s[3]}}; }

struct MinMaxOp {
  __device__ expr::MinMax operator()(const expr::MinMax& a, const expr::MinMax& b) const {
    return expr::MinMax::combine(a, b);
  }
};

/// One block per plane: the min-max normalisation of x (which = 0) and y (which = 1).
template <class In>
__global__ void __launch_bounds__(kThreads) minmax_norm_kernel(std::int64_t planes, std::int64_t C, std::int64_t H,
                                                               std::int64_t W, const In* x, Strides4 xs, const In* y,
                                                               Strides4 ys, expr::MinMaxNorm* out) {
  using Reduce = cub::BlockReduce<expr::MinMax, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  for (std::int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    const std::int64_t b = p / C, c = p % C;
    for (int which = 0; which < 2; ++which) {
      const In* v = which == 0 ? x + b * xs.v[0] + c * xs.v[1] : y + b * ys.v[0] + c * ys.v[1];
      const Strides4& s = which == 0 ? xs : ys;
      expr::MinMax m;  // empty until a thread reads an element, so any value (NaN, inf) can win
      for (std::int64_t k = threadIdx.x; k < H * W; k += blockDim.x)
        m.add(load_as<double>(v + (k / W) * s.v[2] + (k % W) * s.v[3]), k);
      const expr::MinMax r = Reduce(temp).Reduce(m, MinMaxOp{});
      if (threadIdx.x == 0) r.store(out[p], which);
      __syncthreads();
    }
  }
}

/// One block per plane: g = d/d nu(v) becomes d/d v (see expr::MinMaxNorm).
template <class In, class G>
__global__ void __launch_bounds__(kThreads) norm_backward_kernel(std::int64_t planes, std::int64_t C, std::int64_t H,
                                                                 std::int64_t W, const In* v, Strides4 vs, G* g,
                                                                 Strides4 gs, const expr::MinMaxNorm* norm,
                                                                 int which) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  __shared__ double s1, s2;
  for (std::int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    const std::int64_t b = p / C, c = p % C;
    const In* vp = v + b * vs.v[0] + c * vs.v[1];
    G* gp = g + b * gs.v[0] + c * gs.v[1];
    const double scale = norm[p].scale[which], shift = norm[p].shift[which];
    double a1 = 0, a2 = 0;
    for (std::int64_t k = threadIdx.x; k < H * W; k += blockDim.x) {
      const std::int64_t r = k / W, q = k % W;
      const double gv = load_as<double>(gp + r * gs.v[2] + q * gs.v[3]);
      a1 += gv;
      a2 += gv * (scale * load_as<double>(vp + r * vs.v[2] + q * vs.v[3]) + shift);
    }
    const double t1 = Reduce(temp).Sum(a1);
    __syncthreads();
    const double t2 = Reduce(temp).Sum(a2);
    if (threadIdx.x == 0) s1 = t1, s2 = t2;
    __syncthreads();
    for (std::int64_t k = threadIdx.x; k < H * W; k += blockDim.x) {
      G* e = gp + (k / W) * gs.v[2] + (k % W) * gs.v[3];
      store_as(e, static_cast<acc_t<G>>(load_as<double>(e) * scale));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      const std::int64_t imin = norm[p].argmin[which], imax = norm[p].argmax[which];
      G* emin = gp + (imin / W) * gs.v[2] + (imin % W) * gs.v[3];
      store_as(emin, static_cast<acc_t<G>>(load_as<double>(emin) + (s2 - s1) * scale));
      G* emax = gp + (imax / W) * gs.v[2] + (imax % W) * gs.v[3];
      store_as(emax, static_cast<acc_t<G>>(load_as<double>(emax) - s2 * scale));
    }
    __syncthreads();
  }
}

/// 2x2 average pool with ceil padding (zeros counted) into a contiguous [planes, Ho, Wo] buffer.
template <class In, class A>
__global__ void __launch_bounds__(kThreads) avg_pool2x2_kernel(std::int64_t planes, std::int64_t C, std::int64_t H,
                                                            std::int64_t W, const In* v, Strides4 vs,
                                                            const expr::MinMaxNorm* norm, int which, A* out,
                                                            std::int64_t Ho, std::int64_t Wo) {
  const std::int64_t n = planes * Ho * Wo;
  const std::int64_t ph = H % 2, pw = W % 2;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t p = k / (Ho * Wo), i = (k / Wo) % Ho, j = k % Wo;
    const std::int64_t b = p / C, c = p % C;
    const A scale = norm ? A(norm[p].scale[which]) : A(1), shift = norm ? A(norm[p].shift[which]) : A(0);
    const In* vp = v + b * vs.v[0] + c * vs.v[1];
    A acc = 0;
    for (int a = 0; a < 2; ++a)
      for (int bb = 0; bb < 2; ++bb) {
        const std::int64_t r = 2 * i - ph + a, q = 2 * j - pw + bb;
        if (r >= 0 && r < H && q >= 0 && q < W) acc += scale * load_as<A>(vp + r * vs.v[2] + q * vs.v[3]) + shift;
      }
    out[k] = acc * A(0.25);
  }
}

/// One block per plane: sums[p] = scale * sum |nu(x) - nu(y)|.
template <class In>
__global__ void __launch_bounds__(kThreads) abs_diff_sums_kernel(std::int64_t planes, std::int64_t C, std::int64_t H,
                                                      std::int64_t W, const In* x, Strides4 xs, const In* y,
                                                      Strides4 ys, const expr::MinMaxNorm* norm, double* sums,
                                                      double scale) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  for (std::int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    const std::int64_t b = p / C, c = p % C;
    const In* xp = x + b * xs.v[0] + c * xs.v[1];
    const In* yp = y + b * ys.v[0] + c * ys.v[1];
    const double ax = norm ? norm[p].scale[0] : 1, bx = norm ? norm[p].shift[0] : 0;
    const double ay = norm ? norm[p].scale[1] : 1, by = norm ? norm[p].shift[1] : 0;
    double acc = 0;
    for (std::int64_t k = threadIdx.x; k < H * W; k += blockDim.x) {
      const std::int64_t r = k / W, q = k % W;
      const double d = (ax * load_as<double>(xp + r * xs.v[2] + q * xs.v[3]) + bx) -
                       (ay * load_as<double>(yp + r * ys.v[2] + q * ys.v[3]) + by);
      acc += d < 0 ? -d : d;
    }
    const double t = Reduce(temp).Sum(acc);
    if (threadIdx.x == 0) sums[p] = t * scale;
    __syncthreads();
  }
}

template <class F>
__global__ void __launch_bounds__(kThreads) for_each_kernel(std::int64_t n, F f) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    f(i);
}

inline int plane_blocks(std::int64_t planes) { return static_cast<int>(planes < 65535 * 16 ? planes : 65535 * 16); }

}  // namespace detail

template <class In>
void minmax_norm(std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W, const In* x, const std::int64_t* xs,
                const In* y, const std::int64_t* ys, expr::MinMaxNorm* out, cudaStream_t stream) {
  detail::minmax_norm_kernel<<<detail::plane_blocks(B * C), kThreads, 0, stream>>>(
      B * C, C, H, W, x, detail::strides_of(xs), y, detail::strides_of(ys), out);
  check_launch("kdloss minmax_norm_kernel");
}

template <class In, class G>
void minmax_norm_backward(std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W, const In* v, const std::int64_t* vs,
                   G* g, const std::int64_t* gs, const expr::MinMaxNorm* norm, int which, cudaStream_t stream) {
  detail::norm_backward_kernel<<<detail::plane_blocks(B * C), kThreads, 0, stream>>>(
      B * C, C, H, W, v, detail::strides_of(vs), g, detail::strides_of(gs), norm, which);
  check_launch("kdloss minmax_norm_backward_kernel");
}

template <class In, class A>
void avg_pool2x2(std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W, const In* v, const std::int64_t* vs,
              const expr::MinMaxNorm* norm, int which, A* out, std::int64_t Ho, std::int64_t Wo,
              cudaStream_t stream) {
  detail::avg_pool2x2_kernel<<<grid_for(B * C * Ho * Wo), kThreads, 0, stream>>>(B * C, C, H, W, v, detail::strides_of(vs),
                                                                              norm, which, out, Ho, Wo);
  check_launch("kdloss avg_pool2x2_kernel");
}

template <class In>
void abs_diff_sums(std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W, const In* x, const std::int64_t* xs,
                   const In* y, const std::int64_t* ys, const expr::MinMaxNorm* norm, double* sums, double scale,
                   cudaStream_t stream) {
  detail::abs_diff_sums_kernel<<<detail::plane_blocks(B * C), kThreads, 0, stream>>>(
      B * C, C, H, W, x, detail::strides_of(xs), y, detail::strides_of(ys), norm, sums, scale);
  check_launch("kdloss abs_diff_sums_kernel");
}

template <class F>
void for_each_index(std::int64_t n, F f, cudaStream_t stream) {
  detail::for_each_kernel<<<grid_for(n), kThreads, 0, stream>>>(n, f);
  check_launch("kdloss for_each_kernel");
}

/// *out = fin(sum of vals[0, n)), on the stream: the one scalar epilogue, executor.cuh's finaliser.
template <class Fin, class O>
void store_sum(const double* vals, std::int64_t n, Fin fin, O* out, cudaStream_t stream) {
  cuda::detail::finalize_kernel<<<1, kBlock, 0, stream>>>(vals, static_cast<int>(n), fin, out);
  check_launch("kdloss store_sum finalize_kernel");
}
} } }  // namespace kdloss::backend::cuda::planes
