// kdloss/ops/roi_align.hpp: RoIAlign (Mask R-CNN's bilinear RoI pooling), forward and a
// deterministic backward, identical in semantics to torchvision.ops.roi_align (and, with
// pool_mode = max, to mmcv's RoIAlign(pool_mode='max')). See docs/ops/roi_align.md.
//
//   y[k, c, p, q] = (1 / count) * sum over the grid_h x grid_w samples (sy, sx) of bin (p, q) of box k
//                   of bilinear(x[image(k), c], sy, sx)
// with torchvision's geometry (expr/roi_align.hpp): box * spatial_scale (- 0.5 when aligned), the
// non-aligned minimum size 1, grid = sampling_ratio, or ceil(box size / output size) when
// sampling_ratio <= 0, count = max(grid_h * grid_w, 1), and samples below -1 or beyond the map worth 0.
//
// Boxes: a [K, 5] view (image index, x1, y1, x2, y2; the index is truncated toward zero, as
// torchvision does) or a [K, 4] view with an int64 offsets view [B + 1] (core/ragged.hpp: image b owns
// rows [offsets[b], offsets[b + 1])). An image with no box is legal, and so is K = 0.
//
// The backward is deterministic on both backends: the same bits on every run and every thread count,
// without atomics (host: one thread per gradient plane, boxes in row order; GPU: a gather per input
// cell over the boxes that cover it, in row order). No reserve: max mode recomputes its argmax.
//
// Entry-point shape (core/entry.hpp): RoiAlignArgs, roi_align_check, roi_align_workspace_bytes,
// roi_align(args, mode, exec), and the wrappers roi_align(x, boxes, y, ...), roi_align_backward(...),
// roi_align_forward_backward(...).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/backend/dispatch_roi_align.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/ragged.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/roi_align.hpp"
#include "kdloss/ops/map_checks.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

/// How a bin pools its samples: avg (torchvision, mmcv's default) or max (mmcv's pool_mode='max':
/// the largest sampled bilinear value, starting from mmcv's floor -10000; among equal values the first
/// sample in the bin's row-major (iy, ix) order wins; a NaN sample never wins; a sample outside the map
/// is worth 0; the backward routes grad_y to the four bilinear corners of the winning sample).
using RoiPoolMode = expr::RoiPool;

/// Options of roi_align, named as torchvision names its arguments.
struct RoiAlignOptions {
  std::int64_t output_height = 0;  // pooled height (torchvision's output_size[0]); must be >= 1
  std::int64_t output_width = 0;   // pooled width (output_size[1]); must be >= 1
  double spatial_scale = 1.0;      // box coordinates * spatial_scale = map coordinates
  std::int64_t sampling_ratio = -1;  // samples per bin and axis; <= 0: adaptive, ceil(box size / output size)
  bool aligned = false;              // true: shift the box by -0.5 cells (and no minimum size 1)
  RoiPoolMode pool_mode = RoiPoolMode::avg;
  GradAccumulate input_grad{};  // grad_x = beta * grad_x + dL/dx (0: overwrite, old contents unread)
};

/// The arguments of one roi_align call. x [B, C, H, W] (any strides; forward reads its values, the
/// average backward only its shape, the max backward its values); boxes [K, 5] (image, x1, y1, x2,
/// y2) when offsets is absent, else [K, 4] (x1, y1, x2, y2) with offsets [B + 1] (int64, host memory);
/// y and grad_y [K, C, output_height, output_width]; grad_x like x (every element written). Leave a
/// view `{}` when the mode does not use it.
///
///   std::vector<float> feat(2 * 16 * 25 * 42, 1.0f), rois = {0, 4, 4, 60, 40,  1, 0, 0, 99, 99};
///   std::vector<float> pooled(2 * 16 * 3 * 3);
///   kdloss::ops::RoiAlignArgs<float> args;
///   args.x = kdloss::host_view<const float>(feat.data(), {2, 16, 25, 42});
///   args.boxes = kdloss::host_view<const float>(rois.data(), {2, 5});
///   args.y = kdloss::host_view(pooled.data(), {2, 16, 3, 3});
///   args.options.output_height = args.options.output_width = 3;
///   args.options.spatial_scale = 0.25;
///   kdloss::ops::roi_align(args, kdloss::Mode::forward);
template <class T>
struct RoiAlignArgs {
  using value_type = T;
  View<const T> x{};
  View<const T> boxes{};
  View<const std::int64_t> offsets{};  // optional: per-image boxes (boxes is then [K, 4])
  View<T> y{};                         // written by forward and forward_backward
  View<const T> grad_y{};              // read by backward and forward_backward
  View<T> grad_x{};                    // written by backward and forward_backward
  RoiAlignOptions options{};
};

