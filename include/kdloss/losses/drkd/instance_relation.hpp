// kdloss/losses/drkd/instance_relation.hpp: DRKD's instance-wise relation distillation as the official code
// runs it (two-stage, losses.md 2.3), one pyramid level, on RoI-pooled features of the ground-truth boxes:
//
//   x = R flattened to [n_b, D] per image b (D = C * P * Q; the code: C = 256, 3 x 3 RoIs, D = 2304)
//   ObjectRelation_1:  theta = x W_th^T + b_th, phi = x W_ph^T + b_ph, g = x W_g^T + b_g     [n_b, I]
//                      f = theta phi^T (dot product)                                          [n_b, n_b]
//                      mask = softmax_row(x W_r^T + b_r)   (the relation filter, W_r [n_b, D] an INPUT)
//                      A = softmax_row(f (.) mask),   z = (A g) W_W^T + b_W + x                [n_b, D]
//   L_IR,l = relation_weight * sum_b || Conv1x1_r(z_S,b) - z_T,b ||_F          relation_weight = 4e-3
//   L_fg,l = feature_weight  * sum_b || Conv1x1_f(R_S,b) - R_T,b ||_F          feature_weight  = 2.4e-3
//   out    = L_IR,l + L_fg,l (L_fg only when the feature adapter is given)
//
// The code creates the filter layer nn.Linear(D, n_b) fresh (default init) inside every forward, for the
// student and the teacher separately; kdloss takes W_r and b_r as inputs, packed over the images like the
// boxes ([n, D] and [n]; image b's rows are its own filter), and an absent filter means mask = 1 (the
// one-stage code's ObjectRelation without `resize`). The PyTorch bridge draws them as the code does.
// Gradients reach the student RoI features (through both adapters and the student relation), every
// student-side parameter, the teacher relation's parameters (the code trains them) and, when asked, the
// filters; the teacher features get none. The caller sums the levels (the code: l in {0, 1}).
//
// Composite (core/entry.hpp shape): InstanceRelationLossArgs, instance_relation_loss_check,
// instance_relation_loss_workspace_bytes, instance_relation_loss(args, mode, exec) and the wrappers
// _forward / _backward / _forward_backward. It runs ops::linear, ops::matmul, ops::softmax and
// ops::distance on one caller workspace; no reserve (backward recomputes the forward; forward_backward
// runs it once). docs/losses/drkd.md has the gradients.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/ragged.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/basic.hpp"
#include "kdloss/ops/distance.hpp"
#include "kdloss/ops/linear.hpp"
#include "kdloss/ops/matmul.hpp"
#include "kdloss/ops/softmax.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace drkd {

/// The parameters of one ObjectRelation_1(in = D): theta, phi, g = Linear(D, I) and W = Linear(I, D) (the
/// code: I = D / 2). theta_weight, phi_weight, g_weight [I, D], their biases [I]; W_weight [D, I], W_bias [D].
template <class T>
struct ObjectRelationParams {
  View<const T> theta_weight{};
  View<const T> theta_bias{};
  View<const T> phi_weight{};
  View<const T> phi_bias{};
  View<const T> g_weight{};
  View<const T> g_bias{};
  View<const T> W_weight{};
  View<const T> W_bias{};
};

/// Their gradients (each optional, the parameter's shape; written as options.param_grads says).
template <class T>
struct ObjectRelationGrads {
  View<T> theta_weight{};
  View<T> theta_bias{};
  View<T> phi_weight{};
  View<T> phi_bias{};
  View<T> g_weight{};
  View<T> g_bias{};
  View<T> W_weight{};
  View<T> W_bias{};
};

/// One side's relation filter (the code's per-call nn.Linear(D, n_b) of every image, packed): weight
/// [n, D], bias [n]; both absent: no filter (mask = 1). Its gradients are optional outputs, overwritten.
template <class T>
struct RelationFilter {
  View<const T> weight{};
  View<const T> bias{};
};
template <class T>
struct RelationFilterGrads {
  View<T> weight{};
  View<T> bias{};
};

/// Options of instance_relation_loss.
struct InstanceRelationOptions {
  double relation_weight = 4e-3;   // L_IR (the code's 0.004)
  double feature_weight = 2.4e-3;  // L_fg (the code's 0.008 * 0.3); used when the feature adapter is given
  GradAccumulate param_grads{};    // relation and adapter parameter gradients: beta * old + dL/dp
};

