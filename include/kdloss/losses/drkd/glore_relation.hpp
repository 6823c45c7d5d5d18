// kdloss/losses/drkd/glore_relation.hpp: DRKD's pixel-wise relation distillation as the official code runs
// it (L_PR), one pyramid level:
//
//   L_PR,l = weight * || Conv1x1_l(GloRe_S,l(S_l)) - GloRe_T,l(T_l) ||_F       weight = 1e-3 (4e-3 * 0.25)
//
// GloRe_S and GloRe_T are two GloRe_Unit_2D units (ops/glore.hpp; training-mode BatchNorm blockers, eps
// 1e-4), Conv1x1 the level's non_local_adaptation Conv2d(C_s, C_t, 1) with bias. The caller sums the levels
// (the code: [GloRe_Unit_2D(256, 64)] x 2 for P2/P3, [GloRe_Unit_2D(256, 256)] x 3 for P4-P6). Gradients
// reach the student map through GloRe_S and the adapter, and the parameters of GloRe_S, of the adapter and
// of GloRe_T (the teacher unit is trained from this loss, BN included); the teacher map itself gets none.
// See docs/losses/drkd.md.
//
// Composite (core/entry.hpp shape): GloreRelationLossArgs, glore_relation_loss_check,
// glore_relation_loss_workspace_bytes, glore_relation_loss(args, mode, exec) and the wrappers
// glore_relation_loss_forward / _backward / _forward_backward. It runs ops::glore twice, ops::linear once
// and the Frobenius distance ops::distance once, all in ONE caller workspace:
//
//   [GloRe_S(S)] [A = adapter(GloRe_S(S))] [GloRe_T(T)] [GloRe_S state] [GloRe_T state]
//   (gradient modes) [dL/dA] [dL/dGloRe_T(T)] [dL/dGloRe_S(S)]   [ops::distance's workspace]
//   [scratch: max of the two ops::glore calls and the ops::linear call]
//
// No reserve: backward recomputes the forward into the workspace (forward_backward is the call training
// wants; it runs each forward once).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/ops/distance.hpp"
#include "kdloss/ops/glore.hpp"
#include "kdloss/ops/linear.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace drkd {

/// The ten parameters of one GloRe unit, named (and shaped) as in ops::GloreArgs: m = num_mid,
/// state_weight [2m, C], state_bias [2m], proj_weight [m, C], proj_bias [m], gcn_conv1_weight [m, m],
/// gcn_conv1_bias [m], gcn_conv2_weight [2m, 2m], extend_weight [C, 2m], bn_weight, bn_bias [C].
template <class T>
struct GloreUnitParams {
  View<const T> state_weight{};
  View<const T> state_bias{};
  View<const T> proj_weight{};
  View<const T> proj_bias{};
  View<const T> gcn_conv1_weight{};
  View<const T> gcn_conv1_bias{};
  View<const T> gcn_conv2_weight{};
  View<const T> extend_weight{};
  View<const T> bn_weight{};
  View<const T> bn_bias{};
};

/// The gradients of one unit's parameters (each optional, the parameter's shape; GradAccumulate).
template <class T>
struct GloreUnitGrads {
  View<T> state_weight{};
  View<T> state_bias{};
  View<T> proj_weight{};
  View<T> proj_bias{};
  View<T> gcn_conv1_weight{};
  View<T> gcn_conv1_bias{};
  View<T> gcn_conv2_weight{};
  View<T> extend_weight{};
  View<T> bn_weight{};
  View<T> bn_bias{};
};

/// A unit's blocker statistics of the batch ([C] each, optional forward outputs): the batch mean and the
/// UNBIASED variance, for the caller's running statistics (ops::batch_norm_update_running_stats).
template <class T>
struct GloreUnitStats {
  View<T> bn_batch_mean{};
  View<T> bn_batch_var{};
};

/// Options of glore_relation_loss.
struct GloreRelationOptions {
  double weight = 1e-3;          // the code's loss weight 4e-3 times its 0.25 (a positive finite number)
  double bn_eps = 1e-4;          // both blockers' eps (BatchNorm2d(C, eps=1e-04))
  GradAccumulate param_grads{};  // every parameter gradient (both units, the adapter): beta * old + dL/dp
};

