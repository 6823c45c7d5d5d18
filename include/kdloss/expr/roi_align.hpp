// kdloss/expr/roi_align.hpp: the plain-data description of a RoIAlign pass and the scalar geometry
// that both backends share (backend/cpu/roi_align.hpp, backend/cuda/roi_align.cuh).
//
// Geometry is torchvision's roi_align_kernel.cpp, operation for operation, in A = acc_t<T> (float for
// float, half and bfloat16; double for double): box * spatial_scale - offset (0.5 when aligned), the
// non-aligned minimum size 1, bin = size / pooled, grid = sampling_ratio or ceil(size / pooled), the
// sample at start + p * bin + (i + 0.5) * bin / grid, and the bilinear rule (a coordinate below -1 or
// above the size samples 0; clamp to 0; at or past size - 1 both corners are size - 1).
// The bilinear weights factor into a row part and a column part (the validity test too), which is
// what lets the host backend work per axis.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kdloss/config.hpp"
#include "kdloss/core/math.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

/// mmcv's pool_mode: avg (torchvision's roi_align) or max (mmcv's RoIAlign(pool_mode='max')).
enum class RoiPool { avg, max };

/// mmcv's max mode starts every bin's running maximum at this value (a bin whose samples are all
/// <= -10000, or that has no sample, outputs -10000 and passes no gradient).
inline constexpr double kRoiMaxFloor = -10000.0;

/// One axis of one sample: the two cells it reads and their weights; valid = false when the
/// coordinate is outside [-1, size] (the sample is 0 and passes no gradient).
template <class A>
struct AxisSample {
  std::int64_t lo = 0, hi = 0;
  A wlo = 0, whi = 0;
  bool valid = false;
};

/// torchvision's bilinear rule along one axis of extent `size` (a map with no cells samples 0).
template <class A>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE AxisSample<A> roi_axis_sample(A v, std::int64_t size) {
  AxisSample<A> s;
  if (size <= 0 || v < A(-1) || v > static_cast<A>(size)) return s;
  if (v <= A(0)) v = A(0);
  s.lo = static_cast<std::int64_t>(v);
  if (s.lo >= size - 1) {
    s.lo = s.hi = size - 1;
    v = static_cast<A>(s.lo);
  } else {
    s.hi = s.lo + 1;
  }
  const A l = v - static_cast<A>(s.lo);
  s.wlo = A(1) - l;
  s.whi = l;
  s.valid = true;
  return s;
}

/// One box's sampling grid in map coordinates.
template <class A>
struct RoiGeometry {
  A start_h = 0, start_w = 0, bin_h = 0, bin_w = 0;
  std::int64_t grid_h = 0, grid_w = 0;  // samples per bin along each axis (<= 0: none)
  A count = 1;                          // max(grid_h * grid_w, 1): the average's divisor

  /// Coordinate of sample i (0 <= i < grid) of bin p along y or x, as torchvision computes it.
  KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE A y(std::int64_t p, std::int64_t i) const {
    return start_h + static_cast<A>(p) * bin_h + static_cast<A>(static_cast<float>(i) + .5f) * bin_h /
                                                     static_cast<A>(grid_h);
  }
  KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE A x(std::int64_t p, std::int64_t i) const {
    return start_w + static_cast<A>(p) * bin_w + static_cast<A>(static_cast<float>(i) + .5f) * bin_w /
                                                     static_cast<A>(grid_w);
  }
};

/// An adaptive grid ceil(size / pooled) as an integer: NaN gives 0 and values beyond +-2^62 saturate
/// (torchvision casts to int; the host check rejects boxes that large).
template <class A>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE std::int64_t roi_grid_of(A v) {
  constexpr double kLimit = 4611686018427387904.0;  // 2^62
  const double d = static_cast<double>(v);
  if (!(d == d)) return 0;
  if (d >= kLimit) return std::int64_t{1} << 62;
  if (d <= -kLimit) return -(std::int64_t{1} << 62);
  return static_cast<std::int64_t>(d);
}