/// The arguments of one instance_relation_loss call (one pyramid level).
/// - student [n, C_s, P, Q], teacher [n, C_t, P, Q]: RoI features of the n boxes of the batch, packed by
///   image (any strides); boxes: the ragged split (host offsets, B + 1 entries, ending at n; an image
///   without boxes is legal and adds 0).
/// - student_relation over D_s = C_s P Q, teacher_relation over D_t = C_t P Q (each its own I).
/// - student_filter [n, D_s] / [n], teacher_filter [n, D_t] / [n]: optional (absent: mask = 1).
/// - relation_adapt_weight [C_t, C_s] (+ bias [C_t], optional): relation_adaptation, required.
/// - feature_adapt_weight [C_t, C_s] (+ bias): for_adaptation, optional (absent: no L_fg term).
/// - out: one element (forward, forward_backward); grad_out: one element (backward).
/// - grad_*: optional outputs (backward: grad_out * dL/d., forward_backward: dL/d.). The teacher
///   features get no gradient.
///
///   // the code's level P2 for a batch of two images with 3 and 2 boxes (C = 256, 3 x 3 RoIs)
///   const std::int64_t n = 5, C = 256, D = C * 9, I = D / 2;
///   std::vector<float> rs(n * D, 0.5f), rt(n * D, 0.25f), gs(n * D), w(I * D, 1e-3f), b(I), wW(D * I, 1e-3f),
///       bW(D), fw(n * D, 1e-3f), fb(n), aw(C * C, 1e-2f), ab(C);
///   std::int64_t offsets[] = {0, 3, 5};
///   kdloss::drkd::ObjectRelationParams<float> rel;
///   rel.theta_weight = rel.phi_weight = rel.g_weight = kdloss::host_view<const float>(w.data(), {I, D});
///   rel.theta_bias = rel.phi_bias = rel.g_bias = kdloss::host_view<const float>(b.data(), {I});
///   rel.W_weight = kdloss::host_view<const float>(wW.data(), {D, I});
///   rel.W_bias = kdloss::host_view<const float>(bW.data(), {D});
///   float loss = 0;
///   kdloss::drkd::InstanceRelationLossArgs<float> args;
///   args.student = kdloss::host_view<const float>(rs.data(), {n, C, 3, 3});
///   args.teacher = kdloss::host_view<const float>(rt.data(), {n, C, 3, 3});
///   args.boxes.offsets = kdloss::host_view<const std::int64_t>(offsets, {3});
///   args.student_relation = rel;   // (two modules with their own parameters in training)
///   args.teacher_relation = rel;
///   args.student_filter = {kdloss::host_view<const float>(fw.data(), {n, D}), kdloss::host_view<const float>(fb.data(), {n})};
///   args.teacher_filter = args.student_filter;
///   args.relation_adapt_weight = args.feature_adapt_weight = kdloss::host_view<const float>(aw.data(), {C, C});
///   args.relation_adapt_bias = args.feature_adapt_bias = kdloss::host_view<const float>(ab.data(), {C});
///   args.out = kdloss::host_scalar(&loss);
///   args.grad_student = kdloss::host_view(gs.data(), {n, C, 3, 3});
///   kdloss::drkd::instance_relation_loss(args, kdloss::Mode::forward_backward);
template <class T>
struct InstanceRelationLossArgs {
  View<const T> student{};
  View<const T> teacher{};
  Segments<std::int64_t> boxes{};
  ObjectRelationParams<T> student_relation{};
  ObjectRelationParams<T> teacher_relation{};
  RelationFilter<T> student_filter{};
  RelationFilter<T> teacher_filter{};
  View<const T> relation_adapt_weight{};
  View<const T> relation_adapt_bias{};
  View<const T> feature_adapt_weight{};
  View<const T> feature_adapt_bias{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_student{};
  ObjectRelationGrads<T> grad_student_relation{};
  ObjectRelationGrads<T> grad_teacher_relation{};
  RelationFilterGrads<T> grad_student_filter{};
  RelationFilterGrads<T> grad_teacher_filter{};
  View<T> grad_relation_adapt_weight{};
  View<T> grad_relation_adapt_bias{};
  View<T> grad_feature_adapt_weight{};
  View<T> grad_feature_adapt_bias{};
  InstanceRelationOptions options{};
};

namespace instance_detail {
using ::kdloss::detail::Carver;
using ::kdloss::detail::Checker;
using ::kdloss::detail::require;

inline constexpr EntryNames kNames{"kdloss::drkd::instance_relation_loss",
                                   "kdloss::drkd::instance_relation_loss_backward",
                                   "kdloss::drkd::instance_relation_loss_forward_backward"};

/// c[i, j] + bias[j]: the filter layer's bias along the columns of x W_r^T.
template <class T>
struct AddBiasCols {
  const T* bias = nullptr;
  std::int64_t stride = 0;
  template <class V>
  KDLOSS_HOST_DEVICE V operator()(V v, std::int64_t, std::int64_t, std::int64_t j) const {
    return v + static_cast<V>(bias[j * stride]);
  }
};
struct Product {
  template <class A, class B, class O>
  KDLOSS_HOST_DEVICE void operator()(const A& a, const B& b, O& o) const {
    o = a * b;
  }
};
/// dF = dF' * mask and dmask = dF' * f (the two factors of f' = f * mask).
struct ProductGrad {
  template <class G, class M, class F, class DF, class DM>
  KDLOSS_HOST_DEVICE void operator()(const G& g, const M& m, const F& f, DF& df, DM& dm) const {
    df = g * m;
    dm = g * f;
  }
};

template <class T>
bool any_present(const ObjectRelationGrads<T>& g) {
  return present(g.theta_weight) || present(g.theta_bias) || present(g.phi_weight) || present(g.phi_bias) ||
         present(g.g_weight) || present(g.g_bias) || present(g.W_weight) || present(g.W_bias);
}
template <class T>
bool any_present(const RelationFilterGrads<T>& g) {
  return present(g.weight) || present(g.bias);
}
template <class T>
bool has_fg(const InstanceRelationLossArgs<T>& a) {
  return present(a.feature_adapt_weight);
}
/// Whether backward needs dL/dz_S (the student relation's chain).
template <class T>
bool student_chain(const InstanceRelationLossArgs<T>& a) {
  return present(a.grad_student) || any_present(a.grad_student_relation) || any_present(a.grad_student_filter);
}
template <class T>
bool teacher_chain(const InstanceRelationLossArgs<T>& a) {
  return any_present(a.grad_teacher_relation) || any_present(a.grad_teacher_filter);
}

/// Sizes of one side: D = C P Q, I = theta's rows.
struct Side {
  std::int64_t C = 0, D = 0, I = 0;
};
template <class T>
Side side_of(const View<const T>& x, const ObjectRelationParams<T>& p) {
  Side s;
  s.C = x.shape[1];
  s.D = x.shape[1] * x.shape[2] * x.shape[3];
  s.I = p.theta_weight.rank() == 2 ? p.theta_weight.shape[0] : 0;
  return s;
}

/// One side's buffers: X (contiguous copy), theta, phi, g, the per-image f, mask, A (packed, sum n_b^2),
/// y = A g and z.
template <class T>
struct SideBuffers {
  T *x = nullptr, *theta = nullptr, *phi = nullptr, *g = nullptr, *f = nullptr, *mask = nullptr, *att = nullptr,
    *y = nullptr, *z = nullptr;
};

/// Every buffer of one call, carved from `base` (null: sizes only).
template <class T>
struct Plan {
  Side s, t;
  std::int64_t n = 0, pairs = 0;  // rows, sum n_b^2
  SideBuffers<T> bs, bt;
  T *fp = nullptr, *t1 = nullptr, *t2 = nullptr, *t3 = nullptr;  // per-image [n_b, n_b] temporaries
  T *adapted = nullptr, *adapted_fg = nullptr, *terms = nullptr;
  T *dadapted = nullptr, *dzt = nullptr, *dzs = nullptr, *dadapted_fg = nullptr, *dx = nullptr, *dy = nullptr,
    *dtheta = nullptr, *dphi = nullptr, *dg = nullptr;
  double* partials = nullptr;  // the sum of the two terms (GPU)
  void* dist = nullptr;
  std::size_t dist_bytes = 0;
  void* scratch = nullptr;
  std::size_t scratch_bytes = 0, total = 0;
};

template <class T>
SideBuffers<T> carve_side(Carver& c, std::int64_t n, std::int64_t pairs, const Side& s) {
  const auto rows = [&](std::int64_t w) { return static_cast<std::size_t>(n * w); };
  SideBuffers<T> b;
  b.x = c.take<T>(rows(s.D));
  b.theta = c.take<T>(rows(s.I));
  b.phi = c.take<T>(rows(s.I));
  b.g = c.take<T>(rows(s.I));
  b.f = c.take<T>(static_cast<std::size_t>(pairs));
  b.mask = c.take<T>(static_cast<std::size_t>(pairs));
  b.att = c.take<T>(static_cast<std::size_t>(pairs));
  b.y = c.take<T>(rows(s.I));
  b.z = c.take<T>(rows(s.D));
  return b;
}

template <class T>
Plan<T> carve(const InstanceRelationLossArgs<T>& a, Mode mode, void* base, std::size_t scratch_bytes) {
  Carver c(base);
  Plan<T> p;
  p.s = side_of(a.student, a.student_relation);
  p.t = side_of(a.teacher, a.teacher_relation);
  p.n = a.student.shape[0];
  for (std::int64_t b = 0; b < a.boxes.count(); ++b) p.pairs += a.boxes.size(b) * a.boxes.size(b);
  const auto rows = [&](std::int64_t w) { return static_cast<std::size_t>(p.n * w); };
  const auto pairs = static_cast<std::size_t>(p.pairs);
  p.bs = carve_side<T>(c, p.n, p.pairs, p.s);
  p.bt = carve_side<T>(c, p.n, p.pairs, p.t);
  p.fp = c.take<T>(pairs);
  p.adapted = c.take<T>(rows(p.t.D));
  if (has_fg(a)) p.adapted_fg = c.take<T>(rows(p.t.D));
  p.terms = c.take<T>(2);
  p.partials = ::kdloss::detail::carve_reduction(c, a.student.device, 2);
  if (writes_gradients(mode)) {
    const std::int64_t inter = std::max(p.s.I, p.t.I);
    p.t1 = c.take<T>(pairs);
    p.t2 = c.take<T>(pairs);
    p.t3 = c.take<T>(pairs);
    p.dadapted = c.take<T>(rows(p.t.D));
    p.dzt = c.take<T>(rows(p.t.D));
    p.dzs = c.take<T>(rows(p.s.D));
    if (has_fg(a)) p.dadapted_fg = c.take<T>(rows(p.t.D));
    p.dx = c.take<T>(rows(p.s.D));
    p.dy = c.take<T>(rows(inter));
    p.dtheta = c.take<T>(rows(inter));
    p.dphi = c.take<T>(rows(inter));
    p.dg = c.take<T>(rows(inter));
  }
  ops::DistanceArgs<T> q;
  q.a = q.b = a.teacher;
  q.segments = a.boxes;
  p.dist_bytes = ops::distance_workspace_bytes(q);
  p.dist = c.take<unsigned char>(p.dist_bytes);
  p.scratch_bytes = scratch_bytes;
  p.scratch = c.take<unsigned char>(scratch_bytes);
  p.total = c.bytes();
  return p;
}

/// Contiguous views over plan memory.
template <class U>
View<U> mat(U* p, std::int64_t r, std::int64_t c, Device dev) {
  return View<U>(p, Dims{r, c}, Dims{c, 1}, dev);
}
template <class U>
View<U> map4(U* p, const Dims& like, std::int64_t channels, Device dev) {
  const Dims d{like[0], channels, like[2], like[3]};
  return View<U>(p, d, contiguous_strides(d), dev);
}
template <class U>
View<const U> cv(const View<U>& v) {
  return View<const U>(v);
}

/// Runs the op calls of one instance_relation_loss, or (Sizer) only asks each for its scratch.
template <class T>
struct Runner {
  const Exec* exec = nullptr;  // null: size only
  std::size_t bytes = 0;
  Device dev{};
  bool sizing() const { return exec == nullptr; }
  void linear(const ops::LinearArgs<T>& l, Mode m) {
    if (sizing())
      bytes = std::max(bytes, ops::detail::linear_scratch(l, ops::detail::linear_plan(l), m).total);
    else
      ops::linear(l, m, *exec);
  }
  template <class E>
  void matmul(const ops::MatmulArgs<T, E>& g) {
    if (sizing())
      bytes = std::max(bytes, ops::matmul_workspace_bytes(g));
    else
      ops::matmul(g, *exec);
  }
  void softmax(const View<const T>& x, const View<T>& y) {
    if (!sizing()) ops::softmax(x, 1, y, {}, *exec);
  }
  void softmax_backward(const View<const T>& y, const View<const T>& gy, const View<T>& gx) {
    if (!sizing()) ops::softmax_backward(y, gy, 1, gx, {}, *exec);
  }
  template <class F, class... I, class... O>
  void transform(const Dims& shape, F f, const std::tuple<View<const I>...>& ins, const std::tuple<View<O>...>& outs) {
    if (!sizing()) ::kdloss::detail::transform<acc_t<T>>(dev, exec->stream, shape, f, ins, outs);
  }
  template <class O, class... I>
  void reduce_into(const Dims& shape, const std::tuple<View<const I>...>& ins, const View<O>& out) {
    if (!sizing()) ::kdloss::detail::reduce_into<acc_t<T>>(dev, exec->stream, shape, expr::Identity{}, ins, out);
  }
};

template <class T>
ops::LinearArgs<T> rows_linear(const View<const T>& x, const View<const T>& w, const View<const T>& b, T* y,
                               const InstanceRelationOptions& o) {
  ops::LinearArgs<T> l;
  l.x = x;
  l.weight = w;
  l.bias = b;
  if (y) l.y = mat(y, x.shape[0], w.shape[0], x.device);
  l.options.param_grads = o.param_grads;
  return l;
}

/// One side of a call: its input, parameters, filter, sizes and buffers.
template <class T>
struct SideCall {
  View<const T> in;
  const ObjectRelationParams<T>* prm;
  const RelationFilter<T>* filt;
  Side s;
  SideBuffers<T> bf;
};

/// Forward of one side's ObjectRelation over every image: X (copied from `in`), theta, phi, g, f, mask,
/// A, y, z = y W_W^T + b_W + X.
template <class T>
void relation_forward(Runner<T>& r, const InstanceRelationLossArgs<T>& a, const Plan<T>& p, const SideCall<T>& sc) {
  const Device dev = sc.in.device;
  const Side& s = sc.s;
  const SideBuffers<T>& bf = sc.bf;
  const ObjectRelationParams<T>& prm = *sc.prm;
  const RelationFilter<T>& filt = *sc.filt;
  const std::int64_t n = p.n;
  const auto o = a.options;
  r.transform(sc.in.shape, expr::Identity{}, std::tuple{sc.in}, std::tuple{map4(bf.x, sc.in.shape, s.C, dev)});
  const View<const T> X = mat<const T>(bf.x, n, s.D, dev);
  r.linear(rows_linear(X, prm.theta_weight, prm.theta_bias, bf.theta, o), Mode::forward);
  r.linear(rows_linear(X, prm.phi_weight, prm.phi_bias, bf.phi, o), Mode::forward);
  r.linear(rows_linear(X, prm.g_weight, prm.g_bias, bf.g, o), Mode::forward);
  std::int64_t off = 0;
  for (std::int64_t b = 0; b < a.boxes.count(); ++b) {
    const std::int64_t s0 = a.boxes.begin(b), m = a.boxes.size(b);
    if (m == 0) continue;
    const auto rows = [&](const T* q, std::int64_t w) { return mat<const T>(q + s0 * w, m, w, dev); };
    const View<T> F = mat(bf.f + off, m, m, dev), M = mat(bf.mask + off, m, m, dev), A = mat(bf.att + off, m, m, dev),
                  FP = mat(p.fp + off, m, m, dev);
    r.matmul(ops::MatmulArgs<T>{rows(bf.theta, s.I), rows(bf.phi, s.I), F, {false, true}});
    if (present(filt.weight)) {  // mask = softmax_row(x W_r^T + b_r) (logits parked in FP), f' = f * mask
      ops::MatmulArgs<T, AddBiasCols<T>> lg{rows(bf.x, s.D), filt.weight.slice(0, s0, s0 + m), FP, {false, true}};
      lg.epilogue = {filt.bias.data + s0 * filt.bias.strides[0], filt.bias.strides[0]};
      r.matmul(lg);
      r.softmax(cv(FP), M);
      r.transform(F.shape, Product{}, std::tuple{cv(F), cv(M)}, std::tuple{FP});
      r.softmax(cv(FP), A);
    } else {
      r.softmax(cv(F), A);
    }
    r.matmul(ops::MatmulArgs<T>{cv(A), rows(bf.g, s.I), mat(bf.y + s0 * s.I, m, s.I, dev)});
    off += m * m;
  }
  // z = y W_W^T + b_W + x: x copied into z, the product added on top (beta 1), the bias in the epilogue
  const View<T> Z = mat(bf.z, n, s.D, dev);
  r.transform(Z.shape, expr::Identity{}, std::tuple{X}, std::tuple{Z});
  ops::MatmulArgs<T, AddBiasCols<T>> w{mat<const T>(bf.y, n, s.I, dev), prm.W_weight, Z, {false, true, 1.0, 1.0}};
  if (present(prm.W_bias)) w.epilogue = {prm.W_bias.data, prm.W_bias.strides[0]};
  else w.epilogue = {nullptr, 0};
  if (present(prm.W_bias)) r.matmul(w);
  else r.matmul(ops::MatmulArgs<T>{w.a, w.b, w.c, w.options});
}

/// Backward of one side's ObjectRelation from dz (p.dzs or p.dzt): the parameter and filter gradients and,
/// when `gx` is set, dL/dX into p.dx (overwritten: the residual first, then the other paths added).
template <class T>
void relation_backward(Runner<T>& r, const InstanceRelationLossArgs<T>& a, const Plan<T>& p, const SideCall<T>& sc,
                       const T* dz, const ObjectRelationGrads<T>& gp, const RelationFilterGrads<T>& gf, bool gx) {
  const Device dev = sc.in.device;
  const Side& s = sc.s;
  const SideBuffers<T>& bf = sc.bf;
  const ObjectRelationParams<T>& prm = *sc.prm;
  const RelationFilter<T>& filt = *sc.filt;
  const std::int64_t n = p.n;
  const auto o = a.options;
  const View<const T> X = mat<const T>(bf.x, n, s.D, dev), dZ = mat<const T>(dz, n, s.D, dev);
  const View<T> dX = mat(p.dx, n, s.D, dev);
  if (gx) r.transform(dX.shape, expr::Identity{}, std::tuple{dZ}, std::tuple{dX});  // the residual
  {  // W: dy = dz W_W, dW_W, db_W
    ops::LinearArgs<T> l = rows_linear<T>(mat<const T>(bf.y, n, s.I, dev), prm.W_weight, prm.W_bias, nullptr, o);
    l.grad_y = dZ;
    l.grad_x = mat(p.dy, n, s.I, dev);
    l.grad_weight = gp.W_weight;
    l.grad_bias = gp.W_bias;
    r.linear(l, Mode::backward);
  }
  std::int64_t off = 0;
  for (std::int64_t b = 0; b < a.boxes.count(); ++b) {
    const std::int64_t s0 = a.boxes.begin(b), m = a.boxes.size(b);
    if (m == 0) continue;
    const auto rows = [&](const T* q, std::int64_t w) { return mat<const T>(q + s0 * w, m, w, dev); };
    const auto out_rows = [&](T* q, std::int64_t w) { return mat(q + s0 * w, m, w, dev); };
    const View<const T> F = mat<const T>(bf.f + off, m, m, dev), M = mat<const T>(bf.mask + off, m, m, dev),
                        A = mat<const T>(bf.att + off, m, m, dev);
    const View<T> T1 = mat(p.t1 + off, m, m, dev), T2 = mat(p.t2 + off, m, m, dev), T3 = mat(p.t3 + off, m, m, dev);
    r.matmul(ops::MatmulArgs<T>{rows(p.dy, s.I), rows(bf.g, s.I), T1, {false, true}});  // dA = dy g^T
    r.matmul(ops::MatmulArgs<T>{A, rows(p.dy, s.I), out_rows(p.dg, s.I), {true, false}});  // dg = A^T dy
    r.softmax_backward(A, cv(T1), T2);                                                     // df'
    View<const T> dF = cv(T2);
    if (present(filt.weight)) {
      r.transform(T1.shape, ProductGrad{}, std::tuple{cv(T2), M, F}, std::tuple{T1, T3});  // df, dmask
      r.softmax_backward(M, cv(T3), T2);                                                   // dlogits
      dF = cv(T1);
      const View<const T> dL = cv(T2);
      if (present(gf.weight))
        r.matmul(ops::MatmulArgs<T>{dL, rows(bf.x, s.D), gf.weight.slice(0, s0, s0 + m), {true, false}});
      if (present(gf.bias)) {
        const View<T> gb(gf.bias.data + s0 * gf.bias.strides[0], Dims{1, m}, Dims{0, gf.bias.strides[0]}, dev);
        r.reduce_into(dL.shape, std::tuple{dL}, gb);
      }
      if (gx) r.matmul(ops::MatmulArgs<T>{dL, filt.weight.slice(0, s0, s0 + m), out_rows(p.dx, s.D), {false, false, 1.0, 1.0}});
    }
    r.matmul(ops::MatmulArgs<T>{dF, rows(bf.phi, s.I), out_rows(p.dtheta, s.I)});                 // dtheta = df phi
    r.matmul(ops::MatmulArgs<T>{dF, rows(bf.theta, s.I), out_rows(p.dphi, s.I), {true, false}});  // dphi = df^T theta
    off += m * m;
  }
  const auto lin = [&](const View<const T>& w, const View<const T>& bias, const T* dy, const View<T>& gw,
                       const View<T>& gb) {
    ops::LinearArgs<T> l = rows_linear<T>(X, w, bias, nullptr, o);
    l.grad_y = mat<const T>(dy, n, s.I, dev);
    if (gx) l.grad_x = dX;
    l.options.input_grad.beta = 1.0;
    l.grad_weight = gw;
    l.grad_bias = gb;
    if (present(l.grad_x) || present(gw) || present(gb)) r.linear(l, Mode::backward);
  };
  lin(prm.theta_weight, prm.theta_bias, p.dtheta, gp.theta_weight, gp.theta_bias);
  lin(prm.phi_weight, prm.phi_bias, p.dphi, gp.phi_weight, gp.phi_bias);
  lin(prm.g_weight, prm.g_bias, p.dg, gp.g_weight, gp.g_bias);
}

template <class T>
ops::LinearArgs<T> adapter(const View<const T>& x, const View<const T>& w, const View<const T>& b, T* y, const Side& t,
                           const InstanceRelationOptions& o) {
  ops::LinearArgs<T> l;
  l.x = x;
  l.weight = w;
  l.bias = b;
  if (y) l.y = map4(y, x.shape, t.C, x.device);
  l.options.param_grads = o.param_grads;
  return l;
}

/// The whole call: both relations, the adapters, the two distances, then the gradients `mode` asks for.
template <class T>
void program(Runner<T>& r, const InstanceRelationLossArgs<T>& a, Mode mode, const Plan<T>& p) {
  const Device dev = a.student.device;
  const auto o = a.options;
  const SideCall<T> ss{a.student, &a.student_relation, &a.student_filter, p.s, p.bs};
  const SideCall<T> st{a.teacher, &a.teacher_relation, &a.teacher_filter, p.t, p.bt};
  relation_forward(r, a, p, ss);
  relation_forward(r, a, p, st);
  const View<const T> zs = map4<const T>(p.bs.z, a.student.shape, p.s.C, dev),
                      zt = map4<const T>(p.bt.z, a.teacher.shape, p.t.C, dev),
                      xs = map4<const T>(p.bs.x, a.student.shape, p.s.C, dev),
                      xt = map4<const T>(p.bt.x, a.teacher.shape, p.t.C, dev);
  r.linear(adapter(zs, a.relation_adapt_weight, a.relation_adapt_bias, p.adapted, p.t, o), Mode::forward);
  if (has_fg(a))
    r.linear(adapter(xs, a.feature_adapt_weight, a.feature_adapt_bias, p.adapted_fg, p.t, o), Mode::forward);
  const bool grads = writes_gradients(mode), schain = grads && student_chain(a), tchain = grads && teacher_chain(a);
  // the distances: the value of each term in p.terms, the gradients of the adapted maps (and of z_T)
  const auto dist = [&](const T* x, const View<const T>& target, double w, T* term, T* gx, T* gt) {
    ops::DistanceArgs<T> d;
    d.a = map4<const T>(x, a.teacher.shape, p.t.C, dev);
    d.b = target;
    d.segments = a.boxes;
    d.options.sum_items = true;
    d.options.weight = w;
    if (writes_value(mode)) d.out = View<T>(term, Dims{}, Dims{}, dev);
    if (mode == Mode::backward) d.grad_out = a.grad_out;
    if (gx) d.grad_a = map4(gx, a.teacher.shape, p.t.C, dev);
    if (gt) d.grad_b = map4(gt, a.teacher.shape, p.t.C, dev);
    const Mode dm = d.grad_a.data || d.grad_b.data ? mode : Mode::forward;
    if (dm == Mode::forward && !writes_value(mode)) return;
    if (!r.sizing()) ops::distance(d, dm, Exec{{p.dist, p.dist_bytes}, r.exec->stream, r.exec->blas});
  };
  const bool fg_grads = schain || present(a.grad_feature_adapt_weight) || present(a.grad_feature_adapt_bias);
  const bool ir_grads = schain || tchain || present(a.grad_relation_adapt_weight) || present(a.grad_relation_adapt_bias);
  dist(p.adapted, zt, o.relation_weight, p.terms, ir_grads ? p.dadapted : nullptr, tchain ? p.dzt : nullptr);
  if (has_fg(a)) dist(p.adapted_fg, xt, o.feature_weight, p.terms + 1, fg_grads ? p.dadapted_fg : nullptr, nullptr);
  if (writes_value(mode) && !r.sizing()) {  // out = L_IR + L_fg
    const View<const T> terms(p.terms, Dims{has_fg(a) ? 2 : 1}, Dims{1}, dev);
    ::kdloss::detail::transform_reduce<acc_t<T>>(dev, r.exec->stream, terms.shape, expr::Identity{}, std::tuple{terms},
                                                 std::tuple<>{}, p.partials, ::kdloss::detail::Keep{},
                                                 a.out.data);
  }
  if (!grads) return;
  if (ir_grads) {  // the relation adapter: dz_S and its parameters
    ops::LinearArgs<T> l = adapter<T>(zs, a.relation_adapt_weight, a.relation_adapt_bias, nullptr, p.t, o);
    l.grad_y = map4<const T>(p.dadapted, a.teacher.shape, p.t.C, dev);
    if (schain) l.grad_x = map4(p.dzs, a.student.shape, p.s.C, dev);
    l.grad_weight = a.grad_relation_adapt_weight;
    l.grad_bias = a.grad_relation_adapt_bias;
    if (present(l.grad_x) || present(l.grad_weight) || present(l.grad_bias)) r.linear(l, Mode::backward);
  }
  if (tchain) relation_backward(r, a, p, st, p.dzt, a.grad_teacher_relation, a.grad_teacher_filter, false);
  const bool gx = present(a.grad_student);
  if (schain) relation_backward(r, a, p, ss, p.dzs, a.grad_student_relation, a.grad_student_filter, gx);
  if (has_fg(a) && fg_grads) {  // the feature adapter: its parameters, dL/dX_S added
    ops::LinearArgs<T> l = adapter<T>(xs, a.feature_adapt_weight, a.feature_adapt_bias, nullptr, p.t, o);
    l.grad_y = map4<const T>(p.dadapted_fg, a.teacher.shape, p.t.C, dev);
    if (gx) l.grad_x = map4(p.dx, a.student.shape, p.s.C, dev);
    l.options.input_grad.beta = 1.0;
    l.grad_weight = a.grad_feature_adapt_weight;
    l.grad_bias = a.grad_feature_adapt_bias;
    if (present(l.grad_x) || present(l.grad_weight) || present(l.grad_bias)) r.linear(l, Mode::backward);
  }
  if (gx) r.transform(a.student.shape, expr::Identity{}, std::tuple{map4<const T>(p.dx, a.student.shape, p.s.C, dev)},
                      std::tuple{a.grad_student});
}

/// The plan with its scratch sized by a dry run of the program (the ops' own workspace queries).
template <class T>
Plan<T> plan(const InstanceRelationLossArgs<T>& a, Mode mode, void* base) {
  // A dry run over stand-in addresses (never dereferenced): the queries check shapes and overlaps only.
  void* fake = reinterpret_cast<void*>(::kdloss::detail::kWorkspaceAlignment);
  const Plan<T> sized = carve(a, mode, fake, 0);
  Runner<T> sizer;
  sizer.dev = a.student.device;
  program(sizer, a, mode, sized);
  return carve(a, mode, base, sizer.bytes);
}

template <class T>
void check_params(const Checker& ck, const char* side, const ObjectRelationParams<T>& p, std::int64_t D,
                  Device dev) {
  const std::string pre = std::string(side) + ".";
  const auto need = [&](const View<const T>& v, const char* name, const Dims* shape) {
    const std::string full = pre + name;
    require(present(v), ck.fn, ": argument '", full, "' is absent");
    ck.not_null(v, full.c_str());
    if (shape) ck.shape(v, full.c_str(), *shape);
    ck.device(v, full.c_str(), dev);
  };
  need(p.theta_weight, "theta_weight", nullptr);
  ck.rank(p.theta_weight, (pre + "theta_weight").c_str(), 2);
  const std::int64_t I = p.theta_weight.shape[0];
  require(I > 0, ck.fn, ": argument '", pre, "theta_weight' has no rows (shape ", p.theta_weight.shape.str(), ")");
  const Dims w{I, D}, b{I}, wW{D, I}, bW{D};
  need(p.theta_weight, "theta_weight", &w);
  need(p.phi_weight, "phi_weight", &w);
  need(p.g_weight, "g_weight", &w);
  need(p.W_weight, "W_weight", &wW);
  const auto opt = [&](const View<const T>& v, const char* name, const Dims& shape) {
    if (present(v)) need(v, name, &shape);
  };
  opt(p.theta_bias, "theta_bias", b);
  opt(p.phi_bias, "phi_bias", b);
  opt(p.g_bias, "g_bias", b);
  opt(p.W_bias, "W_bias", bW);
}

/// The inputs (what the size query reads).
template <class T>
void check_inputs(const InstanceRelationLossArgs<T>& a, const char* fn) {
  const Checker ck{fn};
  ck.rank(a.student, "student", 4);
  ck.rank(a.teacher, "teacher", 4);
  ck.not_null(a.student, "student");
  ck.not_null(a.teacher, "teacher");
  const Device dev = a.student.device;
  ck.device(a.teacher, "teacher", dev);
  const Dims &ss = a.student.shape, &ts = a.teacher.shape;
  require(ss[0] == ts[0] && ss[2] == ts[2] && ss[3] == ts[3], fn, ": arguments 'student' ", ss.str(), " and 'teacher' ",
          ts.str(), " must have the same boxes and RoI size (dims 0, 2, 3)");
  require(present(a.boxes.offsets), fn, ": argument 'boxes' (the per-image offsets) is absent");
  ::kdloss::detail::check_segments(ck, a.boxes, "boxes", ss[0]);
  check_params(ck, "student_relation", a.student_relation, ss[1] * ss[2] * ss[3], dev);
  check_params(ck, "teacher_relation", a.teacher_relation, ts[1] * ts[2] * ts[3], dev);
  const auto filter = [&](const RelationFilter<T>& f, const char* wname, const char* bname, std::int64_t D) {
    require(present(f.weight) == present(f.bias), fn, ": arguments '", wname, "' and '", bname,
            "' come together (both absent: no filter)");
    if (absent(f.weight)) return;
    ck.not_null(f.weight, wname);
    ck.not_null(f.bias, bname);
    ck.shape(f.weight, wname, Dims{ss[0], D});
    ck.shape(f.bias, bname, Dims{ss[0]});
    ck.device(f.weight, wname, dev);
    ck.device(f.bias, bname, dev);
  };
  filter(a.student_filter, "student_filter.weight", "student_filter.bias", ss[1] * ss[2] * ss[3]);
  filter(a.teacher_filter, "teacher_filter.weight", "teacher_filter.bias", ts[1] * ts[2] * ts[3]);
  const auto adapt = [&](const View<const T>& w, const View<const T>& b, const char* wname, const char* bname) {
    ck.not_null(w, wname);
    ck.shape(w, wname, Dims{ts[1], ss[1]});
    ck.device(w, wname, dev);
    if (absent(b)) return;
    ck.not_null(b, bname);
    ck.shape(b, bname, Dims{ts[1]});
    ck.device(b, bname, dev);
  };
  require(present(a.relation_adapt_weight), fn, ": argument 'relation_adapt_weight' is absent; L_IR needs the adapter");
  adapt(a.relation_adapt_weight, a.relation_adapt_bias, "relation_adapt_weight", "relation_adapt_bias");
  if (present(a.feature_adapt_weight))
    adapt(a.feature_adapt_weight, a.feature_adapt_bias, "feature_adapt_weight", "feature_adapt_bias");
  else
    require(absent(a.feature_adapt_bias), fn, ": argument 'feature_adapt_bias' is given without 'feature_adapt_weight'");
  // Named arrays, not range-for over braced lists: nvcc 13's host-code pass rejects those here.
  const double weights[] = {a.options.relation_weight, a.options.feature_weight};
  for (double w : weights) {
    require(std::isfinite(w), fn, ": options 'relation_weight' and 'feature_weight' must be finite but are ",
            a.options.relation_weight, " and ", a.options.feature_weight);
  }
  ::kdloss::detail::require_backend<T>(fn, dev);
}

}  // namespace instance_detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::drkd::InstanceRelationLossArgs<float> args;   // filled in as in InstanceRelationLossArgs's example
///   kdloss::drkd::instance_relation_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void instance_relation_loss_check(const InstanceRelationLossArgs<T>& a, Mode mode) {
  namespace id = instance_detail;
  const char* fn = id::kNames(mode);
  const id::Checker ck{fn};
  using id::require;
  id::check_inputs(a, fn);
  const Device dev = a.student.device;
  std::vector<std::pair<View<const T>, const char*>> inputs = {
      {a.student, "student"}, {a.teacher, "teacher"}, {a.relation_adapt_weight, "relation_adapt_weight"}};
  const auto add_params = [&](const ObjectRelationParams<T>& p) {
    const View<const T> params[] = {p.theta_weight, p.theta_bias, p.phi_weight, p.phi_bias,
                                    p.g_weight,     p.g_bias,     p.W_weight,   p.W_bias};
    for (const View<const T>& v : params) {
      if (present(v)) inputs.push_back({v, "a relation parameter"});
    }
  };
  add_params(a.student_relation);
  add_params(a.teacher_relation);
  const View<const T> others[] = {a.student_filter.weight, a.student_filter.bias, a.teacher_filter.weight,
                                  a.teacher_filter.bias,  a.relation_adapt_bias, a.feature_adapt_weight,
                                  a.feature_adapt_bias};
  for (const View<const T>& v : others) {
    if (present(v)) inputs.push_back({v, "a filter or adapter input"});
  }
  std::vector<std::pair<View<T>, const char*>> outputs;
  if (writes_value(mode)) {
    ck.scalar_output(a.out, "out");
    ck.device(a.out, "out", dev);
    outputs.push_back({a.out, "out"});
  }
  if (mode == Mode::backward) {
    require(present(a.grad_out), fn, ": mode backward reads 'grad_out' but it is absent");
    ck.scalar_output(a.grad_out, "grad_out");
    ck.device(a.grad_out, "grad_out", dev);
    inputs.push_back({a.grad_out, "grad_out"});
  }
  if (writes_gradients(mode)) {
    const auto grad = [&](const View<T>& g, const char* name, const View<const T>& like) {
      if (absent(g)) return;
      require(present(like), fn, ": argument '", name, "' is given but the parameter it belongs to is absent");
      ck.not_null(g, name);
      ck.shape(g, name, like.shape);
      ck.device(g, name, dev);
      ck.unique(g, name);
      outputs.push_back({g, name});
    };
    grad(a.grad_student, "grad_student", a.student);
    const auto rel = [&](const ObjectRelationGrads<T>& g, const ObjectRelationParams<T>& p, bool student) {
      grad(g.theta_weight, student ? "grad_student_relation.theta_weight" : "grad_teacher_relation.theta_weight",
           p.theta_weight);
      grad(g.theta_bias, student ? "grad_student_relation.theta_bias" : "grad_teacher_relation.theta_bias",
           p.theta_bias);
      grad(g.phi_weight, student ? "grad_student_relation.phi_weight" : "grad_teacher_relation.phi_weight",
           p.phi_weight);
      grad(g.phi_bias, student ? "grad_student_relation.phi_bias" : "grad_teacher_relation.phi_bias", p.phi_bias);
      grad(g.g_weight, student ? "grad_student_relation.g_weight" : "grad_teacher_relation.g_weight", p.g_weight);
      grad(g.g_bias, student ? "grad_student_relation.g_bias" : "grad_teacher_relation.g_bias", p.g_bias);
      grad(g.W_weight, student ? "grad_student_relation.W_weight" : "grad_teacher_relation.W_weight", p.W_weight);
      grad(g.W_bias, student ? "grad_student_relation.W_bias" : "grad_teacher_relation.W_bias", p.W_bias);
    };
    rel(a.grad_student_relation, a.student_relation, true);
    rel(a.grad_teacher_relation, a.teacher_relation, false);
    grad(a.grad_student_filter.weight, "grad_student_filter.weight", a.student_filter.weight);
    grad(a.grad_student_filter.bias, "grad_student_filter.bias", a.student_filter.bias);
    grad(a.grad_teacher_filter.weight, "grad_teacher_filter.weight", a.teacher_filter.weight);
    grad(a.grad_teacher_filter.bias, "grad_teacher_filter.bias", a.teacher_filter.bias);
    grad(a.grad_relation_adapt_weight, "grad_relation_adapt_weight", a.relation_adapt_weight);
    grad(a.grad_relation_adapt_bias, "grad_relation_adapt_bias", a.relation_adapt_bias);
    grad(a.grad_feature_adapt_weight, "grad_feature_adapt_weight", a.feature_adapt_weight);
    grad(a.grad_feature_adapt_bias, "grad_feature_adapt_bias", a.feature_adapt_bias);
  }
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    for (const auto& in : inputs) ck.disjoint(outputs[i].first, outputs[i].second, in.first, in.second);
    for (std::size_t j = 0; j < i; ++j)
      ck.disjoint(outputs[i].first, outputs[i].second, outputs[j].first, outputs[j].second);
  }
}