/// The arguments of one glore_relation_loss call (one pyramid level).
/// - student [B, C_s, H, W], teacher [B, C_t, H, W]: any strides whose H and W merge into one strided axis
///   (contiguous, channels-last, batch or channel slices); B * H * W > 1 (training-mode BatchNorm).
/// - student_glore / teacher_glore: the two units' parameters (GloRe_S over C_s, GloRe_T over C_t, each
///   with its own num_mid); adapt_weight [C_t, C_s] and adapt_bias [C_t] (optional): non_local_adaptation.
/// - out: one element (forward, forward_backward); grad_out: one element (backward).
/// - grad_student (the student's shape), grad_student_glore, grad_teacher_glore, grad_adapt_weight,
///   grad_adapt_bias: gradient outputs, each optional (backward: grad_out * dL/d., forward_backward: dL/d.).
/// - student_bn_stats / teacher_bn_stats: optional forward outputs (forward, forward_backward).
/// The teacher map gets no gradient.
///
///   // one P3 level of the code: GloRe_Unit_2D(256, 64) on both sides, Conv2d(256, 256, 1)
///   const std::int64_t C = 256, m = 64, s = 2 * m;
///   const kdloss::Dims map{2, C, 25, 42};
///   std::vector<float> st(map.product(), 0.5f), te(map.product(), 0.25f), gs(map.product());
///   std::vector<float> ws_(s * C, 0.01f), bs_(s), wp(m * C, 0.01f), bp(m), a1(m * m), b1(m), a2(s * s, 0.01f),
///       we(C * s, 0.01f), gamma(C, 1.0f), beta(C), aw(C * C, 0.01f), ab(C);
///   kdloss::drkd::GloreUnitParams<float> unit;
///   unit.state_weight = kdloss::host_view<const float>(ws_.data(), {s, C});
///   unit.state_bias = kdloss::host_view<const float>(bs_.data(), {s});
///   unit.proj_weight = kdloss::host_view<const float>(wp.data(), {m, C});
///   unit.proj_bias = kdloss::host_view<const float>(bp.data(), {m});
///   unit.gcn_conv1_weight = kdloss::host_view<const float>(a1.data(), {m, m});
///   unit.gcn_conv1_bias = kdloss::host_view<const float>(b1.data(), {m});
///   unit.gcn_conv2_weight = kdloss::host_view<const float>(a2.data(), {s, s});
///   unit.extend_weight = kdloss::host_view<const float>(we.data(), {C, s});
///   unit.bn_weight = kdloss::host_view<const float>(gamma.data(), {C});
///   unit.bn_bias = kdloss::host_view<const float>(beta.data(), {C});
///   float loss = 0;
///   kdloss::drkd::GloreRelationLossArgs<float> args;
///   args.student = kdloss::host_view<const float>(st.data(), map);
///   args.teacher = kdloss::host_view<const float>(te.data(), map);
///   args.student_glore = unit;   // (two units with their own parameters in training)
///   args.teacher_glore = unit;
///   args.adapt_weight = kdloss::host_view<const float>(aw.data(), {C, C});
///   args.adapt_bias = kdloss::host_view<const float>(ab.data(), {C});
///   args.out = kdloss::host_scalar(&loss);
///   args.grad_student = kdloss::host_view(gs.data(), map);
///   kdloss::drkd::glore_relation_loss(args, kdloss::Mode::forward_backward);
template <class T>
struct GloreRelationLossArgs {
  View<const T> student{};
  View<const T> teacher{};
  GloreUnitParams<T> student_glore{};
  GloreUnitParams<T> teacher_glore{};
  View<const T> adapt_weight{};
  View<const T> adapt_bias{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_student{};
  GloreUnitGrads<T> grad_student_glore{};
  GloreUnitGrads<T> grad_teacher_glore{};
  View<T> grad_adapt_weight{};
  View<T> grad_adapt_bias{};
  GloreUnitStats<T> student_bn_stats{};
  GloreUnitStats<T> teacher_bn_stats{};
  GloreRelationOptions options{};
};

namespace detail {
using ::kdloss::detail::Carver;
using ::kdloss::detail::Checker;
using ::kdloss::detail::require;

inline constexpr EntryNames kGloreRelationNames{"kdloss::drkd::glore_relation_loss",
                                                "kdloss::drkd::glore_relation_loss_backward",
                                                "kdloss::drkd::glore_relation_loss_forward_backward"};

template <class T>
bool any_present(const GloreUnitGrads<T>& g) {
  return present(g.state_weight) || present(g.state_bias) || present(g.proj_weight) || present(g.proj_bias) ||
         present(g.gcn_conv1_weight) || present(g.gcn_conv1_bias) || present(g.gcn_conv2_weight) ||
         present(g.extend_weight) || present(g.bn_weight) || present(g.bn_bias);
}

/// ops::glore's arguments for one unit: x, the parameters and their gradients, the options.
template <class T>
ops::GloreArgs<T> unit_args(const View<const T>& x, const GloreUnitParams<T>& p, const GloreUnitGrads<T>& g,
                            const GloreRelationOptions& o) {
  ops::GloreArgs<T> a;
  a.x = x;
  a.state_weight = p.state_weight;
  a.state_bias = p.state_bias;
  a.proj_weight = p.proj_weight;
  a.proj_bias = p.proj_bias;
  a.gcn_conv1_weight = p.gcn_conv1_weight;
  a.gcn_conv1_bias = p.gcn_conv1_bias;
  a.gcn_conv2_weight = p.gcn_conv2_weight;
  a.extend_weight = p.extend_weight;
  a.bn_weight = p.bn_weight;
  a.bn_bias = p.bn_bias;
  a.grad_state_weight = g.state_weight;
  a.grad_state_bias = g.state_bias;
  a.grad_proj_weight = g.proj_weight;
  a.grad_proj_bias = g.proj_bias;
  a.grad_gcn_conv1_weight = g.gcn_conv1_weight;
  a.grad_gcn_conv1_bias = g.gcn_conv1_bias;
  a.grad_gcn_conv2_weight = g.gcn_conv2_weight;
  a.grad_extend_weight = g.extend_weight;
  a.grad_bn_weight = g.bn_weight;
  a.grad_bn_bias = g.bn_bias;
  a.options.bn_eps = o.bn_eps;
  a.options.param_grads = o.param_grads;
  return a;
}

/// Whether backward needs dL/dGloRe_S(S) (the adapter's input gradient and the student unit's backward).
template <class T>
bool needs_student_chain(const GloreRelationLossArgs<T>& a) {
  return present(a.grad_student) || any_present(a.grad_student_glore);
}

/// The buffers of one call in `mode`, carved from `base` (null: sizes only).
template <class T>
struct GloreRelationPlan {
  T *gs = nullptr, *adapted = nullptr, *gt = nullptr, *da = nullptr, *dgt = nullptr, *dgs = nullptr;
  void *state_s = nullptr, *state_t = nullptr;
  std::size_t state_s_bytes = 0, state_t_bytes = 0;
  void* dist = nullptr;  // ops::distance's workspace (the norm kept between its passes)
  std::size_t dist_bytes = 0;
  void* scratch = nullptr;
  std::size_t scratch_bytes = 0, total = 0;
};

/// The contiguous [B, C, H, W] map over `p` on `dev`.
template <class U>
View<U> map_over(U* p, const Dims& shape, Device dev) {
  return View<U>(p, shape, contiguous_strides(shape), dev);
}

/// The adapter's ops::linear arguments (x = GloRe_S(S) in the workspace).
template <class T>
ops::LinearArgs<T> adapter_args(const GloreRelationLossArgs<T>& a, const GloreRelationPlan<T>& p, Mode mode) {
  const Device dev = a.student.device;
  const Dims ts = a.teacher.shape;
  ops::LinearArgs<T> l;
  l.x = map_over<const T>(p.gs, a.student.shape, dev);
  l.weight = a.adapt_weight;
  l.bias = a.adapt_bias;
  if (writes_value(mode)) l.y = map_over(p.adapted, ts, dev);
  if (writes_gradients(mode)) {
    l.grad_y = map_over<const T>(p.da, ts, dev);
    if (needs_student_chain(a)) l.grad_x = map_over(p.dgs, a.student.shape, dev);
    l.grad_weight = a.grad_adapt_weight;
    l.grad_bias = a.grad_adapt_bias;
    l.options.param_grads = a.options.param_grads;
  }
  return l;
}

template <class T>
GloreRelationPlan<T> plan(const GloreRelationLossArgs<T>& a, Mode mode, void* base) {
  const Device dev = a.student.device;
  const auto ns = static_cast<std::size_t>(a.student.numel()), nt = static_cast<std::size_t>(a.teacher.numel());
  Carver c(base);
  GloreRelationPlan<T> p;
  p.gs = c.take<T>(ns);
  p.adapted = c.take<T>(nt);
  p.gt = c.take<T>(nt);
  const auto us = unit_args(a.student, a.student_glore, a.grad_student_glore, a.options);
  const auto ut = unit_args(a.teacher, a.teacher_glore, a.grad_teacher_glore, a.options);
  p.state_s_bytes = ops::glore_reserve_bytes(us);
  p.state_t_bytes = ops::glore_reserve_bytes(ut);
  p.state_s = c.take<unsigned char>(p.state_s_bytes);
  p.state_t = c.take<unsigned char>(p.state_t_bytes);
  if (writes_gradients(mode)) {
    p.da = c.take<T>(nt);
    p.dgt = c.take<T>(nt);
    p.dgs = c.take<T>(ns);
  }
  ops::DistanceArgs<T> q;
  q.a = a.teacher;  // the shape and device of A and G_T
  q.b = a.teacher;
  p.dist_bytes = ops::distance_workspace_bytes(q);
  p.dist = c.take<unsigned char>(p.dist_bytes);
  // The ops' scratch, every mode's largest (the units' queries see a reserve: the state lives above).
  ops::GloreArgs<T> qs = us, qt = ut;
  if (needs_student_chain(a)) qs.grad_x = a.grad_student;  // as the backward call passes it
  qs.out = map_over(p.gs, a.student.shape, dev);              // the outputs the calls pass (shapes only)
  qt.out = map_over(p.gt, a.teacher.shape, dev);
  qs.grad_out = map_over<const T>(p.dgs, a.student.shape, dev);
  qt.grad_out = map_over<const T>(p.dgt, a.teacher.shape, dev);
  qs.reserve = {const_cast<T*>(a.student.data), p.state_s_bytes};  // marks the reserve present: not read
  qt.reserve = {const_cast<T*>(a.teacher.data), p.state_t_bytes};
  std::size_t scratch = std::max(ops::glore_workspace_bytes(qs), ops::glore_workspace_bytes(qt));
  for (Mode m : {Mode::forward, Mode::backward}) {
    if (!writes_gradients(mode) && m == Mode::backward) continue;
    const ops::LinearArgs<T> l = adapter_args(a, p, m);
    scratch = std::max(scratch, ops::detail::linear_scratch(l, ops::detail::linear_plan(l), m).total);
  }
  p.scratch_bytes = scratch;
  p.scratch = c.take<unsigned char>(scratch);
  p.total = c.bytes();
  return p;
}

/// Runs `f` and names the unit in the error it throws.
template <class F>
void in_unit(const char* fn, const char* unit, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    require(false, fn, ": in '", unit, "': ", e.what());
  }
}

template <class T>
void check_unit(const char* fn, const char* name, const char* stats_name, const View<const T>& x,
                const GloreUnitParams<T>& params,
                const GloreUnitGrads<T>& grads, const View<T>& grad_x, const GloreUnitStats<T>& stats, Mode mode,
                const GloreRelationOptions& o) {
  const Checker ck{fn};
  ops::GloreArgs<T> u = unit_args(x, params, grads, o);
  if (writes_gradients(mode)) {
    u.grad_out = x;  // stands for dL/dGloRe(x): a view of x's shape that no output may overlap
    u.grad_x = grad_x;
    in_unit(fn, name, [&] { ops::glore_check(u, Mode::backward); });  // the gradient outputs
  }
  if (writes_value(mode)) {
    const std::int64_t C = x.shape[1];
    const View<T> views[2] = {stats.bn_batch_mean, stats.bn_batch_var};
    const char* const args[2] = {".bn_batch_mean", ".bn_batch_var"};
    for (int k = 0; k < 2; ++k) {
      const View<T>& v = views[k];
      if (absent(v)) continue;
      const std::string full = std::string(stats_name) + args[k];
      ck.not_null(v, full.c_str());
      ck.shape(v, full.c_str(), Dims{C});
      ck.device(v, full.c_str(), x.device);
      ck.unique(v, full.c_str());
      ck.disjoint(v, full.c_str(), x, name);
    }
  }
}

/// The inputs: the maps, the adapter, the options and both units' x and parameters (what the size query reads).
template <class T>
void check_inputs(const GloreRelationLossArgs<T>& a, const char* fn) {
  const Checker ck{fn};
  ck.rank(a.student, "student", 4);
  ck.rank(a.teacher, "teacher", 4);
  ck.not_null(a.student, "student");
  ck.not_null(a.teacher, "teacher");
  ck.device(a.teacher, "teacher", a.student.device);
  const Dims &ss = a.student.shape, &ts = a.teacher.shape;
  require(ss[0] == ts[0] && ss[2] == ts[2] && ss[3] == ts[3], fn, ": arguments 'student' ", ss.str(), " and 'teacher' ",
          ts.str(), " must have the same batch, height and width");
  const Device dev = a.student.device;
  require(present(a.adapt_weight), fn, ": argument 'adapt_weight' is absent; L_PR needs the adaptation conv");
  ck.not_null(a.adapt_weight, "adapt_weight");
  ck.shape(a.adapt_weight, "adapt_weight", Dims{ts[1], ss[1]});
  ck.device(a.adapt_weight, "adapt_weight", dev);
  if (present(a.adapt_bias)) {
    ck.not_null(a.adapt_bias, "adapt_bias");
    ck.shape(a.adapt_bias, "adapt_bias", Dims{ts[1]});
    ck.device(a.adapt_bias, "adapt_bias", dev);
  }
  require(std::isfinite(a.options.weight) && a.options.weight >= 0, fn, ": option 'weight' is ", a.options.weight,
          " but must be finite and >= 0");
  ::kdloss::detail::require_backend<T>(fn, dev);
  in_unit(fn, "student_glore", [&] {
    (void)ops::glore_reserve_bytes(unit_args(a.student, a.student_glore, GloreUnitGrads<T>{}, a.options));
  });
  in_unit(fn, "teacher_glore", [&] {
    (void)ops::glore_reserve_bytes(unit_args(a.teacher, a.teacher_glore, GloreUnitGrads<T>{}, a.options));
  });
}
}  // namespace detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::drkd::GloreRelationLossArgs<float> args;   // filled in as in GloreRelationLossArgs's example
///   kdloss::drkd::glore_relation_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void glore_relation_loss_check(const GloreRelationLossArgs<T>& a, Mode mode) {
  const char* fn = detail::kGloreRelationNames(mode);
  const detail::Checker ck{fn};
  using detail::require;
  detail::check_inputs(a, fn);
  const Dims& ts = a.teacher.shape;
  const Device dev = a.student.device;
  // Every parameter of both units, named as the caller passed it: a gradient output over one is named here,
  // before the units' checks (which name their op's arguments: 'grad_x', 'state_weight').
  struct Named {
    View<const T> v;
    std::string name;
  };
  std::vector<Named> params;
  const auto add_unit = [&](const GloreUnitParams<T>& u, const char* unit) {
    const View<const T>* views[10] = {&u.state_weight,      &u.state_bias,      &u.proj_weight,   &u.proj_bias,
                                      &u.gcn_conv1_weight,  &u.gcn_conv1_bias,  &u.gcn_conv2_weight,
                                      &u.extend_weight,     &u.bn_weight,       &u.bn_bias};
    const char* names[10] = {"state_weight",     "state_bias",    "proj_weight", "proj_bias", "gcn_conv1_weight",
                             "gcn_conv1_bias",   "gcn_conv2_weight", "extend_weight", "bn_weight", "bn_bias"};
    for (int k = 0; k < 10; ++k) params.push_back({*views[k], std::string(unit) + "." + names[k]});
  };
  add_unit(a.student_glore, "student_glore");
  add_unit(a.teacher_glore, "teacher_glore");
  const auto grad = [&](const View<T>& g, const char* name, const Dims& shape) {
    if (absent(g)) return;
    ck.not_null(g, name);
    ck.shape(g, name, shape);
    ck.device(g, name, dev);
    ck.unique(g, name);
    ck.disjoint(g, name, a.student, "student");
    ck.disjoint(g, name, a.teacher, "teacher");
    ck.disjoint(g, name, a.adapt_weight, "adapt_weight");
    if (present(a.adapt_bias)) ck.disjoint(g, name, a.adapt_bias, "adapt_bias");
    for (const Named& p : params)
      if (present(p.v)) ck.disjoint(g, name, p.v, p.name.c_str());
    if (writes_value(mode)) ck.disjoint(g, name, a.out, "out");
    if (mode == Mode::backward) ck.disjoint(g, name, a.grad_out, "grad_out");
  };
  if (writes_gradients(mode)) grad(a.grad_student, "grad_student", a.student.shape);
  detail::check_unit(fn, "student_glore", "student_bn_stats", a.student, a.student_glore, a.grad_student_glore,
                     a.grad_student,
                     a.student_bn_stats, mode, a.options);
  detail::check_unit(fn, "teacher_glore", "teacher_bn_stats", a.teacher, a.teacher_glore, a.grad_teacher_glore,
                     View<T>{},
                     a.teacher_bn_stats, mode, a.options);
  if (writes_value(mode)) {
    ck.scalar_output(a.out, "out");
    ck.device(a.out, "out", dev);
    ck.disjoint(a.out, "out", a.student, "student");
    ck.disjoint(a.out, "out", a.teacher, "teacher");
    ck.disjoint(a.out, "out", a.adapt_weight, "adapt_weight");
  }
  if (mode == Mode::backward) {
    require(present(a.grad_out), fn, ": mode backward reads 'grad_out' but it is absent");
    ck.scalar_output(a.grad_out, "grad_out");
    ck.device(a.grad_out, "grad_out", dev);
  }
  if (writes_gradients(mode)) {
    grad(a.grad_adapt_weight, "grad_adapt_weight", a.adapt_weight.shape);
    grad(a.grad_adapt_bias, "grad_adapt_bias", Dims{ts[1]});
    if (present(a.grad_adapt_weight) && present(a.grad_adapt_bias))
      ck.disjoint(a.grad_adapt_weight, "grad_adapt_weight", a.grad_adapt_bias, "grad_adapt_bias");
  }
}

