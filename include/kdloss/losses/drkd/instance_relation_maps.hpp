// kdloss/losses/drkd/instance_relation_maps.hpp: DRKD's instance-wise relation distillation from the
// feature maps and the ground-truth boxes, one pyramid level, as a detector calls it:
//
//   R_S = RoIAlign(S, boxes), R_T = RoIAlign(T, boxes)        (ops::roi_align; the code: 3 x 3, sampling -1,
//                                                              aligned False, spatial_scale W_l / (4 W_0))
//   out = instance_relation_loss(R_S, R_T)          (form code: L_IR + L_fg, instance_relation.hpp)
//       | instance_relation_paper_loss(R_S, R_T)    (form paper: the seed's cosine relation, _paper.hpp)
//   dL/dS = RoIAlign's adjoint applied to dL/dR_S   (deterministic; the teacher map gets none)
//
// The code pools every image's boxes from image 0's map (a one-element box list with the whole batch,
// losses.md 2.3): options.image0_pooling = true reproduces it (the published numbers); the default pools
// image b's boxes from map b. The relation itself runs per image either way.
//
// Composite (core/entry.hpp shape): InstanceRelationMapsArgs, instance_relation_maps_loss_check,
// instance_relation_maps_loss_workspace_bytes, instance_relation_maps_loss(args, mode, exec) and the wrappers
// _forward / _backward / _forward_backward. One caller workspace holds the pooled features, their gradient
// and the inner calls' workspaces; no reserve (backward pools again).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/basic.hpp"
#include "kdloss/losses/drkd/instance_relation.hpp"
#include "kdloss/losses/drkd/instance_relation_paper.hpp"
#include "kdloss/ops/roi_align.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace drkd {

/// Which instance relation runs on the pooled features.
enum class InstanceForm {
  code,  // the official code: ObjectRelation with its relation filter, L_IR + L_fg (instance_relation_loss)
  paper  // the seed: cosine relation with the confidence and distance masks (instance_relation_paper_loss)
};

/// Options of instance_relation_maps_loss. The pooling defaults are the code's level 0 (P2 of a stride-4
/// pyramid): 3 x 3 RoIs, spatial_scale 1/4 (level l: W_l / (4 W_0), 1/8 at P3), adaptive sampling, aligned
/// False.
struct InstanceRelationMapsOptions {
  InstanceForm form = InstanceForm::code;
  std::int64_t output_size = 3;      // RoI bins per axis
  double spatial_scale = 0.25;       // box coordinates (image pixels) * spatial_scale = map coordinates
  std::int64_t sampling_ratio = -1;  // <= 0: adaptive (torchvision's rule)
  bool aligned = false;
  bool image0_pooling = false;       // true: every image's boxes pool map 0 (the code's batch-index bug)
  GradAccumulate map_grad{};         // grad_student_map = beta * grad_student_map + dL/dS (0: overwrite)
};

