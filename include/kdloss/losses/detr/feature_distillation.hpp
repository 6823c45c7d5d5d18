// kdloss/losses/detr/feature_distillation.hpp: DETRDistill's target-aware feature distillation as the official
// code runs it (losses.md 4.3, Distiller.forward_train). For each teacher decoder layer k and image b:
//
//   1. top-k (100) of the teacher's sigmoid scores s [Q x C] flattened to Q*C (query, class) pairs, in
//      torch.topk's CPU order (ties included); queries may repeat. Pair n: query q_n = idx / C, score s_n.
//   2. quality z_n = s_n * max_g IoU(box_{q_n}, gt_g)   (mmdet bbox_overlaps 'iou', eps 1e-6; pixel xyxy)
//      z_n = s_n when the image has no ground truth.
//   3. e_n = E_k[q_n] / max(||E_k[q_n]||, 1e-12)  (the teacher's layer-k query embedding, normalised)
//   4. per neck level l: Fh = F^T / max(||F^T||_channel, 1e-12);  m[h,w] = max(sum_n z_n <e_n, Fh[:,h,w]>, 0.01);
//      Psi = m / max_{h,w} m
//   5. L = sum_k sum_l mean_{b,c,h,w} (Psi * F^T - Psi * F^S)^2
//
// Gradient: dL/dF^S = sum_k 2 Psi_k^2 (F^S - F^T) / numel_l, to the student features only (Psi, the
// teacher tensors, the scores and the boxes are constants).
//
// How it stays small and fast: sum_n z_n <e_n, Fh> = <w, Fh> with w = sum_n z_n e_n, so the [100, H, W]
// similarity never exists; one pass over F^T per level gives every layer's m (K dot products per
// position), and the layers only enter the loss through A = sum_k Psi_k^2, so one pass over (F^T, F^S)
// gives the value and the gradient. Workspace: B*K*H*W doubles of the largest level, no copy of a map.
//
// Entry shape (core/entry.hpp): TargetAwareFeatureArgs, target_aware_feature_loss_check,
// target_aware_feature_loss_workspace_bytes, target_aware_feature_loss(args, mode, exec) and the wrappers.
// Host (float, double) only in this version. No reserve: backward recomputes the mask (it is cheap).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/ragged.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/losses/detr/distill_detail.hpp"