/// Workspace bytes of glore_relation_loss on these arguments, enough for every mode: the three maps
/// GloRe_S(S), A and GloRe_T(T), both units' state (ops::glore_reserve_bytes), in gradient modes three
/// more maps, ops::distance's workspace (the norm, GPU reduction partials), and the largest scratch of the ops
/// it runs.
///
///   kdloss::drkd::GloreRelationLossArgs<float> args;   // filled in as in GloreRelationLossArgs's example
///   std::size_t bytes = kdloss::drkd::glore_relation_loss_workspace_bytes(args);
template <class T>
std::size_t glore_relation_loss_workspace_bytes(const GloreRelationLossArgs<T>& args) {
  detail::check_inputs(args, "kdloss::drkd::glore_relation_loss_workspace_bytes");
  return detail::plan(args, Mode::forward_backward, nullptr).total;
}

/// Checks, then runs. forward: out = weight * ||A - G_T||_F with A = adapt(GloRe_S(student)) and
/// G_T = GloRe_T(teacher), and the units' batch statistics when asked. backward (recomputes the forward
/// into the workspace; reads grad_out): every present gradient times grad_out. forward_backward: both,
/// each op's forward once. Parameter gradients follow options.param_grads; batch sums run in a fixed
/// order (bits independent of the thread count).
///
///   kdloss::drkd::GloreRelationLossArgs<float> args;   // filled in as in GloreRelationLossArgs's example
///   kdloss::drkd::glore_relation_loss(args, kdloss::Mode::forward_backward);
template <class T>
void glore_relation_loss(const GloreRelationLossArgs<T>& a, Mode mode, const Exec& exec = {}) {
  const char* fn = detail::kGloreRelationNames(mode);
  glore_relation_loss_check(a, mode);
  const Device dev = a.student.device;
  const std::size_t need = detail::plan(a, mode, nullptr).total;
  ::kdloss::detail::HostScratch host;
  void* ws = ::kdloss::detail::resolve_workspace(fn, dev, exec.workspace, need, host);
  detail::GloreRelationPlan<T> p = detail::plan(a, mode, ws);
  const Exec inner{{p.scratch_bytes ? p.scratch : nullptr, p.scratch_bytes}, exec.stream, exec.blas};

  // forward of both units (state kept in the workspace) and of the adapter
  ops::GloreArgs<T> us = detail::unit_args(a.student, a.student_glore, a.grad_student_glore, a.options);
  ops::GloreArgs<T> ut = detail::unit_args(a.teacher, a.teacher_glore, a.grad_teacher_glore, a.options);
  us.out = detail::map_over(p.gs, a.student.shape, dev);
  ut.out = detail::map_over(p.gt, a.teacher.shape, dev);
  us.reserve = {p.state_s, p.state_s_bytes};
  ut.reserve = {p.state_t, p.state_t_bytes};
  if (writes_value(mode)) {
    us.bn_batch_mean = a.student_bn_stats.bn_batch_mean;
    us.bn_batch_var = a.student_bn_stats.bn_batch_var;
    ut.bn_batch_mean = a.teacher_bn_stats.bn_batch_mean;
    ut.bn_batch_var = a.teacher_bn_stats.bn_batch_var;
  }
  ops::glore(us, Mode::forward, inner);
  ops::glore(ut, Mode::forward, inner);
  ops::linear(detail::adapter_args(a, p, Mode::forward), Mode::forward, inner);

  // out = weight * ||A - G_T||_F; in gradient modes dL/dA and dL/dG_T = -dL/dA (ops::distance)
  ops::DistanceArgs<T> d;
  d.a = detail::map_over<const T>(p.adapted, a.teacher.shape, dev);
  d.b = detail::map_over<const T>(p.gt, a.teacher.shape, dev);
  d.options.weight = a.options.weight;
  if (writes_value(mode)) d.out = a.out;
  if (mode == Mode::backward) d.grad_out = a.grad_out;
  if (writes_gradients(mode)) {
    d.grad_a = detail::map_over(p.da, a.teacher.shape, dev);
    d.grad_b = detail::map_over(p.dgt, a.teacher.shape, dev);
  }
  ops::distance(d, mode, Exec{{p.dist, p.dist_bytes}, exec.stream, exec.blas});
  if (!writes_gradients(mode)) return;

  // back through the adapter and both units
  const ops::LinearArgs<T> lb = detail::adapter_args(a, p, Mode::backward);
  if (present(lb.grad_x) || present(lb.grad_weight) || present(lb.grad_bias)) ops::linear(lb, Mode::backward, inner);
  if (detail::needs_student_chain(a)) {
    us.grad_out = detail::map_over<const T>(p.dgs, a.student.shape, dev);
    us.grad_x = a.grad_student;
    us.bn_batch_mean = us.bn_batch_var = View<T>{};
    ops::glore(us, Mode::backward, inner);
  }
  if (detail::any_present(a.grad_teacher_glore)) {
    ut.grad_out = detail::map_over<const T>(p.dgt, a.teacher.shape, dev);
    ut.bn_batch_mean = ut.bn_batch_var = View<T>{};
    ops::glore(ut, Mode::backward, inner);
  }
}

/// Thin wrapper: the value (and the units' batch statistics when set on `args`).
///
///   kdloss::drkd::glore_relation_loss_forward(args);   // args as in GloreRelationLossArgs's example
template <class T>
void glore_relation_loss_forward(const GloreRelationLossArgs<T>& args, const Exec& exec = {}) {
  glore_relation_loss(args, Mode::forward, exec);
}

/// Thin wrapper: grad_out times every present gradient (recomputes the forward).
///
///   kdloss::drkd::glore_relation_loss_backward(args);  // args with grad_out and the wanted gradients
template <class T>
void glore_relation_loss_backward(const GloreRelationLossArgs<T>& args, const Exec& exec = {}) {
  glore_relation_loss(args, Mode::backward, exec);
}

/// Thin wrapper: the value and every present gradient in one call.
///
///   kdloss::drkd::glore_relation_loss_forward_backward(args);
template <class T>
void glore_relation_loss_forward_backward(const GloreRelationLossArgs<T>& args, const Exec& exec = {}) {
  glore_relation_loss(args, Mode::forward_backward, exec);
}

}  // namespace drkd
} }  // namespace kdloss
