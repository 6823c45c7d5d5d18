// kdloss/losses/detr/contrastive.hpp: the DETRDistill code's contrastive query term (losses.md 4.5; not one
// of the paper's three components). Per decoder layer k, with P_T [N, D] the projected teacher queries
// and P_S [N, D] the projected student queries paired row by row (row i of P_T is the teacher hidden state
// of student query i's logits-matching partner, projected by the framework's MoCoCLHead MLP):
//
//   t_i = P_T,i / max(||P_T,i||, eps),  s_j = P_S,j / max(||P_S,j||, eps)       (F.normalize, eps 1e-12)
//   logits_ij = <t_i, s_j> / temperature                                        (temperature 0.07)
//   L = weight * sum_k (1/N) sum_i [ logsumexp_j logits_ij - logits_ii ]         (weight 0.2; CE, target i)
//
// Gradients reach both P_T and P_S (the projection heads are trained by this term; the framework keeps
// them). With normalize = false the inputs are taken as already normalised.
//
// Entry shape (core/entry.hpp): ContrastiveQueryArgs, contrastive_query_loss_check,
// contrastive_query_loss_workspace_bytes, contrastive_query_loss(args, mode, exec) and the wrappers.
// Host (float, double) only in this version. No reserve: backward recomputes the forward.
// Workspace: t and s [N, D], the logits (transposed) and their gradient [N, N] of one layer at a time (the
// layers run in turn).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/losses/detr/distill_detail.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/ops/matmul.hpp"
#include "kdloss/ops/softmax.hpp"

