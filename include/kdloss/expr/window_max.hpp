// kdloss/expr/window_max.hpp: the plain-data description of a window-maximum pass over the planes of
// a [B, C, H, W] input: the maximum of every non-overlapping s x s window (kernel = stride = s, no
// padding, floor: the last H % s rows and W % s columns belong to no window), the window-local index
// of that maximum, and the adjoint that routes an upstream gradient to it. Backends evaluate it
// (backend/cpu/window_max.hpp, backend/cuda/window_max.cuh).
//
// The argmax rule is PyTorch's max_pool2d on CPU and CUDA: scan the window row by row and take an
// element when it is greater than the running maximum or is NaN. So among equal maxima the first (in
// row-major window order) wins, the last NaN of a window wins over everything, and a window of -inf
// keeps its first element. Indices are window-local, k = kh * s + kw (not PyTorch's flat h * W + w).
#pragma once
#include <cstdint>

#include "kdloss/config.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

/// True when v replaces the running maximum m (v > m, or v is NaN): PyTorch's max_pool2d rule.
template <class A>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE bool window_max_takes(A v, A m) {
  return v > m || v != v;
}

/// One window-maximum pass over batch * channels planes of x ([B, C, H, W], element strides).
///
/// Forward: y[b, c, i, j] = max of x[b, c, i*s .. i*s+s-1, j*s .. j*s+s-1] (written when y is set) and
/// its window-local index (written to argmax_out, contiguous [B*C, Ho, Wo], when set).
/// Backward: grad_x = beta * grad_x + d(sum gy * y)/dx: gy[b, c, i, j] at the argmax of window (i, j)
/// and 0 elsewhere, including the rows and columns no window covers (beta 0 never reads grad_x). The
/// argmax is read from argmax_in when set, otherwise recomputed from x. An index that is not a
/// position of its window (a reserve never filled) matches no element: no write goes out of bounds.
///
///   expr::WindowMaxPass<float, std::uint8_t> P;
///   P.batch = 2, P.channels = 256, P.H = 100, P.W = 168, P.stride = 4;   // then x, y, argmax_out ...
template <class T, class I>
struct WindowMaxPass {
  std::int64_t batch = 0, channels = 0, H = 0, W = 0, stride = 1;
  const T* x = nullptr;
  std::int64_t xs[4] = {};
  // forward
  T* y = nullptr;
  std::int64_t ys[4] = {};
  I* argmax_out = nullptr;
  // backward
  const I* argmax_in = nullptr;
  const T* gy = nullptr;
  std::int64_t gys[4] = {};
  T* gx = nullptr;
  std::int64_t gxs[4] = {};
  double beta = 0;

  KDLOSS_HOST_DEVICE std::int64_t planes() const { return batch * channels; }
  KDLOSS_HOST_DEVICE std::int64_t out_h() const { return H / stride; }
  KDLOSS_HOST_DEVICE std::int64_t out_w() const { return W / stride; }
  bool forward() const { return y != nullptr || argmax_out != nullptr; }
  bool backward() const { return gx != nullptr; }
};

} } }  // namespace kdloss::expr
