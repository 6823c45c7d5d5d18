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
// Host and GPU (float, double), one path through the dispatch layer (row operations, ops::matmul). No
// reserve: backward recomputes the forward. Workspace: t and s [N, D], their gradients, the logits
// (transposed) and their gradient [N, N] of one layer at a time (the layers run in turn), the layers' values.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <tuple>
#include <utility>
#include <vector>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/basic.hpp"
#include "kdloss/losses/detr/distill_detail.hpp"
#include "kdloss/ops/matmul.hpp"
#include "kdloss/ops/norm.hpp"
#include "kdloss/ops/softmax.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
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
  ::kdloss::detail::require_backend<T>(fn, a.teacher.device);
}

/// The workspace of one call: one layer's normalised rows (t, s) and their gradients (dt, ds), the [N, N]
/// logits (transposed) and their gradient, the diagonal, the K per-layer values, and the partial sums of the
/// row operation (GPU).
template <class T>
struct Plan {
  T *t = nullptr, *s = nullptr, *logits = nullptr, *grad = nullptr, *diag = nullptr, *dt = nullptr, *ds = nullptr,
    *layers = nullptr;
  double *row_partials = nullptr, *sum_partials = nullptr;
  unsigned char* products = nullptr;  // the matrix products' workspace
  std::size_t products_bytes = 0, total = 0;
};

/// The workspace of the call's largest matrix product (bound to stand-in views: shapes only).
template <class T>
std::size_t product_bytes(Device dev, std::int64_t N, std::int64_t D) {
  const auto in = [&](int lane, std::int64_t r, std::int64_t c) {
    return View<const T>(stand_in<T>(lane), Dims{r, c}, Dims{c, 1}, dev);
  };
  const auto out = [&](int lane, std::int64_t r, std::int64_t c) {
    return View<T>(stand_in<T>(lane), Dims{r, c}, Dims{c, 1}, dev);
  };
  ops::MatmulOptions logits, back_t;
  logits.trans_b = true;
  back_t.trans_a = true;
  return std::max({ops::matmul_workspace_bytes(ops::MatmulArgs<T>{in(0, N, D), in(1, N, D), out(2, N, N), logits}),
                   ops::matmul_workspace_bytes(ops::MatmulArgs<T>{in(2, N, N), in(0, N, D), out(3, N, D), back_t}),
                   ops::matmul_workspace_bytes(ops::MatmulArgs<T>{in(2, N, N), in(1, N, D), out(3, N, D), {}})});
}

/// Places the buffers in base (null: sizes only, total), with the products' workspace of products_bytes (the
/// query's, made once per call).
template <class T>
Plan<T> plan(Device dev, std::int64_t K, std::int64_t N, std::int64_t D, std::size_t products_bytes, void* base) {
  ::kdloss::detail::Carver c(base);
  Plan<T> p;
  p.products_bytes = products_bytes;
  p.products = c.take<unsigned char>(p.products_bytes);
  const auto nd = static_cast<std::size_t>(N * D), nn = static_cast<std::size_t>(N * N);
  p.t = c.take<T>(nd);
  p.s = c.take<T>(nd);
  p.logits = c.take<T>(nn);
  p.grad = c.take<T>(nn);
  p.diag = c.take<T>(static_cast<std::size_t>(N));
  p.dt = c.take<T>(nd);
  p.ds = c.take<T>(nd);
  p.layers = c.take<T>(static_cast<std::size_t>(K));
  p.row_partials = ::kdloss::detail::carve_rowwise(c, dev, N, N);
  p.sum_partials = ::kdloss::detail::carve_reduction(c, dev, K);
  p.total = c.bytes();
  return p;
}

/// Row i of the logits x (already divided by the temperature): returns logsumexp_j x_ij - x_ii, the row's
/// cross-entropy with target i (in<1> is x_ii along the whole row: the diagonal read with a stride of 0); with kGrad, out<0>(j) = scale * softmax_j(x_i.) (the caller then takes scale off the diagonal). A NaN
/// in the row makes its term and every gradient of the row NaN, as torch's cross_entropy.
template <bool kGrad, class T>
struct InfoNceRow {
  static constexpr bool kPacketRows = true;  // arithmetic, exp and log only: runs on packets of rows
  double scale;                               // weight / N
  ops::ScalarUpstream<T> upstream;            // backward's grad_out (absent: 1)
  template <class Acc, class Row>
  KDLOSS_HOST_DEVICE Acc operator()(const Row& row) const {
    const auto ms = ops::detail::row_max_and_sum<0>(row, Acc(1));
    const Acc term = (ms.max + math::log(ms.sum)) - row.template in<1, Acc>(0);
    if constexpr (kGrad) {
      const Acc factor = Acc(scale) * upstream.template get<Acc>() / ms.sum;
      row.for_each([&](std::int64_t j) { row.template out<0>(j, factor * math::exp(row.template in<0, Acc>(j) - ms.max)); });
    }
    return term;
  }
};

