// kdloss_torch family "detr_distill": the DETRDistill losses (kdloss/losses/detr/{contrastive,
// feature_distillation}.hpp) through the generic binding (binding.hpp); kdloss_torch/detr/_distill.py
// wraps them as autograd functions and modules. The ground truth's per-image offsets (core/ragged.hpp)
// cross as the list parameter "gt_offsets" (B + 1 integers), held per thread for the call.
#include <cstdint>
#include <vector>

#include "kdloss/losses/detr/contrastive.hpp"
#include "kdloss/losses/detr/feature_distillation.hpp"
#include "kdloss/losses/detr/logits_distillation.hpp"
#include "kdloss/losses/detr/query_prior.hpp"

#include "binding.hpp"
#include "common.hpp"

namespace kdloss_torch {
template <>
struct EnumNames<kdloss::detr::LogitsDistillationOptions::Split> {
  using S = kdloss::detr::LogitsDistillationOptions::Split;
  static constexpr std::pair<const char*, S> values[] = {{"none", S::none}, {"score_threshold", S::score_threshold}};
  static constexpr const char* expected = nullptr;
};
template <>
struct EnumNames<kdloss::detr::LogitsDistillationOptions::NegativeClass> {
  using N = kdloss::detr::LogitsDistillationOptions::NegativeClass;
  static constexpr std::pair<const char*, N> values[] = {
      {"background", N::background}, {"teacher_soft", N::teacher_soft}, {"none", N::none}};
  static constexpr const char* expected = nullptr;
};
// The DETRDistill losses run on the host in float and double only: no half instantiation in a CUDA build.
namespace detail {
template <>
struct float_double_only<kdloss::detr::ContrastiveQueryArgs> : std::true_type {};
template <>
struct float_double_only<kdloss::detr::TargetAwareFeatureArgs> : std::true_type {};
template <>
struct float_double_only<kdloss::detr::LogitsDistillationArgs> : std::true_type {};
}  // namespace detail
}  // namespace kdloss_torch

namespace {
namespace py = pybind11;
namespace kt = kdloss_torch;

/// A contiguous int64 host tensor -> a view (the generic binding takes no int64 views).
kdloss::View<const std::int64_t> index_view(py::handle t, kdloss::Device device) {
  const py::object o = py::reinterpret_borrow<py::object>(t);
  const auto ptr = o.attr("data_ptr")().cast<std::uintptr_t>();
  const auto shape = o.attr("shape").cast<std::vector<std::int64_t>>();
  const auto strides = o.attr("stride")().cast<std::vector<std::int64_t>>();
  return kdloss::View<const std::int64_t>(reinterpret_cast<const std::int64_t*>(ptr),
                                          kdloss::Dims::from(shape.begin(), shape.end()),
                                          kdloss::Dims::from(strides.begin(), strides.end()), device);
}

/// kdloss::detr::query_prior_loss, forward (grad_logits / grad_boxes None) or forward_backward with upstream 1
/// (kdloss_torch/detr/_distill.py scales the gradients by grad_output). gt_labels, pred_rows, target_rows:
/// int64 tensors kept alive by the caller; layers: the K + 1 pair offsets.
void query_prior_loss(py::handle logits, py::handle boxes, py::handle gt_labels, py::handle gt_boxes,
                      py::handle sizes, py::handle pred_rows, py::handle target_rows,
                      std::vector<std::int64_t> layers, py::handle out_cls, py::handle out_l1, py::handle out_giou,
                      py::handle grad_logits, py::handle grad_boxes, const kdloss::detr::QueryPriorLossOptions& options) {
  const char* fn = "kdloss_torch.detr.query_prior_loss";
  const kt::Arg z = kt::tensor_arg(logits, fn, "logits"), b = kt::tensor_arg(boxes, fn, "boxes"),
                gb = kt::tensor_arg(gt_boxes, fn, "gt_boxes"), s = kt::tensor_arg(sizes, fn, "sizes", true),
                oc = kt::tensor_arg(out_cls, fn, "out_cls"), ol = kt::tensor_arg(out_l1, fn, "out_l1"),
                og = kt::tensor_arg(out_giou, fn, "out_giou"),
                gz = kt::tensor_arg(grad_logits, fn, "grad_logits", true),
                gbx = kt::tensor_arg(grad_boxes, fn, "grad_boxes", true);
  for (const kt::Arg* a : {&b, &gb, &s, &oc, &ol, &og, &gz, &gbx}) kt::same_dtype(fn, z, *a);
  kt::dispatch_float_double(fn, z, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kdloss::detr::QueryPriorLossArgs<T> a;
    a.logits = z.in<T>();
    a.boxes = b.in<T>();
    a.gt_labels = index_view(gt_labels, z.device);
    a.gt_boxes = gb.in<T>();
    a.sizes = s.in<T>();
    a.pred_rows = index_view(pred_rows, z.device);
    a.target_rows = index_view(target_rows, z.device);
    a.layers = kdloss::Segments<std::int64_t>{
        kdloss::host_view<const std::int64_t>(layers.data(), {static_cast<std::int64_t>(layers.size())})};
    a.out_cls = oc.out<T>();
    a.out_l1 = ol.out<T>();
    a.out_giou = og.out<T>();
    a.grad_logits = gz.out<T>();
    a.grad_boxes = gbx.out<T>();
    a.options = options;
    const kdloss::Mode mode = gz.present || gbx.present ? kdloss::Mode::forward_backward : kdloss::Mode::forward;
    kdloss::detr::query_prior_loss_check(a, mode);
    kt::Call call(fn, z.device);
    const kdloss::Exec exec = call.exec(kdloss::detr::query_prior_loss_workspace_bytes(a));
    py::gil_scoped_release release;
    kdloss::detr::query_prior_loss(a, mode, exec);
  });
}
}  // namespace

