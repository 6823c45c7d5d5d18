// kdloss/losses/fbkd/non_local_loss.hpp: FBKD's non-local distillation term of ONE pyramid level
// (L_NLD; the official code's `non_local_loss`, mmrazor's FBKDLoss with its Student/TeacherConnector):
//
//   L_NLD = w_n * || A - Z_T ||_F,   A = Conv1x1(Z_S) (the adaptation conv),  Z_S = NL_S(S),  Z_T = NL_T(T)
//
// NL_S and NL_T are two ops::non_local blocks with their own parameters. Gradients reach S, every
// parameter of NL_S, the adaptation conv, and every parameter of NL_T (the reference code trains the
// teacher's block through this term); T itself gets none. The norm's gradient follows ops/norm.hpp's
// exact-zero rule (0 where ||A - Z_T|| = 0); NaN and inf propagate as autograd propagates them.
//
// Composed from ops::non_local (twice), ops::linear and fbkd's norm steps (kernels.hpp); one workspace,
// no reserve: backward recomputes the forward (see non_local_loss_workspace_bytes for the layout).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>

#include "kdloss/config.hpp"
#include "kdloss/losses/fbkd/kernels.hpp"
#include "kdloss/losses/fbkd/masks.hpp"
#include "kdloss/ops/linear.hpp"
#include "kdloss/ops/non_local.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace fbkd {

/// Options of non_local_loss: the weight w_n, the settings of BOTH blocks (mode, pools, BN; the official
/// per-level settings are ops::non_local_fbkd_options(level)) and the accumulation of every parameter
/// gradient (the blocks' and the adaptation conv's; block.param_grads is not read).
struct NonLocalLossOptions {
  double weight = 1.0;
  ops::NonLocalOptions block{};
  GradAccumulate param_grads{};
};

