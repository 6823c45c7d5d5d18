// kdloss_torch: the bindings of kdloss/ops/boxes.hpp and of the DETR element losses and matching costs
// (kdloss/losses/detr/matched_losses.hpp, matching_cost.hpp), for kdloss_torch.detr (_boxes.py).
//
// Bound directly, as detr_assignment.cpp does: floating tensors arrive as tensors (tensor_arg), int64
// tensors as (data_ptr, shape, strides) triples that _boxes.py builds from tensors it keeps alive, and
// Python allocates every output. Each function runs one mode (forward, or forward_backward with an
// upstream gradient of 1); the autograd Functions in _boxes.py keep those local gradients and scale
// them by grad_output in backward (every value here is a sum or a per-row map of the inputs' rows).
#include <cstdint>
#include <vector>

#include "common.hpp"
#include "kdloss/losses/detr/detr.hpp"
#include "kdloss/ops/boxes.hpp"

namespace {

namespace py = pybind11;
namespace kt = kdloss_torch;
using IntArg = py::object;  // None or (data_ptr, shape, strides)

kdloss::View<const std::int64_t> int_view(const IntArg& a, kdloss::Device device) {
  if (a.is_none()) return {};
  const auto t = a.cast<py::tuple>();
  const auto ptr = t[0].cast<std::uintptr_t>();
  const auto shape = t[1].cast<std::vector<std::int64_t>>();
  const auto strides = t[2].cast<std::vector<std::int64_t>>();
  return kdloss::View<const std::int64_t>(reinterpret_cast<const std::int64_t*>(ptr),
                                          kdloss::Dims::from(shape.begin(), shape.end()),
                                          kdloss::Dims::from(strides.begin(), strides.end()), device);
}

kdloss::Mode mode_of(bool backward) { return backward ? kdloss::Mode::forward_backward : kdloss::Mode::forward; }

/// Every present floating argument in the dtype of the first.
void same_dtypes(const char* fn, const std::vector<kt::Arg>& args) {
  for (const auto& a : args) kt::same_dtype(fn, args[0], a);
}

void box_convert(py::handle boxes, py::handle out, int in_fmt, int out_fmt) {
  const char* fn = "kdloss_torch.detr.box_convert";
  const kt::Arg b = kt::tensor_arg(boxes, fn, "boxes"), o = kt::tensor_arg(out, fn, "out");
  same_dtypes(fn, {b, o});
  kt::dispatch(fn, b, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kdloss::ops::BoxConvertArgs<T> a;
    a.boxes = b.in<T>();
    a.out = o.out<T>();
    a.options = {static_cast<kdloss::ops::BoxFormat>(in_fmt), static_cast<kdloss::ops::BoxFormat>(out_fmt)};
    kdloss::ops::box_convert_check(a, kdloss::Mode::forward);
    kt::Call call(fn, b.device);
    const kdloss::Exec exec = call.exec(0);
    py::gil_scoped_release release;
    kdloss::ops::box_convert(a, kdloss::Mode::forward, exec);
  });
}

void box_convert_backward(py::handle grad_out, py::handle grad_boxes, int in_fmt, int out_fmt) {
  const char* fn = "kdloss_torch.detr.box_convert";
  const kt::Arg g = kt::tensor_arg(grad_out, fn, "grad_out"), o = kt::tensor_arg(grad_boxes, fn, "grad_boxes");
  same_dtypes(fn, {g, o});
  kt::dispatch(fn, g, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kdloss::ops::BoxConvertArgs<T> a;
    a.grad_out = g.in<T>();
    a.grad_boxes = o.out<T>();
    a.options = {static_cast<kdloss::ops::BoxFormat>(in_fmt), static_cast<kdloss::ops::BoxFormat>(out_fmt)};
    kdloss::ops::box_convert_check(a, kdloss::Mode::backward);
    kt::Call call(fn, g.device);
    const kdloss::Exec exec = call.exec(0);
    py::gil_scoped_release release;
    kdloss::ops::box_convert(a, kdloss::Mode::backward, exec);
  });
}

void box_overlap(py::handle boxes1, py::handle boxes2, py::handle out, bool giou, int form, double eps, int format) {
  const char* fn = giou ? "kdloss_torch.detr.generalized_box_iou" : "kdloss_torch.detr.box_iou";
  const kt::Arg a1 = kt::tensor_arg(boxes1, fn, "boxes1"), a2 = kt::tensor_arg(boxes2, fn, "boxes2"),
                o = kt::tensor_arg(out, fn, "out");
  same_dtypes(fn, {a1, a2, o});
  kt::dispatch(fn, a1, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kdloss::ops::BoxOverlapArgs<T> a;
    a.boxes1 = a1.in<T>();
    a.boxes2 = a2.in<T>();
    a.out = o.out<T>();
    a.options.giou = giou;
    a.options.form = static_cast<kdloss::ops::OverlapForm>(form);
    a.options.eps = eps;
    a.options.format = static_cast<kdloss::ops::BoxFormat>(format);
    kdloss::ops::box_overlap_check(a, kdloss::Mode::forward);
    kt::Call call(fn, a1.device);
    const kdloss::Exec exec = call.exec(0);
    py::gil_scoped_release release;
    kdloss::ops::box_overlap(a, kdloss::Mode::forward, exec);
  });
}

