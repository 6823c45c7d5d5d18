// kdloss/losses/detr/query_prior.hpp: DETRDistill's query-prior assignment distillation (losses.md 4.4) as the
// official code runs it: the student decodes the TEACHER's 300 query embeddings as an extra group, and each
// student decoder layer k is supervised by the ground truth through the teacher's own fixed layer-k Hungarian
// assignment (no re-matching). The loss is the standard Deformable-DETR (mmdet) detection loss:
//
//   cls_k  = 2 * sum_{b,q,c} focal(z_kbqc, onehot(label of q's partner) or 0) / (N' + eps)   (alpha .25, gamma 2)
//   l1_k   = 5 * sum_{matched} |b_kbq - gt_j|_1 / (N' + eps)                                   (normalised cxcywh)
//   giou_k = 2 * sum_{matched} (1 - GIoU(xyxy(b) * f_b, xyxy(gt_j) * f_b)) / (N' + eps)        (pixels, mmdet eps)
//
// with N' = max(num_pos, 1) (num_pos: mmdet's reduce_mean'ed count; default the layer's matched pairs on this
// device) and eps the float32 epsilon (mmdet's weight_reduce_loss). out_cls / out_l1 / out_giou are the sums
// over the K layers (the code's teacher_query_loss_* and d{k}.teacher_query_loss_*, weight 1 each).
// Gradients reach the student's logits and boxes of every layer.
//
// It composes detr::matched_class_loss (focal) and detr::matched_box_loss (v5-boxes' element losses) per layer.
// The assignment comes from the caller (the teacher's matcher: detr::hungarian_match in matcher.hpp, or any
// DETR-family matcher): per layer a list of (prediction row b * Q + q, packed ground-truth row) pairs.
//
// Entry shape (core/entry.hpp): QueryPriorLossArgs, query_prior_loss_check, query_prior_loss_workspace_bytes,
// query_prior_loss(args, mode, exec) and the wrappers. Host and GPU (float, double): each layer's three values
// go to slots of the workspace and one reduction per term adds them into the outputs, so on the GPU nothing is
// read back on the host. No reserve.
#pragma once
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/ragged.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/basic.hpp"
#include "kdloss/losses/detr/distill_detail.hpp"
#include "kdloss/losses/detr/matched_losses.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace detr {

/// Options of query_prior_loss (the code's Deformable-DETR head: focal 2, L1 5, GIoU 2).
struct QueryPriorLossOptions {
  double class_weight = 2.0;
  double alpha = 0.25;
  double gamma = 2.0;
  double l1_weight = 5.0;
  double giou_weight = 2.0;
  double giou_eps = 1e-6;  // mmdet GIoULoss eps
  /// mmdet's num_total_pos after reduce_mean (the average over GPUs); <= 0: each layer's matched pairs on
  /// this call (one GPU). The divisor is max(num_pos, 1) + FLT_EPSILON for all three terms.
  double num_pos = 0.0;
};