/// Arguments of non_local_loss, one level. student S and teacher T: [B, C, H, W] (any strides where H and
/// W merge). student_block / teacher_block: the parameters of NL_S / NL_T, their gradient outputs (each
/// optional) and the BN batch statistics outputs (optional, written by forward and forward_backward; the
/// caller folds them into its running statistics): every member of ops::NonLocalArgs EXCEPT x, z, grad_z,
/// grad_x and reserve, which this loss fills (they must be left absent); their `options` are replaced by
/// options.block. adapt_weight [C, C] or [C, C, 1, 1], adapt_bias [C] (optional): the adaptation 1x1 conv
/// on Z_S. Outputs: out (one element: forward, forward_backward); from grad_out (one element: backward)
/// grad_student (like S, optional), grad_adapt_weight / grad_adapt_bias (optional, options.param_grads).
///
///   // one level of C = 4 channels, 8 x 8, a dot-product block with m = 2 pooled by 2 (both blocks share
///   // the buffers here only to keep the example short)
///   float l_nld = 0;
///   kdloss::fbkd::NonLocalLossArgs<float> nld;
///   nld.student = kdloss::host_view<const float>(s, {1, 4, 8, 8});
///   nld.teacher = kdloss::host_view<const float>(t, {1, 4, 8, 8});
///   for (auto* blk : {&nld.student_block, &nld.teacher_block}) {
///     blk->g_weight = kdloss::host_view<const float>(w, {2, 4});
///     blk->theta_weight = kdloss::host_view<const float>(p, {2, 4});
///     blk->phi_weight = kdloss::host_view<const float>(q, {2, 4});
///     blk->conv_out_weight = kdloss::host_view<const float>(k, {4, 2});
///   }
///   nld.adapt_weight = kdloss::host_view<const float>(a, {4, 4});
///   nld.out = kdloss::host_scalar(&l_nld);
///   nld.grad_student = kdloss::host_view(grad_s, {1, 4, 8, 8});
///   nld.options.weight = 7e-5;
///   nld.options.block = kdloss::ops::non_local_mmcv_options(kdloss::ops::NonLocalMode::dot_product);
template <class T>
struct NonLocalLossArgs {
  View<const T> student{}, teacher{};
  ops::NonLocalArgs<T> student_block{}, teacher_block{};
  View<const T> adapt_weight{}, adapt_bias{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_student{};
  View<T> grad_adapt_weight{}, grad_adapt_bias{};
  NonLocalLossOptions options{};
};

namespace detail {

inline constexpr EntryNames kNonLocalLossNames{"kdloss::fbkd::non_local_loss", "kdloss::fbkd::non_local_loss_backward",
                                               "kdloss::fbkd::non_local_loss_forward_backward"};

/// out = weight * slot[0] (one element; NaN and inf pass through, as w * ||.|| does in PyTorch).
struct ScaledSlot {
  const double* slot;
  double weight;
  KDLOSS_HOST_DEVICE double operator()() const { return weight * slot[0]; }
};

/// Every buffer of one call and the inner ops' arguments on them. Workspace layout, in order (each piece
/// 256-byte aligned): the norm slot (one double), the reduction scratch (GPU), Z_S, A, Z_T [B, C, H, W];
/// with gradients also dL/dA, dL/dZ_T, dL/dZ_S [B, C, H, W] and the two blocks' reserves
/// (ops::non_local_reserve_bytes); then the largest inner op's scratch.
template <class T>
struct NonLocalLossPlan {
  double* slot = nullptr;
  double* partials = nullptr;
  View<T> zs{}, adapted{}, zt{}, grad_adapted{}, grad_zt{}, grad_zs{};
  ops::NonLocalArgs<T> nl_s_fwd{}, nl_t_fwd{}, nl_s_bwd{}, nl_t_bwd{};
  ops::LinearArgs<T> adapt_fwd{}, adapt_bwd{};
  bool teacher_grads = false;
  void* scratch = nullptr;
  std::size_t scratch_bytes = 0, bytes = 0;
};

/// Does any gradient output of the block ask for a value?
template <class T>
bool wants_param_grads(const ops::NonLocalArgs<T>& b) {
  for (const View<T>* v : {&b.grad_g_weight, &b.grad_g_bias, &b.grad_theta_weight, &b.grad_theta_bias,
                           &b.grad_phi_weight, &b.grad_phi_bias, &b.grad_concat_project_weight,
                           &b.grad_conv_out_weight, &b.grad_conv_out_bias, &b.grad_bn_weight, &b.grad_bn_bias})
    if (present(*v)) return true;
  return false;
}

/// One inner op's size query, its error prefixed with the step (as ops::detail::named_step does). A
/// function taking the query, not a lambda: nvcc 13's front end crashes (internal error in
/// i_copy_expr_tree) on lambdas calling these queries inside non_local_loss_plan.
template <class A>
std::size_t named_bytes(const char* fn, const char* step, std::size_t (*query)(const A&), const A& args) {
  try {
    return query(args);
  } catch (const Error& e) {
    throw Error(std::string(fn) + ": in the block's " + step + ": " + e.what());
  }
}

/// The plan of `mode` on workspace `base`; a null base plans on stand-in addresses (checks and size
/// queries: nothing is dereferenced) and still reports the bytes.
template <class T>
NonLocalLossPlan<T> non_local_loss_plan(const char* fn, const NonLocalLossArgs<T>& a, Mode mode, void* base) {
  NonLocalLossPlan<T> p;
  const Device dev = a.teacher.device;
  const Dims shape = a.teacher.shape;
  const std::size_t n = static_cast<std::size_t>(shape.product());
  // Stand-ins far above ops::non_local's own (which sit at small multiples of 256): the blocks' planning
  // must not see our buffers overlap theirs.
  constexpr std::uintptr_t kStandIn = std::uintptr_t(1) << 40;
  Carver c(base ? base : reinterpret_cast<void*>(kStandIn));
  const auto map = [&](T* ptr) { return View<T>(ptr, shape, contiguous_strides(shape), dev); };
  p.slot = c.take<double>(1);
  p.partials = carve_partials(c, dev, shape.product());
  p.zs = map(c.take<T>(n));
  p.adapted = map(c.take<T>(n));
  p.zt = map(c.take<T>(n));
  const bool grads = writes_gradients(mode);
  p.teacher_grads = grads && wants_param_grads(a.teacher_block);

  ops::NonLocalOptions block = a.options.block;
  block.param_grads = a.options.param_grads;
  const auto block_fwd = [&](const ops::NonLocalArgs<T>& params, const View<const T>& x, const View<T>& z) {
    ops::NonLocalArgs<T> b = params;
    b.x = x;
    b.z = z;
    b.options = block;
    if (!writes_value(mode)) b.bn_batch_mean = b.bn_batch_var = View<T>{};  // backward: the caller's forward wrote them
    return b;
  };
  p.nl_s_fwd = block_fwd(a.student_block, a.student, p.zs);
  p.nl_t_fwd = block_fwd(a.teacher_block, a.teacher, p.zt);
  p.adapt_fwd.x = p.zs;
  p.adapt_fwd.weight = ops::detail::conv_matrix(a.adapt_weight);
  p.adapt_fwd.bias = a.adapt_bias;
  p.adapt_fwd.y = p.adapted;
  if (grads) {
    p.grad_adapted = map(c.take<T>(n));
    p.grad_zt = map(c.take<T>(n));
    p.grad_zs = map(c.take<T>(n));
    ops::NonLocalArgs<T>* kept[2] = {&p.nl_s_fwd, p.teacher_grads ? &p.nl_t_fwd : nullptr};
    const char* kept_names[2] = {"student block", "teacher block"};
    for (int i = 0; i < 2; ++i) {
      if (!kept[i]) continue;
      ops::NonLocalArgs<T> q = *kept[i];
      q.reserve = {};
      const std::size_t bytes = named_bytes(fn, kept_names[i], &ops::non_local_reserve_bytes<T>, q);
      kept[i]->reserve = {c.take<unsigned char>(bytes), bytes};
    }
    p.nl_s_bwd = p.nl_s_fwd;
    p.nl_s_bwd.z = View<T>{};
    p.nl_s_bwd.bn_batch_mean = p.nl_s_bwd.bn_batch_var = View<T>{};
    p.nl_s_bwd.grad_z = p.grad_zs;
    p.nl_s_bwd.grad_x = a.grad_student;
    p.nl_t_bwd = p.nl_t_fwd;
    p.nl_t_bwd.z = View<T>{};
    p.nl_t_bwd.bn_batch_mean = p.nl_t_bwd.bn_batch_var = View<T>{};
    p.nl_t_bwd.grad_z = p.grad_zt;  // no grad_x: T gets no gradient
    p.adapt_bwd = p.adapt_fwd;
    p.adapt_bwd.y = View<T>{};
    p.adapt_bwd.grad_y = p.grad_adapted;
    p.adapt_bwd.grad_x = p.grad_zs;
    p.adapt_bwd.grad_weight = ops::detail::conv_matrix(a.grad_adapt_weight);
    p.adapt_bwd.grad_bias = a.grad_adapt_bias;
    p.adapt_bwd.options.param_grads = a.options.param_grads;
  }
  const std::size_t scratch =
      std::max({named_bytes(fn, "student block", &ops::non_local_workspace_bytes<T>, p.nl_s_fwd),
                named_bytes(fn, "teacher block", &ops::non_local_workspace_bytes<T>, p.nl_t_fwd),
                named_bytes(fn, "adaptation conv", &ops::linear_workspace_bytes<T>, p.adapt_fwd)});
  p.scratch_bytes = scratch;
  p.scratch = scratch ? c.take<unsigned char>(scratch) : nullptr;
  p.bytes = c.bytes();
  return p;
}

/// Every check of one level's L_NLD; `own_value`: also out (forward modes) and grad_out (backward), which
/// the standalone entry reads and writes (fbkd::total_loss checks its own). Throws; writes nothing.
template <class T>
void check_non_local_level(const char* fn, const NonLocalLossArgs<T>& args, Mode mode, bool own_value) {
  const ::kdloss::detail::Checker ck{fn};
  const View<const T>&s = args.student, &t = args.teacher;
  detail::check_feature_pair(ck, s, "student", t, "teacher");
  const Device device = t.device;
  for (const auto* b : {&args.student_block, &args.teacher_block}) {
    const char* name = b == &args.student_block ? "student_block" : "teacher_block";
    ::kdloss::detail::require(absent(b->x) && absent(b->z) && absent(b->grad_z) && absent(b->grad_x) &&
                                  b->reserve.data == nullptr,
                              fn, ": argument '", name,
                              "' sets x, z, grad_z, grad_x or reserve, which non_local_loss fills itself (leave them "
                              "absent; the features go to 'student' / 'teacher')");
  }
  detail::require_present(ck, args.adapt_weight, "adapt_weight", "L_NLD adapts the student block's output");
  const std::int64_t C = t.shape[1];
  const View<const T> w = ops::detail::conv_matrix(args.adapt_weight);
  ::kdloss::detail::require(w.shape == Dims{C, C}, fn, ": argument 'adapt_weight' has shape ", args.adapt_weight.shape.str(),
                            " but needs [", C, ", ", C, "] (or with trailing 1, 1): C from 'teacher' ", t.shape.str());
  if (own_value && writes_value(mode)) {
    detail::check_scalar_out(ck, args.out, "out", device);
    ck.disjoint(args.out, "out", s, "student");
    ck.disjoint(args.out, "out", t, "teacher");
  }
  if (own_value && mode == Mode::backward) detail::check_upstream(ck, args.grad_out, device);
  if (writes_gradients(mode) && present(args.grad_student)) {
    const View<T>& g = args.grad_student;
    ck.not_null(g, "grad_student");
    ck.shape(g, "grad_student", t.shape);
    ck.device(g, "grad_student", device);
    ck.unique(g, "grad_student");
    ck.disjoint(g, "grad_student", s, "student");
    ck.disjoint(g, "grad_student", t, "teacher");
    if (own_value && mode == Mode::forward_backward)
      ck.disjoint(g, "grad_student", args.out, "out");
    else if (own_value)
      ck.disjoint(g, "grad_student", args.grad_out, "grad_out");
  }
  const auto p = detail::non_local_loss_plan(fn, args, mode, nullptr);
  const auto step = [&](const char* label, auto&& f) { ops::detail::named_step(fn, label, f); };
  step("student block", [&] { ops::non_local_check(p.nl_s_fwd, Mode::forward); });
  step("teacher block", [&] { ops::non_local_check(p.nl_t_fwd, Mode::forward); });
  step("adaptation conv", [&] { ops::linear_check(p.adapt_fwd, Mode::forward); });
  if (writes_gradients(mode)) {
    step("adaptation conv", [&] { ops::linear_check(p.adapt_bwd, Mode::backward); });
    step("student block", [&] { ops::non_local_check(p.nl_s_bwd, Mode::backward); });
    if (p.teacher_grads) step("teacher block", [&] { ops::non_local_check(p.nl_t_bwd, Mode::backward); });
  }
}

/// Runs one checked level on its plan (workspace carved): the forward, the norm ||A - Z_T|| into *slot
/// (a double on the device), and with gradients the backward of `weight` * that norm times `upstream`.
template <class T>
void run_non_local_level(const NonLocalLossPlan<T>& p, Mode mode, Device device, const Exec& exec, double* slot,
                         double weight, const Upstream<T>& upstream) {
  const Exec inner{{p.scratch, p.scratch_bytes}, exec.stream, exec.blas};
  using Acc = acc_t<T>;
  ops::non_local(p.nl_s_fwd, Mode::forward, inner);
  ops::linear(p.adapt_fwd, Mode::forward, inner);
  ops::non_local(p.nl_t_fwd, Mode::forward, inner);
  const View<const T> adapted = p.adapted, zt = p.zt;
  norm_into<Acc>(device, exec.stream, adapted.shape, SquaredDifference{}, std::tuple{adapted, zt}, p.partials, slot);
  if (!writes_gradients(mode)) return;
  const WeightedDistanceGrad<T> grad{slot, upstream, weight};
  ::kdloss::detail::transform<Acc>(device, exec.stream, adapted.shape, grad, std::tuple{adapted, zt},
                                   std::tuple{p.grad_adapted});
  ops::linear(p.adapt_bwd, Mode::backward, inner);
  ops::non_local(p.nl_s_bwd, Mode::backward, inner);
  if (p.teacher_grads) {
    ::kdloss::detail::transform<Acc>(device, exec.stream, adapted.shape, grad, std::tuple{zt, adapted},
                                     std::tuple{p.grad_zt});
    ops::non_local(p.nl_t_bwd, Mode::backward, inner);
  }
}

}  // namespace detail

/// Throws kdloss::Error naming the argument and the shapes (for an inner op's error, also the block or
/// the adaptation conv and the step) when `args` cannot run in `mode`; writes nothing.
///
///   kdloss::fbkd::non_local_loss_check(nld, kdloss::Mode::forward_backward);   // nld: NonLocalLossArgs's example
template <class T>
void non_local_loss_check(const NonLocalLossArgs<T>& args, Mode mode) {
  detail::check_non_local_level(detail::kNonLocalLossNames(mode), args, mode, true);
}

/// Workspace bytes of non_local_loss for every Mode: the norm slot, Z_S, A, Z_T, with gradients dL/dA,
/// dL/dZ_T, dL/dZ_S and both blocks' reserves, then the largest inner op's scratch (about 6 B C H W
/// elements plus two block reserves and one block's workspace).
///
///   std::size_t ws = kdloss::fbkd::non_local_loss_workspace_bytes(nld);   // nld: NonLocalLossArgs's example
template <class T>
std::size_t non_local_loss_workspace_bytes(const NonLocalLossArgs<T>& args) {
  const char* fn = "kdloss::fbkd::non_local_loss_workspace_bytes";
  const ::kdloss::detail::Checker ck{fn};
  detail::check_feature_pair(ck, args.student, "student", args.teacher, "teacher");
  std::size_t most = 0;
  for (Mode mode : {Mode::forward, Mode::forward_backward})
    most = std::max(most, detail::non_local_loss_plan(fn, args, mode, nullptr).bytes);
  return most;
}

/// Checks, then runs. forward: Z_S = NL_S(S), A = adapt(Z_S), Z_T = NL_T(T), out = w_n ||A - Z_T||_F (and
/// the blocks' BN batch statistics when asked for). backward (reads grad_out; recomputes the forward into
/// the workspace; no reserve): dL/dA = g w_n (A - Z_T) / ||A - Z_T|| (0 at a zero norm), then the
/// adaptation conv's, NL_S's (to grad_student and the student block's parameter gradients) and NL_T's
/// (the teacher block's parameter gradients only, and only when one is asked for) backwards.
/// forward_backward: both, with g = 1. Deterministic: the bits do not depend on the thread count.
///
///   kdloss::fbkd::non_local_loss(nld, kdloss::Mode::forward_backward);   // nld: NonLocalLossArgs's example
template <class T>
void non_local_loss(const NonLocalLossArgs<T>& args, Mode mode, const Exec& exec = {}) {
  non_local_loss_check(args, mode);
  const char* fn = detail::kNonLocalLossNames(mode);
  const Device device = args.teacher.device;
  ::kdloss::detail::HostScratch host;
  const std::size_t need = detail::non_local_loss_plan(fn, args, mode, nullptr).bytes;
  void* ws = ::kdloss::detail::resolve_workspace(fn, device, exec.workspace, need, host);
  const auto p = detail::non_local_loss_plan(fn, args, mode, ws);
  const detail::Upstream<T> upstream{mode == Mode::backward ? args.grad_out.data : nullptr};
  detail::run_non_local_level(p, mode, device, exec, p.slot, args.options.weight, upstream);
  if (writes_value(mode))
    ::kdloss::detail::transform_reduce<acc_t<T>>(device, exec.stream, Dims{},
                                                 detail::ScaledSlot{p.slot, args.options.weight}, std::tuple<>{},
                                                 std::tuple<>{}, p.partials, ::kdloss::detail::Keep{}, args.out.data);
}

/// Thin wrapper: out = L_NLD.
///
///   kdloss::fbkd::non_local_loss(nld);   // nld: NonLocalLossArgs's example
template <class T>
void non_local_loss(const NonLocalLossArgs<T>& args, const Exec& exec = {}) {
  non_local_loss(args, Mode::forward, exec);
}
/// Thin wrapper: every gradient requested, times grad_out (recomputes the forward).
///
///   kdloss::fbkd::non_local_loss_backward(nld);   // nld: with grad_out set
template <class T>
void non_local_loss_backward(const NonLocalLossArgs<T>& args, const Exec& exec = {}) {
  non_local_loss(args, Mode::backward, exec);
}
/// Thin wrapper: L_NLD and every gradient requested in one call.
///
///   kdloss::fbkd::non_local_loss_forward_backward(nld);   // nld: NonLocalLossArgs's example
template <class T>
void non_local_loss_forward_backward(const NonLocalLossArgs<T>& args, const Exec& exec = {}) {
  non_local_loss(args, Mode::forward_backward, exec);
}

} } }  // namespace kdloss::fbkd
