// kdloss/losses/detr/logits_distillation.hpp: DETRDistill's Hungarian-matching logits distillation as the
// official code runs it (losses.md 4.2), all decoder layers in one call. Per layer k (student layer k pairs
// with teacher layer k):
//
//   pseudo-targets   p^T = sigmoid(teacher logits) [N, C]; b^T = clamp(xyxy(teacher cxcywh) * (w, h, w, h))
//                    to the image (pixels); b~^T = cxcywh(b^T / (w, h, w, h)) (the L1 target)
//   cost             C[i, j] = 1 * sum_c [p_jc softplus(-z_ic) + (1 - p_jc) softplus(z_ic)]
//                            + 5 * |b^S_i - b~^T_j|_1 + 2 * (-GIoU(xyxy(b^S_i) * f, b^T_j))   (detr::matching_cost,
//                              the detrdistill preset; mmdet GIoU eps 1e-6)
//   assignment       scipy's linear_sum_assignment per image (ops::linear_sum_assignment, batched)
//   loss             cls  = sum_{b,i,c} BCE(z_bic, p^T_{b,sigma(i),c}) / (N_pos + eps)      (N_pos = matched pairs)
//                    l1   = 5 * sum_matched |b^S - b~^T|_1 / (N' + eps)
//                    giou = 2 * sum_matched (1 - GIoU(xyxy(b^S) f, b^T)) / (N' + eps)
//                    over ALL matched pairs (the teacher's low-score predictions too); N' = max(num_pos, 1)
//
// out_cls / out_l1 / out_giou are the sums over the layers (the code's loss_*_distill and d{k}.loss_*_distill).
// Gradients reach the student logits and boxes of every layer; the teacher, the costs and the matching are
// constants.
//
// Option split = score_threshold (the seed's positive/negative form, not in the official code): a teacher
// prediction is positive when max_c p^T >= score_threshold. Positives are matched first, on the full cost,
// against all student queries; the remaining queries are then matched to the negatives on the box cost alone
// (5 L1 + 2 (-GIoU): a negative's class is background). Positive pairs get the class and box terms. A matched
// negative gets the box terms, and its class term is options.negative_class:
//   background    target 0 for every class (the query is pushed to background, as an unmatched query) [default]
//   teacher_soft  the teacher's soft scores p^T, as a positive
//   none          no class term at all for that query
// N_pos is then the number of pairs that carry a class term.
//
// Section 6 items 10-11 (losses.md): the official code (split = none: soft-label BCE over all 300 pairs, boxes
// for every pair) is what reproduces the published DETRDistill numbers; the positive/negative split is the
// seed's reading of the paper and is offered as an option.
//
// Entry shape (core/entry.hpp): LogitsDistillationArgs, logits_distillation_loss_check,
// logits_distillation_loss_workspace_bytes, logits_distillation_loss(args, mode, exec) and the wrappers.
// Host and GPU (float, double). No reserve: backward recomputes the costs and the matching (they are
// deterministic); forward_backward does everything once. All layers are matched before anything is written,
// so on the host a NaN cost (from a NaN teacher or student input) throws with every output untouched.
// split = none (the official code) runs one pipeline on the host and the GPU alike, from a workspace: the
// pseudo-targets, matching_cost, linear_sum_assignment (the batch in one call) and the pairs of every layer,
// then the element losses into per-layer slots and one reduction per output, so the GPU reads nothing back;
// there a layer whose assignment fails (a NaN or infeasible cost) gets NaN values. The split option runs on
// the host only (its problem sizes depend on the teacher's scores), from buffers the call allocates.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/backend/dispatch_boxes.hpp"
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
#include "kdloss/losses/detr/matching_cost.hpp"
#include "kdloss/losses/detr/query_prior.hpp"
#include "kdloss/ops/linear_sum_assignment.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace detr {

/// Options of logits_distillation_loss (the official code's values by default).
struct LogitsDistillationOptions {
  enum class Split { none, score_threshold };
  enum class NegativeClass { background, teacher_soft, none };
  double class_weight = 1.0;  // cost and loss (DistillCrossEntropyLossCost / DistillCrossEntropyLoss weight)
  double l1_weight = 5.0;     // cost and loss
  double giou_weight = 2.0;   // cost and loss
  double giou_eps = 1e-6;     // mmdet bbox_overlaps / GIoULoss eps
  /// mmdet's num_total_pos after reduce_mean (the box terms' N'); <= 0: the layer's matched pairs on this call.
  double num_pos = 0.0;
  Split split = Split::none;
  double score_threshold = 0.3;  // split = score_threshold: positive when max_c sigmoid(teacher logit) >= this
  NegativeClass negative_class = NegativeClass::background;
};

/// The arguments of one logits_distillation_loss call (all K decoder layers).
/// - student_logits [K, B, Q, C], student_boxes [K, B, Q, 4] (normalised cxcywh).
/// - teacher_logits [K, B, N, C], teacher_boxes [K, B, N, 4] (normalised cxcywh), the teacher's raw outputs.
/// - sizes [B, 2]: each image's (height, width) (mmdet's img_shape): the factor of the pixel boxes.
/// - out_cls, out_l1, out_giou: one element each, sums over the layers; out: one element, cls + l1 + giou
///   (forward, forward_backward: each optional, at least one present).
/// - backward: grad_out_cls, grad_out_l1, grad_out_giou, each term's upstream gradient, or grad_out, the
///   upstream of `out` (used for every term whose own upstream is absent).
/// - grad_student_logits, grad_student_boxes: optional gradients.
///
///   const std::int64_t K = 6, B = 2, Q = 300, C = 80;
///   std::vector<float> sl(K * B * Q * C, -2.0f), tl(sl.size(), -1.0f), sb(K * B * Q * 4, 0.25f), tb(sb.size(), 0.3f);
///   std::vector<float> hw = {800, 1067, 800, 1199}, gl(sl.size()), gb(sb.size());
///   float cls = 0, l1 = 0, giou = 0;
///   kdloss::detr::LogitsDistillationArgs<float> args;
///   args.student_logits = kdloss::host_view<const float>(sl.data(), {K, B, Q, C});
///   args.student_boxes = kdloss::host_view<const float>(sb.data(), {K, B, Q, 4});
///   args.teacher_logits = kdloss::host_view<const float>(tl.data(), {K, B, Q, C});
///   args.teacher_boxes = kdloss::host_view<const float>(tb.data(), {K, B, Q, 4});
///   args.sizes = kdloss::host_view<const float>(hw.data(), {B, 2});
///   args.out_cls = kdloss::host_scalar(&cls);
///   args.out_l1 = kdloss::host_scalar(&l1);
///   args.out_giou = kdloss::host_scalar(&giou);
///   args.grad_student_logits = kdloss::host_view(gl.data(), {K, B, Q, C});
///   args.grad_student_boxes = kdloss::host_view(gb.data(), {K, B, Q, 4});
///   kdloss::detr::logits_distillation_loss(args, kdloss::Mode::forward_backward);
template <class T>
struct LogitsDistillationArgs {
  View<const T> student_logits{}, student_boxes{};
  View<const T> teacher_logits{}, teacher_boxes{};
  View<const T> sizes{};
  View<T> out_cls{}, out_l1{}, out_giou{};
  View<T> out{};
  View<const T> grad_out_cls{}, grad_out_l1{}, grad_out_giou{};
  View<const T> grad_out{};
  View<T> grad_student_logits{}, grad_student_boxes{};
  LogitsDistillationOptions options{};
};