/// Boxes for the wrappers: a [K, 5] view, or a [K, 4] view with its offsets. Converts from a view, so
/// `roi_align(x, boxes5, y, opt)` and `roi_align(x, {boxes4, offsets}, y, opt)` both read naturally.
template <class T>
struct RoiBoxes {
  View<const T> boxes{};
  View<const std::int64_t> offsets{};
  RoiBoxes() = default;
  RoiBoxes(const View<const T>& b, const View<const std::int64_t>& o = {}) : boxes(b), offsets(o) {}
  RoiBoxes(const View<T>& b, const View<const std::int64_t>& o = {}) : boxes(b), offsets(o) {}
};

namespace roi_align_detail {

inline constexpr EntryNames kNames{"kdloss::ops::roi_align", "kdloss::ops::roi_align_backward",
                                   "kdloss::ops::roi_align_forward_backward"};

inline constexpr std::int64_t kMaxDeviceImages = expr::kRoiMaxDeviceImages;
/// Most samples one box may take per axis (grid * output size): beyond it a call would run for hours.
inline constexpr std::int64_t kMaxAxisSamples = std::int64_t{1} << 24;
/// Largest output height and width (torchvision has no limit; 4096 x 4096 bins per box is far beyond use).
inline constexpr std::int64_t kMaxOutputSize = 4096;

template <class T>
Dims out_shape(const RoiAlignArgs<T>& a) {
  return Dims{a.boxes.shape[0], a.x.shape[1], a.options.output_height, a.options.output_width};
}

/// The checks of x, boxes, offsets and options (shared by the call and the workspace query); on the
/// host it reads every box.
template <class T>
void check_inputs(const char* fn, const RoiAlignArgs<T>& a) {
  const kdloss::detail::Checker ck{fn};
  using kdloss::detail::require;
  const RoiAlignOptions& o = a.options;
  ops::detail::check_feature_map(ck, a.x);
  kdloss::detail::require_backend<T>(fn, a.x.device);
  require(o.output_height >= 1 && o.output_width >= 1 && o.output_height <= kMaxOutputSize &&
              o.output_width <= kMaxOutputSize,
          fn, ": options.output_height and options.output_width are ", o.output_height, " and ", o.output_width,
          " but must be in [1, ", kMaxOutputSize, "]");
  require(std::isfinite(o.spatial_scale) && std::fabs(o.spatial_scale) <= double(std::numeric_limits<acc_t<T>>::max()),
          fn, ": options.spatial_scale is ", o.spatial_scale, " but must be finite (in the accumulation type)");
  require(o.pool_mode == RoiPoolMode::avg || o.pool_mode == RoiPoolMode::max, fn,
          ": options.pool_mode is not avg or max");
  const bool ragged = present(a.offsets);
  require(present(a.boxes), fn, ": argument 'boxes' is absent; every mode reads it");
  ck.rank(a.boxes, "boxes", 2);
  const std::int64_t cols = ragged ? 4 : 5;
  require(a.boxes.shape[1] == cols, fn, ": argument 'boxes' has shape ", a.boxes.shape.str(), " but expected [K, ",
          cols, "] ",
          ragged ? "(x1, y1, x2, y2) since 'offsets' is given" : "(image index, x1, y1, x2, y2) since 'offsets' is absent");
  ck.not_null(a.boxes, "boxes");
  ck.device(a.boxes, "boxes", a.x.device);
  const std::int64_t B = a.x.shape[0], K = a.boxes.shape[0];
  if (ragged) {
    require(a.offsets.rank() == 1 && a.offsets.numel() == B + 1, fn, ": argument 'offsets' has shape ",
            a.offsets.shape.str(), " but x ", a.x.shape.str(), " has ", B, " images, so it needs [", B + 1, "]");
    kdloss::detail::check_segments(ck, Segments<std::int64_t>{a.offsets}, "offsets", K);
    require(a.x.device.is_host() || B <= kMaxDeviceImages, fn, ": x ", a.x.shape.str(), " has ", B,
            " images but a ragged call on the GPU takes at most ", kMaxDeviceImages,
            "; pass [K, 5] boxes with the image index instead");
  }
  if (!a.x.device.is_host()) {
    require(B <= expr::kRoiMaxDeviceBatch, fn, ": x ", a.x.shape.str(), " has ", B, " images; the GPU takes at most ",
            expr::kRoiMaxDeviceBatch);
    const std::size_t shared = expr::roi_align_device_shared_bytes<acc_t<T>>(o.output_height, o.output_width);
    require(shared <= expr::kRoiMaxDeviceShared, fn, ": output size ", o.output_height, " x ", o.output_width,
            " is too large for the GPU backward (its tables need ", shared, " bytes of shared memory, at most ",
            expr::kRoiMaxDeviceShared, ")");
  }
  if (!a.boxes.device.is_host()) return;  // device boxes: the kernels guard instead (docs/ops/roi_align.md)
  using A = acc_t<T>;
  const int base = ragged ? 0 : 1;
  for (std::int64_t k = 0; k < K; ++k) {
    if (!ragged) {
      const double v = static_cast<double>(a.boxes(k, 0));
      require(v > -1.0 && v < static_cast<double>(B), fn,  // truncated toward zero: (-1, B) -> [0, B)
              ": argument 'boxes' ", a.boxes.shape.str(), " row ", k, " has image index ", v, " but x ",
              a.x.shape.str(), " has images 0 to ", B - 1);
    }
    A c[4];
    for (int j = 0; j < 4; ++j) {
      c[j] = static_cast<A>(a.boxes(k, base + j));
      require(std::isfinite(static_cast<double>(c[j])), fn, ": argument 'boxes' ", a.boxes.shape.str(), " row ", k,
              " has a non-finite coordinate ", static_cast<double>(c[j]));
    }
    const auto g = expr::roi_geometry<A>(c[0], c[1], c[2], c[3], static_cast<A>(o.spatial_scale), o.aligned,
                                         o.output_height, o.output_width, o.sampling_ratio);
    require(static_cast<double>(g.grid_h) * static_cast<double>(o.output_height) <= double(kMaxAxisSamples) &&
                static_cast<double>(g.grid_w) * static_cast<double>(o.output_width) <= double(kMaxAxisSamples),
            fn, ": argument 'boxes' row ", k, " spans ", static_cast<double>(g.bin_h * A(o.output_height)), " x ",
            static_cast<double>(g.bin_w * A(o.output_width)), " map cells: its ", g.grid_h, " x ", g.grid_w,
            " samples per bin exceed ", kMaxAxisSamples, " per axis (check spatial_scale and the box format)");
  }
}

template <class T>
void check(const RoiAlignArgs<T>& a, Mode mode) {
  const char* fn = kNames(mode);
  const kdloss::detail::Checker ck{fn};
  check_inputs(fn, a);
  const Dims out = out_shape(a);
  ops::detail::check_map_outputs(ck, mode, a.x, out, a.y, a.grad_y, a.grad_x, a.boxes, "boxes");
}

template <class T>
expr::RoiAlignPass<T> make_pass(const RoiAlignArgs<T>& a, Mode mode) {
  expr::RoiAlignPass<T> P;
  const Dims& xs = a.x.shape;
  P.B = xs[0], P.C = xs[1], P.H = xs[2], P.W = xs[3], P.K = a.boxes.shape[0];
  P.PH = a.options.output_height, P.PW = a.options.output_width;
  P.x = a.x.data;
  for (int d = 0; d < 4; ++d) P.xs[d] = a.x.strides[d];
  P.boxes = a.boxes.data;
  P.bs[0] = a.boxes.strides[0], P.bs[1] = a.boxes.strides[1];
  P.offsets = present(a.offsets) ? a.offsets.data : nullptr;
  P.offsets_stride = present(a.offsets) ? a.offsets.strides[0] : 1;
  P.spatial_scale = a.options.spatial_scale;
  P.sampling_ratio = a.options.sampling_ratio;
  P.aligned = a.options.aligned;
  P.pool = a.options.pool_mode;
  if (writes_value(mode)) {
    P.y = a.y.data;
    for (int d = 0; d < 4; ++d) P.ys[d] = a.y.strides[d];
  }
  if (writes_gradients(mode)) {
    P.gy = a.grad_y.data;
    P.gx = a.grad_x.data;
    for (int d = 0; d < 4; ++d) P.gys[d] = a.grad_y.strides[d], P.gxs[d] = a.grad_x.strides[d];
    P.beta = a.options.input_grad.beta;
  }
  return P;
}

/// Identity on the type, so a wrapper's boxes argument is not used to deduce T (it converts from a view).
template <class T>
struct same {
  using type = T;
};
template <class T>
using same_t = typename same<T>::type;

}  // namespace roi_align_detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes
/// nothing. Errors: x absent or not rank 4; output size < 1; spatial_scale not finite; boxes not
/// [K, 5] (or [K, 4] with offsets); offsets not [B + 1], not starting at 0, decreasing, or not ending at
/// K; on the host, a box with a non-finite coordinate, an image index outside [0, B), or more than 2^24
/// samples per axis; y / grad_y not [K, C, output_height, output_width]; grad_x not x's shape; views on
/// another device; overlapping outputs; a ragged GPU call with more than 256 images.
///
///   kdloss::ops::RoiAlignArgs<float> args;   // its views filled in as in RoiAlignArgs's example
///   kdloss::ops::roi_align_check(args, kdloss::Mode::forward);
template <class T>
void roi_align_check(const RoiAlignArgs<T>& args, Mode mode) {
  roi_align_detail::check(args, mode);
}

