// kdloss/losses/ssim/ssim.hpp: kornia's ssim and ssim_loss, and the structural-distillation loss
// of de Rijk et al. (SSIM with exponents, the normalisation nu and the sum over pyramid levels
// with the per-level mean 1/N_r of the thesis' equation 1). Formulas, conventions and the backward
// are in docs/losses/ssim.md and reference section 3.1.
//
// One engine pass per call (backend/cpu/ssim.hpp, backend/cuda/ssim.cuh): the forward computes
// the five window statistics and the per-pixel value; the backward recomputes them (nothing
// per-pixel is stored between forward and backward) and applies the adjoint filter, reflect fold
// and valid crop included. With `normalize`, a per-plane min/max pass runs first and a per-plane
// correction pass after the backward.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kdloss/losses/ssim/engine.hpp"

namespace kdloss {
namespace ssim_detail {

/// Workspace pieces of one SSIM level.
template <class Acc>
struct LevelScratch {
  Acc* rows = nullptr;        // host engine rows
  double* blocks = nullptr;   // GPU forward partials
  double* sums = nullptr;     // per-plane sums
  NormStats* norm = nullptr;  // nu statistics
};
template <class Acc>
LevelScratch<Acc> carve_level(Carver& carver, Device device, const AxisPlan& rows, const AxisPlan& cols,
                              std::int64_t planes, bool normalize) {
  LevelScratch<Acc> s;
  s.rows = carve_rows<Acc>(carver, device, rows, cols);
  s.blocks = carve_blocks<Acc>(carver, device, rows, cols, planes);
  s.sums = carver.take<double>(static_cast<std::size_t>(planes > 0 ? planes : 1));
  if (normalize) s.norm = carver.take<NormStats>(static_cast<std::size_t>(planes > 0 ? planes : 1));
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
    norm_stats(device, stream, s, t, ws.norm);
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
    if (job.up_map.data) {
      P.up_map = job.up_map.data;
      strides4(job.up_map, P.up_s);
    }
    if (want_s) P.gx = job.gs.data, strides4(job.gs, P.gx_s);
    if (want_t) P.gy = job.gt.data, strides4(job.gt, P.gy_s);
  }
  run_pass(device, stream, P, ws.rows, ws.blocks);
  if (o.normalize) {
    if (want_s) norm_backward(device, stream, s, job.gs, ws.norm, 0);
    if (want_t) norm_backward(device, stream, t, job.gt, ws.norm, 1);
  }
}

inline Dims out_shape(const Dims& in, const AxisPlan& rows, const AxisPlan& cols) {
  return Dims{in[0], in[1], rows.n_out, cols.n_out};
}

/// ssim_loss, ssim_map and their backward / fused forms on one level.
template <class T>
void ssim_call(const char* fn, Mode mode, ValueKind kind, View<const T> s, View<const T> t, View<T> out,
               View<const T> grad_out, View<T> gs, View<T> gt, const SsimOptions& o, Reduction r, const Exec& exec) {
  const Checker ck{fn};
  check_pair(ck, s, t);
  check_options(ck, o);
  require(r != Reduction::batchmean, fn, ": argument 'reduction' is batchmean, which only kl_div offers; use mean, sum or none");
  AxisPlan rows, cols;
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
  const std::int64_t planes = s.shape[0] * s.shape[1];
  kdloss::detail::HostScratch scratch;
  Carver carver(kdloss::detail::resolve_workspace(fn, s.device, exec.workspace, level_bytes(ck, s, o), scratch));
  const auto ws = carve_level<acc_t<T>>(carver, s.device, rows, cols, planes, o.normalize);

  const double scale = r == Reduction::mean ? (oshape.product() > 0 ? 1.0 / static_cast<double>(oshape.product()) : 0.0)
                                            : 1.0;
  LevelJob<T> job;
  if (mode != Mode::backward) {
    if (none) {
      job.map = out.data;
      strides4(out, job.map_s);
    } else {
      job.sums = true;
      job.sum_scale = scale;
    }
  }
  if (mode != Mode::forward) {
    job.gs = gs;
    job.gt = gt;
    if (mode == Mode::backward) {
      if (none) job.up_map = grad_out;
      else job.up_scalar = grad_out.data, job.up_factor = scale;
    } else {
      job.up_factor = none ? 1.0 : scale;
    }
  }
  run_level(s.device, exec.stream, s, t, o, kind, ws, rows, cols, job, ws.sums);
  if (job.sums) store_sum(s.device, exec.stream, ws.sums, planes, 1.0, out.data);
}

/// The pyramid loss of equation 1: sum over levels of the level's mean loss.
template <class T>
void pyramid_call(const char* fn, Mode mode, const std::vector<View<const T>>& ss, const std::vector<View<const T>>& ts,
                  View<T> out, View<const T> grad_out, const std::vector<View<T>>& gs, const SsimOptions& o,
                  const Exec& exec) {
  const Checker ck{fn};
  require(!ss.empty(), fn, ": argument 'students' is empty; pass at least one pyramid level");
  require(ss.size() == ts.size(), fn, ": arguments 'students' and 'teachers' must have one view per level but have ",
          ss.size(), " student levels but ", ts.size(), " teacher levels");
  if (mode != Mode::forward)
    require(gs.size() == ss.size(), fn, ": argument 'grad_students' must have one view per level (", ss.size(),
            ") but has ", gs.size());
  check_options(ck, o);
  const Device device = ss[0].device;
  std::size_t bytes = 0;
  std::vector<AxisPlan> rows(ss.size()), cols(ss.size());
  std::int64_t total_planes = 0;
  // Messages name the level: 'students[1]', 'teachers[1]', 'grad_students[1]'.
  const auto name = [](const char* what, std::size_t l) { return std::string(what) + "[" + std::to_string(l) + "]"; };
  for (std::size_t l = 0; l < ss.size(); ++l) {
    const std::string sn = name("students", l), tn = name("teachers", l);
    check_pair(ck, ss[l], ts[l], sn.c_str(), tn.c_str());
    ck.device(ss[l], sn.c_str(), device);
    plan_axes(ck, ss[l].shape, o, rows[l], cols[l]);
    bytes += level_bytes(ck, ss[l], o);
    total_planes += ss[l].shape[0] * ss[l].shape[1];
    if (mode != Mode::forward) {
      const std::string gn = name("grad_students", l);
      check_grad(ck, ss[l], gs[l], gn.c_str(), ss[l], ts[l], sn.c_str(), tn.c_str());
      for (std::size_t m = 0; m < l; ++m)
        ck.disjoint(gs[l], gn.c_str(), View<const T>(gs[m]), name("grad_students", m).c_str());
    }
  }
  if (mode != Mode::backward) {
    ck.device(out, "out", device);
    ck.scalar_output(out, "out");
    for (std::size_t l = 0; l < ss.size(); ++l) {
      ck.disjoint(out, "out", ss[l], name("students", l).c_str());
      ck.disjoint(out, "out", ts[l], name("teachers", l).c_str());
      if (mode == Mode::fused) ck.disjoint(gs[l], name("grad_students", l).c_str(), View<const T>(out), "out");
    }
  } else {
    ck.device(grad_out, "grad_out", device);
    require(grad_out.numel() == 1, fn, ": argument 'grad_out' must hold one element but has shape ",
            grad_out.shape.str());
    ck.not_null(grad_out, "grad_out");
    for (std::size_t l = 0; l < ss.size(); ++l)
      ck.disjoint(gs[l], name("grad_students", l).c_str(), grad_out, "grad_out");
  }
  Carver sizer;
  sizer.take<double>(static_cast<std::size_t>(total_planes > 0 ? total_planes : 1));
  bytes += sizer.bytes();
  kdloss::detail::HostScratch scratch;
  Carver carver(kdloss::detail::resolve_workspace(fn, device, exec.workspace, bytes, scratch));
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
      job.gs = gs[l];
      job.up_factor = scale;
      if (mode == Mode::backward) job.up_scalar = grad_out.data;
    }
    run_level(device, exec.stream, ss[l], ts[l], o, o.clamp ? ValueKind::clamped_loss : ValueKind::half_loss, ws,
              rows[l], cols[l], job, all_sums + offset);
    offset += planes;
  }
  if (mode != Mode::backward) store_sum(device, exec.stream, all_sums, total_planes, 1.0, out.data);
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

