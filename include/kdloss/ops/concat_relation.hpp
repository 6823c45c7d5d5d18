// kdloss/ops/concat_relation.hpp: the concatenation relation of mmcv NonLocal2d (`concatenation` mode),
//   y_i = sum_j f_ij g_j,   f_ij = ReLU(w . [theta_i; phi_j]) / N'      (i < N queries, j < N' keys),
// where w in R^{2m} is concat_project (Conv2d(2m, 1, 1, bias=False)) and receives a gradient.
//
// The score splits as w . [theta_i; phi_j] = a_i + b_j with a_i = w_theta . theta_i and b_j = w_phi . phi_j,
// so the keys active for query i ({j : a_i + b_j > 0}) are a suffix of the keys sorted by b. The host
// evaluates y and every gradient by sorts, suffix sums and binary searches in O((N + N')(m + c) +
// N log N + N' log N') per image, exactly (no N x N' work or memory); the GPU runs the pairs in tiles
// without storing them. See docs/ops/concat_relation.md for the derivation.
#pragma once
#include <cstdint>

#include "kdloss/backend/dispatch_additive_relu.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/additive_relu.hpp"
#include "kdloss/ops/relation_operands.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

struct ConcatRelationOptions {
  /// f = ReLU(score) / N' (true: mmcv NonLocal2d's concatenation mode); false: f = ReLU(score).
  /// With N' = 0, y = 0 either way.
  bool divide_by_keys = true;
  GradAccumulate input_grads{};  // grad_theta, grad_phi, grad_g: grad = beta * grad + dL/d(input)
  GradAccumulate param_grads{};  // grad_weight: grad = beta * grad + dL/dw (1: accumulate, as autograd does)
};

/// Arguments of ops::concat_relation. theta: [B, N, m]; phi: [B, N', m]; g: [B, N', c]; weight: [2m], or
/// mmcv's concat_project.conv.weight as it is, [1, 2m, 1, 1] (the first m entries multiply theta, the
/// last m phi); y: [B, N, c] (forward output); grad_y: like y (backward input); grad_theta, grad_phi,
/// grad_g, grad_weight: like their inputs (backward outputs, each optional). Any strides; outputs unique
/// and disjoint from every other argument.
///
///   // mmcv NonLocal2d(mode='concatenation'): theta [2, HW, 32], phi and g pooled by 2
///   kdloss::ops::ConcatRelationArgs<float> r;
///   r.theta = kdloss::ops::relation_operand(kdloss::host_view<const float>(t, {2, 32, 16, 24}));
///   r.phi = kdloss::ops::relation_operand(kdloss::host_view<const float>(p, {2, 32, 8, 12}));
///   r.g = kdloss::ops::relation_operand(kdloss::host_view<const float>(q, {2, 32, 8, 12}));
///   r.weight = kdloss::host_view<const float>(w, {1, 64, 1, 1});    // concat_project.conv.weight
///   r.y = kdloss::ops::relation_operand(kdloss::host_view(out, {2, 32, 16, 24}));
template <class T>
struct ConcatRelationArgs {
  View<const T> theta{};
  View<const T> phi{};
  View<const T> g{};
  View<const T> weight{};
  View<T> y{};
  View<const T> grad_y{};
  View<T> grad_theta{};
  View<T> grad_phi{};
  View<T> grad_g{};
  View<T> grad_weight{};
  ConcatRelationOptions options{};
};

