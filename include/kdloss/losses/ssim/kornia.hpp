// kdloss/losses/ssim/kornia.hpp: kornia's ssim and ssim_loss, and the structural-distillation loss
// of de Rijk et al. (SSIM with exponents, the normalisation nu and the sum over pyramid levels
// with the per-level mean 1/N_r of the thesis' equation 1). Formulas, conventions and the backward
// are in docs/losses/ssim.md and reference section 3.1.
//
// One engine pass per call (the windowed-statistics pass of expr/window_stats.hpp with the SSIM
// head of losses/ssim/head.hpp): the forward computes the five window statistics and the per-pixel
// value; the backward recomputes them (nothing per-pixel is stored between forward and backward)
// and applies the adjoint filter, reflect fold and valid crop included. With `normalize`, a per-plane min/max pass runs first and a per-plane
// correction pass after the backward.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kdloss/config.hpp"
#include "kdloss/losses/ssim/engine.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace ssim {

using expr::AxisPlan;

/// Arguments shared by ssim_loss and ssim_map: [B, C, H, W] student (x) and teacher (y) views
/// with any strides on one device; `out` for the value, `grad_out` (upstream gradient) for
/// backward, grad_student / grad_teacher (either may be absent, not both) for the gradients.
template <class T>
struct SsimPairArgs {
  View<const T> student{}, teacher{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_student{}, grad_teacher{};
  SsimOptions options{};
};
/// Arguments of ssim_loss: out holds one element (mean, sum) or the loss map [B, C, Ho, Wo] (none);
/// grad_out has out's shape.
template <class T>
struct SsimLossArgs : SsimPairArgs<T> {
  Reduction reduction = Reduction::mean;
};
/// Arguments of ssim_map (kornia.metrics.ssim): out and grad_out are the map [B, C, Ho, Wo].
template <class T>
struct SsimMapArgs : SsimPairArgs<T> {};
/// Arguments of ssim_pyramid_loss: one student and one teacher view per level, one element out,
/// one grad_students view per level for backward.
template <class T>
struct SsimPyramidLossArgs {
  std::vector<View<const T>> students{}, teachers{};
  View<T> out{};
  View<const T> grad_out{};
  std::vector<View<T>> grad_students{};
  SsimOptions options{};
};

namespace detail {

/// Workspace pieces of one SSIM level.
template <class Acc>
struct LevelScratch {
  WindowScratch pass;         // engine rows (host) or partials (GPU)
  double* sums = nullptr;     // per-plane sums
  MinMaxNorm* norm = nullptr; // nu statistics
};
template <class Acc>
LevelScratch<Acc> carve_level(Carver& carver, Device device, const AxisPlan& rows, const AxisPlan& cols,
                              std::int64_t planes, bool normalize) {
  LevelScratch<Acc> s;
  s.pass = kdloss::detail::carve_window_stats<Acc>(carver, device, &rows, &cols, 1, planes);
  s.sums = carver.take<double>(static_cast<std::size_t>(planes > 0 ? planes : 1));
  if (normalize) s.norm = carver.take<MinMaxNorm>(static_cast<std::size_t>(planes > 0 ? planes : 1));
  return s;
}
template <class T>
std::size_t level_bytes(const Checker& ck, const View<const T>& s, const SsimOptions& o) {
  AxisPlan rows, cols;
  plan_axes(ck, s.shape, o, rows, cols);
  Carver carver;
  carve_level<acc_t<T>>(carver, s.device, rows, cols, s.shape[0] * s.shape[1], o.normalize);
  return carver.bytes();
}

/// What one level computes: a value map and/or per-plane sums, and/or gradients.
template <class T>
struct LevelJob {
  T* map = nullptr;
  std::int64_t map_s[4] = {};
  bool sums = false;
  double sum_scale = 1;
  const T* up_scalar = nullptr;
  double up_factor = 1;
  View<const T> up_map;  // rank 0 when absent
  View<T> gs, gt;        // absent when rank 0 and null
};

/// Runs one level. `sums_out` receives the per-plane sums when job.sums (it may live outside the
/// level's scratch, so a pyramid can keep every level's sums side by side).
template <class T>
void run_level(Device device, Stream stream, const View<const T>& s, const View<const T>& t, const SsimOptions& o,
               ValueKind kind, const LevelScratch<acc_t<T>>& ws, const AxisPlan& rows, const AxisPlan& cols,
               const LevelJob<T>& job, double* sums_out) {
  Pass<T, T> P;
  P.batch = s.shape[0];
  P.channels = s.shape[1];
  P.rows = rows;
  P.cols = cols;
  P.x = s.data;
  P.y = t.data;
  strides4(s, P.xs);
  strides4(t, P.ys);
  P.head = make_head(o, kind);
  P.form = form_of(o);
  if (o.normalize) {
    ops::detail::minmax_norm(stream, s, t, ws.norm);
    P.norm = ws.norm;
  }
  P.map = job.map;
  for (int d = 0; d < 4; ++d) P.map_s[d] = job.map_s[d];
  if (job.sums) {
    P.plane_sums = sums_out;
    P.sum_scale = job.sum_scale;
  }
  const bool want_s = present(job.gs), want_t = present(job.gt);
  if (want_s || want_t) {
    P.up_scalar = job.up_scalar;
    P.up_factor = job.up_factor;
    if (present(job.up_map)) {
      P.up_map = job.up_map.data;
      strides4(job.up_map, P.up_s);
    }
    if (want_s) P.gx = job.gs.data, strides4(job.gs, P.gx_s);
    if (want_t) P.gy = job.gt.data, strides4(job.gt, P.gy_s);
  }
  run_pass(device, stream, P, ws.pass);
  if (o.normalize) {
    if (want_s) ops::detail::minmax_norm_backward(stream, s, job.gs, ws.norm, 0);
    if (want_t) ops::detail::minmax_norm_backward(stream, t, job.gt, ws.norm, 1);
  }
}

inline Dims out_shape(const Dims& in, const AxisPlan& rows, const AxisPlan& cols) {
  return Dims{in[0], in[1], rows.n_out, cols.n_out};
}
inline ValueKind loss_kind(const SsimOptions& o) { return o.clamp ? ValueKind::clamped_loss : ValueKind::half_loss; }

/// Validates an ssim_loss / ssim_map call and plans its axes.
template <class T>
void ssim_check(const char* fn, Mode mode, const SsimPairArgs<T>& a, Reduction r, AxisPlan& rows, AxisPlan& cols) {
  const Checker ck{fn};
  const View<const T>& s = a.student;
  const View<const T>& t = a.teacher;
  const View<T>& out = a.out;
  const View<const T>& grad_out = a.grad_out;
  const View<T>& gs = a.grad_student;
  const View<T>& gt = a.grad_teacher;
  const SsimOptions& o = a.options;
  check_pair(ck, s, t);
  check_options(ck, o);
  require(r != Reduction::batchmean, fn, ": argument 'reduction' is batchmean, which only kl_div offers; use mean, sum or none");
  plan_axes(ck, s.shape, o, rows, cols);
  const Dims oshape = out_shape(s.shape, rows, cols);
  const bool none = r == Reduction::none;
  if (mode != Mode::backward) {
    ck.device(out, "out", s.device);
    if (none) {
      ck.not_null(out, "out");
      ck.shape(out, "out", oshape);
      ck.unique(out, "out");
    } else {
      ck.scalar_output(out, "out");
    }
    ck.disjoint(out, "out", s, "student");
    ck.disjoint(out, "out", t, "teacher");
  }
  if (mode == Mode::backward) {
    ck.device(grad_out, "grad_out", s.device);
    if (none) {
      ck.not_null(grad_out, "grad_out");
      ck.shape(grad_out, "grad_out", oshape);
    } else {
      require(grad_out.numel() == 1, fn,
              ": argument 'grad_out' must hold one element (the upstream gradient of the reduced loss) but has shape ",
              grad_out.shape.str());
      ck.not_null(grad_out, "grad_out");
    }
  }
  const bool want_s = present(gs), want_t = present(gt);
  if (mode != Mode::forward) {
    require(want_s || want_t, fn, ": no gradient requested: 'grad_student' and 'grad_teacher' are both absent");
    if (want_s) check_grad(ck, s, gs, "grad_student", s, t);
    if (want_t) check_grad(ck, s, gt, "grad_teacher", s, t);
    if (want_s && want_t) ck.disjoint(gs, "grad_student", View<const T>(gt), "grad_teacher");
    if (mode == Mode::backward) {
      if (want_s) ck.disjoint(gs, "grad_student", grad_out, "grad_out");
      if (want_t) ck.disjoint(gt, "grad_teacher", grad_out, "grad_out");
    } else {
      if (want_s) ck.disjoint(gs, "grad_student", View<const T>(out), "out");
      if (want_t) ck.disjoint(gt, "grad_teacher", View<const T>(out), "out");
    }
  }
}

template <class T>
std::size_t ssim_bytes(const char* fn, const SsimPairArgs<T>& a) {
  const Checker ck{fn};
  ck.rank(a.student, "student", 4);
  return level_bytes(ck, a.student, a.options);
}

/// ssim_loss and ssim_map on one level: check, then one engine pass (+ nu steps, + the sum).
template <class T>
void ssim_run(const char* fn, Mode mode, ValueKind kind, const SsimPairArgs<T>& a, Reduction r, const Exec& exec) {
  AxisPlan rows, cols;
  ssim_check(fn, mode, a, r, rows, cols);
  const View<const T>& s = a.student;
  const Dims oshape = out_shape(s.shape, rows, cols);
  const bool none = r == Reduction::none;
  const std::int64_t planes = s.shape[0] * s.shape[1];
  kdloss::detail::HostScratch scratch;
  Carver carver(
      kdloss::detail::resolve_workspace(fn, s.device, exec.workspace, level_bytes(Checker{fn}, s, a.options), scratch));
  const auto ws = carve_level<acc_t<T>>(carver, s.device, rows, cols, planes, a.options.normalize);

  const double scale = r == Reduction::mean ? (oshape.product() > 0 ? 1.0 / static_cast<double>(oshape.product()) : 0.0)
                                            : 1.0;
  LevelJob<T> job;
  if (mode != Mode::backward) {
    if (none) {
      job.map = a.out.data;
      strides4(a.out, job.map_s);
    } else {
      job.sums = true;
      job.sum_scale = scale;
    }
  }
  if (mode != Mode::forward) {
    job.gs = a.grad_student;
    job.gt = a.grad_teacher;
    if (mode == Mode::backward) {
      if (none) job.up_map = a.grad_out;
      else job.up_scalar = a.grad_out.data, job.up_factor = scale;
    } else {
      job.up_factor = none ? 1.0 : scale;
    }
  }
  run_level(s.device, exec.stream, s, a.teacher, a.options, kind, ws, rows, cols, job, ws.sums);
  if (job.sums) ops::detail::store_sum(s.device, exec.stream, ws.sums, planes, kdloss::detail::Keep{}, a.out.data);
}

/// Validates a pyramid call and plans every level.
template <class T>
void pyramid_check(const char* fn, Mode mode, const SsimPyramidLossArgs<T>& a, std::vector<AxisPlan>& rows,
                   std::vector<AxisPlan>& cols) {
  const Checker ck{fn};
  const auto& ss = a.students;
  const auto& ts = a.teachers;
  const auto& gs = a.grad_students;
  const SsimOptions& o = a.options;
  require(!ss.empty(), fn, ": argument 'students' is empty; pass at least one pyramid level");
  require(ss.size() == ts.size(), fn, ": arguments 'students' and 'teachers' must have one view per level but have ",
          ss.size(), " student levels but ", ts.size(), " teacher levels");
  if (mode != Mode::forward)
    require(gs.size() == ss.size(), fn, ": argument 'grad_students' must have one view per level (", ss.size(),
            ") but has ", gs.size());
  check_options(ck, o);
  const Device device = ss[0].device;
  rows.assign(ss.size(), AxisPlan{});
  cols.assign(ss.size(), AxisPlan{});
  // Messages name the level: 'students[1]', 'teachers[1]', 'grad_students[1]'.
  const auto name = [](const char* what, std::size_t l) { return std::string(what) + "[" + std::to_string(l) + "]"; };
  for (std::size_t l = 0; l < ss.size(); ++l) {
    const std::string sn = name("students", l), tn = name("teachers", l);
    check_pair(ck, ss[l], ts[l], sn.c_str(), tn.c_str());
    ck.device(ss[l], sn.c_str(), device);
    plan_axes(ck, ss[l].shape, o, rows[l], cols[l]);
    if (mode != Mode::forward) {
      const std::string gn = name("grad_students", l);
      check_grad(ck, ss[l], gs[l], gn.c_str(), ss[l], ts[l], sn.c_str(), tn.c_str());
      for (std::size_t m = 0; m < l; ++m)
        ck.disjoint(gs[l], gn.c_str(), View<const T>(gs[m]), name("grad_students", m).c_str());
    }
  }
  if (mode != Mode::backward) {
    ck.device(a.out, "out", device);
    ck.scalar_output(a.out, "out");
    for (std::size_t l = 0; l < ss.size(); ++l) {
      ck.disjoint(a.out, "out", ss[l], name("students", l).c_str());
      ck.disjoint(a.out, "out", ts[l], name("teachers", l).c_str());
      if (mode == Mode::forward_backward)
        ck.disjoint(gs[l], name("grad_students", l).c_str(), View<const T>(a.out), "out");
    }
  } else {
    ck.device(a.grad_out, "grad_out", device);
    require(a.grad_out.numel() == 1, fn, ": argument 'grad_out' must hold one element but has shape ",
            a.grad_out.shape.str());
    ck.not_null(a.grad_out, "grad_out");
    for (std::size_t l = 0; l < ss.size(); ++l)
      ck.disjoint(gs[l], name("grad_students", l).c_str(), a.grad_out, "grad_out");
  }
}

template <class T>
std::size_t pyramid_bytes(const char* fn, const std::vector<View<const T>>& ss, const SsimOptions& o) {
  const Checker ck{fn};
  std::size_t bytes = 0;
  std::int64_t planes = 0;
  for (const auto& s : ss) {
    ck.rank(s, "students", 4);
    bytes += level_bytes(ck, s, o);
    planes += s.shape[0] * s.shape[1];
  }
  Carver sizer;
  sizer.take<double>(static_cast<std::size_t>(planes > 0 ? planes : 1));
  return bytes + sizer.bytes();
}

/// The pyramid loss of equation 1: sum over levels of the level's mean loss.
template <class T>
void pyramid_run(const char* fn, Mode mode, const SsimPyramidLossArgs<T>& a, const Exec& exec) {
  std::vector<AxisPlan> rows, cols;
  pyramid_check(fn, mode, a, rows, cols);
  const auto& ss = a.students;
  const SsimOptions& o = a.options;
  const Device device = ss[0].device;
  std::int64_t total_planes = 0;
  for (const auto& s : ss) total_planes += s.shape[0] * s.shape[1];
  kdloss::detail::HostScratch scratch;
  Carver carver(kdloss::detail::resolve_workspace(fn, device, exec.workspace, pyramid_bytes(fn, ss, o), scratch));
  double* all_sums = carver.take<double>(static_cast<std::size_t>(total_planes > 0 ? total_planes : 1));
  std::int64_t offset = 0;
  for (std::size_t l = 0; l < ss.size(); ++l) {
    const std::int64_t planes = ss[l].shape[0] * ss[l].shape[1];
    const auto ws = carve_level<acc_t<T>>(carver, device, rows[l], cols[l], planes, o.normalize);
    const std::int64_t n = out_shape(ss[l].shape, rows[l], cols[l]).product();
    const double scale = n > 0 ? 1.0 / static_cast<double>(n) : 0.0;
    LevelJob<T> job;
    if (mode != Mode::backward) job.sums = true, job.sum_scale = scale;
    if (mode != Mode::forward) {
      job.gs = a.grad_students[l];
      job.up_factor = scale;
      if (mode == Mode::backward) job.up_scalar = a.grad_out.data;
    }
    run_level(device, exec.stream, ss[l], a.teachers[l], o, loss_kind(o), ws, rows[l], cols[l], job,
              all_sums + offset);
    offset += planes;
  }
  if (mode != Mode::backward)
    ops::detail::store_sum(device, exec.stream, all_sums, total_planes, kdloss::detail::Keep{}, a.out.data);
}

inline constexpr EntryNames kSsimLoss{"kdloss::ssim_loss", "kdloss::ssim_loss_backward",
                                      "kdloss::ssim_loss_forward_backward"};
inline constexpr EntryNames kSsimMap{"kdloss::ssim_map", "kdloss::ssim_map_backward",
                                     "kdloss::ssim_map_forward_backward"};
inline constexpr EntryNames kPyramid{"kdloss::ssim_pyramid_loss", "kdloss::ssim_pyramid_loss_backward",
                                     "kdloss::ssim_pyramid_loss_forward_backward"};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Entry points (core/entry.hpp): <entry>_check(args, mode), <entry>_workspace_bytes(args),
// <entry>(args, mode, exec). Float and double on both backends, half and bfloat16 on the GPU
// (accumulated in float). Reductions: mean (over all B*C*Ho*Wo loss pixels, kornia's), sum, none
// (the per-pixel map [B, C, Ho, Wo]; Ho = H for 'same' padding, H - window + 1 for 'valid').
// Backward computes grad_out * d(out)/d(student) (and d(out)/d(teacher) when grad_teacher is
// present); forward_backward writes the value and the gradient of the value itself (of the sum of
// the map for reduction none). On the host a null workspace is allowed. Nothing is written when a
// call throws.

/// Throws kdloss::Error naming the argument and the shapes unless `args` is a valid ssim_loss call
/// in `mode`; writes nothing.
///
///   kdloss::ssim::SsimLossArgs<float> a;
///   a.student = s; a.teacher = t; a.out = kdloss::host_scalar(&loss);
///   kdloss::ssim::ssim_loss_check(a, kdloss::Mode::forward);
template <class T>
void ssim_loss_check(const SsimLossArgs<T>& args, Mode mode) {
  AxisPlan rows, cols;
  detail::ssim_check("kdloss::ssim_loss_check", mode, args, args.reduction, rows, cols);
}
/// Workspace bytes of ssim_loss(args, mode) for every mode (host: the engine's per-thread rows,
/// for max_threads() threads; GPU: per-block partial sums and per-plane values).
///
///   std::size_t bytes = kdloss::ssim::ssim_loss_workspace_bytes(a);
template <class T>
std::size_t ssim_loss_workspace_bytes(const SsimLossArgs<T>& args) {
  return detail::ssim_bytes("kdloss::ssim_loss_workspace_bytes", args);
}
/// The SSIM loss (1 - S)/2 per pixel, clamped to [0, 1] unless options.clamp is false (kornia's
/// ssim_loss; thesis equation 4 with exponents and nu as SsimOptions sets them).
///
///   kdloss::ssim::ssim_loss(a, kdloss::Mode::forward_backward, {{scratch, bytes}, kdloss::Stream(stream)});
template <class T>
void ssim_loss(const SsimLossArgs<T>& args, Mode mode, const Exec& exec = {}) {
  detail::ssim_run(detail::kSsimLoss(mode), mode, detail::loss_kind(args.options), args, args.reduction, exec);
}

/// ssim_map's check (see ssim_loss_check).
///
///   kdloss::ssim::SsimMapArgs<float> m;
///   m.student = x; m.teacher = y; m.out = kdloss::host_view(map.data(), {2, 3, 64, 64});
///   kdloss::ssim::ssim_map_check(m, kdloss::Mode::forward);
template <class T>
void ssim_map_check(const SsimMapArgs<T>& args, Mode mode) {
  AxisPlan rows, cols;
  detail::ssim_check("kdloss::ssim_map_check", mode, args, Reduction::none, rows, cols);
}
///   std::size_t bytes = kdloss::ssim::ssim_map_workspace_bytes(m);
template <class T>
std::size_t ssim_map_workspace_bytes(const SsimMapArgs<T>& args) {
  return detail::ssim_bytes("kdloss::ssim_map_workspace_bytes", args);
}
/// kornia.metrics.ssim: the SSIM map S [B, C, Ho, Wo] (options.clamp is not used); backward:
/// grad = d <grad_out, S> / d(student, teacher).
///
///   kdloss::ssim::ssim_map(m, kdloss::Mode::forward);
template <class T>
void ssim_map(const SsimMapArgs<T>& args, Mode mode, const Exec& exec = {}) {
  detail::ssim_run(detail::kSsimMap(mode), mode, detail::ValueKind::index, args, Reduction::none, exec);
}

/// ssim_pyramid_loss's check.
///
///   kdloss::ssim::SsimPyramidLossArgs<float> p;
///   p.students = {p2_s, p3_s}; p.teachers = {p2_t, p3_t}; p.out = kdloss::host_scalar(&loss);
///   kdloss::ssim::ssim_pyramid_loss_check(p, kdloss::Mode::forward);
template <class T>
void ssim_pyramid_loss_check(const SsimPyramidLossArgs<T>& args, Mode mode) {
  std::vector<AxisPlan> rows, cols;
  detail::pyramid_check("kdloss::ssim_pyramid_loss_check", mode, args, rows, cols);
}
///   std::size_t bytes = kdloss::ssim::ssim_pyramid_loss_workspace_bytes(p);
template <class T>
std::size_t ssim_pyramid_loss_workspace_bytes(const SsimPyramidLossArgs<T>& args) {
  return detail::pyramid_bytes("kdloss::ssim_pyramid_loss_workspace_bytes", args.students, args.options);
}
/// Thesis equation 1: sum over pyramid levels r of (1/N_r) * sum of the level's SSIM loss map
/// (N_r = B*C*Ho*Wo, kornia's mean per level). One element out.
///
///   kdloss::ssim::ssim_pyramid_loss(p, kdloss::Mode::forward);
template <class T>
void ssim_pyramid_loss(const SsimPyramidLossArgs<T>& args, Mode mode, const Exec& exec = {}) {
  detail::pyramid_run(detail::kPyramid(mode), mode, args, exec);
}

// ---------------------------------------------------------------------------------------------
// Thin wrappers that read like PyTorch (and keep the names user code and the bridge call).

namespace detail {
template <class T, class S, class Tt>
SsimLossArgs<T> loss_args(const View<S>& s, const View<Tt>& t, const SsimOptions& o, Reduction r) {
  SsimLossArgs<T> a;
  a.student = s;
  a.teacher = t;
  a.options = o;
  a.reduction = r;
  return a;
}
template <class T, class S, class Tt>
SsimMapArgs<T> map_args(const View<S>& s, const View<Tt>& t, const SsimOptions& o) {
  SsimMapArgs<T> a;
  a.student = s;
  a.teacher = t;
  a.options = o;
  return a;
}
}  // namespace detail

/// The SSIM loss (1 - S)/2 per pixel, clamped to [0, 1] (kornia.losses.ssim_loss with the default
/// options; thesis equation 4 with exponents, nu and clamp as SsimOptions sets them).
///
///   float loss;
///   auto s = kdloss::host_view(s_ptr, {2, 256, 100, 167}), t = kdloss::host_view(t_ptr, {2, 256, 100, 167});
///   kdloss::ssim_loss(s, t, kdloss::host_scalar(&loss));   // kornia ssim_loss(s, t, window_size=11)
///
///   // GPU, on a stream, with the workspace the query asks for:
///   std::size_t bytes = kdloss::ssim_loss_workspace_bytes(s_dev);
///   kdloss::ssim_loss(s_dev, t_dev, kdloss::cuda_scalar(d_loss), {}, kdloss::Reduction::mean,
///                     {{d_scratch, bytes}, kdloss::Stream(stream)});
template <class S, class Tt, class O>
void ssim_loss(const View<S>& student, const View<Tt>& teacher, const View<O>& out, const SsimOptions& options = {},
               Reduction reduction = Reduction::mean, const Exec& exec = {}) {
  auto a = detail::loss_args<O>(student, teacher, options, reduction);
  a.out = out;
  ssim_loss(a, Mode::forward, exec);
}

/// grad_student = grad_out * d ssim_loss / d student. grad_out holds one element (mean/sum) or
/// the loss map's shape (none), on the call's device. The statistics are recomputed.
///
///   float one = 1.0f;
///   kdloss::ssim_loss_backward(s, t, kdloss::host_scalar<const float>(&one), kdloss::host_view(gs, {2, 256, 100, 167}));
template <class S, class Tt, class G, class O>
void ssim_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                        const View<O>& grad_student, const SsimOptions& options = {},
                        Reduction reduction = Reduction::mean, const Exec& exec = {}) {
  ssim_loss_backward(student, teacher, grad_out, grad_student, View<O>{}, options, reduction, exec);
}
/// As above, and grad_teacher = grad_out * d ssim_loss / d teacher too (either gradient view may
/// be absent: View<float>{}).
///
///   kdloss::ssim_loss_backward(s, t, one_view, gs_view, gt_view);
template <class S, class Tt, class G, class O>
void ssim_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                        const View<O>& grad_student, const View<O>& grad_teacher, const SsimOptions& options = {},
                        Reduction reduction = Reduction::mean, const Exec& exec = {}) {
  auto a = detail::loss_args<O>(student, teacher, options, reduction);
  a.grad_out = grad_out;
  a.grad_student = grad_student;
  a.grad_teacher = grad_teacher;
  ssim_loss(a, Mode::backward, exec);
}