inline ValueKind loss_kind(const SsimOptions& o) { return o.clamp ? ValueKind::clamped_loss : ValueKind::half_loss; }

}  // namespace ssim_detail

// ---------------------------------------------------------------------------------------------
// Public entry points. student and teacher are [B, C, H, W] views with any strides, on one device;
// float and double on both backends, half and bfloat16 on the GPU (accumulated in float).
// Reductions: mean (over all B*C*Ho*Wo loss pixels, kornia's), sum, none (the per-pixel map
// [B, C, Ho, Wo]; Ho = H for 'same' padding, H - window + 1 for 'valid'). Backward computes
// grad_out * d(out)/d(student) (and, when asked, d(out)/d(teacher)); forward_backward writes the
// value and the gradient of the value itself. Scratch: *_workspace_bytes; on the host a null
// workspace is allowed. Nothing is written when a call throws.

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
  ssim_detail::ssim_call<O>("kdloss::ssim_loss", ssim_detail::Mode::forward, ssim_detail::loss_kind(options), student,
                            teacher, out, View<const O>{}, View<O>{}, View<O>{}, options, reduction, exec);
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
  ssim_detail::ssim_call<O>("kdloss::ssim_loss_backward", ssim_detail::Mode::backward, ssim_detail::loss_kind(options),
                            student, teacher, View<O>{}, grad_out, grad_student, View<O>{}, options, reduction, exec);
}
/// As above, and grad_teacher = grad_out * d ssim_loss / d teacher too (either gradient view may
/// be absent: View<float>{}).
///
///   kdloss::ssim_loss_backward(s, t, one_view, gs_view, gt_view);
template <class S, class Tt, class G, class O>
void ssim_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                        const View<O>& grad_student, const View<O>& grad_teacher, const SsimOptions& options = {},
                        Reduction reduction = Reduction::mean, const Exec& exec = {}) {
  ssim_detail::ssim_call<O>("kdloss::ssim_loss_backward", ssim_detail::Mode::backward, ssim_detail::loss_kind(options),
                            student, teacher, View<O>{}, grad_out, grad_student, grad_teacher, options, reduction,
                            exec);
}