namespace detail {

inline constexpr EntryNames kConcatRelationNames{"kdloss::ops::concat_relation",
                                                 "kdloss::ops::concat_relation_backward",
                                                 "kdloss::ops::concat_relation_forward_backward"};

/// The projection's length and element stride ([2m] or [1, 2m, 1, 1]).
template <class T>
std::int64_t weight_stride(const View<T>& w) {
  return w.rank() == 1 ? w.strides[0] : w.strides[1];
}
template <class T>
bool weight_shape_ok(const View<T>& w, std::int64_t m) {
  return (w.rank() == 1 && w.shape[0] == 2 * m) || (w.rank() == 4 && w.shape == Dims{1, 2 * m, 1, 1});
}

template <class T>
expr::AdditiveReluPass<T> concat_pass(const ConcatRelationArgs<T>& a, Mode mode) {
  expr::AdditiveReluPass<T> P;
  P.batch = a.theta.shape[0];
  P.n = a.theta.shape[1];
  P.n2 = a.phi.shape[1];
  P.m = a.theta.shape[2];
  P.c = a.g.shape[2];
  P.p = relation_matrix(a.theta);
  P.q = relation_matrix(a.phi);
  P.x = relation_matrix(a.g);
  P.w = a.weight.data;
  P.w_stride = weight_stride(a.weight);
  P.scale = P.n2 == 0 ? 0.0 : (a.options.divide_by_keys ? 1.0 / static_cast<double>(P.n2) : 1.0);
  if (writes_value(mode)) P.y = relation_matrix(a.y);
  if (writes_gradients(mode)) {
    P.dy = relation_matrix(a.grad_y);
    P.dp = relation_matrix(a.grad_theta);
    P.dq = relation_matrix(a.grad_phi);
    P.dx = relation_matrix(a.grad_g);
    if (present(a.grad_weight)) {
      P.dw = a.grad_weight.data;
      P.dw_stride = weight_stride(a.grad_weight);
    }
  }
  P.beta_in = a.options.input_grads.beta;
  P.beta_param = a.options.param_grads.beta;
  return P;
}

}  // namespace detail

/// Throws kdloss::Error naming the argument and the shapes when `mode` cannot run; writes nothing.
///
///   kdloss::ops::concat_relation_check(r, kdloss::Mode::forward);   // r: ConcatRelationArgs's example
template <class T>
void concat_relation_check(const ConcatRelationArgs<T>& a, Mode mode) {
  const kdloss::detail::Checker ck{detail::kConcatRelationNames(mode)};
  using kdloss::detail::require;
  const auto d = detail::check_relation_operands(ck, a, mode);
  require(present(a.weight), ck.fn, ": argument 'weight' is absent");
  ck.not_null(a.weight, "weight");
  ck.device(a.weight, "weight", a.theta.device);
  require(detail::weight_shape_ok(a.weight, d.embed), ck.fn, ": argument 'weight' has shape ", a.weight.shape.str(),
          " but 'theta' ", a.theta.shape.str(), " asks for [", 2 * d.embed, "] or [1, ", 2 * d.embed, ", 1, 1]");
  const auto not_weight = [&](const auto& out, const char* name) {
    if (present(out)) ck.disjoint(out, name, a.weight, "weight");
  };
  if (writes_value(mode)) not_weight(a.y, "y");
  if (writes_gradients(mode)) {
    not_weight(a.grad_theta, "grad_theta");
    not_weight(a.grad_phi, "grad_phi");
    not_weight(a.grad_g, "grad_g");
    if (present(a.grad_weight)) {
      ck.not_null(a.grad_weight, "grad_weight");
      ck.shape(a.grad_weight, "grad_weight", a.weight.shape);
      ck.device(a.grad_weight, "grad_weight", a.theta.device);
      ck.unique(a.grad_weight, "grad_weight");
      not_weight(a.grad_weight, "grad_weight");
      ck.disjoint(a.grad_weight, "grad_weight", a.theta, "theta");
      ck.disjoint(a.grad_weight, "grad_weight", a.phi, "phi");
      ck.disjoint(a.grad_weight, "grad_weight", a.g, "g");
      ck.disjoint(a.grad_weight, "grad_weight", a.grad_y, "grad_y");
      if (writes_value(mode)) ck.disjoint(a.grad_weight, "grad_weight", a.y, "y");
      if (present(a.grad_theta)) ck.disjoint(a.grad_weight, "grad_weight", a.grad_theta, "grad_theta");
      if (present(a.grad_phi)) ck.disjoint(a.grad_weight, "grad_weight", a.grad_phi, "grad_phi");
      if (present(a.grad_g)) ck.disjoint(a.grad_weight, "grad_weight", a.grad_g, "grad_g");
    }
  }
  kdloss::detail::require_backend<T>(ck.fn, a.theta.device);
}

/// Scratch bytes of concat_relation(args, mode) for every Mode. Host: one image's scores, sort orders
/// and suffix sums in double, about 16 (N + N') (c + 2) bytes for a backward; GPU: the scores and their
/// gradients, 2 B (N + N') accumulation-type elements.
///
///   std::size_t bytes = kdloss::ops::concat_relation_workspace_bytes(r);
template <class T>
std::size_t concat_relation_workspace_bytes(const ConcatRelationArgs<T>& args) {
  const bool fwd = present(args.y), bwd = present(args.grad_y);
  const Mode mode = fwd && bwd ? Mode::forward_backward : (bwd ? Mode::backward : Mode::forward);
  concat_relation_check(args, mode);
  return kdloss::detail::additive_relu_bytes(args.theta.device, detail::concat_pass(args, mode));
}

