// kdloss/losses/ssim/engine.hpp: what every SSIM entry point shares: validation of inputs and
// options, the filter plans, and one pass of the windowed-statistics engine with the SSIM head
// (expr/window_stats.hpp; backend/dispatch_window.hpp picks the backend, ops/planes.hpp holds the
// per-plane steps). No device code and no host/device branches live here.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/backend/dispatch_window.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/types.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/window_stats.hpp"
#include "kdloss/losses/ssim/head.hpp"
#include "kdloss/losses/ssim/options.hpp"
#include "kdloss/ops/gaussian.hpp"
#include "kdloss/ops/planes.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace ssim::detail {

using expr::AxisPlan;
using expr::MinMaxNorm;
using kdloss::detail::Carver;
using kdloss::detail::Checker;
using kdloss::detail::require;
using kdloss::detail::WindowScratch;
using ops::detail::strides4;

// ---- validation ----

using ::kdloss::EntryNames;  // core/entry.hpp


template <class T>
void check_pair(const Checker& ck, const View<const T>& s, const View<const T>& t, const char* a = "student",
                const char* b = "teacher") {
  ck.rank(s, a, 4);
  ck.not_null(s, a);
  ck.not_null(t, b);
  ck.same_shape(s, a, t, b);
  ck.device(t, b, s.device);
  require(s.shape[2] >= 1 && s.shape[3] >= 1, ck.fn, ": argument '", a, "' with shape ", s.shape.str(),
          " has an empty spatial extent");
  kdloss::detail::require_backend<T>(ck.fn, s.device);
}
template <class T>
void check_grad(const Checker& ck, const View<const T>& s, const View<T>& g, const char* arg,
                const View<const T>& x, const View<const T>& y, const char* x_name = "student",
                const char* y_name = "teacher") {
  ck.not_null(g, arg);
  ck.shape(g, arg, s.shape);
  ck.device(g, arg, s.device);
  ck.unique(g, arg);
  ck.disjoint(g, arg, x, x_name);
  ck.disjoint(g, arg, y, y_name);
}
using ::kdloss::present;  // core/entry.hpp: the one test for an optional view

inline void check_common(const Checker& ck, int window, double sigma, double k1, double k2) {
  ops::detail::check_window(ck.fn, window, sigma);
  require(k1 > 0 && std::isfinite(k1), ck.fn, ": option 'k1' must be finite and > 0 but is ", k1);
  require(k2 > 0 && std::isfinite(k2), ck.fn, ": option 'k2' must be finite and > 0 but is ", k2);
}
inline void check_options(const Checker& ck, const SsimOptions& o) {
  check_common(ck, o.window_size, o.sigma, o.k1, o.k2);
  require(o.max_val > 0 && std::isfinite(o.max_val), ck.fn, ": option 'max_val' must be finite and > 0 but is ",
          o.max_val);
  require(o.alpha >= 0 && std::isfinite(o.alpha), ck.fn, ": option 'alpha' must be finite and >= 0 but is ", o.alpha);
  require(o.beta >= 0 && std::isfinite(o.beta), ck.fn, ": option 'beta' must be finite and >= 0 but is ", o.beta);
  require(o.gamma >= 0 && std::isfinite(o.gamma), ck.fn, ": option 'gamma' must be finite and >= 0 but is ", o.gamma);
  require(o.eps >= 0 && std::isfinite(o.eps), ck.fn, ": option 'eps' must be finite and >= 0 but is ", o.eps);
}

// ---- plans ----

/// Row and column plans of kornia-style filtering (the same window on both axes).
inline void plan_axes(const Checker& ck, const Dims& shape, const SsimOptions& o, AxisPlan& rows, AxisPlan& cols) {
  if (o.padding == ops::Padding::valid)
    require(shape[2] >= o.window_size && shape[3] >= o.window_size, ck.fn, ": 'valid' padding needs maps of at least ",
            o.window_size, "x", o.window_size, " (the window) but the inputs have shape ", shape.str());
  const auto w = ops::gaussian_window(o.window_size, o.sigma);
  rows = ops::detail::make_axis(shape[2], w, o.padding);
  cols = ops::detail::make_axis(shape[3], w, o.padding);
}
/// pytorch-msssim: valid along an axis at least as long as the window, no smoothing otherwise.
inline AxisPlan msssim_axis(std::int64_t n, const std::vector<double>& w) {
  return n >= static_cast<std::int64_t>(w.size()) ? ops::detail::make_axis(n, w, ops::Padding::valid)
                                                  : ops::detail::identity_axis(n);
}

inline Head make_head(const SsimOptions& o, ValueKind kind) {
  Head h;
  h.c1 = (o.k1 * o.max_val) * (o.k1 * o.max_val);
  h.c2 = (o.k2 * o.max_val) * (o.k2 * o.max_val);
  h.c3 = h.c2 / 2;
  h.eps = o.eps;
  h.alpha = o.alpha, h.beta = o.beta, h.gamma = o.gamma;
  h.set_kind(kind);
  return h;
}
inline Form form_of(const SsimOptions& o) {
  return (o.three_component || o.alpha != 1.0 || o.beta != 1.0 || o.gamma != 1.0) ? Form::three : Form::two_factor;
}
inline Head msssim_head(const MsSsimOptions& o) {
  Head h;
  h.c1 = (o.k1 * o.data_range) * (o.k1 * o.data_range);
  h.c2 = (o.k2 * o.data_range) * (o.k2 * o.data_range);
  h.c3 = h.c2 / 2;
  h.eps = 0;
  h.set_kind(ValueKind::index);
  return h;
}

// ---- one engine pass ----

/// One pass of the engine: the windowed-statistics pass' data, the SSIM constants and the form.
template <class In, class G>
struct Pass : expr::WindowStatsData<In, G> {
  Head head;
  Form form = Form::two_factor;
};

/// Runs P on its device with the head functor of P.form.
template <class In, class G>
void run_pass(Device device, Stream stream, const Pass<In, G>& P, const WindowScratch& ws) {
  const expr::WindowStatsData<In, G>& data = P;
  switch (P.form) {
    case Form::two_factor:
      kdloss::detail::window_stats(device, stream, expr::WindowStatsPass<In, G, SsimHead<Form::two_factor>>(data, {P.head}), ws);
      break;
    case Form::cs:
      kdloss::detail::window_stats(device, stream, expr::WindowStatsPass<In, G, SsimHead<Form::cs>>(data, {P.head}), ws);
      break;
    case Form::three:
      kdloss::detail::window_stats(device, stream, expr::WindowStatsPass<In, G, SsimHead<Form::three>>(data, {P.head}), ws);
      break;
  }
}

} } }  // namespace kdloss::ssim::detail
