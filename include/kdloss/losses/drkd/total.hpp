// kdloss/losses/drkd/total.hpp: the DRKD total over an FPN, one call:
//
//   out = sum over levels l of  [pixel term of l]  +  [instance term of l]
//     pixel term:    PixelTerm::glore  L_PR,l (glore_relation_loss: the official code, 1e-3 * ||.||_F)
//                    PixelTerm::seed   L_P,l  (pixel_relation_loss: the seed's MSE(G(T), G(S)))
//     instance term: instance_relation_maps_loss on level l's maps and the batch's boxes, in the code form
//                    (L_IR + L_fg) or the paper form (cosine relation with the relation filter)
//
// Two presets say which term runs where: use_code_preset (the code's two-stage DRKD: L_PR at every level,
// L_IR + L_fg at levels 0 and 1 with spatial_scale W_l / (4 W_0)) and use_paper_preset (the seed's pixel
// relation at every level and its instance relation at levels 0 and 1). A level's student gradient is the
// sum of its two terms' gradients (the instance term accumulates onto the pixel term's). The terms' own
// arguments (parameters, their gradients, BN statistics, options) live in each level; the total binds the
// maps, the boxes, the values and the upstream gradient.
//
// Composite (core/entry.hpp shape): TotalLossArgs, total_loss_check, total_loss_workspace_bytes,
// total_loss(args, mode, exec) and the wrappers _forward / _backward / _forward_backward. The terms run one
// after another on one caller workspace (the largest term's, plus one value per term); no reserve.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/basic.hpp"
#include "kdloss/losses/drkd/glore_relation.hpp"
#include "kdloss/losses/drkd/instance_relation_maps.hpp"
#include "kdloss/losses/drkd/pixel_relation.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace drkd {

/// Which pixel-wise relation a level runs.
enum class PixelTerm {
  none,
  glore,  // the official code's GloRe relation L_PR (glore_relation_loss)
  seed    // the seed's softmax pixel relation L_P (pixel_relation_loss)
};

/// One pyramid level of a total_loss call.
/// - student [B, C_s, H, W], teacher [B, C_t, H, W]: the level's maps; grad_student (optional, the
///   student's shape): written with the sum of the level's term gradients (zero when it has no term).
/// - pixel and its arguments: glore (PixelTerm::glore: the two units, the adapter, their gradients and BN
///   statistics; leave its student, teacher, out, grad_out and grad_student absent) or seed_options.
/// - instance (true: run the instance term) and instance_args: the relation's arguments and options as
///   instance_relation_maps_loss takes them, with student_map, teacher_map, boxes, offsets, out, grad_out
///   and grad_student_map left absent. Its options.spatial_scale 0 means W_l / (4 W_0), the code's rule
///   (W_0: level 0's student width).
template <class T>
struct TotalLevel {
  View<const T> student{};
  View<const T> teacher{};
  View<T> grad_student{};
  PixelTerm pixel = PixelTerm::none;
  GloreRelationLossArgs<T> glore{};
  PixelRelationOptions seed_options{};
  bool instance = false;
  InstanceRelationMapsArgs<T> instance_args{};
};

