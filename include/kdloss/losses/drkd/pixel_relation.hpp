// kdloss/losses/drkd/pixel_relation.hpp: the seed's pixel-wise relation loss (DRKD, seed 000),
//
//   G(F) = softmax(F F^T * scale) F        per image, F = the map [C, H, W] read as [H*W, C], scale 1/sqrt(C)
//   L_P  = MSE(G(T), G(S))                 mean (default) or sum over every element of G
//
// at every pyramid level, P2 included, in O(B*H*W*C) memory: the H*W x H*W relation is never stored
// (ops::softmax_relation runs it in tiles with an online softmax). The gradient flows to the student
// through the whole relation (q = k = v = S); the teacher side is a constant. See
// docs/losses/pixel_relation.md.
//
// Entry point (core/entry.hpp): PixelRelationLossArgs, pixel_relation_loss_check,
// pixel_relation_loss_workspace_bytes, pixel_relation_loss(args, mode, exec), and the wrappers
// pixel_relation_loss(...), pixel_relation_loss_backward(...), pixel_relation_loss_forward_backward(...).
// No reserve: backward recomputes both relations (forward_backward is the call training wants).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/types.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/ops/norm.hpp"
#include "kdloss/ops/softmax_relation.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace drkd {

/// Options of pixel_relation_loss.
struct PixelRelationOptions {
  /// mean (the seed's mean_squared_error, F.mse_loss's default: the sum over B*C*H*W divided by it) or sum.
  /// none is refused: the elements of G are relation outputs, not pixels of the student, and no caller of
  /// the seed needs them one by one.
  Reduction reduction = Reduction::mean;
  /// Multiplies F F^T before the softmax; 0 (the default) means 1/sqrt(C), the seed's and SDPA's scale.
  double scale = 0.0;
};