/// The arguments of one query_prior_loss call (all K decoder layers).
/// - logits [K, B, Q, C], boxes [K, B, Q, 4] (normalised cxcywh): the student's decoding of the teacher queries.
/// - gt_labels [T] int64, gt_boxes [T, 4] (normalised cxcywh): the ground truth of all images, packed.
/// - sizes [B, 2] (height, width) of each image: the GIoU in pixels as mmdet (absent: normalised GIoU).
/// - pred_rows, target_rows [P] int64: every layer's pairs packed, layer k owning [layers[k], layers[k+1]);
///   pred_rows index the layer's B * Q rows (b * Q + q), target_rows the packed ground truth.
/// - layers: K + 1 int64 offsets into the pairs, host memory (core/ragged.hpp).
/// - out_cls, out_l1, out_giou: one element each (forward, forward_backward), sums over the layers.
/// - grad_out_cls, grad_out_l1, grad_out_giou: one element each (backward).
/// - grad_logits [K, B, Q, C], grad_boxes [K, B, Q, 4]: optional gradients.
///
///   const std::int64_t K = 2, B = 1, Q = 3, C = 4;
///   std::vector<float> logits(K * B * Q * C, 0.1f), boxes(K * B * Q * 4, 0.3f), gl(logits.size()), gb(boxes.size());
///   std::vector<float> gt = {0.5f, 0.5f, 0.2f, 0.3f}, hw = {480, 640};
///   std::vector<std::int64_t> labels = {2}, pred = {1, 0}, target = {0, 0}, layers = {0, 1, 2};
///   float cls = 0, l1 = 0, giou = 0;
///   kdloss::detr::QueryPriorLossArgs<float> args;
///   args.logits = kdloss::host_view<const float>(logits.data(), {K, B, Q, C});
///   args.boxes = kdloss::host_view<const float>(boxes.data(), {K, B, Q, 4});
///   args.gt_labels = kdloss::host_view<const std::int64_t>(labels.data(), {1});
///   args.gt_boxes = kdloss::host_view<const float>(gt.data(), {1, 4});
///   args.sizes = kdloss::host_view<const float>(hw.data(), {B, 2});
///   args.pred_rows = kdloss::host_view<const std::int64_t>(pred.data(), {2});
///   args.target_rows = kdloss::host_view<const std::int64_t>(target.data(), {2});
///   args.layers = kdloss::Segments<std::int64_t>{kdloss::host_view<const std::int64_t>(layers.data(), {3})};
///   args.out_cls = kdloss::host_scalar(&cls);
///   args.out_l1 = kdloss::host_scalar(&l1);
///   args.out_giou = kdloss::host_scalar(&giou);
///   args.grad_logits = kdloss::host_view(gl.data(), {K, B, Q, C});
///   args.grad_boxes = kdloss::host_view(gb.data(), {K, B, Q, 4});
///   kdloss::detr::query_prior_loss(args, kdloss::Mode::forward_backward);
template <class T>
struct QueryPriorLossArgs {
  View<const T> logits{}, boxes{};
  View<const std::int64_t> gt_labels{};
  View<const T> gt_boxes{};
  View<const T> sizes{};
  View<const std::int64_t> pred_rows{}, target_rows{};
  Segments<std::int64_t> layers{};
  View<T> out_cls{}, out_l1{}, out_giou{};
  View<const T> grad_out_cls{}, grad_out_l1{}, grad_out_giou{};
  View<T> grad_logits{}, grad_boxes{};
  QueryPriorLossOptions options{};
};

