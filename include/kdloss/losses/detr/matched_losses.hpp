// kdloss/losses/detr/matched_losses.hpp: the element losses of DETR-family heads over the pairs of an
// assignment, forward and backward (losses.md 4.2, 4.4, 5.4). See docs/losses/detr.md.
//
//   matched_class_loss   sigmoid BCE with soft targets (DETRDistill's DistillCrossEntropyLoss) or
//                        sigmoid focal loss (mmdet's py_sigmoid_focal_loss, Deformable DETR's
//                        sigmoid_focal_loss) over every query and class: a matched query's target is its
//                        partner's row (soft probabilities or a one-hot label), an unmatched query's 0
//   matched_box_loss     L1 and 1 - GIoU between matched predicted and target boxes
//
// An assignment is two int64 views of K pairs: pred_rows (a row of the [B, Q, ...] predictions,
// b * Q + q) and target_rows (a row of the packed [T, ...] targets of all images), DETR's
// (batch_idx, src_idx) / tgt_idx. A prediction row appears at most once (an assignment); on the host
// this and the index ranges are validated, on the GPU pairs out of range are skipped.
//
// Normalisers (Normalizer): the plain sum; the number of matched pairs K of this call (mmdet's num_pos on
// one device, DETRDistill's N_pos); or a given value (DETR's num_boxes, mmdet's avg_factor = the
// reduce_mean'ed N'), each optionally clamped to >= 1 and with mmdet's float32 eps added.
#pragma once
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kdloss/backend/dispatch_boxes.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/convert.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/ragged.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/boxes.hpp"
#include "kdloss/ops/boxes.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace detr {

/// What a summed matched loss is divided by (then multiplied by the loss weight).
struct Normalizer {
  enum class Kind { sum, matched_pairs, value };
  Kind kind = Kind::matched_pairs;
  double value = 1.0;          // Kind::value: the divisor (num_boxes, avg_factor = reduce_mean(num_pos))
  bool clamp_min_one = false;  // max(N, 1) (DETR's num_boxes, mmdet's avg_factor)
  bool add_float_eps = false;  // + FLT_EPSILON (mmdet's weight_reduce_loss: sum / (avg_factor + eps))

  /// DETRDistill's classification normaliser: N_pos = the matched pairs of this call, + float eps.
  static Normalizer mmdet_num_pos() { return {Kind::matched_pairs, 1.0, false, true}; }
  /// mmdet's avg_factor N' = clamp(reduce_mean(num_pos), 1) (+ float eps); pass the averaged count.
  static Normalizer mmdet_avg_factor(double n) { return {Kind::value, n, true, true}; }
  /// DETR's / Deformable DETR's num_boxes = clamp(reduce_mean(num_boxes), 1), no eps.
  static Normalizer detr_num_boxes(double n) { return {Kind::value, n, true, false}; }
  /// The divisor for K matched pairs.
  double divisor(std::int64_t pairs) const {
    if (kind == Kind::sum) return 1.0;
    double n = kind == Kind::matched_pairs ? static_cast<double>(pairs) : value;
    if (clamp_min_one && n < 1.0) n = 1.0;
    if (add_float_eps) n += static_cast<double>(FLT_EPSILON);
    return n;
  }
};

