// kdloss/ops/boxes.hpp: box utilities of the DETR family, CPU and CUDA, forward and (where a detector
// trains through them) backward. See docs/ops/boxes.md.
//
//   box_convert        xyxy <-> cxcywh <-> xywh (torchvision.ops.box_convert), with its backward
//   box_scale          multiply by (w, h, w, h) of each image (or divide: normalise), optionally clamp
//                      to [0, w] x [0, h] (mmdet's teacher boxes), with its backward
//   box_overlap        pairwise IoU / GIoU [.., N, M] (box_iou, generalized_box_iou; mmdet's bbox_overlaps)
//   giou_loss          aligned 1 - GIoU of paired boxes, reductions, analytic gradients to both sets
//                      (torchvision's generalized_box_iou_loss, mmdet's GIoULoss, DETR's loss_giou)
//
// The formulas, the three overlap forms, torch's gradient conventions and the degenerate-box rule are
// in expr/boxes.hpp. Boxes are the last axis (4) of a [4], [N, 4] or [B, N, 4] view, any strides.
#pragma once
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kdloss/backend/dispatch_boxes.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/convert.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/ragged.hpp"
#include "kdloss/core/types.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/boxes.hpp"
#include "kdloss/expr/matmul.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

using BoxFormat = expr::boxes::BoxFormat;
using OverlapForm = expr::boxes::OverlapForm;

}  // namespace ops