/// The arguments of total_loss: `level_count` levels; boxes [n, 4] (image pixels, packed by image) and
/// offsets [B + 1] (host) when a level runs an instance term; out: one element (forward, forward_backward);
/// grad_out: one element (backward).
///
///   // a two-level pyramid (C = 8) of one image with two boxes: the paper form (no parameters needed)
///   std::vector<float> s0(8 * 32 * 48, 0.5f), t0(s0.size(), 0.25f), g0(s0.size());
///   std::vector<float> s1(8 * 16 * 24, 0.5f), t1(s1.size(), 0.25f), g1(s1.size());
///   std::vector<float> boxes = {8, 8, 60, 90,  20, 4, 100, 180};
///   std::int64_t offsets[] = {0, 2};
///   kdloss::drkd::TotalLevel<float> levels[2];
///   levels[0].student = kdloss::host_view<const float>(s0.data(), {1, 8, 32, 48});
///   levels[0].teacher = kdloss::host_view<const float>(t0.data(), {1, 8, 32, 48});
///   levels[0].grad_student = kdloss::host_view(g0.data(), {1, 8, 32, 48});
///   levels[1].student = kdloss::host_view<const float>(s1.data(), {1, 8, 16, 24});
///   levels[1].teacher = kdloss::host_view<const float>(t1.data(), {1, 8, 16, 24});
///   levels[1].grad_student = kdloss::host_view(g1.data(), {1, 8, 16, 24});
///   kdloss::drkd::use_paper_preset(levels, 2);
///   float loss = 0;
///   kdloss::drkd::TotalLossArgs<float> args;
///   args.levels = levels;
///   args.level_count = 2;
///   args.boxes = kdloss::host_view<const float>(boxes.data(), {2, 4});
///   args.offsets = kdloss::host_view<const std::int64_t>(offsets, {2});
///   args.out = kdloss::host_scalar(&loss);
///   kdloss::drkd::total_loss(args, kdloss::Mode::forward_backward);
template <class T>
struct TotalLossArgs {
  const TotalLevel<T>* levels = nullptr;
  std::size_t level_count = 0;
  View<const T> boxes{};
  View<const std::int64_t> offsets{};
  View<T> out{};
  View<const T> grad_out{};
};

/// The official code's two-stage DRKD (losses.md 2.2-2.3): L_PR (GloRe, weight 1e-3) at every level and
/// L_IR + L_fg (4e-3, 2.4e-3) at levels 0 and 1, 3 x 3 RoIs at spatial_scale W_l / (4 W_0), sampling -1,
/// aligned False, pooled per image. Sets only which term runs and the pooling: the parameters are the
/// caller's, and image0_pooling = true on both instance levels reproduces the published numbers.
///
///   kdloss::drkd::TotalLevel<float> levels[5];   // P2-P6 with their GloRe units and adapters
///   kdloss::drkd::use_code_preset(levels, 5);
template <class T>
void use_code_preset(TotalLevel<T>* levels, std::size_t count) {
  for (std::size_t l = 0; l < count; ++l) {
    levels[l].pixel = PixelTerm::glore;
    levels[l].instance = l < 2;
    InstanceRelationMapsOptions& o = levels[l].instance_args.options;
    o.form = InstanceForm::code;
    o.output_size = 3;
    o.spatial_scale = 0.0;
    o.sampling_ratio = -1;
    o.aligned = false;
  }
}

/// The seed's form: its pixel relation L_P = MSE(G(T), G(S)) at every level and its instance relation (cosine
/// relation, relation filter as instance_args.paper.options say) at levels 0 and 1, pooled as the code pools.
///
///   kdloss::drkd::TotalLevel<float> levels[4];   // P2-P5
///   kdloss::drkd::use_paper_preset(levels, 4);
template <class T>
void use_paper_preset(TotalLevel<T>* levels, std::size_t count) {
  use_code_preset(levels, count);
  for (std::size_t l = 0; l < count; ++l) {
    levels[l].pixel = PixelTerm::seed;
    levels[l].instance_args.options.form = InstanceForm::paper;
  }
}