namespace logits_distill_detail {
using ::kdloss::detail::Checker;
using ::kdloss::detail::require;
using query_prior_detail::layer;
using distill_detail::stand_in;

inline constexpr EntryNames kNames{"kdloss::detr::logits_distillation_loss",
                                   "kdloss::detr::logits_distillation_loss_backward",
                                   "kdloss::detr::logits_distillation_loss_forward_backward"};

/// One layer's pseudo-targets and pairs.
template <class T>
struct Layer {
  std::vector<T> probs, px, norm;                  // [B*N, C], [B*N, 4] pixel xyxy, [B*N, 4] normalised cxcywh
  std::vector<std::int64_t> cls_pred, cls_target;  // pairs with a class term
  std::vector<std::int64_t> box_pred, box_target;  // pairs with box terms
};

/// The pseudo-targets of one teacher prediction r = b * N + n of a layer (host and GPU): sigmoid scores
/// (torch's 1 / (1 + exp(-z))), the box as mmdet's bbox_cxcywh_to_xyxy * (w, h, w, h) clamped to the image,
/// all in the element type, and its bbox_xyxy_to_cxcywh(b / factor) (the L1 target).
template <class T>
struct TargetsFn {
  const T* logits;  // [B, N, C]
  std::int64_t ls0, ls1, ls2;
  const T* boxes;  // [B, N, 4] normalised cxcywh
  std::int64_t bs0, bs1, bs2;
  const T* sizes;  // [B, 2] (height, width)
  std::int64_t ss0, ss1;
  std::int64_t N, C;
  T *probs, *px, *norm;  // [B * N, C], [B * N, 4], [B * N, 4]
  KDLOSS_HOST_DEVICE double operator()(std::int64_t r) const {
    using std::exp;
    const std::int64_t b = r / N, n = r % N;
    for (std::int64_t c = 0; c < C; ++c) {
      const T z = logits[b * ls0 + n * ls1 + c * ls2];
      probs[r * C + c] = static_cast<T>(T(1) / (T(1) + exp(-z)));
    }
    const double h = static_cast<double>(sizes[b * ss0]), w = static_cast<double>(sizes[b * ss0 + ss1]);
    const T* bx = boxes + b * bs0 + n * bs1;
    const T cx = bx[0], cy = bx[bs2], bw = bx[2 * bs2], bh = bx[3 * bs2];
    const T lim[4] = {static_cast<T>(w), static_cast<T>(h), static_cast<T>(w), static_cast<T>(h)};
    T xy[4] = {cx - T(0.5) * bw, cy - T(0.5) * bh, cx + T(0.5) * bw, cy + T(0.5) * bh};
    for (int d = 0; d < 4; ++d) {
      const T v = xy[d] * lim[d];
      xy[d] = v != v ? v : (v < T(0) ? T(0) : (v > lim[d] ? lim[d] : v));
      px[r * 4 + d] = xy[d];
    }
    const T n0 = xy[0] / lim[0], n1 = xy[1] / lim[1], n2 = xy[2] / lim[2], n3 = xy[3] / lim[3];
    T* o = norm + r * 4;
    o[0] = (n0 + n2) / T(2);
    o[1] = (n1 + n3) / T(2);
    o[2] = n2 - n0;
    o[3] = n3 - n1;
    return 0.0;
  }
};

/// TargetsFn over layer k of `a`, writing into probs / px / norm (memory on the call's device).
template <class T>
TargetsFn<T> targets_fn(const LogitsDistillationArgs<T>& a, std::int64_t k, T* probs, T* px, T* norm) {
  const View<const T> tl = layer(a.teacher_logits, k), tb = layer(a.teacher_boxes, k);
  return TargetsFn<T>{tl.data,    tl.strides[0], tl.strides[1], tl.strides[2], tb.data,    tb.strides[0],
                      tb.strides[1], tb.strides[2], a.sizes.data, a.sizes.strides[0], a.sizes.strides[1],
                      tl.shape[1], tl.shape[2], probs,  px,       norm};
}

/// The pseudo-targets of layer k on the host: sigmoid scores, clamped pixel boxes, their normalised cxcywh.
template <class T>
void targets(const LogitsDistillationArgs<T>& a, std::int64_t k, Layer<T>& L) {
  const std::int64_t B = a.teacher_logits.shape[1], N = a.teacher_logits.shape[2], C = a.teacher_logits.shape[3];
  L.probs.resize(static_cast<std::size_t>(B * N * C));
  L.px.resize(static_cast<std::size_t>(B * N * 4));
  L.norm.resize(static_cast<std::size_t>(B * N * 4));
  ::kdloss::detail::box_index_for<T>(Device::host(), Stream{}, B * N, C + 16,
                                     targets_fn(a, k, L.probs.data(), L.px.data(), L.norm.data()));
}

/// Solves the [B, Q, n_b] problems of `cost` (columns j < cols[b]) and appends the pairs (b * Q + i,
/// row_base[b] + column_map[b][j]) to pred / target.
template <class T>
void solve(const std::vector<T>& cost, std::int64_t B, std::int64_t Q, std::int64_t W,
           const std::vector<std::int64_t>& rows, const std::vector<std::int64_t>& cols,
           const std::vector<std::vector<std::int64_t>>& row_map, const std::vector<std::vector<std::int64_t>>& col_map,
           std::vector<std::int64_t>& pred, std::vector<std::int64_t>& target) {
  const std::int64_t P = std::min(Q, W);
  if (P == 0) return;
  std::vector<std::int64_t> ri(static_cast<std::size_t>(B * P)), ci(ri.size()), count(static_cast<std::size_t>(B));
  ops::LinearSumAssignmentArgs<T> s;
  s.cost = host_view<const T>(cost.data(), {B, Q, W});
  s.rows = host_view<const std::int64_t>(rows.data(), {B});
  s.cols = host_view<const std::int64_t>(cols.data(), {B});
  s.row_ind = host_view(ri.data(), {B, P});
  s.col_ind = host_view(ci.data(), {B, P});
  s.count = host_view(count.data(), {B});
  ops::linear_sum_assignment(s, Mode::forward);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t p = 0; p < count[static_cast<std::size_t>(b)]; ++p) {
      pred.push_back(row_map[static_cast<std::size_t>(b)][static_cast<std::size_t>(ri[b * P + p])]);
      target.push_back(col_map[static_cast<std::size_t>(b)][static_cast<std::size_t>(ci[b * P + p])]);
    }
}

