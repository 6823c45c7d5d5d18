// kdloss/losses/detr/matching_cost.hpp: the Hungarian matchers' cost matrices of DETR, Deformable DETR,
// mmdet's HungarianAssigner and DETRDistill's DistillHungarianAssigner, for a whole batch in one call
// into a padded [B, Q, T] view (losses.md 4.2, 4.4, 5.2). Forward only: the costs are constants for the
// matcher. See docs/losses/detr.md.
//
//   C[b, i, j] = class_weight * class_cost(i, j) + bbox_weight * |pred_i - target_j|_1
//              + giou_weight * (-GIoU(xyxy(pred_i) * f_b, xyxy(target_j) * f'_b))       (j < n_b)
//
// class costs:
//   soft_bce  DETRDistill: sum_c [p_jc softplus(-z_ic) + (1 - p_jc) softplus(z_ic)]
//             = sum_c softplus(z_ic) - sum_c p_jc z_ic: a row term plus a matrix product (ops::matmul)
//   focal     Deformable DETR (eps 1e-8) and mmdet's FocalLossCost (eps 1e-12), p = sigmoid(z_i[label_j]):
//             alpha (1 - p)^gamma (-log(p + eps)) - (1 - alpha) p^gamma (-log(1 - p + eps))
//   softmax   DETR: -softmax(z_i)[label_j]
// L1 between the boxes in pred_format (normalised cxcywh); targets given in pixels (target_in_pixels)
// are first divided by (w, h, w, h), as mmdet normalises gt_bboxes. -GIoU in pixel xyxy when `sizes` is
// present (mmdet's IoUCost), else in normalised xyxy (DETR). A term whose weight is 0 is left out.
//
// Targets are ragged: the packed rows of all images, image b owning rows offsets[b] to offsets[b + 1] - 1.
// Columns j >= n_b of image b are set to options.padding_value. On the GPU the class term soft_bce
// needs Exec::blas (cuBLAS) and the offsets are carried in the kernel's arguments (at most 64 images).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kdloss/backend/dispatch_boxes.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/convert.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/ragged.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/boxes.hpp"
#include "kdloss/ops/boxes.hpp"
#include "kdloss/ops/matmul.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detr {

/// Options of detr::matching_cost. Defaults: mmdet's HungarianAssigner as DETRDistill's teacher uses it
/// (focal 2 with eps 1e-12, L1 5, GIoU 2 with mmdet's eps 1e-6); the presets give the other matchers.
struct MatchingCostOptions {
  enum class ClassCost { none, soft_bce, focal, softmax };
  ClassCost class_cost = ClassCost::focal;
  double class_weight = 2.0, bbox_weight = 5.0, giou_weight = 2.0;
  double alpha = 0.25, gamma = 2.0, focal_eps = 1e-12;  // focal
  ops::BoxFormat pred_format = ops::BoxFormat::cxcywh;    // normalised predicted boxes
  ops::BoxFormat target_format = ops::BoxFormat::xyxy;
  bool target_in_pixels = true;  // target boxes in pixels (needs sizes); else normalised like the predictions
  ops::OverlapForm giou_form = ops::OverlapForm::mmdet;
  double giou_eps = 1e-6;
  double padding_value = 0.0;  // written to the columns j >= n_b of image b