namespace matched_detail {

using kdloss::detail::Checker;
using kdloss::detail::require;

/// Pass 1: match[r] = -1 for every prediction row.
struct FillMatch {
  std::int64_t* match;
  KDLOSS_HOST_DEVICE double operator()(std::int64_t r) const {
    match[r] = -1;
    return 0.0;
  }
};
/// Pass 2: match[pred_rows[k]] = target_rows[k] (pairs out of range skipped).
struct ScatterMatch {
  const std::int64_t* pred_rows;
  std::int64_t pred_stride;
  const std::int64_t* target_rows;
  std::int64_t target_stride;
  std::int64_t rows, targets;
  std::int64_t* match;
  KDLOSS_HOST_DEVICE double operator()(std::int64_t k) const {
    const std::int64_t r = pred_rows[k * pred_stride], t = target_rows[k * target_stride];
    if (r >= 0 && r < rows && t >= 0 && t < targets) match[r] = t;
    return 0.0;
  }
};

/// Per (row, class): the loss value and dL/dz (mmdet's focal form; BCE when focal is false).
/// BCE with logits in the log1p form, max(z, 0) - z t + log(1 + exp(-|z|)), and torch's sigmoid
/// (1 / (1 + exp(-z)) for z >= 0, exp(z) / (1 + exp(z)) below) share their one exp(-|z|).
template <class A>
KDLOSS_HOST_DEVICE A class_term(A z, A t, bool focal, A alpha, A gamma, A* grad) {
  using std::exp;
  using std::log1p;
  using std::pow;
  const A e = exp(-(z < A(0) ? -z : z));
  const A s = z >= A(0) ? A(1) / (A(1) + e) : e / (A(1) + e);
  const A bce = (z > A(0) ? z : A(0)) - z * t + log1p(e);
  if (!focal) {
    *grad = s - t;
    return bce;
  }
  const A pt = (A(1) - s) * t + s * (A(1) - t);
  const A w = alpha < A(0) ? A(1) : alpha * t + (A(1) - alpha) * (A(1) - t);
  const A ptg = pow(pt, gamma);
  // d pt^gamma / d pt = gamma pt^(gamma - 1): 0 at pt = 0 for gamma > 1 (torch's pow backward)
  const A dptg = gamma == A(0) ? A(0) : (pt == A(0) ? (gamma == A(1) ? A(1) : (gamma > A(1) ? A(0) : A(INFINITY)))
                                                    : gamma * pow(pt, gamma - A(1)));
  *grad = w * ((s - t) * ptg + bce * dptg * s * (A(1) - s) * (A(1) - A(2) * t));
  return bce * w * ptg;
}

template <class T>
struct ClassFn {
  const T* logits;  // [B, Q, C]
  std::int64_t sb, sq, sc, queries, classes;
  const T* probs;  // [T, C] soft targets, or null
  std::int64_t pt, pc;
  const std::int64_t* labels;  // [T] one-hot labels (a label outside 0..C-1 is background), or null
  std::int64_t ls;
  const std::int64_t* match;  // [B * Q]: the target row of each prediction row, -1 when unmatched
  bool focal;
  double alpha, gamma, scale;  // scale: weight / divisor, times the upstream gradient for gradients
  const T* grad_out;           // backward: the upstream gradient (one element); null: 1
  T* grad;                     // [B, Q, C] (strides gb, gq, gc) or null
  std::int64_t gb, gq, gc;
  T* elem;  // [B, Q, C] per-element losses (unweighted, unnormalised) or null
  std::int64_t eb, eq, ec;
  KDLOSS_HOST_DEVICE double operator()(std::int64_t e) const {
    using A = acc_t<T>;
    const std::int64_t c = e % classes, row = e / classes, q = row % queries, b = row / queries;
    const std::int64_t m = match[row];
    A t = A(0);
    if (m >= 0) t = probs ? load_as<A>(probs + m * pt + c * pc) : (labels[m * ls] == c ? A(1) : A(0));
    const A z = load_as<A>(logits + b * sb + q * sq + c * sc);
    A g;
    const A v = class_term(z, t, focal, A(alpha), A(gamma), &g);
    if (elem) store_as(elem + b * eb + q * eq + c * ec, v);
    if (grad) {
      const A up = grad_out ? load_as<A>(grad_out) : A(1);
      store_as(grad + b * gb + q * gq + c * gc, g * A(scale) * up);
    }
    return static_cast<double>(v);
  }
};

template <class T>
struct ZeroRows {  // grad_boxes rows of unmatched predictions
  ops::boxes_detail::BoxRows<T> grad;  // [B, Q, 4] (n = Q)
  KDLOSS_HOST_DEVICE double operator()(std::int64_t e) const {
    const std::int64_t k = e % 4, row = e / 4;
    store_as(grad.at(row / grad.n, row % grad.n, static_cast<int>(k)), acc_t<T>(0));
    return 0.0;
  }
};

template <class T>
struct BoxFn {
  ops::boxes_detail::BoxRows<const T> pred;    // [B, Q, 4] (n = Q)
  ops::boxes_detail::BoxRows<const T> target;  // [T, 4]
  std::int64_t rows, targets;
  const std::int64_t* pred_rows;
  std::int64_t prs;
  const std::int64_t* target_rows;
  std::int64_t trs;
  const T* sizes;  // [B, 2] (h, w) for the GIoU in pixels, or null
  std::int64_t szb, szk;
  ops::BoxFormat format;
  expr::boxes::Overlap overlap;
  bool giou;                            // false: the L1 term
  double scale;                         // weight / divisor
  const T* grad_out;                    // backward: one element; null: 1
  ops::boxes_detail::BoxRows<T> grad;   // [B, Q, 4], data null when not asked (zeroed beforehand; each term adds)
  KDLOSS_HOST_DEVICE double operator()(std::int64_t k) const {
    using A = acc_t<T>;
    const std::int64_t r = pred_rows[k * prs], t = target_rows[k * trs];
    if (r < 0 || r >= rows || t < 0 || t >= targets) return 0.0;
    const std::int64_t b = r / pred.n, q = r % pred.n;
    A p[4], y[4], g[4] = {A(0), A(0), A(0), A(0)};
    ops::boxes_detail::load_box(pred, b, q, p);
    ops::boxes_detail::load_box(target, 0, t, y);
    const A up = grad_out ? load_as<A>(grad_out) : A(1);
    const A gs = A(scale) * up;
    A v = A(0);
    if (!giou) {
      for (int c = 0; c < 4; ++c) {
        const A d = p[c] - y[c];
        v += d < A(0) ? -d : d;
        g[c] = gs * (d > A(0) ? A(1) : (d < A(0) ? A(-1) : (d != d ? d : A(0))));
      }
    } else {
      A f[4];
      if (sizes) {
        const A h = load_as<A>(sizes + b * szb), w = load_as<A>(sizes + b * szb + szk);
        f[0] = w, f[1] = h, f[2] = w, f[3] = h;
      }
      v = A(1) - ops::boxes_detail::aligned_overlap(p, y, format, overlap, sizes ? f : static_cast<const A*>(nullptr),
                                                    -gs, grad.m.data ? g : static_cast<A*>(nullptr),
                                                    static_cast<A*>(nullptr));
    }
    if (grad.m.data)
      for (int c = 0; c < 4; ++c) {
        T* at = grad.at(b, q, c);
        store_as(at, load_as<A>(at) + g[c]);  // rows zeroed first; each pair owns its row
      }
    return static_cast<double>(v);
  }
};

inline constexpr const char* kClassNames[3] = {"kdloss::detr::matched_class_loss",
                                               "kdloss::detr::matched_class_loss_backward",
                                               "kdloss::detr::matched_class_loss_forward_backward"};
inline constexpr const char* kBoxNames[3] = {"kdloss::detr::matched_box_loss", "kdloss::detr::matched_box_loss_backward",
                                             "kdloss::detr::matched_box_loss_forward_backward"};

inline void check_normalizer(const Checker& ck, const Normalizer& n, const char* arg) {
  const int k = static_cast<int>(n.kind);
  require(k >= 0 && k <= 2, ck.fn, ": argument '", arg, ".kind' is ", k, ", not sum, matched_pairs or value");
  require(n.kind != Normalizer::Kind::value || (std::isfinite(n.value) && (n.value > 0 || n.clamp_min_one)), ck.fn,
          ": argument '", arg, ".value' is ", n.value, " but a given normaliser must be finite and > 0 (or clamped)");
}

/// The upstream gradient of a scalar loss (backward) on the call's device.
template <class T>
void check_scalar_upstream(const Checker& ck, const View<const T>& g, Device device) {
  require(present(g), ck.fn, ": argument 'grad_out' is absent but backward reads it");
  ck.scalar_output(g, "grad_out");
  ck.device(g, "grad_out", device);
}

}  // namespace matched_detail