/// Workspace bytes of instance_relation_loss on these arguments, enough for every mode: both sides'
/// buffers (X, theta, phi, g, y, z: [n, D] and [n, I]; f, mask, A: sum n_b^2), the adapted maps, in
/// gradient modes their gradients, ops::distance's workspace and the largest scratch of the ops it runs.
///
///   kdloss::drkd::InstanceRelationLossArgs<float> args;   // filled in as in InstanceRelationLossArgs's example
///   std::size_t bytes = kdloss::drkd::instance_relation_loss_workspace_bytes(args);
template <class T>
std::size_t instance_relation_loss_workspace_bytes(const InstanceRelationLossArgs<T>& args) {
  instance_detail::check_inputs(args, "kdloss::drkd::instance_relation_loss_workspace_bytes");
  return instance_detail::plan(args, Mode::forward_backward, nullptr).total;
}

/// Checks, then runs. forward: out = L_IR + L_fg; backward (recomputes the forward; reads grad_out): every
/// present gradient times grad_out; forward_backward: both, each forward once. Parameter gradients follow
/// options.param_grads (the filters' are overwritten); products and sums run in a fixed order (bits
/// independent of the thread count).
///
///   kdloss::drkd::InstanceRelationLossArgs<float> args;   // filled in as in InstanceRelationLossArgs's example
///   kdloss::drkd::instance_relation_loss(args, kdloss::Mode::forward_backward);
template <class T>
void instance_relation_loss(const InstanceRelationLossArgs<T>& a, Mode mode, const Exec& exec = {}) {
  namespace id = instance_detail;
  const char* fn = id::kNames(mode);
  instance_relation_loss_check(a, mode);
  const Device dev = a.student.device;
  ops::detail::require_blas(fn, dev, exec);
  const std::size_t need = id::plan(a, mode, nullptr).total;
  ::kdloss::detail::HostScratch host;
  void* ws = ::kdloss::detail::resolve_workspace(fn, dev, exec.workspace, need, host);
  const id::Plan<T> p = id::plan(a, mode, ws);
  const Exec inner{{p.scratch_bytes ? p.scratch : nullptr, p.scratch_bytes}, exec.stream, exec.blas};
  id::Runner<T> r;
  r.exec = &inner;
  r.dev = dev;
  id::program(r, a, mode, p);
}

/// Thin wrapper: the value.
///
///   kdloss::drkd::instance_relation_loss_forward(args);   // args as in InstanceRelationLossArgs's example
template <class T>
void instance_relation_loss_forward(const InstanceRelationLossArgs<T>& args, const Exec& exec = {}) {
  instance_relation_loss(args, Mode::forward, exec);
}

/// Thin wrapper: grad_out times every present gradient (recomputes the forward).
///
///   kdloss::drkd::instance_relation_loss_backward(args);  // args with grad_out and the wanted gradients
template <class T>
void instance_relation_loss_backward(const InstanceRelationLossArgs<T>& args, const Exec& exec = {}) {
  instance_relation_loss(args, Mode::backward, exec);
}

/// Thin wrapper: the value and every present gradient in one call.
///
///   kdloss::drkd::instance_relation_loss_forward_backward(args);
template <class T>
void instance_relation_loss_forward_backward(const InstanceRelationLossArgs<T>& args, const Exec& exec = {}) {
  instance_relation_loss(args, Mode::forward_backward, exec);
}

}  // namespace drkd
} }  // namespace kdloss