/// Workspace bytes of roi_align, enough for every mode. Host: the boxes grouped by image (K + 2B + 2
/// int64) and, per thread, the row and column tables of one box (about 2 * (output size * grid) entries
/// per axis for the largest box; it reads the host boxes). GPU: one small record per box and, in max
/// mode, one int32 per output (independent of the box values). A host call with no workspace allocates
/// it itself.
///
///   kdloss::ops::RoiAlignArgs<float> args;   // its views filled in as in RoiAlignArgs's example
///   std::size_t bytes = kdloss::ops::roi_align_workspace_bytes(args);
template <class T>
std::size_t roi_align_workspace_bytes(const RoiAlignArgs<T>& args) {
  roi_align_detail::check_inputs("kdloss::ops::roi_align_workspace_bytes", args);
  auto P = roi_align_detail::make_pass(args, Mode::forward);
  return kdloss::detail::roi_align_scratch_bytes(args.x.device, P);
}

/// Checks, then runs roi_align in `mode`.
/// forward: y = the pooled bins. backward: grad_x = beta * grad_x + the adjoint of the forward applied
/// to grad_y (every element of grad_x written, cells no box samples get beta * grad_x). The backward is
/// deterministic: same bits on every run and thread count. forward_backward: both in one pass.
///
///   std::vector<float> x(1 * 8 * 20 * 30, 1.0f), y(3 * 8 * 3 * 3), gy(y.size(), 1.0f), gx(x.size());
///   std::vector<float> boxes = {2, 2, 10, 12,  0, 0, 29, 19,  5, 5, 5, 5};   // [3, 4], one image
///   std::int64_t offsets[] = {0, 3};
///   kdloss::ops::RoiAlignArgs<float> args;
///   args.x = kdloss::host_view<const float>(x.data(), {1, 8, 20, 30});
///   args.boxes = kdloss::host_view<const float>(boxes.data(), {3, 4});
///   args.offsets = kdloss::host_view<const std::int64_t>(offsets, {2});
///   args.y = kdloss::host_view(y.data(), {3, 8, 3, 3});
///   args.grad_y = kdloss::host_view<const float>(gy.data(), {3, 8, 3, 3});
///   args.grad_x = kdloss::host_view(gx.data(), {1, 8, 20, 30});
///   args.options.output_height = args.options.output_width = 3;
///   args.options.aligned = true;
///   kdloss::ops::roi_align(args, kdloss::Mode::forward_backward);
template <class T>
void roi_align(const RoiAlignArgs<T>& args, Mode mode, const Exec& exec = {}) {
  roi_align_check(args, mode);
  const auto P = roi_align_detail::make_pass(args, mode);
  const std::size_t need = kdloss::detail::roi_align_scratch_bytes(args.x.device, P);
  kdloss::detail::HostScratch host_scratch;
  void* ws =
      kdloss::detail::resolve_workspace(roi_align_detail::kNames(mode), args.x.device, exec.workspace, need, host_scratch);
  kdloss::detail::roi_align(args.x.device, exec.stream, P, ws);
}