/// forward: a_i = w_theta . theta_i, b_j = w_phi . phi_j, y_i = s sum_j ReLU(a_i + b_j) g_j with s = 1/N'.
/// backward (reads grad_y; recomputes the scores, no reserve), with d_ij = [a_i + b_j > 0] s grad_y_i . g_j:
/// grad_theta_i = (sum_j d_ij) w_theta, grad_phi_j = (sum_i d_ij) w_phi, grad_g_j = s sum_i ReLU(a_i + b_j)
/// grad_y_i (options.input_grads.beta), grad_weight = [sum_i (sum_j d_ij) theta_i; sum_j (sum_i d_ij) phi_j]
/// summed over the batch (options.param_grads.beta). A score of exactly 0 is inactive and gets no gradient
/// (torch's ReLU and threshold_backward); NaN and infinities propagate as in torch's dense evaluation.
/// The bits do not depend on the thread count.
///
///   kdloss::ops::concat_relation(r, kdloss::Mode::forward);          // r: ConcatRelationArgs's example
///   r.grad_y = kdloss::ops::relation_operand(kdloss::host_view<const float>(grad_out, {2, 32, 16, 24}));
///   r.grad_weight = kdloss::host_view(grad_w, {1, 64, 1, 1});
///   r.options.param_grads.beta = 1.0;                                // accumulate, as autograd does
///   kdloss::ops::concat_relation(r, kdloss::Mode::backward);
template <class T>
void concat_relation(const ConcatRelationArgs<T>& args, Mode mode, const Exec& exec = {}) {
  const char* fn = detail::kConcatRelationNames(mode);
  concat_relation_check(args, mode);
  const auto P = detail::concat_pass(args, mode);
  const std::size_t need = kdloss::detail::additive_relu_bytes(args.theta.device, P);
  kdloss::detail::HostScratch host;
  void* ws = kdloss::detail::resolve_workspace(fn, args.theta.device, exec.workspace, need, host);
  kdloss::detail::additive_relu(args.theta.device, exec.stream, P, ws);
}

/// Thin wrapper: y = ReLU(w . [theta; phi]) g / N'.
///
///   kdloss::ops::concat_relation(r.theta, r.phi, r.g, r.weight, r.y);
template <class T>
void concat_relation(const View<const T>& theta, const View<const T>& phi, const View<const T>& g,
                     const View<const T>& weight, const View<T>& y, const ConcatRelationOptions& options = {},
                     const Exec& exec = {}) {
  ConcatRelationArgs<T> a;
  a.theta = theta;
  a.phi = phi;
  a.g = g;
  a.weight = weight;
  a.y = y;
  a.options = options;
  concat_relation(a, Mode::forward, exec);
}

/// Thin wrapper: the gradients from grad_y, each of grad_theta, grad_phi, grad_g, grad_weight optional.
/// forward_backward: set args.y as well and call concat_relation(args, Mode::forward_backward).
///
///   kdloss::ops::concat_relation_backward(r.theta, r.phi, r.g, r.weight, r.grad_y, r.grad_theta, r.grad_phi,
///                                         r.grad_g, r.grad_weight);
template <class T>
void concat_relation_backward(const View<const T>& theta, const View<const T>& phi, const View<const T>& g,
                              const View<const T>& weight, const View<const T>& grad_y, const View<T>& grad_theta,
                              const View<T>& grad_phi, const View<T>& grad_g, const View<T>& grad_weight,
                              const ConcatRelationOptions& options = {}, const Exec& exec = {}) {
  ConcatRelationArgs<T> a;
  a.theta = theta;
  a.phi = phi;
  a.g = g;
  a.weight = weight;
  a.grad_y = grad_y;
  a.grad_theta = grad_theta;
  a.grad_phi = grad_phi;
  a.grad_g = grad_g;
  a.grad_weight = grad_weight;
  a.options = options;
  concat_relation(a, Mode::backward, exec);
}

}  // namespace ops
} }  // namespace kdloss