namespace kdloss {
namespace detr {

/// Options of target_aware_feature_loss (the code's values by default).
struct TargetAwareFeatureOptions {
  std::int64_t topk = 100;    // test_cfg.max_per_img; 1 <= topk <= Q * C
  double mask_min = 0.01;     // m = clamp(., min = mask_min); > 0
  double norm_eps = 1e-12;    // F.normalize's eps (queries and feature channels)
  double iou_eps = 1e-6;      // mmdet bbox_overlaps eps (union = max(union, eps))
  double weight = 1.0;        // loss weight (the code: 1); finite
};

/// The arguments of one target_aware_feature_loss call (all layers, all levels).
/// - teacher_scores [K, B, Q, C]: the teacher's SIGMOID scores per decoder layer (not logits).
/// - teacher_boxes [K, B, Q, 4]: the teacher's predicted boxes, pixel xyxy (x2 >= x1, y2 >= y1), not clamped.
/// - teacher_queries [K, B, Q, D]: the teacher decoder's layer-k outputs (query embeddings).
/// - gt_boxes [G, 4]: the ground truth of all images packed, pixel xyxy; gt_images: B + 1 int64 offsets
///   (core/ragged.hpp) in host memory; an image without ground truth is legal (z = score).
/// - teacher_features, student_features: one [B, D, H_l, W_l] view per neck level (any strides), the same
///   count and shapes on both sides.
/// - out: one element (forward, forward_backward); grad_out: one element (backward).
/// - grad_student_features: optional, empty or one view per level (the student's shapes).
///
///   const std::int64_t K = 6, B = 2, Q = 300, C = 80, D = 256;
///   std::vector<float> scores(K * B * Q * C, 0.5f), boxes(K * B * Q * 4), queries(K * B * Q * D, 0.1f);
///   for (std::size_t i = 0; i < boxes.size(); i += 4) boxes[i + 2] = boxes[i + 3] = 20.0f;   // [0, 0, 20, 20]
///   std::vector<float> gt = {0, 0, 10, 10, 5, 5, 30, 40};
///   std::vector<std::int64_t> offsets = {0, 2, 2};                                    // image 1: no GT
///   std::vector<float> ft(B * D * 25 * 42, 1.0f), fs(ft.size(), 0.5f), gs(ft.size());
///   float loss = 0;
///   kdloss::detr::TargetAwareFeatureArgs<float> args;
///   args.teacher_scores = kdloss::host_view<const float>(scores.data(), {K, B, Q, C});
///   args.teacher_boxes = kdloss::host_view<const float>(boxes.data(), {K, B, Q, 4});
///   args.teacher_queries = kdloss::host_view<const float>(queries.data(), {K, B, Q, D});
///   args.gt_boxes = kdloss::host_view<const float>(gt.data(), {2, 4});
///   args.gt_images = kdloss::Segments<std::int64_t>{kdloss::host_view<const std::int64_t>(offsets.data(), {3})};
///   args.teacher_features = {kdloss::host_view<const float>(ft.data(), {B, D, 25, 42})};   // one level here
///   args.student_features = {kdloss::host_view<const float>(fs.data(), {B, D, 25, 42})};
///   args.grad_student_features = {kdloss::host_view(gs.data(), {B, D, 25, 42})};
///   args.out = kdloss::host_scalar(&loss);
///   kdloss::detr::target_aware_feature_loss(args, kdloss::Mode::forward_backward);
template <class T>
struct TargetAwareFeatureArgs {
  View<const T> teacher_scores{};
  View<const T> teacher_boxes{};
  View<const T> teacher_queries{};
  View<const T> gt_boxes{};
  Segments<std::int64_t> gt_images{};
  std::vector<View<const T>> teacher_features{};
  std::vector<View<const T>> student_features{};
  View<T> out{};
  View<const T> grad_out{};
  std::vector<View<T>> grad_student_features{};
  TargetAwareFeatureOptions options{};
};

namespace feature_distill_detail {
using namespace distill_detail;

inline constexpr EntryNames kNames{"kdloss::detr::target_aware_feature_loss",
                                   "kdloss::detr::target_aware_feature_loss_backward",
                                   "kdloss::detr::target_aware_feature_loss_forward_backward"};

/// torch.topk(k, largest=True, sorted=True) on the CPU (ATen TopKImpl.h): (value, index) pairs ordered by
/// the comparator "x is NaN and y is not, or x > y", through std::partial_sort when k * 64 <= n, else
/// std::nth_element then std::sort of the first k - 1. The same std algorithms on the same initial order
/// give torch's order on ties. Writes the k indices.
inline void torch_topk(std::vector<std::pair<double, std::int64_t>>& queue, std::int64_t k, std::int64_t* idx) {
  using E = std::pair<double, std::int64_t>;
  const auto comp = [](const E& x, const E& y) {
    return (std::isnan(x.first) && !std::isnan(y.first)) || (x.first > y.first);
  };
  const auto n = static_cast<std::int64_t>(queue.size());
  if (k * 64 <= n) {
    std::partial_sort(queue.begin(), queue.begin() + k, queue.end(), comp);
  } else {
    std::nth_element(queue.begin(), queue.begin() + (k - 1), queue.end(), comp);
    std::sort(queue.begin(), queue.begin() + (k - 1), comp);
  }
  for (std::int64_t i = 0; i < k; ++i) idx[i] = queue[static_cast<std::size_t>(i)].second;
}

/// max_g IoU(box, gt_g) in mmdet's bbox_overlaps(mode='iou', eps) form, pixel xyxy. (The pairwise IoU of
/// ops/boxes.hpp computes the same; this one-row form keeps the loss independent of it.)
template <class T>
double max_iou(const T* box, const View<const T>& gt, std::int64_t g0, std::int64_t g1, double eps) {
  const double x1 = box[0], y1 = box[1], x2 = box[2], y2 = box[3];
  const double a1 = (x2 - x1) * (y2 - y1);
  double best = -std::numeric_limits<double>::infinity();
  bool nan = false;
  for (std::int64_t g = g0; g < g1; ++g) {
    const double gx1 = *at(gt, g, 0), gy1 = *at(gt, g, 1), gx2 = *at(gt, g, 2), gy2 = *at(gt, g, 3);
    const double a2 = (gx2 - gx1) * (gy2 - gy1);
    const double w = std::max(std::min(x2, gx2) - std::max(x1, gx1), 0.0);
    const double h = std::max(std::min(y2, gy2) - std::max(y1, gy1), 0.0);
    const double inter = w * h;
    const double iou = inter / std::max(a1 + a2 - inter, eps);
    nan = nan || std::isnan(iou);
    best = std::max(best, iou);
  }
  return nan ? std::numeric_limits<double>::quiet_NaN() : best;
}

template <class T>
void check_inputs(const TargetAwareFeatureArgs<T>& a, const char* fn) {
  const Checker ck{fn};
  ck.rank(a.teacher_scores, "teacher_scores", 4);
  ck.not_null(a.teacher_scores, "teacher_scores");
  const Dims& ss = a.teacher_scores.shape;
  const std::int64_t K = ss[0], B = ss[1], Q = ss[2], C = ss[3];
  require(K >= 1 && B >= 1 && Q >= 1 && C >= 1, fn, ": argument 'teacher_scores' ", ss.str(),
          " must be [K, B, Q, C] with every extent >= 1");
  require(static_cast<double>(K) * static_cast<double>(B) * static_cast<double>(Q) * static_cast<double>(C) < 0x1p52,
          fn, ": argument 'teacher_scores' ", ss.str(), " is too large");
  ck.rank(a.teacher_boxes, "teacher_boxes", 4);
  ck.not_null(a.teacher_boxes, "teacher_boxes");
  require(a.teacher_boxes.shape == Dims{K, B, Q, 4}, fn, ": argument 'teacher_boxes' has shape ",
          a.teacher_boxes.shape.str(), " but expected ", Dims{K, B, Q, 4}.str(),
          " (pixel xyxy boxes of every layer's queries)");
  ck.rank(a.teacher_queries, "teacher_queries", 4);
  ck.not_null(a.teacher_queries, "teacher_queries");
  const std::int64_t D = a.teacher_queries.shape[3];
  require(a.teacher_queries.shape == Dims{K, B, Q, D} && D >= 1 &&
              static_cast<double>(K * B * Q) * static_cast<double>(D) < 0x1p52, fn, ": argument 'teacher_queries' has shape ",
          a.teacher_queries.shape.str(), " but expected [", K, ", ", B, ", ", Q, ", D] (D >= 1)");
  ck.rank(a.gt_boxes, "gt_boxes", 2);
  ck.not_null(a.gt_boxes, "gt_boxes");
  require(a.gt_boxes.shape[1] == 4, fn, ": argument 'gt_boxes' has shape ", a.gt_boxes.shape.str(),
          " but expected [G, 4] (pixel xyxy)");
  ::kdloss::detail::check_segments(ck, a.gt_images, "gt_images", a.gt_boxes.shape[0]);
  require(a.gt_images.count() == B, fn, ": argument 'gt_images' describes ", a.gt_images.count(),
          " images but 'teacher_scores' ", ss.str(), " has B = ", B);
  const Device dev = a.teacher_scores.device;
  ck.device(a.teacher_boxes, "teacher_boxes", dev);
  ck.device(a.teacher_queries, "teacher_queries", dev);
  ck.device(a.gt_boxes, "gt_boxes", dev);
  require_host<T>(fn, dev);
  const auto& o = a.options;
  require(o.topk >= 1 && o.topk <= Q * C, fn, ": option 'topk' is ", o.topk, " but must be in [1, Q * C = ", Q * C,
          "] for 'teacher_scores' ", ss.str());
  require(std::isfinite(o.mask_min) && o.mask_min > 0, fn, ": option 'mask_min' is ", o.mask_min,
          " but must be finite and > 0");
  require(std::isfinite(o.norm_eps) && o.norm_eps > 0, fn, ": option 'norm_eps' is ", o.norm_eps,
          " but must be finite and > 0");
  require(std::isfinite(o.iou_eps) && o.iou_eps >= 0, fn, ": option 'iou_eps' is ", o.iou_eps,
          " but must be finite and >= 0");
  require(std::isfinite(o.weight), fn, ": option 'weight' is ", o.weight, " but must be finite");
  // the levels
  require(!a.teacher_features.empty(), fn, ": argument 'teacher_features' holds no level");
  require(a.student_features.size() == a.teacher_features.size(), fn, ": argument 'student_features' holds ",
          a.student_features.size(), " levels but 'teacher_features' holds ", a.teacher_features.size());
  for (std::size_t l = 0; l < a.teacher_features.size(); ++l) {
    const std::string tn = "teacher_features[" + std::to_string(l) + "]";
    const std::string sn = "student_features[" + std::to_string(l) + "]";
    const auto& ft = a.teacher_features[l];
    const auto& fs = a.student_features[l];
    ck.rank(ft, tn.c_str(), 4);
    ck.not_null(ft, tn.c_str());
    ck.not_null(fs, sn.c_str());
    ck.same_shape(ft, tn.c_str(), fs, sn.c_str());
    require(ft.shape[0] == B && ft.shape[1] == D, fn, ": argument '", tn, "' has shape ", ft.shape.str(),
            " but expected [B = ", B, ", D = ", D, ", H, W] (D: the query embedding's width)");
    require(ft.shape[2] * ft.shape[3] >= 1, fn, ": argument '", tn, "' ", ft.shape.str(), " has no position");
    ck.device(ft, tn.c_str(), dev);
    ck.device(fs, sn.c_str(), dev);
    const double hw = static_cast<double>(ft.shape[2]) * static_cast<double>(ft.shape[3]);
    require(hw * static_cast<double>(B) * static_cast<double>(std::max(K, D) + 1) < 0x1p52, fn, ": argument '", tn,
            "' ", ft.shape.str(), " is too large for the mask buffers of ", K, " layers");
  }
}

/// The box VALUES (the checks above read only metadata): xyxy means x2 >= x1 and y2 >= y1 (a cxcywh box
/// usually breaks it); NaN passes (it propagates). Run by the call after the check, before any write.
template <class T>
void check_box_values(const TargetAwareFeatureArgs<T>& a, const char* fn) {
  const std::int64_t K = a.teacher_scores.shape[0], B = a.teacher_scores.shape[1], Q = a.teacher_scores.shape[2];
  for (std::int64_t g = 0; g < a.gt_boxes.shape[0]; ++g) {
    const double x1 = *at(a.gt_boxes, g, 0), y1 = *at(a.gt_boxes, g, 1), x2 = *at(a.gt_boxes, g, 2),
                 y2 = *at(a.gt_boxes, g, 3);
    require(!(x2 < x1) && !(y2 < y1), fn, ": argument 'gt_boxes' row ", g, " = [", x1, ", ", y1, ", ", x2, ", ", y2,
            "] is not an xyxy box (x2 < x1 or y2 < y1); pass pixel xyxy boxes");
  }
  for (std::int64_t k = 0; k < K; ++k)
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t q = 0; q < Q; ++q) {
        const T* p = at(a.teacher_boxes, k, b, q, 0);
        const std::int64_t s = a.teacher_boxes.strides[3];
        require(!(p[2 * s] < p[0]) && !(p[3 * s] < p[s]), fn, ": argument 'teacher_boxes' [", k, ", ", b, ", ", q,
                "] = [", p[0], ", ", p[s], ", ", p[2 * s], ", ", p[3 * s],
                "] is not an xyxy box (x2 < x1 or y2 < y1); pass pixel xyxy boxes");
      }
}

/// Per (layer, image): w = sum_n z_n e_n ([K, B, D] doubles).
template <class T>
void weighted_queries(const TargetAwareFeatureArgs<T>& a, double* w) {
  const Dims& ss = a.teacher_scores.shape;
  const std::int64_t K = ss[0], B = ss[1], Q = ss[2], C = ss[3], D = a.teacher_queries.shape[3];
  const auto& o = a.options;
  each(K * B, Q * C, [&](std::int64_t kb) {
    const std::int64_t k = kb / B, b = kb % B;
    std::vector<std::pair<double, std::int64_t>> queue(static_cast<std::size_t>(Q * C));
    const std::int64_t sq = a.teacher_scores.strides[2], sc = a.teacher_scores.strides[3];
    const T* s0 = at(a.teacher_scores, k, b, 0, 0);
    for (std::int64_t q = 0; q < Q; ++q)
      for (std::int64_t c = 0; c < C; ++c)
        queue[static_cast<std::size_t>(q * C + c)] = {static_cast<double>(s0[q * sq + c * sc]), q * C + c};
    std::vector<std::int64_t> idx(static_cast<std::size_t>(o.topk));
    torch_topk(queue, o.topk, idx.data());
    // queue[0..topk) holds the selected (score, index) pairs in torch's order
    double* wk = w + kb * D;
    std::fill(wk, wk + D, 0.0);
    const std::int64_t g0 = a.gt_images.begin(b), g1 = a.gt_images.end(b);
    const std::int64_t sd = a.teacher_queries.strides[3], bs = a.teacher_boxes.strides[3];
    for (std::int64_t n = 0; n < o.topk; ++n) {
      const double score = queue[static_cast<std::size_t>(n)].first;
      const std::int64_t q = idx[static_cast<std::size_t>(n)] / C;
      double z = score;
      if (g1 > g0) {
        const T* bp = at(a.teacher_boxes, k, b, q, 0);
        const T box[4] = {bp[0], bp[bs], bp[2 * bs], bp[3 * bs]};
        z = score * max_iou(box, a.gt_boxes, g0, g1, o.iou_eps);
      }
      const T* e = at(a.teacher_queries, k, b, q, 0);
      double ss2 = 0;
      for (std::int64_t d = 0; d < D; ++d) ss2 += static_cast<double>(e[d * sd]) * static_cast<double>(e[d * sd]);
      const double scale = z / std::max(std::sqrt(ss2), o.norm_eps);
      for (std::int64_t d = 0; d < D; ++d) wk[d] += scale * static_cast<double>(e[d * sd]);
    }
  });
}

inline constexpr std::int64_t kChunk = 512;  // positions per task

/// The largest B * K * H * W over the levels (the per-level mask buffer) plus the [K, B, D] query sums.
template <class T>
std::size_t workspace_bytes(const TargetAwareFeatureArgs<T>& a) {
  const Dims& ss = a.teacher_scores.shape;
  const std::int64_t K = ss[0], B = ss[1], D = a.teacher_queries.shape[3];
  std::int64_t hw = 0, chunks = 0;
  for (const auto& f : a.teacher_features) {
    hw = std::max(hw, f.shape[2] * f.shape[3]);
    chunks = std::max(chunks, B * ((f.shape[2] * f.shape[3] + kChunk - 1) / kChunk));
  }
  ::kdloss::detail::Carver c(nullptr);
  c.take<double>(static_cast<std::size_t>(K * B * D));      // w
  c.take<double>(static_cast<std::size_t>(B * K * hw));     // m, then A
  c.take<double>(static_cast<std::size_t>(B * K));          // max m
  c.take<double>(static_cast<std::size_t>(chunks));         // loss partials
  return c.bytes();
}

}  // namespace feature_distill_detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
/// Reads the metadata and the gt_images offsets only: the call itself then checks the box values (pixel
/// xyxy: x2 >= x1, y2 >= y1), still before it writes anything.
///
///   kdloss::detr::TargetAwareFeatureArgs<float> args;   // filled in as in TargetAwareFeatureArgs's example
///   kdloss::detr::target_aware_feature_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void target_aware_feature_loss_check(const TargetAwareFeatureArgs<T>& a, Mode mode) {
  namespace fd = feature_distill_detail;
  const char* fn = fd::kNames(mode);
  const fd::Checker ck{fn};
  fd::check_inputs(a, fn);
  const Device dev = a.teacher_scores.device;
  std::vector<std::pair<View<const T>, std::string>> ins = {
      {a.teacher_scores, "teacher_scores"}, {a.teacher_boxes, "teacher_boxes"},
      {a.teacher_queries, "teacher_queries"}, {a.gt_boxes, "gt_boxes"}};
  for (std::size_t l = 0; l < a.teacher_features.size(); ++l) {
    ins.push_back({a.teacher_features[l], "teacher_features[" + std::to_string(l) + "]"});
    ins.push_back({a.student_features[l], "student_features[" + std::to_string(l) + "]"});
  }
  if (mode == Mode::backward) {
    fd::require(present(a.grad_out), fn, ": mode backward reads 'grad_out' but it is absent");
    ck.scalar_output(a.grad_out, "grad_out");
    ck.device(a.grad_out, "grad_out", dev);
    ins.push_back({a.grad_out, "grad_out"});
  }
  if (writes_value(mode)) {
    ck.scalar_output(a.out, "out");
    ck.device(a.out, "out", dev);
    for (const auto& in : ins) ck.disjoint(a.out, "out", in.first, in.second.c_str());
  }
  if (writes_gradients(mode) && !a.grad_student_features.empty()) {
    fd::require(a.grad_student_features.size() == a.student_features.size(), fn,
                ": argument 'grad_student_features' holds ", a.grad_student_features.size(), " levels but ",
                "'student_features' holds ", a.student_features.size(), " (pass none or one per level)");
    for (std::size_t l = 0; l < a.grad_student_features.size(); ++l) {
      const auto& g = a.grad_student_features[l];
      if (absent(g)) continue;
      const std::string gn = "grad_student_features[" + std::to_string(l) + "]";
      ck.not_null(g, gn.c_str());
      ck.shape(g, gn.c_str(), a.student_features[l].shape);
      ck.device(g, gn.c_str(), dev);
      ck.unique(g, gn.c_str());
      for (const auto& in : ins) ck.disjoint(g, gn.c_str(), in.first, in.second.c_str());
      if (writes_value(mode)) ck.disjoint(g, gn.c_str(), a.out, "out");
      for (std::size_t j = 0; j < l; ++j)
        if (present(a.grad_student_features[j]))
          ck.disjoint(g, gn.c_str(), a.grad_student_features[j],
                      ("grad_student_features[" + std::to_string(j) + "]").c_str());
    }
  }
}

