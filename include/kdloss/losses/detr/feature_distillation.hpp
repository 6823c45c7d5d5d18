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
// Float and double, host or GPU (one path through backend/dispatch: no host read-back on the GPU). The
// devices differ in two stated places: the top-k follows each device's torch.topk when equal scores straddle
// the k-th place (expr/topk.hpp), and a box that is not xyxy is rejected on the host (the call reads the
// values first) but gives a NaN loss on the GPU wherever the loss reads it (a ground-truth box always, a teacher
// box when one of its pairs is selected in an image with ground truth). No reserve: backward recomputes the mask.
#pragma once
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/backend/dispatch_boxes.hpp"
#include "kdloss/backend/dispatch_topk.hpp"
#include "kdloss/backend/dispatch_window.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/ragged.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/topk.hpp"
#include "kdloss/losses/detr/distill_detail.hpp"
#include "kdloss/losses/detr/matching_cost.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
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

inline constexpr std::int64_t kChunk = 512;  // positions per host task, and per partial maximum

/// std::min's argument rule (b < a ? b : a: a NaN first argument is kept), usable on the GPU, so the host keeps
/// its bits; math::min keeps the second argument instead. (math::max already is std::max's rule.)
KDLOSS_HOST_DEVICE inline double min_of(double a, double b) { return b < a ? b : a; }
using math::max;

/// Strided element access of a rank-4 view, copied into a functor.
template <class T>
struct Strided4 {
  const T* data = nullptr;
  std::int64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  Strided4() = default;
  explicit Strided4(const View<const T>& v) : data(v.data), s0(v.strides[0]), s1(v.strides[1]), s2(v.strides[2]), s3(v.strides[3]) {}
  KDLOSS_HOST_DEVICE const T* at(std::int64_t i0, std::int64_t i1, std::int64_t i2) const {
    return data + i0 * s0 + i1 * s1 + i2 * s2;
  }
};

/// The ground truth's per-image offsets: in the functor (a GPU call holds at most kMaxGpuImages images) or, for a
/// larger host batch, behind a host pointer.
struct ImageOffsets {
  std::int64_t first[cost_detail::kMaxGpuImages + 1] = {};
  const std::int64_t* host = nullptr;
  KDLOSS_HOST_DEVICE std::int64_t operator()(std::int64_t b) const { return host ? host[b] : first[b]; }
};

/// Pair n of row s = (layer k, image b): coef = z_n / max(||E_k[q_n]||, eps), z_n = s_n * max_g IoU(box_{q_n}, gt_g)
/// (mmdet bbox_overlaps 'iou': union <- max(union, eps)), or s_n when the image has no ground truth. A box that
/// is not xyxy gives NaN (a GPU call's report; the host rejects it before running).
template <class T>
struct CoefFn {
  Strided4<T> scores, boxes, queries;
  const T* gt = nullptr;
  std::int64_t gt_row = 0, gt_col = 0;
  ImageOffsets gt_images;
  std::int64_t B = 1, C = 1, D = 1, topk = 1;
  double iou_eps = 0, norm_eps = 0;
  const std::int64_t* idx = nullptr;
  double* coef = nullptr;

