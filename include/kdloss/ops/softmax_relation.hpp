// kdloss/ops/softmax_relation.hpp: the softmax relation of a non-local block and of the seed pixel
// relation, y_i = sum_j softmax_j(scale * theta_i . phi_j) g_j, forward and backward, computed in tiles
// with an online softmax (the flash-attention scheme): the B x N x N' matrix is never stored, forward
// keeps one log-sum-exp per query row. See docs/ops/softmax_relation.md.
//
// mmcv's NonLocal2d softmax modes: embedded_gaussian passes theta = θ(x), phi = φ(x) (optionally pooled)
// and scale = 1/sqrt(m) with use_scale; gaussian passes theta = x, phi = x (or its pooled map), scale 1.
// The seed pixel relation G(F) = softmax(F F^T / sqrt(C)) F passes theta = phi = g = F, scale 1/sqrt(C).
//
// Entry point (core/entry.hpp): SoftmaxRelationArgs, softmax_relation_check, softmax_relation_workspace_bytes,
// softmax_relation_reserve_bytes, softmax_relation(args, mode, exec), and the wrappers softmax_relation(...),
// softmax_relation_backward(...), softmax_relation_forward_backward(...).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/backend/dispatch_attention.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/attention.hpp"
#include "kdloss/ops/relation_operands.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

/// Options of ops::softmax_relation.
struct SoftmaxRelationOptions {
  /// Multiplies every score theta_i . phi_j before the softmax (finite): 1/sqrt(m) for mmcv's
  /// use_scale and for the seed relation (m = C), 1 for mmcv's gaussian mode.
  double scale = 1.0;
};

/// The arguments of one ops::softmax_relation call, computing for every batch b
/// y[b, i, :] = sum_j softmax_j(scale * theta[b, i, :] . phi[b, j, :]) g[b, j, :].
/// theta [B, N, m], phi [B, N', m], g [B, N', c], y [B, N, c] (B >= 0; N, N', m, c >= 1). Any strides,
/// so a channels-first map [B, C, H, W] is passed as [B, H*W, C] without a copy (`.with()` or a
/// permuted view); inputs may share memory (theta = phi = x). Outputs must be unique and must not overlap
/// any other argument. Leave a view `{}` when the mode does not use it.
///
///   std::vector<float> f(2 * 12 * 8, 0.1f), y(2 * 12 * 8);
///   kdloss::ops::SoftmaxRelationArgs<float> args;
///   args.theta = args.phi = args.g = kdloss::host_view<const float>(f.data(), {2, 12, 8});
///   args.y = kdloss::host_view(y.data(), {2, 12, 8});
///   args.options.scale = 1.0 / std::sqrt(8.0);
///   kdloss::ops::softmax_relation(args, kdloss::Mode::forward);
/// Fields: theta, phi, g (inputs of every mode); y (written by forward and forward_backward; read by
/// backward, optional there); grad_y (dL/dy: backward, forward_backward); grad_theta, grad_phi, grad_g
/// (written by backward and forward_backward when present; at least one); reserve (the log-sum-exp of every
/// query row, softmax_relation_reserve_bytes: filled by forward when present, read by backward); options.
template <class T>
struct SoftmaxRelationArgs {
  View<const T> theta{};
  View<const T> phi{};
  View<const T> g{};
  View<T> y{};
  View<const T> grad_y{};
  View<T> grad_theta{};
  View<T> grad_phi{};
  View<T> grad_g{};
  Reserve reserve{};
  SoftmaxRelationOptions options{};
};