/// The loss and d loss / d student in one call (one engine pass: statistics, value and adjoint).
///
///   kdloss::ssim_loss_forward_backward(s, t, kdloss::host_scalar(&loss), kdloss::host_view(gs, {2, 256, 100, 167}));
template <class S, class Tt, class O>
void ssim_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                                const View<O>& grad_student, const SsimOptions& options = {},
                                Reduction reduction = Reduction::mean, const Exec& exec = {}) {
  ssim_loss_forward_backward(student, teacher, out, grad_student, View<O>{}, options, reduction, exec);
}
///   kdloss::ssim_loss_forward_backward(s, t, kdloss::host_scalar(&loss), gs_view, gt_view);
template <class S, class Tt, class O>
void ssim_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                                const View<O>& grad_student, const View<O>& grad_teacher,
                                const SsimOptions& options = {}, Reduction reduction = Reduction::mean,
                                const Exec& exec = {}) {
  auto a = detail::loss_args<O>(student, teacher, options, reduction);
  a.out = out;
  a.grad_student = grad_student;
  a.grad_teacher = grad_teacher;
  ssim_loss(a, Mode::forward_backward, exec);
}

/// Workspace bytes of ssim_loss calls on these inputs (every mode and reduction).
///
///   std::size_t bytes = kdloss::ssim_loss_workspace_bytes(kdloss::cuda_view<const float>(d_s, {2, 256, 100, 167}));
template <class S>
std::size_t ssim_loss_workspace_bytes(const View<S>& student, const SsimOptions& options = {}) {
  using T = std::remove_cv_t<S>;
  return ssim_loss_workspace_bytes(detail::loss_args<T>(student, View<const T>{}, options, Reduction::mean));
}

