// kdloss/ops/dot_relation.hpp: the dot-product relation of a non-local block (mmcv NonLocal2d's
// `dot_product` mode, the official FBKD NonLocalBlockND),
//   y_i = sum_j f(theta_i, phi_j) g_j,   f = theta_i . phi_j / N'   (i < N queries, j < N' keys),
// computed through the exact reassociation y = theta (phi^T g) / N': the [N, N'] relation matrix is never
// formed and the cost is O((N + N') m c) instead of O(N N' (m + c)). See docs/ops/dot_relation.md.
//
// Operands are [B, N, m] theta, [B, N', m] phi, [B, N', c] g and [B, N, c] y with any strides; a
// channels-first map [B, C, H, W] is read as [B, H*W, C] without a copy (ops::relation_operand).
#pragma once
#include <algorithm>
#include <cstdint>

#include "kdloss/backend/dispatch_gemm.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/ops/matmul.hpp"
#include "kdloss/ops/relation_operands.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

struct DotRelationOptions {
  /// y = theta phi^T g / N' (true: mmcv NonLocal2d dot_product and the official FBKD NonLocalBlockND both
  /// divide by the number of keys N'); false: y = theta phi^T g. With N' = 0, y = 0 either way (as torch's
  /// empty product gives).
  bool divide_by_keys = true;
  /// grad_theta, grad_phi and grad_g: grad = beta * grad + dL/d(input) (0 overwrites unread; 1 adds, for
  /// a block whose theta and phi come from one tensor, or a caller summing paths itself).
  GradAccumulate input_grads{};
};

/// Arguments of ops::dot_relation. theta: [B, N, m]; phi: [B, N', m]; g: [B, N', c]; y: [B, N, c]
/// (forward output); grad_y: like y (backward input); grad_theta, grad_phi, grad_g: like their inputs
/// (backward outputs, each optional). Any strides; outputs unique and disjoint from every other argument.
///
///   // non-local block, dot-product mode: theta [2, HW, 64], phi and g pooled to [2, HW/64, 64]
///   kdloss::ops::DotRelationArgs<float> r;
///   r.theta = kdloss::ops::relation_operand(kdloss::host_view<const float>(t, {2, 64, 16, 24}));
///   r.phi = kdloss::ops::relation_operand(kdloss::host_view<const float>(p, {2, 64, 2, 3}));
///   r.g = kdloss::ops::relation_operand(kdloss::host_view<const float>(q, {2, 64, 2, 3}));
///   r.y = kdloss::ops::relation_operand(kdloss::host_view(out, {2, 64, 16, 24}));
template <class T>
struct DotRelationArgs {
  View<const T> theta{};
  View<const T> phi{};
  View<const T> g{};
  View<T> y{};
  View<const T> grad_y{};
  View<T> grad_theta{};
  View<T> grad_phi{};
  View<T> grad_g{};
  DotRelationOptions options{};
};