namespace total_detail {
using ::kdloss::detail::Carver;
using ::kdloss::detail::Checker;
using ::kdloss::detail::require;
using maps_detail::within;

inline constexpr EntryNames kNames{"kdloss::drkd::total_loss", "kdloss::drkd::total_loss_backward",
                                   "kdloss::drkd::total_loss_forward_backward"};

/// A term's value slot, its upstream gradient and whether it writes the level's gradient.
template <class T>
struct Slot {
  View<T> out;
  View<const T> grad_out;
};

/// The level's pixel term bound to its maps (seed: the options wrapped).
template <class T>
GloreRelationLossArgs<T> bind_glore(const TotalLevel<T>& lv, const Slot<T>& s) {
  GloreRelationLossArgs<T> g = lv.glore;
  g.student = lv.student;
  g.teacher = lv.teacher;
  g.out = s.out;
  g.grad_out = s.grad_out;
  g.grad_student = lv.grad_student;
  return g;
}
template <class T>
PixelRelationLossArgs<T> bind_seed(const TotalLevel<T>& lv, const Slot<T>& s) {
  PixelRelationLossArgs<T> p;
  p.student = lv.student;
  p.teacher = lv.teacher;
  p.out = s.out;
  p.grad_out = s.grad_out;
  p.grad_student = lv.grad_student;
  p.options = lv.seed_options;
  return p;
}
/// The level's instance term bound to its maps and the batch's boxes; accumulates onto the pixel term's
/// gradient when the level has one.
template <class T>
InstanceRelationMapsArgs<T> bind_instance(const TotalLevel<T>& lv, const TotalLossArgs<T>& a, const Slot<T>& s) {
  InstanceRelationMapsArgs<T> m = lv.instance_args;
  m.student_map = lv.student;
  m.teacher_map = lv.teacher;
  m.boxes = a.boxes;
  m.offsets = a.offsets;
  m.out = s.out;
  m.grad_out = s.grad_out;
  m.grad_student_map = lv.grad_student;
  m.options.map_grad.beta = lv.pixel == PixelTerm::none ? 0.0 : 1.0;
  if (m.options.spatial_scale == 0.0 && a.level_count > 0 && a.levels[0].student.rank() == 4 &&
      lv.student.rank() == 4)
    m.options.spatial_scale = double(lv.student.shape[3]) / (4.0 * double(a.levels[0].student.shape[3]));
  return m;
}

/// Calls f(where, args) for every term in order (the pixel term of level 0, its instance term, level 1 ...),
/// its value bound to terms[k] for the k-th term.
template <class T, class F>
void for_each_term(const char* fn, const TotalLossArgs<T>& a, Mode mode, T* terms, F&& f) {
  std::size_t k = 0;
  const Device dev = a.level_count > 0 ? a.levels[0].student.device : Device{};
  for (std::size_t l = 0; l < a.level_count; ++l) {
    const TotalLevel<T>& lv = a.levels[l];
    const std::string at = std::string(fn) + ": levels[" + std::to_string(l) + "]";
    const auto slot = [&]() {
      Slot<T> s;
      if (writes_value(mode)) s.out = View<T>(terms ? terms + k : nullptr, Dims{}, Dims{}, dev);
      if (mode == Mode::backward) s.grad_out = a.grad_out;
      ++k;
      return s;
    };
    if (lv.pixel == PixelTerm::glore) f(at + " (L_PR, the GloRe relation)", bind_glore(lv, slot()));
    if (lv.pixel == PixelTerm::seed) f(at + " (L_P, the seed's pixel relation)", bind_seed(lv, slot()));
    if (lv.instance) f(at + " (the instance relation)", bind_instance(lv, a, slot()));
  }
}

/// Each term's entry points, one overload per term.
template <class T>
void term_check(const GloreRelationLossArgs<T>& a, Mode m) {
  glore_relation_loss_check(a, m);
}
template <class T>
void term_check(const PixelRelationLossArgs<T>& a, Mode m) {
  pixel_relation_loss_check(a, m);
}
template <class T>
void term_check(const InstanceRelationMapsArgs<T>& a, Mode m) {
  instance_relation_maps_loss_check(a, m);
}
template <class T>
std::size_t term_bytes(const GloreRelationLossArgs<T>& a) {
  return glore_relation_loss_workspace_bytes(a);
}
template <class T>
std::size_t term_bytes(const PixelRelationLossArgs<T>& a) {
  return pixel_relation_loss_workspace_bytes(a);
}
template <class T>
std::size_t term_bytes(const InstanceRelationMapsArgs<T>& a) {
  return instance_relation_maps_loss_workspace_bytes(a);
}
template <class T>
void term_run(const GloreRelationLossArgs<T>& a, Mode m, const Exec& e) {
  glore_relation_loss(a, m, e);
}
template <class T>
void term_run(const PixelRelationLossArgs<T>& a, Mode m, const Exec& e) {
  pixel_relation_loss(a, m, e);
}
template <class T>
void term_run(const InstanceRelationMapsArgs<T>& a, Mode m, const Exec& e) {
  instance_relation_maps_loss(a, m, e);
}

template <class T>
std::int64_t term_count(const TotalLossArgs<T>& a) {
  std::int64_t k = 0;
  for (std::size_t l = 0; l < a.level_count; ++l) k += (a.levels[l].pixel != PixelTerm::none) + a.levels[l].instance;
  return k;
}

template <class T>
Device device_of(const TotalLossArgs<T>& a) {
  return a.level_count > 0 ? a.levels[0].student.device : a.out.device;
}

/// The buffers of one call: one value per term, the GPU's reduction partials, the largest term workspace.
template <class T>
struct Plan {
  std::int64_t terms_count = 0;
  T* terms = nullptr;
  double* partials = nullptr;
  void* scratch = nullptr;
  std::size_t scratch_bytes = 0, total = 0;
};

template <class T>
Plan<T> carve(const TotalLossArgs<T>& a, void* base, std::size_t scratch_bytes) {
  Plan<T> p;
  Carver c(base);
  p.terms_count = term_count(a);
  p.terms = c.take<T>(static_cast<std::size_t>(p.terms_count));
  p.partials = ::kdloss::detail::carve_reduction(c, device_of(a), p.terms_count);
  p.scratch_bytes = scratch_bytes;
  p.scratch = c.take<unsigned char>(scratch_bytes);
  p.total = c.bytes();
  return p;
}

/// The plan, its scratch the largest term's workspace (queried over stand-in value slots).
template <class T>
Plan<T> plan(const char* fn, const TotalLossArgs<T>& a, Mode mode, void* base) {
  const Plan<T> sized = carve(a, maps_detail::unmapped_base(1), 0);
  std::size_t bytes = 0;
  for_each_term(fn, a, mode, sized.terms, [&](const std::string& where, const auto& t) {
    bytes = std::max(bytes, within(where, [&] { return term_bytes(t); }));
  });
  return carve(a, base, bytes);
}

template <class T>
void check_unbound(const char* fn, const std::string& field, const View<T>& v) {
  require(absent(v), fn, ": argument '", field, "' must be absent (shape ", v.shape.str(),
          "): total_loss binds it to the level's maps, the boxes and its value");
}

/// The total's own checks: the levels, the term selectors, what the total binds, out and grad_out.
template <class T>
void check_levels(const char* fn, const TotalLossArgs<T>& a, Mode mode) {
  const Checker ck{fn};
  require(a.level_count == 0 || a.levels != nullptr, fn, ": argument 'levels' is null but level_count is ",
          a.level_count);
  const Device dev = device_of(a);
  bool any_instance = false;
  for (std::size_t l = 0; l < a.level_count; ++l) {
    const TotalLevel<T>& lv = a.levels[l];
    const std::string at = "levels[" + std::to_string(l) + "].";
    ck.rank(lv.student, (at + "student").c_str(), 4);
    ck.rank(lv.teacher, (at + "teacher").c_str(), 4);
    ck.device(lv.student, (at + "student").c_str(), dev);
    require(lv.pixel == PixelTerm::none || lv.pixel == PixelTerm::glore || lv.pixel == PixelTerm::seed, fn,
            ": argument '", at, "pixel' is ", static_cast<int>(lv.pixel), ", not a PixelTerm");
    if (lv.pixel == PixelTerm::glore) {
      const GloreRelationLossArgs<T>& g = lv.glore;
      check_unbound(fn, at + "glore.student", g.student);
      check_unbound(fn, at + "glore.teacher", g.teacher);
      check_unbound(fn, at + "glore.out", g.out);
      check_unbound(fn, at + "glore.grad_out", g.grad_out);
      check_unbound(fn, at + "glore.grad_student", g.grad_student);
    }
    if (lv.instance) {
      any_instance = true;
      const InstanceRelationMapsArgs<T>& m = lv.instance_args;
      check_unbound(fn, at + "instance_args.student_map", m.student_map);
      check_unbound(fn, at + "instance_args.teacher_map", m.teacher_map);
      check_unbound(fn, at + "instance_args.boxes", m.boxes);
      check_unbound(fn, at + "instance_args.offsets", m.offsets);
      check_unbound(fn, at + "instance_args.out", m.out);
      check_unbound(fn, at + "instance_args.grad_out", m.grad_out);
      check_unbound(fn, at + "instance_args.grad_student_map", m.grad_student_map);
    }
    if (writes_gradients(mode) && present(lv.grad_student)) {
      const std::string name = at + "grad_student";
      ck.not_null(lv.grad_student, name.c_str());
      ck.shape(lv.grad_student, name.c_str(), lv.student.shape);
      ck.device(lv.grad_student, name.c_str(), dev);
      ck.unique(lv.grad_student, name.c_str());
    }
  }
  if (!any_instance) {
    require(absent(a.boxes) && absent(a.offsets), fn,
            ": arguments 'boxes' and 'offsets' are given but no level runs an instance term");
  }
  if (writes_value(mode)) {
    ck.scalar_output(a.out, "out");
    ck.device(a.out, "out", dev);
  }
  if (mode == Mode::backward) {
    require(present(a.grad_out), fn, ": mode backward reads 'grad_out' but it is absent");
    ck.scalar_output(a.grad_out, "grad_out");
    ck.device(a.grad_out, "grad_out", dev);
  }
}

/// A level's gradient against every level's maps, the other levels' gradients, the boxes, out and grad_out,
/// named as the total names them (before the terms check the rest of their own arguments).
template <class T>
void check_across_levels(const char* fn, const TotalLossArgs<T>& a, Mode mode) {
  if (!writes_gradients(mode)) return;
  const Checker ck{fn};
  for (std::size_t l = 0; l < a.level_count; ++l) {
    const View<T>& g = a.levels[l].grad_student;
    if (absent(g)) continue;
    const std::string name = "levels[" + std::to_string(l) + "].grad_student";
    for (std::size_t o = 0; o < a.level_count; ++o) {
      const std::string other = "levels[" + std::to_string(o) + "].";
      ck.disjoint(g, name.c_str(), a.levels[o].student, (other + "student").c_str());
      ck.disjoint(g, name.c_str(), a.levels[o].teacher, (other + "teacher").c_str());
      if (o < l && present(a.levels[o].grad_student))
        ck.disjoint(g, name.c_str(), a.levels[o].grad_student, (other + "grad_student").c_str());
    }
    if (present(a.boxes)) ck.disjoint(g, name.c_str(), a.boxes, "boxes");
    if (present(a.out)) ck.disjoint(g, name.c_str(), a.out, "out");
    if (present(a.grad_out)) ck.disjoint(g, name.c_str(), a.grad_out, "grad_out");
  }
  if (writes_value(mode)) {
    for (std::size_t l = 0; l < a.level_count; ++l) {
      const std::string other = "levels[" + std::to_string(l) + "].";
      ck.disjoint(a.out, "out", a.levels[l].student, (other + "student").c_str());
      ck.disjoint(a.out, "out", a.levels[l].teacher, (other + "teacher").c_str());
    }
  }
}


}  // namespace total_detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
/// A term's own errors come prefixed with its level and term ("levels[1] (the instance relation): ...").
///
///   kdloss::drkd::TotalLossArgs<float> args;   // filled in as in TotalLossArgs's example
///   kdloss::drkd::total_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void total_loss_check(const TotalLossArgs<T>& a, Mode mode) {
  namespace td = total_detail;
  const char* fn = td::kNames(mode);
  td::check_levels(fn, a, mode);
  td::check_across_levels(fn, a, mode);
  const td::Plan<T> p = td::plan(fn, a, mode, maps_detail::unmapped_base(1));
  td::for_each_term(fn, a, mode, p.terms, [&](const std::string& where, const auto& t) {
    td::within(where, [&] { td::term_check(t, mode); });
  });
}