namespace kdloss {
namespace detr {

/// Options of contrastive_query_loss (the code: MoCoCLHead(T=0.07), CrossEntropyLoss(loss_weight=0.2)).
struct ContrastiveQueryOptions {
  double temperature = 0.07;  // > 0
  double weight = 0.2;        // finite
  bool normalize = true;      // L2-normalise the rows first (the head's F.normalize(dim=1)); false: as given
  double eps = 1e-12;         // F.normalize's eps
};

/// The arguments of one contrastive_query_loss call.
/// - teacher, student: [N, D] (one layer) or [K, N, D] (K decoder layers, summed), any strides, the same
///   shape; N >= 1. Row i of both is one pair (the positive of row i is column i).
/// - out: one element (forward, forward_backward); grad_out: one element (backward).
/// - grad_teacher, grad_student: optional, the inputs' shape.
///
///   const std::int64_t K = 6, N = 600, D = 512;   // 6 layers, batch 2 x 300 queries, MoCoCLHead's 512
///   std::vector<float> pt(K * N * D, 0.1f), ps(K * N * D, 0.2f), gt(K * N * D), gs(K * N * D);
///   float loss = 0;
///   kdloss::detr::ContrastiveQueryArgs<float> args;
///   args.teacher = kdloss::host_view<const float>(pt.data(), {K, N, D});
///   args.student = kdloss::host_view<const float>(ps.data(), {K, N, D});
///   args.out = kdloss::host_scalar(&loss);
///   args.grad_teacher = kdloss::host_view(gt.data(), {K, N, D});
///   args.grad_student = kdloss::host_view(gs.data(), {K, N, D});
///   kdloss::detr::contrastive_query_loss(args, kdloss::Mode::forward_backward);
template <class T>
struct ContrastiveQueryArgs {
  View<const T> teacher{};
  View<const T> student{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_teacher{};
  View<T> grad_student{};
  ContrastiveQueryOptions options{};
};

namespace contrastive_detail {
using namespace distill_detail;

inline constexpr EntryNames kNames{"kdloss::detr::contrastive_query_loss",
                                   "kdloss::detr::contrastive_query_loss_backward",
                                   "kdloss::detr::contrastive_query_loss_forward_backward"};

template <class T>
void check_inputs(const ContrastiveQueryArgs<T>& a, const char* fn) {
  const Checker ck{fn};
  ck.rank_between(a.teacher, "teacher", 2, 3);
  ck.not_null(a.teacher, "teacher");
  ck.not_null(a.student, "student");
  ck.same_shape(a.teacher, "teacher", a.student, "student");
  ck.device(a.student, "student", a.teacher.device);
  const int r = a.teacher.rank();
  require(static_cast<double>(a.teacher.shape[r - 2]) * static_cast<double>(a.teacher.shape[r - 2] + a.teacher.shape[r - 1]) < 0x1p52,
          fn, ": argument 'teacher' ", a.teacher.shape.str(), " is too large for the [N, N] logits");
  require(a.teacher.shape[r - 2] >= 1, fn, ": argument 'teacher' ", a.teacher.shape.str(),
          " has no rows; InfoNCE needs N >= 1 pairs");
  const auto& o = a.options;
  require(std::isfinite(o.temperature) && o.temperature > 0, fn, ": option 'temperature' is ", o.temperature,
          " but must be finite and > 0");
  require(std::isfinite(o.weight), fn, ": option 'weight' is ", o.weight, " but must be finite");
  require(std::isfinite(o.eps) && o.eps > 0, fn, ": option 'eps' is ", o.eps, " but must be finite and > 0");
  require_host<T>(fn, a.teacher.device);
}

struct Plan {
  std::size_t t = 0, s = 0, logits = 0, grad = 0, diag = 0, dt = 0, ds = 0, norms = 0, total = 0;
};

template <class T>
Plan plan(std::int64_t N, std::int64_t D) {
  ::kdloss::detail::Carver c(nullptr);
  Plan p;
  const auto nd = static_cast<std::size_t>(N * D);
  auto off = [&](std::size_t count, auto tag) {
    const std::size_t o = c.bytes();
    c.take<decltype(tag)>(count);
    return o;
  };
  p.t = off(nd, T{});
  p.s = off(nd, T{});
  p.logits = off(static_cast<std::size_t>(N * N), T{});
  p.grad = off(static_cast<std::size_t>(N * N), T{});
  p.diag = off(static_cast<std::size_t>(N), T{});
  p.dt = off(nd, T{});
  p.ds = off(nd, T{});
  p.norms = off(static_cast<std::size_t>(2 * N), double{});
  p.total = c.bytes();
  return p;
}

/// Row i of the logits x (already divided by the temperature): returns logsumexp_j x_ij - x_ii, the row's
/// cross-entropy with target i (in<1> is x_ii along the whole row: the diagonal read with a stride of 0); with kGrad, out<0>(j) = scale * softmax_j(x_i.) (the caller then takes scale off the diagonal). A NaN
/// in the row makes its term and every gradient of the row NaN, as torch's cross_entropy.
template <bool kGrad>
struct InfoNceRow {
  static constexpr bool kPacketRows = true;  // arithmetic, exp and log only: runs on packets of rows
  double scale;
  template <class Acc, class Row>
  KDLOSS_HOST_DEVICE Acc operator()(const Row& row) const {
    const auto ms = ops::detail::row_max_and_sum<0>(row, Acc(1));
    const Acc term = (ms.max + math::log(ms.sum)) - row.template in<1, Acc>(0);
    if constexpr (kGrad) {
      const Acc factor = Acc(scale) / ms.sum;
      row.for_each([&](std::int64_t j) { row.template out<0>(j, factor * math::exp(row.template in<0, Acc>(j) - ms.max)); });
    }
    return term;
  }
};

/// Copies layer k of `x` into the contiguous rows `y` [N, D], normalised when asked; keeps ||x_i|| in `norm`.
template <class T>
void load_rows(const View<const T>& x, std::int64_t k, std::int64_t N, std::int64_t D, bool normalize, double eps,
               T* y, double* norm) {
  const std::int64_t r = x.rank(), base = layer_offset(x, 2, k), s0 = x.strides[r - 2], s1 = x.strides[r - 1];
  each(N, D, [&](std::int64_t i) {
    const T* row = x.data + base + i * s0;
    double ss = 0;
    for (std::int64_t d = 0; d < D; ++d) ss += static_cast<double>(row[d * s1]) * static_cast<double>(row[d * s1]);
    const double n = std::sqrt(ss);
    norm[i] = n;
    const double scale = normalize ? 1.0 / std::max(n, eps) : 1.0;
    for (std::int64_t d = 0; d < D; ++d) y[i * D + d] = static_cast<T>(static_cast<double>(row[d * s1]) * scale);
  });
}

/// dx_i = (dy_i - y_i <y_i, dy_i>) / ||x_i|| where ||x_i|| > eps, dy_i / eps otherwise (F.normalize's
/// backward: clamp_min sends no gradient to the norm on its bound); dy_i itself without normalisation.
template <class T>
void store_grad(const View<T>& g, std::int64_t k, std::int64_t N, std::int64_t D, bool normalize, double eps,
                const T* y, const T* dy, const double* norm) {
  if (absent(g)) return;
  const std::int64_t r = g.rank(), base = layer_offset(g, 2, k), s0 = g.strides[r - 2], s1 = g.strides[r - 1];
  each(N, D, [&](std::int64_t i) {
    T* row = g.data + base + i * s0;
    const T* yi = y + i * D;
    const T* di = dy + i * D;
    if (!normalize) {
      for (std::int64_t d = 0; d < D; ++d) row[d * s1] = di[d];
      return;
    }
    if (norm[i] > eps) {
      double dot = 0;
      for (std::int64_t d = 0; d < D; ++d) dot += static_cast<double>(yi[d]) * static_cast<double>(di[d]);
      for (std::int64_t d = 0; d < D; ++d)
        row[d * s1] = static_cast<T>((static_cast<double>(di[d]) - static_cast<double>(yi[d]) * dot) / norm[i]);
    } else {
      for (std::int64_t d = 0; d < D; ++d) row[d * s1] = static_cast<T>(static_cast<double>(di[d]) / eps);
    }
  });
}

}  // namespace contrastive_detail

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::detr::ContrastiveQueryArgs<float> args;   // filled in as in ContrastiveQueryArgs's example
///   kdloss::detr::contrastive_query_loss_check(args, kdloss::Mode::forward_backward);
template <class T>
void contrastive_query_loss_check(const ContrastiveQueryArgs<T>& a, Mode mode) {
  const char* fn = contrastive_detail::kNames(mode);
  const distill_detail::Checker ck{fn};
  contrastive_detail::check_inputs(a, fn);
  const Device dev = a.teacher.device;
  using P = std::pair<View<const T>, const char*>;
  if (writes_value(mode)) {
    ck.scalar_output(a.out, "out");
    ck.device(a.out, "out", dev);
    ck.disjoint(a.out, "out", a.teacher, "teacher");
    ck.disjoint(a.out, "out", a.student, "student");
  }
  if (mode == Mode::backward) {
    distill_detail::require(present(a.grad_out), fn, ": mode backward reads 'grad_out' but it is absent");
    ck.scalar_output(a.grad_out, "grad_out");
    ck.device(a.grad_out, "grad_out", dev);
  }
  if (writes_gradients(mode)) {
    const View<const T> out_c(a.out.data, a.out.shape, a.out.strides, a.out.device);
    const P others[] = {P{a.teacher, "teacher"}, P{a.student, "student"},
                        P{writes_value(mode) ? out_c : View<const T>{}, "out"},
                        P{mode == Mode::backward ? a.grad_out : View<const T>{}, "grad_out"}};
    distill_detail::check_grad(ck, a.grad_teacher, "grad_teacher", a.teacher.shape, dev, others[0], others[1],
                               others[2], others[3]);
    distill_detail::check_grad(ck, a.grad_student, "grad_student", a.teacher.shape, dev, others[0], others[1],
                               others[2], others[3]);
    if (present(a.grad_teacher) && present(a.grad_student))
      ck.disjoint(a.grad_teacher, "grad_teacher", a.grad_student, "grad_student");
  }
}

/// Workspace bytes of contrastive_query_loss on these arguments (every mode): the normalised rows of one
/// layer on both sides, their gradients, the [N, N] logits and the row norms.
///
///   kdloss::detr::ContrastiveQueryArgs<float> args;   // filled in as in ContrastiveQueryArgs's example
///   std::size_t bytes = kdloss::detr::contrastive_query_loss_workspace_bytes(args);
template <class T>
std::size_t contrastive_query_loss_workspace_bytes(const ContrastiveQueryArgs<T>& a) {
  contrastive_detail::check_inputs(a, "kdloss::detr::contrastive_query_loss_workspace_bytes");
  const int r = a.teacher.rank();
  return contrastive_detail::plan<T>(a.teacher.shape[r - 2], a.teacher.shape[r - 1]).total;
}

/// Checks, then runs. forward: out = weight * sum over layers of the mean InfoNCE. backward (reads
/// grad_out, recomputes the forward): grad_out * dL/dP_T, dL/dP_S into the present gradients.
/// forward_backward: both. Sums run in a fixed order (the bits do not depend on the thread count).
///
///   kdloss::detr::ContrastiveQueryArgs<float> args;   // filled in as in ContrastiveQueryArgs's example
///   kdloss::detr::contrastive_query_loss(args, kdloss::Mode::forward_backward);
template <class T>
void contrastive_query_loss(const ContrastiveQueryArgs<T>& a, Mode mode, const Exec& exec = {}) {
  namespace cd = contrastive_detail;
  const char* fn = cd::kNames(mode);
  contrastive_query_loss_check(a, mode);
  const int r = a.teacher.rank();
  const std::int64_t K = r == 3 ? a.teacher.shape[0] : 1, N = a.teacher.shape[r - 2], D = a.teacher.shape[r - 1];
  const cd::Plan p = cd::plan<T>(N, D);
  ::kdloss::detail::HostScratch host;
  auto* base = static_cast<unsigned char*>(
      ::kdloss::detail::resolve_workspace(fn, a.teacher.device, exec.workspace, p.total, host));
  T* t = reinterpret_cast<T*>(base + p.t);
  T* s = reinterpret_cast<T*>(base + p.s);
  T* logits = reinterpret_cast<T*>(base + p.logits);
  T* grad = reinterpret_cast<T*>(base + p.grad);
  T* diag_copy = reinterpret_cast<T*>(base + p.diag);
  T* dt = reinterpret_cast<T*>(base + p.dt);
  T* ds = reinterpret_cast<T*>(base + p.ds);
  double* tnorm = reinterpret_cast<double*>(base + p.norms);
  double* snorm = tnorm + N;
  const auto& o = a.options;
  const double inv_temp = 1.0 / o.temperature;
  const bool grads = writes_gradients(mode) && (present(a.grad_teacher) || present(a.grad_student));
  const double upstream = mode == Mode::backward ? static_cast<double>(*a.grad_out.data) : 1.0;
  const double gscale = o.weight * upstream / static_cast<double>(N);
  const auto mat = [&](T* ptr, std::int64_t rows, std::int64_t cols) { return host_view<T>(ptr, {rows, cols}); };
  const auto cmat = [&](const T* ptr, std::int64_t rows, std::int64_t cols) {
    return host_view<const T>(ptr, {rows, cols});
  };
  double total = 0;
  for (std::int64_t k = 0; k < K; ++k) {
    cd::load_rows(a.teacher, k, N, D, o.normalize, o.eps, t, tnorm);
    cd::load_rows(a.student, k, N, D, o.normalize, o.eps, s, snorm);
    ops::MatmulOptions mo;
    mo.trans_b = true;
    mo.alpha = inv_temp;
    // the logits transposed, L^T = s t^T / temperature: row i of L is then column i of L^T, and neighbouring
    // rows lie next to each other, so the row operation runs a packet of rows at a time (vector exp)
    ops::matmul(cmat(s, N, D), cmat(t, N, D), mat(logits, N, N), mo);
    // per row of L: the CE term (value) and, for gradients, (softmax - onehot) * gscale into G^T
    // (the diagonal copied out, so that every operand steps by 0 or 1 from one row to the next)
    for (std::int64_t i = 0; i < N; ++i) diag_copy[i] = logits[i * N + i];
    const View<const T> x = cmat(logits, N, N), diag(diag_copy, Dims{N, N}, Dims{0, 1}, x.device);
    double layer = 0;
    const auto rows = [&](auto op, const auto& outs) {
      ::kdloss::detail::rowwise<acc_t<T>>(x.device, exec.stream, x.shape, 0, op, std::tuple{x, diag}, outs, nullptr,
                                          ::kdloss::detail::Keep{}, &layer);
    };
    if (grads) {
      rows(cd::InfoNceRow<true>{gscale}, std::tuple{mat(grad, N, N)});
      for (std::int64_t i = 0; i < N; ++i) grad[i * N + i] -= static_cast<T>(gscale);
    } else {
      rows(cd::InfoNceRow<false>{gscale}, std::tuple<>{});
    }
    total += layer / static_cast<double>(N);
    if (!grads) continue;
    // dt = G s / temperature = (G^T)^T s / temperature, ds = G^T t / temperature
    ops::MatmulOptions g1;
    g1.alpha = inv_temp;
    g1.trans_a = true;
    if (present(a.grad_teacher)) {
      ops::matmul(cmat(grad, N, N), cmat(s, N, D), mat(dt, N, D), g1);
      cd::store_grad(a.grad_teacher, k, N, D, o.normalize, o.eps, t, dt, tnorm);
    }
    if (present(a.grad_student)) {
      ops::MatmulOptions g2 = g1;
      g2.trans_a = false;
      ops::matmul(cmat(grad, N, N), cmat(t, N, D), mat(ds, N, D), g2);
      cd::store_grad(a.grad_student, k, N, D, o.normalize, o.eps, s, ds, snorm);
    }
  }
  if (writes_value(mode)) *a.out.data = static_cast<T>(o.weight * total);
}

/// Thin wrapper: the value.
///
///   kdloss::detr::contrastive_query_loss_forward(args);   // args as in ContrastiveQueryArgs's example
template <class T>
void contrastive_query_loss_forward(const ContrastiveQueryArgs<T>& args, const Exec& exec = {}) {
  contrastive_query_loss(args, Mode::forward, exec);
}

/// Thin wrapper: grad_out times the present gradients (recomputes the forward).
///
///   kdloss::detr::contrastive_query_loss_backward(args);  // args with grad_out and the wanted gradients
template <class T>
void contrastive_query_loss_backward(const ContrastiveQueryArgs<T>& args, const Exec& exec = {}) {
  contrastive_query_loss(args, Mode::backward, exec);
}

/// Thin wrapper: the value and the present gradients in one call.
///
///   kdloss::detr::contrastive_query_loss_forward_backward(args);
template <class T>
void contrastive_query_loss_forward_backward(const ContrastiveQueryArgs<T>& args, const Exec& exec = {}) {
  contrastive_query_loss(args, Mode::forward_backward, exec);
}

}  // namespace detr
}  // namespace kdloss