  KDLOSS_HOST_DEVICE double max_iou(const T* box, std::int64_t step, std::int64_t g0, std::int64_t g1) const {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double x1 = box[0], y1 = box[step], x2 = box[2 * step], y2 = box[3 * step];
    if (x2 < x1 || y2 < y1) return nan;
    const double a1 = (x2 - x1) * (y2 - y1);
    double best = -std::numeric_limits<double>::infinity();
    bool bad = false;
    for (std::int64_t g = g0; g < g1; ++g) {
      const T* r = gt + g * gt_row;
      const double gx1 = r[0], gy1 = r[gt_col], gx2 = r[2 * gt_col], gy2 = r[3 * gt_col];
      const double a2 = (gx2 - gx1) * (gy2 - gy1);
      const double w = max(min_of(x2, gx2) - max(x1, gx1), 0.0);
      const double h = max(min_of(y2, gy2) - max(y1, gy1), 0.0);
      const double inter = w * h;
      const double iou = inter / max(a1 + a2 - inter, iou_eps);
      bad = bad || iou != iou || gx2 < gx1 || gy2 < gy1;
      best = max(best, iou);
    }
    return bad ? nan : best;
  }
  KDLOSS_HOST_DEVICE double operator()(std::int64_t i) const {
    const std::int64_t s = i / topk, k = s / B, b = s % B, j = idx[i], q = j / C, c = j % C;
    const double score = static_cast<double>(scores.at(k, b, q)[c * scores.s3]);
    double z = score;
    const std::int64_t g0 = gt_images(b), g1 = gt_images(b + 1);
    if (g1 > g0) z = score * max_iou(boxes.at(k, b, q), boxes.s3, g0, g1);
    const T* e = queries.at(k, b, q);
    double ss = 0;
    for (std::int64_t d = 0; d < D; ++d)
      ss += static_cast<double>(e[d * queries.s3]) * static_cast<double>(e[d * queries.s3]);
    coef[i] = z / max(sqrt(ss), norm_eps);
    return 0;
  }
};

/// w[s, d] = sum_n coef[s, n] E_k[q_n][d] over the row's pairs in their order (s = k * B + b).
template <class T>
struct WeightedSumFn {
  Strided4<T> queries;
  std::int64_t B = 1, C = 1, D = 1, topk = 1;
  const std::int64_t* idx = nullptr;
  const double* coef = nullptr;
  double* w = nullptr;
  KDLOSS_HOST_DEVICE double operator()(std::int64_t i) const {
    const std::int64_t s = i / D, d = i % D, k = s / B, b = s % B;
    double acc = 0;
    for (std::int64_t n = 0; n < topk; ++n)
      acc += coef[s * topk + n] * static_cast<double>(queries.at(k, b, idx[s * topk + n] / C)[d * queries.s3]);
    w[i] = acc;
    return 0;
  }
};

/// m = max(dot / max(||F^T[:, p]||, eps), mask_min), NaN kept (torch.clamp).
KDLOSS_HOST_DEVICE inline double clamp_mask(double dot, double norm_sq, double eps, double mask_min) {
  const double v = dot / max(sqrt(norm_sq), eps);
  return v != v ? v : max(v, mask_min);
}

/// Pass 1 over one teacher level: m[b, k, p] for every layer k (the cosine with w_kb, clamped).
template <class T>
struct MaskPass {
  Strided4<T> ft;  // [B, D, H, W]: at(b, c, h)[x * s3]
  std::int64_t B = 1, K = 1, D = 1, W = 1, HW = 1;
  const double* w = nullptr;  // [K, B, D]
  double* m = nullptr;        // [B, K, HW]
  double eps = 0, mask_min = 0;
};

/// A GPU thread per (image, position): the channel column is read once for up to 8 layers at a time.
template <class T>
struct MaskFn : MaskPass<T> {
  KDLOSS_HOST_DEVICE double operator()(std::int64_t i) const {
    const std::int64_t b = i / this->HW, p = i % this->HW;
    const T* col = this->ft.at(b, 0, p / this->W) + (p % this->W) * this->ft.s3;
    double norm = 0;
    for (std::int64_t k0 = 0; k0 < this->K; k0 += 8) {
      const std::int64_t nk = this->K - k0 < 8 ? this->K - k0 : 8;
      double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (std::int64_t c = 0; c < this->D; ++c) {
        const double v = static_cast<double>(col[c * this->ft.s1]);
        if (k0 == 0) norm += v * v;
        for (std::int64_t kk = 0; kk < nk; ++kk) acc[kk] += this->w[((k0 + kk) * this->B + b) * this->D + c] * v;
      }
      for (std::int64_t kk = 0; kk < nk; ++kk)
        this->m[(b * this->K + k0 + kk) * this->HW + p] = clamp_mask(acc[kk], norm, this->eps, this->mask_min);
    }
    return 0;
  }
};