namespace detail {

inline constexpr const char* kSoftmaxRelationNames[3] = {"kdloss::ops::softmax_relation",
                                                         "kdloss::ops::softmax_relation_backward",
                                                         "kdloss::ops::softmax_relation_forward_backward"};

/// The softmax relation's operand rules: no empty extents, y read by backward when present, a gradient wanted.
inline constexpr RelationRules kSoftmaxRelationRules{true, true, true};

template <class T>
RelationDims softmax_relation_inputs(const kdloss::detail::Checker& ck, const SoftmaxRelationArgs<T>& a) {
  const RelationDims d = check_relation_inputs(ck, a, kSoftmaxRelationRules);
  // The host packs about seven operands of B x N x m elements (rows rounded up to a panel) once per call: views
  // described beyond any memory must be an error here, not an int64 overflow in the workspace size.
  const double rows = static_cast<double>(std::max(d.queries, d.keys)) + 96.0;
  const double width = static_cast<double>(std::max(d.embed, d.values));
  // (per batch: a batch of 0 describes no element, but the per-batch sizes are still computed)
  const double batches = static_cast<double>(std::max<std::int64_t>(d.batch, 1));
  kdloss::detail::require(batches * rows * width * 64.0 < 0x1p62, ck.fn, ": arguments 'theta' ",
                          a.theta.shape.str(), ", 'phi' ", a.phi.shape.str(), " and 'g' ", a.g.shape.str(),
                          " are too large: the bytes of their packed copies cannot be counted in 64 bits");
  return d;
}

/// Whether backward of `a` runs on recomputed state: y or the reserve was left out.
template <class T>
bool relation_recomputes(const SoftmaxRelationArgs<T>& a) {
  return absent(a.y) || a.reserve.data == nullptr;
}

/// The fields forward and backward descriptions share: extents, q = theta, k = phi, v = g, scale.
template <class E, class T>
E relation_expr(const SoftmaxRelationArgs<T>& a, const RelationDims& d) {
  E e;
  e.batch = d.batch;
  e.n_q = d.queries;
  e.n_k = d.keys;
  e.d = d.embed;
  e.dv = d.values;
  e.q = relation_matrix(a.theta);
  e.k = relation_matrix(a.phi);
  e.v = relation_matrix(a.g);
  e.scale = a.options.scale;
  return e;
}

template <class T>
expr::AttentionForward<T, acc_t<T>> relation_forward_expr(const SoftmaxRelationArgs<T>& a, const RelationDims& d,
                                                          expr::MatOperand<T> o, acc_t<T>* lse) {
  auto f = relation_expr<expr::AttentionForward<T, acc_t<T>>>(a, d);
  f.o = o;
  f.lse = lse;
  return f;
}

template <class T>
expr::AttentionBackward<T, acc_t<T>> relation_backward_expr(const SoftmaxRelationArgs<T>& a, const RelationDims& d,
                                                            expr::MatOperand<const T> o, const acc_t<T>* lse) {
  auto g = relation_expr<expr::AttentionBackward<T, acc_t<T>>>(a, d);
  g.o = o;
  g.grad_o = relation_matrix(a.grad_y);
  g.lse = lse;
  g.grad_q = relation_matrix(a.grad_theta);
  g.grad_k = relation_matrix(a.grad_phi);
  g.grad_v = relation_matrix(a.grad_g);
  return g;
}

/// The pieces of one call's workspace: the recomputed (or not kept) state, then the backend's scratch.
struct RelationPlan {
  bool lse_in_workspace = false, y_in_workspace = false;
  std::size_t scratch = 0;
};

/// Sizes the workspace pieces of `a` in `mode`.
template <class T>
RelationPlan relation_plan(const SoftmaxRelationArgs<T>& a, const RelationDims& d, Mode mode) {
  RelationPlan p;
  const Device dev = a.theta.device;
  const bool recompute = mode == Mode::backward && relation_recomputes(a);
  p.y_in_workspace = recompute;
  p.lse_in_workspace = recompute || (mode == Mode::forward_backward && a.reserve.data == nullptr);
  if (writes_value(mode) || recompute)
    p.scratch = kdloss::detail::attention_forward_bytes(dev, relation_forward_expr(a, d, {}, nullptr));
  if (writes_gradients(mode))
    p.scratch = std::max(p.scratch, kdloss::detail::attention_backward_bytes(dev, relation_backward_expr(a, d, {}, nullptr)));
  return p;
}

template <class T>
std::size_t relation_plan_bytes(const RelationPlan& p, const RelationDims& d) {
  using kdloss::detail::align_up;
  std::size_t bytes = align_up(p.scratch);
  if (p.lse_in_workspace) bytes += align_up(static_cast<std::size_t>(d.batch * d.queries) * sizeof(acc_t<T>));
  if (p.y_in_workspace) bytes += align_up(static_cast<std::size_t>(d.batch * d.queries * d.values) * sizeof(T));
  return bytes;
}

}  // namespace detail