void giou_loss(py::handle pred, py::handle target, py::handle weight, py::handle out, py::handle grad_pred,
               py::handle grad_target, int form, double eps, int reduction, double scale, int format) {
  const char* fn = "kdloss_torch.detr.generalized_box_iou_loss";
  const kt::Arg p = kt::tensor_arg(pred, fn, "boxes1"), t = kt::tensor_arg(target, fn, "boxes2"),
                w = kt::tensor_arg(weight, fn, "weight", true), o = kt::tensor_arg(out, fn, "out"),
                gp = kt::tensor_arg(grad_pred, fn, "grad_boxes1", true),
                gt = kt::tensor_arg(grad_target, fn, "grad_boxes2", true);
  same_dtypes(fn, {p, t, w, o, gp, gt});
  kt::dispatch(fn, p, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kdloss::ops::GIoULossArgs<T> a;
    a.pred = p.in<T>();
    a.target = t.in<T>();
    a.weight = w.in<T>();
    a.out = o.out<T>();
    a.grad_pred = gp.out<T>();
    a.grad_target = gt.out<T>();
    a.options.form = static_cast<kdloss::ops::OverlapForm>(form);
    a.options.eps = eps;
    a.options.reduction = static_cast<kdloss::Reduction>(reduction);
    a.options.scale = scale;
    a.options.format = static_cast<kdloss::ops::BoxFormat>(format);
    const kdloss::Mode mode = mode_of(gp.present || gt.present);
    kdloss::ops::giou_loss_check(a, mode);
    kt::Call call(fn, p.device);
    const kdloss::Exec exec = call.exec(kdloss::ops::giou_loss_workspace_bytes(a));
    py::gil_scoped_release release;
    kdloss::ops::giou_loss(a, mode, exec);
  });
}

kdloss::detr::Normalizer normalizer(int kind, double value, bool clamp, bool eps) {
  return {static_cast<kdloss::detr::Normalizer::Kind>(kind), value, clamp, eps};
}

void matched_class_loss(py::handle logits, py::handle probs, const IntArg& labels, const IntArg& pred_rows,
                        const IntArg& target_rows, py::handle out, py::handle grad_logits, bool focal, double alpha,
                        double gamma, double weight, int norm_kind, double norm_value, bool norm_clamp,
                        bool norm_eps) {
  const char* fn = "kdloss_torch.detr.matched_class_loss";
  const kt::Arg z = kt::tensor_arg(logits, fn, "logits"), p = kt::tensor_arg(probs, fn, "target_probs", true),
                o = kt::tensor_arg(out, fn, "out"), g = kt::tensor_arg(grad_logits, fn, "grad_logits", true);
  same_dtypes(fn, {z, p, o, g});
  kt::dispatch(fn, z, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kdloss::detr::MatchedClassLossArgs<T> a;
    a.logits = z.in<T>();
    a.target_probs = p.in<T>();
    a.target_labels = int_view(labels, z.device);
    a.pred_rows = int_view(pred_rows, z.device);
    a.target_rows = int_view(target_rows, z.device);
    a.out = o.out<T>();
    a.grad_logits = g.out<T>();
    a.options.kind = focal ? kdloss::detr::MatchedClassLossOptions::Kind::focal
                           : kdloss::detr::MatchedClassLossOptions::Kind::soft_bce;
    a.options.alpha = alpha;
    a.options.gamma = gamma;
    a.options.weight = weight;
    a.options.normalizer = normalizer(norm_kind, norm_value, norm_clamp, norm_eps);
    const kdloss::Mode mode = mode_of(g.present);
    kdloss::detr::matched_class_loss_check(a, mode);
    kt::Call call(fn, z.device);
    const kdloss::Exec exec = call.exec(kdloss::detr::matched_class_loss_workspace_bytes(a));
    py::gil_scoped_release release;
    kdloss::detr::matched_class_loss(a, mode, exec);
  });
}