namespace query_prior_detail {
using ::kdloss::detail::Checker;
using ::kdloss::detail::require;

inline constexpr EntryNames kNames{"kdloss::detr::query_prior_loss", "kdloss::detr::query_prior_loss_backward",
                                   "kdloss::detr::query_prior_loss_forward_backward"};

/// Layer k of a [K, ...] view (the leading axis dropped); absent stays absent.
template <class U>
View<U> layer(const View<U>& v, std::int64_t k) {
  if (absent(v)) return v;
  Dims shape, strides;
  shape.rank = strides.rank = v.rank() - 1;
  for (int d = 1; d < v.rank(); ++d) shape[d - 1] = v.shape[d], strides[d - 1] = v.strides[d];
  // A null pointer stays null (the check names it; no offset is applied to it: UBSan, found by the fuzzer).
  return View<U>(v.data ? v.data + k * v.strides[0] : v.data, shape, strides, v.device);
}

/// Pairs [begin, end) of a packed [P] index view.
inline View<const std::int64_t> pairs(const View<const std::int64_t>& v, std::int64_t begin, std::int64_t end) {
  return View<const std::int64_t>(v.data ? v.data + begin * v.strides[0] : v.data, Dims{end - begin},
                                  Dims{v.strides[0]}, v.device);
}

inline Normalizer normalizer(const QueryPriorLossOptions& o, std::int64_t pairs) {
  return Normalizer::mmdet_avg_factor(o.num_pos > 0 ? o.num_pos : static_cast<double>(pairs));
}

/// The element-loss arguments of layer k (outputs and upstreams set by the caller).
template <class T>
MatchedClassLossArgs<T> class_args(const QueryPriorLossArgs<T>& a, std::int64_t k) {
  MatchedClassLossArgs<T> c;
  c.logits = layer(a.logits, k);
  c.target_labels = a.gt_labels;
  c.pred_rows = pairs(a.pred_rows, a.layers.begin(k), a.layers.end(k));
  c.target_rows = pairs(a.target_rows, a.layers.begin(k), a.layers.end(k));
  c.grad_logits = layer(a.grad_logits, k);
  c.options.kind = MatchedClassLossOptions::Kind::focal;
  c.options.alpha = a.options.alpha;
  c.options.gamma = a.options.gamma;
  c.options.weight = a.options.class_weight;
  c.options.normalizer = normalizer(a.options, a.layers.size(k));
  return c;
}
template <class T>
MatchedBoxLossArgs<T> box_args(const QueryPriorLossArgs<T>& a, std::int64_t k) {
  MatchedBoxLossArgs<T> b;
  b.pred_boxes = layer(a.boxes, k);
  b.target_boxes = a.gt_boxes;
  b.pred_rows = pairs(a.pred_rows, a.layers.begin(k), a.layers.end(k));
  b.target_rows = pairs(a.target_rows, a.layers.begin(k), a.layers.end(k));
  b.sizes = a.sizes;
  b.grad_pred_boxes = layer(a.grad_boxes, k);
  b.options.l1_weight = a.options.l1_weight;
  b.options.giou_weight = a.options.giou_weight;
  b.options.eps = a.options.giou_eps;
  b.options.format = ops::BoxFormat::cxcywh;
  b.options.form = ops::OverlapForm::mmdet;
  b.options.normalizer = normalizer(a.options, a.layers.size(k));
  return b;
}

/// The call's scratch: the element losses' workspace (the largest layer's), then the K per-layer values of
/// each of the three terms (on the call's device: the reductions that add them read them there).
template <class T>
struct Scratch {
  unsigned char* inner = nullptr;
  std::size_t inner_bytes = 0;
  T* slots = nullptr;  // [3, K]: cls, l1, giou of every layer
};
/// The largest workspace of the layers' element losses (queried once per call).
template <class T>
std::size_t inner_bytes(const QueryPriorLossArgs<T>& a) {
  std::size_t bytes = 0;
  for (std::int64_t k = 0; k < a.layers.count(); ++k) {
    bytes = std::max(bytes, matched_class_loss_workspace_bytes(class_args(a, k)));
    bytes = std::max(bytes, matched_box_loss_workspace_bytes(box_args(a, k)));
  }
  return bytes;
}
/// Places the scratch in c (a Carver on null: sizes only).
template <class T>
Scratch<T> carve(std::size_t inner, std::int64_t K, ::kdloss::detail::Carver& c) {
  Scratch<T> s;
  s.inner_bytes = inner;
  s.inner = c.take<unsigned char>(inner);
  s.slots = c.take<T>(static_cast<std::size_t>(3 * K));
  return s;
}

/// Runs f and prefixes the error with the entry and the layer.
template <class F>
void in_layer(const char* fn, std::int64_t k, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    require(false, fn, ": layer ", k, ": ", e.what());
  }
}

}  // namespace query_prior_detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
/// Layer errors of the element losses are prefixed with the layer ("layer 3: ...").
///
///   kdloss::detr::QueryPriorLossArgs<float> args;   // filled in as in QueryPriorLossArgs's example
///   kdloss::detr::query_prior_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void query_prior_loss_check(const QueryPriorLossArgs<T>& a, Mode mode) {
  namespace qd = query_prior_detail;
  const char* fn = qd::kNames(mode);
  const qd::Checker ck{fn};
  ck.rank(a.logits, "logits", 4);
  ck.not_null(a.logits, "logits");
  ::kdloss::detail::require_backend<T>(fn, a.logits.device);
  ck.rank(a.boxes, "boxes", 4);
  ck.not_null(a.boxes, "boxes");
  const std::int64_t K = a.logits.shape[0];
  qd::require(a.boxes.shape[0] == K && a.boxes.shape[1] == a.logits.shape[1] && a.boxes.shape[2] == a.logits.shape[2] &&
                  a.boxes.shape[3] == 4,
              fn, ": argument 'boxes' has shape ", a.boxes.shape.str(), " but expected [", K, ", ", a.logits.shape[1],
              ", ", a.logits.shape[2], ", 4] (normalised cxcywh boxes of the logits' queries)");
  ck.rank(a.pred_rows, "pred_rows", 1);
  ck.rank(a.target_rows, "target_rows", 1);
  ::kdloss::detail::check_segments(ck, a.layers, "layers", a.pred_rows.shape[0]);
  qd::require(a.layers.count() == K, fn, ": argument 'layers' describes ", a.layers.count(),
              " layers but 'logits' ", a.logits.shape.str(), " has K = ", K);
  qd::require(std::isfinite(a.options.num_pos), fn, ": option 'num_pos' is ", a.options.num_pos, " but must be finite");
  const bool backward = mode == Mode::backward;
  const View<T>* outs[3] = {&a.out_cls, &a.out_l1, &a.out_giou};
  const View<const T>* ups[3] = {&a.grad_out_cls, &a.grad_out_l1, &a.grad_out_giou};
  const char* out_names[3] = {"out_cls", "out_l1", "out_giou"};
  const char* up_names[3] = {"grad_out_cls", "grad_out_l1", "grad_out_giou"};
  for (int s = 0; s < 3; ++s) {
    if (writes_value(mode)) {
      qd::require(present(*outs[s]), fn, ": argument '", out_names[s], "' is absent; pass one element");
      ck.scalar_output(*outs[s], out_names[s]);
      ck.device(*outs[s], out_names[s], a.logits.device);
      for (int t = 0; t < s; ++t) ck.disjoint(*outs[s], out_names[s], *outs[t], out_names[t]);
    }
    if (backward) {
      qd::require(present(*ups[s]), fn, ": mode backward reads '", up_names[s], "' but it is absent");
      ck.scalar_output(*ups[s], up_names[s]);
    }
  }
  if (writes_gradients(mode)) {  // the whole [K, ...] shapes: the per-layer checks below see one slice each
    if (present(a.grad_logits)) ck.shape(a.grad_logits, "grad_logits", a.logits.shape);
    if (present(a.grad_boxes)) ck.shape(a.grad_boxes, "grad_boxes", a.boxes.shape);
  }
  for (std::int64_t k = 0; k < K; ++k) {
    qd::in_layer(fn, k, [&] {
      auto c = qd::class_args(a, k);
      auto b = qd::box_args(a, k);
      c.out = a.out_cls;  // the checks see the caller's outputs (overlap tests)
      b.out_l1 = a.out_l1;
      b.out_giou = a.out_giou;
      c.grad_out = a.grad_out_cls;
      b.grad_out_l1 = a.grad_out_l1;
      b.grad_out_giou = a.grad_out_giou;
      if (writes_value(mode) || present(c.grad_logits)) matched_class_loss_check(c, present(c.grad_logits) ? mode : Mode::forward);
      if (writes_value(mode) || present(b.grad_pred_boxes)) matched_box_loss_check(b, present(b.grad_pred_boxes) ? mode : Mode::forward);
    });
  }
  if (writes_gradients(mode)) {
    ck.disjoint(a.grad_logits, "grad_logits", a.grad_boxes, "grad_boxes");
    ck.disjoint(a.grad_logits, "grad_logits", a.boxes, "boxes");
    ck.disjoint(a.grad_logits, "grad_logits", a.gt_boxes, "gt_boxes");
    ck.disjoint(a.grad_boxes, "grad_boxes", a.logits, "logits");
    for (int s = 0; s < 3; ++s) {
      if (writes_value(mode)) ck.disjoint(a.grad_logits, "grad_logits", *outs[s], out_names[s]);
      if (writes_value(mode)) ck.disjoint(a.grad_boxes, "grad_boxes", *outs[s], out_names[s]);
      if (backward) ck.disjoint(a.grad_logits, "grad_logits", *ups[s], up_names[s]);
      if (backward) ck.disjoint(a.grad_boxes, "grad_boxes", *ups[s], up_names[s]);
    }
  }
}

