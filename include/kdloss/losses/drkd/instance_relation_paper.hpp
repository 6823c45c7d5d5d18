// kdloss/losses/drkd/instance_relation_paper.hpp: DRKD's instance-wise relation distillation as the seed's
// pseudocode describes it (paper form), one pyramid level, on RoI-pooled instance features:
//
//   R_b = cos(F_b) = N_b N_b^T, N = F / max(||F||, eps)           per image b, [n_b, n_b] (ops::cosine_relation)
//   relation filter (constants, no gradient):
//     confidence:  M_i = score_i > t, t = options.threshold (fixed) or the mean of the TEACHER's scores of the
//                  image (ConfidenceThreshold::teacher_mean, the default); the teacher's rows use the
//                  teacher's scores, the student's rows the student's scores when given (seed: M_S = C_S > T),
//                  else the teacher's; rows only (seed: R[M == False] = 0, the default) or rows and columns
//     distance:    ||F_i - F_j|| > alpha zeroes R_ij (alpha = +inf, the default: no distance mask)
//   L_I = weight * mean over every relation entry of the batch (sum_b n_b^2) of (R'_T - R'_S)^2
//         (Reduction::sum: the sum instead)
//
// Gradients reach the student features through the cosine (ops::cosine_relation's backward, F.normalize's
// rule at zero rows: relation 0, gradient dN / eps, finite); the teacher gets none. The caller sums the
// levels. Without scores and with alpha = inf the loss is plain MSE(cos(F_T), cos(F_S)).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <tuple>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/ragged.hpp"
#include "kdloss/core/types.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/basic.hpp"
#include "kdloss/ops/cosine_relation.hpp"
#include "kdloss/ops/distance.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace drkd {

/// Where the confidence threshold comes from.
enum class ConfidenceThreshold {
  teacher_mean,  // per image: the mean of the teacher's scores of its boxes (default)
  fixed          // options.threshold
};

/// Options of instance_relation_paper_loss.
struct InstanceRelationPaperOptions {
  double weight = 1.0;                                             // L_I's weight (the paper's is unverified)
  ConfidenceThreshold threshold_from = ConfidenceThreshold::teacher_mean;
  double threshold = 0.5;                                          // used when threshold_from == fixed
  bool mask_columns = false;                                       // false: rows only (the seed); true: pairs
  double alpha = std::numeric_limits<double>::infinity();          // distance threshold; inf: no distance mask
  double eps = 1e-12;                                              // the cosine's F.normalize eps
  Reduction reduction = Reduction::mean;                           // mean (MSE) or sum over the entries
};

