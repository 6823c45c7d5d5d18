// kdloss_torch family "ssim": kornia's ssim / ssim_loss with the thesis options and the thesis' pyramid
// sum ssim_pyramid_loss (kdloss/losses/ssim/ssim.hpp), pytorch-msssim's ssim / ms_ssim and the l1 + MS-SSIM
// mixture (kdloss/losses/ssim/ms_ssim.hpp).
// docs/losses/ssim.md. Each binding runs one C++ entry point in one of three modes: forward (value),
// backward (grad_out * d value / d student, and / d teacher when asked and the C++ API offers it) or
// fused (value and d value / d student in one pass); kdloss_torch/ssim.py wraps them in autograd Functions.
#include "kdloss/losses/ssim/ssim.hpp"

#include "common.hpp"

namespace kdloss_torch {
namespace {

kdloss::ops::Padding padding_of(const std::string& p, const char* fn) {
  if (p == "reflect" || p == "same") return kdloss::ops::Padding::reflect;
  if (p == "zeros") return kdloss::ops::Padding::zeros;
  if (p == "valid") return kdloss::ops::Padding::valid;
  kdloss::detail::fail(fn, ": argument 'padding' must be 'same' (= 'reflect'), 'zeros' or 'valid' but is '", p, "'");
}

kdloss::ChannelReduction channel_reduction_of(const std::string& r, const char* fn) {
  if (r == "mean") return kdloss::ChannelReduction::mean;
  if (r == "per_image") return kdloss::ChannelReduction::per_image;
  if (r == "none") return kdloss::ChannelReduction::none;
  kdloss::detail::fail(fn, ": argument 'reduction' must be 'mean', 'per_image' or 'none' but is '", r, "'");
}

std::int64_t out_extent(std::int64_t n, int window, kdloss::ops::Padding p) {
  if (p != kdloss::ops::Padding::valid) return n;
  return n - window + 1 > 0 ? n - window + 1 : 0;
}

kdloss::SsimOptions ssim_options(const char* fn, int window_size, double sigma, double max_val, double k1, double k2,
                                 double alpha, double beta, double gamma, double eps, const std::string& padding,
                                 bool clamp, bool normalize, bool three_component) {
  kdloss::SsimOptions o;
  o.window_size = window_size;
  o.sigma = sigma;
  o.max_val = max_val;
  o.k1 = k1;
  o.k2 = k2;
  o.alpha = alpha;
  o.beta = beta;
  o.gamma = gamma;
  o.eps = eps;
  o.padding = padding_of(padding, fn);
  o.clamp = clamp;
  o.normalize = normalize;
  o.three_component = three_component;
  return o;
}

/// ssim_loss (kind "loss") or ssim_map (kind "map") -> (out | None, grad_student | None, grad_teacher | None).
py::tuple ssim(const std::string& kind, int mode_index, py::handle student, py::handle teacher, py::handle grad_out,
               bool want_student, bool want_teacher, int window_size, double sigma, double max_val, double k1,
               double k2, double alpha, double beta, double gamma, double eps, const std::string& padding, bool clamp,
               bool normalize, bool three_component, const std::string& reduction) {
  const bool map = kind == "map";
  if (!map && kind != "loss") kdloss::detail::fail("kdloss_torch.ssim: unknown kind '", kind, "'");
  const char* fn = map ? "kdloss_torch.ssim" : "kdloss_torch.ssim_loss";
  const Mode mode = mode_of(mode_index, fn);
  const Arg s = tensor_arg(student, fn, map ? "img1" : "student"), t = tensor_arg(teacher, fn, map ? "img2" : "teacher");
  const Arg up = tensor_arg(grad_out, fn, "grad_out", mode != Mode::backward);
  same_dtype(fn, s, t);
  same_dtype(fn, s, up);
  const kdloss::SsimOptions o = ssim_options(fn, window_size, sigma, max_val, k1, k2, alpha, beta, gamma, eps, padding,
                                             clamp, normalize, three_component);
  const kdloss::Reduction r = map ? kdloss::Reduction::none : reduction_of(reduction, fn);
  kdloss::detail::require(s.shape.rank == 4, fn, ": argument '", s.name, "' must be [B, C, H, W] but has ",
                          s.shape.rank, " dimensions");
  Output out, gs, gt;
  if (mode != Mode::backward) {
    if (r == kdloss::Reduction::none)
      out = empty(s, Dims{s.shape[0], s.shape[1], out_extent(s.shape[2], window_size, o.padding),
                          out_extent(s.shape[3], window_size, o.padding)},
                  "out");
    else
      out = empty(s, Dims{}, "out");
  }
  if (mode != Mode::forward) {
    if (want_student || mode == Mode::fused) gs = empty_like(student, "grad_student");
    if (want_teacher) gt = empty_like(teacher, "grad_teacher");
  }
  kdloss::detail::require(!(map && mode == Mode::fused), fn, ": internal: the map has no fused entry point");
  Call call(fn, s.device);
  dispatch(fn, s, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto sv = s.in<T>(), tv = t.in<T>();
    const kdloss::Exec ex = call.exec(workspace_bytes([&] { return kdloss::ssim_loss_workspace_bytes(sv, o); }));
    py::gil_scoped_release nogil;
    const View<T> g_s = gs.arg.out<T>(), g_t = gt.arg.out<T>();
    if (map) {
      if (mode == Mode::forward) kdloss::ssim_map(sv, tv, out.arg.out<T>(), o, ex);
      if (mode == Mode::backward) kdloss::ssim_map_backward(sv, tv, up.in<T>(), g_s, g_t, o, ex);
    } else {
      if (mode == Mode::forward) kdloss::ssim_loss(sv, tv, out.arg.out<T>(), o, r, ex);
      if (mode == Mode::backward) kdloss::ssim_loss_backward(sv, tv, up.in<T>(), g_s, g_t, o, r, ex);
      if (mode == Mode::fused) kdloss::ssim_loss_forward_backward(sv, tv, out.arg.out<T>(), g_s, g_t, o, r, ex);
    }
  });
  return py::make_tuple(out.tensor, gs.tensor, gt.tensor);
}

/// ssim_pyramid_loss (thesis eq. 1: the sum over levels of each level's mean loss)
/// -> (out | None, [grad_students[r] per level] | None). Every level gets a gradient in backward and
/// fused mode (the C++ API takes one per level); the teachers get none (the C++ API offers none).
py::tuple pyramid(int mode_index, const py::sequence& students, const py::sequence& teachers, py::handle grad_out,
                  int window_size, double sigma, double max_val, double k1, double k2, double alpha, double beta,
                  double gamma, double eps, const std::string& padding, bool clamp, bool normalize,
                  bool three_component) {
  const char* fn = "kdloss_torch.ssim_pyramid_loss";
  const Mode mode = mode_of(mode_index, fn);
  const std::size_t n = py::len(students), n_t = py::len(teachers);
  kdloss::detail::require(n > 0, fn, ": argument 'students' is empty; pass at least one pyramid level");
  kdloss::detail::require(n == n_t, fn, ": arguments 'students' and 'teachers' must have one tensor per level ",
                          "but have ", n, " student levels and ", n_t, " teacher levels");
  std::vector<Arg> s(n), t(n);
  for (std::size_t l = 0; l < n; ++l) {
    const std::string i = "[" + std::to_string(l) + "]";
    s[l] = tensor_arg(students[l], fn, ("students" + i).c_str());
    t[l] = tensor_arg(teachers[l], fn, ("teachers" + i).c_str());
  }
  const Arg up = tensor_arg(grad_out, fn, "grad_out", mode != Mode::backward);
  for (std::size_t l = 0; l < n; ++l) {
    same_dtype(fn, s[0], s[l]);
    same_dtype(fn, s[0], t[l]);
  }
  same_dtype(fn, s[0], up);
  const kdloss::SsimOptions o = ssim_options(fn, window_size, sigma, max_val, k1, k2, alpha, beta, gamma, eps, padding,
                                             clamp, normalize, three_component);
  Output out;
  if (mode != Mode::backward) out = empty(s[0], Dims{}, "out");
  std::vector<Output> gs(mode == Mode::forward ? 0 : n);
  for (std::size_t l = 0; l < gs.size(); ++l) gs[l] = empty_like(students[l], "grad_students");
  Call call(fn, s[0].device);
  dispatch(fn, s[0], [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::vector<View<const T>> sv, tv;
    std::vector<View<T>> gv;
    for (std::size_t l = 0; l < n; ++l) sv.push_back(s[l].in<T>()), tv.push_back(t[l].in<T>());
    for (const Output& g : gs) gv.push_back(g.arg.out<T>());
    const kdloss::Exec ex =
        call.exec(workspace_bytes([&] { return kdloss::ssim_pyramid_loss_workspace_bytes(sv, o); }));
    py::gil_scoped_release nogil;
    if (mode == Mode::forward) kdloss::ssim_pyramid_loss(sv, tv, out.arg.out<T>(), o, ex);
    if (mode == Mode::backward) kdloss::ssim_pyramid_loss_backward(sv, tv, up.in<T>(), gv, o, ex);
    if (mode == Mode::fused) kdloss::ssim_pyramid_loss_forward_backward(sv, tv, out.arg.out<T>(), gv, o, ex);
  });
  if (mode == Mode::forward) return py::make_tuple(out.tensor, py::none());
  py::list grads;
  for (const Output& g : gs) grads.append(g.tensor);
  return py::make_tuple(out.tensor, grads);
}

/// ssim_index (kind "index"), ms_ssim ("ms") or ms_ssim_l1_loss ("mixture")
/// -> (out | None, grad_student | None, grad_teacher | None). The mixture has no teacher gradient.
py::tuple ms(const std::string& kind, int mode_index, py::handle student, py::handle teacher, py::handle grad_out,
             bool want_student, bool want_teacher, int window_size, double sigma, double data_range, double k1,
             double k2, bool nonnegative_ssim, const std::vector<double>& weights, bool normalize, double l1_weight,
             const std::string& reduction) {
  int which;
  const char* fn;
  if (kind == "index") {
    which = 0;
    fn = "kdloss_torch.ssim_index";
  } else if (kind == "ms") {
    which = 1;
    fn = "kdloss_torch.ms_ssim";
  } else if (kind == "mixture") {
    which = 2;
    fn = "kdloss_torch.ms_ssim_l1_loss";
  } else {
    kdloss::detail::fail("kdloss_torch.ssim_ms: unknown kind '", kind, "'");
  }
  const Mode mode = mode_of(mode_index, fn);
  const Arg s = tensor_arg(student, fn, which == 2 ? "student" : "X"),
            t = tensor_arg(teacher, fn, which == 2 ? "teacher" : "Y");
  const Arg up = tensor_arg(grad_out, fn, "grad_out", mode != Mode::backward);
  same_dtype(fn, s, t);
  same_dtype(fn, s, up);
  kdloss::MsSsimL1Options mo;
  kdloss::MsSsimOptions& o = mo.ms_ssim;
  o.window_size = window_size;
  o.sigma = sigma;
  o.data_range = data_range;
  o.k1 = k1;
  o.k2 = k2;
  o.nonnegative_ssim = nonnegative_ssim;
  o.weights = weights;
  o.normalize = normalize;
  mo.l1_weight = l1_weight;
  const kdloss::ChannelReduction r =
      which == 2 ? kdloss::ChannelReduction::mean : channel_reduction_of(reduction, fn);
  kdloss::detail::require(s.shape.rank == 4, fn, ": argument '", s.name, "' must be [B, C, H, W] but has ",
                          s.shape.rank, " dimensions");
  kdloss::detail::require(!(which == 2 && want_teacher), fn,
                          ": kdloss::ms_ssim_l1_loss has no teacher gradient (the teacher gets None)");
  Output out, gs, gt;
  if (mode != Mode::backward) {
    if (r == kdloss::ChannelReduction::mean)
      out = empty(s, Dims{}, "out");
    else if (r == kdloss::ChannelReduction::per_image)
      out = empty(s, Dims{s.shape[0]}, "out");
    else
      out = empty(s, Dims{s.shape[0], s.shape[1]}, "out");
  }
  if (mode != Mode::forward) {
    if (want_student || mode == Mode::fused) gs = empty_like(student, "grad_student");
    if (want_teacher && mode == Mode::backward) gt = empty_like(teacher, "grad_teacher");
  }
  Call call(fn, s.device);
  dispatch(fn, s, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto sv = s.in<T>(), tv = t.in<T>();
    const kdloss::Exec ex = call.exec(workspace_bytes([&]() -> std::size_t {
      if (which == 0) return kdloss::ssim_index_workspace_bytes(sv, o);
      if (which == 1) return kdloss::ms_ssim_workspace_bytes(sv, o);
      return kdloss::ms_ssim_l1_loss_workspace_bytes(sv, mo);
    }));
    py::gil_scoped_release nogil;
    const View<T> o_v = out.arg.out<T>(), g_s = gs.arg.out<T>(), g_t = gt.arg.out<T>();
    const View<const T> u = up.in<T>();
    if (which == 0) {
      if (mode == Mode::forward) kdloss::ssim_index(sv, tv, o_v, o, r, ex);
      if (mode == Mode::backward) kdloss::ssim_index_backward(sv, tv, u, g_s, g_t, o, r, ex);
      if (mode == Mode::fused) kdloss::ssim_index_forward_backward(sv, tv, o_v, g_s, o, r, ex);
    } else if (which == 1) {
      if (mode == Mode::forward) kdloss::ms_ssim(sv, tv, o_v, o, r, ex);
      if (mode == Mode::backward) kdloss::ms_ssim_backward(sv, tv, u, g_s, g_t, o, r, ex);
      if (mode == Mode::fused) kdloss::ms_ssim_forward_backward(sv, tv, o_v, g_s, o, r, ex);
    } else {
      if (mode == Mode::forward) kdloss::ms_ssim_l1_loss(sv, tv, o_v, mo, ex);
      if (mode == Mode::backward) kdloss::ms_ssim_l1_loss_backward(sv, tv, u, g_s, mo, ex);
      if (mode == Mode::fused) kdloss::ms_ssim_l1_loss_forward_backward(sv, tv, o_v, g_s, mo, ex);
    }
  });
  return py::make_tuple(out.tensor, gs.tensor, gt.tensor);
}

}  // namespace
}  // namespace kdloss_torch