// =============================================================================================
// matched_class_loss

/// Options of detr::matched_class_loss. Defaults: DETRDistill's soft-label BCE / (N_pos + eps).
struct MatchedClassLossOptions {
  enum class Kind { soft_bce, focal };
  Kind kind = Kind::soft_bce;
  double alpha = 0.25;  // focal: alpha_t = alpha t + (1 - alpha)(1 - t); < 0 turns the weighting off (torchvision)
  double gamma = 2.0;   // focal: >= 0
  double weight = 1.0;  // the loss weight
  Normalizer normalizer = Normalizer::mmdet_num_pos();
};

/// The arguments of one detr::matched_class_loss call: value = weight * sum_{b,q,c} l(z_bqc, t_bqc) / divisor
/// with t the partner's row (target_probs [T, C], or one-hot of target_labels [T]) or 0 when unmatched.
///
///   float logits[2 * 3] = {0.5f, -1, 2, 0, 1, -2}, probs[1 * 3] = {0.9f, 0.1f, 0.5f}, loss, grad[6];
///   std::int64_t pred_rows[1] = {1}, target_rows[1] = {0};
///   kdloss::detr::MatchedClassLossArgs<float> args;
///   args.logits = kdloss::host_view<const float>(logits, {1, 2, 3});
///   args.target_probs = kdloss::host_view<const float>(probs, {1, 3});
///   args.pred_rows = kdloss::host_view<const std::int64_t>(pred_rows, {1});
///   args.target_rows = kdloss::host_view<const std::int64_t>(target_rows, {1});
///   args.out = kdloss::host_scalar(&loss);
///   args.grad_logits = kdloss::host_view(grad, {1, 2, 3});
///   kdloss::detr::matched_class_loss(args, kdloss::Mode::forward_backward);
/// Fields: logits [B, Q, C]; target_probs [T, C] or target_labels [T] (exactly one); pred_rows, target_rows
/// [K] int64; out (one element); out_elementwise (optional [B, Q, C]: every element's loss l(z, t), before
/// the weight and the normaliser; forward modes); grad_out (backward); grad_logits [B, Q, C]; options.
template <class T>
struct MatchedClassLossArgs {
  View<const T> logits{};
  View<const T> target_probs{};
  View<const std::int64_t> target_labels{};
  View<const std::int64_t> pred_rows{}, target_rows{};
  View<T> out{};
  View<T> out_elementwise{};
  View<const T> grad_out{};
  View<T> grad_logits{};
  MatchedClassLossOptions options{};
};

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::detr::MatchedClassLossArgs<float> args;   // filled in as in MatchedClassLossArgs's example
///   kdloss::detr::matched_class_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void matched_class_loss_check(const MatchedClassLossArgs<T>& a, Mode mode) {
  namespace d = matched_detail;
  const kdloss::detail::Checker ck{d::kClassNames[mode_index(mode)]};
  const auto& o = a.options;
  kdloss::detail::require(o.kind == MatchedClassLossOptions::Kind::soft_bce ||
                              o.kind == MatchedClassLossOptions::Kind::focal,
                          ck.fn, ": argument 'options.kind' is ", static_cast<int>(o.kind), ", not soft_bce or focal");
  kdloss::detail::require(std::isfinite(o.gamma) && o.gamma >= 0 && std::isfinite(o.alpha) && o.alpha <= 1, ck.fn,
                          ": arguments 'options.alpha' ", o.alpha, " and 'options.gamma' ", o.gamma,
                          " must be finite with alpha <= 1 and gamma >= 0");
  d::check_normalizer(ck, o.normalizer, "options.normalizer");
  kdloss::detail::require(present(a.logits), ck.fn, ": argument 'logits' is absent; pass [B, Q, C]");
  ck.not_null(a.logits, "logits");
  ck.rank(a.logits, "logits", 3);
  const Device dev = a.logits.device;
  const std::int64_t rows = a.logits.size(0) * a.logits.size(1), classes = a.logits.size(2);
  kdloss::detail::require(present(a.target_probs) != present(a.target_labels), ck.fn,
                          ": pass exactly one of 'target_probs' [T, C] and 'target_labels' [T]");
  std::int64_t targets = 0;
  if (present(a.target_probs)) {
    ck.not_null(a.target_probs, "target_probs");
    ck.rank(a.target_probs, "target_probs", 2);
    kdloss::detail::require(a.target_probs.size(1) == classes, ck.fn, ": argument 'target_probs' ",
                            a.target_probs.shape.str(), " must have C = ", classes, " classes as 'logits' ",
                            a.logits.shape.str());
    ck.device(a.target_probs, "target_probs", dev);
    targets = a.target_probs.size(0);
  } else {
    kdloss::detail::check_index_view(ck, a.target_labels, "target_labels", 1);
    ck.device(a.target_labels, "target_labels", dev);
    targets = a.target_labels.size(0);
  }
  ops::boxes_detail::check_matched_pairs(ck, a.pred_rows, a.target_rows, rows, targets, dev);
  if (writes_value(mode)) {
    ops::boxes_detail::check_scalar_out(ck, a.out, "out", dev);
    ck.disjoint(a.out, "out", a.logits, "logits");
    ck.disjoint(a.out, "out", a.target_probs, "target_probs");
    if (present(a.out_elementwise)) {
      ops::boxes_detail::check_output(ck, a.out_elementwise, "out_elementwise", a.logits.shape, a.logits);
      ck.disjoint(a.out_elementwise, "out_elementwise", a.logits, "logits");
      ck.disjoint(a.out_elementwise, "out_elementwise", a.target_probs, "target_probs");
      ck.disjoint(a.out_elementwise, "out_elementwise", a.out, "out");
    }
  }
  if (writes_gradients(mode)) {
    if (mode == Mode::backward) d::check_scalar_upstream(ck, a.grad_out, dev);
    kdloss::detail::require(present(a.grad_logits), ck.fn, ": argument 'grad_logits' is absent but ", to_string(mode),
                            " writes it");
    ops::boxes_detail::check_output(ck, a.grad_logits, "grad_logits", a.logits.shape, a.logits);
    ck.disjoint(a.grad_logits, "grad_logits", a.logits, "logits");
    ck.disjoint(a.grad_logits, "grad_logits", a.target_probs, "target_probs");
    ck.disjoint(a.grad_logits, "grad_logits", a.grad_out, "grad_out");
    if (writes_value(mode)) {
      ck.disjoint(a.grad_logits, "grad_logits", a.out, "out");
      ck.disjoint(a.grad_logits, "grad_logits", a.out_elementwise, "out_elementwise");
    }
  }
  kdloss::detail::require_backend<T>(ck.fn, dev);
}