/// Workspace bytes of query_prior_loss: the largest of the element losses', plus the 3 K per-layer values.
///
///   kdloss::detr::QueryPriorLossArgs<float> args;   // filled in as in QueryPriorLossArgs's example
///   std::size_t bytes = kdloss::detr::query_prior_loss_workspace_bytes(args);
template <class T>
std::size_t query_prior_loss_workspace_bytes(const QueryPriorLossArgs<T>& a) {
  ::kdloss::detail::Carver c;
  query_prior_detail::carve<T>(query_prior_detail::inner_bytes(a), a.layers.count(), c);
  return c.bytes();
}

/// Checks, then runs every layer: forward writes the three sums; backward reads the three upstream gradients
/// and writes the present gradients; forward_backward both. Each layer's gradient slice is written whole
/// (rows of unmatched queries: their focal gradient toward 0, box rows 0).
///
///   kdloss::detr::QueryPriorLossArgs<float> args;   // filled in as in QueryPriorLossArgs's example
///   kdloss::detr::query_prior_loss(args, kdloss::Mode::forward_backward);
template <class T>
void query_prior_loss(const QueryPriorLossArgs<T>& a, Mode mode, const Exec& exec = {}) {
  namespace qd = query_prior_detail;
  const char* fn = qd::kNames(mode);
  query_prior_loss_check(a, mode);
  const std::int64_t K = a.logits.shape[0];
  const Device dev = a.logits.device;
  ::kdloss::detail::HostScratch host;
  const std::size_t inner_bytes = qd::inner_bytes(a);
  ::kdloss::detail::Carver sizes;
  qd::carve<T>(inner_bytes, K, sizes);
  ::kdloss::detail::Carver carver(::kdloss::detail::resolve_workspace(fn, dev, exec.workspace, sizes.bytes(), host));
  const qd::Scratch<T> sc = qd::carve<T>(inner_bytes, K, carver);
  const Exec inner{{sc.inner, sc.inner_bytes}, exec.stream, exec.blas};
  const auto slot = [&](int term, std::int64_t k) { return View<T>(sc.slots + term * K + k, Dims{}, Dims{}, dev); };
  for (std::int64_t k = 0; k < K; ++k) {
    qd::in_layer(fn, k, [&] {
      auto c = qd::class_args(a, k);
      auto b = qd::box_args(a, k);
      if (writes_value(mode)) {
        c.out = slot(0, k);
        b.out_l1 = slot(1, k);
        b.out_giou = slot(2, k);
      }
      c.grad_out = a.grad_out_cls;
      b.grad_out_l1 = a.grad_out_l1;
      b.grad_out_giou = a.grad_out_giou;
      if (writes_value(mode) || present(c.grad_logits)) {
        if (!writes_gradients(mode)) c.grad_logits = View<T>{};
        matched_class_loss(c, present(c.grad_logits) ? mode : Mode::forward, inner);
      }
      if (writes_value(mode) || present(b.grad_pred_boxes)) {
        if (!writes_gradients(mode)) b.grad_pred_boxes = View<T>{};
        matched_box_loss(b, present(b.grad_pred_boxes) ? mode : Mode::forward, inner);
      }
    });
  }
  if (!writes_value(mode)) return;
  const View<T>* outs[3] = {&a.out_cls, &a.out_l1, &a.out_giou};
  for (int term = 0; term < 3; ++term)  // out = the sum of the term's K layer values, on the stream
    ::kdloss::detail::reduce_into<acc_t<T>>(dev, exec.stream, Dims{K}, expr::Identity{},
                                            std::tuple{View<const T>(sc.slots + term * K, Dims{K}, Dims{1}, dev)},
                                            View<T>(outs[term]->data, Dims{1}, Dims{1}, dev));
}

/// Thin wrapper: the three sums.
///
///   kdloss::detr::query_prior_loss_forward(args);   // args as in QueryPriorLossArgs's example
template <class T>
void query_prior_loss_forward(const QueryPriorLossArgs<T>& args, const Exec& exec = {}) {
  query_prior_loss(args, Mode::forward, exec);
}

/// Thin wrapper: the upstream-scaled gradients.
///
///   kdloss::detr::query_prior_loss_backward(args);   // args with the three grad_out_* and the gradients
template <class T>
void query_prior_loss_backward(const QueryPriorLossArgs<T>& args, const Exec& exec = {}) {
  query_prior_loss(args, Mode::backward, exec);
}

/// Thin wrapper: the sums and the gradients in one call.
///
///   kdloss::detr::query_prior_loss_forward_backward(args);
template <class T>
void query_prior_loss_forward_backward(const QueryPriorLossArgs<T>& args, const Exec& exec = {}) {
  query_prior_loss(args, Mode::forward_backward, exec);
}

}  // namespace detr
} }  // namespace kdloss