/// The arguments of one pixel_relation_loss call. student and teacher [B, C, H, W] (B >= 0, C, H, W >= 1),
/// any strides (NCHW, channels-last, sliced, broadcast); out: one element (forward, forward_backward);
/// grad_out: one element, the upstream gradient of out (backward); grad_student: the student's shape, any
/// unique strides (backward: grad_out * dL/dS; forward_backward: dL/dS). The teacher gets no gradient.
///
///   std::vector<float> s(2 * 16 * 5 * 7, 0.5f), t(2 * 16 * 5 * 7, 0.25f), gs(2 * 16 * 5 * 7);
///   float loss = 0;
///   kdloss::drkd::PixelRelationLossArgs<float> args;
///   args.student = kdloss::host_view<const float>(s.data(), {2, 16, 5, 7});
///   args.teacher = kdloss::host_view<const float>(t.data(), {2, 16, 5, 7});
///   args.out = kdloss::host_scalar(&loss);
///   args.grad_student = kdloss::host_view(gs.data(), {2, 16, 5, 7});
///   kdloss::drkd::pixel_relation_loss(args, kdloss::Mode::forward_backward);
template <class T>
struct PixelRelationLossArgs {
  View<const T> student{};
  View<const T> teacher{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_student{};
  PixelRelationOptions options{};
};

namespace detail {
using ::kdloss::detail::Carver;
using ::kdloss::detail::Checker;
using ::kdloss::detail::require;

inline constexpr EntryNames kPixelRelationNames{"kdloss::drkd::pixel_relation_loss",
                                                "kdloss::drkd::pixel_relation_loss_backward",
                                                "kdloss::drkd::pixel_relation_loss_forward_backward"};

/// (gs - gt)^2, summed.
struct SquaredGap {
  template <class S, class Tt>
  KDLOSS_HOST_DEVICE auto operator()(const S& gs, const Tt& gt) const { return math::square(gs - gt); }
};
/// dy = 2 (gs - gt) * scale * upstream (dL/dG(S)); the value (gs - gt)^2 summed when `Value`.
template <class T, bool Value>
struct SquaredGapGrad {
  ops::ScalarUpstream<T> upstream;  // absent in forward_backward: 1
  double scale;                     // 1/numel (mean) or 1 (sum)
  template <class S, class Tt, class D>
  KDLOSS_HOST_DEVICE auto operator()(const S& gs, const Tt& gt, D& dy) const {
    using A = math::scalar_t<D>;
    dy = (gs - gt) * (A(2) * A(scale) * upstream.template get<A>());
    if constexpr (Value) return math::square(gs - gt);
  }
};
/// o = x (a map gathered into the relation's row layout).
struct CopyInto {
  template <class X, class O>
  KDLOSS_HOST_DEVICE void operator()(const X& x, O& o) const { o = x; }
};
/// o = a + b + c: dL/dS is the sum of the gradients through q, k and v.
struct SumOfThree {
  template <class A, class B, class C, class O>
  KDLOSS_HOST_DEVICE void operator()(const A& a, const B& b, const C& c, O& o) const { o = a + b + c; }
};

/// Extents and the relation's reading of one map: [B, C, H, W] as [B, H*W, C] without a copy when H and W
/// merge into one stride (NCHW, channels-last, batch or channel slices), else through a row-major copy.
struct MapGeometry {
  std::int64_t batch = 0, channels = 0, height = 0, width = 0;
  std::int64_t pixels() const { return height * width; }
  std::int64_t numel() const { return batch * channels * height * width; }
  Dims rows() const { return Dims{batch, pixels(), channels}; }
  /// Row-major [B, H*W, C] buffer strides, and the same buffer seen as [B, C, H, W].
  Dims row_strides() const { return Dims{pixels() * channels, channels, 1}; }
  Dims map_strides() const { return Dims{pixels() * channels, 1, width * channels, channels}; }
};

inline MapGeometry geometry_of(const Dims& shape) { return {shape[0], shape[1], shape[2], shape[3]}; }

/// Whether `v`'s H and W merge into one pixel stride; `pixel` receives it.
template <class T>
bool merges(const View<T>& v, std::int64_t& pixel) {
  const std::int64_t h = v.shape[2], w = v.shape[3];
  pixel = w > 1 ? v.strides[3] : v.strides[2];
  return h == 1 || w == 1 || v.strides[2] == w * v.strides[3];
}

/// The relation operand [B, H*W, C] of map `v`: `v` itself when it merges, else the row-major `copy`.
template <class T>
View<const T> relation_rows(const View<const T>& v, const MapGeometry& g, const T* copy) {
  std::int64_t pixel = 0;
  if (merges(v, pixel)) return View<const T>(v.data, g.rows(), Dims{v.strides[0], pixel, v.strides[1]}, v.device);
  return View<const T>(copy, g.rows(), g.row_strides(), v.device);
}

template <class T>
View<T> as_map(T* rows, const MapGeometry& g, Device dev) {
  return View<T>(rows, Dims{g.batch, g.channels, g.height, g.width}, g.map_strides(), dev);
}

/// The workspace of one call in `mode`, carved in this order (sizes only when the base is null):
/// row-major copies of student / teacher when their H and W do not merge; G(T); G(S); for gradients the
/// log-sum-exp of G(S) (B*H*W acc_t values), dL/dG(S) and the relation's gradients through k and v
/// (its gradient through q reuses G(T)'s buffer); the reduction's partial sums (GPU); the op's scratch.
template <class T>
struct Pieces {
  T *s_copy = nullptr, *t_copy = nullptr, *gt = nullptr, *gs = nullptr, *dy = nullptr, *gk = nullptr,
    *gv = nullptr;
  acc_t<T>* lse = nullptr;
  std::size_t lse_bytes = 0;
  double* partials = nullptr;
  void* scratch = nullptr;
  std::size_t scratch_bytes = 0;
};

/// The op's scratch for a relation call on `rows`: its query on arguments shaped as the loss passes
/// them (y, grad_y and the gradients row-major in the workspace; the reserve present, as the loss keeps
/// G(S) and its log-sum-exp itself, so the op never recomputes them). Every mode's max. Pointers only
/// mark the views present: the query reads none.
template <class T>
std::size_t relation_scratch_bytes(const View<const T>& rows, const MapGeometry& g, double scale) {
  T* mark = const_cast<T*>(rows.data);
  const View<T> row_major(mark, g.rows(), g.row_strides(), rows.device);
  ops::SoftmaxRelationArgs<T> r;
  r.theta = r.phi = r.g = rows;
  r.y = r.grad_theta = r.grad_phi = r.grad_g = row_major;
  r.grad_y = row_major;
  r.reserve.data = mark;
  r.options.scale = scale;
  return ops::softmax_relation_workspace_bytes(r);
}

inline double effective_scale(const PixelRelationOptions& o, std::int64_t channels) {
  return o.scale != 0 ? o.scale : 1.0 / std::sqrt(static_cast<double>(channels));
}

template <class T>
Pieces<T> carve(Carver& c, const PixelRelationLossArgs<T>& a, Mode mode) {
  const MapGeometry g = geometry_of(a.student.shape);
  const Device dev = a.student.device;
  const auto map = static_cast<std::size_t>(g.numel());
  Pieces<T> p;
  std::int64_t pixel = 0;
  if (!merges(a.student, pixel)) p.s_copy = c.take<T>(map);
  if (!merges(a.teacher, pixel)) p.t_copy = c.take<T>(map);
  p.gt = c.take<T>(map);
  p.gs = c.take<T>(map);
  if (writes_gradients(mode)) {
    p.lse_bytes = ::kdloss::detail::align_up(static_cast<std::size_t>(g.batch * g.pixels()) * sizeof(acc_t<T>));
    p.lse = c.take<acc_t<T>>(static_cast<std::size_t>(g.batch * g.pixels()));
    p.dy = c.take<T>(map);
    p.gk = c.take<T>(map);
    p.gv = c.take<T>(map);
  }
  if (writes_value(mode)) p.partials = ::kdloss::detail::carve_reduction(c, dev, g.numel());
  // The size query sees the maps' own pointers; the run sees the copies with the same strides.
  const double scale = effective_scale(a.options, g.channels);
  p.scratch_bytes =
      std::max(relation_scratch_bytes(relation_rows(a.student, g, p.s_copy ? p.s_copy : a.student.data), g, scale),
               relation_scratch_bytes(relation_rows(a.teacher, g, p.t_copy ? p.t_copy : a.teacher.data), g, scale));
  p.scratch = c.take<char>(p.scratch_bytes);
  return p;
}

template <class T>
void check(const PixelRelationLossArgs<T>& a, Mode mode) {
  const char* fn = kPixelRelationNames(mode);
  const Checker ck{fn};
  const Reduction r = a.options.reduction;
  require(r == Reduction::mean || r == Reduction::sum, fn, ": argument 'reduction' is ", to_string(r),
          "; the pixel relation loss offers mean and sum");
  require(std::isfinite(a.options.scale), fn, ": argument 'scale' must be finite (0 means 1/sqrt(C)) but is ",
          a.options.scale);
  ck.rank(a.student, "student", 4);
  ck.not_null(a.student, "student");
  ck.not_null(a.teacher, "teacher");
  ck.same_shape(a.student, "student", a.teacher, "teacher");
  ck.device(a.teacher, "teacher", a.student.device);
  const Dims& s = a.student.shape;
  require(s[1] >= 1, fn, ": argument 'student' ", s.str(), " has no channels (C = 0)");
  require(s[2] * s[3] >= 1, fn, ": argument 'student' ", s.str(),
          " has no pixels (H*W = 0): the softmax over an empty set is undefined");
  if (writes_value(mode)) {
    require(present(a.out), fn, ": argument 'out' is absent but ", to_string(mode), " writes it");
    ck.device(a.out, "out", a.student.device);
    ck.scalar_output(a.out, "out");
    ck.disjoint(a.out, "out", a.student, "student");
    ck.disjoint(a.out, "out", a.teacher, "teacher");
  }
  if (mode == Mode::backward) {
    require(present(a.grad_out), fn, ": argument 'grad_out' is absent but backward reads it");
    ck.device(a.grad_out, "grad_out", a.student.device);
    require(a.grad_out.numel() == 1, fn,
            ": argument 'grad_out' must hold one element (the upstream gradient of the loss) but has shape ",
            a.grad_out.shape.str());
    ck.not_null(a.grad_out, "grad_out");
  }
  if (writes_gradients(mode)) {
    require(present(a.grad_student), fn, ": argument 'grad_student' is absent but ", to_string(mode), " writes it");
    ck.not_null(a.grad_student, "grad_student");
    ck.shape(a.grad_student, "grad_student", s);
    ck.device(a.grad_student, "grad_student", a.student.device);
    ck.unique(a.grad_student, "grad_student");
    ck.disjoint(a.grad_student, "grad_student", a.student, "student");
    ck.disjoint(a.grad_student, "grad_student", a.teacher, "teacher");
    if (mode == Mode::backward) ck.disjoint(a.grad_student, "grad_student", a.grad_out, "grad_out");
    if (mode == Mode::forward_backward) ck.disjoint(a.grad_student, "grad_student", a.out, "out");
  }
  ::kdloss::detail::require_backend<T>(fn, a.student.device);
}

template <class T>
void run(const PixelRelationLossArgs<T>& a, Mode mode, const Exec& exec) {
  using ::kdloss::detail::transform;
  using ::kdloss::detail::transform_reduce;
  using Acc = acc_t<T>;
  const char* fn = kPixelRelationNames(mode);
  const MapGeometry g = geometry_of(a.student.shape);
  const Device dev = a.student.device;
  const Stream stream = exec.stream;
  Carver sizer;
  carve(sizer, a, mode);
  ::kdloss::detail::HostScratch host;
  Carver carver(::kdloss::detail::resolve_workspace(fn, dev, exec.workspace, sizer.bytes(), host));
  const Pieces<T> p = carve(carver, a, mode);
  const Exec op_exec{Workspace{p.scratch, p.scratch_bytes}, exec.stream, exec.blas};
  const double scale = effective_scale(a.options, g.channels);

  // The maps as relation rows [B, H*W, C] (gathered first where H and W do not merge).
  if (p.s_copy) transform<Acc>(dev, stream, a.student.shape, CopyInto{}, std::tuple{a.student},
                               std::tuple{as_map(p.s_copy, g, dev)});
  if (p.t_copy) transform<Acc>(dev, stream, a.teacher.shape, CopyInto{}, std::tuple{a.teacher},
                               std::tuple{as_map(p.t_copy, g, dev)});
  const View<const T> s_rows = relation_rows(a.student, g, p.s_copy);
  const View<const T> t_rows = relation_rows(a.teacher, g, p.t_copy);
  const View<T> gt(p.gt, g.rows(), g.row_strides(), dev), gs(p.gs, g.rows(), g.row_strides(), dev);

  // G(T), then G(S) keeping its log-sum-exp when a backward follows.
  ops::SoftmaxRelationArgs<T> rel;
  rel.options.scale = scale;
  rel.theta = rel.phi = rel.g = t_rows;
  rel.y = gt;
  ops::softmax_relation(rel, Mode::forward, op_exec);
  rel.theta = rel.phi = rel.g = s_rows;
  rel.y = gs;
  if (p.lse) rel.reserve = Reserve{p.lse, p.lse_bytes};
  ops::softmax_relation(rel, Mode::forward, op_exec);

  // The MSE over G's elements and dL/dG(S), in one pass when both are wanted.
  const double per_element = a.options.reduction == Reduction::mean && g.numel() > 0 ? 1.0 / double(g.numel()) : 1.0;
  const View<const T> gs_map = as_map<const T>(p.gs, g, dev), gt_map = as_map<const T>(p.gt, g, dev);
  if (mode == Mode::forward) {
    transform_reduce<Acc>(dev, stream, gs_map.shape, SquaredGap{}, std::tuple{gs_map, gt_map}, std::tuple<>{},
                          p.partials, ::kdloss::detail::Scale{per_element}, a.out.data);
    return;
  }
  const View<T> dy_map = as_map(p.dy, g, dev);
  if (mode == Mode::forward_backward)
    transform_reduce<Acc>(dev, stream, gs_map.shape, SquaredGapGrad<T, true>{{}, per_element},
                          std::tuple{gs_map, gt_map}, std::tuple{dy_map}, p.partials,
                          ::kdloss::detail::Scale{per_element}, a.out.data);
  else
    transform<Acc>(dev, stream, gs_map.shape, SquaredGapGrad<T, false>{{a.grad_out.data}, per_element},
                   std::tuple{gs_map, gt_map}, std::tuple{dy_map});

  // Through the relation with q = k = v = S: three gradients (the one through q into G(T)'s buffer, free
  // now), then their sum into grad_student at its own strides.
  rel.grad_y = View<const T>(p.dy, g.rows(), g.row_strides(), dev);
  rel.grad_theta = gt;
  rel.grad_phi = View<T>(p.gk, g.rows(), g.row_strides(), dev);
  rel.grad_g = View<T>(p.gv, g.rows(), g.row_strides(), dev);
  ops::softmax_relation(rel, Mode::backward, op_exec);
  transform<Acc>(dev, stream, a.student.shape, SumOfThree{},
                 std::tuple{gt_map, as_map<const T>(p.gk, g, dev), as_map<const T>(p.gv, g, dev)},
                 std::tuple{a.grad_student});
}

}  // namespace detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::drkd::PixelRelationLossArgs<float> args;   // filled in as in PixelRelationLossArgs's example
///   kdloss::drkd::pixel_relation_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void pixel_relation_loss_check(const PixelRelationLossArgs<T>& args, Mode mode) {
  detail::check(args, mode);
}