/// Workspace bytes of matched_class_loss: the match map (an int64 per prediction row) and, on the GPU,
/// the partial sums.
///
///   kdloss::detr::MatchedClassLossArgs<float> args;   // filled in as in MatchedClassLossArgs's example
///   std::size_t bytes = kdloss::detr::matched_class_loss_workspace_bytes(args);
template <class T>
std::size_t matched_class_loss_workspace_bytes(const MatchedClassLossArgs<T>& a) {
  kdloss::detail::Carver c;
  c.take<std::int64_t>(static_cast<std::size_t>(a.logits.size(0) * a.logits.size(1)));
  kdloss::detail::carve_reduction(c, a.logits.device, a.logits.numel());
  return c.bytes();
}

/// Checks, then runs matched_class_loss in `mode`.
///
///   kdloss::detr::MatchedClassLossArgs<float> args;   // filled in as in MatchedClassLossArgs's example
///   kdloss::detr::matched_class_loss(args, kdloss::Mode::forward_backward);
template <class T>
void matched_class_loss(const MatchedClassLossArgs<T>& a, Mode mode, const Exec& exec = {}) {
  matched_class_loss_check(a, mode);
  namespace d = matched_detail;
  const auto& o = a.options;
  const Device dev = a.logits.device;
  const std::int64_t B = a.logits.size(0), Q = a.logits.size(1), C = a.logits.size(2), rows = B * Q;
  const std::int64_t K = a.pred_rows.numel();
  kdloss::detail::HostScratch hs;
  void* base = kdloss::detail::resolve_workspace(d::kClassNames[mode_index(mode)], dev, exec.workspace,
                                                 matched_class_loss_workspace_bytes(a), hs);
  kdloss::detail::Carver cv(base);
  auto* match = cv.take<std::int64_t>(static_cast<std::size_t>(rows));
  double* partials = kdloss::detail::carve_reduction(cv, dev, a.logits.numel());
  const std::int64_t targets = present(a.target_probs) ? a.target_probs.size(0) : a.target_labels.size(0);
  kdloss::detail::box_index_for<T>(dev, exec.stream, rows, 1, d::FillMatch{match});
  kdloss::detail::box_index_for<T>(dev, exec.stream, K, 1,
                                   d::ScatterMatch{a.pred_rows.data, K ? a.pred_rows.stride(0) : 1, a.target_rows.data,
                                                   K ? a.target_rows.stride(0) : 1, rows, targets, match});
  const double scale = o.weight / o.normalizer.divisor(K);
  const bool probs = present(a.target_probs);
  d::ClassFn<T> f{a.logits.data,
                  a.logits.stride(0),
                  a.logits.stride(1),
                  a.logits.stride(2),
                  Q,
                  C,
                  probs ? a.target_probs.data : nullptr,
                  probs ? a.target_probs.stride(0) : 0,
                  probs ? a.target_probs.stride(1) : 0,
                  probs ? nullptr : a.target_labels.data,
                  probs ? 0 : a.target_labels.stride(0),
                  match,
                  o.kind == MatchedClassLossOptions::Kind::focal,
                  o.alpha,
                  o.gamma,
                  scale,
                  mode == Mode::backward ? a.grad_out.data : nullptr,
                  writes_gradients(mode) ? a.grad_logits.data : nullptr,
                  writes_gradients(mode) ? a.grad_logits.stride(0) : 0,
                  writes_gradients(mode) ? a.grad_logits.stride(1) : 0,
                  writes_gradients(mode) ? a.grad_logits.stride(2) : 0,
                  nullptr,
                  0,
                  0,
                  0};
  if (writes_value(mode) && present(a.out_elementwise)) {
    f.elem = a.out_elementwise.data;
    f.eb = a.out_elementwise.stride(0), f.eq = a.out_elementwise.stride(1), f.ec = a.out_elementwise.stride(2);
  }
  if (writes_value(mode))
    kdloss::detail::box_index_sum<T>(dev, exec.stream, rows * C, 16, f, partials, kdloss::detail::Scale{scale},
                                     a.out.data);
  else
    kdloss::detail::box_index_for<T>(dev, exec.stream, rows * C, 16, f);
}