/// Bytes of the reserve forward fills and backward reads: one log-sum-exp (acc_t<T>) per query row,
/// B * N values, rounded up to 256 (O(B N), never O(B N N')).
///
///   kdloss::ops::SoftmaxRelationArgs<float> args;   // its views filled in as in SoftmaxRelationArgs's example
///   std::size_t bytes = kdloss::ops::softmax_relation_reserve_bytes(args);   // 256 for 2 x 12 rows
template <class T>
std::size_t softmax_relation_reserve_bytes(const SoftmaxRelationArgs<T>& args) {
  const kdloss::detail::Checker ck{"kdloss::ops::softmax_relation_reserve_bytes"};
  const detail::RelationDims d = detail::softmax_relation_inputs(ck, args);
  return kdloss::detail::align_up(static_cast<std::size_t>(d.batch * d.queries) * sizeof(acc_t<T>));
}

/// Throws kdloss::Error naming the argument and the shapes when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::ops::SoftmaxRelationArgs<float> args;   // its views filled in as in SoftmaxRelationArgs's example
///   kdloss::ops::softmax_relation_check(args, kdloss::Mode::forward);
template <class T>
void softmax_relation_check(const SoftmaxRelationArgs<T>& args, Mode mode) {
  using kdloss::detail::require;
  const char* fn = detail::kSoftmaxRelationNames[mode_index(mode)];
  const kdloss::detail::Checker ck{fn};
  const detail::RelationDims d = detail::check_relation_operands(ck, args, mode, detail::kSoftmaxRelationRules);
  require(std::isfinite(args.options.scale), fn, ": argument 'options.scale' must be finite but is ",
          args.options.scale);
  if (args.reserve.data != nullptr) {
    const std::size_t need = kdloss::detail::align_up(static_cast<std::size_t>(d.batch * d.queries) * sizeof(acc_t<T>));
    require(args.reserve.bytes >= need, fn, ": argument 'reserve' has ", args.reserve.bytes,
            " bytes but this call needs ", need, " (softmax_relation_reserve_bytes)");
    require(reinterpret_cast<std::uintptr_t>(args.reserve.data) % kdloss::detail::kWorkspaceAlignment == 0, fn,
            ": argument 'reserve' must be aligned to ", kdloss::detail::kWorkspaceAlignment, " bytes");
  }
  kdloss::detail::require_backend<T>(fn, args.theta.device);
}

/// Workspace bytes of softmax_relation(args, mode) for every mode: the backend's tiles (host: per thread,
/// O(threads * tile), about 1 to 3 MB each for float; GPU: what the CUDA backend asks) plus, when backward
/// must recompute the state (y or the reserve left out) or forward_backward has no reserve, the
/// log-sum-exp (B N values) and a recomputed y (B N c values). Never O(B N N').
///
///   kdloss::ops::SoftmaxRelationArgs<float> args;   // its views filled in as in SoftmaxRelationArgs's example
///   std::size_t bytes = kdloss::ops::softmax_relation_workspace_bytes(args);
template <class T>
std::size_t softmax_relation_workspace_bytes(const SoftmaxRelationArgs<T>& args) {
  const kdloss::detail::Checker ck{"kdloss::ops::softmax_relation_workspace_bytes"};
  const detail::RelationDims d = detail::softmax_relation_inputs(ck, args);
  std::size_t bytes = 0;
  for (Mode mode : {Mode::forward, Mode::backward, Mode::forward_backward})
    bytes = std::max(bytes, detail::relation_plan_bytes<T>(detail::relation_plan(args, d, mode), d));
  return bytes;
}