namespace detail {

template <class T>
double dot_relation_scale(const DotRelationArgs<T>& a) {
  const std::int64_t keys = a.phi.shape[1];
  if (keys == 0) return 0.0;
  return a.options.divide_by_keys ? 1.0 / static_cast<double>(keys) : 1.0;
}

/// The per-image [m, c] matrices M = phi^T g and dM = s theta^T grad_y (scratch, contiguous).
template <class T>
View<T> small_matrix(T* p, std::int64_t batch, std::int64_t m, std::int64_t c, Device device) {
  return View<T>(p, Dims{batch, m, c}, Dims{m * c, c, 1}, device);
}

/// Runs `f(gemm)` for every product `mode` needs, in order: M, y; then dM, grad_theta, grad_phi, grad_g.
template <class T, class F>
void for_each_dot_product(const DotRelationArgs<T>& a, Mode mode, T* M, T* dM, F&& f) {
  const std::int64_t B = a.theta.shape[0], m = a.theta.shape[2], c = a.g.shape[2];
  const double s = dot_relation_scale(a), ib = a.options.input_grads.beta;
  const View<T> Mv = small_matrix(M, B, m, c, a.theta.device), dMv = small_matrix(dM, B, m, c, a.theta.device);
  const View<const T> Mc = Mv, dMc = dMv;
  f(make_gemm(MatmulArgs<T>{a.phi, a.g, Mv, {true, false, 1.0, 0.0}}));  // M = phi^T g
  if (writes_value(mode)) f(make_gemm(MatmulArgs<T>{a.theta, Mc, a.y, {false, false, s, 0.0}}));  // y = s theta M
  if (!writes_gradients(mode)) return;
  if (present(a.grad_theta))  // grad_theta = s grad_y M^T
    f(make_gemm(MatmulArgs<T>{a.grad_y, Mc, a.grad_theta, {false, true, s, ib}}));
  if (absent(a.grad_phi) && absent(a.grad_g)) return;
  f(make_gemm(MatmulArgs<T>{a.theta, a.grad_y, dMv, {true, false, s, 0.0}}));  // dM = s theta^T grad_y
  if (present(a.grad_phi)) f(make_gemm(MatmulArgs<T>{a.g, dMc, a.grad_phi, {false, true, 1.0, ib}}));  // g dM^T
  if (present(a.grad_g)) f(make_gemm(MatmulArgs<T>{a.phi, dMc, a.grad_g, {false, false, 1.0, ib}}));   // phi dM
}

struct DotRelationScratch {
  std::size_t gemm = 0, total = 0;
  bool dM = false;
};
template <class T>
DotRelationScratch dot_relation_scratch(const DotRelationArgs<T>& a, Mode mode) {
  DotRelationScratch s;
  const std::int64_t B = a.theta.shape[0], m = a.theta.shape[2], c = a.g.shape[2];
  // Sizes only: the descriptors' pointers are never followed here.
  for_each_dot_product(a, mode, static_cast<T*>(nullptr), static_cast<T*>(nullptr),
                       [&](const auto& g) { s.gemm = std::max(s.gemm, kdloss::detail::gemm_bytes(a.theta.device, g)); });
  s.dM = writes_gradients(mode) && (present(a.grad_phi) || present(a.grad_g));
  kdloss::detail::Carver counter;
  counter.take<T>(static_cast<std::size_t>(B * m * c));
  if (s.dM) counter.take<T>(static_cast<std::size_t>(B * m * c));
  counter.take<unsigned char>(s.gemm);
  s.total = counter.bytes();
  return s;
}

inline constexpr EntryNames kDotRelationNames{"kdloss::ops::dot_relation", "kdloss::ops::dot_relation_backward",
                                              "kdloss::ops::dot_relation_forward_backward"};

}  // namespace detail

/// Throws kdloss::Error naming the argument and the shapes when `mode` cannot run; writes nothing.
///
///   kdloss::ops::dot_relation_check(r, kdloss::Mode::forward);   // r: DotRelationArgs's example
template <class T>
void dot_relation_check(const DotRelationArgs<T>& a, Mode mode) {
  const kdloss::detail::Checker ck{detail::kDotRelationNames(mode)};
  detail::check_relation_operands(ck, a, mode);
  kdloss::detail::require_backend<T>(ck.fn, a.theta.device);
}

/// Scratch bytes of dot_relation(args, mode) for every Mode: the per-image [m, c] matrices phi^T g and
/// theta^T grad_y, and the largest product's scratch (absent views count as the modes that skip them).
///
///   std::size_t bytes = kdloss::ops::dot_relation_workspace_bytes(r);
template <class T>
std::size_t dot_relation_workspace_bytes(const DotRelationArgs<T>& args) {
  const bool fwd = present(args.y), bwd = present(args.grad_y);
  const Mode mode = fwd && bwd ? Mode::forward_backward : (bwd ? Mode::backward : Mode::forward);
  dot_relation_check(args, mode);
  return detail::dot_relation_scratch(args, mode).total;
}