// =============================================================================================
// matched_box_loss

/// Options of detr::matched_box_loss. Defaults: Deformable DETR / DETRDistill weights (L1 5, GIoU 2).
struct MatchedBoxLossOptions {
  double l1_weight = 5.0;
  double giou_weight = 2.0;
  ops::BoxFormat format = ops::BoxFormat::cxcywh;  // of pred_boxes and target_boxes (normalised)
  ops::OverlapForm form = ops::OverlapForm::mmdet;    // GIoU form (mmdet's GIoULoss: eps 1e-6)
  double eps = 1e-6;
  Normalizer normalizer = Normalizer::mmdet_avg_factor(1.0);
};

/// The arguments of one detr::matched_box_loss call:
/// out_l1 = l1_weight * sum_k |pred[pred_rows[k]] - target[target_rows[k]]|_1 / divisor and
/// out_giou = giou_weight * sum_k (1 - GIoU(xyxy(pred) * f, xyxy(target) * f)) / divisor,
/// with f = (w, h, w, h) of the pair's image when `sizes` [B, 2] (height, width) is present (mmdet's
/// pixel GIoU), else 1. Either output may be left absent (that term is then not computed).
///
///   float pred[1 * 2 * 4] = {0.5f, 0.5f, 0.2f, 0.2f, 0.3f, 0.3f, 0.1f, 0.2f}, target[4] = {0.3f, 0.35f, 0.1f, 0.2f};
///   float l1, giou, grad[8];
///   std::int64_t pred_rows[1] = {1}, target_rows[1] = {0};
///   kdloss::detr::MatchedBoxLossArgs<float> args;
///   args.pred_boxes = kdloss::host_view<const float>(pred, {1, 2, 4});
///   args.target_boxes = kdloss::host_view<const float>(target, {1, 4});
///   args.pred_rows = kdloss::host_view<const std::int64_t>(pred_rows, {1});
///   args.target_rows = kdloss::host_view<const std::int64_t>(target_rows, {1});
///   args.out_l1 = kdloss::host_scalar(&l1);
///   args.out_giou = kdloss::host_scalar(&giou);
///   args.grad_pred_boxes = kdloss::host_view(grad, {1, 2, 4});
///   kdloss::detr::matched_box_loss(args, kdloss::Mode::forward_backward);
/// Fields: pred_boxes [B, Q, 4]; target_boxes [T, 4]; pred_rows, target_rows [K] int64; sizes (optional
/// [B, 2]); out_l1, out_giou (one element each, optional); grad_out_l1, grad_out_giou (backward: the
/// upstream gradient of each present term); grad_pred_boxes [B, Q, 4] (rows of unmatched predictions get
/// 0); options.
template <class T>
struct MatchedBoxLossArgs {
  View<const T> pred_boxes{}, target_boxes{};
  View<const std::int64_t> pred_rows{}, target_rows{};
  View<const T> sizes{};
  View<T> out_l1{}, out_giou{};
  View<const T> grad_out_l1{}, grad_out_giou{};
  View<T> grad_pred_boxes{};
  MatchedBoxLossOptions options{};
};

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::detr::MatchedBoxLossArgs<float> args;   // filled in as in MatchedBoxLossArgs's example
///   kdloss::detr::matched_box_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void matched_box_loss_check(const MatchedBoxLossArgs<T>& a, Mode mode) {
  namespace d = matched_detail;
  namespace od = ops::boxes_detail;
  const kdloss::detail::Checker ck{d::kBoxNames[mode_index(mode)]};
  const auto& o = a.options;
  od::check_format(ck, o.format, "options.format");
  od::check_overlap(ck, expr::boxes::Overlap{o.form, o.eps, true});
  d::check_normalizer(ck, o.normalizer, "options.normalizer");
  od::check_boxes(ck, a.pred_boxes, "pred_boxes");
  ck.rank(a.pred_boxes, "pred_boxes", 3);
  od::check_boxes(ck, a.target_boxes, "target_boxes");
  ck.rank(a.target_boxes, "target_boxes", 2);
  const Device dev = a.pred_boxes.device;
  ck.device(a.target_boxes, "target_boxes", dev);
  const std::int64_t B = a.pred_boxes.size(0), rows = B * a.pred_boxes.size(1);
  od::check_matched_pairs(ck, a.pred_rows, a.target_rows, rows, a.target_boxes.size(0), dev);
  if (present(a.sizes)) {
    ck.not_null(a.sizes, "sizes");
    ck.shape(a.sizes, "sizes", Dims{B, 2});
    ck.device(a.sizes, "sizes", dev);
  }
  const bool l1 = mode == Mode::backward ? present(a.grad_out_l1) : present(a.out_l1);
  const bool gi = mode == Mode::backward ? present(a.grad_out_giou) : present(a.out_giou);
  kdloss::detail::require(l1 || gi, ck.fn, ": no term asked: pass ",
                          mode == Mode::backward ? "'grad_out_l1' and/or 'grad_out_giou'" : "'out_l1' and/or 'out_giou'");
  if (writes_value(mode)) {
    const View<T>* outs[2] = {&a.out_l1, &a.out_giou};
    const char* names[2] = {"out_l1", "out_giou"};
    for (int s = 0; s < 2; ++s) {
      if (absent(*outs[s])) continue;
      ck.scalar_output(*outs[s], names[s]);
      ck.device(*outs[s], names[s], dev);
      ck.disjoint(*outs[s], names[s], a.pred_boxes, "pred_boxes");
      ck.disjoint(*outs[s], names[s], a.target_boxes, "target_boxes");
    }
    ck.disjoint(a.out_l1, "out_l1", a.out_giou, "out_giou");
  }
  if (writes_gradients(mode)) {
    if (mode == Mode::backward) {
      if (l1) d::check_scalar_upstream(ck, a.grad_out_l1, dev);
      if (gi) {
        kdloss::detail::require(a.grad_out_giou.numel() == 1, ck.fn, ": argument 'grad_out_giou' must hold one element but has shape ",
                                a.grad_out_giou.shape.str());
        ck.device(a.grad_out_giou, "grad_out_giou", dev);
      }
    }
    kdloss::detail::require(present(a.grad_pred_boxes), ck.fn, ": argument 'grad_pred_boxes' is absent but ",
                            to_string(mode), " writes it");
    od::check_grad_pair(ck, a.grad_pred_boxes, "grad_pred_boxes", a.pred_boxes, "pred_boxes");
    ck.disjoint(a.grad_pred_boxes, "grad_pred_boxes", a.target_boxes, "target_boxes");
    ck.disjoint(a.grad_pred_boxes, "grad_pred_boxes", a.sizes, "sizes");
    ck.disjoint(a.grad_pred_boxes, "grad_pred_boxes", a.grad_out_l1, "grad_out_l1");
    ck.disjoint(a.grad_pred_boxes, "grad_pred_boxes", a.grad_out_giou, "grad_out_giou");
    ck.disjoint(a.grad_pred_boxes, "grad_pred_boxes", a.out_l1, "out_l1");
    ck.disjoint(a.grad_pred_boxes, "grad_pred_boxes", a.out_giou, "out_giou");
  }
  kdloss::detail::require_backend<T>(ck.fn, dev);
}