  /// DETR's HungarianMatcher (main.py: class 1, bbox 5, giou 2): softmax cost, normalised cxcywh targets.
  static MatchingCostOptions detr() {
    MatchingCostOptions o;
    o.class_cost = ClassCost::softmax;
    o.class_weight = 1.0;
    o.target_format = ops::BoxFormat::cxcywh;
    o.target_in_pixels = false;
    o.giou_form = ops::OverlapForm::detr;
    o.giou_eps = 0.0;
    return o;
  }
  /// Deformable DETR's HungarianMatcher: focal cost with eps 1e-8, weights 2 / 5 / 2, normalised targets.
  static MatchingCostOptions deformable_detr() {
    MatchingCostOptions o = detr();
    o.class_cost = ClassCost::focal;
    o.class_weight = 2.0;
    o.focal_eps = 1e-8;
    return o;
  }
  /// mmdet's HungarianAssigner (FocalLossCost 2, BBoxL1Cost 5 xywh, IoUCost giou 2) with pixel xyxy targets.
  static MatchingCostOptions mmdet_hungarian() { return {}; }
  /// DETRDistill's DistillHungarianAssigner: soft-label BCE 1, L1 5, GIoU 2; the teacher's boxes in pixel
  /// xyxy (clamped to the image) and its sigmoid scores as targets.
  static MatchingCostOptions detrdistill() {
    MatchingCostOptions o;
    o.class_cost = ClassCost::soft_bce;
    o.class_weight = 1.0;
    return o;
  }
};

/// The arguments of one detr::matching_cost call.
///
///   // 1 image, 2 queries, 3 classes, 1 target (mmdet's HungarianAssigner)
///   float logits[6] = {0.1f, -2, 1, 0, 0.5f, -1}, boxes[8] = {0.5f, 0.5f, 0.2f, 0.2f, 0.3f, 0.3f, 0.1f, 0.1f};
///   float gt[4] = {40, 40, 90, 80}, hw[2] = {200, 300}, cost[2];
///   std::int64_t labels[1] = {2}, offsets[2] = {0, 1};
///   kdloss::detr::MatchingCostArgs<float> args;
///   args.pred_logits = kdloss::host_view<const float>(logits, {1, 2, 3});
///   args.pred_boxes = kdloss::host_view<const float>(boxes, {1, 2, 4});
///   args.target_labels = kdloss::host_view<const std::int64_t>(labels, {1});
///   args.target_boxes = kdloss::host_view<const float>(gt, {1, 4});
///   args.targets = kdloss::Segments<std::int64_t>{kdloss::host_view<const std::int64_t>(offsets, {2})};
///   args.sizes = kdloss::host_view<const float>(hw, {1, 2});
///   args.out = kdloss::host_view(cost, {1, 2, 1});
///   kdloss::detr::matching_cost(args);
/// Fields: pred_logits [B, Q, C] (absent when class_cost is none), pred_boxes [B, Q, 4], target_probs [T, C]
/// (soft_bce) or target_labels [T] int64 (focal, softmax), target_boxes [T, 4], targets (offsets [B + 1],
/// host), sizes ([B, 2] (height, width); needed for targets in pixels, and puts the GIoU in pixels), out
/// [B, Q, T_max] with T_max >= every n_b, options.
template <class T>
struct MatchingCostArgs {
  View<const T> pred_logits{}, pred_boxes{};
  View<const T> target_probs{};
  View<const std::int64_t> target_labels{};
  View<const T> target_boxes{};
  Segments<std::int64_t> targets{};
  View<const T> sizes{};
  View<T> out{};
  MatchingCostOptions options{};
};