/// y = x / max(||x||, eps) along the row (F.normalize), or y = x without normalisation.
struct NormalizeRow {
  bool normalize;
  double eps;
  template <class Acc, class Row>
  KDLOSS_HOST_DEVICE void operator()(const Row& row) const {
    Acc scale = Acc(1);
    if (normalize) {
      const Acc n = math::sqrt(row.template sum<Acc>([&](std::int64_t j) {
        const Acc v = row.template in<0, Acc>(j);
        return v * v;
      }));
      scale = Acc(1) / (n > Acc(eps) ? n : Acc(eps));
    }
    row.for_each([&](std::int64_t j) { row.template out<0>(j, row.template in<0, Acc>(j) * scale); });
  }
};

/// F.normalize's backward along the row, from x (in<0>) and dy (in<1>): dx = (dy - y <y, dy>) / ||x|| where
/// ||x|| > eps (y = x / ||x||), dy / eps otherwise (clamp_min sends no gradient to the norm on its bound);
/// dx = dy without normalisation.
struct NormalizeBackwardRow {
  bool normalize;
  double eps;
  template <class Acc, class Row>
  KDLOSS_HOST_DEVICE void operator()(const Row& row) const {
    if (!normalize) {
      row.for_each([&](std::int64_t j) { row.template out<0>(j, row.template in<1, Acc>(j)); });
      return;
    }
    const Acc n = math::sqrt(row.template sum<Acc>([&](std::int64_t j) {
      const Acc v = row.template in<0, Acc>(j);
      return v * v;
    }));
    if (n > Acc(eps)) {
      const Acc inv = Acc(1) / n;
      const Acc dot = row.template sum<Acc>([&](std::int64_t j) {
        return row.template in<0, Acc>(j) * inv * row.template in<1, Acc>(j);
      });
      row.for_each([&](std::int64_t j) {
        row.template out<0>(j, (row.template in<1, Acc>(j) - row.template in<0, Acc>(j) * inv * dot) * inv);
      });
    } else {
      row.for_each([&](std::int64_t j) { row.template out<0>(j, row.template in<1, Acc>(j) / Acc(eps)); });
    }
  }
};

/// g_ii -= weight / N * upstream on the diagonal (the one-hot target of row i).
template <class T>
struct TakeTarget {
  double scale;
  ops::ScalarUpstream<T> upstream;
  template <class A, class O>
  KDLOSS_HOST_DEVICE void operator()(const A& g, O& o) const {
    using S = math::scalar_t<O>;  // (the host passes Eigen arrays of rows, the GPU scalars)
    o = g - static_cast<S>(scale) * upstream.template get<S>();
  }
};

/// Layer k of a [N, D] or [K, N, D] view.
template <class U>
View<U> layer_rows(const View<U>& x, std::int64_t k) {
  const int r = x.rank();
  return View<U>(x.data + layer_offset(x, 2, k), Dims{x.shape[r - 2], x.shape[r - 1]},
                 Dims{x.strides[r - 2], x.strides[r - 1]}, x.device);
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
  const std::int64_t K = r == 3 ? a.teacher.shape[0] : 1;
  const std::int64_t N = a.teacher.shape[r - 2], D = a.teacher.shape[r - 1];
  const Device dev = a.teacher.device;
  return contrastive_detail::plan<T>(dev, K, N, D, contrastive_detail::product_bytes<T>(dev, N, D), nullptr).total;
}