/// forward: M = phi^T g per image ([m, c]), y = s theta M with s = 1/N' (options.divide_by_keys).
/// backward (reads grad_y; recomputes M, no reserve): grad_theta = s grad_y M^T; dM = s theta^T grad_y;
/// grad_phi = g dM^T; grad_g = phi dM; each written only when present (options.input_grads.beta).
/// forward_backward: both. All products run through ops::matmul's backends (host kernels, cuBLAS on the
/// GPU with Exec::blas), deterministic; half/bfloat16 on the GPU keep M and dM in the element type.
///
///   kdloss::ops::dot_relation(r, kdloss::Mode::forward);             // r: DotRelationArgs's example
///   r.grad_y = kdloss::ops::relation_operand(kdloss::host_view<const float>(grad_out, {2, 64, 16, 24}));
///   r.grad_theta = kdloss::ops::relation_operand(kdloss::host_view(gt, {2, 64, 16, 24}));
///   kdloss::ops::dot_relation(r, kdloss::Mode::backward);
template <class T>
void dot_relation(const DotRelationArgs<T>& args, Mode mode, const Exec& exec = {}) {
  const char* fn = detail::kDotRelationNames(mode);
  detail::require_blas(fn, args.theta.device, exec);
  dot_relation_check(args, mode);
  const auto need = detail::dot_relation_scratch(args, mode);
  kdloss::detail::HostScratch host;
  void* ws = kdloss::detail::resolve_workspace(fn, args.theta.device, exec.workspace, need.total, host);
  kdloss::detail::Carver carver(ws);
  const std::size_t mc = static_cast<std::size_t>(args.theta.shape[0] * args.theta.shape[2] * args.g.shape[2]);
  T* M = carver.take<T>(mc);
  T* dM = need.dM ? carver.take<T>(mc) : nullptr;
  void* scratch = carver.take<unsigned char>(need.gemm);
  detail::for_each_dot_product(args, mode, M, dM,
                               [&](const auto& g) { kdloss::detail::gemm(args.theta.device, exec, g, scratch, need.gemm); });
}

namespace detail {
/// The wrappers' one call: the views given, the rest absent.
template <class T>
void dot_relation_call(Mode mode, const View<const T>& theta, const View<const T>& phi, const View<const T>& g,
                       const View<const T>& grad_y, const View<T>& y, const View<T>& grad_theta,
                       const View<T>& grad_phi, const View<T>& grad_g, const DotRelationOptions& options,
                       const Exec& exec) {
  DotRelationArgs<T> a;
  a.theta = theta;
  a.phi = phi;
  a.g = g;
  a.y = y;
  a.grad_y = grad_y;
  a.grad_theta = grad_theta;
  a.grad_phi = grad_phi;
  a.grad_g = grad_g;
  a.options = options;
  ops::dot_relation(a, mode, exec);
}
}  // namespace detail

/// Thin wrapper: y = theta phi^T g / N'.
///
///   kdloss::ops::dot_relation(r.theta, r.phi, r.g, r.y);
template <class T>
void dot_relation(const View<const T>& theta, const View<const T>& phi, const View<const T>& g, const View<T>& y,
                  const DotRelationOptions& options = {}, const Exec& exec = {}) {
  detail::dot_relation_call<T>(Mode::forward, theta, phi, g, {}, y, {}, {}, {}, options, exec);
}

/// Thin wrapper: the input gradients from grad_y (any of grad_theta, grad_phi, grad_g may be absent).
///
///   kdloss::ops::dot_relation_backward(r.theta, r.phi, r.g, r.grad_y, r.grad_theta, r.grad_phi, r.grad_g);
template <class T>
void dot_relation_backward(const View<const T>& theta, const View<const T>& phi, const View<const T>& g,
                           const View<const T>& grad_y, const View<T>& grad_theta, const View<T>& grad_phi,
                           const View<T>& grad_g, const DotRelationOptions& options = {}, const Exec& exec = {}) {
  detail::dot_relation_call<T>(Mode::backward, theta, phi, g, grad_y, {}, grad_theta, grad_phi, grad_g, options, exec);
}

/// Thin wrapper: y and the input gradients in one call (M = phi^T g computed once).
///
///   kdloss::ops::dot_relation_forward_backward(r.theta, r.phi, r.g, r.grad_y, r.y, r.grad_theta, r.grad_phi,
///                                              r.grad_g);
template <class T>
void dot_relation_forward_backward(const View<const T>& theta, const View<const T>& phi, const View<const T>& g,
                                   const View<const T>& grad_y, const View<T>& y, const View<T>& grad_theta,
                                   const View<T>& grad_phi, const View<T>& grad_g,
                                   const DotRelationOptions& options = {}, const Exec& exec = {}) {
  detail::dot_relation_call<T>(Mode::forward_backward, theta, phi, g, grad_y, y, grad_theta, grad_phi, grad_g, options,
                               exec);
}

}  // namespace ops
} }  // namespace kdloss