namespace cost_detail {

using kdloss::detail::require;
inline constexpr int kMaxGpuImages = 64;

/// Per prediction row: sum_c softplus(z) (soft_bce) or logsumexp(z) (softmax).
template <class T>
struct RowTermFn {
  const T* logits;
  std::int64_t sb, sq, sc, queries, classes;
  bool lse;
  double* row;
  KDLOSS_HOST_DEVICE double operator()(std::int64_t r) const {
    using A = acc_t<T>;
    using std::exp;
    using std::log;
    using std::log1p;
    const T* z = logits + (r / queries) * sb + (r % queries) * sq;
    A acc = A(0);
    if (!lse) {
      for (std::int64_t c = 0; c < classes; ++c) {
        const A v = load_as<A>(z + c * sc);
        const A az = v < A(0) ? -v : v;
        acc += (v > A(0) ? v : A(0)) + log1p(exp(-az));
      }
    } else {
      A m = -INFINITY;
      for (std::int64_t c = 0; c < classes; ++c) {
        const A v = load_as<A>(z + c * sc);
        m = (v > m || v != v) ? v : m;
      }
      for (std::int64_t c = 0; c < classes; ++c) acc += exp(load_as<A>(z + c * sc) - m);
      acc = m + log(acc);
    }
    row[r] = static_cast<double>(acc);
    return 0.0;
  }
};

template <class T>
struct PairCostFn {
  const T* logits;
  std::int64_t lb, lq, lc, queries, classes, tmax, images;
  const double* row;  // row terms (soft_bce, softmax) or null
  const std::int64_t* labels;
  std::int64_t ls;
  const T* pred;
  std::int64_t pb, pq, pk;
  const T* target;
  std::int64_t tr, tk;
  const T* sizes;
  std::int64_t szb, szk;
  T* out;
  std::int64_t ob, oq, ot;
  std::int64_t offsets[kMaxGpuImages + 1];  // the first images' offsets (GPU)
  const std::int64_t* host_offsets;         // host: all offsets
  int class_cost;                           // MatchingCostOptions::ClassCost
  double wc, wb, wg, alpha, gamma, feps, pad;
  ops::BoxFormat pred_format, target_format;
  bool target_in_pixels;
  expr::boxes::Overlap overlap;
  KDLOSS_HOST_DEVICE std::int64_t off(std::int64_t b) const { return host_offsets ? host_offsets[b] : offsets[b]; }
  using A = acc_t<T>;
  /// (w, h, w, h) of image b, or ones without sizes.
  KDLOSS_HOST_DEVICE void factors(std::int64_t b, A f[4]) const {
    f[0] = f[1] = f[2] = f[3] = A(1);
    if (sizes) {
      const A h = load_as<A>(sizes + b * szb), w = load_as<A>(sizes + b * szb + szk);
      f[0] = w, f[1] = h, f[2] = w, f[3] = h;
    }
  }
  /// Prediction (b, i): p in pred_format (the L1 term), px in xyxy times the factors (the GIoU term).
  KDLOSS_HOST_DEVICE void pred_box(std::int64_t b, std::int64_t i, A p[4], A px[4]) const {
    A f[4];
    factors(b, f);
    for (int c = 0; c < 4; ++c) p[c] = load_as<A>(pred + b * pb + i * pq + c * pk);
    if (wg != 0) {
      expr::boxes::convert(p, pred_format, ops::BoxFormat::xyxy, px);
      for (int c = 0; c < 4; ++c) px[c] *= f[c];
    }
  }
  /// Target row t of image b: yc normalised in pred_format (the L1 term), yx in xyxy, scaled like px.
  KDLOSS_HOST_DEVICE void target_box(std::int64_t b, std::int64_t t, A yc[4], A yx[4]) const {
    A f[4], y[4];
    factors(b, f);
    for (int c = 0; c < 4; ++c) y[c] = load_as<A>(target + t * tr + c * tk);
    if (wb != 0) {
      A yn[4];
      for (int c = 0; c < 4; ++c) yn[c] = target_in_pixels ? y[c] / f[c] : y[c];
      expr::boxes::convert(yn, target_format, pred_format, yc);
    }
    if (wg != 0) {
      expr::boxes::convert(y, target_format, ops::BoxFormat::xyxy, yx);
      if (!target_in_pixels)
        for (int c = 0; c < 4; ++c) yx[c] *= f[c];
    }
  }
  /// The class term of prediction (b, i) and target row t added to cost; false for an out-of-range label
  /// (the pair's cost is then NaN).
  KDLOSS_HOST_DEVICE bool class_term(std::int64_t b, std::int64_t i, std::int64_t t, A& cost) const {
    using std::exp;
    using std::log;
    using std::pow;
    if (class_cost == 1 && wc != 0) {
      cost += A(wc) * A(row[b * queries + i]);  // the product term is added by the matrix product
    } else if ((class_cost == 2 || class_cost == 3) && wc != 0) {
      const std::int64_t l = labels[t * ls];
      if (l < 0 || l >= classes) return false;
      const A z = load_as<A>(logits + b * lb + i * lq + l * lc);
      if (class_cost == 3) {
        cost += -A(wc) * exp(z - A(row[b * queries + i]));
      } else {
        const A p = A(1) / (A(1) + exp(-z)), eps = A(feps), al = A(alpha), g = A(gamma);
        const bool two = gamma == 2.0;  // the usual gamma: a product, not pow
        const A pg = two ? p * p : pow(p, g), qg = two ? (A(1) - p) * (A(1) - p) : pow(A(1) - p, g);
        const A neg = (A(1) - al) * pg * (-log(A(1) - p + eps));
        const A pos = al * qg * (-log(p + eps));
        cost += A(wc) * (pos - neg);
      }
    }
    return true;
  }
  /// cost + the L1 and -GIoU terms of the prepared boxes (pred_box, target_box).
  KDLOSS_HOST_DEVICE A box_terms(A cost, const A p[4], const A px[4], const A yc[4], const A yx[4]) const {
    return expr::boxes::l1_giou_cost(cost, p, px, yc, yx, wb, wg, overlap);
  }
  /// Element e of the [B, Q, tmax] index space (the GPU's pass: one thread per pair).
  KDLOSS_HOST_DEVICE double operator()(std::int64_t e) const {
    const std::int64_t j = e % tmax, i = (e / tmax) % queries, b = e / (tmax * queries);
    T* o = out + b * ob + i * oq + j * ot;
    const std::int64_t first = off(b), n = off(b + 1) - first;
    if (j >= n) {
      store_as(o, A(pad));
      return 0.0;
    }
    const std::int64_t t = first + j;
    A cost = A(0);
    if (!class_term(b, i, t, cost)) {
      store_as(o, A(NAN));
      return 0.0;
    }
    if (wb != 0 || wg != 0) {
      A p[4] = {}, px[4] = {}, yc[4] = {}, yx[4] = {};
      pred_box(b, i, p, px);
      target_box(b, t, yc, yx);
      cost = box_terms(cost, p, px, yc, yx);
    }
    store_as(o, cost);
    return 0.0;
  }
};

/// The host's pass: one item per prediction row (b, i), its target boxes prepared once per call in
/// planes (`boxes`: 8 planes of `total` values, plane k holding coordinate k of every packed target
/// row: yc then yx), the same arithmetic as PairCostFn's element (the same bits) without the per-pair
/// index arithmetic and box conversions, and the box terms a packet of targets at a time
/// (backend::cpu::boxes::cost_row).
template <class T>
struct HostRowCostFn {
  using A = acc_t<T>;
  const PairCostFn<T>* f;
  const A* boxes;
  std::int64_t total;  // packed target rows (the planes' length)
  double operator()(std::int64_t r) const {
    switch (f->overlap.form) {  // the form a constant inside the loop: its branches fold away
      case ops::OverlapForm::detr: return row<ops::OverlapForm::detr>(r);
      case ops::OverlapForm::mmdet: return row<ops::OverlapForm::mmdet>(r);
      default: return row<ops::OverlapForm::torchvision>(r);
    }
  }
  template <ops::OverlapForm Form>
  double row(std::int64_t r) const {
    const PairCostFn<T>& g = *f;
    expr::boxes::Overlap ov = g.overlap;
    ov.form = Form;
    const std::int64_t b = r / g.queries, i = r % g.queries;
    if (g.tmax == 0) return 0.0;  // no column: out may be null (no element), nothing to offset
    T* o = g.out + b * g.ob + i * g.oq;
    const std::int64_t first = g.off(b), n = g.off(b + 1) - first;
    const bool box = g.wb != 0 || g.wg != 0;
    A p[4] = {}, px[4] = {};
    if (box) g.pred_box(b, i, p, px);
    // the class term depends on the target only through a label (focal, softmax)
    const bool per_pair = (g.class_cost == 2 || g.class_cost == 3) && g.wc != 0;
    A row_class = A(0);
    if (!per_pair && n > 0) g.class_term(b, i, first, row_class);
    constexpr std::int64_t kChunk = 64;
    A cost[kChunk];
    bool bad[kChunk];
    for (std::int64_t j0 = 0; j0 < n; j0 += kChunk) {
      const std::int64_t m = n - j0 < kChunk ? n - j0 : kChunk;
      for (std::int64_t k = 0; k < m; ++k) {
        A c = row_class;
        bad[k] = false;
        if (per_pair) {
          c = A(0);
          bad[k] = !g.class_term(b, i, first + j0 + k, c);
        }
        cost[k] = c;
      }
      if (box) {
        const A* plane[8];
        for (int k = 0; k < 8; ++k) plane[k] = boxes + k * total + first + j0;
        backend::cpu::boxes::cost_row<Form>(cost, m, p, px, plane, g.wb, g.wg, ov);
      }
      for (std::int64_t k = 0; k < m; ++k) store_as(o + (j0 + k) * g.ot, bad[k] ? A(NAN) : cost[k]);
    }
    for (std::int64_t j = n; j < g.tmax; ++j) store_as(o + j * g.ot, A(g.pad));
    return 0.0;
  }
};

/// Whether the host pass prepares target boxes (an L1 or GIoU term).
inline bool host_box_terms(const MatchingCostOptions& o) { return o.bbox_weight != 0 || o.giou_weight != 0; }

template <class T>
View<T> image_block(const View<T>& v, std::int64_t b) {  // [B, X, Y] -> [X, Y] of image b
  return View<T>(v.data + b * v.stride(0), Dims{v.size(1), v.size(2)}, Dims{v.stride(1), v.stride(2)}, v.device);
}

/// The per-image products -w_c Z_b P_b^T added onto the cost (soft_bce), as ops::matmul arguments.
template <class T>
std::vector<ops::MatmulArgs<T>> products(const MatchingCostArgs<T>& a) {
  std::vector<ops::MatmulArgs<T>> r;
  const std::int64_t B = a.pred_boxes.size(0);
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t first = a.targets.begin(b), n = a.targets.size(b);
    if (n == 0 || a.pred_boxes.size(1) == 0) continue;
    ops::MatmulArgs<T> m;
    m.a = image_block(a.pred_logits, b);
    m.b = View<const T>(a.target_probs.data + first * a.target_probs.stride(0), Dims{n, a.target_probs.size(1)},
                        Dims{a.target_probs.stride(0), a.target_probs.stride(1)}, a.target_probs.device);
    const View<T> c = image_block(a.out, b);
    m.c = c.slice(1, 0, n);
    m.options.trans_b = true;
    m.options.alpha = -a.options.class_weight;
    m.options.beta = 1.0;
    r.push_back(m);
  }
  return r;
}

}  // namespace cost_detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run (forward only);
/// writes nothing.
///
///   kdloss::detr::MatchingCostArgs<float> args;   // filled in as in MatchingCostArgs's example
///   kdloss::detr::matching_cost_check(args);
template <class T>
void matching_cost_check(const MatchingCostArgs<T>& a, Mode mode = Mode::forward) {
  const kdloss::detail::Checker ck{"kdloss::detr::matching_cost"};
  using kdloss::detail::require;
  using Kind = MatchingCostOptions::ClassCost;
  namespace od = ops::boxes_detail;
  const auto& o = a.options;
  require(mode == Mode::forward, ck.fn, ": matching costs are forward only (constants for the matcher); mode is ",
          to_string(mode));
  const int kind = static_cast<int>(o.class_cost);
  require(kind >= 0 && kind <= 3, ck.fn, ": argument 'options.class_cost' is ", kind,
          ", not none, soft_bce, focal or softmax");
  od::check_format(ck, o.pred_format, "options.pred_format");
  od::check_format(ck, o.target_format, "options.target_format");
  od::check_overlap(ck, expr::boxes::Overlap{o.giou_form, o.giou_eps, true});
  require(std::isfinite(o.class_weight) && std::isfinite(o.bbox_weight) && std::isfinite(o.giou_weight), ck.fn,
          ": the weights must be finite (class ", o.class_weight, ", bbox ", o.bbox_weight, ", giou ", o.giou_weight, ")");
  require(o.class_cost != Kind::focal || (o.gamma >= 0 && o.focal_eps >= 0), ck.fn,
          ": arguments 'options.gamma' ", o.gamma, " and 'options.focal_eps' ", o.focal_eps, " must be >= 0");
  od::check_boxes(ck, a.pred_boxes, "pred_boxes");
  ck.rank(a.pred_boxes, "pred_boxes", 3);
  const Device dev = a.pred_boxes.device;
  const std::int64_t B = a.pred_boxes.size(0), Q = a.pred_boxes.size(1);
  od::check_boxes(ck, a.target_boxes, "target_boxes");
  ck.rank(a.target_boxes, "target_boxes", 2);
  ck.device(a.target_boxes, "target_boxes", dev);
  const std::int64_t T_all = a.target_boxes.size(0);
  kdloss::detail::check_segments(ck, a.targets, "targets", T_all);
  require(a.targets.count() == B, ck.fn, ": argument 'targets' has offsets for ", a.targets.count(),
          " images but 'pred_boxes' ", a.pred_boxes.shape.str(), " has B = ", B);
  std::int64_t tmax = 0;
  for (std::int64_t b = 0; b < B; ++b) tmax = std::max(tmax, a.targets.size(b));
  const bool wants_class = o.class_cost != Kind::none && o.class_weight != 0;
  std::int64_t C = 0;
  if (wants_class) {
    require(present(a.pred_logits), ck.fn, ": argument 'pred_logits' is absent but the class cost reads it");
    ck.not_null(a.pred_logits, "pred_logits");
    ck.rank(a.pred_logits, "pred_logits", 3);
    require(a.pred_logits.size(0) == B && a.pred_logits.size(1) == Q, ck.fn, ": argument 'pred_logits' ",
            a.pred_logits.shape.str(), " must be [B, Q, C] with B, Q of 'pred_boxes' ", a.pred_boxes.shape.str());
    ck.device(a.pred_logits, "pred_logits", dev);
    C = a.pred_logits.size(2);
    if (o.class_cost == Kind::soft_bce) {
      require(present(a.target_probs), ck.fn, ": argument 'target_probs' [T, C] is absent but the soft_bce cost reads it");
      ck.not_null(a.target_probs, "target_probs");
      ck.shape(a.target_probs, "target_probs", Dims{T_all, C});
      ck.device(a.target_probs, "target_probs", dev);
    } else {
      require(present(a.target_labels), ck.fn, ": argument 'target_labels' [T] is absent but the ",
              o.class_cost == Kind::focal ? "focal" : "softmax", " cost reads it");
      kdloss::detail::check_index_view(ck, a.target_labels, "target_labels", 1);
      ck.shape(a.target_labels, "target_labels", Dims{T_all});
      ck.device(a.target_labels, "target_labels", dev);
      od::check_labels(ck, a.target_labels, "target_labels", C, "pred_logits");
    }
  }
  const bool needs_sizes = o.target_in_pixels && (o.bbox_weight != 0 || o.giou_weight != 0);
  require(present(a.sizes) || !needs_sizes, ck.fn,
          ": argument 'sizes' [B, 2] (height, width) is absent but options.target_in_pixels needs it");
  if (present(a.sizes)) {
    ck.not_null(a.sizes, "sizes");
    ck.shape(a.sizes, "sizes", Dims{B, 2});
    ck.device(a.sizes, "sizes", dev);
  }
  require(present(a.out), ck.fn, ": argument 'out' is absent; pass [B, Q, T_max]");
  ck.not_null(a.out, "out");
  ck.rank(a.out, "out", 3);
  require(a.out.size(0) == B && a.out.size(1) == Q && a.out.size(2) >= tmax, ck.fn, ": argument 'out' has shape ",
          a.out.shape.str(), " but expected [", B, ", ", Q, ", T_max >= ", tmax, "] (the largest image has ", tmax,
          " targets)");
  ck.device(a.out, "out", dev);
  ck.unique(a.out, "out");
  ck.disjoint(a.out, "out", a.pred_boxes, "pred_boxes");
  ck.disjoint(a.out, "out", a.pred_logits, "pred_logits");
  ck.disjoint(a.out, "out", a.target_boxes, "target_boxes");
  ck.disjoint(a.out, "out", a.target_probs, "target_probs");
  ck.disjoint(a.out, "out", a.sizes, "sizes");
  require(dev.is_host() || B <= cost_detail::kMaxGpuImages, ck.fn, ": ", B, " images on ", dev.str(),
          " but a GPU call takes at most ", cost_detail::kMaxGpuImages, " (split the batch)");
  kdloss::detail::require_backend<T>(ck.fn, dev);
}