namespace ops::boxes_detail {

namespace eb = ::kdloss::expr::boxes;
using kdloss::detail::Checker;
using kdloss::detail::require;

/// A [4], [N, 4] or [B, N, 4] box view as [B, N, 4] (batch stride 0 when there is no batch axis).
template <class T>
struct BoxRows {
  expr::MatOperand<T> m;
  std::int64_t batch = 1, n = 1;
  KDLOSS_HOST_DEVICE T* at(std::int64_t b, std::int64_t i, int k) const { return m.at(b, i, k); }
};
template <class T>
BoxRows<T> rows_of(const View<T>& v) {
  BoxRows<T> r;
  const int rk = v.rank();
  r.m.data = v.data;
  r.m.col = v.stride(rk - 1);
  r.m.row = rk >= 2 ? v.stride(rk - 2) : 0;
  r.m.batch = rk == 3 ? v.stride(0) : 0;
  r.n = rk >= 2 ? v.size(rk - 2) : 1;
  r.batch = rk == 3 ? v.size(0) : 1;
  return r;
}

/// A box argument: present, on-device data, rank 1..max_rank with a last axis of 4.
template <class V>
void check_boxes(const Checker& ck, const V& v, const char* arg, int max_rank = 3) {
  require(present(v), ck.fn, ": argument '", arg, "' is absent but this mode reads it");
  ck.not_null(v, arg);
  require(v.rank() >= 1 && v.rank() <= max_rank && v.size(v.rank() - 1) == 4, ck.fn, ": argument '", arg,
          "' must be boxes of shape ", max_rank == 3 ? "[4], [N, 4] or [B, N, 4]" : "[4] or [N, 4]",
          " (4 coordinates on the last axis) but has shape ", v.shape.str());
}
template <class O, class L>
void check_output(const Checker& ck, const View<O>& v, const char* arg, const Dims& shape, const View<L>& like) {
  require(present(v), ck.fn, ": argument '", arg, "' is absent but this mode writes it");
  ck.not_null(v, arg);
  ck.shape(v, arg, shape);
  ck.device(v, arg, like.device);
  ck.unique(v, arg);
}
/// A one-element output on `device` that this mode writes.
template <class O>
void check_scalar_out(const Checker& ck, const View<O>& v, const char* arg, Device device) {
  require(present(v), ck.fn, ": argument '", arg, "' is absent but this mode writes it");
  ck.scalar_output(v, arg);
  ck.device(v, arg, device);
}
inline void check_format(const Checker& ck, BoxFormat f, const char* arg) {
  const int i = static_cast<int>(f);
  require(i >= 0 && i <= 2, ck.fn, ": argument '", arg, "' is ", i, ", not xyxy, cxcywh or xywh");
}
inline void check_overlap(const Checker& ck, const eb::Overlap& o) {
  const int i = static_cast<int>(o.form);
  require(i >= 0 && i <= 2, ck.fn, ": argument 'options.form' is ", i, ", not detr, mmdet or torchvision");
  require(o.form == OverlapForm::detr || (o.eps >= 0 && o.eps < 1e300), ck.fn, ": argument 'options.eps' is ",
          o.eps, " but the ", eb::to_string(o.form), " form needs a finite eps >= 0");
}

template <class T>
KDLOSS_HOST_DEVICE void load_box(const BoxRows<T>& r, std::int64_t b, std::int64_t i, acc_t<T> out[4]) {
  for (int k = 0; k < 4; ++k) out[k] = load_as<acc_t<T>>(r.at(b, i, k));
}
template <class T>
KDLOSS_HOST_DEVICE void store_box(const BoxRows<T>& r, std::int64_t b, std::int64_t i, const acc_t<T> v[4]) {
  for (int k = 0; k < 4; ++k) store_as(r.at(b, i, k), v[k]);
}

// ---- box_convert

template <class T>
struct ConvertFn {
  BoxRows<const T> in;
  BoxRows<T> out;
  BoxFormat from, to;
  bool backward;  // in: grad_out, out: grad_boxes (the Jacobian's transpose, from `to` back to `from`)
  KDLOSS_HOST_DEVICE double operator()(std::int64_t t) const {
    using A = acc_t<T>;
    const std::int64_t b = t / in.n, i = t % in.n;
    A v[4], r[4];
    load_box(in, b, i, v);
    if (backward) eb::convert_backward(v, from, to, r);
    else eb::convert(v, from, to, r);
    store_box(out, b, i, r);
    return 0.0;
  }
};

// ---- box_scale

template <class T, class S>
struct ScaleFn {
  BoxRows<const T> in;
  BoxRows<T> out;
  const S* sizes;  // [B, 2] (height, width)
  std::int64_t size_b, size_k;
  bool normalize, clamp, backward;
  BoxRows<const T> boxes;  // backward with clamp: the forward's input
  KDLOSS_HOST_DEVICE double operator()(std::int64_t t) const {
    using A = acc_t<T>;
    const std::int64_t b = t / in.n, i = t % in.n;
    const A h = A(load_as<double>(sizes + b * size_b)), w = A(load_as<double>(sizes + b * size_b + size_k));
    const A f[4] = {w, h, w, h};
    A v[4], r[4];
    load_box(in, b, i, v);
    for (int k = 0; k < 4; ++k) {
      const A s = normalize ? v[k] / f[k] : v[k] * f[k];
      if (!backward) {
        // torch's clamp(min = 0, max = size): NaN stays NaN
        r[k] = clamp ? (s != s ? s : (s < A(0) ? A(0) : (s > f[k] ? f[k] : s))) : s;
      } else {
        // d out / d box = factor where the clamp passes (0 < scaled < size, strictly, as torch 2.15)
        A pass = A(1);
        if (clamp) {
          const A x = load_as<A>(boxes.at(b, i, k));
          const A y = normalize ? x / f[k] : x * f[k];
          pass = (y > A(0) && y < f[k]) ? A(1) : A(0);
        }
        r[k] = normalize ? v[k] * pass / f[k] : v[k] * pass * f[k];
      }
    }
    store_box(out, b, i, r);
    return 0.0;
  }
};

// ---- box_overlap (pairwise)

template <class T>
struct PairwiseFn {
  BoxRows<const T> a, b;
  expr::MatOperand<T> out;  // [B, N, M]
  std::int64_t n, m;
  bool batched_a, batched_b;
  BoxFormat format;
  eb::Overlap overlap;
  KDLOSS_HOST_DEVICE double operator()(std::int64_t t) const {
    using A = acc_t<T>;
    const std::int64_t j = t % m, i = (t / m) % n, img = t / (n * m);
    A p[4], q[4], px[4], qx[4];
    load_box(a, batched_a ? img : 0, i, p);
    load_box(b, batched_b ? img : 0, j, q);
    eb::convert(p, format, BoxFormat::xyxy, px);
    eb::convert(q, format, BoxFormat::xyxy, qx);
    store_as(out.at(img, i, j), eb::overlap(px, qx, overlap));
    return 0.0;
  }
};

// ---- one aligned pair (giou_loss, and the losses that evaluate 1 - GIoU over the pairs of an assignment)

/// The overlap of one pair of boxes given in `format`: both converted to xyxy and, when `f` is non-null,
/// multiplied by f = (w, h, w, h) (pixel boxes), then eb::overlap. gp / gq (either may be null): g times
/// d value / d p (resp. q), back in `format` (overwritten).
template <class A>
KDLOSS_HOST_DEVICE A aligned_overlap(const A p[4], const A q[4], BoxFormat format, const eb::Overlap& o, const A* f,
                                     A g, A* gp, A* gq) {
  A px[4], qx[4];
  eb::convert(p, format, BoxFormat::xyxy, px);
  eb::convert(q, format, BoxFormat::xyxy, qx);
  if (f)
    for (int c = 0; c < 4; ++c) px[c] *= f[c], qx[c] *= f[c];
  A gpx[4] = {A(0), A(0), A(0), A(0)}, gqx[4] = {A(0), A(0), A(0), A(0)};
  const A v = eb::overlap(px, qx, o, g, gp ? gpx : static_cast<A*>(nullptr), gq ? gqx : static_cast<A*>(nullptr));
  if (f)
    for (int c = 0; c < 4; ++c) gpx[c] *= f[c], gqx[c] *= f[c];
  if (gp) eb::convert_backward(gpx, format, BoxFormat::xyxy, gp);
  if (gq) eb::convert_backward(gqx, format, BoxFormat::xyxy, gq);
  return v;
}

// ---- giou_loss (aligned)

template <class T>
struct GIoULossFn {
  BoxRows<const T> pred, target;
  const T* weight;  // [N] or null
  std::int64_t weight_stride;
  T* out;  // reduction none: [N] (stride out_stride); otherwise null (the sum is reduced)
  std::int64_t out_stride;
  const T* grad_out;  // upstream: [N] for none, one element otherwise; null: d(value)/d(value) = 1
  std::int64_t grad_out_stride;  // 0 for one element
  BoxRows<T> grad_pred, grad_target;  // data null when not asked
  BoxFormat format;
  eb::Overlap overlap;
  double scale;  // reduction factor times options.scale
  KDLOSS_HOST_DEVICE double operator()(std::int64_t i) const {
    using A = acc_t<T>;
    A p[4], q[4];
    load_box(pred, 0, i, p);
    load_box(target, 0, i, q);
    const A w = weight ? load_as<A>(weight + i * weight_stride) : A(1);
    const bool gp_on = grad_pred.m.data != nullptr, gq_on = grad_target.m.data != nullptr;
    A gp[4], gq[4];
    A g = A(0);
    if (gp_on || gq_on) {
      const A up = grad_out ? load_as<A>(grad_out + i * grad_out_stride) : A(1);
      g = -up * w * A(scale);  // loss = 1 - giou
    }
    const A giou = aligned_overlap(p, q, format, overlap, static_cast<const A*>(nullptr), g,
                                   gp_on ? gp : static_cast<A*>(nullptr), gq_on ? gq : static_cast<A*>(nullptr));
    const A loss = (A(1) - giou) * w;
    if (out) store_as(out + i * out_stride, loss * A(scale));
    if (gp_on) store_box(grad_pred, 0, i, gp);
    if (gq_on) store_box(grad_target, 0, i, gq);
    return static_cast<double>(loss);
  }
};

template <class T>
void check_grad_pair(const Checker& ck, const View<T>& g, const char* arg, const View<const T>& like,
                     const char* like_arg) {
  check_output(ck, g, arg, like.shape, like);
  ck.disjoint(g, arg, like, like_arg);
}

/// An assignment of K pairs (pred_rows into [0, rows), target_rows into [0, targets)): shapes and device;
/// in host memory also the ranges and that each prediction row appears at most once (device indices
/// cannot be read during validation: a device pass skips pairs out of range).
inline void check_matched_pairs(const Checker& ck, const View<const std::int64_t>& pred_rows,
                             const View<const std::int64_t>& target_rows, std::int64_t rows, std::int64_t targets,
                             Device device) {
  kdloss::detail::check_index_view(ck, pred_rows, "pred_rows", 1);
  kdloss::detail::check_index_view(ck, target_rows, "target_rows", 1);
  ck.same_shape(pred_rows, "pred_rows", target_rows, "target_rows");
  ck.device(pred_rows, "pred_rows", device);
  ck.device(target_rows, "target_rows", device);
  const bool readable = device.is_host();
  // Duplicates by sorting the pairs' rows (memory of the pair count, which is backed), not a bitmap over
  // `rows`: a check-only call may describe 2^35 prediction rows (the fuzzer's out-of-memory finding).
  std::vector<std::int64_t> sorted;
  if (readable) sorted.reserve(static_cast<std::size_t>(pred_rows.numel()));
  for (std::int64_t k = 0; readable && k < pred_rows.numel(); ++k) {
    const std::int64_t r = pred_rows(k), t = target_rows(k);
    require(r >= 0 && r < rows, ck.fn, ": argument 'pred_rows' has ", r, " at pair ", k, ", outside [0, ", rows,
            ") (rows b * Q + q of the predictions)");
    require(t >= 0 && t < targets, ck.fn, ": argument 'target_rows' has ", t, " at pair ", k, ", outside [0, ",
            targets, ") (rows of the packed targets)");
    sorted.push_back(r);
  }
  std::sort(sorted.begin(), sorted.end());
  const auto twice = std::adjacent_find(sorted.begin(), sorted.end());
  require(twice == sorted.end(), ck.fn, ": argument 'pred_rows' lists row ", twice == sorted.end() ? 0 : *twice,
          " twice; an assignment matches each prediction at most once");
}

/// Labels of [T] in [0, classes) when they are in host memory (device labels are checked by the pass).
inline void check_labels(const Checker& ck, const View<const std::int64_t>& labels, const char* arg,
                         std::int64_t classes, const char* classes_of) {
  const bool readable = labels.device.is_host();
  for (std::int64_t t = 0; readable && t < labels.numel(); ++t)
    require(labels(t) >= 0 && labels(t) < classes, ck.fn, ": argument '", arg, "' has ", labels(t), " at row ", t,
            ", outside the C = ", classes, " classes of '", classes_of, "'");
}

inline constexpr const char* kConvertNames[3] = {"kdloss::ops::box_convert", "kdloss::ops::box_convert_backward",
                                                 "kdloss::ops::box_convert_forward_backward"};
inline constexpr const char* kScaleNames[3] = {"kdloss::ops::box_scale", "kdloss::ops::box_scale_backward",
                                               "kdloss::ops::box_scale_forward_backward"};
inline constexpr const char* kOverlapNames[3] = {"kdloss::ops::box_overlap", "kdloss::ops::box_overlap_backward",
                                                 "kdloss::ops::box_overlap_forward_backward"};
inline constexpr const char* kGIoUNames[3] = {"kdloss::ops::giou_loss", "kdloss::ops::giou_loss_backward",
                                              "kdloss::ops::giou_loss_forward_backward"};

}  // namespace ops::boxes_detail