/// Workspace bytes of target_aware_feature_loss (every mode): B*K*H*W doubles of the largest level, the
/// [K, B, D] weighted query sums and a few per-image scalars; never a copy of a feature map.
///
///   kdloss::detr::TargetAwareFeatureArgs<float> args;   // filled in as in TargetAwareFeatureArgs's example
///   std::size_t bytes = kdloss::detr::target_aware_feature_loss_workspace_bytes(args);
template <class T>
std::size_t target_aware_feature_loss_workspace_bytes(const TargetAwareFeatureArgs<T>& a) {
  feature_distill_detail::check_inputs(a, "kdloss::detr::target_aware_feature_loss_workspace_bytes");
  return feature_distill_detail::workspace_bytes(a);
}

/// Checks, then runs. forward: out = weight * sum_k sum_l MSE(Psi F^T, Psi F^S). backward (reads grad_out;
/// recomputes the mask): grad_out * dL/dF^S into the present grad_student_features. forward_backward: both
/// in one pass over the maps. Sums run in a fixed order (the bits do not depend on the thread count).
///
///   kdloss::detr::TargetAwareFeatureArgs<float> args;   // filled in as in TargetAwareFeatureArgs's example
///   kdloss::detr::target_aware_feature_loss(args, kdloss::Mode::forward_backward);
template <class T>
void target_aware_feature_loss(const TargetAwareFeatureArgs<T>& a, Mode mode, const Exec& exec = {}) {
  namespace fd = feature_distill_detail;
  const char* fn = fd::kNames(mode);
  target_aware_feature_loss_check(a, mode);
  fd::check_box_values(a, fn);
  const Dims& ss = a.teacher_scores.shape;
  const std::int64_t K = ss[0], B = ss[1], D = a.teacher_queries.shape[3];
  const auto& o = a.options;
  ::kdloss::detail::HostScratch host;
  const std::size_t need = fd::workspace_bytes(a);
  void* base = ::kdloss::detail::resolve_workspace(fn, a.teacher_scores.device, exec.workspace, need, host);
  ::kdloss::detail::Carver carver(base);
  std::int64_t hw_max = 0, chunks_max = 0;
  for (const auto& f : a.teacher_features) {
    hw_max = std::max(hw_max, f.shape[2] * f.shape[3]);
    chunks_max = std::max(chunks_max, B * ((f.shape[2] * f.shape[3] + fd::kChunk - 1) / fd::kChunk));
  }
  double* w = carver.take<double>(static_cast<std::size_t>(K * B * D));
  double* m = carver.take<double>(static_cast<std::size_t>(B * K * hw_max));
  double* mmax = carver.take<double>(static_cast<std::size_t>(B * K));
  double* partial = carver.take<double>(static_cast<std::size_t>(chunks_max));
  fd::weighted_queries(a, w);

  const bool want_grads = writes_gradients(mode) && !a.grad_student_features.empty();
  const double upstream = mode == Mode::backward ? static_cast<double>(*a.grad_out.data) : 1.0;
  double total = 0;
  for (std::size_t l = 0; l < a.teacher_features.size(); ++l) {
    const View<const T>& ft = a.teacher_features[l];
    const View<const T>& fs = a.student_features[l];
    const View<T> g = want_grads ? a.grad_student_features[l] : View<T>{};
    const std::int64_t H = ft.shape[2], W = ft.shape[3], HW = H * W;
    const std::int64_t chunks = (HW + fd::kChunk - 1) / fd::kChunk;
    const double numel = static_cast<double>(B * D * HW);
    // pass 1 over F^T: m[b, k, p] = max(<w_kb, F^T[:, p]> / max(||F^T[:, p]||, eps), mask_min)
    fd::each(B * chunks, D * (K + 1) * fd::kChunk, [&](std::int64_t t) {
      const std::int64_t b = t / chunks, p0 = (t % chunks) * fd::kChunk, p1 = std::min(HW, p0 + fd::kChunk);
      const std::int64_t n = p1 - p0;
      std::int64_t off[fd::kChunk];
      double norm[fd::kChunk], vals[fd::kChunk];
      for (std::int64_t i = 0; i < n; ++i) off[i] = ((p0 + i) / W) * ft.strides[2] + ((p0 + i) % W) * ft.strides[3];
      std::fill(norm, norm + n, 0.0);
      for (std::int64_t k = 0; k < K; ++k) std::fill(m + (b * K + k) * HW + p0, m + (b * K + k) * HW + p1, 0.0);
      for (std::int64_t c = 0; c < D; ++c) {
        const T* row = ft.data + b * ft.strides[0] + c * ft.strides[1];
        for (std::int64_t i = 0; i < n; ++i) vals[i] = static_cast<double>(row[off[i]]);
        for (std::int64_t i = 0; i < n; ++i) norm[i] += vals[i] * vals[i];
        for (std::int64_t k = 0; k < K; ++k) {
          const double wc = w[(k * B + b) * D + c];
          double* mk = m + (b * K + k) * HW + p0;
          for (std::int64_t i = 0; i < n; ++i) mk[i] += wc * vals[i];
        }
      }
      for (std::int64_t k = 0; k < K; ++k) {
        double* mk = m + (b * K + k) * HW + p0;
        for (std::int64_t i = 0; i < n; ++i) {
          const double v = mk[i] / std::max(std::sqrt(norm[i]), o.norm_eps);
          mk[i] = std::isnan(v) ? v : std::max(v, o.mask_min);  // torch.clamp keeps NaN
        }
      }
    });
    // per (image, layer): the max of m (NaN wins, as torch.max)
    for (std::int64_t bk = 0; bk < B * K; ++bk) {
      const double* mk = m + bk * HW;
      double mx = -std::numeric_limits<double>::infinity();
      for (std::int64_t p = 0; p < HW; ++p) {
        if (std::isnan(mk[p])) mx = mk[p];
        else if (!std::isnan(mx)) mx = std::max(mx, mk[p]);
      }
      mmax[bk] = mx;
    }
    // A[b, p] = sum_k (m / max m)^2, kept in m's first layer slot
    fd::each(B, HW * K, [&](std::int64_t b) {
      double* a0 = m + b * K * HW;
      for (std::int64_t p = 0; p < HW; ++p) {
        double s = 0;
        for (std::int64_t k = 0; k < K; ++k) {
          const double psi = m[(b * K + k) * HW + p] / mmax[b * K + k];
          s += psi * psi;
        }
        a0[p] = s;
      }
    });
    // pass 2 over (F^T, F^S): sum A (F^T - F^S)^2, and dF^S = 2 A (F^S - F^T) * weight * upstream / numel
    const double gscale = 2.0 * o.weight * upstream / numel;
    fd::each(B * chunks, 2 * D * fd::kChunk, [&](std::int64_t t) {
      const std::int64_t b = t / chunks, p0 = (t % chunks) * fd::kChunk, p1 = std::min(HW, p0 + fd::kChunk);
      const double* A = m + b * K * HW;
      const std::int64_t n = p1 - p0;
      std::int64_t ot[fd::kChunk], os[fd::kChunk], og[fd::kChunk];
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t h = (p0 + i) / W, x = (p0 + i) % W;
        ot[i] = h * ft.strides[2] + x * ft.strides[3];
        os[i] = h * fs.strides[2] + x * fs.strides[3];
        og[i] = present(g) ? h * g.strides[2] + x * g.strides[3] : 0;
      }
      const double* Ap = A + p0;
      double s = 0;
      for (std::int64_t c = 0; c < D; ++c) {
        const T* tr = ft.data + b * ft.strides[0] + c * ft.strides[1];
        const T* sr = fs.data + b * fs.strides[0] + c * fs.strides[1];
        T* gr = present(g) ? g.data + b * g.strides[0] + c * g.strides[1] : nullptr;
        for (std::int64_t i = 0; i < n; ++i) {
          const double d = static_cast<double>(sr[os[i]]) - static_cast<double>(tr[ot[i]]);
          s += Ap[i] * d * d;
          if (gr) gr[og[i]] = static_cast<T>(gscale * Ap[i] * d);
        }
      }
      partial[t] = s;
    });
    double level = 0;
    for (std::int64_t t = 0; t < B * chunks; ++t) level += partial[t];
    total += level / numel;
  }
  if (writes_value(mode)) *a.out.data = static_cast<T>(o.weight * total);
}

/// Thin wrapper: the value.
///
///   kdloss::detr::target_aware_feature_loss_forward(args);   // args as in TargetAwareFeatureArgs's example
template <class T>
void target_aware_feature_loss_forward(const TargetAwareFeatureArgs<T>& args, const Exec& exec = {}) {
  target_aware_feature_loss(args, Mode::forward, exec);
}

/// Thin wrapper: grad_out times dL/dF^S into the present grad_student_features (recomputes the mask).
///
///   kdloss::detr::target_aware_feature_loss_backward(args);  // args with grad_out and the gradients
template <class T>
void target_aware_feature_loss_backward(const TargetAwareFeatureArgs<T>& args, const Exec& exec = {}) {
  target_aware_feature_loss(args, Mode::backward, exec);
}

/// Thin wrapper: the value and dL/dF^S in one call.
///
///   kdloss::detr::target_aware_feature_loss_forward_backward(args);
template <class T>
void target_aware_feature_loss_forward_backward(const TargetAwareFeatureArgs<T>& args, const Exec& exec = {}) {
  target_aware_feature_loss(args, Mode::forward_backward, exec);
}

}  // namespace detr
}  // namespace kdloss