/// The matching cost of the student rows `qs` of each image against the teacher rows `ns` (packed
/// [B, Qmax, Nmax] with the rows and columns gathered), class term included when `with_class`.
template <class T>
void cost_of(const LogitsDistillationArgs<T>& a, std::int64_t k, const Layer<T>& L,
             const std::vector<std::vector<std::int64_t>>& qs, const std::vector<std::vector<std::int64_t>>& ns,
             bool with_class, std::vector<T>& cost, std::int64_t& Qm, std::int64_t& Nm) {
  const View<const T> sl = layer(a.student_logits, k), sb = layer(a.student_boxes, k);
  const std::int64_t B = sl.shape[0], C = sl.shape[2];
  Qm = Nm = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    Qm = std::max<std::int64_t>(Qm, static_cast<std::int64_t>(qs[static_cast<std::size_t>(b)].size()));
    Nm = std::max<std::int64_t>(Nm, static_cast<std::int64_t>(ns[static_cast<std::size_t>(b)].size()));
  }
  cost.assign(static_cast<std::size_t>(B * Qm * Nm), T(0));
  if (Qm == 0 || Nm == 0) return;
  // gathered, contiguous copies of the rows this problem sees (per image, padded)
  std::vector<T> zl(static_cast<std::size_t>(B * Qm * C), T(0)), zb(static_cast<std::size_t>(B * Qm * 4), T(0.5));
  std::vector<T> tp(static_cast<std::size_t>(B * Nm * C), T(0)), tx(static_cast<std::size_t>(B * Nm * 4), T(0));
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(B + 1));
  for (std::int64_t b = 0; b < B; ++b) {
    const auto& q = qs[static_cast<std::size_t>(b)];
    for (std::size_t i = 0; i < q.size(); ++i) {
      const std::int64_t qq = q[i] % sl.shape[1];
      for (std::int64_t c = 0; c < C; ++c) zl[(b * Qm + static_cast<std::int64_t>(i)) * C + c] = *distill_detail::at(sl, b, qq, c);
      for (int d = 0; d < 4; ++d) zb[(b * Qm + static_cast<std::int64_t>(i)) * 4 + d] = *distill_detail::at(sb, b, qq, d);
    }
    const auto& n = ns[static_cast<std::size_t>(b)];
    offsets[static_cast<std::size_t>(b + 1)] = (b + 1) * Nm;
    for (std::size_t j = 0; j < n.size(); ++j) {
      for (std::int64_t c = 0; c < C; ++c) tp[(b * Nm + static_cast<std::int64_t>(j)) * C + c] = L.probs[n[j] * C + c];
      for (int d = 0; d < 4; ++d) tx[(b * Nm + static_cast<std::int64_t>(j)) * 4 + d] = L.px[n[j] * 4 + d];
    }
    for (std::size_t j = n.size(); j < static_cast<std::size_t>(Nm); ++j)  // padding: a valid box
      for (int d = 0; d < 4; ++d) tx[(b * Nm + static_cast<std::int64_t>(j)) * 4 + d] = T(d < 2 ? 0 : 1);
  }
  MatchingCostArgs<T> m;
  m.options = MatchingCostOptions::detrdistill();
  m.options.class_weight = with_class ? a.options.class_weight : 0.0;
  if (!with_class) m.options.class_cost = MatchingCostOptions::ClassCost::none;
  m.options.bbox_weight = a.options.l1_weight;
  m.options.giou_weight = a.options.giou_weight;
  m.options.giou_eps = a.options.giou_eps;
  if (with_class) m.pred_logits = host_view<const T>(zl.data(), {B, Qm, C});
  m.pred_boxes = host_view<const T>(zb.data(), {B, Qm, 4});
  if (with_class) m.target_probs = host_view<const T>(tp.data(), {B * Nm, C});
  m.target_boxes = host_view<const T>(tx.data(), {B * Nm, 4});
  m.targets = Segments<std::int64_t>{host_view<const std::int64_t>(offsets.data(), {B + 1})};
  m.sizes = a.sizes;
  m.out = host_view(cost.data(), {B, Qm, Nm});
  matching_cost(m);
}

