// kdloss_torch family "drkd": the DRKD losses (kdloss/losses/drkd/*.hpp) through the generic binding
// (binding.hpp): the seed pixel relation loss; and the instance relations (code and paper forms), bound
// directly below; kdloss_torch/drkd.py wraps them as autograd functions and modules.
#include "kdloss/losses/drkd/drkd.hpp"

#include "binding.hpp"
#include "common.hpp"

KDLOSS_TORCH_FAMILY(drkd, m) {
  namespace kt = kdloss_torch;
  kt::Options<kdloss::drkd::PixelRelationOptions>(m, "PixelRelationOptions", "options of drkd.pixel_relation_loss")
      .field("reduction", &kdloss::drkd::PixelRelationOptions::reduction, "mean or sum")
      .field("scale", &kdloss::drkd::PixelRelationOptions::scale, "multiplies F F^T before the softmax; 0: 1/sqrt(C)");
  kt::bind<kdloss::drkd::PixelRelationLossArgs>(m, "drkd_pixel_relation_loss", "kdloss_torch.drkd.pixel_relation_loss",
                                                [](auto& a, auto& f) {
                                                  f.in("student", a.student);
                                                  f.in("teacher", a.teacher);
                                                  f.upstream(a.grad_out);
                                                  f.out("out", a.out, kt::Dims{});
                                                  f.grad("grad_student", a.grad_student, "student");
                                                },
                                                KDLOSS_TORCH_ENTRY(kdloss::drkd::pixel_relation_loss));
}

// ---- the instance relations: bound directly (the generic binding takes floating tensors only, and the
// boxes' offsets are int64 host memory). Python (kdloss_torch/drkd.py) allocates the outputs, passes the
// offsets as (data_ptr, shape, strides) of a CPU int64 tensor it keeps alive, and builds the autograd
// Functions and the modules.
#include <array>
#include <string>

#include "kdloss/losses/drkd/instance_relation.hpp"
#include "kdloss/losses/drkd/instance_relation_maps.hpp"
#include "kdloss/losses/drkd/instance_relation_paper.hpp"

