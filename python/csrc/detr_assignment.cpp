// kdloss_torch: the binding of kdloss::ops::linear_sum_assignment (kdloss_torch.detr.linear_sum_assignment).
//
// The generic binding (binding.hpp) takes floating tensors only, and this op's sizes and outputs are
// int64. Rather than widen binding.hpp, this file binds the entry directly: the cost arrives as a
// tensor (tensor_arg: float32/float64, float16/bfloat16 on CUDA), the int64 tensors as (data_ptr,
// shape, strides) triples that kdloss_torch/detr/_assignment.py builds from tensors it allocated (or
// converted) on the cost's device and keeps alive for the call. No autograd: an assignment has no
// gradient. On CUDA the call is one kernel launch on torch's current stream, with the workspace from
// torch's caching allocator; nothing synchronises the host.
#include <cstdint>
#include <vector>

#include "common.hpp"
#include "kdloss/ops/linear_sum_assignment.hpp"

namespace {

namespace py = pybind11;
using IntArg = py::object;  // None or (data_ptr, shape, strides)

template <class I>
kdloss::View<I> int_view(const IntArg& a, kdloss::Device device) {
  if (a.is_none()) return {};
  const auto t = a.cast<py::tuple>();
  const auto ptr = t[0].cast<std::uintptr_t>();
  const auto shape = t[1].cast<std::vector<std::int64_t>>();
  const auto strides = t[2].cast<std::vector<std::int64_t>>();
  return kdloss::View<I>(reinterpret_cast<I*>(ptr), kdloss::Dims::from(shape.begin(), shape.end()),
                         kdloss::Dims::from(strides.begin(), strides.end()), device);
}

void run(py::handle cost, const IntArg& rows, const IntArg& cols, const IntArg& row_ind, const IntArg& col_ind,
         const IntArg& count, const IntArg& status, bool maximize) {
  const char* fn = "kdloss_torch.detr.linear_sum_assignment";
  const kdloss_torch::Arg c = kdloss_torch::tensor_arg(cost, fn, "cost");
  kdloss_torch::dispatch(fn, c, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kdloss::ops::LinearSumAssignmentArgs<T> a;
    a.cost = c.in<T>();
    a.rows = int_view<const std::int64_t>(rows, c.device);
    a.cols = int_view<const std::int64_t>(cols, c.device);
    a.row_ind = int_view<std::int64_t>(row_ind, c.device);
    a.col_ind = int_view<std::int64_t>(col_ind, c.device);
    a.count = int_view<std::int64_t>(count, c.device);
    a.status = int_view<std::int64_t>(status, c.device);
    a.options.maximize = maximize;
    kdloss_torch::Call call(fn, c.device);
    kdloss::ops::linear_sum_assignment_check(a);
    const kdloss::Exec exec = call.exec(kdloss::ops::linear_sum_assignment_workspace_bytes(a));
    py::gil_scoped_release release;
    kdloss::ops::linear_sum_assignment(a, kdloss::Mode::forward, exec);
  });
}

}  // namespace

KDLOSS_TORCH_FAMILY(detr_assignment, m) {
  m.def("detr_linear_sum_assignment", &run, py::arg("cost"), py::arg("rows"), py::arg("cols"), py::arg("row_ind"),
        py::arg("col_ind"), py::arg("count"), py::arg("status"), py::arg("maximize"),
        "kdloss::ops::linear_sum_assignment over a padded [B, Q, T] cost (int64 views as (data_ptr, shape, strides))");
}