/// The pseudo-targets and the pairs of layer k (the official code's single match, or the split).
template <class T>
void match(const LogitsDistillationArgs<T>& a, std::int64_t k, Layer<T>& L) {
  targets(a, k, L);
  const std::int64_t B = a.student_logits.shape[1], Q = a.student_logits.shape[2], N = a.teacher_logits.shape[2],
                     C = a.teacher_logits.shape[3];
  const auto& o = a.options;
  using Split = LogitsDistillationOptions::Split;
  using Neg = LogitsDistillationOptions::NegativeClass;
  std::vector<std::vector<std::int64_t>> all_q(static_cast<std::size_t>(B)), pos(static_cast<std::size_t>(B)),
      neg(static_cast<std::size_t>(B));
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t q = 0; q < Q; ++q) all_q[static_cast<std::size_t>(b)].push_back(b * Q + q);
    for (std::int64_t n = 0; n < N; ++n) {
      double best = -std::numeric_limits<double>::infinity();
      for (std::int64_t c = 0; c < C; ++c) best = std::max(best, static_cast<double>(L.probs[(b * N + n) * C + c]));
      const bool positive = o.split == Split::none || best >= o.score_threshold;
      (positive ? pos : neg)[static_cast<std::size_t>(b)].push_back(b * N + n);
    }
  }
  std::vector<T> cost;
  std::int64_t Qm = 0, Nm = 0;
  std::vector<std::int64_t> rows(static_cast<std::size_t>(B)), cols(static_cast<std::size_t>(B));
  cost_of(a, k, L, all_q, pos, true, cost, Qm, Nm);
  for (std::int64_t b = 0; b < B; ++b)
    rows[static_cast<std::size_t>(b)] = Q, cols[static_cast<std::size_t>(b)] = static_cast<std::int64_t>(pos[static_cast<std::size_t>(b)].size());
  std::vector<std::int64_t> pp, pt;
  solve(cost, B, Qm, Nm, rows, cols, all_q, pos, pp, pt);
  L.cls_pred = pp;
  L.cls_target = pt;
  L.box_pred = pp;
  L.box_target = pt;
  if (o.split == Split::none) return;
  // the queries left over, matched to the negatives on the box cost alone
  std::vector<std::vector<std::int64_t>> rest(static_cast<std::size_t>(B));
  std::vector<char> used(static_cast<std::size_t>(B * Q), 0);
  for (std::int64_t r : pp) used[static_cast<std::size_t>(r)] = 1;
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t q = 0; q < Q; ++q)
      if (!used[static_cast<std::size_t>(b * Q + q)]) rest[static_cast<std::size_t>(b)].push_back(b * Q + q);
  cost_of(a, k, L, rest, neg, false, cost, Qm, Nm);
  for (std::int64_t b = 0; b < B; ++b)
    rows[static_cast<std::size_t>(b)] = static_cast<std::int64_t>(rest[static_cast<std::size_t>(b)].size()),
    cols[static_cast<std::size_t>(b)] = static_cast<std::int64_t>(neg[static_cast<std::size_t>(b)].size());
  std::vector<std::int64_t> np, nt;
  solve(cost, B, Qm, Nm, rows, cols, rest, neg, np, nt);
  L.box_pred.insert(L.box_pred.end(), np.begin(), np.end());
  L.box_target.insert(L.box_target.end(), nt.begin(), nt.end());
  if (o.negative_class == Neg::teacher_soft) {
    L.cls_pred.insert(L.cls_pred.end(), np.begin(), np.end());
    L.cls_target.insert(L.cls_target.end(), nt.begin(), nt.end());
  }  // background: unmatched for the class term (target 0); none: run() removes their class term
}

inline View<const std::int64_t> idx(const std::vector<std::int64_t>& v) {
  return host_view<const std::int64_t>(v.data(), {static_cast<std::int64_t>(v.size())});
}

/// The pairs of one layer: assignment (b, i, j) -> prediction row b * Q + i, teacher row b * N + j
/// (-1 where the assignment left a slot empty).
struct PairsFn {
  const std::int64_t *row_ind, *col_ind;
  std::int64_t P, Q, N;
  std::int64_t *pred, *target;
  KDLOSS_HOST_DEVICE double operator()(std::int64_t e) const {
    const std::int64_t b = e / P, i = row_ind[e], j = col_ind[e];
    pred[e] = i >= 0 ? b * Q + i : -1;
    target[e] = j >= 0 ? b * N + j : -1;
    return 0.0;
  }
};

/// A layer whose assignment did not succeed gets NaN values: on the GPU a NaN cost (status invalid; the host
/// throws instead, and the GPU cannot without a synchronisation), on either an infeasible one (an infinite
/// input makes a cost +inf).
template <class T>
struct FailedLayerFn {
  const std::int64_t* status;
  std::int64_t B;
  T *cls, *l1, *giou;
  KDLOSS_HOST_DEVICE double operator()(std::int64_t) const {
    bool failed = false;
    for (std::int64_t b = 0; b < B; ++b) failed = failed || status[b] != 0;
    if (failed) {
      const T nan = static_cast<T>(NAN);
      *cls = nan, *l1 = nan, *giou = nan;
    }
    return 0.0;
  }
};

/// The buffers of the one-pass pipeline (split = none, host and GPU): every layer's pseudo-targets,
/// assignment and pairs (all layers are matched before any output is written), one cost matrix reused by the
/// layers, the three values of every layer, and the inner entries' workspace. With base null, sizes only (the
/// views are then bound to stand-in addresses).
template <class T>
struct Pipeline {
  std::int64_t K = 0, B = 0, Q = 0, N = 0, C = 0, P = 0;
  T *probs = nullptr, *px = nullptr, *norm = nullptr, *cost = nullptr, *slots = nullptr;
  std::int64_t *row_ind = nullptr, *col_ind = nullptr, *count = nullptr, *status = nullptr, *pred = nullptr,
               *target = nullptr;
  unsigned char* inner = nullptr;
  std::size_t inner_bytes = 0, total = 0;
  std::vector<std::int64_t> offsets;  // the teacher rows of each image, {0, N, 2N, ...} (host)
  Device dev{};

  template <class U>
  View<U> mat(U* p, std::int64_t k, std::int64_t rows, std::int64_t cols, int lane) const {
    return View<U>(p ? p + k * rows * cols : stand_in<std::remove_const_t<U>>(lane), Dims{rows, cols}, Dims{cols, 1}, dev);
  }
  View<const T> probs_of(std::int64_t k) const { return mat<const T>(probs, k, B * N, C, 0); }
  View<const T> px_of(std::int64_t k) const { return mat<const T>(px, k, B * N, 4, 1); }
  View<const T> norm_of(std::int64_t k) const { return mat<const T>(norm, k, B * N, 4, 2); }
  View<const std::int64_t> pred_of(std::int64_t k) const {
    return View<const std::int64_t>(pred ? pred + k * B * P : stand_in<std::int64_t>(3), Dims{B * P}, Dims{1}, dev);
  }
  View<const std::int64_t> target_of(std::int64_t k) const {
    return View<const std::int64_t>(target ? target + k * B * P : stand_in<std::int64_t>(4), Dims{B * P}, Dims{1}, dev);
  }
};