namespace {

namespace py = pybind11;

/// The inputs of drkd_instance_relation, in the order Python passes them (and the kdloss argument names).
constexpr std::array<const char*, 26> kIrNames = {
    "student", "teacher",
    "student_relation.theta_weight", "student_relation.theta_bias", "student_relation.phi_weight",
    "student_relation.phi_bias", "student_relation.g_weight", "student_relation.g_bias",
    "student_relation.W_weight", "student_relation.W_bias",
    "teacher_relation.theta_weight", "teacher_relation.theta_bias", "teacher_relation.phi_weight",
    "teacher_relation.phi_bias", "teacher_relation.g_weight", "teacher_relation.g_bias",
    "teacher_relation.W_weight", "teacher_relation.W_bias",
    "student_filter.weight", "student_filter.bias", "teacher_filter.weight", "teacher_filter.bias",
    "relation_adapt_weight", "relation_adapt_bias", "feature_adapt_weight", "feature_adapt_bias"};

kdloss::View<const std::int64_t> host_offsets(const py::object& t) {
  const auto tup = t.cast<py::tuple>();
  const auto ptr = tup[0].cast<std::uintptr_t>();
  const auto shape = tup[1].cast<std::vector<std::int64_t>>();
  const auto strides = tup[2].cast<std::vector<std::int64_t>>();
  return kdloss::View<const std::int64_t>(reinterpret_cast<const std::int64_t*>(ptr),
                                          kdloss::Dims::from(shape.begin(), shape.end()),
                                          kdloss::Dims::from(strides.begin(), strides.end()), kdloss::Device::host());
}

kdloss::Mode mode_of(int m) {
  kdloss::detail::require(m >= 0 && m <= 2, "kdloss_torch.drkd: mode ", m, " is not 0, 1 or 2");
  return static_cast<kdloss::Mode>(m);
}

/// float32 / float64 only (the relations run ops::linear and ops::matmul on the element type).
template <class F>
void float_or_double(const char* fn, const kdloss_torch::Arg& a, F&& f) {
  if (a.dtype == kdloss_torch::DType::float32) return f(kdloss_torch::Tag<float>{});
  if (a.dtype == kdloss_torch::DType::float64) return f(kdloss_torch::Tag<double>{});
  kdloss::detail::fail(fn, ": argument '", a.name, "' has dtype ", kdloss_torch::dtype_name(a.dtype),
                       "; the instance relations take float32 or float64");
}

using Args26 = std::array<kdloss_torch::Arg, 26>;

/// The 26 inputs and gradients, checked for count and dtype (the first two are the features or the maps).
void parse_inputs(const char* fn, const py::sequence& inputs, const py::sequence& grads, Args26& in, Args26& g) {
  static const std::array<std::string, 26> grad_names = [] {
    std::array<std::string, 26> names;
    for (std::size_t k = 0; k < names.size(); ++k) names[k] = std::string("grad_") + kIrNames[k];
    return names;
  }();
  kdloss::detail::require(py::len(inputs) == kIrNames.size() && py::len(grads) == kIrNames.size(), fn,
                          ": expected ", kIrNames.size(), " inputs and gradients");
  for (std::size_t k = 0; k < in.size(); ++k) {
    in[k] = kdloss_torch::tensor_arg(inputs[k], fn, kIrNames[k], k >= 2);
    g[k] = kdloss_torch::tensor_arg(grads[k], fn, grad_names[k].c_str(), true);
    kdloss_torch::same_dtype(fn, in[0], in[k]);
    kdloss_torch::same_dtype(fn, in[0], g[k]);
  }
}

/// Everything of the code form but the features, the boxes and the values: inputs and gradients 2..25.
template <class T>
void bind_relation(kdloss::drkd::InstanceRelationLossArgs<T>& a, const Args26& in, const Args26& g,
                   double relation_weight, double feature_weight) {
  const auto v = [&](std::size_t k) { return in[k].template in<T>(); };
  const auto w = [&](std::size_t k) { return g[k].template out<T>(); };
  a.student_relation = {v(2), v(3), v(4), v(5), v(6), v(7), v(8), v(9)};
  a.teacher_relation = {v(10), v(11), v(12), v(13), v(14), v(15), v(16), v(17)};
  a.student_filter = {v(18), v(19)};
  a.teacher_filter = {v(20), v(21)};
  a.relation_adapt_weight = v(22);
  a.relation_adapt_bias = v(23);
  a.feature_adapt_weight = v(24);
  a.feature_adapt_bias = v(25);
  a.grad_student_relation = {w(2), w(3), w(4), w(5), w(6), w(7), w(8), w(9)};
  a.grad_teacher_relation = {w(10), w(11), w(12), w(13), w(14), w(15), w(16), w(17)};
  a.grad_student_filter = {w(18), w(19)};
  a.grad_teacher_filter = {w(20), w(21)};
  a.grad_relation_adapt_weight = w(22);
  a.grad_relation_adapt_bias = w(23);
  a.grad_feature_adapt_weight = w(24);
  a.grad_feature_adapt_bias = w(25);
  a.options.relation_weight = relation_weight;
  a.options.feature_weight = feature_weight;
}

void instance_relation(const py::sequence& inputs, const py::sequence& grads, const py::object& offsets,
                       py::handle out, py::handle grad_out, int mode, double relation_weight, double feature_weight) {
  const char* fn = "kdloss_torch.drkd.instance_relation_loss";
  Args26 in, g;
  parse_inputs(fn, inputs, grads, in, g);
  const kdloss_torch::Arg o = kdloss_torch::tensor_arg(out, fn, "out", true),
                          go = kdloss_torch::tensor_arg(grad_out, fn, "grad_out", true);
  float_or_double(fn, in[0], [&](auto tag) {
    using T = typename decltype(tag)::type;
    kdloss::drkd::InstanceRelationLossArgs<T> a;
    bind_relation(a, in, g, relation_weight, feature_weight);
    a.student = in[0].template in<T>();
    a.teacher = in[1].template in<T>();
    a.boxes.offsets = host_offsets(offsets);
    a.out = o.template out<T>();
    a.grad_out = go.template in<T>();
    a.grad_student = g[0].template out<T>();
    const kdloss::Mode m = mode_of(mode);
    kdloss_torch::Call call(fn, in[0].device);
    kdloss::drkd::instance_relation_loss_check(a, m);
    const kdloss::Exec exec = call.exec(kdloss::drkd::instance_relation_loss_workspace_bytes(a));
    py::gil_scoped_release release;
    kdloss::drkd::instance_relation_loss(a, m, exec);
  });
}

/// The code form from the maps: inputs[0] and [1] are the student and teacher maps, grads[0] the map's
/// gradient; boxes [n, 4] in image pixels; the pooling options as instance_relation_maps_loss names them.
void instance_relation_maps(const py::sequence& inputs, const py::sequence& grads, const py::object& offsets,
                            py::handle boxes, py::handle out, py::handle grad_out, int mode, double relation_weight,
                            double feature_weight, std::int64_t output_size, double spatial_scale,
                            std::int64_t sampling_ratio, bool aligned, bool image0_pooling) {
  const char* fn = "kdloss_torch.drkd.instance_relation_maps_loss";
  Args26 in, g;
  parse_inputs(fn, inputs, grads, in, g);
  const kdloss_torch::Arg b = kdloss_torch::tensor_arg(boxes, fn, "boxes"),
                          o = kdloss_torch::tensor_arg(out, fn, "out", true),
                          go = kdloss_torch::tensor_arg(grad_out, fn, "grad_out", true);
  kdloss_torch::same_dtype(fn, in[0], b);
  float_or_double(fn, in[0], [&](auto tag) {
    using T = typename decltype(tag)::type;
    kdloss::drkd::InstanceRelationMapsArgs<T> a;
    bind_relation(a.code, in, g, relation_weight, feature_weight);
    a.student_map = in[0].template in<T>();
    a.teacher_map = in[1].template in<T>();
    a.boxes = b.template in<T>();
    a.offsets = host_offsets(offsets);
    a.out = o.template out<T>();
    a.grad_out = go.template in<T>();
    a.grad_student_map = g[0].template out<T>();
    a.options.output_size = output_size;
    a.options.spatial_scale = spatial_scale;
    a.options.sampling_ratio = sampling_ratio;
    a.options.aligned = aligned;
    a.options.image0_pooling = image0_pooling;
    const kdloss::Mode m = mode_of(mode);
    kdloss_torch::Call call(fn, in[0].device);
    kdloss::drkd::instance_relation_maps_loss_check(a, m);
    const kdloss::Exec exec = call.exec(kdloss::drkd::instance_relation_maps_loss_workspace_bytes(a));
    py::gil_scoped_release release;
    kdloss::drkd::instance_relation_maps_loss(a, m, exec);
  });
}

void instance_relation_paper(py::handle student, py::handle teacher, const py::object& offsets,
                             py::handle teacher_scores, py::handle student_scores, py::handle out,
                             py::handle grad_out, py::handle grad_student, int mode, double weight,
                             const std::string& threshold_from, double threshold, bool mask_columns, double alpha,
                             double eps, const std::string& reduction) {
  const char* fn = "kdloss_torch.drkd.instance_relation_paper_loss";
  const auto s = kdloss_torch::tensor_arg(student, fn, "student"), t = kdloss_torch::tensor_arg(teacher, fn, "teacher"),
             ct = kdloss_torch::tensor_arg(teacher_scores, fn, "teacher_scores", true),
             cs = kdloss_torch::tensor_arg(student_scores, fn, "student_scores", true),
             o = kdloss_torch::tensor_arg(out, fn, "out", true), go = kdloss_torch::tensor_arg(grad_out, fn, "grad_out", true),
             gs = kdloss_torch::tensor_arg(grad_student, fn, "grad_student", true);
  for (const auto* x : {&t, &ct, &cs, &o, &go, &gs}) kdloss_torch::same_dtype(fn, s, *x);
  kdloss::detail::require(threshold_from == "teacher_mean" || threshold_from == "fixed", fn,
                          ": argument 'threshold_from' must be 'teacher_mean' or 'fixed' but is '", threshold_from, "'");
  kdloss::detail::require(reduction == "mean" || reduction == "sum", fn,
                          ": argument 'reduction' must be 'mean' or 'sum' but is '", reduction, "'");
  float_or_double(fn, s, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kdloss::drkd::InstanceRelationPaperLossArgs<T> a;
    a.student = s.template in<T>();
    a.teacher = t.template in<T>();
    a.boxes.offsets = host_offsets(offsets);
    a.teacher_scores = ct.template in<T>();
    a.student_scores = cs.template in<T>();
    a.out = o.template out<T>();
    a.grad_out = go.template in<T>();
    a.grad_student = gs.template out<T>();
    auto& op = a.options;
    op.weight = weight;
    op.threshold_from = threshold_from == "fixed" ? kdloss::drkd::ConfidenceThreshold::fixed
                                                  : kdloss::drkd::ConfidenceThreshold::teacher_mean;
    op.threshold = threshold;
    op.mask_columns = mask_columns;
    op.alpha = alpha;
    op.eps = eps;
    op.reduction = reduction == "sum" ? kdloss::Reduction::sum : kdloss::Reduction::mean;
    const kdloss::Mode m = mode_of(mode);
    kdloss_torch::Call call(fn, s.device);
    kdloss::drkd::instance_relation_paper_loss_check(a, m);
    const kdloss::Exec exec = call.exec(kdloss::drkd::instance_relation_paper_loss_workspace_bytes(a));
    py::gil_scoped_release release;
    kdloss::drkd::instance_relation_paper_loss(a, m, exec);
  });
}

}  // namespace