/// Workspace bytes of pixel_relation_loss(args, mode) for every mode, O(B*H*W*C), never O(B*(H*W)^2):
/// G(T) and G(S) (forward), plus the log-sum-exp of G(S), dL/dG(S) and two of the relation's three input
/// gradients (backward, forward_backward), plus row-major copies of student / teacher when their H and W
/// strides do not merge, plus ops::softmax_relation's scratch (per-thread tiles and its gradient
/// accumulators on the host). A host call may pass no workspace: it then allocates what its mode needs.
///
///   kdloss::drkd::PixelRelationLossArgs<float> args;   // filled in as in PixelRelationLossArgs's example
///   std::size_t bytes = kdloss::drkd::pixel_relation_loss_workspace_bytes(args);
template <class T>
std::size_t pixel_relation_loss_workspace_bytes(const PixelRelationLossArgs<T>& args) {
  const detail::Checker ck{"kdloss::drkd::pixel_relation_loss_workspace_bytes"};
  ck.rank(args.student, "student", 4);
  ck.not_null(args.student, "student");
  ck.not_null(args.teacher, "teacher");
  ck.same_shape(args.student, "student", args.teacher, "teacher");
  std::size_t bytes = 0;
  for (Mode mode : {Mode::forward, Mode::backward, Mode::forward_backward}) {
    detail::Carver sizer;
    detail::carve(sizer, args, mode);
    bytes = std::max(bytes, sizer.bytes());
  }
  return bytes;
}