/// The arguments of one instance_relation_maps_loss call (one pyramid level).
/// - student_map [B, C_s, H, W], teacher_map [B, C_t, H', W'] (any strides; the same B).
/// - boxes [n, 4] (x1, y1, x2, y2 in image pixels, packed by image), offsets [B + 1] (int64, host memory,
///   ending at n; an image without boxes is legal).
/// - code (form code) or paper (form paper): the relation's own arguments (parameters, filters, adapters,
///   scores, their gradients and options) with student, teacher, boxes, out, grad_out and grad_student
///   left absent: this entry binds them to the pooled features.
/// - out: one element (forward, forward_backward); grad_out: one element (backward); grad_student_map: the
///   student map's shape (optional; backward: grad_out * dL/dS, forward_backward: dL/dS, accumulated as
///   options.map_grad says).
///
///   // level 0 of the code for two images of 800 x 1216 with 2 and 1 boxes (C = 16 here; the code: 256)
///   const std::int64_t C = 16, D = C * 9, I = D / 2, n = 3;
///   std::vector<float> S(2 * C * 200 * 304, 0.5f), T(S.size(), 0.25f), gS(S.size());
///   std::vector<float> boxes = {10, 20, 200, 180,  50, 60, 90, 400,  0, 0, 799, 1215};
///   std::int64_t offsets[] = {0, 2, 3};
///   std::vector<float> w(I * D, 1e-3f), wW(D * I, 1e-3f), aw(C * C, 1e-2f);
///   kdloss::drkd::ObjectRelationParams<float> rel;
///   rel.theta_weight = rel.phi_weight = rel.g_weight = kdloss::host_view<const float>(w.data(), {I, D});
///   rel.W_weight = kdloss::host_view<const float>(wW.data(), {D, I});
///   float loss = 0;
///   kdloss::drkd::InstanceRelationMapsArgs<float> args;
///   args.student_map = kdloss::host_view<const float>(S.data(), {2, C, 200, 304});
///   args.teacher_map = kdloss::host_view<const float>(T.data(), {2, C, 200, 304});
///   args.boxes = kdloss::host_view<const float>(boxes.data(), {n, 4});
///   args.offsets = kdloss::host_view<const std::int64_t>(offsets, {3});
///   args.code.student_relation = args.code.teacher_relation = rel;
///   args.code.relation_adapt_weight = kdloss::host_view<const float>(aw.data(), {C, C});
///   args.out = kdloss::host_scalar(&loss);
///   args.grad_student_map = kdloss::host_view(gS.data(), {2, C, 200, 304});
///   kdloss::drkd::instance_relation_maps_loss(args, kdloss::Mode::forward_backward);
template <class T>
struct InstanceRelationMapsArgs {
  View<const T> student_map{};
  View<const T> teacher_map{};
  View<const T> boxes{};
  View<const std::int64_t> offsets{};
  InstanceRelationLossArgs<T> code{};
  InstanceRelationPaperLossArgs<T> paper{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_student_map{};
  InstanceRelationMapsOptions options{};
};

namespace maps_detail {
using ::kdloss::detail::Carver;
using ::kdloss::detail::Checker;
using ::kdloss::detail::require;

/// Runs `f` and returns its result; an Error it throws comes back prefixed with `where` (the entry and the
/// part of its arguments at fault: the pooling, the relation, a level of the total).
template <class F>
auto within(const std::string& where, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
}

inline constexpr EntryNames kNames{"kdloss::drkd::instance_relation_maps_loss",
                                   "kdloss::drkd::instance_relation_maps_loss_backward",
                                   "kdloss::drkd::instance_relation_maps_loss_forward_backward"};

/// grad = beta * grad: the maps no box samples under image-0 pooling (beta != 0).
struct ScaleBy {
  double beta;
  template <class G, class O>
  KDLOSS_HOST_DEVICE void operator()(const G& g, O& o) const {
    o = g * static_cast<math::scalar_t<O>>(beta);
  }
};

/// The relation's own entry points, one overload set per form.
template <class T>
void relation_check(const InstanceRelationLossArgs<T>& a, Mode m) {
  instance_relation_loss_check(a, m);
}
template <class T>
void relation_check(const InstanceRelationPaperLossArgs<T>& a, Mode m) {
  instance_relation_paper_loss_check(a, m);
}
template <class T>
std::size_t relation_bytes(const InstanceRelationLossArgs<T>& a) {
  return instance_relation_loss_workspace_bytes(a);
}
template <class T>
std::size_t relation_bytes(const InstanceRelationPaperLossArgs<T>& a) {
  return instance_relation_paper_loss_workspace_bytes(a);
}
template <class T>
void relation_run(const InstanceRelationLossArgs<T>& a, Mode m, const Exec& e) {
  instance_relation_loss(a, m, e);
}
template <class T>
void relation_run(const InstanceRelationPaperLossArgs<T>& a, Mode m, const Exec& e) {
  instance_relation_paper_loss(a, m, e);
}

/// What this entry binds in the relation's arguments (which the caller leaves absent), bound.
template <class R, class T>
R bind(R r, const View<const T>& rs, const View<const T>& rt, const View<const std::int64_t>& offsets,
       const View<T>& out, const View<const T>& grad_out, const View<T>& grad_rs) {
  r.student = rs;
  r.teacher = rt;
  r.boxes.offsets = offsets;
  r.out = out;
  r.grad_out = grad_out;
  r.grad_student = grad_rs;
  return r;
}

/// The buffers of one call: pooled student and teacher features, the student's gradient, the inner
/// calls' workspaces (the two poolings share one; the relation has its own).
template <class T>
struct Plan {
  Dims rs, rt;  // [n, C, P, P]
  T *pooled_s = nullptr, *pooled_t = nullptr, *grad_pooled = nullptr;
  void* roi = nullptr;
  void* relation = nullptr;
  std::size_t roi_bytes = 0, relation_bytes = 0, total = 0;
};

/// Where a check binds the buffers it has not allocated: 2^62 and up, an address no x86-64 or aarch64
/// process maps (user space ends below 2^52), so the inner overlap checks see no false overlap. Each
/// composite level takes its own lane, 2^56 bytes apart (this entry 0, drkd::total_loss 1); the pooled
/// sizes are capped far below that (kMaxPooledElements).
inline void* unmapped_base(int lane = 0) {
  return reinterpret_cast<void*>((std::uintptr_t{1} << 62) + (std::uintptr_t{1} << 56) * unsigned(lane));
}
/// Most elements one side's pooled features may have (2^44: far beyond any memory, far below overflow).
inline constexpr double kMaxPooledElements = 17592186044416.0;

/// The image-0 offsets {0, n} (host memory the call keeps alive while it runs).
struct Image0Offsets {
  std::int64_t v[2] = {0, 0};
};

template <class T>
bool image0(const InstanceRelationMapsArgs<T>& a) {
  return a.options.image0_pooling && a.student_map.rank() == 4 && a.student_map.shape[0] > 0;
}

/// ops::roi_align's arguments pooling `map` (image 0 alone under image-0 pooling).
template <class T>
ops::RoiAlignArgs<T> roi_args(const InstanceRelationMapsArgs<T>& a, const View<const T>& map,
                              const Image0Offsets& i0) {
  ops::RoiAlignArgs<T> r;
  const bool first = image0(a);
  r.x = first ? map.slice(0, 0, 1) : map;
  r.boxes = a.boxes;
  r.offsets = first ? host_view<const std::int64_t>(i0.v, {2}) : a.offsets;
  r.options.output_height = r.options.output_width = a.options.output_size;
  r.options.spatial_scale = a.options.spatial_scale;
  r.options.sampling_ratio = a.options.sampling_ratio;
  r.options.aligned = a.options.aligned;
  r.options.input_grad = a.options.map_grad;
  return r;
}

template <class T>
bool wants_map_grad(const InstanceRelationMapsArgs<T>& a, Mode mode) {
  return writes_gradients(mode) && present(a.grad_student_map);
}

/// Contiguous view over plan memory (a stand-in address when sizing).
template <class U>
View<U> buffer(U* p, const Dims& d, Device dev) {
  return View<U>(p, d, contiguous_strides(d), dev);
}

/// Calls f(relation args) on the form's arguments bound to the pooled buffers of `p`.
template <class T, class F>
auto with_relation(const InstanceRelationMapsArgs<T>& a, Mode mode, const Plan<T>& p, F&& f) {
  const Device dev = a.student_map.device;
  const View<const T> rs = buffer<const T>(p.pooled_s, p.rs, dev), rt = buffer<const T>(p.pooled_t, p.rt, dev);
  const View<T> grs = wants_map_grad(a, mode) ? buffer(p.grad_pooled, p.rs, dev) : View<T>{};
  if (a.options.form == InstanceForm::code)
    return f(bind(a.code, rs, rt, a.offsets, a.out, a.grad_out, grs));
  return f(bind(a.paper, rs, rt, a.offsets, a.out, a.grad_out, grs));
}

/// Carves the plan from `base` (a stand-in address when sizing: nothing is dereferenced then).
template <class T>
Plan<T> carve(const InstanceRelationMapsArgs<T>& a, Mode mode, void* base, std::size_t roi_bytes,
              std::size_t relation_bytes) {
  Plan<T> p;
  const std::int64_t n = a.boxes.shape[0], P = a.options.output_size;
  p.rs = Dims{n, a.student_map.shape[1], P, P};
  p.rt = Dims{n, a.teacher_map.shape[1], P, P};
  Carver c(base);
  p.pooled_s = c.take<T>(static_cast<std::size_t>(p.rs.product()));
  p.pooled_t = c.take<T>(static_cast<std::size_t>(p.rt.product()));
  if (wants_map_grad(a, mode)) p.grad_pooled = c.take<T>(static_cast<std::size_t>(p.rs.product()));
  p.roi_bytes = roi_bytes;
  p.roi = c.take<unsigned char>(roi_bytes);
  p.relation_bytes = relation_bytes;
  p.relation = c.take<unsigned char>(relation_bytes);
  p.total = c.bytes();
  return p;
}

/// The plan, its inner workspaces sized by the inner queries over stand-in addresses.
template <class T>
Plan<T> plan(const char* fn, const InstanceRelationMapsArgs<T>& a, Mode mode, void* base) {
  const Plan<T> sized = carve(a, mode, unmapped_base(), 0, 0);
  Image0Offsets i0;
  i0.v[1] = a.boxes.shape[0];
  const std::size_t roi = within(std::string(fn) + ": pooling the maps", [&] {
    return std::max(ops::roi_align_workspace_bytes(roi_args(a, a.student_map, i0)),
                    ops::roi_align_workspace_bytes(roi_args(a, a.teacher_map, i0)));
  });
  const std::size_t rel = within(std::string(fn) + ": in the relation", [&] {
    return with_relation(a, mode, sized, [](const auto& r) { return relation_bytes(r); });
  });
  return carve(a, mode, base, roi, rel);
}

/// Calls f(view, name) on every view of the relation's arguments that the caller binds (inputs and
/// gradient outputs), so grad_student_map can be checked against them.
template <class T, class F>
void for_each_relation_view(const InstanceRelationLossArgs<T>& r, F&& f) {
  const auto params = [&](const ObjectRelationParams<T>& p, const char* name) {
    const View<const T> v[] = {p.theta_weight, p.theta_bias, p.phi_weight, p.phi_bias,
                               p.g_weight,     p.g_bias,     p.W_weight,   p.W_bias};
    for (const View<const T>& x : v) f(x, name);
  };
  const auto grads = [&](const ObjectRelationGrads<T>& g, const char* name) {
    const View<T> v[] = {g.theta_weight, g.theta_bias, g.phi_weight, g.phi_bias,
                         g.g_weight,     g.g_bias,     g.W_weight,   g.W_bias};
    for (const View<T>& x : v) f(x, name);
  };
  params(r.student_relation, "code.student_relation");
  params(r.teacher_relation, "code.teacher_relation");
  grads(r.grad_student_relation, "code.grad_student_relation");
  grads(r.grad_teacher_relation, "code.grad_teacher_relation");
  const View<const T> inputs[] = {r.student_filter.weight, r.student_filter.bias, r.teacher_filter.weight,
                                  r.teacher_filter.bias,  r.relation_adapt_weight, r.relation_adapt_bias,
                                  r.feature_adapt_weight, r.feature_adapt_bias};
  for (const View<const T>& x : inputs) f(x, "a code filter or adapter");
  const View<T> outputs[] = {r.grad_student_filter.weight, r.grad_student_filter.bias, r.grad_teacher_filter.weight,
                             r.grad_teacher_filter.bias,  r.grad_relation_adapt_weight, r.grad_relation_adapt_bias,
                             r.grad_feature_adapt_weight, r.grad_feature_adapt_bias};
  for (const View<T>& x : outputs) f(x, "a code filter or adapter gradient");
}
template <class T, class F>
void for_each_relation_view(const InstanceRelationPaperLossArgs<T>& r, F&& f) {
  f(r.teacher_scores, "paper.teacher_scores");
  f(r.student_scores, "paper.student_scores");
}

template <class T>
void check_absent(const char* fn, const char* form, const View<T>& v, const char* name) {
  require(absent(v), fn, ": argument '", form, ".", name, "' must be absent (shape ", v.shape.str(),
          "): this entry binds it to the pooled features");
}

/// Checks of the maps, boxes and options (what the size query reads).
template <class T>
void check_inputs(const char* fn, const InstanceRelationMapsArgs<T>& a) {
  const Checker ck{fn};
  ck.rank(a.student_map, "student_map", 4);
  ck.rank(a.teacher_map, "teacher_map", 4);
  ck.not_null(a.student_map, "student_map");
  ck.not_null(a.teacher_map, "teacher_map");
  ck.device(a.teacher_map, "teacher_map", a.student_map.device);
  require(a.student_map.shape[0] == a.teacher_map.shape[0], fn, ": arguments 'student_map' ",
          a.student_map.shape.str(), " and 'teacher_map' ", a.teacher_map.shape.str(), " must have the same batch");
  require(a.options.form == InstanceForm::code || a.options.form == InstanceForm::paper, fn,
          ": option 'form' is ", static_cast<int>(a.options.form), ", not InstanceForm::code or ::paper");
  const std::int64_t P = a.options.output_size;
  require(P >= 1 && P <= ops::roi_align_detail::kMaxOutputSize, fn, ": option 'output_size' is ", P,
          "; it must be in [1, ", ops::roi_align_detail::kMaxOutputSize, "]");
  require(present(a.boxes), fn, ": argument 'boxes' is absent");
  ck.rank(a.boxes, "boxes", 2);
  require(a.boxes.shape[1] == 4, fn, ": argument 'boxes' must be [n, 4] (x1, y1, x2, y2) but has shape ",
          a.boxes.shape.str());
  require(present(a.offsets), fn, ": argument 'offsets' is absent");
  ::kdloss::detail::check_segments(ck, Segments<std::int64_t>{a.offsets}, "offsets", a.boxes.shape[0]);
  require(a.offsets.numel() == a.student_map.shape[0] + 1, fn, ": argument 'offsets' ", a.offsets.shape.str(),
          " must have B + 1 = ", a.student_map.shape[0] + 1, " entries for maps ", a.student_map.shape.str());
  const double pooled = double(a.boxes.shape[0]) * double(std::max(a.student_map.shape[1], a.teacher_map.shape[1])) *
                        double(P) * double(P);
  require(pooled <= kMaxPooledElements, fn, ": the pooled features [", a.boxes.shape[0], ", C, ", P, ", ", P,
          "] of maps ", a.student_map.shape.str(), " and ", a.teacher_map.shape.str(), " would have ", pooled,
          " elements, beyond any memory");
  const bool code = a.options.form == InstanceForm::code;
  const char* form = code ? "code" : "paper";
  const auto unbound = [&](const auto& r) {
    check_absent(fn, form, r.student, "student");
    check_absent(fn, form, r.teacher, "teacher");
    check_absent(fn, form, r.boxes.offsets, "boxes");
    check_absent(fn, form, r.out, "out");
    check_absent(fn, form, r.grad_out, "grad_out");
    check_absent(fn, form, r.grad_student, "grad_student");
  };
  if (code)
    unbound(a.code);
  else
    unbound(a.paper);
}

}  // namespace maps_detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes
/// nothing. The pooling's and the relation's own errors come prefixed with the part that failed.
///
///   kdloss::drkd::InstanceRelationMapsArgs<float> args;   // filled in as in InstanceRelationMapsArgs's example
///   kdloss::drkd::instance_relation_maps_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void instance_relation_maps_loss_check(const InstanceRelationMapsArgs<T>& a, Mode mode) {
  namespace md = maps_detail;
  const char* fn = md::kNames(mode);
  md::check_inputs(fn, a);
  const md::Checker ck{fn};
  const Device dev = a.student_map.device;
  const md::Plan<T> p = md::plan(fn, a, mode, md::unmapped_base());
  md::within(std::string(fn) + ": in the relation", [&] {
    md::with_relation(a, mode, p, [&](const auto& r) { md::relation_check(r, mode); });
  });
  if (!md::wants_map_grad(a, mode)) return;
  ck.shape(a.grad_student_map, "grad_student_map", a.student_map.shape);
  ck.not_null(a.grad_student_map, "grad_student_map");
  ck.device(a.grad_student_map, "grad_student_map", dev);
  ck.unique(a.grad_student_map, "grad_student_map");
  ck.disjoint(a.grad_student_map, "grad_student_map", a.student_map, "student_map");
  ck.disjoint(a.grad_student_map, "grad_student_map", a.teacher_map, "teacher_map");
  ck.disjoint(a.grad_student_map, "grad_student_map", a.boxes, "boxes");
  if (present(a.out)) ck.disjoint(a.grad_student_map, "grad_student_map", a.out, "out");
  if (present(a.grad_out)) ck.disjoint(a.grad_student_map, "grad_student_map", a.grad_out, "grad_out");
  md::with_relation(a, mode, p, [&](const auto& r) {
    md::for_each_relation_view(r, [&](const auto& v, const char* name) {
      if (present(v)) ck.disjoint(a.grad_student_map, "grad_student_map", v, name);
    });
  });
}