KDLOSS_TORCH_FAMILY(drkd_instance, m) {
  m.def("drkd_instance_relation", &instance_relation, py::arg("inputs"), py::arg("grads"), py::arg("offsets"),
        py::arg("out"), py::arg("grad_out"), py::arg("mode"), py::arg("relation_weight"), py::arg("feature_weight"),
        "kdloss::drkd::instance_relation_loss (26 inputs and gradients in kdloss_torch.drkd.INSTANCE_INPUTS order)");
  m.def("drkd_instance_relation_maps", &instance_relation_maps, py::arg("inputs"), py::arg("grads"),
        py::arg("offsets"), py::arg("boxes"), py::arg("out"), py::arg("grad_out"), py::arg("mode"),
        py::arg("relation_weight"), py::arg("feature_weight"), py::arg("output_size"), py::arg("spatial_scale"),
        py::arg("sampling_ratio"), py::arg("aligned"), py::arg("image0_pooling"),
        "kdloss::drkd::instance_relation_maps_loss, code form (inputs[0], [1]: the maps; grads[0]: the map's)");
  m.def("drkd_instance_relation_paper", &instance_relation_paper, py::arg("student"), py::arg("teacher"),
        py::arg("offsets"), py::arg("teacher_scores"), py::arg("student_scores"), py::arg("out"), py::arg("grad_out"),
        py::arg("grad_student"), py::arg("mode"), py::arg("weight"), py::arg("threshold_from"), py::arg("threshold"),
        py::arg("mask_columns"), py::arg("alpha"), py::arg("eps"), py::arg("reduction"),
        "kdloss::drkd::instance_relation_paper_loss");
}