template <class T>
MatchingCostArgs<T> pipeline_cost(const LogitsDistillationArgs<T>& a, std::int64_t k, const Pipeline<T>& p) {
  MatchingCostArgs<T> m;
  m.options = MatchingCostOptions::detrdistill();
  m.options.class_weight = a.options.class_weight;
  m.options.bbox_weight = a.options.l1_weight;
  m.options.giou_weight = a.options.giou_weight;
  m.options.giou_eps = a.options.giou_eps;
  m.pred_logits = layer(a.student_logits, k);
  m.pred_boxes = layer(a.student_boxes, k);
  m.target_probs = p.probs_of(k);
  m.target_boxes = p.px_of(k);
  m.targets = Segments<std::int64_t>{host_view<const std::int64_t>(p.offsets.data(), {p.B + 1})};
  m.sizes = a.sizes;
  m.out = View<T>(p.cost ? p.cost : stand_in<T>(5), Dims{p.B, p.Q, p.N}, Dims{p.Q * p.N, p.N, 1}, p.dev);
  return m;
}

template <class T>
ops::LinearSumAssignmentArgs<T> pipeline_assignment(std::int64_t k, const Pipeline<T>& p) {
  ops::LinearSumAssignmentArgs<T> s;
  s.cost = View<const T>(p.cost ? p.cost : stand_in<T>(5), Dims{p.B, p.Q, p.N}, Dims{p.Q * p.N, p.N, 1}, p.dev);
  s.row_ind = p.template mat<std::int64_t>(p.row_ind, k, p.B, p.P, 6);
  s.col_ind = p.template mat<std::int64_t>(p.col_ind, k, p.B, p.P, 7);
  s.count = View<std::int64_t>(p.count ? p.count + k * p.B : stand_in<std::int64_t>(8), Dims{p.B}, Dims{1}, p.dev);
  s.status = View<std::int64_t>(p.status ? p.status + k * p.B : stand_in<std::int64_t>(9), Dims{p.B}, Dims{1}, p.dev);
  return s;
}

/// The element losses of layer k over its pairs (outputs and upstreams set by the caller).
template <class T>
MatchedClassLossArgs<T> pipeline_class(const LogitsDistillationArgs<T>& a, std::int64_t k, const Pipeline<T>& p) {
  MatchedClassLossArgs<T> c;
  c.logits = layer(a.student_logits, k);
  c.target_probs = p.probs_of(k);
  c.pred_rows = p.pred_of(k);
  c.target_rows = p.target_of(k);
  c.options.kind = MatchedClassLossOptions::Kind::soft_bce;
  c.options.weight = a.options.class_weight;
  c.options.normalizer = Normalizer::mmdet_num_pos();
  return c;
}
template <class T>
MatchedBoxLossArgs<T> pipeline_boxes(const LogitsDistillationArgs<T>& a, std::int64_t k, const Pipeline<T>& p) {
  const auto& o = a.options;
  MatchedBoxLossArgs<T> bx;
  bx.pred_boxes = layer(a.student_boxes, k);
  bx.target_boxes = p.norm_of(k);
  bx.pred_rows = p.pred_of(k);
  bx.target_rows = p.target_of(k);
  bx.sizes = a.sizes;
  bx.options.l1_weight = o.l1_weight;
  bx.options.giou_weight = o.giou_weight;
  bx.options.eps = o.giou_eps;
  bx.options.normalizer = Normalizer::mmdet_avg_factor(o.num_pos > 0 ? o.num_pos : static_cast<double>(p.B * p.P));
  return bx;
}

/// Places p's buffers in base (null: sizes only, p.total); p's sizes and inner_bytes are already set.
template <class T>
void carve(Pipeline<T>& p, void* base) {
  const auto n = [](std::int64_t v) { return static_cast<std::size_t>(v); };
  ::kdloss::detail::Carver c(base);
  p.probs = c.take<T>(n(p.K * p.B * p.N * p.C));
  p.px = c.take<T>(n(p.K * p.B * p.N * 4));
  p.norm = c.take<T>(n(p.K * p.B * p.N * 4));
  p.cost = c.take<T>(n(p.B * p.Q * p.N));
  p.row_ind = c.take<std::int64_t>(n(p.K * p.B * p.P));
  p.col_ind = c.take<std::int64_t>(n(p.K * p.B * p.P));
  p.pred = c.take<std::int64_t>(n(p.K * p.B * p.P));
  p.target = c.take<std::int64_t>(n(p.K * p.B * p.P));
  p.count = c.take<std::int64_t>(n(p.K * p.B));
  p.status = c.take<std::int64_t>(n(p.K * p.B));
  p.slots = c.take<T>(n(3 * p.K));
  p.inner = c.take<unsigned char>(p.inner_bytes);
  p.total = c.bytes();
}

/// The pipeline's sizes (buffers null): the inner entries' workspaces are queried here, once per call.
template <class T>
Pipeline<T> pipeline(const LogitsDistillationArgs<T>& a) {
  Pipeline<T> p;
  p.dev = a.student_logits.device;
  p.K = a.student_logits.shape[0], p.B = a.student_logits.shape[1], p.Q = a.student_logits.shape[2];
  p.N = a.teacher_logits.shape[2], p.C = a.teacher_logits.shape[3], p.P = std::min(p.Q, p.N);
  p.offsets.resize(static_cast<std::size_t>(p.B + 1));
  for (std::int64_t b = 0; b <= p.B; ++b) p.offsets[static_cast<std::size_t>(b)] = b * p.N;
  if (p.K > 0) {  // the inner entries' workspace, sized on the stand-in views (the real ones' shapes)
    p.inner_bytes = std::max(matched_class_loss_workspace_bytes(pipeline_class(a, 0, p)),
                             matched_box_loss_workspace_bytes(pipeline_boxes(a, 0, p)));
    if (p.P > 0)
      p.inner_bytes = std::max({p.inner_bytes, matching_cost_workspace_bytes(pipeline_cost(a, 0, p)),
                                ops::linear_sum_assignment_workspace_bytes(pipeline_assignment(0, p))});
  }
  carve(p, nullptr);
  return p;
}