/// The loss and d loss / d student in one call (one engine pass: statistics, value and adjoint).
///
///   kdloss::ssim_loss_forward_backward(s, t, kdloss::host_scalar(&loss), kdloss::host_view(gs, {2, 256, 100, 167}));
template <class S, class Tt, class O>
void ssim_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                                const View<O>& grad_student, const SsimOptions& options = {},
                                Reduction reduction = Reduction::mean, const Exec& exec = {}) {
  ssim_detail::ssim_call<O>("kdloss::ssim_loss_forward_backward", ssim_detail::Mode::fused,
                            ssim_detail::loss_kind(options), student, teacher, out, View<const O>{}, grad_student,
                            View<O>{}, options, reduction, exec);
}
///   kdloss::ssim_loss_forward_backward(s, t, kdloss::host_scalar(&loss), gs_view, gt_view);
template <class S, class Tt, class O>
void ssim_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                                const View<O>& grad_student, const View<O>& grad_teacher,
                                const SsimOptions& options = {}, Reduction reduction = Reduction::mean,
                                const Exec& exec = {}) {
  ssim_detail::ssim_call<O>("kdloss::ssim_loss_forward_backward", ssim_detail::Mode::fused,
                            ssim_detail::loss_kind(options), student, teacher, out, View<const O>{}, grad_student,
                            grad_teacher, options, reduction, exec);
}

/// Workspace bytes of any ssim_loss / ssim_map call on these inputs (host: the engine's per-thread
/// rows, for omp_get_max_threads() threads; GPU: per-block partial sums and per-plane values).
///
///   std::size_t bytes = kdloss::ssim_loss_workspace_bytes(kdloss::cuda_view<const float>(d_s, {2, 256, 100, 167}));
template <class S>
std::size_t ssim_loss_workspace_bytes(const View<S>& student, const SsimOptions& options = {}) {
  const ssim_detail::Checker ck{"kdloss::ssim_loss_workspace_bytes"};
  ck.rank(student, "student", 4);
  return ssim_detail::level_bytes<std::remove_cv_t<S>>(ck, View<const std::remove_cv_t<S>>(student), options);
}