/// kornia.metrics.ssim: the SSIM map S [B, C, Ho, Wo] (options.clamp is not used).
///
///   std::vector<float> map(2 * 3 * 64 * 64);
///   kdloss::ssim_map(x, y, kdloss::host_view(map.data(), {2, 3, 64, 64}));
template <class X, class Y, class O>
void ssim_map(const View<X>& x, const View<Y>& y, const View<O>& out, const SsimOptions& options = {},
              const Exec& exec = {}) {
  auto a = detail::map_args<O>(x, y, options);
  a.out = out;
  ssim_map(a, Mode::forward, exec);
}
/// grad_x = d <grad_map, S> / d x (and grad_y when given), grad_map of the map's shape.
///
///   kdloss::ssim_map_backward(x, y, kdloss::host_view<const float>(g_map, {2, 3, 64, 64}), gx_view);
template <class X, class Y, class G, class O>
void ssim_map_backward(const View<X>& x, const View<Y>& y, const View<G>& grad_map, const View<O>& grad_x,
                       const SsimOptions& options = {}, const Exec& exec = {}) {
  ssim_map_backward(x, y, grad_map, grad_x, View<O>{}, options, exec);
}
///   kdloss::ssim_map_backward(x, y, g_map_view, gx_view, gy_view);
template <class X, class Y, class G, class O>
void ssim_map_backward(const View<X>& x, const View<Y>& y, const View<G>& grad_map, const View<O>& grad_x,
                       const View<O>& grad_y, const SsimOptions& options = {}, const Exec& exec = {}) {
  auto a = detail::map_args<O>(x, y, options);
  a.grad_out = grad_map;
  a.grad_student = grad_x;
  a.grad_teacher = grad_y;
  ssim_map(a, Mode::backward, exec);
}
/// Workspace bytes of ssim_map calls on these inputs.
///
///   std::size_t bytes = kdloss::ssim_map_workspace_bytes(x_dev);
template <class S>
std::size_t ssim_map_workspace_bytes(const View<S>& x, const SsimOptions& options = {}) {
  using T = std::remove_cv_t<S>;
  return ssim_map_workspace_bytes(detail::map_args<T>(x, View<const T>{}, options));
}