/// The arguments of one instance_relation_paper_loss call. student [n, ...], teacher [n, ...] (dims after
/// the first flattened; any strides; feature sizes may differ); boxes: host offsets [B + 1] ending at n;
/// teacher_scores [n] (optional: absent, no confidence mask), student_scores [n] (optional: the student's
/// rows then use them); out: one element (forward, forward_backward); grad_out: one element (backward);
/// grad_student: like student (optional).
///
///   std::vector<float> fs(5 * 2304, 0.5f), ft(5 * 2304, 0.25f), sc = {0.9f, 0.2f, 0.7f, 0.8f, 0.1f}, gs(5 * 2304);
///   std::int64_t offsets[] = {0, 3, 5};
///   float loss = 0;
///   kdloss::drkd::InstanceRelationPaperLossArgs<float> args;
///   args.student = kdloss::host_view<const float>(fs.data(), {5, 256, 3, 3});
///   args.teacher = kdloss::host_view<const float>(ft.data(), {5, 256, 3, 3});
///   args.boxes.offsets = kdloss::host_view<const std::int64_t>(offsets, {3});
///   args.teacher_scores = kdloss::host_view<const float>(sc.data(), {5});
///   args.out = kdloss::host_scalar(&loss);
///   args.grad_student = kdloss::host_view(gs.data(), {5, 256, 3, 3});
///   kdloss::drkd::instance_relation_paper_loss(args, kdloss::Mode::forward_backward);
template <class T>
struct InstanceRelationPaperLossArgs {
  View<const T> student{};
  View<const T> teacher{};
  Segments<std::int64_t> boxes{};
  View<const T> teacher_scores{};
  View<const T> student_scores{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_student{};
  InstanceRelationPaperOptions options{};
};

namespace paper_detail {
using ::kdloss::detail::Carver;
using ::kdloss::detail::Checker;
using ::kdloss::detail::require;

inline constexpr EntryNames kNames{"kdloss::drkd::instance_relation_paper_loss",
                                   "kdloss::drkd::instance_relation_paper_loss_backward",
                                   "kdloss::drkd::instance_relation_paper_loss_forward_backward"};

/// The relation filter of one side: 1 or 0 from the relation R, the row and column norms, the row and
/// column scores and the image's threshold (read through a pointer on the call's device, or `fixed`).
template <class T>
struct FilterMask {
  double eps, alpha2, fixed;
  const T* thr;  // null: `fixed`
  bool confidence, columns;
  template <class R, class NI, class NJ, class CI, class CJ, class M>
  KDLOSS_HOST_DEVICE void operator()(const R& r, const NI& ni, const NJ& nj, const CI& ci, const CJ& cj, M& m) const {
    using S = math::scalar_t<M>;
    const S one(1), zero(0), t = thr ? static_cast<S>(*thr) : S(fixed);
    // ||x_i - x_j||^2 = |x_i|^2 + |x_j|^2 - 2 x_i.x_j, with x_i.x_j = R max(|x_i|, eps) max(|x_j|, eps)
    const auto d2 = ni * ni + nj * nj - S(2) * r * math::max(ni, S(eps)) * math::max(nj, S(eps));
    // array-shaped 0 and 1 (NaN where r is NaN); two declarations: their expression types differ (clang)
    const auto off = zero * r;
    const auto on = one + zero * r;
    const auto kd = math::select(d2 > S(alpha2), off, on);
    if (!confidence) {
      m = kd;
      return;
    }
    const auto ki = math::select(ci > t, on, off);
    if (!columns) {
      m = kd * ki;
      return;
    }
    m = kd * ki * math::select(cj > t, on, off);
  }
};
/// (R_T m_T - R_S m_S)^2.
struct MaskedSquare {
  template <class RS, class RT, class MS, class MT>
  KDLOSS_HOST_DEVICE auto operator()(const RS& rs, const RT& rt, const MS& ms, const MT& mt) const {
    return math::square(rt * mt - rs * ms);
  }
};
/// dR_S = scale * upstream * 2 (R_S m_S - R_T m_T) m_S.
template <class T>
struct MaskedSquareGrad {
  double scale;
  ops::ScalarUpstream<T> upstream;
  template <class RS, class RT, class MS, class MT, class G>
  KDLOSS_HOST_DEVICE void operator()(const RS& rs, const RT& rt, const MS& ms, const MT& mt, G& g) const {
    using S = math::scalar_t<G>;
    g = (S(2 * scale) * upstream.template get<S>()) * (rs * ms - rt * mt) * ms;
  }
};

template <class T>
struct Plan {
  std::int64_t pairs = 0;
  T *xs = nullptr, *xt = nullptr, *rs = nullptr, *rt = nullptr, *ms = nullptr, *mt = nullptr, *dr = nullptr,
    *ns = nullptr, *nt = nullptr, *thr = nullptr, *zero = nullptr, *dx = nullptr;
  double* partials = nullptr;
  void* inner = nullptr;
  std::size_t inner_bytes = 0, total = 0;
};

template <class T>
View<T> flat(T* p, std::int64_t n, std::int64_t D, Device dev) {
  return View<T>(p, Dims{n, D}, Dims{D, 1}, dev);
}
template <class T>
ops::CosineRelationArgs<T> cosine(const View<const T>& x, const Segments<std::int64_t>& seg, T* out, double eps) {
  ops::CosineRelationArgs<T> c;
  c.x = x;
  c.segments = seg;
  c.out = View<T>(out, Dims{ops::cosine_relation_detail::pairs<T>(seg)}, Dims{1}, x.device);
  c.options.eps = eps;
  return c;
}

template <class T>
Plan<T> plan(const InstanceRelationPaperLossArgs<T>& a, void* base) {
  Carver c(base);
  Plan<T> p;
  const Device dev = a.student.device;
  const std::int64_t n = a.student.shape[0], Ds = a.student.numel() / std::max<std::int64_t>(n, 1),
                     Dt = a.teacher.numel() / std::max<std::int64_t>(n, 1);
  p.pairs = ops::cosine_relation_detail::pairs<T>(a.boxes);
  const auto P = static_cast<std::size_t>(p.pairs);
  p.xs = c.take<T>(static_cast<std::size_t>(n * Ds));
  p.xt = c.take<T>(static_cast<std::size_t>(n * Dt));
  p.rs = c.take<T>(P);
  p.rt = c.take<T>(P);
  p.ms = c.take<T>(P);
  p.mt = c.take<T>(P);
  p.dr = c.take<T>(P);
  p.ns = c.take<T>(static_cast<std::size_t>(n));
  p.nt = c.take<T>(static_cast<std::size_t>(n));
  p.thr = c.take<T>(static_cast<std::size_t>(std::max<std::int64_t>(a.boxes.count(), 1)));
  p.zero = c.take<T>(1);
  p.dx = c.take<T>(static_cast<std::size_t>(n * Ds));
  p.partials = ::kdloss::detail::carve_reduction(c, dev, std::max(p.pairs, n));
  // the inner ops' workspace (cosine_relation on either side, the row norms), used one at a time
  const View<const T> fs(reinterpret_cast<const T*>(::kdloss::detail::kWorkspaceAlignment), Dims{n, Ds},
                         Dims{Ds, 1}, dev),
      ft(fs.data, Dims{n, Dt}, Dims{Dt, 1}, dev);
  ops::DistanceArgs<T> q;
  q.a = q.b = fs.numel() >= ft.numel() ? fs : ft;
  q.options.per_item = true;
  p.inner_bytes = std::max({ops::cosine_relation_workspace_bytes(cosine<T>(fs, a.boxes, nullptr, a.options.eps)),
                            ops::cosine_relation_workspace_bytes(cosine<T>(ft, a.boxes, nullptr, a.options.eps)),
                            ops::distance_workspace_bytes(q)});
  p.inner = c.take<unsigned char>(p.inner_bytes);
  p.total = c.bytes();
  return p;
}

template <class T>
void check_inputs(const InstanceRelationPaperLossArgs<T>& a, const char* fn) {
  const Checker ck{fn};
  ck.rank_between(a.student, "student", 2, kMaxRank);
  ck.rank_between(a.teacher, "teacher", 2, kMaxRank);
  ck.not_null(a.student, "student");
  ck.not_null(a.teacher, "teacher");
  const Device dev = a.student.device;
  ck.device(a.teacher, "teacher", dev);
  require(a.student.shape[0] == a.teacher.shape[0], fn, ": arguments 'student' ", a.student.shape.str(),
          " and 'teacher' ", a.teacher.shape.str(), " must have the same number of boxes (dim 0)");
  require(present(a.boxes.offsets), fn, ": argument 'boxes' (the per-image offsets) is absent");
  ::kdloss::detail::check_segments(ck, a.boxes, "boxes", a.student.shape[0]);
  const auto scores = [&](const View<const T>& v, const char* name) {
    if (absent(v)) return;
    ck.not_null(v, name);
    ck.shape(v, name, Dims{a.student.shape[0]});
    ck.device(v, name, dev);
  };
  scores(a.teacher_scores, "teacher_scores");
  scores(a.student_scores, "student_scores");
  const auto& o = a.options;
  require(std::isfinite(o.weight), fn, ": option 'weight' is ", o.weight, " but must be finite");
  require(!(o.alpha < 0), fn, ": option 'alpha' is ", o.alpha, " but must be >= 0 (inf: no distance mask)");
  require(o.eps > 0 && std::isfinite(o.eps), fn, ": option 'eps' is ", o.eps, " but must be > 0 and finite");
  require(o.reduction == Reduction::mean || o.reduction == Reduction::sum, fn,
          ": option 'reduction' must be mean or sum");
  require(o.threshold_from == ConfidenceThreshold::teacher_mean || o.threshold_from == ConfidenceThreshold::fixed, fn,
          ": option 'threshold_from' must be teacher_mean or fixed");
  ::kdloss::detail::require_backend<T>(fn, dev);
}

}  // namespace paper_detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::drkd::InstanceRelationPaperLossArgs<float> args;   // filled in as in its example
///   kdloss::drkd::instance_relation_paper_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void instance_relation_paper_loss_check(const InstanceRelationPaperLossArgs<T>& a, Mode mode) {
  namespace pd = paper_detail;
  const char* fn = pd::kNames(mode);
  const pd::Checker ck{fn};
  pd::check_inputs(a, fn);
  const Device dev = a.student.device;
  if (writes_value(mode)) {
    ck.scalar_output(a.out, "out");
    ck.device(a.out, "out", dev);
    // Named arrays, not range-for over braced lists: nvcc 13's host-code pass rejects those here.
    const std::pair<View<const T>, const char*> inputs[] = {
        {a.student, "student"}, {a.teacher, "teacher"}, {a.teacher_scores, "teacher_scores"},
        {a.student_scores, "student_scores"}};
    for (const auto& [v, name] : inputs) {
      ck.disjoint(a.out, "out", v, name);
    }
  }
  if (mode == Mode::backward) {
    pd::require(present(a.grad_out), fn, ": mode backward reads 'grad_out' but it is absent");
    ck.scalar_output(a.grad_out, "grad_out");
    ck.device(a.grad_out, "grad_out", dev);
  }
  if (writes_gradients(mode) && present(a.grad_student)) {
    ck.not_null(a.grad_student, "grad_student");
    ck.shape(a.grad_student, "grad_student", a.student.shape);
    ck.device(a.grad_student, "grad_student", dev);
    ck.unique(a.grad_student, "grad_student");
    const std::pair<View<const T>, const char*> inputs[] = {
        {a.student, "student"}, {a.teacher, "teacher"}, {a.teacher_scores, "teacher_scores"},
        {a.student_scores, "student_scores"}, {a.grad_out, "grad_out"}};
    for (const auto& [v, name] : inputs) {
      ck.disjoint(a.grad_student, "grad_student", v, name);
    }
    if (writes_value(mode)) ck.disjoint(a.grad_student, "grad_student", a.out, "out");
  }
}