KDLOSS_TORCH_FAMILY(detr_distill, m) {
  namespace kt = kdloss_torch;
  namespace kd = kdloss::detr;
  kt::Options<kd::ContrastiveQueryOptions>(m, "ContrastiveQueryOptions", "kdloss::detr::ContrastiveQueryOptions")
      .field("temperature", &kd::ContrastiveQueryOptions::temperature, "InfoNCE temperature (the code: 0.07)")
      .field("weight", &kd::ContrastiveQueryOptions::weight, "loss weight (the code: 0.2)")
      .field("normalize", &kd::ContrastiveQueryOptions::normalize, "L2-normalise the rows first")
      .field("eps", &kd::ContrastiveQueryOptions::eps, "F.normalize's eps");
  kt::bind<kd::ContrastiveQueryArgs>(m, "detr_contrastive_query_loss", "kdloss_torch.detr.contrastive_query_loss",
                                     [](auto& a, auto& f) {
                                       f.in("teacher", a.teacher);
                                       f.in("student", a.student);
                                       f.upstream(a.grad_out);
                                       f.out("out", a.out, kt::Dims{});
                                       f.grad("grad_teacher", a.grad_teacher, "teacher");
                                       f.grad("grad_student", a.grad_student, "student");
                                     },
                                     KDLOSS_TORCH_ENTRY(kd::contrastive_query_loss));
  kt::Options<kd::TargetAwareFeatureOptions>(m, "TargetAwareFeatureOptions",
                                             "kdloss::detr::TargetAwareFeatureOptions")
      .field("topk", &kd::TargetAwareFeatureOptions::topk, "top-k (query, class) pairs (the code: 100)")
      .field("mask_min", &kd::TargetAwareFeatureOptions::mask_min, "clamp of the mask (0.01)")
      .field("norm_eps", &kd::TargetAwareFeatureOptions::norm_eps, "F.normalize's eps")
      .field("iou_eps", &kd::TargetAwareFeatureOptions::iou_eps, "mmdet bbox_overlaps eps")
      .field("weight", &kd::TargetAwareFeatureOptions::weight, "loss weight (1)");
  kt::bind<kd::TargetAwareFeatureArgs>(
      m, "detr_target_aware_feature_loss", "kdloss_torch.detr.target_aware_feature_loss",
      [](auto& a, auto& f) {
        thread_local std::vector<std::int64_t> offsets;
        offsets.assign(1, 0);
        f.in("teacher_scores", a.teacher_scores);
        f.in("teacher_boxes", a.teacher_boxes);
        f.in("teacher_queries", a.teacher_queries);
        f.in("gt_boxes", a.gt_boxes);
        f.in_list("teacher_features", a.teacher_features, "neck level");
        f.in_list("student_features", a.student_features, "neck level");
        f.param("gt_offsets", offsets);
        a.gt_images = kdloss::Segments<std::int64_t>{
            kdloss::host_view<const std::int64_t>(offsets.data(), {static_cast<std::int64_t>(offsets.size())})};
        f.upstream(a.grad_out);
        f.out("out", a.out, kt::Dims{});
        f.grad_list("grad_student_features", a.grad_student_features, "student_features");
      },
      KDLOSS_TORCH_ENTRY(kd::target_aware_feature_loss));
  using LO = kd::LogitsDistillationOptions;
  kt::Options<LO>(m, "LogitsDistillationOptions", "kdloss::detr::LogitsDistillationOptions")
      .field("class_weight", &LO::class_weight, "soft-BCE weight (cost and loss; 1)")
      .field("l1_weight", &LO::l1_weight, "L1 weight (cost and loss; 5)")
      .field("giou_weight", &LO::giou_weight, "GIoU weight (cost and loss; 2)")
      .field("giou_eps", &LO::giou_eps, "mmdet GIoU eps")
      .field("num_pos", &LO::num_pos, "the box terms' N' (reduce_mean'ed); <= 0: the matched pairs")
      .field("split", &LO::split, "'none' (the code) or 'score_threshold' (positive/negative)")
      .field("score_threshold", &LO::score_threshold, "positive when max sigmoid >= this")
      .field("negative_class", &LO::negative_class, "a matched negative's class term: background, teacher_soft, none");
  kt::bind<kd::LogitsDistillationArgs>(m, "detr_logits_distillation_loss", "kdloss_torch.detr.logits_distillation_loss",
                                       [](auto& a, auto& f) {
                                         f.in("student_logits", a.student_logits);
                                         f.in("student_boxes", a.student_boxes);
                                         f.in("teacher_logits", a.teacher_logits);
                                         f.in("teacher_boxes", a.teacher_boxes);
                                         f.in("sizes", a.sizes);
                                         f.upstream(a.grad_out);  // of out = cls + l1 + giou
                                         f.out("out", a.out, kt::Dims{});
                                         f.out("out_cls", a.out_cls, kt::Dims{}, true);
                                         f.out("out_l1", a.out_l1, kt::Dims{}, true);
                                         f.out("out_giou", a.out_giou, kt::Dims{}, true);
                                         f.grad("grad_student_logits", a.grad_student_logits, "student_logits");
                                         f.grad("grad_student_boxes", a.grad_student_boxes, "student_boxes");
                                       },
                                       KDLOSS_TORCH_ENTRY(kd::logits_distillation_loss));
  using QO = kd::QueryPriorLossOptions;
  kt::Options<QO>(m, "QueryPriorLossOptions", "kdloss::detr::QueryPriorLossOptions")
      .field("class_weight", &QO::class_weight, "focal weight (2)")
      .field("alpha", &QO::alpha, "focal alpha (0.25)")
      .field("gamma", &QO::gamma, "focal gamma (2)")
      .field("l1_weight", &QO::l1_weight, "L1 weight (5)")
      .field("giou_weight", &QO::giou_weight, "GIoU weight (2)")
      .field("giou_eps", &QO::giou_eps, "mmdet GIoU eps (1e-6)")
      .field("num_pos", &QO::num_pos, "mmdet's reduce_mean'ed num_total_pos; <= 0: each layer's matched pairs");
  m.def("detr_query_prior_loss", &query_prior_loss, "kdloss::detr::query_prior_loss");
}