/// Checks, then runs the relation in `mode`:
/// - forward: y, and the log-sum-exp into args.reserve when present;
/// - backward: the present gradients from grad_y, reading y and the reserve. When either was left out,
///   both are recomputed first by one forward pass into the workspace (2 of the 9 tile products of a
///   forward + backward, about +25% time, and B N (c + 1) values of workspace);
/// - forward_backward: y, then the gradients (the log-sum-exp goes to the reserve when present, else to
///   the workspace).
/// The bits do not depend on the thread count. NaN and inf propagate as torch's softmax does: a NaN
/// score makes its row of y NaN, a row of only -inf scores gives NaN, -inf scores get weight 0.
///
///   kdloss::ops::SoftmaxRelationArgs<float> args;   // its views filled in as in SoftmaxRelationArgs's example
///   std::vector<float> gy(2 * 12 * 8, 1.0f), gf(2 * 12 * 8);
///   args.grad_y = kdloss::host_view<const float>(gy.data(), {2, 12, 8});
///   args.grad_theta = kdloss::host_view(gf.data(), {2, 12, 8});
///   kdloss::ops::softmax_relation(args, kdloss::Mode::forward_backward);
template <class T>
void softmax_relation(const SoftmaxRelationArgs<T>& args, Mode mode, const Exec& exec = {}) {
  softmax_relation_check(args, mode);
  const char* fn = detail::kSoftmaxRelationNames[mode_index(mode)];
  const detail::RelationDims d = detail::softmax_relation_inputs(kdloss::detail::Checker{fn}, args);
  if (d.batch == 0) return;
  using Acc = acc_t<T>;
  const Device dev = args.theta.device;
  const detail::RelationPlan plan = detail::relation_plan(args, d, mode);
  kdloss::detail::HostScratch host;
  void* ws = kdloss::detail::resolve_workspace(fn, dev, exec.workspace, detail::relation_plan_bytes<T>(plan, d), host);
  kdloss::detail::Carver carver(ws);
  Acc* lse_ws = plan.lse_in_workspace ? carver.take<Acc>(static_cast<std::size_t>(d.batch * d.queries)) : nullptr;
  T* y_ws = plan.y_in_workspace ? carver.take<T>(static_cast<std::size_t>(d.batch * d.queries * d.values)) : nullptr;
  void* scratch = carver.take<char>(plan.scratch);
  const std::size_t scratch_bytes = exec.workspace.data ? exec.workspace.bytes - carver.bytes() + plan.scratch
                                                        : plan.scratch;
  Acc* const kept = static_cast<Acc*>(args.reserve.data);
  Acc* const lse = plan.lse_in_workspace ? lse_ws : kept;
  if (writes_value(mode))
    kdloss::detail::attention_forward(dev, exec, detail::relation_forward_expr(args, d, detail::relation_matrix(args.y), lse),
                                      scratch, scratch_bytes);
  if (!writes_gradients(mode)) return;
  expr::MatOperand<const T> o;
  if (plan.y_in_workspace) {
    const expr::MatOperand<T> yw{y_ws, d.queries * d.values, d.values, 1};
    kdloss::detail::attention_forward(dev, exec, detail::relation_forward_expr(args, d, yw, lse), scratch, scratch_bytes);
    o = {y_ws, d.queries * d.values, d.values, 1};
  } else {
    o = detail::relation_matrix(View<const T>(args.y));
  }
  kdloss::detail::attention_backward(dev, exec, detail::relation_backward_expr(args, d, o, lse), scratch, scratch_bytes);
}