/// Workspace bytes, every mode: contiguous copies of both features and of the student's gradient, the
/// relations, masks and dR (sum n_b^2 each), the row norms, the thresholds and the inner ops' workspace.
///
///   kdloss::drkd::InstanceRelationPaperLossArgs<float> args;   // filled in as in its example
///   std::size_t bytes = kdloss::drkd::instance_relation_paper_loss_workspace_bytes(args);
template <class T>
std::size_t instance_relation_paper_loss_workspace_bytes(const InstanceRelationPaperLossArgs<T>& args) {
  paper_detail::check_inputs(args, "kdloss::drkd::instance_relation_paper_loss_workspace_bytes");
  return paper_detail::plan(args, nullptr).total;
}

/// Checks, then runs. forward: out = L_I; backward (recomputes; reads grad_out): grad_student; forward_backward:
/// both. The masks are constants.
///
///   kdloss::drkd::InstanceRelationPaperLossArgs<float> args;   // filled in as in its example
///   kdloss::drkd::instance_relation_paper_loss(args, kdloss::Mode::forward_backward);
template <class T>
void instance_relation_paper_loss(const InstanceRelationPaperLossArgs<T>& a, Mode mode, const Exec& exec = {}) {
  namespace pd = paper_detail;
  const char* fn = pd::kNames(mode);
  instance_relation_paper_loss_check(a, mode);
  const Device dev = a.student.device;
  ops::detail::require_blas(fn, dev, exec);
  using Acc = acc_t<T>;
  ::kdloss::detail::HostScratch host;
  const std::size_t need = pd::plan(a, nullptr).total;
  const pd::Plan<T> p = pd::plan(a, ::kdloss::detail::resolve_workspace(fn, dev, exec.workspace, need, host));
  const Exec inner{{p.inner_bytes ? p.inner : nullptr, p.inner_bytes}, exec.stream, exec.blas};
  const auto& o = a.options;
  const std::int64_t n = a.student.shape[0];
  const std::int64_t Ds = a.student.numel() / std::max<std::int64_t>(n, 1),
                     Dt = a.teacher.numel() / std::max<std::int64_t>(n, 1);
  // contiguous [n, D] copies (any input layout), their relations and row norms
  const auto copy = [&](const View<const T>& x, T* to) {
    const View<T> dst(to, x.shape, contiguous_strides(x.shape), dev);
    ::kdloss::detail::transform<Acc>(dev, exec.stream, x.shape, expr::Identity{}, std::tuple{x}, std::tuple{dst});
  };
  copy(a.student, p.xs);
  copy(a.teacher, p.xt);
  const View<const T> xs = pd::flat<const T>(p.xs, n, Ds, dev), xt = pd::flat<const T>(p.xt, n, Dt, dev);
  ops::cosine_relation(pd::cosine<T>(xs, a.boxes, p.rs, o.eps), Mode::forward, inner);
  ops::cosine_relation(pd::cosine<T>(xt, a.boxes, p.rt, o.eps), Mode::forward, inner);
  ::kdloss::detail::gemm_fill(dev, exec, p.zero, 1, 0.0);
  const std::pair<View<const T>, decltype(p.ns)> norms[] = {{xs, p.ns}, {xt, p.nt}};
  for (const auto& [x, norm] : norms) {
    ops::distance(ops::cosine_relation_detail::norm_args<T>(x, p.zero, norm), Mode::forward, inner);
  }
  // the filters, per image (thresholds kept on the call's device)
  const bool conf = present(a.teacher_scores), mean_thr = o.threshold_from == ConfidenceThreshold::teacher_mean;
  std::int64_t off = 0;
  for (std::int64_t b = 0; b < a.boxes.count(); ++b) {
    const std::int64_t s0 = a.boxes.begin(b), m = a.boxes.size(b);
    if (m == 0) continue;
    if (conf && mean_thr) {
      const View<const T> sc = a.teacher_scores.slice(0, s0, s0 + m);
      ::kdloss::detail::transform_reduce<Acc>(dev, exec.stream, sc.shape, expr::Identity{}, std::tuple{sc}, std::tuple<>{},
                                              p.partials, ::kdloss::detail::Scale{1.0 / double(m)}, p.thr + b);
    }
    const pd::FilterMask<T> f{o.eps, o.alpha * o.alpha, o.threshold, conf && mean_thr ? p.thr + b : nullptr, conf,
                              o.mask_columns};
    const Dims sq{m, m};
    const auto row = [&](const T* v, std::int64_t st) { return View<const T>(v + s0 * st, sq, Dims{st, 0}, dev); };
    const auto col = [&](const T* v, std::int64_t st) { return View<const T>(v + s0 * st, sq, Dims{0, st}, dev); };
    for (int side = 0; side < 2; ++side) {
      const T* norm = side ? p.nt : p.ns;
      View<const T> sc = side || absent(a.student_scores) ? a.teacher_scores : a.student_scores;
      if (!conf) sc = View<const T>(norm, Dims{n}, Dims{1}, dev);  // unread stand-in
      const View<const T> r = pd::flat<const T>((side ? p.rt : p.rs) + off, m, m, dev);
      ::kdloss::detail::transform<Acc>(dev, exec.stream, sq, f,
                                       std::tuple{r, row(norm, 1), col(norm, 1), row(sc.data, sc.strides[0]),
                                                  col(sc.data, sc.strides[0])},
                                       std::tuple{pd::flat<T>((side ? p.mt : p.ms) + off, m, m, dev)});
    }
    off += m * m;
  }
  const Dims packed{p.pairs};
  const auto pk = [&](const T* v) { return View<const T>(v, packed, Dims{1}, dev); };
  const double scale = o.weight / (o.reduction == Reduction::mean && p.pairs > 0 ? double(p.pairs) : 1.0);
  const double mean_nan = o.reduction == Reduction::mean && p.pairs == 0 ? std::numeric_limits<double>::quiet_NaN() : 1.0;
  if (writes_value(mode))
    ::kdloss::detail::transform_reduce<Acc>(dev, exec.stream, packed, pd::MaskedSquare{},
                                            std::tuple{pk(p.rs), pk(p.rt), pk(p.ms), pk(p.mt)}, std::tuple<>{},
                                            p.partials, ::kdloss::detail::Scale{scale * mean_nan}, a.out.data);
  if (!writes_gradients(mode) || absent(a.grad_student)) return;
  const pd::MaskedSquareGrad<T> g{scale, ops::ScalarUpstream<T>{mode == Mode::backward ? a.grad_out.data : nullptr}};
  ::kdloss::detail::transform<Acc>(dev, exec.stream, packed, g, std::tuple{pk(p.rs), pk(p.rt), pk(p.ms), pk(p.mt)},
                                   std::tuple{View<T>(p.dr, packed, Dims{1}, dev)});
  ops::CosineRelationArgs<T> cb = pd::cosine<T>(xs, a.boxes, nullptr, o.eps);
  cb.out = {};
  cb.grad_out = pk(p.dr);
  cb.grad_x = pd::flat<T>(p.dx, n, Ds, dev);  // then copied out in grad_student's layout
  ops::cosine_relation(cb, Mode::backward, inner);
  ::kdloss::detail::transform<Acc>(dev, exec.stream, a.student.shape, expr::Identity{},
                                   std::tuple{View<const T>(p.dx, a.student.shape, contiguous_strides(a.student.shape), dev)},
                                   std::tuple{a.grad_student});
}

/// Thin wrapper: the value.
///
///   kdloss::drkd::instance_relation_paper_loss_forward(args);
template <class T>
void instance_relation_paper_loss_forward(const InstanceRelationPaperLossArgs<T>& args, const Exec& exec = {}) {
  instance_relation_paper_loss(args, Mode::forward, exec);
}
/// Thin wrapper: grad_out times grad_student.
///
///   kdloss::drkd::instance_relation_paper_loss_backward(args);
template <class T>
void instance_relation_paper_loss_backward(const InstanceRelationPaperLossArgs<T>& args, const Exec& exec = {}) {
  instance_relation_paper_loss(args, Mode::backward, exec);
}
/// Thin wrapper: the value and grad_student.
///
///   kdloss::drkd::instance_relation_paper_loss_forward_backward(args);
template <class T>
void instance_relation_paper_loss_forward_backward(const InstanceRelationPaperLossArgs<T>& args,
                                                   const Exec& exec = {}) {
  instance_relation_paper_loss(args, Mode::forward_backward, exec);
}

}  // namespace drkd
} }  // namespace kdloss