/// The host: a task per (image, kChunk positions), each channel row read once and its products vectorised.
template <class T>
struct HostMaskFn : MaskPass<T> {
  double operator()(std::int64_t t) const {
    const std::int64_t chunks = (this->HW + kChunk - 1) / kChunk;
    const std::int64_t b = t / chunks, p0 = (t % chunks) * kChunk, p1 = std::min(this->HW, p0 + kChunk);
    const std::int64_t n = p1 - p0;
    std::int64_t off[kChunk];
    double norm[kChunk], vals[kChunk];
    for (std::int64_t i = 0; i < n; ++i) off[i] = ((p0 + i) / this->W) * this->ft.s2 + ((p0 + i) % this->W) * this->ft.s3;
    std::fill(norm, norm + n, 0.0);
    for (std::int64_t k = 0; k < this->K; ++k)
      std::fill(this->m + (b * this->K + k) * this->HW + p0, this->m + (b * this->K + k) * this->HW + p1, 0.0);
    for (std::int64_t c = 0; c < this->D; ++c) {
      const T* row = this->ft.data + b * this->ft.s0 + c * this->ft.s1;
      for (std::int64_t i = 0; i < n; ++i) vals[i] = static_cast<double>(row[off[i]]);
      for (std::int64_t i = 0; i < n; ++i) norm[i] += vals[i] * vals[i];
      for (std::int64_t k = 0; k < this->K; ++k) {
        const double wc = this->w[(k * this->B + b) * this->D + c];
        double* mk = this->m + (b * this->K + k) * this->HW + p0;
        for (std::int64_t i = 0; i < n; ++i) mk[i] += wc * vals[i];
      }
    }
    for (std::int64_t k = 0; k < this->K; ++k) {
      double* mk = this->m + (b * this->K + k) * this->HW + p0;
      for (std::int64_t i = 0; i < n; ++i) mk[i] = clamp_mask(mk[i], norm[i], this->eps, this->mask_min);
    }
    return 0;
  }
};

/// out[i] = the maximum of range i (n values of its row, cut at len), NaN winning (torch.max).
struct RangeMaxFn {
  const double* in = nullptr;
  std::int64_t n = 1, stride = 1, len = 1;  // values per range, distance between ranges, values of a row
  std::int64_t ranges_per_row = 1;
  double* out = nullptr;
  KDLOSS_HOST_DEVICE double operator()(std::int64_t i) const {
    const std::int64_t row = i / ranges_per_row, first = (i % ranges_per_row) * n;
    const std::int64_t last = first + n < len ? first + n : len;
    double mx = -std::numeric_limits<double>::infinity();
    for (std::int64_t p = first; p < last; ++p) {
      const double v = in[row * stride + p];
      if (v != v) mx = v;
      else if (mx == mx) mx = max(mx, v);
    }
    out[i] = mx;
    return 0;
  }
};

/// A[b, p] = sum_k (m[b, k, p] / max m[b, k])^2, written over m[b, 0, p].
struct SquaredMaskSumFn {
  double* m = nullptr;
  const double* mmax = nullptr;
  std::int64_t K = 1, HW = 1;
  KDLOSS_HOST_DEVICE double operator()(std::int64_t i) const {
    const std::int64_t b = i / HW, p = i % HW;
    double s = 0;
    for (std::int64_t k = 0; k < K; ++k) {
      const double psi = m[(b * K + k) * HW + p] / mmax[b * K + k];
      s += psi * psi;
    }
    m[b * K * HW + p] = s;
    return 0;
  }
};

/// Pass 2 over one level: sum A (F^S - F^T)^2 and dF^S = 2 weight upstream A (F^S - F^T) / numel.
template <class T>
struct LossPass {
  Strided4<T> ft, fs;
  T* g = nullptr;
  std::int64_t g0 = 0, g1 = 0, g2 = 0, g3 = 0;
  std::int64_t K = 1, D = 1, W = 1, HW = 1;
  const double* A = nullptr;   // A[b, p] at b * K * HW + p
  const T* upstream = nullptr;  // grad_out (backward) or null (1)
  double weight = 1, numel = 1;
  KDLOSS_HOST_DEVICE double gscale() const {
    return 2.0 * weight * (upstream ? static_cast<double>(*upstream) : 1.0) / numel;
  }
};