/// Checks, then runs, on the host or the GPU. forward: out = weight * sum over layers of the mean InfoNCE.
/// backward (reads grad_out, recomputes the forward): grad_out * dL/dP_T, dL/dP_S into the present gradients.
/// forward_backward: both. Sums run in a fixed order (the bits do not depend on the thread count).
///
///   kdloss::detr::ContrastiveQueryArgs<float> args;   // filled in as in ContrastiveQueryArgs's example
///   kdloss::detr::contrastive_query_loss(args, kdloss::Mode::forward_backward);
template <class T>
void contrastive_query_loss(const ContrastiveQueryArgs<T>& a, Mode mode, const Exec& exec = {}) {
  namespace cd = contrastive_detail;
  using Acc = acc_t<T>;
  const char* fn = cd::kNames(mode);
  contrastive_query_loss_check(a, mode);
  const int r = a.teacher.rank();
  const std::int64_t K = r == 3 ? a.teacher.shape[0] : 1, N = a.teacher.shape[r - 2], D = a.teacher.shape[r - 1];
  const Device dev = a.teacher.device;
  ::kdloss::detail::HostScratch host;
  const std::size_t products_bytes = cd::product_bytes<T>(dev, N, D);
  const std::size_t bytes = cd::plan<T>(dev, K, N, D, products_bytes, nullptr).total;
  const cd::Plan<T> p =
      cd::plan<T>(dev, K, N, D, products_bytes, ::kdloss::detail::resolve_workspace(fn, dev, exec.workspace, bytes, host));
  const auto& o = a.options;
  const double inv_temp = 1.0 / o.temperature;
  const bool grads = writes_gradients(mode) && (present(a.grad_teacher) || present(a.grad_student));
  const ops::ScalarUpstream<T> upstream{mode == Mode::backward ? a.grad_out.data : nullptr};
  const double gscale = o.weight / static_cast<double>(N);
  const auto mat = [&](T* ptr, std::int64_t rows, std::int64_t cols) { return View<T>(ptr, Dims{rows, cols}, Dims{cols, 1}, dev); };
  const auto cmat = [&](const T* ptr, std::int64_t rows, std::int64_t cols) {
    return View<const T>(ptr, Dims{rows, cols}, Dims{cols, 1}, dev);
  };
  const auto rows = [&](auto op, const auto& ins, const auto& outs, int axis, double* partials, T* result) {
    ::kdloss::detail::rowwise<Acc>(dev, exec.stream, Dims{N, std::get<0>(ins).shape[1]}, axis, op, ins, outs, partials,
                                   ::kdloss::detail::Keep{}, result);
  };
  const Exec products{{p.products, p.products_bytes}, exec.stream, exec.blas};
  for (std::int64_t k = 0; k < K; ++k) {
    const cd::NormalizeRow norm{o.normalize, o.eps};
    rows(norm, std::tuple{cd::layer_rows(a.teacher, k)}, std::tuple{mat(p.t, N, D)}, 1, nullptr, static_cast<T*>(nullptr));
    rows(norm, std::tuple{cd::layer_rows(a.student, k)}, std::tuple{mat(p.s, N, D)}, 1, nullptr, static_cast<T*>(nullptr));
    ops::MatmulOptions mo;
    mo.trans_b = true;
    mo.alpha = inv_temp;
    // the logits transposed, L^T = s t^T / temperature: row i of L is then column i of L^T, and neighbouring
    // rows lie next to each other, so the row operation runs a packet of rows at a time (vector exp)
    ops::matmul(cmat(p.s, N, D), cmat(p.t, N, D), mat(p.logits, N, N), mo, products);
    // per row of L: the CE term (into the layer's value) and, for gradients, (softmax - onehot) * scale into G^T
    // (the diagonal copied out, so that every operand steps by 0 or 1 from one row to the next)
    const View<T> diag_of_logits(p.logits, Dims{N}, Dims{N + 1}, dev), diag_of_grad(p.grad, Dims{N}, Dims{N + 1}, dev);
    ::kdloss::detail::transform<Acc>(dev, exec.stream, Dims{N}, expr::Identity{}, std::tuple{View<const T>(diag_of_logits)},
                                     std::tuple{View<T>(p.diag, Dims{N}, Dims{1}, dev)});
    const View<const T> x = cmat(p.logits, N, N), diag(p.diag, Dims{N, N}, Dims{0, 1}, dev);
    if (grads) {
      rows(cd::InfoNceRow<true, T>{gscale, upstream}, std::tuple{x, diag}, std::tuple{mat(p.grad, N, N)}, 0,
           p.row_partials, p.layers + k);
      ::kdloss::detail::transform<Acc>(dev, exec.stream, Dims{N}, cd::TakeTarget<T>{gscale, upstream},
                                       std::tuple{View<const T>(diag_of_grad)}, std::tuple{diag_of_grad});
    } else {
      rows(cd::InfoNceRow<false, T>{gscale, upstream}, std::tuple{x, diag}, std::tuple<>{}, 0, p.row_partials,
           p.layers + k);
    }
    if (!grads) continue;
    // dt = G s / temperature = (G^T)^T s / temperature, ds = G^T t / temperature, then through the normalisation
    ops::MatmulOptions g1;
    g1.alpha = inv_temp;
    g1.trans_a = true;
    const cd::NormalizeBackwardRow back{o.normalize, o.eps};
    if (present(a.grad_teacher)) {
      ops::matmul(cmat(p.grad, N, N), cmat(p.s, N, D), mat(p.dt, N, D), g1, products);
      rows(back, std::tuple{cd::layer_rows(a.teacher, k), cmat(p.dt, N, D)}, std::tuple{cd::layer_rows(a.grad_teacher, k)},
           1, nullptr, static_cast<T*>(nullptr));
    }
    if (present(a.grad_student)) {
      ops::MatmulOptions g2 = g1;
      g2.trans_a = false;
      ops::matmul(cmat(p.grad, N, N), cmat(p.t, N, D), mat(p.ds, N, D), g2, products);
      rows(back, std::tuple{cd::layer_rows(a.student, k), cmat(p.ds, N, D)}, std::tuple{cd::layer_rows(a.grad_student, k)},
           1, nullptr, static_cast<T*>(nullptr));
    }
  }
  if (!writes_value(mode)) return;
  // out = weight / N * the sum of the layers' row sums
  ::kdloss::detail::transform_reduce<Acc>(dev, exec.stream, Dims{K}, expr::Identity{},
                                          std::tuple{View<const T>(p.layers, Dims{K}, Dims{1}, dev)}, std::tuple<>{},
                                          p.sum_partials, ::kdloss::detail::Scale{gscale}, a.out.data);
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
} }  // namespace kdloss
