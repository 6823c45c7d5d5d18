// kdloss/backend/cuda/window_max.cuh: the GPU window-maximum pass (expr/window_max.hpp).
//
// Forward: a grid-stride loop with one thread per output (b, c, i, j) that scans its s x s window in
// the accumulation type (float for half and bfloat16) with expr::window_max_takes, and writes the
// maximum and/or its window-local index. Backward: a grid-stride loop with one thread per input
// element (b, c, h, w), a gather (windows do not overlap, so no atomics and deterministic results):
// it takes its window's argmax from the reserve, or rescans the window when there is none, and writes
// beta * grad_x + (gy where it is the argmax, else 0); elements no window covers get beta * grad_x.
// Both loops put w (or c, for channel-last views) innermost so neighbouring threads touch
// neighbouring addresses.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kdloss/backend/cuda/runtime.cuh"
#include "kdloss/config.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/expr/window_max.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda::window_max {

using expr::WindowMaxPass;

inline constexpr int kThreads = 256;

namespace detail {

/// (b, c, r, q) of linear index k over [B, C, R, Q], with q innermost, or c innermost when
/// channels_inner (channel-last memory).
struct Coords {
  std::int64_t b, c, r, q;
};
__device__ __forceinline__ Coords coords(std::int64_t k, std::int64_t C, std::int64_t R, std::int64_t Q,
                                         bool channels_inner) {
  Coords o;
  if (channels_inner) {
    o.c = k % C;
    k /= C;
    o.q = k % Q;
    k /= Q;
    o.r = k % R;
    o.b = k / R;
  } else {
    o.q = k % Q;
    k /= Q;
    o.r = k % R;
    k /= R;
    o.c = k % C;
    o.b = k / C;
  }
  return o;
}

/// The maximum (in A) and window-local argmax of window (i, j) of the plane at xp.
template <class A, class T>
__device__ __forceinline__ int window_argmax(const T* xp, const std::int64_t* xs, std::int64_t i, std::int64_t j,
                                             std::int64_t s, A& m) {
  const T* w0 = xp + i * s * xs[2] + j * s * xs[3];
  m = load_as<A>(w0);
  int id = 0;
  for (std::int64_t kh = 0; kh < s; ++kh)
    for (std::int64_t kw = 0; kw < s; ++kw) {
      const A v = load_as<A>(w0 + kh * xs[2] + kw * xs[3]);
      if (expr::window_max_takes(v, m)) {  // the first element compares equal (or is NaN): id stays 0
        m = v;
        id = static_cast<int>(kh * s + kw);
      }
    }
  return id;
}

template <class T, class I>
__global__ void __launch_bounds__(kThreads) forward_kernel(WindowMaxPass<T, I> P, bool channels_inner) {
  using A = acc_t<T>;
  const std::int64_t Ho = P.out_h(), Wo = P.out_w(), n = P.planes() * Ho * Wo;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const Coords o = coords(k, P.channels, Ho, Wo, channels_inner);
    A m;
    const int id = window_argmax<A>(P.x + o.b * P.xs[0] + o.c * P.xs[1], P.xs, o.r, o.q, P.stride, m);
    if (P.y) store_as(P.y + o.b * P.ys[0] + o.c * P.ys[1] + o.r * P.ys[2] + o.q * P.ys[3], m);
    if (P.argmax_out) P.argmax_out[((o.b * P.channels + o.c) * Ho + o.r) * Wo + o.q] = static_cast<I>(id);
  }
}

template <class T, class I>
__global__ void __launch_bounds__(kThreads) backward_kernel(WindowMaxPass<T, I> P, bool channels_inner) {
  using A = acc_t<T>;
  const std::int64_t s = P.stride, Ho = P.out_h(), Wo = P.out_w(), n = P.planes() * P.H * P.W;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const Coords o = coords(k, P.channels, P.H, P.W, channels_inner);
    const std::int64_t i = o.r / s, j = o.q / s;
    A g = A(0);
    if (i < Ho && j < Wo) {
      int id;
      if (P.argmax_in) {
        id = static_cast<int>(P.argmax_in[((o.b * P.channels + o.c) * Ho + i) * Wo + j]);
      } else {
        A m;
        id = window_argmax<A>(P.x + o.b * P.xs[0] + o.c * P.xs[1], P.xs, i, j, s, m);
      }
      if (id == (o.r - i * s) * s + (o.q - j * s))
        g = load_as<A>(P.gy + o.b * P.gys[0] + o.c * P.gys[1] + i * P.gys[2] + j * P.gys[3]);
    }
    T* e = P.gx + o.b * P.gxs[0] + o.c * P.gxs[1] + o.r * P.gxs[2] + o.q * P.gxs[3];
    if (P.beta != 0.0) g = A(P.beta) * load_as<A>(e) + g;
    store_as(e, g);
  }
}

}  // namespace detail

/// Runs the pass: the forward kernel when it writes y or an argmax, then the backward kernel when it
/// writes grad_x (reading the argmax the forward just wrote when P.argmax_in points at it).
template <class T, class I>
void run(const WindowMaxPass<T, I>& P, cudaStream_t stream) {
  const bool channels_inner = P.xs[1] == 1 && P.channels > 1;
  if (P.forward()) {
    detail::forward_kernel<<<grid_for(P.planes() * P.out_h() * P.out_w()), kThreads, 0, stream>>>(P, channels_inner);
    check_launch("kdloss window_max forward_kernel");
  }
  if (P.backward()) {
    detail::backward_kernel<<<grid_for(P.planes() * P.H * P.W), kThreads, 0, stream>>>(P, channels_inner);
    check_launch("kdloss window_max backward_kernel");
  }
}

} } }  // namespace kdloss::backend::cuda::window_max