/// kornia.metrics.ssim: the SSIM map S [B, C, Ho, Wo] (options.clamp is not used).
///
///   std::vector<float> map(2 * 3 * 64 * 64);
///   kdloss::ssim_map(x, y, kdloss::host_view(map.data(), {2, 3, 64, 64}));
template <class X, class Y, class O>
void ssim_map(const View<X>& x, const View<Y>& y, const View<O>& out, const SsimOptions& options = {},
              const Exec& exec = {}) {
  ssim_detail::ssim_call<O>("kdloss::ssim_map", ssim_detail::Mode::forward, ssim_detail::ValueKind::index, x, y, out,
                            View<const O>{}, View<O>{}, View<O>{}, options, Reduction::none, exec);
}
/// grad_x = d <grad_map, S> / d x (and grad_y when given), grad_map of the map's shape.
///
///   kdloss::ssim_map_backward(x, y, kdloss::host_view<const float>(g_map, {2, 3, 64, 64}), gx_view);
template <class X, class Y, class G, class O>
void ssim_map_backward(const View<X>& x, const View<Y>& y, const View<G>& grad_map, const View<O>& grad_x,
                       const SsimOptions& options = {}, const Exec& exec = {}) {
  ssim_detail::ssim_call<O>("kdloss::ssim_map_backward", ssim_detail::Mode::backward, ssim_detail::ValueKind::index, x,
                            y, View<O>{}, grad_map, grad_x, View<O>{}, options, Reduction::none, exec);
}
///   kdloss::ssim_map_backward(x, y, g_map_view, gx_view, gy_view);
template <class X, class Y, class G, class O>
void ssim_map_backward(const View<X>& x, const View<Y>& y, const View<G>& grad_map, const View<O>& grad_x,
                       const View<O>& grad_y, const SsimOptions& options = {}, const Exec& exec = {}) {
  ssim_detail::ssim_call<O>("kdloss::ssim_map_backward", ssim_detail::Mode::backward, ssim_detail::ValueKind::index, x,
                            y, View<O>{}, grad_map, grad_x, grad_y, options, Reduction::none, exec);
}

/// Thesis equation 1: sum over pyramid levels r of (1/N_r) * sum of the level's SSIM loss map
/// (N_r = B*C*Ho*Wo, kornia's mean per level). One element out.
///
///   std::vector<kdloss::View<const float>> s = {p2_s, p3_s, p4_s, p5_s}, t = {p2_t, p3_t, p4_t, p5_t};
///   float loss;
///   kdloss::ssim_pyramid_loss(s, t, kdloss::host_scalar(&loss));
template <class O>
void ssim_pyramid_loss(const std::vector<View<const O>>& students, const std::vector<View<const O>>& teachers,
                       const View<O>& out, const SsimOptions& options = {}, const Exec& exec = {}) {
  ssim_detail::pyramid_call<O>("kdloss::ssim_pyramid_loss", ssim_detail::Mode::forward, students, teachers, out,
                               View<const O>{}, {}, options, exec);
}
/// grad_students[r] = grad_out * d ssim_pyramid_loss / d students[r].
///
///   std::vector<kdloss::View<float>> g = {p2_g, p3_g, p4_g, p5_g};
///   kdloss::ssim_pyramid_loss_backward(s, t, kdloss::host_scalar<const float>(&one), g);
template <class O>
void ssim_pyramid_loss_backward(const std::vector<View<const O>>& students, const std::vector<View<const O>>& teachers,
                                const View<const O>& grad_out, const std::vector<View<O>>& grad_students,
                                const SsimOptions& options = {}, const Exec& exec = {}) {
  ssim_detail::pyramid_call<O>("kdloss::ssim_pyramid_loss_backward", ssim_detail::Mode::backward, students, teachers,
                               View<O>{}, grad_out, grad_students, options, exec);
}
///   kdloss::ssim_pyramid_loss_forward_backward(s, t, kdloss::host_scalar(&loss), g);
template <class O>
void ssim_pyramid_loss_forward_backward(const std::vector<View<const O>>& students,
                                        const std::vector<View<const O>>& teachers, const View<O>& out,
                                        const std::vector<View<O>>& grad_students, const SsimOptions& options = {},
                                        const Exec& exec = {}) {
  ssim_detail::pyramid_call<O>("kdloss::ssim_pyramid_loss_forward_backward", ssim_detail::Mode::fused, students,
                               teachers, out, View<const O>{}, grad_students, options, exec);
}
///   std::size_t bytes = kdloss::ssim_pyramid_loss_workspace_bytes(s);
template <class O>
std::size_t ssim_pyramid_loss_workspace_bytes(const std::vector<View<const O>>& students,
                                              const SsimOptions& options = {}) {
  return ssim_detail::pyramid_bytes<O>("kdloss::ssim_pyramid_loss_workspace_bytes", students, options);
}

}  // namespace kdloss