template <class T>
struct LossFn : LossPass<T> {
  KDLOSS_HOST_DEVICE double operator()(std::int64_t i) const {
    const std::int64_t b = i / this->HW, p = i % this->HW, h = p / this->W, x = p % this->W;
    const double a = this->A[b * this->K * this->HW + p], gs = this->gscale();
    const T* t = this->ft.at(b, 0, h) + x * this->ft.s3;
    const T* s = this->fs.at(b, 0, h) + x * this->fs.s3;
    T* g = this->g ? this->g + b * this->g0 + h * this->g2 + x * this->g3 : nullptr;
    double sum = 0;
    for (std::int64_t c = 0; c < this->D; ++c) {
      const double d = static_cast<double>(s[c * this->fs.s1]) - static_cast<double>(t[c * this->ft.s1]);
      sum += a * d * d;
      if (g) g[c * this->g1] = static_cast<T>(gs * a * d);
    }
    return sum;
  }
};

/// The host: a task per (image, kChunk positions), as HostMaskFn; returns the task's sum.
template <class T>
struct HostLossFn : LossPass<T> {
  double operator()(std::int64_t t) const {
    const std::int64_t chunks = (this->HW + kChunk - 1) / kChunk;
    const std::int64_t b = t / chunks, p0 = (t % chunks) * kChunk, p1 = std::min(this->HW, p0 + kChunk);
    const double* Ap = this->A + b * this->K * this->HW + p0;
    const double gs = this->gscale();
    const std::int64_t n = p1 - p0;
    std::int64_t ot[kChunk], os[kChunk], og[kChunk];
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t h = (p0 + i) / this->W, x = (p0 + i) % this->W;
      ot[i] = h * this->ft.s2 + x * this->ft.s3;
      os[i] = h * this->fs.s2 + x * this->fs.s3;
      og[i] = h * this->g2 + x * this->g3;
    }
    double s = 0;
    for (std::int64_t c = 0; c < this->D; ++c) {
      const T* tr = this->ft.data + b * this->ft.s0 + c * this->ft.s1;
      const T* sr = this->fs.data + b * this->fs.s0 + c * this->fs.s1;
      T* gr = this->g ? this->g + b * this->g0 + c * this->g1 : nullptr;
      for (std::int64_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(sr[os[i]]) - static_cast<double>(tr[ot[i]]);
        s += Ap[i] * d * d;
        if (gr) gr[og[i]] = static_cast<T>(gs * Ap[i] * d);
      }
    }
    return s;
  }
};

/// A level's sum divided by its element count (the mean of MSE).
struct Divide {
  double by;
  KDLOSS_HOST_DEVICE double operator()(double total) const { return total / by; }
};

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
  static_assert(std::is_same_v<std::remove_cv_t<T>, float> || std::is_same_v<std::remove_cv_t<T>, double>,
                "kdloss::detr::target_aware_feature_loss: float or double");
  ::kdloss::detail::require_backend<T>(fn, dev);
  require(dev.is_host() || B <= cost_detail::kMaxGpuImages, fn, ": argument 'teacher_scores' ", ss.str(), " holds ",
          B, " images on ", dev.str(), "; the GPU call takes at most ", cost_detail::kMaxGpuImages);
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

/// The call's buffers, carved in this order from its workspace (the same on both devices, plus the GPU's
/// partial sums): the top-k indices and coefficients, w, the masks, the partial maxima, the maxima, the levels' sums.
struct Buffers {
  std::int64_t* idx = nullptr;  // [K * B, topk]
  double* coef = nullptr;       // [K * B, topk]
  double* w = nullptr;          // [K, B, D]
  double* m = nullptr;          // [B, K, HW] of the largest level; then A in m[b, 0, :]
  double* chunk_max = nullptr;  // [B, K, chunks] of the largest level
  double* mmax = nullptr;       // [B, K]
  double* levels = nullptr;     // [L]: each level's mean
  double* partials = nullptr;   // the GPU's block sums of a level's pass 2
};