/// y = softmax(scale * theta phi^T) g per batch; the log-sum-exp goes to `reserve` when it is given.
///
///   // the seed pixel relation G(F) of one P4 map, F as [1, H*W, C] read from NCHW without a copy
///   const std::int64_t C = 256, H = 50, W = 84;
///   std::vector<float> feat(C * H * W, 0.01f), rel(C * H * W);
///   auto F = kdloss::host_view<const float>(feat.data(), {1, H * W, C}, {C * H * W, 1, H * W});
///   kdloss::ops::softmax_relation(F, F, F, kdloss::host_view(rel.data(), {1, H * W, C}),
///                                 {1.0 / std::sqrt(double(C))});
template <class Q, class K, class V, class O>
void softmax_relation(const View<Q>& theta, const View<K>& phi, const View<V>& g, const View<O>& y,
                      const SoftmaxRelationOptions& options = {}, Reserve reserve = {}, const Exec& exec = {}) {
  SoftmaxRelationArgs<O> a;
  a.theta = theta;
  a.phi = phi;
  a.g = g;
  a.y = y;
  a.reserve = reserve;
  a.options = options;
  softmax_relation(a, Mode::forward, exec);
}

/// The gradients (each optional: pass `{}`) from grad_y, reading forward's y and reserve (either may be
/// `{}`: both are then recomputed, see softmax_relation(args, mode)).
///
///   std::vector<float> f(12 * 8, 0.1f), y(12 * 8), gy(12 * 8, 1.0f), gf(12 * 8);
///   auto F = kdloss::host_view<const float>(f.data(), {1, 12, 8});
///   kdloss::ops::softmax_relation_backward(F, F, F, kdloss::host_view(y.data(), {1, 12, 8}),
///                                          kdloss::host_view<const float>(gy.data(), {1, 12, 8}),
///                                          kdloss::View<float>{}, kdloss::View<float>{},
///                                          kdloss::host_view(gf.data(), {1, 12, 8}));   // y, lse recomputed
template <class Q, class K, class V, class Y, class G, class O>
void softmax_relation_backward(const View<Q>& theta, const View<K>& phi, const View<V>& g, const View<Y>& y,
                               const View<G>& grad_y, const View<O>& grad_theta, const View<O>& grad_phi,
                               const View<O>& grad_g, const SoftmaxRelationOptions& options = {},
                               Reserve reserve = {}, const Exec& exec = {}) {
  SoftmaxRelationArgs<O> a;
  a.theta = theta;
  a.phi = phi;
  a.g = g;
  a.y = View<O>(const_cast<O*>(y.data), y.shape, y.strides, y.device);  // read only in backward
  if (absent(y)) a.y = {};
  a.grad_y = grad_y;
  a.grad_theta = grad_theta;
  a.grad_phi = grad_phi;
  a.grad_g = grad_g;
  a.reserve = reserve;
  a.options = options;
  softmax_relation(a, Mode::backward, exec);
}

/// y and the gradients (each optional) in one call; the log-sum-exp lives in the workspace.
///
///   std::vector<float> f(12 * 8, 0.1f), y(12 * 8), gy(12 * 8, 1.0f), gt(12 * 8), gp(12 * 8), gg(12 * 8);
///   auto F = kdloss::host_view<const float>(f.data(), {1, 12, 8});
///   kdloss::ops::softmax_relation_forward_backward(F, F, F, kdloss::host_view<const float>(gy.data(), {1, 12, 8}),
///                                                  kdloss::host_view(y.data(), {1, 12, 8}),
///                                                  kdloss::host_view(gt.data(), {1, 12, 8}),
///                                                  kdloss::host_view(gp.data(), {1, 12, 8}),
///                                                  kdloss::host_view(gg.data(), {1, 12, 8}));
template <class Q, class K, class V, class G, class O>
void softmax_relation_forward_backward(const View<Q>& theta, const View<K>& phi, const View<V>& g,
                                       const View<G>& grad_y, const View<O>& y, const View<O>& grad_theta,
                                       const View<O>& grad_phi, const View<O>& grad_g,
                                       const SoftmaxRelationOptions& options = {}, const Exec& exec = {}) {
  SoftmaxRelationArgs<O> a;
  a.theta = theta;
  a.phi = phi;
  a.g = g;
  a.y = y;
  a.grad_y = grad_y;
  a.grad_theta = grad_theta;
  a.grad_phi = grad_phi;
  a.grad_g = grad_g;
  a.options = options;
  softmax_relation(a, Mode::forward_backward, exec);
}

}  // namespace ops
} }  // namespace kdloss