/// Workspace bytes of matched_box_loss: the GPU's partial sums (two terms); 0 on the host.
///
///   kdloss::detr::MatchedBoxLossArgs<float> args;   // filled in as in MatchedBoxLossArgs's example
///   std::size_t bytes = kdloss::detr::matched_box_loss_workspace_bytes(args);
template <class T>
std::size_t matched_box_loss_workspace_bytes(const MatchedBoxLossArgs<T>& a) {
  kdloss::detail::Carver c;
  kdloss::detail::carve_reduction(c, a.pred_boxes.device, a.pred_rows.numel());
  kdloss::detail::carve_reduction(c, a.pred_boxes.device, a.pred_rows.numel());
  return c.bytes();
}

/// Checks, then runs matched_box_loss in `mode`.
///
///   kdloss::detr::MatchedBoxLossArgs<float> args;   // filled in as in MatchedBoxLossArgs's example
///   kdloss::detr::matched_box_loss(args, kdloss::Mode::forward_backward);
template <class T>
void matched_box_loss(const MatchedBoxLossArgs<T>& a, Mode mode, const Exec& exec = {}) {
  matched_box_loss_check(a, mode);
  namespace d = matched_detail;
  const auto& o = a.options;
  const Device dev = a.pred_boxes.device;
  const std::int64_t Q = a.pred_boxes.size(1), rows = a.pred_boxes.size(0) * Q, K = a.pred_rows.numel();
  kdloss::detail::HostScratch hs;
  void* base = kdloss::detail::resolve_workspace(d::kBoxNames[mode_index(mode)], dev, exec.workspace,
                                                 matched_box_loss_workspace_bytes(a), hs);
  kdloss::detail::Carver cv(base);
  double* partials[2] = {kdloss::detail::carve_reduction(cv, dev, K), kdloss::detail::carve_reduction(cv, dev, K)};
  const bool grads = writes_gradients(mode);
  const auto& g = a.grad_pred_boxes;
  if (grads)
    kdloss::detail::box_index_for<T>(dev, exec.stream, rows * 4, 1,
                                     d::ZeroRows<T>{ops::boxes_detail::rows_of(g)});
  const double divisor = o.normalizer.divisor(K);
  const View<T>* outs[2] = {&a.out_l1, &a.out_giou};
  const View<const T>* ups[2] = {&a.grad_out_l1, &a.grad_out_giou};
  const double weights[2] = {o.l1_weight, o.giou_weight};
  for (int term = 0; term < 2; ++term) {
    const bool on = mode == Mode::backward ? present(*ups[term]) : present(*outs[term]);
    if (!on) continue;
    const double scale = weights[term] / divisor;
    const d::BoxFn<T> f{ops::boxes_detail::rows_of(a.pred_boxes),
                        ops::boxes_detail::rows_of(a.target_boxes),
                        rows,
                        a.target_boxes.size(0),
                        a.pred_rows.data,
                        K ? a.pred_rows.stride(0) : 1,
                        a.target_rows.data,
                        K ? a.target_rows.stride(0) : 1,
                        present(a.sizes) ? a.sizes.data : nullptr,
                        present(a.sizes) ? a.sizes.stride(0) : 0,
                        present(a.sizes) ? a.sizes.stride(1) : 0,
                        o.format,
                        expr::boxes::Overlap{o.form, o.eps, true},
                        term == 1,
                        scale,
                        mode == Mode::backward ? ups[term]->data : nullptr,
                        grads ? ops::boxes_detail::rows_of(g) : ops::boxes_detail::BoxRows<T>{}};
    if (writes_value(mode))
      kdloss::detail::box_index_sum<T>(dev, exec.stream, K, 64, f, partials[term], kdloss::detail::Scale{scale},
                                       outs[term]->data);
    else
      kdloss::detail::box_index_for<T>(dev, exec.stream, K, 64, f);
  }
}

} } }  // namespace kdloss::detr