template <class T>
Buffers carve(const TargetAwareFeatureArgs<T>& a, ::kdloss::detail::Carver& c) {
  const Dims& ss = a.teacher_scores.shape;
  const std::int64_t K = ss[0], B = ss[1], D = a.teacher_queries.shape[3], S = K * B, topk = a.options.topk;
  std::int64_t hw = 0;
  for (const auto& f : a.teacher_features) hw = std::max(hw, f.shape[2] * f.shape[3]);
  const std::int64_t chunks = (hw + kChunk - 1) / kChunk;
  Buffers r;
  r.idx = c.take<std::int64_t>(static_cast<std::size_t>(S * topk));
  r.coef = c.take<double>(static_cast<std::size_t>(S * topk));
  r.w = c.take<double>(static_cast<std::size_t>(S * D));
  r.m = c.take<double>(static_cast<std::size_t>(B * K * hw));
  r.chunk_max = c.take<double>(static_cast<std::size_t>(B * K * chunks));
  r.mmax = c.take<double>(static_cast<std::size_t>(B * K));
  r.levels = c.take<double>(a.teacher_features.size());
  r.partials = ::kdloss::detail::carve_reduction(c, a.teacher_scores.device, B * hw);
  return r;
}

template <class T>
std::size_t workspace_bytes(const TargetAwareFeatureArgs<T>& a) {
  ::kdloss::detail::Carver c(nullptr);
  carve(a, c);
  return c.bytes();
}

}  // namespace feature_distill_detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
/// Reads the metadata and the gt_images offsets only: on the host the call itself then checks the box values
/// (pixel xyxy: x2 >= x1, y2 >= y1), still before it writes anything; on the GPU such a box makes the loss NaN.
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
/// [K, B, D] weighted query sums, the top-k pairs and a few per-image scalars; never a copy of a feature map.
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
  namespace kd = ::kdloss::detail;
  const char* fn = fd::kNames(mode);
  target_aware_feature_loss_check(a, mode);
  const Device dev = a.teacher_scores.device;
  kd::check_values_on_host(dev, [&] { fd::check_box_values(a, fn); });
  const bool want_grads = writes_gradients(mode) && !a.grad_student_features.empty();
  if (!writes_value(mode) && !want_grads) return;
  const Dims& ss = a.teacher_scores.shape;
  const std::int64_t K = ss[0], B = ss[1], Q = ss[2], C = ss[3], D = a.teacher_queries.shape[3], S = K * B;
  const auto& o = a.options;
  kd::HostScratch host;
  kd::Carver carver(kd::resolve_workspace(fn, dev, exec.workspace, fd::workspace_bytes(a), host));
  const fd::Buffers buf = fd::carve(a, carver);
  const Stream st = exec.stream;

  // the top-k (query, class) pairs of every (layer, image), then w = sum_n z_n e_n
  expr::TopkRows<T> top;
  top.data = a.teacher_scores.data;
  top.segments_outer = K, top.segments_inner = B;
  top.segment_stride_outer = a.teacher_scores.strides[0], top.segment_stride_inner = a.teacher_scores.strides[1];
  top.n_outer = Q, top.n_inner = C;
  top.stride_outer = a.teacher_scores.strides[2], top.stride_inner = a.teacher_scores.strides[3];
  top.k = o.topk, top.indices = buf.idx;
  kd::topk_rows(dev, st, top);
  fd::CoefFn<T> coef;
  coef.scores = fd::Strided4<T>(a.teacher_scores), coef.boxes = fd::Strided4<T>(a.teacher_boxes);
  coef.queries = fd::Strided4<T>(a.teacher_queries);
  coef.gt = a.gt_boxes.data, coef.gt_row = a.gt_boxes.strides[0], coef.gt_col = a.gt_boxes.strides[1];
  std::vector<std::int64_t> host_offsets;  // a host batch larger than the functor's table
  if (B <= cost_detail::kMaxGpuImages) {
    for (std::int64_t b = 0; b <= B; ++b) coef.gt_images.first[b] = a.gt_images.offsets(b);
  } else {
    for (std::int64_t b = 0; b <= B; ++b) host_offsets.push_back(a.gt_images.offsets(b));
    coef.gt_images.host = host_offsets.data();
  }
  coef.B = B, coef.C = C, coef.D = D, coef.topk = o.topk;
  coef.iou_eps = o.iou_eps, coef.norm_eps = o.norm_eps, coef.idx = buf.idx, coef.coef = buf.coef;
  const std::int64_t G = a.gt_boxes.shape[0];
  kd::box_index_for<T>(dev, st, S * o.topk, D + 4 * (G / B + 1), coef);
  fd::WeightedSumFn<T> wsum;
  wsum.queries = coef.queries, wsum.B = B, wsum.C = C, wsum.D = D, wsum.topk = o.topk;
  wsum.idx = buf.idx, wsum.coef = buf.coef, wsum.w = buf.w;
  kd::box_index_for<T>(dev, st, S * D, o.topk, wsum);

  const T* upstream = mode == Mode::backward ? a.grad_out.data : nullptr;
  for (std::size_t l = 0; l < a.teacher_features.size(); ++l) {
    const View<const T>& ft = a.teacher_features[l];
    const View<const T>& fs = a.student_features[l];
    const std::int64_t W = ft.shape[3], HW = ft.shape[2] * W;
    const std::int64_t chunks = (HW + fd::kChunk - 1) / fd::kChunk;
    // pass 1 over F^T: every layer's mask m[b, k, p]
    fd::MaskPass<T> mp;
    mp.ft = fd::Strided4<T>(ft), mp.B = B, mp.K = K, mp.D = D, mp.W = W, mp.HW = HW;
    mp.w = buf.w, mp.m = buf.m, mp.eps = o.norm_eps, mp.mask_min = o.mask_min;
    kd::box_index_for_host_rows<T>(dev, st, B * HW, D * (K + 1), fd::MaskFn<T>{mp}, B * chunks,
                                   D * (K + 1) * fd::kChunk, [&] { return fd::HostMaskFn<T>{mp}; });
    // per (image, layer): the maximum of m, through per-chunk maxima (NaN wins, as torch.max)
    fd::RangeMaxFn part{buf.m, fd::kChunk, HW, HW, chunks, buf.chunk_max};
    kd::box_index_for<T>(dev, st, B * K * chunks, fd::kChunk, part);
    fd::RangeMaxFn whole{buf.chunk_max, chunks, chunks, chunks, 1, buf.mmax};
    kd::box_index_for<T>(dev, st, B * K, chunks, whole);
    // A[b, p] = sum_k Psi_k^2
    kd::box_index_for<T>(dev, st, B * HW, K, fd::SquaredMaskSumFn{buf.m, buf.mmax, K, HW});
    // pass 2 over (F^T, F^S): the level's mean, and the gradient
    fd::LossPass<T> lp;
    lp.ft = fd::Strided4<T>(ft), lp.fs = fd::Strided4<T>(fs);
    if (want_grads && present(a.grad_student_features[l])) {
      const View<T>& g = a.grad_student_features[l];
      lp.g = g.data, lp.g0 = g.strides[0], lp.g1 = g.strides[1], lp.g2 = g.strides[2], lp.g3 = g.strides[3];
    }
    lp.K = K, lp.D = D, lp.W = W, lp.HW = HW, lp.A = buf.m, lp.upstream = upstream;
    lp.weight = o.weight, lp.numel = static_cast<double>(B * D * HW);
    kd::box_index_sum_host_rows<T>(dev, st, B * HW, 2 * D, fd::LossFn<T>{lp}, B * chunks, 2 * D * fd::kChunk,
                                   [&] { return fd::HostLossFn<T>{lp}; }, buf.partials, fd::Divide{lp.numel},
                                   buf.levels + l);
  }
  if (writes_value(mode))
    kd::store_sum(dev, st, buf.levels, static_cast<std::int64_t>(a.teacher_features.size()), kd::Scale{o.weight},
                  a.out.data);
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
} }  // namespace kdloss