/// Workspace bytes of instance_relation_maps_loss on these arguments, enough for every mode: the pooled
/// features of both sides and the student's pooled gradient ([n, C, P, P] each), the larger of the two
/// poolings' workspaces and the relation's.
///
///   kdloss::drkd::InstanceRelationMapsArgs<float> args;   // filled in as in InstanceRelationMapsArgs's example
///   std::size_t bytes = kdloss::drkd::instance_relation_maps_loss_workspace_bytes(args);
template <class T>
std::size_t instance_relation_maps_loss_workspace_bytes(const InstanceRelationMapsArgs<T>& args) {
  const char* fn = "kdloss::drkd::instance_relation_maps_loss_workspace_bytes";
  maps_detail::check_inputs(fn, args);
  return maps_detail::plan(fn, args, Mode::forward_backward, nullptr).total;
}

/// Checks, then runs. forward: out = the relation loss of the pooled features; backward (pools again,
/// reads grad_out): grad_student_map and every present relation gradient times grad_out;
/// forward_backward: both. The pooling's backward is deterministic (same bits on every run and thread
/// count); under image-0 pooling the maps of images 1..B-1 get beta * grad (0 by default).
///
///   kdloss::drkd::InstanceRelationMapsArgs<float> args;   // filled in as in InstanceRelationMapsArgs's example
///   kdloss::drkd::instance_relation_maps_loss(args, kdloss::Mode::forward_backward);
template <class T>
void instance_relation_maps_loss(const InstanceRelationMapsArgs<T>& a, Mode mode, const Exec& exec = {}) {
  namespace md = maps_detail;
  const char* fn = md::kNames(mode);
  instance_relation_maps_loss_check(a, mode);
  const Device dev = a.student_map.device;
  const md::Plan<T> sized = md::plan(fn, a, mode, nullptr);  // the inner queries once; then carve the same sizes
  ::kdloss::detail::HostScratch host;
  void* ws = ::kdloss::detail::resolve_workspace(fn, dev, exec.workspace, sized.total, host);
  const md::Plan<T> p = md::carve(a, mode, ws, sized.roi_bytes, sized.relation_bytes);
  const Exec roi_exec{{p.roi_bytes ? p.roi : nullptr, p.roi_bytes}, exec.stream, exec.blas};
  const Exec rel_exec{{p.relation_bytes ? p.relation : nullptr, p.relation_bytes}, exec.stream, exec.blas};
  md::Image0Offsets i0;
  i0.v[1] = a.boxes.shape[0];
  ops::RoiAlignArgs<T> rs = md::roi_args(a, a.student_map, i0), rt = md::roi_args(a, a.teacher_map, i0);
  rs.y = md::buffer(p.pooled_s, p.rs, dev);
  rt.y = md::buffer(p.pooled_t, p.rt, dev);
  ops::roi_align(rs, Mode::forward, roi_exec);
  ops::roi_align(rt, Mode::forward, roi_exec);
  md::with_relation(a, mode, p, [&](const auto& r) { md::relation_run(r, mode, rel_exec); });
  if (!md::wants_map_grad(a, mode)) return;
  rs.y = {};
  rs.grad_y = md::buffer<const T>(p.grad_pooled, p.rs, dev);
  rs.grad_x = md::image0(a) ? a.grad_student_map.slice(0, 0, 1) : a.grad_student_map;
  ops::roi_align(rs, Mode::backward, roi_exec);
  if (md::image0(a) && a.student_map.shape[0] > 1) {  // the maps no box samples under image-0 pooling
    const View<T> rest = a.grad_student_map.slice(0, 1, a.student_map.shape[0]);
    if (a.options.map_grad.beta == 0.0)
      ::kdloss::detail::transform<acc_t<T>>(dev, exec.stream, rest.shape, expr::Zero{}, std::tuple<>{}, std::tuple{rest});
    else
      ::kdloss::detail::transform<acc_t<T>>(dev, exec.stream, rest.shape, md::ScaleBy{a.options.map_grad.beta},
                                            std::tuple{View<const T>(rest)}, std::tuple{rest});
  }
}

/// Thin wrapper: the value.
///
///   kdloss::drkd::instance_relation_maps_loss_forward(args);   // args as in InstanceRelationMapsArgs's example
template <class T>
void instance_relation_maps_loss_forward(const InstanceRelationMapsArgs<T>& args, const Exec& exec = {}) {
  instance_relation_maps_loss(args, Mode::forward, exec);
}

/// Thin wrapper: grad_out times every present gradient (pools and recomputes the forward).
///
///   kdloss::drkd::instance_relation_maps_loss_backward(args);  // args with grad_out and the wanted gradients
template <class T>
void instance_relation_maps_loss_backward(const InstanceRelationMapsArgs<T>& args, const Exec& exec = {}) {
  instance_relation_maps_loss(args, Mode::backward, exec);
}

/// Thin wrapper: the value and every present gradient in one call.
///
///   kdloss::drkd::instance_relation_maps_loss_forward_backward(args);
template <class T>
void instance_relation_maps_loss_forward_backward(const InstanceRelationMapsArgs<T>& args, const Exec& exec = {}) {
  instance_relation_maps_loss(args, Mode::forward_backward, exec);
}

}  // namespace drkd
} }  // namespace kdloss