/// Checks, then runs one call in `mode`: forward writes out; backward writes grad_student = grad_out * dL/dS
/// (recomputing G(T), G(S) and its log-sum-exp: it costs a forward more than forward_backward);
/// forward_backward writes out and dL/dS. NaN and inf propagate as torch's SDPA + mse_loss autograd: a NaN
/// anywhere in image b's student makes the loss NaN and image b's whole gradient NaN (the other images'
/// gradients stay finite). B = 0 writes 0 (sum and mean, as kdloss::mse_loss; torch's mean gives NaN).
///
///   kdloss::drkd::PixelRelationLossArgs<float> args;   // filled in as in PixelRelationLossArgs's example
///   std::vector<char> ws(kdloss::drkd::pixel_relation_loss_workspace_bytes(args) + 256);
///   void* base = ws.data() + (256 - reinterpret_cast<std::uintptr_t>(ws.data()) % 256) % 256;
///   kdloss::drkd::pixel_relation_loss(args, kdloss::Mode::forward_backward,
///                                     {kdloss::Workspace{base, ws.size() - 256}});
template <class T>
void pixel_relation_loss(const PixelRelationLossArgs<T>& args, Mode mode, const Exec& exec = {}) {
  detail::check(args, mode);
  detail::run(args, mode, exec);
}

