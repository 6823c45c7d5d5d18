// kdloss_torch family "feature": MSE, L1, smooth-L1, Frobenius distance and temperature KL
// (kdloss/losses/feature/*.hpp). Each binding runs one C++ entry point in one of three modes:
// forward (value), backward (grad_out * d value / d student) or fused (value and gradient in one
// pass); kdloss_torch/feature.py wraps them in autograd Functions.
#include "kdloss/losses/feature/feature.hpp"

#include "binding.hpp"
#include "common.hpp"

namespace kdloss_torch {
namespace {

enum class Pointwise { mse, l1, smooth_l1 };

template <class T>
void run_pointwise(Pointwise kind, Mode mode, const View<const T>& s, const View<const T>& t, const View<const T>& up,
                   const View<T>& out, const View<T>& grad, double beta, kdloss::Reduction r, const kdloss::Exec& ex) {
  switch (kind) {
    case Pointwise::mse:
      if (mode == Mode::forward) kdloss::mse_loss(s, t, out, {r}, ex);
      if (mode == Mode::backward) kdloss::mse_loss_backward(s, t, up, grad, {r}, ex);
      if (mode == Mode::fused) kdloss::mse_loss_forward_backward(s, t, out, grad, {r}, ex);
      break;
    case Pointwise::l1:
      if (mode == Mode::forward) kdloss::l1_loss(s, t, out, {r}, ex);
      if (mode == Mode::backward) kdloss::l1_loss_backward(s, t, up, grad, {r}, ex);
      if (mode == Mode::fused) kdloss::l1_loss_forward_backward(s, t, out, grad, {r}, ex);
      break;
    case Pointwise::smooth_l1:
      if (mode == Mode::forward) kdloss::smooth_l1_loss(s, t, out, {beta, r}, ex);
      if (mode == Mode::backward) kdloss::smooth_l1_loss_backward(s, t, up, grad, {beta, r}, ex);
      if (mode == Mode::fused) kdloss::smooth_l1_loss_forward_backward(s, t, out, grad, {beta, r}, ex);
      break;
  }
}

/// Output of a loss: a 0-dim tensor for a reduced loss, a map shaped (and strided) like the
/// student for reduction none.
Output loss_output(py::handle student, const Arg& s, bool none) {
  return none ? empty_like(student, "out") : empty(s, Dims{}, "out");
}

py::tuple pointwise(const std::string& kind_name, int mode_index, py::handle student, py::handle teacher,
                    py::handle grad_out, double beta, const std::string& reduction) {
  Pointwise kind;
  if (kind_name == "mse")
    kind = Pointwise::mse;
  else if (kind_name == "l1")
    kind = Pointwise::l1;
  else if (kind_name == "smooth_l1")
    kind = Pointwise::smooth_l1;
  else
    kdloss::detail::fail("kdloss_torch.feature.pointwise: unknown loss '", kind_name, "'");
  const std::string name = "kdloss_torch." + kind_name + "_loss";
  const char* fn = name.c_str();
  const Mode mode = mode_of(mode_index, fn);
  const Arg s = tensor_arg(student, fn, "student"), t = tensor_arg(teacher, fn, "teacher");
  const Arg up = tensor_arg(grad_out, fn, "grad_out", mode != Mode::backward);
  same_dtype(fn, s, t);
  same_dtype(fn, s, up);
  const kdloss::Reduction r = reduction_of(reduction, fn);
  Output out, grad;
  if (mode != Mode::backward) out = loss_output(student, s, r == kdloss::Reduction::none);
  if (mode != Mode::forward) grad = empty_like(student, "grad_student");
  Call call(fn, s.device);
  dispatch(fn, s, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto sv = s.in<T>();
    const kdloss::Exec ex = call.exec(workspace_bytes([&] { return kdloss::mse_loss_workspace_bytes(sv, {r}); }));
    py::gil_scoped_release nogil;
    run_pointwise<T>(kind, mode, sv, t.in<T>(), up.in<T>(), out.arg.out<T>(), grad.arg.out<T>(), beta, r, ex);
  });
  return py::make_tuple(out.tensor, grad.tensor);
}

py::tuple kl_div(int mode_index, py::handle student, py::handle teacher, int class_axis, py::handle grad_out,
                 double temperature, const std::string& reduction) {
  const char* fn = "kdloss_torch.kl_div_loss";
  const Mode mode = mode_of(mode_index, fn);
  const Arg s = tensor_arg(student, fn, "student_logits"), t = tensor_arg(teacher, fn, "teacher_logits");
  const Arg up = tensor_arg(grad_out, fn, "grad_out", mode != Mode::backward);
  same_dtype(fn, s, t);
  same_dtype(fn, s, up);
  const kdloss::Reduction r = reduction_of(reduction, fn);
  Output out, grad;
  if (mode != Mode::backward) out = loss_output(student, s, r == kdloss::Reduction::none);
  if (mode != Mode::forward) grad = empty_like(student, "grad_student");
  Call call(fn, s.device);
  dispatch(fn, s, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto sv = s.in<T>(), tv = t.in<T>();
    const kdloss::KlDivOptions o{temperature, class_axis, r};
    const kdloss::Exec ex = call.exec(workspace_bytes([&] { return kdloss::kl_div_loss_workspace_bytes(sv, o); }));
    py::gil_scoped_release nogil;
    if (mode == Mode::forward) kdloss::kl_div_loss(sv, tv, out.arg.out<T>(), o, ex);
    if (mode == Mode::backward) kdloss::kl_div_loss_backward(sv, tv, up.in<T>(), grad.arg.out<T>(), o, ex);
    if (mode == Mode::fused) kdloss::kl_div_loss_forward_backward(sv, tv, out.arg.out<T>(), grad.arg.out<T>(), o, ex);
  });
  return py::make_tuple(out.tensor, grad.tensor);
}

}  // namespace
}  // namespace kdloss_torch

KDLOSS_TORCH_FAMILY(feature, m) {
  using namespace pybind11::literals;
  namespace kt = kdloss_torch;
  m.def("feature_pointwise", &kt::pointwise, "kind"_a, "mode"_a, "student"_a, "teacher"_a, "grad_out"_a, "beta"_a,
        "reduction"_a, "kdloss::{mse,l1,smooth_l1}_loss[_backward|_forward_backward] -> (out | None, grad | None)");
  kt::Options<kdloss::DistanceOptions>(m, "DistanceOptions", "options of distance_loss (none today)");
  kt::bind<kdloss::DistanceLossArgs>(m, "feature_distance_loss", "kdloss_torch.distance_loss",
                                 [](auto& a, auto& f) {
                                   f.in("student", a.student);
                                   f.in("teacher", a.teacher);
                                   f.upstream(a.grad_out);
                                   f.out("out", a.out, kt::Dims{});
                                   f.grad("grad_student", a.grad_student, "student");
                                 },
                                 KDLOSS_TORCH_ENTRY(kdloss::distance_loss));
  m.def("feature_kl_div", &kt::kl_div, "mode"_a, "student"_a, "teacher"_a, "class_axis"_a, "grad_out"_a,
        "temperature"_a, "reduction"_a,
        "kdloss::kl_div_loss[_backward|_forward_backward] -> (out | None, grad | None)");
}