KDLOSS_TORCH_FAMILY(ssim, m) {
  using namespace pybind11::literals;
  namespace kt = kdloss_torch;
  m.def("ssim_ssim", &kt::ssim, "kind"_a, "mode"_a, "student"_a, "teacher"_a, "grad_out"_a, "want_student"_a,
        "want_teacher"_a, "window_size"_a, "sigma"_a, "max_val"_a, "k1"_a, "k2"_a, "alpha"_a, "beta"_a, "gamma"_a,
        "eps"_a, "padding"_a, "clamp"_a, "normalize"_a, "three_component"_a, "reduction"_a,
        "kdloss::ssim_loss / ssim_map [_backward|_forward_backward] -> (out | None, grad_s | None, grad_t | None)");
  m.def("ssim_pyramid", &kt::pyramid, "mode"_a, "students"_a, "teachers"_a, "grad_out"_a, "window_size"_a, "sigma"_a,
        "max_val"_a, "k1"_a, "k2"_a, "alpha"_a, "beta"_a, "gamma"_a, "eps"_a, "padding"_a, "clamp"_a, "normalize"_a,
        "three_component"_a,
        "kdloss::ssim_pyramid_loss [_backward|_forward_backward] -> (out | None, [grad_students[r]] | None)");
  m.def("ssim_ms", &kt::ms, "kind"_a, "mode"_a, "student"_a, "teacher"_a, "grad_out"_a, "want_student"_a,
        "want_teacher"_a, "window_size"_a, "sigma"_a, "data_range"_a, "k1"_a, "k2"_a, "nonnegative_ssim"_a,
        "weights"_a, "normalize"_a, "l1_weight"_a, "reduction"_a,
        "kdloss::ssim_index / ms_ssim / ms_ssim_l1_loss [_backward|_forward_backward] -> (out | None, grad_s | None, "
        "grad_t | None)");
}