/// Workspace bytes of matching_cost: the row terms (soft_bce, softmax), the GPU products' packing.
///
///   kdloss::detr::MatchingCostArgs<float> args;   // filled in as in MatchingCostArgs's example
///   std::size_t bytes = kdloss::detr::matching_cost_workspace_bytes(args);
template <class T>
std::size_t matching_cost_workspace_bytes(const MatchingCostArgs<T>& a) {
  matching_cost_check(a);  // the product sizes read the offsets: validate them first
  kdloss::detail::Carver c;
  const auto k = a.options.class_cost;
  using Kind = MatchingCostOptions::ClassCost;
  const bool rows = (k == Kind::soft_bce || k == Kind::softmax) && a.options.class_weight != 0;
  if (rows) c.take<double>(static_cast<std::size_t>(a.pred_boxes.size(0) * a.pred_boxes.size(1)));
  if (cost_detail::host_box_terms(a.options))  // the host pass's prepared target boxes (unused on a GPU)
    c.take<acc_t<T>>(static_cast<std::size_t>(8 * a.target_boxes.size(0)));
  if (rows) {
    if (k == Kind::soft_bce) {
      std::size_t most = 0;
      for (const auto& m : cost_detail::products(a)) most = std::max(most, ops::matmul_workspace_bytes(m));
      c.take<unsigned char>(most);
    }
  }
  return c.bytes();
}

