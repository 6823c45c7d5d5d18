// kdloss_torch family "testing": a small entry point of the standard shape that exercises every part of
// the generic binding (binding.hpp) that the bound losses do not all use yet: an optional input, two
// gradient outputs, an options struct, a value shaped like an input, and a reserve buffer that forward
// fills and backward reads. Host float/double only; python/tests/test_binding.py uses it.
//
//   value = scale * sum(x * y)        (reduce; y absent: y = 1), or the map scale * x * y
//   grad_x = grad_out * scale * y,  grad_y = grad_out * scale * x, with the scale forward kept in the reserve
#include <cstring>
#include <type_traits>

#include "binding.hpp"
#include "common.hpp"

namespace kdloss_torch {
namespace {

struct TestingOptions {
  double scale = 1.0;
  bool reduce = true;
};

template <class T>
struct TestingArgs {
  View<const T> x, y, grad_out;
  View<T> out, grad_x, grad_y;
  kdloss::Reserve reserve;
  TestingOptions options;
};

template <class T>
std::size_t testing_workspace_bytes(const TestingArgs<T>&) {
  return 0;
}
template <class T>
std::size_t testing_reserve_bytes(const TestingArgs<T>&) {
  return sizeof(double);
}

template <class T>
void testing(const TestingArgs<T>& a, kdloss::Mode mode, const kdloss::Exec&) {
  const char* fn = "kdloss_torch._testing";
  if constexpr (!std::is_floating_point_v<T>) {
    kdloss::detail::fail(fn, ": float32 and float64 only");
  } else {
    kdloss::detail::require(a.x.device.is_host() && a.x.is_contiguous(), fn, ": 'x' must be a contiguous host tensor");
    const bool has_y = kdloss::present(a.y);
    if (has_y) kdloss::detail::require(a.y.shape == a.x.shape && a.y.is_contiguous(), fn, ": 'y' must be like 'x'");
    kdloss::detail::require(a.reserve.data != nullptr && a.reserve.bytes >= sizeof(double), fn,
                            ": argument 'reserve' is absent or too small");
    const std::int64_t n = a.x.numel();
    auto y = [&](std::int64_t i) { return has_y ? double(a.y.data[i]) : 1.0; };
    double scale = a.options.scale;
    if (kdloss::writes_value(mode)) {
      std::memcpy(a.reserve.data, &scale, sizeof scale);  // what backward reads
      double sum = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        const double v = scale * double(a.x.data[i]) * y(i);
        if (a.options.reduce)
          sum += v;
        else
          a.out.data[i] = T(v);
      }
      if (a.options.reduce) a.out.data[0] = T(sum);
    } else {
      std::memcpy(&scale, a.reserve.data, sizeof scale);
    }
    if (!kdloss::writes_gradients(mode)) return;
    kdloss::detail::require(a.options.reduce || mode == kdloss::Mode::backward, fn,
                            ": forward_backward needs a reduced value");
    for (std::int64_t i = 0; i < n; ++i) {
      const double up =
          mode == kdloss::Mode::backward ? double(a.grad_out.data[a.grad_out.numel() == 1 ? 0 : i]) : 1.0;
      if (kdloss::present(a.grad_x)) a.grad_x.data[i] = T(up * scale * y(i));
      if (kdloss::present(a.grad_y)) a.grad_y.data[i] = T(up * scale * double(a.x.data[i]));
    }
  }
}

}  // namespace
}  // namespace kdloss_torch

KDLOSS_TORCH_FAMILY(testing, m) {
  namespace kt = kdloss_torch;
  kt::Options<kt::TestingOptions>(m, "_TestingOptions", "options of _C._testing (tests of the generic binding)")
      .field("scale", &kt::TestingOptions::scale)
      .field("reduce", &kt::TestingOptions::reduce);
  kt::bind<kt::TestingArgs>(m, "_testing", "kdloss_torch._testing",
                            [](auto& a, auto& f) {
                              f.in("x", a.x);
                              f.in("y", a.y, /*optional=*/true);
                              f.upstream(a.grad_out);
                              if (a.options.reduce)
                                f.out("out", a.out, kt::Dims{});
                              else
                                f.out_like("out", a.out, "x");
                              f.grad("grad_x", a.grad_x, "x");
                              f.grad("grad_y", a.grad_y, "y");
                              f.reserve(a.reserve, [&] { return kt::testing_reserve_bytes(a); });
                            },
                            KDLOSS_TORCH_ENTRY(kt::testing));
}