/// Workspace bytes of total_loss on these arguments, enough for every mode: one value per term and the
/// largest term's workspace (the terms run one after another).
///
///   kdloss::drkd::TotalLossArgs<float> args;   // filled in as in TotalLossArgs's example
///   std::size_t bytes = kdloss::drkd::total_loss_workspace_bytes(args);
template <class T>
std::size_t total_loss_workspace_bytes(const TotalLossArgs<T>& args) {
  const char* fn = "kdloss::drkd::total_loss_workspace_bytes";
  total_detail::check_levels(fn, args, Mode::forward);
  return total_detail::plan(fn, args, Mode::forward_backward, nullptr).total;
}

/// Checks, then runs every term in order. forward: out = the sum of the term values (in term order);
/// backward (each term recomputes its forward; reads grad_out): every present gradient times grad_out;
/// forward_backward: both. Each level's grad_student is overwritten with the sum of its terms' gradients.
///
///   kdloss::drkd::TotalLossArgs<float> args;   // filled in as in TotalLossArgs's example
///   kdloss::drkd::total_loss(args, kdloss::Mode::forward_backward);
template <class T>
void total_loss(const TotalLossArgs<T>& a, Mode mode, const Exec& exec = {}) {
  namespace td = total_detail;
  const char* fn = td::kNames(mode);
  total_loss_check(a, mode);
  const Device dev = td::device_of(a);
  const td::Plan<T> sized = td::plan(fn, a, mode, nullptr);  // the terms' queries once; then carve the same sizes
  ::kdloss::detail::HostScratch host;
  void* ws = ::kdloss::detail::resolve_workspace(fn, dev, exec.workspace, sized.total, host);
  const td::Plan<T> p = td::carve(a, ws, sized.scratch_bytes);
  const Exec inner{{p.scratch_bytes ? p.scratch : nullptr, p.scratch_bytes}, exec.stream, exec.blas};
  td::for_each_term(fn, a, mode, p.terms, [&](const std::string&, const auto& t) { td::term_run(t, mode, inner); });
  if (writes_gradients(mode)) {  // a requested gradient of a level without terms is zero
    for (std::size_t l = 0; l < a.level_count; ++l) {
      const TotalLevel<T>& lv = a.levels[l];
      if (present(lv.grad_student) && lv.pixel == PixelTerm::none && !lv.instance)
        ::kdloss::detail::transform<acc_t<T>>(dev, exec.stream, lv.grad_student.shape, expr::Zero{},
                                              std::tuple<>{}, std::tuple{lv.grad_student});
    }
  }
  if (writes_value(mode)) {
    const View<const T> terms(p.terms, Dims{p.terms_count}, Dims{1}, dev);
    ::kdloss::detail::transform_reduce<acc_t<T>>(dev, exec.stream, terms.shape, expr::Identity{}, std::tuple{terms},
                                                 std::tuple<>{}, p.partials, ::kdloss::detail::Keep{}, a.out.data);
  }
}

/// Thin wrapper: the value.
///
///   kdloss::drkd::total_loss_forward(args);   // args as in TotalLossArgs's example
template <class T>
void total_loss_forward(const TotalLossArgs<T>& args, const Exec& exec = {}) {
  total_loss(args, Mode::forward, exec);
}

/// Thin wrapper: grad_out times every present gradient.
///
///   kdloss::drkd::total_loss_backward(args);   // args with grad_out and the wanted gradients
template <class T>
void total_loss_backward(const TotalLossArgs<T>& args, const Exec& exec = {}) {
  total_loss(args, Mode::backward, exec);
}

/// Thin wrapper: the value and every present gradient in one call.
///
///   kdloss::drkd::total_loss_forward_backward(args);
template <class T>
void total_loss_forward_backward(const TotalLossArgs<T>& args, const Exec& exec = {}) {
  total_loss(args, Mode::forward_backward, exec);
}

}  // namespace drkd
} }  // namespace kdloss
