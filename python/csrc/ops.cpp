// kdloss_torch family "ops": the building blocks with their own backward (kdloss/ops/softmax.hpp,
// kdloss/ops/pooling.hpp, and FBKD's abs-mean attention maps, which are the same pooling).
#include "common.hpp"
#include "kdloss/losses/fbkd/masks.hpp"
#include "kdloss/ops/pooling.hpp"
#include "kdloss/ops/softmax.hpp"

namespace kdloss_torch {
namespace {

/// y = scale * softmax(x / temperature) (log: log softmax(x / temperature)) along `axis`.
py::object softmax(bool log, py::handle x, int axis, double temperature, double scale) {
  const char* fn = log ? "kdloss_torch.ops.log_softmax" : "kdloss_torch.ops.softmax";
  const Arg xa = tensor_arg(x, fn, "x");
  Output y = empty_like(x, "out");
  Call call(fn, xa.device);
  dispatch(fn, xa, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const kdloss::Exec ex = call.exec(0);
    py::gil_scoped_release nogil;
    if (log)
      kdloss::ops::log_softmax(xa.in<T>(), axis, y.arg.out<T>(), {temperature}, ex);
    else
      kdloss::ops::softmax(xa.in<T>(), axis, y.arg.out<T>(), {temperature, scale}, ex);
  });
  return y.tensor;
}

/// grad_x from y and grad_y.
py::object softmax_backward(bool log, py::handle y, py::handle grad_y, int axis, double temperature, double scale) {
  const char* fn = log ? "kdloss_torch.ops.log_softmax_backward" : "kdloss_torch.ops.softmax_backward";
  const Arg ya = tensor_arg(y, fn, "y"), ga = tensor_arg(grad_y, fn, "grad_y");
  same_dtype(fn, ya, ga);
  Output gx = empty_like(y, "grad_x");
  Call call(fn, ya.device);
  dispatch(fn, ya, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const kdloss::Exec ex = call.exec(0);
    py::gil_scoped_release nogil;
    if (log)
      kdloss::ops::log_softmax_backward(ya.in<T>(), ga.in<T>(), axis, gx.arg.out<T>(), {temperature}, ex);
    else
      kdloss::ops::softmax_backward(ya.in<T>(), ga.in<T>(), axis, gx.arg.out<T>(), {temperature, scale}, ex);
  });
  return gx.tensor;
}

enum class Pool { mean_over_channels, mean_over_positions, spatial_attention, channel_attention };

Pool pool_of(const std::string& op) {
  if (op == "mean_over_channels") return Pool::mean_over_channels;
  if (op == "mean_over_positions") return Pool::mean_over_positions;
  if (op == "spatial_attention") return Pool::spatial_attention;
  if (op == "channel_attention") return Pool::channel_attention;
  kdloss::detail::fail("kdloss_torch.ops.pool: unknown op '", op, "'");
}

/// Pooled map: [B,1,H,W] for a mean over channels, [B,C] for a mean over positions.
py::object pool(const std::string& op_name, py::handle x, bool absolute) {
  const Pool op = pool_of(op_name);
  const bool attention = op == Pool::spatial_attention || op == Pool::channel_attention;
  const std::string name = (attention ? "kdloss_torch.fbkd." : "kdloss_torch.ops.") + op_name;
  const char* fn = name.c_str();
  const Arg xa = tensor_arg(x, fn, "x");
  const bool channels = op == Pool::mean_over_channels || op == Pool::spatial_attention;
  Dims shape{1};  // a bad rank is reported by the C++ call below
  if (xa.shape.rank == 4)
    shape = channels ? Dims{xa.shape[0], 1, xa.shape[2], xa.shape[3]} : Dims{xa.shape[0], xa.shape[1]};
  Output out = empty(xa, shape, "out");
  Call call(fn, xa.device);
  dispatch(fn, xa, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const kdloss::Exec ex = call.exec(0);
    const auto xv = xa.in<T>();
    const auto ov = out.arg.out<T>();
    py::gil_scoped_release nogil;
    switch (op) {
      case Pool::mean_over_channels: kdloss::ops::mean_over_channels(xv, ov, {absolute}, ex); break;
      case Pool::mean_over_positions: kdloss::ops::mean_over_positions(xv, ov, {absolute}, ex); break;
      case Pool::spatial_attention: kdloss::fbkd::spatial_attention(xv, ov, ex); break;
      case Pool::channel_attention: kdloss::fbkd::channel_attention(xv, ov, ex); break;
    }
  });
  return out.tensor;
}

py::object pool_backward(const std::string& op_name, py::handle x, py::handle grad_out, bool absolute) {
  const Pool op = pool_of(op_name);
  const bool channels = op == Pool::mean_over_channels || op == Pool::spatial_attention;
  const char* fn =
      channels ? "kdloss_torch.ops.mean_over_channels_backward" : "kdloss_torch.ops.mean_over_positions_backward";
  const Arg xa = tensor_arg(x, fn, "x"), ga = tensor_arg(grad_out, fn, "grad_out");
  same_dtype(fn, xa, ga);
  Output gx = empty_like(x, "grad_x");
  Call call(fn, xa.device);
  dispatch(fn, xa, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const kdloss::Exec ex = call.exec(0);
    py::gil_scoped_release nogil;
    if (channels)
      kdloss::ops::mean_over_channels_backward(xa.in<T>(), ga.in<T>(), gx.arg.out<T>(), {absolute}, ex);
    else
      kdloss::ops::mean_over_positions_backward(xa.in<T>(), ga.in<T>(), gx.arg.out<T>(), {absolute}, ex);
  });
  return gx.tensor;
}

}  // namespace
}  // namespace kdloss_torch

KDLOSS_TORCH_FAMILY(ops, m) {
  using namespace pybind11::literals;
  namespace kt = kdloss_torch;
  m.def("ops_softmax", &kt::softmax, "log"_a, "x"_a, "axis"_a, "temperature"_a, "scale"_a,
        "kdloss::ops::softmax / log_softmax -> y");
  m.def("ops_softmax_backward", &kt::softmax_backward, "log"_a, "y"_a, "grad_y"_a, "axis"_a, "temperature"_a, "scale"_a,
        "kdloss::ops::softmax_backward / log_softmax_backward -> grad_x");
  m.def("ops_pool", &kt::pool, "op"_a, "x"_a, "absolute"_a,
        "kdloss::ops::mean_over_channels / mean_over_positions, kdloss::fbkd::spatial_attention / channel_attention");
  m.def("ops_pool_backward", &kt::pool_backward, "op"_a, "x"_a, "grad_out"_a, "absolute"_a,
        "kdloss::ops::mean_over_channels_backward / mean_over_positions_backward -> grad_x");
}