/// y = RoIAlign(x, boxes) (torchvision.ops.roi_align(x, boxes, (output_height, output_width),
/// spatial_scale, sampling_ratio, aligned)); boxes [K, 5], or [K, 4] with per-image offsets.
///
///   std::vector<float> feat(1 * 4 * 16 * 16, 1.0f), rois = {0, 1.5f, 2, 9, 12}, out(1 * 4 * 2 * 2);
///   kdloss::ops::RoiAlignOptions opt;
///   opt.output_height = opt.output_width = 2;
///   kdloss::ops::roi_align(kdloss::host_view<const float>(feat.data(), {1, 4, 16, 16}),
///                          kdloss::host_view<const float>(rois.data(), {1, 5}),
///                          kdloss::host_view(out.data(), {1, 4, 2, 2}), opt);
template <class X, class O>
void roi_align(const View<X>& x, const roi_align_detail::same_t<RoiBoxes<O>>& boxes,
               const View<O>& y, const RoiAlignOptions& options, const Exec& exec = {}) {
  RoiAlignArgs<O> a;
  a.x = x, a.boxes = boxes.boxes, a.offsets = boxes.offsets, a.y = y, a.options = options;
  roi_align(a, Mode::forward, exec);
}

/// grad_x = beta * grad_x + dL/dx from grad_y (x's values are read in max mode only).
///
///   std::vector<float> x(1 * 4 * 16 * 16), rois = {1.5f, 2, 9, 12}, gy(1 * 4 * 2 * 2, 1.0f), gx(x.size());
///   std::int64_t offsets[] = {0, 1};
///   kdloss::ops::RoiAlignOptions opt;
///   opt.output_height = opt.output_width = 2;
///   kdloss::ops::roi_align_backward(kdloss::host_view<const float>(x.data(), {1, 4, 16, 16}),
///                                   {kdloss::host_view<const float>(rois.data(), {1, 4}),
///                                    kdloss::host_view<const std::int64_t>(offsets, {2})},
///                                   kdloss::host_view<const float>(gy.data(), {1, 4, 2, 2}),
///                                   kdloss::host_view(gx.data(), {1, 4, 16, 16}), opt);
template <class X, class G, class O>
void roi_align_backward(const View<X>& x, const roi_align_detail::same_t<RoiBoxes<O>>& boxes, const View<G>& grad_y,
                        const View<O>& grad_x, const RoiAlignOptions& options, const Exec& exec = {}) {
  RoiAlignArgs<O> a;
  a.x = x, a.boxes = boxes.boxes, a.offsets = boxes.offsets, a.grad_y = grad_y, a.grad_x = grad_x;
  a.options = options;
  roi_align(a, Mode::backward, exec);
}