/// Thesis equation 1 over the pyramid levels (see ssim_pyramid_loss(args, mode)).
///
///   std::vector<kdloss::View<const float>> s = {p2_s, p3_s, p4_s, p5_s}, t = {p2_t, p3_t, p4_t, p5_t};
///   float loss;
///   kdloss::ssim_pyramid_loss(s, t, kdloss::host_scalar(&loss));
template <class O>
void ssim_pyramid_loss(const std::vector<View<const O>>& students, const std::vector<View<const O>>& teachers,
                       const View<O>& out, const SsimOptions& options = {}, const Exec& exec = {}) {
  SsimPyramidLossArgs<O> a{students, teachers, out, {}, {}, options};
  ssim_pyramid_loss(a, Mode::forward, exec);
}
/// grad_students[r] = grad_out * d ssim_pyramid_loss / d students[r].
///
///   std::vector<kdloss::View<float>> g = {p2_g, p3_g, p4_g, p5_g};
///   kdloss::ssim_pyramid_loss_backward(s, t, kdloss::host_scalar<const float>(&one), g);
template <class O>
void ssim_pyramid_loss_backward(const std::vector<View<const O>>& students, const std::vector<View<const O>>& teachers,
                                const View<const O>& grad_out, const std::vector<View<O>>& grad_students,
                                const SsimOptions& options = {}, const Exec& exec = {}) {
  SsimPyramidLossArgs<O> a{students, teachers, {}, grad_out, grad_students, options};
  ssim_pyramid_loss(a, Mode::backward, exec);
}
///   kdloss::ssim_pyramid_loss_forward_backward(s, t, kdloss::host_scalar(&loss), g);
template <class O>
void ssim_pyramid_loss_forward_backward(const std::vector<View<const O>>& students,
                                        const std::vector<View<const O>>& teachers, const View<O>& out,
                                        const std::vector<View<O>>& grad_students, const SsimOptions& options = {},
                                        const Exec& exec = {}) {
  SsimPyramidLossArgs<O> a{students, teachers, out, {}, grad_students, options};
  ssim_pyramid_loss(a, Mode::forward_backward, exec);
}
///   std::size_t bytes = kdloss::ssim_pyramid_loss_workspace_bytes(s);
template <class O>
std::size_t ssim_pyramid_loss_workspace_bytes(const std::vector<View<const O>>& students,
                                              const SsimOptions& options = {}) {
  return detail::pyramid_bytes("kdloss::ssim_pyramid_loss_workspace_bytes", students, options);
}

} } }  // namespace kdloss::ssim

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
// The family's public names, also in kdloss:: (user code and the PyTorch bridge call them so).
using ssim::ssim_loss;
using ssim::ssim_loss_backward;
using ssim::ssim_loss_forward_backward;
using ssim::ssim_loss_workspace_bytes;
using ssim::ssim_map;
using ssim::ssim_map_backward;
using ssim::ssim_map_workspace_bytes;
using ssim::ssim_pyramid_loss;
using ssim::ssim_pyramid_loss_backward;
using ssim::ssim_pyramid_loss_forward_backward;
using ssim::ssim_pyramid_loss_workspace_bytes;
} }  // namespace kdloss