/// Checks, then writes the costs of every image into out (Mode::forward only).
///
///   kdloss::detr::MatchingCostArgs<float> args;   // filled in as in MatchingCostArgs's example
///   kdloss::detr::matching_cost(args);
template <class T>
void matching_cost(const MatchingCostArgs<T>& a, Mode mode = Mode::forward, const Exec& exec = {}) {
  matching_cost_check(a, mode);
  using Kind = MatchingCostOptions::ClassCost;
  namespace cd = cost_detail;
  const auto& o = a.options;
  const Device dev = a.pred_boxes.device;
  const std::int64_t B = a.pred_boxes.size(0), Q = a.pred_boxes.size(1), tmax = a.out.size(2);
  const bool cls = o.class_cost != Kind::none && o.class_weight != 0;
  const bool rows = cls && (o.class_cost == Kind::soft_bce || o.class_cost == Kind::softmax);
  if (o.class_cost == Kind::soft_bce && cls) ops::detail::require_blas("kdloss::detr::matching_cost", dev, exec);
  kdloss::detail::HostScratch hs;
  const std::size_t need = matching_cost_workspace_bytes(a);
  void* base = kdloss::detail::resolve_workspace("kdloss::detr::matching_cost", dev, exec.workspace, need, hs);
  kdloss::detail::Carver cv(base);
  double* row = rows ? cv.take<double>(static_cast<std::size_t>(B * Q)) : nullptr;
  const std::int64_t C = cls ? a.pred_logits.size(2) : 0;
  if (rows)
    kdloss::detail::box_index_for<T>(dev, exec.stream, B * Q, C,
                                     cd::RowTermFn<T>{a.pred_logits.data, a.pred_logits.stride(0),
                                                      a.pred_logits.stride(1), a.pred_logits.stride(2), Q, C,
                                                      o.class_cost == Kind::softmax, row});
  cd::PairCostFn<T> f{};
  if (cls) {
    f.logits = a.pred_logits.data;
    f.lb = a.pred_logits.stride(0), f.lq = a.pred_logits.stride(1), f.lc = a.pred_logits.stride(2);
  }
  f.queries = Q, f.classes = C, f.tmax = tmax, f.images = B, f.row = row;
  if (present(a.target_labels)) f.labels = a.target_labels.data, f.ls = a.target_labels.size(0) ? a.target_labels.stride(0) : 1;
  f.pred = a.pred_boxes.data, f.pb = a.pred_boxes.stride(0), f.pq = a.pred_boxes.stride(1), f.pk = a.pred_boxes.stride(2);
  f.target = a.target_boxes.data, f.tr = a.target_boxes.stride(0), f.tk = a.target_boxes.stride(1);
  if (present(a.sizes)) f.sizes = a.sizes.data, f.szb = a.sizes.stride(0), f.szk = a.sizes.stride(1);
  f.out = a.out.data, f.ob = a.out.stride(0), f.oq = a.out.stride(1), f.ot = a.out.stride(2);
  // the offsets: in the functor's arguments (any device; a GPU call has at most kMaxGpuImages images,
  // checked above), or behind a host pointer for a larger host batch
  std::vector<std::int64_t> host_off;
  if (B <= cd::kMaxGpuImages) {
    for (std::int64_t b = 0; b <= B; ++b) f.offsets[b] = a.targets.offsets(b);
  } else {
    for (std::int64_t b = 0; b <= B; ++b) host_off.push_back(a.targets.offsets(b));
    f.host_offsets = host_off.data();
  }
  f.class_cost = cls ? static_cast<int>(o.class_cost) : 0;
  f.wc = o.class_weight, f.wb = o.bbox_weight, f.wg = o.giou_weight;
  f.alpha = o.alpha, f.gamma = o.gamma, f.feps = o.focal_eps, f.pad = o.padding_value;
  f.pred_format = o.pred_format, f.target_format = o.target_format, f.target_in_pixels = o.target_in_pixels;
  f.overlap = expr::boxes::Overlap{o.giou_form, o.giou_eps, true};
  // the host: the target boxes converted once, then one item per prediction row; a GPU: one thread per pair
  using A = acc_t<T>;
  A* boxes = cd::host_box_terms(o) ? cv.take<A>(static_cast<std::size_t>(8 * a.target_boxes.size(0))) : nullptr;
  kdloss::detail::box_index_for_host_rows<T>(dev, exec.stream, B * Q * tmax, 64, f, B * Q, 64 * tmax, [&] {
    const std::int64_t total = a.target_boxes.size(0);
    for (std::int64_t b = 0; boxes && b < B; ++b)
      for (std::int64_t t = a.targets.begin(b); t < a.targets.end(b); ++t) {
        A y[8] = {};
        f.target_box(b, t, y, y + 4);
        for (int c = 0; c < 8; ++c) boxes[c * total + t] = y[c];
      }
    return cd::HostRowCostFn<T>{&f, boxes, total};
  });
  if (o.class_cost == Kind::soft_bce && cls) {
    const auto prods = cd::products(a);
    std::size_t most = 0;
    for (const auto& m : prods) most = std::max(most, ops::matmul_workspace_bytes(m));
    void* gemm_ws = most ? cv.take<unsigned char>(most) : nullptr;
    for (const auto& m : prods) ops::matmul(m, Exec{Workspace{gemm_ws, most}, exec.stream, exec.blas});
  }
}

} } }  // namespace kdloss::detr