/// L_P = MSE(G(T), G(S)) with G(F) = softmax(F F^T / sqrt(C)) F per image.
///
///   // one P4 map of a batch of 2, NCHW; the same call takes channels-last strides
///   std::vector<float> s(2 * 256 * 50 * 84, 0.01f), t(2 * 256 * 50 * 84, 0.02f);
///   float loss = 0;
///   kdloss::drkd::pixel_relation_loss(kdloss::host_view<const float>(s.data(), {2, 256, 50, 84}),
///                                     kdloss::host_view<const float>(t.data(), {2, 256, 50, 84}),
///                                     kdloss::host_scalar(&loss));
template <class S, class Tt, class O>
void pixel_relation_loss(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                         const PixelRelationOptions& options = {}, const Exec& exec = {}) {
  pixel_relation_loss(PixelRelationLossArgs<O>{student, teacher, out, {}, {}, options}, Mode::forward, exec);
}

/// grad_student = grad_out * dL_P/dS (both relations recomputed).
///
///   std::vector<float> s(16 * 6 * 6, 0.5f), t(16 * 6 * 6, 0.25f), gs(16 * 6 * 6);
///   float one = 1.0f;
///   kdloss::drkd::pixel_relation_loss_backward(kdloss::host_view<const float>(s.data(), {1, 16, 6, 6}),
///                                              kdloss::host_view<const float>(t.data(), {1, 16, 6, 6}),
///                                              kdloss::host_scalar<const float>(&one),
///                                              kdloss::host_view(gs.data(), {1, 16, 6, 6}),
///                                              {kdloss::Reduction::sum});
template <class S, class Tt, class G, class O>
void pixel_relation_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                                  const View<O>& grad_student, const PixelRelationOptions& options = {},
                                  const Exec& exec = {}) {
  pixel_relation_loss(PixelRelationLossArgs<O>{student, teacher, {}, grad_out, grad_student, options},
                      Mode::backward, exec);
}

/// The value and dL_P/dS in one call (what a training step wants).
///
///   std::vector<float> s(16 * 6 * 6, 0.5f), t(16 * 6 * 6, 0.25f), gs(16 * 6 * 6);
///   float loss = 0;
///   kdloss::drkd::pixel_relation_loss_forward_backward(kdloss::host_view<const float>(s.data(), {1, 16, 6, 6}),
///                                                      kdloss::host_view<const float>(t.data(), {1, 16, 6, 6}),
///                                                      kdloss::host_scalar(&loss),
///                                                      kdloss::host_view(gs.data(), {1, 16, 6, 6}));
template <class S, class Tt, class O>
void pixel_relation_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                                          const View<O>& grad_student, const PixelRelationOptions& options = {},
                                          const Exec& exec = {}) {
  pixel_relation_loss(PixelRelationLossArgs<O>{student, teacher, out, {}, grad_student, options},
                      Mode::forward_backward, exec);
}

}  // namespace drkd
} }  // namespace kdloss