/// y and grad_x (from grad_y) in one pass.
///
///   std::vector<float> x(1 * 4 * 16 * 16, 1.0f), rois = {0, 1.5f, 2, 9, 12}, gy(1 * 4 * 2 * 2, 1.0f);
///   std::vector<float> y(gy.size()), gx(x.size());
///   kdloss::ops::RoiAlignOptions opt;
///   opt.output_height = opt.output_width = 2;
///   kdloss::ops::roi_align_forward_backward(kdloss::host_view<const float>(x.data(), {1, 4, 16, 16}),
///                                           kdloss::host_view<const float>(rois.data(), {1, 5}),
///                                           kdloss::host_view<const float>(gy.data(), {1, 4, 2, 2}),
///                                           kdloss::host_view(y.data(), {1, 4, 2, 2}),
///                                           kdloss::host_view(gx.data(), {1, 4, 16, 16}), opt);
template <class X, class G, class O>
void roi_align_forward_backward(const View<X>& x, const roi_align_detail::same_t<RoiBoxes<O>>& boxes,
                                const View<G>& grad_y, const View<O>& y, const View<O>& grad_x,
                                const RoiAlignOptions& options, const Exec& exec = {}) {
  RoiAlignArgs<O> a;
  a.x = x, a.boxes = boxes.boxes, a.offsets = boxes.offsets, a.y = y, a.grad_y = grad_y, a.grad_x = grad_x;
  a.options = options;
  roi_align(a, Mode::forward_backward, exec);
}

}  // namespace ops
} }  // namespace kdloss