/// The official code's form (split = none) in one pass, on the host or the GPU with the same calls: phase 1
/// matches every layer (pseudo-targets, matching_cost, linear_sum_assignment, the pairs; on the host a NaN
/// cost throws here, before any output is written), phase 2 runs the element losses into per-layer slots,
/// then one reduction per output adds the layers. On the GPU nothing is read back on the host; a layer whose
/// assignment did not succeed (status: a NaN or infeasible cost) gets NaN values.
template <class T>
void run_pipeline(const LogitsDistillationArgs<T>& a, Mode mode, const Exec& exec) {
  const char* fn = kNames(mode);
  const Device dev = a.student_logits.device;
  ::kdloss::detail::HostScratch host;
  Pipeline<T> p = pipeline<T>(a);
  carve(p, distill_detail::running_scratch(fn, dev, exec.workspace, p.total, host));
  const std::int64_t K = p.K, B = p.B, P = p.P;
  const Exec inner{{p.inner, p.inner_bytes}, exec.stream, exec.blas};
  for (std::int64_t k = 0; k < K; ++k) {
    query_prior_detail::in_layer(fn, k, [&] {
      T* probs = p.probs + k * B * p.N * p.C;
      ::kdloss::detail::box_index_for<T>(dev, exec.stream, B * p.N, p.C + 16,
                                         targets_fn(a, k, probs, p.px + k * B * p.N * 4, p.norm + k * B * p.N * 4));
      if (P == 0) return;  // no teacher predictions or no queries: no pairs, every query unmatched
      matching_cost(pipeline_cost(a, k, p), Mode::forward, inner);
      ops::linear_sum_assignment(pipeline_assignment(k, p), Mode::forward, inner);
      ::kdloss::detail::box_index_for<T>(dev, exec.stream, B * P, 1,
                                         PairsFn{p.row_ind + k * B * P, p.col_ind + k * B * P, P, p.Q, p.N,
                                                 p.pred + k * B * P, p.target + k * B * P});
    });
  }
  const auto slot = [&](int term, std::int64_t k) { return View<T>(p.slots + term * K + k, Dims{}, Dims{}, dev); };
  for (std::int64_t k = 0; k < K; ++k) {
    query_prior_detail::in_layer(fn, k, [&] {
      MatchedClassLossArgs<T> c = pipeline_class(a, k, p);
      if (writes_value(mode)) c.out = slot(0, k);
      c.grad_out = present(a.grad_out_cls) ? a.grad_out_cls : a.grad_out;
      c.grad_logits = writes_gradients(mode) ? layer(a.grad_student_logits, k) : View<T>{};
      if (writes_value(mode) || present(c.grad_logits))
        matched_class_loss(c, present(c.grad_logits) ? mode : Mode::forward, inner);
      MatchedBoxLossArgs<T> bx = pipeline_boxes(a, k, p);
      if (writes_value(mode)) bx.out_l1 = slot(1, k), bx.out_giou = slot(2, k);
      bx.grad_out_l1 = present(a.grad_out_l1) ? a.grad_out_l1 : a.grad_out;
      bx.grad_out_giou = present(a.grad_out_giou) ? a.grad_out_giou : a.grad_out;
      bx.grad_pred_boxes = writes_gradients(mode) ? layer(a.grad_student_boxes, k) : View<T>{};
      if (writes_value(mode) || present(bx.grad_pred_boxes))
        matched_box_loss(bx, present(bx.grad_pred_boxes) ? mode : Mode::forward, inner);
      if (writes_value(mode) && P > 0)
        ::kdloss::detail::box_index_for<T>(dev, exec.stream, 1, 1,
                                           FailedLayerFn<T>{p.status + k * B, B, p.slots + k, p.slots + K + k,
                                                            p.slots + 2 * K + k});
    });
  }
  if (!writes_value(mode)) return;
  const View<T>* outs[4] = {&a.out_cls, &a.out_l1, &a.out_giou, &a.out};
  for (int term = 0; term < 4; ++term) {  // out_* = the sum of the term's K layer values; out = all 3 K of them
    if (absent(*outs[term])) continue;
    const std::int64_t count = term == 3 ? 3 * K : K;
    ::kdloss::detail::reduce_into<acc_t<T>>(
        dev, exec.stream, Dims{count}, expr::Identity{},
        std::tuple{View<const T>(p.slots + (term == 3 ? 0 : term * K), Dims{count}, Dims{1}, dev)},
        View<T>(outs[term]->data, Dims{1}, Dims{1}, dev));
  }
}

}  // namespace logits_distill_detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
/// (A NaN cost is found by the call itself, before it writes anything.)
///
///   kdloss::detr::LogitsDistillationArgs<float> args;   // filled in as in LogitsDistillationArgs's example
///   kdloss::detr::logits_distillation_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void logits_distillation_loss_check(const LogitsDistillationArgs<T>& a, Mode mode) {
  namespace ld = logits_distill_detail;
  (void)mode_index(mode);  // a Mode outside the enum: an error before any layer runs (the fuzzer's finding)
  const char* fn = ld::kNames(mode);
  const ld::Checker ck{fn};
  ck.rank(a.student_logits, "student_logits", 4);
  ck.rank(a.teacher_logits, "teacher_logits", 4);
  ck.rank(a.student_boxes, "student_boxes", 4);
  ck.rank(a.teacher_boxes, "teacher_boxes", 4);
  ck.not_null(a.student_logits, "student_logits");
  ck.not_null(a.teacher_logits, "teacher_logits");
  ck.not_null(a.student_boxes, "student_boxes");
  ck.not_null(a.teacher_boxes, "teacher_boxes");
  const Dims& s = a.student_logits.shape;
  const Dims& t = a.teacher_logits.shape;
  ld::require(t[0] == s[0] && t[1] == s[1] && t[3] == s[3], fn, ": arguments 'student_logits' ", s.str(),
              " and 'teacher_logits' ", t.str(), " must agree in layers, batch and classes ([K, B, Q, C] and [K, B, N, C])");
  ld::require(a.student_boxes.shape == Dims{s[0], s[1], s[2], 4}, fn, ": argument 'student_boxes' has shape ",
              a.student_boxes.shape.str(), " but expected ", Dims{s[0], s[1], s[2], 4}.str(), " (normalised cxcywh)");
  ld::require(a.teacher_boxes.shape == Dims{t[0], t[1], t[2], 4}, fn, ": argument 'teacher_boxes' has shape ",
              a.teacher_boxes.shape.str(), " but expected ", Dims{t[0], t[1], t[2], 4}.str(), " (normalised cxcywh)");
  ld::require(present(a.sizes), fn, ": argument 'sizes' is absent; pass each image's (height, width) [B, 2]");
  ck.not_null(a.sizes, "sizes");
  ck.shape(a.sizes, "sizes", Dims{s[1], 2});
  const auto& o = a.options;
  ld::require(std::isfinite(o.class_weight) && std::isfinite(o.l1_weight) && std::isfinite(o.giou_weight) &&
                  std::isfinite(o.num_pos) && std::isfinite(o.giou_eps) && o.giou_eps >= 0,
              fn, ": options 'class_weight', 'l1_weight', 'giou_weight', 'num_pos' and 'giou_eps' must be finite");
  using Split = LogitsDistillationOptions::Split;
  using Neg = LogitsDistillationOptions::NegativeClass;
  ld::require(o.split == Split::none || o.split == Split::score_threshold, fn, ": option 'split' is ",
              static_cast<int>(o.split), ", not none or score_threshold");
  ld::require(o.negative_class == Neg::background || o.negative_class == Neg::teacher_soft ||
                  o.negative_class == Neg::none,
              fn, ": option 'negative_class' is ", static_cast<int>(o.negative_class),
              ", not background, teacher_soft or none");
  ld::require(o.split == Split::none || std::isfinite(o.score_threshold), fn, ": option 'score_threshold' is ",
              o.score_threshold, " but must be finite");
  const Device dev = a.student_logits.device;
  ck.device(a.teacher_logits, "teacher_logits", dev);
  ck.device(a.student_boxes, "student_boxes", dev);
  ck.device(a.teacher_boxes, "teacher_boxes", dev);
  ck.device(a.sizes, "sizes", dev);
  ::kdloss::detail::require_backend<T>(fn, dev);
  // the GPU runs the official code's form (every size known before the call), at most kMaxGpuImages images
  ld::require(o.split == Split::none || dev.is_host(), fn, ": option 'split' score_threshold runs on the host only "
              "(its problem sizes depend on the teacher's scores) but the views are on ", dev.str());
  ld::require(dev.is_host() || s[1] <= cost_detail::kMaxGpuImages, fn, ": argument 'student_logits' ", s.str(),
              " holds ", s[1], " images on ", dev.str(), "; the GPU call takes at most ", cost_detail::kMaxGpuImages);
  const View<T>* outs[4] = {&a.out_cls, &a.out_l1, &a.out_giou, &a.out};
  const View<const T>* ups[4] = {&a.grad_out_cls, &a.grad_out_l1, &a.grad_out_giou, &a.grad_out};
  const char* out_names[4] = {"out_cls", "out_l1", "out_giou", "out"};
  const char* up_names[4] = {"grad_out_cls", "grad_out_l1", "grad_out_giou", "grad_out"};
  const View<const T>* ins[5] = {&a.student_logits, &a.student_boxes, &a.teacher_logits, &a.teacher_boxes, &a.sizes};
  const char* in_names[5] = {"student_logits", "student_boxes", "teacher_logits", "teacher_boxes", "sizes"};
  if (writes_value(mode))
    ld::require(present(a.out) || present(a.out_cls) || present(a.out_l1) || present(a.out_giou), fn,
                ": no output: pass 'out' and/or 'out_cls', 'out_l1', 'out_giou'");
  for (int k = 0; k < 4; ++k) {
    if (writes_value(mode) && present(*outs[k])) {
      ck.scalar_output(*outs[k], out_names[k]);
      ck.device(*outs[k], out_names[k], dev);
      for (int j = 0; j < 5; ++j) ck.disjoint(*outs[k], out_names[k], *ins[j], in_names[j]);
      for (int j = 0; j < k; ++j) ck.disjoint(*outs[k], out_names[k], *outs[j], out_names[j]);
    }
    if (mode == Mode::backward && k < 3)
      ld::require(present(*ups[k]) || present(a.grad_out), fn, ": mode backward reads '", up_names[k],
                  "' (or 'grad_out') but both are absent");
    if (mode == Mode::backward && present(*ups[k])) ck.scalar_output(*ups[k], up_names[k]);
  }
  if (writes_gradients(mode)) {
    const View<T>* gs[2] = {&a.grad_student_logits, &a.grad_student_boxes};
    const char* g_names[2] = {"grad_student_logits", "grad_student_boxes"};
    const Dims shapes[2] = {a.student_logits.shape, a.student_boxes.shape};
    for (int g = 0; g < 2; ++g) {
      if (absent(*gs[g])) continue;
      ck.not_null(*gs[g], g_names[g]);
      ck.shape(*gs[g], g_names[g], shapes[g]);
      ck.device(*gs[g], g_names[g], dev);
      ck.unique(*gs[g], g_names[g]);
      for (int j = 0; j < 5; ++j) ck.disjoint(*gs[g], g_names[g], *ins[j], in_names[j]);
      for (int j = 0; j < 4; ++j) {
        if (writes_value(mode)) ck.disjoint(*gs[g], g_names[g], *outs[j], out_names[j]);
        if (mode == Mode::backward) ck.disjoint(*gs[g], g_names[g], *ups[j], up_names[j]);
      }
    }
    ck.disjoint(a.grad_student_logits, "grad_student_logits", a.grad_student_boxes, "grad_student_boxes");
  }
}