void matched_box_loss(py::handle pred, py::handle target, const IntArg& pred_rows, const IntArg& target_rows,
                      py::handle sizes, py::handle out_l1, py::handle out_giou, py::handle grad_pred,
                      double l1_weight, double giou_weight, int format, int form, double eps, int norm_kind,
                      double norm_value, bool norm_clamp, bool norm_eps) {
  const char* fn = "kdloss_torch.detr.matched_box_loss";
  const kt::Arg p = kt::tensor_arg(pred, fn, "pred_boxes"), t = kt::tensor_arg(target, fn, "target_boxes"),
                s = kt::tensor_arg(sizes, fn, "sizes", true), l1 = kt::tensor_arg(out_l1, fn, "out_l1", true),
                gi = kt::tensor_arg(out_giou, fn, "out_giou", true),
                g = kt::tensor_arg(grad_pred, fn, "grad_pred_boxes", true);
  same_dtypes(fn, {p, t, s, l1, gi, g});
  kt::dispatch(fn, p, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kdloss::detr::MatchedBoxLossArgs<T> a;
    a.pred_boxes = p.in<T>();
    a.target_boxes = t.in<T>();
    a.pred_rows = int_view(pred_rows, p.device);
    a.target_rows = int_view(target_rows, p.device);
    a.sizes = s.in<T>();
    a.out_l1 = l1.out<T>();
    a.out_giou = gi.out<T>();
    a.grad_pred_boxes = g.out<T>();
    a.options.l1_weight = l1_weight;
    a.options.giou_weight = giou_weight;
    a.options.format = static_cast<kdloss::ops::BoxFormat>(format);
    a.options.form = static_cast<kdloss::ops::OverlapForm>(form);
    a.options.eps = eps;
    a.options.normalizer = normalizer(norm_kind, norm_value, norm_clamp, norm_eps);
    const kdloss::Mode mode = mode_of(g.present);
    kdloss::detr::matched_box_loss_check(a, mode);
    kt::Call call(fn, p.device);
    const kdloss::Exec exec = call.exec(kdloss::detr::matched_box_loss_workspace_bytes(a));
    py::gil_scoped_release release;
    kdloss::detr::matched_box_loss(a, mode, exec);
  });
}

void matching_cost(py::handle logits, py::handle boxes, py::handle probs, const IntArg& labels, py::handle tboxes,
                   std::vector<std::int64_t> offsets, py::handle sizes, py::handle out, int class_cost,
                   double class_weight, double bbox_weight, double giou_weight, double alpha, double gamma,
                   double focal_eps, int pred_format, int target_format, bool target_in_pixels, int giou_form,
                   double giou_eps, double padding_value) {
  const char* fn = "kdloss_torch.detr.matching_cost";
  const kt::Arg z = kt::tensor_arg(logits, fn, "pred_logits", true), b = kt::tensor_arg(boxes, fn, "pred_boxes"),
                p = kt::tensor_arg(probs, fn, "target_probs", true), t = kt::tensor_arg(tboxes, fn, "target_boxes"),
                s = kt::tensor_arg(sizes, fn, "sizes", true), o = kt::tensor_arg(out, fn, "out");
  same_dtypes(fn, {b, z, p, t, s, o});
  kt::dispatch(fn, b, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kdloss::detr::MatchingCostArgs<T> a;
    a.pred_logits = z.in<T>();
    a.pred_boxes = b.in<T>();
    a.target_probs = p.in<T>();
    a.target_labels = int_view(labels, b.device);
    a.target_boxes = t.in<T>();
    a.targets = kdloss::Segments<std::int64_t>{kdloss::host_view<const std::int64_t>(
        offsets.data(), {static_cast<std::int64_t>(offsets.size())})};
    a.sizes = s.in<T>();
    a.out = o.out<T>();
    auto& op = a.options;
    op.class_cost = static_cast<kdloss::detr::MatchingCostOptions::ClassCost>(class_cost);
    op.class_weight = class_weight, op.bbox_weight = bbox_weight, op.giou_weight = giou_weight;
    op.alpha = alpha, op.gamma = gamma, op.focal_eps = focal_eps;
    op.pred_format = static_cast<kdloss::ops::BoxFormat>(pred_format);
    op.target_format = static_cast<kdloss::ops::BoxFormat>(target_format);
    op.target_in_pixels = target_in_pixels;
    op.giou_form = static_cast<kdloss::ops::OverlapForm>(giou_form);
    op.giou_eps = giou_eps, op.padding_value = padding_value;
    kdloss::detr::matching_cost_check(a);
    kt::Call call(fn, b.device);
    const kdloss::Exec exec = call.exec(kdloss::detr::matching_cost_workspace_bytes(a));
    py::gil_scoped_release release;
    kdloss::detr::matching_cost(a, kdloss::Mode::forward, exec);
  });
}

}  // namespace

KDLOSS_TORCH_FAMILY(detr_boxes, m) {
  m.def("detr_box_convert", &box_convert, "kdloss::ops::box_convert (formats 0 xyxy, 1 cxcywh, 2 xywh)");
  m.def("detr_box_convert_backward", &box_convert_backward, "kdloss::ops::box_convert, backward");
  m.def("detr_box_overlap", &box_overlap, "kdloss::ops::box_overlap (forms 0 detr, 1 mmdet, 2 torchvision)");
  m.def("detr_giou_loss", &giou_loss, "kdloss::ops::giou_loss (forward, or forward_backward when a grad is given)");
  m.def("detr_matched_class_loss", &matched_class_loss, "kdloss::detr::matched_class_loss");
  m.def("detr_matched_box_loss", &matched_box_loss, "kdloss::detr::matched_box_loss");
  m.def("detr_matching_cost", &matching_cost, "kdloss::detr::matching_cost");
}