namespace ops {

// =============================================================================================
// box_convert: torchvision.ops.box_convert(boxes, in_fmt, out_fmt); backward is the transpose of the
// (linear) map, applied to grad_out.

/// Options of ops::box_convert.
struct BoxConvertOptions {
  BoxFormat in_fmt = BoxFormat::cxcywh;
  BoxFormat out_fmt = BoxFormat::xyxy;
};

/// The arguments of one ops::box_convert call ([4], [N, 4] or [B, N, 4], any strides).
///
///   float cxcywh[8] = {0.5f, 0.5f, 0.2f, 0.4f, 0.3f, 0.6f, 0.1f, 0.1f}, xyxy[8];
///   kdloss::ops::BoxConvertArgs<float> args;
///   args.boxes = kdloss::host_view<const float>(cxcywh, {2, 4});
///   args.out = kdloss::host_view(xyxy, {2, 4});
///   kdloss::ops::box_convert(args, kdloss::Mode::forward);
/// Fields: boxes (forward), out (forward), grad_out (dL/dout: backward, forward_backward), grad_boxes
/// (written by backward and forward_backward), options.
template <class T>
struct BoxConvertArgs {
  View<const T> boxes{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_boxes{};
  BoxConvertOptions options{};
};

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::ops::BoxConvertArgs<float> args;   // filled in as in BoxConvertArgs's example
///   kdloss::ops::box_convert_check(args, kdloss::Mode::forward);
template <class T>
void box_convert_check(const BoxConvertArgs<T>& a, Mode mode) {
  namespace d = boxes_detail;
  const kdloss::detail::Checker ck{d::kConvertNames[mode_index(mode)]};
  d::check_format(ck, a.options.in_fmt, "options.in_fmt");
  d::check_format(ck, a.options.out_fmt, "options.out_fmt");
  Device device = Device::host();
  if (writes_value(mode)) {
    d::check_boxes(ck, a.boxes, "boxes");
    d::check_output(ck, a.out, "out", a.boxes.shape, a.boxes);
    ck.disjoint(a.out, "out", a.boxes, "boxes");
    device = a.boxes.device;
  }
  if (writes_gradients(mode)) {
    d::check_boxes(ck, a.grad_out, "grad_out");
    if (writes_value(mode)) {
      ck.same_shape(a.grad_out, "grad_out", a.boxes, "boxes");
      ck.device(a.grad_out, "grad_out", device);
      ck.disjoint(a.out, "out", a.grad_out, "grad_out");
      ck.disjoint(a.grad_boxes, "grad_boxes", a.boxes, "boxes");
      ck.disjoint(a.grad_boxes, "grad_boxes", a.out, "out");
    }
    d::check_output(ck, a.grad_boxes, "grad_boxes", a.grad_out.shape, a.grad_out);
    ck.disjoint(a.grad_boxes, "grad_boxes", a.grad_out, "grad_out");
    device = a.grad_out.device;
  }
  kdloss::detail::require_backend<T>(ck.fn, device);
}

/// Workspace bytes of box_convert: 0.
///
///   kdloss::ops::BoxConvertArgs<float> args;   // filled in as in BoxConvertArgs's example
///   std::size_t bytes = kdloss::ops::box_convert_workspace_bytes(args);   // 0
template <class T>
std::size_t box_convert_workspace_bytes(const BoxConvertArgs<T>&) {
  return 0;
}

/// Checks, then runs box_convert in `mode`.
///
///   kdloss::ops::BoxConvertArgs<float> args;   // filled in as in BoxConvertArgs's example
///   kdloss::ops::box_convert(args, kdloss::Mode::forward);
template <class T>
void box_convert(const BoxConvertArgs<T>& a, Mode mode, const Exec& exec = {}) {
  box_convert_check(a, mode);
  namespace d = boxes_detail;
  if (writes_value(mode)) {
    const auto in = d::rows_of(a.boxes);
    kdloss::detail::box_index_for<T>(a.boxes.device, exec.stream, in.batch * in.n, 8,
                                     d::ConvertFn<T>{in, d::rows_of(a.out), a.options.in_fmt, a.options.out_fmt, false});
  }
  if (writes_gradients(mode)) {
    const auto in = d::rows_of(a.grad_out);
    kdloss::detail::box_index_for<T>(a.grad_out.device, exec.stream, in.batch * in.n, 8,
                                     d::ConvertFn<T>{in, d::rows_of(a.grad_boxes), a.options.in_fmt,
                                                     a.options.out_fmt, true});
  }
}

/// out = boxes converted from options.in_fmt to options.out_fmt (torchvision.ops.box_convert).
///
///   std::vector<float> cxcywh = {0.5f, 0.5f, 0.2f, 0.4f}, xyxy(4);
///   kdloss::ops::box_convert(kdloss::host_view<const float>(cxcywh.data(), {1, 4}),
///                            kdloss::host_view(xyxy.data(), {1, 4}),
///                            {kdloss::ops::BoxFormat::cxcywh, kdloss::ops::BoxFormat::xyxy});
template <class X, class O>
void box_convert(const View<X>& boxes, const View<O>& out, const BoxConvertOptions& options = {},
                 const Exec& exec = {}) {
  box_convert(BoxConvertArgs<O>{boxes, out, {}, {}, options}, Mode::forward, exec);
}

/// grad_boxes from grad_out (the conversion is linear: its Jacobian's transpose).
///
///   std::vector<float> g_xyxy = {1, 0, 0, 1}, g_cxcywh(4);
///   kdloss::ops::box_convert_backward(kdloss::host_view<const float>(g_xyxy.data(), {1, 4}),
///                                     kdloss::host_view(g_cxcywh.data(), {1, 4}));
template <class G, class O>
void box_convert_backward(const View<G>& grad_out, const View<O>& grad_boxes, const BoxConvertOptions& options = {},
                          const Exec& exec = {}) {
  box_convert(BoxConvertArgs<O>{{}, {}, grad_out, grad_boxes, options}, Mode::backward, exec);
}

// =============================================================================================
// box_scale: out = boxes * (w, h, w, h) of the box's image (or / with normalize), then optionally
// clamped to [0, w] x [0, h] (x coordinates to [0, w], y to [0, h]: meaningful for xyxy boxes, as
// mmdet clamps its teacher boxes). Backward: grad * factor where the clamp passes (strictly inside
// (0, size), torch 2.15's clamp), 0 elsewhere.

/// Options of ops::box_scale.
struct BoxScaleOptions {
  bool normalize = false;  // divide by the size instead of multiplying (pixel -> normalised)
  bool clamp = false;      // clamp the result to [0, w] x [0, h]
};

/// The arguments of one ops::box_scale call. boxes [B, N, 4] (or [N, 4] with B = 1), sizes [B, 2] as
/// (height, width) (DETR's target_sizes, mmdet's img_shape[:2]), any dtype of T.
///
///   float boxes[8] = {0.1f, 0.2f, 0.5f, 0.6f, 0.0f, 0.0f, 1.0f, 1.0f}, px[8];
///   float hw[2] = {480.0f, 640.0f};
///   kdloss::ops::BoxScaleArgs<float> args;
///   args.boxes = kdloss::host_view<const float>(boxes, {1, 2, 4});
///   args.sizes = kdloss::host_view<const float>(hw, {1, 2});
///   args.out = kdloss::host_view(px, {1, 2, 4});
///   args.options.clamp = true;
///   kdloss::ops::box_scale(args, kdloss::Mode::forward);
/// Fields: boxes (read by every mode: backward needs it for the clamp), sizes, out (forward), grad_out,
/// grad_boxes (backward, forward_backward), options.
template <class T>
struct BoxScaleArgs {
  View<const T> boxes{};
  View<const T> sizes{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_boxes{};
  BoxScaleOptions options{};
};

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::ops::BoxScaleArgs<float> args;   // filled in as in BoxScaleArgs's example
///   kdloss::ops::box_scale_check(args, kdloss::Mode::forward);
template <class T>
void box_scale_check(const BoxScaleArgs<T>& a, Mode mode) {
  namespace d = boxes_detail;
  const kdloss::detail::Checker ck{d::kScaleNames[mode_index(mode)]};
  d::check_boxes(ck, a.boxes, "boxes");
  const std::int64_t batch = a.boxes.rank() == 3 ? a.boxes.size(0) : 1;
  kdloss::detail::require(present(a.sizes), ck.fn, ": argument 'sizes' is absent; pass [B, 2] (height, width)");
  ck.not_null(a.sizes, "sizes");
  ck.shape(a.sizes, "sizes", Dims{batch, 2});
  ck.device(a.sizes, "sizes", a.boxes.device);
  if (writes_value(mode)) {
    d::check_output(ck, a.out, "out", a.boxes.shape, a.boxes);
    ck.disjoint(a.out, "out", a.boxes, "boxes");
    ck.disjoint(a.out, "out", a.sizes, "sizes");
  }
  if (writes_gradients(mode)) {
    kdloss::detail::require(present(a.grad_out), ck.fn, ": argument 'grad_out' is absent but ", to_string(mode),
                            " reads it");
    ck.not_null(a.grad_out, "grad_out");
    ck.same_shape(a.grad_out, "grad_out", a.boxes, "boxes");
    ck.device(a.grad_out, "grad_out", a.boxes.device);
    d::check_grad_pair(ck, a.grad_boxes, "grad_boxes", a.boxes, "boxes");
    ck.disjoint(a.grad_boxes, "grad_boxes", a.grad_out, "grad_out");
    ck.disjoint(a.grad_boxes, "grad_boxes", a.sizes, "sizes");
    if (writes_value(mode)) ck.disjoint(a.grad_boxes, "grad_boxes", a.out, "out");
  }
  kdloss::detail::require_backend<T>(ck.fn, a.boxes.device);
}

/// Workspace bytes of box_scale: 0.
///
///   kdloss::ops::BoxScaleArgs<float> args;   // filled in as in BoxScaleArgs's example
///   std::size_t bytes = kdloss::ops::box_scale_workspace_bytes(args);   // 0
template <class T>
std::size_t box_scale_workspace_bytes(const BoxScaleArgs<T>&) {
  return 0;
}

/// Checks, then runs box_scale in `mode`.
///
///   kdloss::ops::BoxScaleArgs<float> args;   // filled in as in BoxScaleArgs's example
///   kdloss::ops::box_scale(args, kdloss::Mode::forward);
template <class T>
void box_scale(const BoxScaleArgs<T>& a, Mode mode, const Exec& exec = {}) {
  box_scale_check(a, mode);
  namespace d = boxes_detail;
  const auto rows = d::rows_of(a.boxes);
  const std::int64_t n = rows.batch * rows.n;
  const bool nz = a.options.normalize, cl = a.options.clamp;
  if (writes_value(mode))
    kdloss::detail::box_index_for<T>(a.boxes.device, exec.stream, n, 8,
                                     d::ScaleFn<T, const T>{rows, d::rows_of(a.out), a.sizes.data, a.sizes.stride(0),
                                                            a.sizes.stride(1), nz, cl, false, rows});
  if (writes_gradients(mode))
    kdloss::detail::box_index_for<T>(a.boxes.device, exec.stream, n, 8,
                                     d::ScaleFn<T, const T>{d::rows_of(a.grad_out), d::rows_of(a.grad_boxes),
                                                            a.sizes.data, a.sizes.stride(0), a.sizes.stride(1), nz, cl,
                                                            true, rows});
}

/// out = boxes * (w, h, w, h) per image, optionally clamped to the image.
///
///   std::vector<float> boxes = {0.1f, 0.2f, 0.5f, 1.2f}, hw = {480, 640}, px(4);
///   kdloss::ops::box_scale(kdloss::host_view<const float>(boxes.data(), {1, 1, 4}),
///                          kdloss::host_view<const float>(hw.data(), {1, 2}),
///                          kdloss::host_view(px.data(), {1, 1, 4}), {/*normalize=*/false, /*clamp=*/true});
template <class X, class S, class O>
void box_scale(const View<X>& boxes, const View<S>& sizes, const View<O>& out, const BoxScaleOptions& options = {},
               const Exec& exec = {}) {
  box_scale(BoxScaleArgs<O>{boxes, sizes, out, {}, {}, options}, Mode::forward, exec);
}

/// grad_boxes of box_scale from grad_out (boxes: the forward's input, needed for the clamp).
///
///   std::vector<float> boxes = {0.1f, 0.2f, 0.5f, 1.2f}, hw = {480, 640}, g = {1, 1, 1, 1}, gb(4);
///   kdloss::ops::box_scale_backward(kdloss::host_view<const float>(boxes.data(), {1, 1, 4}),
///                                   kdloss::host_view<const float>(hw.data(), {1, 2}),
///                                   kdloss::host_view<const float>(g.data(), {1, 1, 4}),
///                                   kdloss::host_view(gb.data(), {1, 1, 4}), {false, true});
template <class X, class S, class G, class O>
void box_scale_backward(const View<X>& boxes, const View<S>& sizes, const View<G>& grad_out, const View<O>& grad_boxes,
                        const BoxScaleOptions& options = {}, const Exec& exec = {}) {
  box_scale(BoxScaleArgs<O>{boxes, sizes, {}, grad_out, grad_boxes, options}, Mode::backward, exec);
}

// =============================================================================================
// box_overlap: out[b, i, j] = IoU or GIoU of boxes1[b, i] and boxes2[b, j] (forward only: matching costs
// are constants). Either side may drop the batch axis and is then shared by every image.

/// Options of ops::box_overlap. The defaults are torchvision's box_iou / DETR's (no eps).
struct BoxOverlapOptions {
  bool giou = false;                     // false: IoU; true: GIoU
  OverlapForm form = OverlapForm::detr;  // detr (no eps), mmdet (max(., eps)), torchvision (+ eps)
  double eps = 0.0;                      // mmdet's bbox_overlaps: 1e-6
  BoxFormat format = BoxFormat::xyxy;    // of both box sets
};

/// The arguments of one ops::box_overlap call: boxes1 [N, 4] or [B, N, 4], boxes2 [M, 4] or [B, M, 4],
/// out [N, M] (neither batched) or [B, N, M].
///
///   float a[8] = {0, 0, 2, 2, 1, 1, 3, 3}, b[4] = {1, 0, 3, 2}, iou[2];
///   kdloss::ops::BoxOverlapArgs<float> args;
///   args.boxes1 = kdloss::host_view<const float>(a, {2, 4});
///   args.boxes2 = kdloss::host_view<const float>(b, {1, 4});
///   args.out = kdloss::host_view(iou, {2, 1});
///   kdloss::ops::box_overlap(args, kdloss::Mode::forward);
/// Fields: boxes1, boxes2, out, options.
template <class T>
struct BoxOverlapArgs {
  View<const T> boxes1{}, boxes2{};
  View<T> out{};
  BoxOverlapOptions options{};
};

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode` (forward
/// only); writes nothing.
///
///   kdloss::ops::BoxOverlapArgs<float> args;   // filled in as in BoxOverlapArgs's example
///   kdloss::ops::box_overlap_check(args, kdloss::Mode::forward);
template <class T>
void box_overlap_check(const BoxOverlapArgs<T>& a, Mode mode) {
  namespace d = boxes_detail;
  const kdloss::detail::Checker ck{d::kOverlapNames[mode_index(mode)]};
  kdloss::detail::require(mode == Mode::forward, ck.fn,
                          ": box_overlap is forward only (a matching cost is a constant); mode is ", to_string(mode));
  d::check_format(ck, a.options.format, "options.format");
  d::check_overlap(ck, expr::boxes::Overlap{a.options.form, a.options.eps, a.options.giou});
  d::check_boxes(ck, a.boxes1, "boxes1");
  d::check_boxes(ck, a.boxes2, "boxes2");
  kdloss::detail::require(a.boxes1.rank() >= 2 && a.boxes2.rank() >= 2, ck.fn,
                          ": arguments 'boxes1' ", a.boxes1.shape.str(), " and 'boxes2' ", a.boxes2.shape.str(),
                          " must be [N, 4] or [B, N, 4]");
  ck.device(a.boxes2, "boxes2", a.boxes1.device);
  const bool b1 = a.boxes1.rank() == 3, b2 = a.boxes2.rank() == 3;
  if (b1 && b2)
    kdloss::detail::require(a.boxes1.size(0) == a.boxes2.size(0), ck.fn, ": arguments 'boxes1' ",
                            a.boxes1.shape.str(), " and 'boxes2' ", a.boxes2.shape.str(),
                            " must have the same batch B");
  const std::int64_t n = a.boxes1.size(a.boxes1.rank() - 2), m = a.boxes2.size(a.boxes2.rank() - 2);
  const Dims shape = b1 ? Dims{a.boxes1.size(0), n, m} : (b2 ? Dims{a.boxes2.size(0), n, m} : Dims{n, m});
  d::check_output(ck, a.out, "out", shape, a.boxes1);
  ck.disjoint(a.out, "out", a.boxes1, "boxes1");
  ck.disjoint(a.out, "out", a.boxes2, "boxes2");
  kdloss::detail::require_backend<T>(ck.fn, a.boxes1.device);
}

/// Workspace bytes of box_overlap: 0.
///
///   kdloss::ops::BoxOverlapArgs<float> args;   // filled in as in BoxOverlapArgs's example
///   std::size_t bytes = kdloss::ops::box_overlap_workspace_bytes(args);   // 0
template <class T>
std::size_t box_overlap_workspace_bytes(const BoxOverlapArgs<T>&) {
  return 0;
}

/// Checks, then runs box_overlap (Mode::forward only).
///
///   kdloss::ops::BoxOverlapArgs<float> args;   // filled in as in BoxOverlapArgs's example
///   kdloss::ops::box_overlap(args, kdloss::Mode::forward);
template <class T>
void box_overlap(const BoxOverlapArgs<T>& a, Mode mode, const Exec& exec = {}) {
  box_overlap_check(a, mode);
  namespace d = boxes_detail;
  const auto r1 = d::rows_of(a.boxes1), r2 = d::rows_of(a.boxes2);
  const int ro = a.out.rank();
  const expr::MatOperand<T> out{a.out.data, ro == 3 ? a.out.stride(0) : 0, a.out.stride(ro - 2), a.out.stride(ro - 1)};
  const std::int64_t batch = ro == 3 ? a.out.size(0) : 1;
  const d::PairwiseFn<T> f{r1, r2, out, r1.n, r2.n, a.boxes1.rank() == 3, a.boxes2.rank() == 3, a.options.format,
                           expr::boxes::Overlap{a.options.form, a.options.eps, a.options.giou}};
  kdloss::detail::box_index_for<T>(a.boxes1.device, exec.stream, batch * r1.n * r2.n, 32, f);
}

/// torchvision.ops.box_iou: out[.., i, j] = IoU(boxes1[.., i], boxes2[.., j]) (xyxy unless options say).
///
///   std::vector<float> a = {0, 0, 2, 2}, b = {1, 1, 3, 3}, iou(1);
///   kdloss::ops::box_iou(kdloss::host_view<const float>(a.data(), {1, 4}),
///                        kdloss::host_view<const float>(b.data(), {1, 4}), kdloss::host_view(iou.data(), {1, 1}));
template <class X, class Y, class O>
void box_iou(const View<X>& boxes1, const View<Y>& boxes2, const View<O>& out, BoxOverlapOptions options = {},
             const Exec& exec = {}) {
  options.giou = false;
  box_overlap(BoxOverlapArgs<O>{boxes1, boxes2, out, options}, Mode::forward, exec);
}

/// torchvision.ops.generalized_box_iou (DETR's; mmdet's bbox_overlaps 'giou' with
/// {true, OverlapForm::mmdet, 1e-6}).
///
///   std::vector<float> a = {0, 0, 2, 2}, b = {3, 3, 4, 4}, giou(1);
///   kdloss::ops::generalized_box_iou(kdloss::host_view<const float>(a.data(), {1, 4}),
///                                    kdloss::host_view<const float>(b.data(), {1, 4}),
///                                    kdloss::host_view(giou.data(), {1, 1}));
template <class X, class Y, class O>
void generalized_box_iou(const View<X>& boxes1, const View<Y>& boxes2, const View<O>& out,
                         BoxOverlapOptions options = {}, const Exec& exec = {}) {
  options.giou = true;
  box_overlap(BoxOverlapArgs<O>{boxes1, boxes2, out, options}, Mode::forward, exec);
}

// =============================================================================================
// giou_loss: loss_i = weight_i * (1 - GIoU(pred_i, target_i)) over paired boxes [N, 4];
// out = none: scale * loss ([N]); sum: scale * sum_i loss_i; mean: scale * sum_i loss_i / N.
// Gradients to pred and to target (either may be left absent).

/// Options of ops::giou_loss. Defaults: DETR's form, sum. mmdet's GIoULoss: form mmdet, eps 1e-6,
/// reduction sum and scale = loss_weight / (avg_factor + FLT_EPSILON); torchvision's
/// generalized_box_iou_loss: form torchvision, eps 1e-7.
struct GIoULossOptions {
  OverlapForm form = OverlapForm::detr;
  double eps = 0.0;
  Reduction reduction = Reduction::sum;  // none, sum or mean (of the N pairs; an empty mean is 0, as torchvision)
  double scale = 1.0;                    // multiplies the reduced value (loss weight / normaliser)
  BoxFormat format = BoxFormat::xyxy;    // of pred and target; gradients are returned in this format
};

/// The arguments of one ops::giou_loss call.
///
///   float pred[8] = {0, 0, 2, 2, 1, 1, 3, 4}, target[8] = {1, 1, 3, 3, 1, 1, 3, 4}, loss, gp[8];
///   kdloss::ops::GIoULossArgs<float> args;
///   args.pred = kdloss::host_view<const float>(pred, {2, 4});
///   args.target = kdloss::host_view<const float>(target, {2, 4});
///   args.out = kdloss::host_scalar(&loss);
///   args.grad_pred = kdloss::host_view(gp, {2, 4});
///   kdloss::ops::giou_loss(args, kdloss::Mode::forward_backward);
/// Fields: pred, target ([N, 4] or [4]), weight (optional [N]), out ([N] for reduction none, else one
/// element), grad_out (backward: out's shape), grad_pred, grad_target (optional outputs of backward and
/// forward_backward; at least one), options.
template <class T>
struct GIoULossArgs {
  View<const T> pred{}, target{};
  View<const T> weight{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_pred{}, grad_target{};
  GIoULossOptions options{};
};

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::ops::GIoULossArgs<float> args;   // filled in as in GIoULossArgs's example
///   kdloss::ops::giou_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void giou_loss_check(const GIoULossArgs<T>& a, Mode mode) {
  namespace d = boxes_detail;
  const kdloss::detail::Checker ck{d::kGIoUNames[mode_index(mode)]};
  const auto& o = a.options;
  d::check_format(ck, o.format, "options.format");
  d::check_overlap(ck, expr::boxes::Overlap{o.form, o.eps, true});
  kdloss::detail::require(o.reduction == Reduction::none || o.reduction == Reduction::sum ||
                              o.reduction == Reduction::mean,
                          ck.fn, ": argument 'options.reduction' is ", to_string(o.reduction),
                          " but giou_loss takes none, sum or mean");
  d::check_boxes(ck, a.pred, "pred", 2);
  d::check_boxes(ck, a.target, "target", 2);
  ck.same_shape(a.pred, "pred", a.target, "target");
  ck.device(a.target, "target", a.pred.device);
  const std::int64_t n = a.pred.rank() == 2 ? a.pred.size(0) : 1;
  const Dims per = a.pred.rank() == 2 ? Dims{n} : Dims{};
  if (present(a.weight)) {
    ck.not_null(a.weight, "weight");
    ck.shape(a.weight, "weight", per);
    ck.device(a.weight, "weight", a.pred.device);
  }
  const bool none = o.reduction == Reduction::none;
  if (writes_value(mode)) {
    if (none) d::check_output(ck, a.out, "out", per, a.pred);
    else d::check_scalar_out(ck, a.out, "out", a.pred.device);
    ck.disjoint(a.out, "out", a.pred, "pred");
    ck.disjoint(a.out, "out", a.target, "target");
    ck.disjoint(a.out, "out", a.weight, "weight");
  }
  if (writes_gradients(mode)) {
    kdloss::detail::require(present(a.grad_pred) || present(a.grad_target), ck.fn,
                            ": arguments 'grad_pred' and 'grad_target' are both absent; ", to_string(mode),
                            " writes at least one");
    if (mode == Mode::backward) {
      kdloss::detail::require(present(a.grad_out), ck.fn, ": argument 'grad_out' is absent but backward reads it");
      ck.not_null(a.grad_out, "grad_out");
      if (none) ck.shape(a.grad_out, "grad_out", per);
      else ck.scalar_output(a.grad_out, "grad_out");
      ck.device(a.grad_out, "grad_out", a.pred.device);
    }
    const char* names[2] = {"grad_pred", "grad_target"};
    const View<T>* gs[2] = {&a.grad_pred, &a.grad_target};
    for (int s = 0; s < 2; ++s) {
      if (absent(*gs[s])) continue;
      d::check_grad_pair(ck, *gs[s], names[s], a.pred, "pred");
      ck.disjoint(*gs[s], names[s], a.target, "target");
      ck.disjoint(*gs[s], names[s], a.weight, "weight");
      ck.disjoint(*gs[s], names[s], a.grad_out, "grad_out");
      if (writes_value(mode)) ck.disjoint(*gs[s], names[s], a.out, "out");
    }
    if (present(a.grad_pred) && present(a.grad_target))
      ck.disjoint(a.grad_pred, "grad_pred", a.grad_target, "grad_target");
  }
  kdloss::detail::require_backend<T>(ck.fn, a.pred.device);
}

/// Workspace bytes of giou_loss: the GPU's per-block partial sums of a reduced loss; 0 on the host.
///
///   kdloss::ops::GIoULossArgs<float> args;   // filled in as in GIoULossArgs's example
///   std::size_t bytes = kdloss::ops::giou_loss_workspace_bytes(args);
template <class T>
std::size_t giou_loss_workspace_bytes(const GIoULossArgs<T>& a) {
  if (a.options.reduction == Reduction::none) return 0;
  kdloss::detail::Carver c;
  kdloss::detail::carve_reduction(c, a.pred.device, a.pred.rank() == 2 ? a.pred.size(0) : 1);
  return c.bytes();
}

/// Checks, then runs giou_loss in `mode` (forward: out; backward: grad_pred / grad_target from grad_out;
/// forward_backward: out and the gradients of out itself).
///
///   kdloss::ops::GIoULossArgs<float> args;   // filled in as in GIoULossArgs's example
///   kdloss::ops::giou_loss(args, kdloss::Mode::forward_backward);
template <class T>
void giou_loss(const GIoULossArgs<T>& a, Mode mode, const Exec& exec = {}) {
  giou_loss_check(a, mode);
  namespace d = boxes_detail;
  const auto& o = a.options;
  const std::int64_t n = a.pred.rank() == 2 ? a.pred.size(0) : 1;
  const bool none = o.reduction == Reduction::none;
  // an empty mean is 0, as torchvision's generalized_box_iou_loss returns it (0.0 * loss.sum())
  const double scale = o.scale * (o.reduction == Reduction::mean && n > 0 ? 1.0 / static_cast<double>(n) : 1.0);
  kdloss::detail::HostScratch host_scratch;
  void* base = kdloss::detail::resolve_workspace(d::kGIoUNames[mode_index(mode)], a.pred.device, exec.workspace,
                                                 giou_loss_workspace_bytes(a), host_scratch);
  kdloss::detail::Carver carver(base);
  double* partials = none ? nullptr : kdloss::detail::carve_reduction(carver, a.pred.device, n);
  const auto stride0 = [](const auto& v) -> std::int64_t { return v.rank() >= 1 ? v.stride(0) : 0; };
  d::GIoULossFn<T> f{d::rows_of(a.pred),
                     d::rows_of(a.target),
                     present(a.weight) ? a.weight.data : nullptr,
                     stride0(a.weight),
                     nullptr,
                     0,
                     nullptr,
                     0,
                     {},
                     {},
                     o.format,
                     expr::boxes::Overlap{o.form, o.eps, true},
                     scale};
  if (present(a.grad_pred) && writes_gradients(mode)) f.grad_pred = d::rows_of(a.grad_pred);
  if (present(a.grad_target) && writes_gradients(mode)) f.grad_target = d::rows_of(a.grad_target);
  if (mode == Mode::backward) {
    f.grad_out = a.grad_out.data;
    f.grad_out_stride = none ? stride0(a.grad_out) : 0;
  }
  if (none) {
    if (writes_value(mode)) {
      f.out = a.out.data;
      f.out_stride = stride0(a.out);
    }
    kdloss::detail::box_index_for<T>(a.pred.device, exec.stream, n, 64, f);
    return;
  }
  if (writes_value(mode))
    kdloss::detail::box_index_sum<T>(a.pred.device, exec.stream, n, 64, f, partials, kdloss::detail::Scale{scale},
                                     a.out.data);
  else
    kdloss::detail::box_index_for<T>(a.pred.device, exec.stream, n, 64, f);
}

/// loss = 1 - GIoU(pred, target) reduced as options say (xyxy unless options.format).
///
///   std::vector<float> p = {0, 0, 2, 2}, t = {1, 1, 3, 3};
///   float loss;
///   kdloss::ops::giou_loss(kdloss::host_view<const float>(p.data(), {1, 4}),
///                          kdloss::host_view<const float>(t.data(), {1, 4}), kdloss::host_scalar(&loss));
template <class P, class Q, class O>
void giou_loss(const View<P>& pred, const View<Q>& target, const View<O>& out, const GIoULossOptions& options = {},
               const Exec& exec = {}) {
  giou_loss(GIoULossArgs<O>{pred, target, {}, out, {}, {}, {}, options}, Mode::forward, exec);
}

/// The loss and its gradient to pred (and to target when grad_target is present) in one call.
///
///   std::vector<float> p = {0, 0, 2, 2}, t = {1, 1, 3, 3}, gp(4);
///   float loss;
///   kdloss::ops::giou_loss_forward_backward(kdloss::host_view<const float>(p.data(), {1, 4}),
///                                           kdloss::host_view<const float>(t.data(), {1, 4}),
///                                           kdloss::host_scalar(&loss), kdloss::host_view(gp.data(), {1, 4}),
///                                           kdloss::View<float>{});
template <class P, class Q, class O>
void giou_loss_forward_backward(const View<P>& pred, const View<Q>& target, const View<O>& out,
                                const View<O>& grad_pred, const View<O>& grad_target,
                                const GIoULossOptions& options = {}, const Exec& exec = {}) {
  giou_loss(GIoULossArgs<O>{pred, target, {}, out, {}, grad_pred, grad_target, options}, Mode::forward_backward,
            exec);
}

/// grad_pred / grad_target from grad_out (out's shape).
///
///   std::vector<float> p = {0, 0, 2, 2}, t = {1, 1, 3, 3}, gp(4);
///   float up = 1.0f;
///   kdloss::ops::giou_loss_backward(kdloss::host_view<const float>(p.data(), {1, 4}),
///                                   kdloss::host_view<const float>(t.data(), {1, 4}),
///                                   kdloss::host_scalar<const float>(&up), kdloss::host_view(gp.data(), {1, 4}),
///                                   kdloss::View<float>{});
template <class P, class Q, class G, class O>
void giou_loss_backward(const View<P>& pred, const View<Q>& target, const View<G>& grad_out, const View<O>& grad_pred,
                        const View<O>& grad_target, const GIoULossOptions& options = {}, const Exec& exec = {}) {
  giou_loss(GIoULossArgs<O>{pred, target, {}, {}, grad_out, grad_pred, grad_target, options}, Mode::backward, exec);
}

}  // namespace ops
} }  // namespace kdloss