/// Workspace bytes: 0 on the host (the call allocates its buffers: a NaN cost then leaves every caller buffer
/// untouched); on the GPU every layer's targets, assignment and pairs, one cost matrix, the per-layer values and
/// the inner entries' workspace.
///
///   kdloss::detr::LogitsDistillationArgs<float> args;   // filled in as in LogitsDistillationArgs's example
///   std::size_t bytes = kdloss::detr::logits_distillation_loss_workspace_bytes(args);
template <class T>
std::size_t logits_distillation_loss_workspace_bytes(const LogitsDistillationArgs<T>& a) {
  logits_distillation_loss_check(a, Mode::forward);
  if (a.options.split != LogitsDistillationOptions::Split::none) return 0;  // (the split's buffers: the call's own)
  return distill_detail::running_scratch_bytes(a.student_logits.device,
                                               logits_distill_detail::pipeline<T>(a).total);
}

/// Checks, matches every layer (costs + scipy-exact assignment), then runs the losses: forward writes the
/// three sums, backward reads the three upstream gradients, forward_backward both.
///
///   kdloss::detr::LogitsDistillationArgs<float> args;   // filled in as in LogitsDistillationArgs's example
///   kdloss::detr::logits_distillation_loss(args, kdloss::Mode::forward_backward);
template <class T>
void logits_distillation_loss(const LogitsDistillationArgs<T>& a, Mode mode, const Exec& exec = {}) {
  namespace ld = logits_distill_detail;
  const char* fn = ld::kNames(mode);
  logits_distillation_loss_check(a, mode);
  const auto& o = a.options;
  if (o.split == LogitsDistillationOptions::Split::none) {  // the official code's form: one pass, host or GPU
    ld::run_pipeline(a, mode, exec);
    return;
  }
  // the split (host only): its problem sizes depend on the teacher's scores
  const std::int64_t K = a.student_logits.shape[0];
  std::vector<ld::Layer<T>> layers(static_cast<std::size_t>(K));
  // phase 1: every layer's matching (a NaN cost throws here, before any output is written)
  for (std::int64_t k = 0; k < K; ++k)  // (the assignment itself runs the images in parallel)
    query_prior_detail::in_layer(fn, k, [&] { ld::match(a, k, layers[static_cast<std::size_t>(k)]); });
  // phase 2: the element losses per layer
  double sums[3] = {0, 0, 0};
  const bool none_class = o.split == LogitsDistillationOptions::Split::score_threshold &&
                          o.negative_class == LogitsDistillationOptions::NegativeClass::none;
  for (std::int64_t k = 0; k < K; ++k) {
    auto& L = layers[static_cast<std::size_t>(k)];
    const std::int64_t B = a.student_logits.shape[1], N = a.teacher_logits.shape[2], C = a.teacher_logits.shape[3];
    T cls = T(0), l1 = T(0), giou = T(0);
    query_prior_detail::in_layer(fn, k, [&] {
      MatchedClassLossArgs<T> c;
      c.logits = ld::layer(a.student_logits, k);
      c.target_probs = host_view<const T>(L.probs.data(), {B * N, C});
      c.pred_rows = ld::idx(L.cls_pred);
      c.target_rows = ld::idx(L.cls_target);
      c.options.kind = MatchedClassLossOptions::Kind::soft_bce;
      c.options.weight = o.class_weight;
      c.options.normalizer = Normalizer::mmdet_num_pos();
      const View<T> gl = writes_gradients(mode) ? ld::layer(a.grad_student_logits, k) : View<T>{};
      if (writes_value(mode)) c.out = host_scalar(&cls);
      c.grad_out = present(a.grad_out_cls) ? a.grad_out_cls : a.grad_out;
      c.grad_logits = gl;
      if (writes_value(mode) || present(gl)) matched_class_loss(c, present(gl) ? mode : Mode::forward, exec);
      if (none_class && (writes_value(mode) || present(gl))) {
        // matched negatives carry no class term: remove what matched_class_loss counted for them (target 0)
        const double div = Normalizer::mmdet_num_pos().divisor(static_cast<std::int64_t>(L.cls_pred.size()));
        double removed = 0;
        for (std::size_t p = L.cls_pred.size(); p < L.box_pred.size(); ++p) {
          const std::int64_t r = L.box_pred[p], bb = r / c.logits.shape[1], q = r % c.logits.shape[1];
          for (std::int64_t cc = 0; cc < C; ++cc) {
            const double z = static_cast<double>(*distill_detail::at(c.logits, bb, q, cc));
            removed += std::max(z, 0.0) + std::log1p(std::exp(-std::fabs(z)));
            if (present(gl)) *distill_detail::at(gl, bb, q, cc) = T(0);
          }
        }
        cls = static_cast<T>(static_cast<double>(cls) - o.class_weight * removed / div);
      }
      MatchedBoxLossArgs<T> bx;
      bx.pred_boxes = ld::layer(a.student_boxes, k);
      bx.target_boxes = host_view<const T>(L.norm.data(), {B * N, 4});
      bx.pred_rows = ld::idx(L.box_pred);
      bx.target_rows = ld::idx(L.box_target);
      bx.sizes = a.sizes;
      bx.options.l1_weight = o.l1_weight;
      bx.options.giou_weight = o.giou_weight;
      bx.options.eps = o.giou_eps;
      bx.options.normalizer = Normalizer::mmdet_avg_factor(o.num_pos > 0 ? o.num_pos
                                                                          : static_cast<double>(L.box_pred.size()));
      const View<T> gb = writes_gradients(mode) ? ld::layer(a.grad_student_boxes, k) : View<T>{};
      if (writes_value(mode)) bx.out_l1 = host_scalar(&l1), bx.out_giou = host_scalar(&giou);
      bx.grad_out_l1 = present(a.grad_out_l1) ? a.grad_out_l1 : a.grad_out;
      bx.grad_out_giou = present(a.grad_out_giou) ? a.grad_out_giou : a.grad_out;
      bx.grad_pred_boxes = gb;
      if (writes_value(mode) || present(gb)) matched_box_loss(bx, present(gb) ? mode : Mode::forward, exec);
    });
    sums[0] += static_cast<double>(cls);
    sums[1] += static_cast<double>(l1);
    sums[2] += static_cast<double>(giou);
  }
  if (writes_value(mode)) {
    if (present(a.out_cls)) *a.out_cls.data = static_cast<T>(sums[0]);
    if (present(a.out_l1)) *a.out_l1.data = static_cast<T>(sums[1]);
    if (present(a.out_giou)) *a.out_giou.data = static_cast<T>(sums[2]);
    if (present(a.out)) *a.out.data = static_cast<T>(sums[0] + sums[1] + sums[2]);
  }
}

/// Thin wrapper: the three sums.
///
///   kdloss::detr::logits_distillation_loss_forward(args);   // args as in LogitsDistillationArgs's example
template <class T>
void logits_distillation_loss_forward(const LogitsDistillationArgs<T>& args, const Exec& exec = {}) {
  logits_distillation_loss(args, Mode::forward, exec);
}

/// Thin wrapper: the upstream-scaled gradients (recomputes the matching).
///
///   kdloss::detr::logits_distillation_loss_backward(args);   // args with the grad_out_* and the gradients
template <class T>
void logits_distillation_loss_backward(const LogitsDistillationArgs<T>& args, const Exec& exec = {}) {
  logits_distillation_loss(args, Mode::backward, exec);
}

/// Thin wrapper: the sums and the gradients in one call.
///
///   kdloss::detr::logits_distillation_loss_forward_backward(args);
template <class T>
void logits_distillation_loss_forward_backward(const LogitsDistillationArgs<T>& args, const Exec& exec = {}) {
  logits_distillation_loss(args, Mode::forward_backward, exec);
}

}  // namespace detr
} }  // namespace kdloss