/// The grid of box (x1, y1, x2, y2) (already converted to A).
template <class A>
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE RoiGeometry<A> roi_geometry(A x1, A y1, A x2, A y2, A scale, bool aligned,
                                                                  std::int64_t pooled_h, std::int64_t pooled_w,
                                                                  std::int64_t sampling_ratio) {
  RoiGeometry<A> g;
  const A offset = aligned ? A(0.5) : A(0);
  g.start_w = x1 * scale - offset;
  g.start_h = y1 * scale - offset;
  const A end_w = x2 * scale - offset, end_h = y2 * scale - offset;
  A roi_w = end_w - g.start_w, roi_h = end_h - g.start_h;
  if (!aligned) {
    roi_w = roi_w < A(1) ? A(1) : roi_w;  // std::max(roi_w, 1) as torchvision writes it
    roi_h = roi_h < A(1) ? A(1) : roi_h;
  }
  g.bin_h = roi_h / static_cast<A>(pooled_h);
  g.bin_w = roi_w / static_cast<A>(pooled_w);
  g.grid_h = sampling_ratio > 0 ? sampling_ratio : roi_grid_of(std::ceil(roi_h / static_cast<A>(pooled_h)));
  g.grid_w = sampling_ratio > 0 ? sampling_ratio : roi_grid_of(std::ceil(roi_w / static_cast<A>(pooled_w)));
  const double n = static_cast<double>(g.grid_h) * static_cast<double>(g.grid_w);  // no integer overflow
  g.count = static_cast<A>(n > 1 ? n : 1);
  return g;
}

/// Samples per bin along one axis (0 when the grid is empty or negative).
KDLOSS_HOST_DEVICE KDLOSS_FORCEINLINE std::int64_t roi_grid_samples(std::int64_t grid) { return grid > 0 ? grid : 0; }

/// What the GPU backend precomputes per box (in its scratch): the grid, the image (-1: the box reads
/// nothing, e.g. an image index outside [0, B)), and the cells its samples may touch, rows [y0, y1]
/// and columns [x0, x1] (y1 < y0: none).
template <class A>
struct RoiBox {
  RoiGeometry<A> g;
  std::int64_t image = -1;
  std::int64_t y0 = 0, y1 = -1, x0 = 0, x1 = -1;
};

/// The GPU backward's tile (one thread per cell) and its shared memory: per bin row the weight and
/// touched flag of every tile row, per bin column those of every tile column.
inline constexpr int kRoiTileH = 8, kRoiTileW = 32;
template <class A>
constexpr std::size_t roi_align_device_shared_bytes(std::int64_t PH, std::int64_t PW) {
  return static_cast<std::size_t>(PH * kRoiTileH + PW * kRoiTileW) * (sizeof(A) + 1);
}
/// Most shared memory the GPU backward asks for (above 48 KiB it opts in; every GPU since Volta has 96).
inline constexpr std::size_t kRoiMaxDeviceShared = 96 * 1024;
/// Most images of a ragged GPU call (their offsets travel in the kernel's parameters) and of any GPU
/// call (the backward's grid z).
inline constexpr std::int64_t kRoiMaxDeviceImages = 256;
inline constexpr std::int64_t kRoiMaxDeviceBatch = 65535;

/// GPU scratch of a pass: one RoiBox per box and, in max mode, one int32 sample index per output
/// (the argmax that the deterministic backward gathers from). 256-byte aligned pieces.
template <class A>
std::size_t roi_align_device_scratch_bytes(std::int64_t K, std::int64_t C, std::int64_t PH, std::int64_t PW,
                                           RoiPool pool) {
  const auto up = [](std::size_t n) { return (n + 255) / 256 * 256; };
  std::size_t bytes = up(static_cast<std::size_t>(K) * sizeof(RoiBox<A>));
  if (pool == RoiPool::max) bytes += up(static_cast<std::size_t>(K * C * PH * PW) * sizeof(std::int32_t));
  return bytes;
}

/// One RoIAlign pass: x [B, C, H, W] (element strides), boxes [K, 5] (image, x1, y1, x2, y2) when
/// offsets is null, else [K, 4] with image b owning rows [offsets[b], offsets[b+1]) (host memory on the
/// host backend; on the GPU the offsets travel in `image_offsets`); y [K, C, PH, PW].
/// forward: y = the pooled values. backward: grad_x = beta * grad_x + the adjoint applied to gy.
template <class T>
struct RoiAlignPass {
  std::int64_t B = 0, C = 0, H = 0, W = 0, K = 0, PH = 1, PW = 1;
  const T* x = nullptr;
  std::int64_t xs[4] = {};
  const T* boxes = nullptr;
  std::int64_t bs[2] = {};
  const std::int64_t* offsets = nullptr;  // host pointer, B + 1 entries; null: boxes carry the image index
  std::int64_t offsets_stride = 1;
  double spatial_scale = 1.0;
  std::int64_t sampling_ratio = -1;
  bool aligned = false;
  RoiPool pool = RoiPool::avg;
  // forward
  T* y = nullptr;
  std::int64_t ys[4] = {};
  // backward
  const T* gy = nullptr;
  std::int64_t gys[4] = {};
  T* gx = nullptr;
  std::int64_t gxs[4] = {};
  double beta = 0;

  bool forward() const { return y != nullptr; }
  bool backward() const { return gx != nullptr; }
  KDLOSS_HOST_DEVICE int box_base() const { return offsets ? 0 : 1; }  // column of x1
};

} } }  // namespace kdloss::expr
