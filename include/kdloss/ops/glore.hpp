// kdloss/ops/glore.hpp: the GloRe unit of the DRKD code (GloRe_Unit_2D(num_in, num_mid), normalize=False,
// Chen et al. CVPR 2019), forward and backward to the input and all ten parameters. See docs/ops/glore.md.
//
// For one image X in R^{C x N} (N = H*W), m = num_mid, s = 2m:
//   S = W_s X + b_s                 [s, N]   conv_state   (1x1, bias)
//   P = W_p X + b_p                 [m, N]   conv_proj    (1x1, bias)
//   V = S P^T                       [s, m]   (no 1/N: normalize=False)
//   H = V + V A^T + 1 a^T           [s, m]   gcn.conv1    (Conv1d(m, m, 1) over the node axis, bias) + residual
//   R = ReLU(H),  Z = W_g R         [s, m]   gcn.conv2    (Conv1d(s, s, 1), no bias)
//   Y = Z P                         [s, N]   reverse projection with the same P
//   E = W_e Y                       [C, N]   conv_extend  (1x1, no bias)
//   out = X + BN(E)                 [C, N]   blocker      (BatchNorm2d(C, eps=1e-4): batch statistics in
//                                                           training mode, the running ones in evaluation mode)
//
// A composite: every product runs through ops::linear / ops::matmul, the normalisation through
// ops::batch_norm, the ReLU and the residuals through the backend's elementwise executors. One caller
// workspace is carved for all of them. Parameter gradients follow GradAccumulate (ops/linear.hpp) and
// every batch sum runs in a fixed order, so the bits do not depend on the thread count.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <tuple>
#include <utility>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/basic.hpp"
#include "kdloss/ops/batch_norm.hpp"
#include "kdloss/ops/linear.hpp"
#include "kdloss/ops/matmul.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

struct GloreOptions {
  double bn_eps = 1e-4;          // the blocker's eps (BatchNorm2d(num_in, eps=1e-04) in the code)
  GradAccumulate param_grads{};  // every parameter gradient: grad = beta * grad + dL/dparam
  bool training = true;          // the blocker with batch statistics (true) or bn_running_mean/var (false)
};

/// Arguments of ops::glore. x: [B, C, H, W] (H and W must merge into one strided axis: contiguous and
/// channels-last views do). The parameters, named after the DRKD code's modules (their state_dict keys),
/// m = num_mid, 2m = num_s:
/// - state_weight [2m, C] = conv_state.weight (the [2m, C, 1, 1] kernel), state_bias [2m] = conv_state.bias;
/// - proj_weight [m, C] = conv_proj.weight, proj_bias [m] = conv_proj.bias;
/// - gcn_conv1_weight [m, m] = gcn.conv1.weight ([m, m, 1]), gcn_conv1_bias [m] = gcn.conv1.bias;
/// - gcn_conv2_weight [2m, 2m] = gcn.conv2.weight ([2m, 2m, 1]; the module has no bias);
/// - extend_weight [C, 2m] = conv_extend.weight (no bias);
/// - bn_weight, bn_bias [C] = blocker.weight, blocker.bias (BatchNorm2d(C, eps=1e-4)).
/// All are required. bn_running_mean, bn_running_var [C] = blocker.running_mean / running_var: read in
/// evaluation mode (options.training = false; both required there), ignored in training mode.
/// out: like x (forward). bn_batch_mean / bn_batch_var: [C], optional training-forward outputs
/// (the blocker's batch mean and UNBIASED variance, for the caller's running statistics; see
/// batch_norm_update_running_stats; absent in evaluation mode). grad_out: like x (backward input); grad_x and one gradient per
/// parameter (grad_<parameter>, its shape), each optional. reserve: the state backward reads
/// (glore_reserve_bytes); backward with an absent reserve recomputes it from x.
template <class T>
struct GloreArgs {
  View<const T> x{};
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
  View<const T> bn_running_mean{};
  View<const T> bn_running_var{};
  View<T> out{};
  View<T> bn_batch_mean{};
  View<T> bn_batch_var{};
  View<const T> grad_out{};
  View<T> grad_x{};
  View<T> grad_state_weight{};
  View<T> grad_state_bias{};
  View<T> grad_proj_weight{};
  View<T> grad_proj_bias{};
  View<T> grad_gcn_conv1_weight{};
  View<T> grad_gcn_conv1_bias{};
  View<T> grad_gcn_conv2_weight{};
  View<T> grad_extend_weight{};
  View<T> grad_bn_weight{};
  View<T> grad_bn_bias{};
  Reserve reserve{};
  GloreOptions options{};
};

namespace detail {

/// R = ReLU(V + T): the GCN's residual and its ReLU (NaN passes, as torch.relu passes it).
struct GloreResidualRelu {
  template <class A, class B, class O>
  KDLOSS_HOST_DEVICE void operator()(const A& v, const B& t, O& r) const {
    using S = math::scalar_t<O>;
    r = v + t;
    r = math::select(r < S(0), S(0), r);
  }
};
/// gH = gV = gR where R > 0 (PyTorch's threshold_backward on the ReLU's result: zero where R <= 0, the
/// upstream gradient elsewhere, NaN results included).
struct GloreReluBackward {
  template <class R, class G, class O1, class O2>
  KDLOSS_HOST_DEVICE void operator()(const R& r, const G& g, O1& gh, O2& gv) const {
    using S = math::scalar_t<O1>;
    gh = math::select(r <= S(0), S(0), g);
    gv = gh;
  }
};
/// out = a + b (the block's residual, in place over out).
struct GloreAdd {
  template <class A, class B, class O>
  KDLOSS_HOST_DEVICE void operator()(const A& a, const B& b, O& out) const {
    out = a + b;
  }
};
/// out = a (grad_x starts from the residual's upstream gradient).

/// Every buffer of one call. The state (S, P, V, R, Z, Y and the blocker's statistics) lives in the
/// reserve when one is given, else in the workspace; the rest is workspace. Views over a null base
/// have the right shapes and null data (size queries).
template <class T>
struct GlorePlan {
  std::int64_t batch = 0, channels = 0, mid = 0, h = 0, w = 0;
  // state
  T* s = nullptr;  // [B, 2m, N]
  T* p = nullptr;  // [B, m, N]
  T* v = nullptr;  // [B, 2m, m]
  T* r = nullptr;  // [B, 2m, m]  ReLU(H)
  T* z = nullptr;  // [B, 2m, m]
  T* y = nullptr;  // [B, 2m, N]
  void* bn_reserve = nullptr;
  std::size_t bn_reserve_bytes = 0, state_bytes = 0;
  // workspace
  T* t = nullptr;   // [B, 2m, m]  conv1's output (forward), dL/dH (backward)
  T* gv = nullptr;  // [B, 2m, m]
  T* gr = nullptr;  // [B, 2m, m]
  T* gz = nullptr;  // [B, 2m, m]
  // E is dead once the blocker's backward has run, and dL/dY once dL/dZ and Z^T dL/dY are formed, so
  // one region of max(C, 3m) * N per image holds E, then dL/dY and later dL/dS (same place), and dL/dP.
  T* e = nullptr;   // [B, C, N]   conv_extend's output, the blocker's input
  T* ge = nullptr;  // [B, C, N]
  T* gy = nullptr;  // [B, 2m, N]  at e
  T* gs = nullptr;  // [B, 2m, N]  at e (dL/dY is dead when dL/dS is written)
  T* gp = nullptr;  // [B, m, N]   at e + B * 2m * N
  void* scratch = nullptr;
  std::size_t scratch_bytes = 0, workspace_bytes = 0;
  Device device{};

  std::int64_t n() const { return h * w; }
  std::int64_t s2() const { return 2 * mid; }
  /// [B, c, H, W] contiguous over `p`.
  template <class U>
  View<U> map(U* q, std::int64_t c) const {
    return View<U>(q, Dims{batch, c, h, w}, contiguous_strides(Dims{batch, c, h, w}), device);
  }
  /// [B, rows, cols] contiguous over `q`.
  template <class U>
  View<U> mat(U* q, std::int64_t rows, std::int64_t cols) const {
    return View<U>(q, Dims{batch, rows, cols}, contiguous_strides(Dims{batch, rows, cols}), device);
  }
  /// The [B, 2m, m] node matrices seen as rows [B*2m, m] (conv1 acts on every row) ...
  template <class U>
  View<U> node_rows(U* q) const {
    return View<U>(q, Dims{batch * s2(), mid}, Dims{mid, 1}, device);
  }
  /// ... and as a [B, 2m, m, 1] map (conv2 mixes the 2m state channels at every node).
  template <class U>
  View<U> node_map(U* q) const {
    return View<U>(q, Dims{batch, s2(), mid, 1}, Dims{s2() * mid, mid, 1, 1}, device);
  }
  View<const T> c(T* q, std::int64_t rows, std::int64_t cols) const { return mat<const T>(q, rows, cols); }
};

/// The blocker's arguments (x = E) with the caller's parameters.
template <class T>
BatchNormArgs<T> glore_bn_args(const GloreArgs<T>& a, const GlorePlan<T>& p) {
  BatchNormArgs<T> bn;
  bn.x = p.template map<const T>(p.e, p.channels);
  bn.weight = a.bn_weight;
  bn.bias = a.bn_bias;
  bn.running_mean = a.bn_running_mean;
  bn.running_var = a.bn_running_var;
  bn.options.training = a.options.training;
  bn.options.eps = a.options.bn_eps;
  bn.options.param_grads = a.options.param_grads;
  return bn;
}

/// The node-space sizes of one call, from x and proj_weight (m = proj_weight's rows).
template <class T>
GlorePlan<T> glore_sizes(const GloreArgs<T>& a) {
  GlorePlan<T> p;
  p.batch = a.x.shape[0];
  p.channels = a.x.shape[1];
  p.h = a.x.shape[2];
  p.w = a.x.shape[3];
  p.mid = a.proj_weight.shape[0];
  p.device = a.x.device;
  return p;
}

/// Carves the state from `state` (the reserve) or, when null, from the workspace, then the workspace
/// buffers, then the largest scratch of the ops the call runs. Null bases only count.
template <class T>
GlorePlan<T> glore_plan(const GloreArgs<T>& a, void* state, void* workspace) {
  GlorePlan<T> p = glore_sizes(a);
  const auto nodes = static_cast<std::size_t>(p.batch * p.s2() * p.mid);
  const auto per = [&](std::int64_t rows) { return static_cast<std::size_t>(p.batch * rows * p.n()); };
  kdloss::detail::Carver ws(workspace), rs(state);
  kdloss::detail::Carver& st = state ? rs : ws;
  const std::size_t before = ws.bytes();
  p.s = st.take<T>(per(p.s2()));
  p.p = st.take<T>(per(p.mid));
  p.v = st.take<T>(nodes);
  p.r = st.take<T>(nodes);
  p.z = st.take<T>(nodes);
  p.y = st.take<T>(per(p.s2()));
  p.bn_reserve_bytes = batch_norm_reserve_bytes(glore_bn_args(a, p));  // shapes only
  p.bn_reserve = st.take<unsigned char>(p.bn_reserve_bytes);
  p.state_bytes = state ? rs.bytes() : ws.bytes() - before;
  p.t = ws.take<T>(nodes);
  p.gv = ws.take<T>(nodes);
  p.gr = ws.take<T>(nodes);
  p.gz = ws.take<T>(nodes);
  p.e = ws.take<T>(std::max(per(p.channels), per(3 * p.mid)));
  p.ge = ws.take<T>(per(p.channels));
  p.gy = p.e;
  p.gs = p.e;
  p.gp = p.e ? p.e + per(p.s2()) : nullptr;
  p.scratch_bytes = 0;
  p.scratch = ws.take<unsigned char>(0);  // the scratch's start; its size is added below
  p.workspace_bytes = ws.bytes();
  return p;
}

/// The ops of one call, in order; `f(op)` runs or sizes each. Each op is a small callable object
/// with bytes() (its scratch) and run(exec).
template <class T>
struct GloreLinearOp {
  LinearArgs<T> args;
  Mode mode;
  std::size_t bytes() const {
    return detail::linear_scratch(args, detail::linear_plan(args), mode).total;
  }
  void run(const Exec& exec) const { linear(args, mode, exec); }
};
template <class T>
struct GloreMatmulOp {
  MatmulArgs<T> args;
  std::size_t bytes() const { return kdloss::detail::gemm_bytes(args.a.device, detail::make_gemm(args)); }
  void run(const Exec& exec) const { matmul(args, exec); }
};
template <class T>
struct GloreBnOp {
  BatchNormArgs<T> args;
  Mode mode;
  std::size_t bytes() const { return batch_norm_workspace_bytes(args); }
  void run(const Exec& exec) const { batch_norm(args, mode, exec); }
};
/// An elementwise pass (no scratch).
template <class F>
struct GloreMapOp {
  F f;
  std::size_t bytes() const { return 0; }
  void run(const Exec& exec) const { f(exec); }
};
template <class F>
GloreMapOp<F> glore_map(F f) {
  return {f};
}

template <class T>
LinearArgs<T> glore_linear(const View<const T>& x, const View<const T>& w, const View<const T>& b, const View<T>& y) {
  LinearArgs<T> l;
  l.x = x;
  l.weight = w;
  l.bias = b;
  l.y = y;
  return l;
}
template <class T>
LinearArgs<T> glore_linear_grad(const View<const T>& x, const View<const T>& w, const View<const T>& gy,
                                const View<T>& gx, const View<T>& gw, const View<T>& gb, double param_beta,
                                double input_beta) {
  LinearArgs<T> l;
  l.x = x;
  l.weight = w;
  l.grad_y = gy;
  l.grad_x = gx;
  l.grad_weight = gw;
  l.grad_bias = gb;
  l.options.param_grads.beta = param_beta;
  l.options.input_grad.beta = input_beta;
  return l;
}

/// Whether backward needs more than the blocker's own gradients.
template <class T>
bool glore_needs_chain(const GloreArgs<T>& a) {
  return present(a.grad_x) || present(a.grad_state_weight) || present(a.grad_state_bias) ||
         present(a.grad_proj_weight) || present(a.grad_proj_bias) || present(a.grad_gcn_conv1_weight) ||
         present(a.grad_gcn_conv1_bias) || present(a.grad_gcn_conv2_weight) || present(a.grad_extend_weight);
}

/// Visits the ops of `mode` in order. `have_state`: the reserve holds a forward's state (backward then
/// recomputes only E = W_e Y); without it backward recomputes S, P, V, R, Z, Y and E first.
template <class T, class F>
void glore_for_each_op(const GloreArgs<T>& a, const GlorePlan<T>& p, Mode mode, bool have_state, F&& f) {
  using Acc = kdloss::acc_t<T>;
  const std::int64_t m = p.mid, s = p.s2(), C = p.channels, N = p.n();
  const Device dev = p.device;
  const View<const T> P3 = p.c(p.p, m, N), S3 = p.c(p.s, s, N), Z3 = p.c(p.z, s, m);
  const View<const T> Y4 = p.template map<const T>(p.y, s);
  const bool forward = writes_value(mode);
  const bool chain = writes_gradients(mode) && glore_needs_chain(a);
  const bool bn_grads = writes_gradients(mode) && (present(a.grad_bn_weight) || present(a.grad_bn_bias));
  // backward alone needs E = W_e Y again (the blocker's input), and the rest of the state unless kept
  const bool needs_e = mode == Mode::backward && (chain || bn_grads);
  if (forward || (needs_e && !have_state)) {
    f(GloreLinearOp<T>{glore_linear(a.x, a.state_weight, a.state_bias, p.map(p.s, s)), Mode::forward});
    f(GloreLinearOp<T>{glore_linear(a.x, a.proj_weight, a.proj_bias, p.map(p.p, m)), Mode::forward});
    f(GloreMatmulOp<T>{MatmulArgs<T>{S3, P3, p.mat(p.v, s, m), {false, true}}});  // V = S P^T
    f(GloreLinearOp<T>{glore_linear(p.template node_rows<const T>(p.v), a.gcn_conv1_weight, a.gcn_conv1_bias,
                                    p.node_rows(p.t)),
                       Mode::forward});  // T = V A^T + 1 a^T
    const View<const T> v1 = p.c(p.v, s, m), t1 = p.c(p.t, s, m);
    const View<T> r1 = p.mat(p.r, s, m);
    f(glore_map([=](const Exec& exec) {
      kdloss::detail::transform<Acc>(dev, exec.stream, v1.shape, GloreResidualRelu{}, std::tuple{v1, t1},
                                     std::tuple{r1});
    }));  // R = ReLU(V + T)
    f(GloreLinearOp<T>{glore_linear(p.template node_map<const T>(p.r), a.gcn_conv2_weight, View<const T>{},
                                    p.node_map(p.z)),
                       Mode::forward});                           // Z = W_g R
    f(GloreMatmulOp<T>{MatmulArgs<T>{Z3, P3, p.mat(p.y, s, N)}});  // Y = Z P
  }
  if (forward || needs_e)
    f(GloreLinearOp<T>{glore_linear(Y4, a.extend_weight, View<const T>{}, p.map(p.e, C)), Mode::forward});
  if (forward) {
    BatchNormArgs<T> bn = glore_bn_args(a, p);
    bn.y = a.out;
    bn.batch_mean = a.bn_batch_mean;
    bn.batch_var = a.bn_batch_var;
    bn.reserve = {p.bn_reserve, p.bn_reserve_bytes};
    f(GloreBnOp<T>{bn, Mode::forward});
    const View<const T> x = a.x, o = a.out;
    const View<T> out = a.out;
    f(glore_map([=](const Exec& exec) {
      kdloss::detail::transform<Acc>(dev, exec.stream, x.shape, GloreAdd{}, std::tuple{x, o}, std::tuple{out});
    }));  // out = x + BN(E)
  }
  if (!writes_gradients(mode)) return;
  const double beta = a.options.param_grads.beta;
  {  // the blocker: dL/dE, dL/dgamma, dL/dbeta (its statistics from the reserve when this call or a forward kept them)
    BatchNormArgs<T> bn = glore_bn_args(a, p);
    bn.grad_y = a.grad_out;
    if (chain) bn.grad_x = p.map(p.ge, C);
    bn.grad_weight = a.grad_bn_weight;
    bn.grad_bias = a.grad_bn_bias;
    if (have_state || forward) bn.reserve = {p.bn_reserve, p.bn_reserve_bytes};
    if (chain || bn_grads) f(GloreBnOp<T>{bn, Mode::backward});
  }
  if (!chain) return;
  // conv_extend: dL/dY = W_e^T dL/dE, dL/dW_e
  f(GloreLinearOp<T>{glore_linear_grad(Y4, a.extend_weight, p.template map<const T>(p.ge, C), p.map(p.gy, s),
                                       a.grad_extend_weight, View<T>{}, beta, 0.0),
                     Mode::backward});
  const View<const T> GY3 = p.c(p.gy, s, N);
  f(GloreMatmulOp<T>{MatmulArgs<T>{GY3, P3, p.mat(p.gz, s, m), {false, true}}});  // dZ = dY P^T
  f(GloreMatmulOp<T>{MatmulArgs<T>{Z3, GY3, p.mat(p.gp, m, N), {true, false}}});  // dP = Z^T dY
  // gcn.conv2: dL/dR = W_g^T dL/dZ, dL/dW_g
  f(GloreLinearOp<T>{glore_linear_grad(p.template node_map<const T>(p.r), a.gcn_conv2_weight,
                                       p.template node_map<const T>(p.gz), p.node_map(p.gr), a.grad_gcn_conv2_weight,
                                       View<T>{}, beta, 0.0),
                     Mode::backward});
  {  // the ReLU: dL/dH into t and gv (the residual's share of dL/dV)
    const View<const T> r1 = p.c(p.r, s, m), g1 = p.c(p.gr, s, m);
    const View<T> h1 = p.mat(p.t, s, m), v1 = p.mat(p.gv, s, m);
    f(glore_map([=](const Exec& exec) {
      kdloss::detail::transform<Acc>(dev, exec.stream, r1.shape, GloreReluBackward{}, std::tuple{r1, g1},
                                     std::tuple{h1, v1});
    }));
  }
  // gcn.conv1: dL/dV += dL/dH A, dL/dA, dL/da
  f(GloreLinearOp<T>{glore_linear_grad(p.template node_rows<const T>(p.v), a.gcn_conv1_weight,
                                       p.template node_rows<const T>(p.t), p.node_rows(p.gv),
                                       a.grad_gcn_conv1_weight, a.grad_gcn_conv1_bias, beta, 1.0),
                     Mode::backward});
  const View<const T> GV3 = p.c(p.gv, s, m);
  f(GloreMatmulOp<T>{MatmulArgs<T>{GV3, P3, p.mat(p.gs, s, N)}});                      // dS = dV P
  f(GloreMatmulOp<T>{MatmulArgs<T>{GV3, S3, p.mat(p.gp, m, N), {true, false, 1.0, 1.0}}});  // dP += dV^T S
  double input_beta = 0.0;
  if (present(a.grad_x)) {  // the block's residual: dL/dx starts as dL/dout
    const View<const T> g = a.grad_out;
    const View<T> gx = a.grad_x;
    f(glore_map([=](const Exec& exec) {
      kdloss::detail::transform<Acc>(dev, exec.stream, g.shape, expr::Identity{}, std::tuple{g}, std::tuple{gx});
    }));
    input_beta = 1.0;
  }
  // conv_state and conv_proj: dL/dx += W_s^T dS + W_p^T dP, and their weight and bias gradients
  if (present(a.grad_x) || present(a.grad_state_weight) || present(a.grad_state_bias))
    f(GloreLinearOp<T>{glore_linear_grad(a.x, a.state_weight, p.template map<const T>(p.gs, s), a.grad_x,
                                         a.grad_state_weight, a.grad_state_bias, beta, input_beta),
                       Mode::backward});
  if (present(a.grad_x) || present(a.grad_proj_weight) || present(a.grad_proj_bias))
    f(GloreLinearOp<T>{glore_linear_grad(a.x, a.proj_weight, p.template map<const T>(p.gp, m), a.grad_x,
                                         a.grad_proj_weight, a.grad_proj_bias, beta, input_beta),
                       Mode::backward});
}

/// The plan of a call in `mode` with its scratch size filled in (bases may be null: counting).
template <class T>
GlorePlan<T> glore_full_plan(const GloreArgs<T>& a, Mode mode, void* state, void* workspace) {
  GlorePlan<T> p = glore_plan(a, state, workspace);
  const bool have_state = state != nullptr;
  std::size_t scratch = 0;
  for (Mode m : {Mode::forward, Mode::backward, Mode::forward_backward}) {
    if (m != mode && workspace) continue;  // carving a real call: its own mode only
    glore_for_each_op(a, p, m, have_state, [&](const auto& op) { scratch = std::max(scratch, op.bytes()); });
  }
  p.scratch_bytes = scratch;
  kdloss::detail::Carver tail;
  tail.take<unsigned char>(scratch);
  p.workspace_bytes += tail.bytes();
  return p;
}

}  // namespace detail

namespace detail {
/// The part of glore_check that the size queries need: x and the ten parameters.
template <class T>
void glore_check_inputs(const GloreArgs<T>& a) {
  const kdloss::detail::Checker ck{"kdloss::ops::glore"};
  using kdloss::detail::require;
  const char* fn = ck.fn;
  ck.rank(a.x, "x", 4);
  ck.not_null(a.x, "x");
  kdloss::detail::require_backend<T>(fn, a.x.device);
  require(detail::positions_merge(a.x), fn, ": argument 'x' with shape ", a.x.shape.str(), " and strides ",
          a.x.strides.str(), " cannot merge H and W into one strided axis; pass a contiguous or channel-last view");
  ck.rank(a.proj_weight, "proj_weight", 2);
  const std::int64_t C = a.x.shape[1], m = a.proj_weight.shape[0], s = 2 * m;
  if (a.options.training)
    require(a.x.shape[0] * a.x.shape[2] * a.x.shape[3] > 1, fn, ": argument 'x' has shape ", a.x.shape.str(),
            " but the blocker (training-mode BatchNorm2d) needs more than 1 value per channel (B * H * W > 1);"
            " evaluation mode (options.training = false) accepts one");
  require(m > 0, fn, ": argument 'proj_weight' has shape ", a.proj_weight.shape.str(),
          " but the unit needs at least one node (num_mid > 0)");
  struct Param {
    const View<const T>& v;
    const char* name;
    Dims shape;
  };
  const Param params[] = {{a.state_weight, "state_weight", Dims{s, C}},
                          {a.state_bias, "state_bias", Dims{s}},
                          {a.proj_weight, "proj_weight", Dims{m, C}},
                          {a.proj_bias, "proj_bias", Dims{m}},
                          {a.gcn_conv1_weight, "gcn_conv1_weight", Dims{m, m}},
                          {a.gcn_conv1_bias, "gcn_conv1_bias", Dims{m}},
                          {a.gcn_conv2_weight, "gcn_conv2_weight", Dims{s, s}},
                          {a.extend_weight, "extend_weight", Dims{C, s}},
                          {a.bn_weight, "bn_weight", Dims{C}},
                          {a.bn_bias, "bn_bias", Dims{C}}};
  for (const Param& p : params) {
    require(present(p.v), fn, ": argument '", p.name, "' is absent; the unit needs all ten parameters");
    ck.not_null(p.v, p.name);
    if (p.v.shape != p.shape)
      require(false, fn, ": argument '", p.name, "' has shape ", p.v.shape.str(), " but x ", a.x.shape.str(),
              " and proj_weight ", a.proj_weight.shape.str(), " (num_mid = ", m, ") need ", p.shape.str());
    ck.device(p.v, p.name, a.x.device);
  }
  if (!a.options.training)
    require(present(a.bn_running_mean) && present(a.bn_running_var), fn,
            ": evaluation mode (options.training = false) reads 'bn_running_mean' and 'bn_running_var' but ",
            present(a.bn_running_mean) ? "'bn_running_var'" : "'bn_running_mean'",
            " is absent (the blocker's running statistics, [C] = ", Dims{C}.str(), ")");
  for (const auto& [v, name] : {std::pair{&a.bn_running_mean, "bn_running_mean"},
                                std::pair{&a.bn_running_var, "bn_running_var"}}) {
    if (absent(*v)) continue;
    ck.not_null(*v, name);
    if (v->shape != Dims{C})
      require(false, fn, ": argument '", name, "' has shape ", v->shape.str(), " but x ", a.x.shape.str(), " needs ",
              Dims{C}.str());
    ck.device(*v, name, a.x.device);
  }
}
}  // namespace detail

/// Throws kdloss::Error naming the argument and the shapes when `mode` cannot run; writes nothing.
template <class T>
void glore_check(const GloreArgs<T>& a, Mode mode) {
  detail::glore_check_inputs(a);
  const kdloss::detail::Checker ck{"kdloss::ops::glore"};
  using kdloss::detail::require;
  const char* fn = ck.fn;
  const std::int64_t C = a.x.shape[1], m = a.proj_weight.shape[0], s = 2 * m;
  struct Param {
    const View<const T>& v;
    const char* name;
  };
  const Param params[] = {{a.state_weight, "state_weight"},         {a.state_bias, "state_bias"},
                          {a.proj_weight, "proj_weight"},           {a.proj_bias, "proj_bias"},
                          {a.gcn_conv1_weight, "gcn_conv1_weight"}, {a.gcn_conv1_bias, "gcn_conv1_bias"},
                          {a.gcn_conv2_weight, "gcn_conv2_weight"}, {a.extend_weight, "extend_weight"},
                          {a.bn_weight, "bn_weight"},               {a.bn_bias, "bn_bias"},
                          {a.bn_running_mean, "bn_running_mean"},   {a.bn_running_var, "bn_running_var"}};
  struct Named {
    View<const T> v;
    const char* name;
  };
  Named outputs[14];  // out, the two statistics, grad_x and ten parameter gradients
  int n_out = 0;
  const auto output = [&](const View<T>& v, const char* name, const Dims& shape, bool map) {
    if (absent(v)) return;
    ck.not_null(v, name);
    ck.shape(v, name, shape);
    ck.device(v, name, a.x.device);
    ck.unique(v, name);
    if (map)
      require(detail::positions_merge(v), fn, ": argument '", name, "' with shape ", v.shape.str(), " and strides ",
              v.strides.str(), " cannot merge H and W into one strided axis");
    ck.disjoint(v, name, a.x, "x");
    for (const Param& p : params) ck.disjoint(v, name, p.v, p.name);
    if (writes_gradients(mode) && present(a.grad_out)) ck.disjoint(v, name, a.grad_out, "grad_out");
    for (int i = 0; i < n_out; ++i) ck.disjoint(v, name, outputs[i].v, outputs[i].name);
    outputs[n_out++] = Named{v, name};
  };
  if (writes_value(mode)) {
    require(present(a.out), fn, ": mode ", to_string(mode), " writes 'out' but it is absent");
    if (!a.options.training)
      require(absent(a.bn_batch_mean) && absent(a.bn_batch_var), fn,
              ": 'bn_batch_mean' and 'bn_batch_var' are written in training mode only; leave them absent in"
              " evaluation mode (options.training = false)");
    output(a.out, "out", a.x.shape, true);
    output(a.bn_batch_mean, "bn_batch_mean", Dims{C}, false);
    output(a.bn_batch_var, "bn_batch_var", Dims{C}, false);
  }
  if (writes_gradients(mode)) {
    require(present(a.grad_out), fn, ": mode ", to_string(mode), " reads 'grad_out' but it is absent");
    ck.not_null(a.grad_out, "grad_out");
    ck.shape(a.grad_out, "grad_out", a.x.shape);
    ck.device(a.grad_out, "grad_out", a.x.device);
    require(detail::positions_merge(a.grad_out), fn, ": argument 'grad_out' with shape ", a.grad_out.shape.str(),
            " and strides ", a.grad_out.strides.str(), " cannot merge H and W into one strided axis");
    output(a.grad_x, "grad_x", a.x.shape, true);
    output(a.grad_state_weight, "grad_state_weight", Dims{s, C}, false);
    output(a.grad_state_bias, "grad_state_bias", Dims{s}, false);
    output(a.grad_proj_weight, "grad_proj_weight", Dims{m, C}, false);
    output(a.grad_proj_bias, "grad_proj_bias", Dims{m}, false);
    output(a.grad_gcn_conv1_weight, "grad_gcn_conv1_weight", Dims{m, m}, false);
    output(a.grad_gcn_conv1_bias, "grad_gcn_conv1_bias", Dims{m}, false);
    output(a.grad_gcn_conv2_weight, "grad_gcn_conv2_weight", Dims{s, s}, false);
    output(a.grad_extend_weight, "grad_extend_weight", Dims{C, s}, false);
    output(a.grad_bn_weight, "grad_bn_weight", Dims{C}, false);
    output(a.grad_bn_bias, "grad_bn_bias", Dims{C}, false);
  }
  require(a.options.bn_eps >= 0, fn, ": option 'bn_eps' is ", a.options.bn_eps, " but must be >= 0");
  if (a.reserve.data) {
    const std::size_t need = detail::glore_plan(a, nullptr, nullptr).state_bytes;
    require(a.reserve.bytes >= need, fn, ": argument 'reserve' has ", a.reserve.bytes, " bytes but x ",
            a.x.shape.str(), " with num_mid ", m, " needs ", need, " (size it with glore_reserve_bytes)");
    require(reinterpret_cast<std::uintptr_t>(a.reserve.data) % kdloss::detail::kWorkspaceAlignment == 0, fn,
            ": argument 'reserve' must be aligned to ", kdloss::detail::kWorkspaceAlignment, " bytes");
  }
}

/// Reserve bytes: the state backward reads, per image (T elements) 5·m·N (S, P, Y) + 6·m² (V, ReLU(H),
/// Z), plus the blocker's 2·C doubles (training mode only), each piece aligned to 256 bytes.
template <class T>
std::size_t glore_reserve_bytes(const GloreArgs<T>& args) {
  detail::glore_check_inputs(args);
  return detail::glore_plan(args, nullptr, nullptr).state_bytes;
}

/// Scratch bytes of glore(args, mode) for every Mode: per image C·N + max(C, 3m)·N (E = W_e Y and dL/dE;
/// dL/dY, dL/dS and dL/dP reuse E's place) + 8·m² elements, the largest scratch of the ops it runs and, when args.reserve
/// is absent, the state of glore_reserve_bytes as well.
template <class T>
std::size_t glore_workspace_bytes(const GloreArgs<T>& args) {
  detail::glore_check_inputs(args);
  return detail::glore_full_plan(args, Mode::forward_backward, args.reserve.data, nullptr).workspace_bytes;
}

/// forward: out = x + BN(W_e (W_g ReLU(V + V A^T + 1 a^T)) P) with S, P, V as above (BN with eps
/// options.bn_eps: training mode normalises with the batch statistics and writes bn_batch_mean /
/// bn_batch_var when present; evaluation mode (options.training = false) with bn_running_mean /
/// bn_running_var, an affine map whose backward is γ / sqrt(running_var + eps)); fills the reserve
/// when given. backward (reads grad_out and the reserve of a forward of the same arguments, or
/// recomputes that state from x when the reserve is absent): grad_x = grad_out + W_s^T dS + W_p^T dP
/// and every requested parameter gradient (beta * old + dL/dparam). forward_backward: both.
///
///   // GloRe_Unit_2D(256, 64) on a P3 map of two images
///   const std::int64_t C = 256, m = 64, s = 2 * m;
///   std::vector<float> ws_(s * C), bs_(s), wp(m * C), bp(m), a1(m * m), b1(m), a2(s * s), we(C * s),
///       gamma(C, 1.0f), beta(C, 0.0f), x(2 * C * 100 * 168, 0.5f), out(x.size());
///   kdloss::ops::GloreArgs<float> g;
///   g.x = kdloss::host_view<const float>(x.data(), {2, C, 100, 168});
///   g.state_weight = kdloss::host_view<const float>(ws_.data(), {s, C});
///   g.state_bias = kdloss::host_view<const float>(bs_.data(), {s});
///   g.proj_weight = kdloss::host_view<const float>(wp.data(), {m, C});
///   g.proj_bias = kdloss::host_view<const float>(bp.data(), {m});
///   g.gcn_conv1_weight = kdloss::host_view<const float>(a1.data(), {m, m});
///   g.gcn_conv1_bias = kdloss::host_view<const float>(b1.data(), {m});
///   g.gcn_conv2_weight = kdloss::host_view<const float>(a2.data(), {s, s});
///   g.extend_weight = kdloss::host_view<const float>(we.data(), {C, s});
///   g.bn_weight = kdloss::host_view<const float>(gamma.data(), {C});
///   g.bn_bias = kdloss::host_view<const float>(beta.data(), {C});
///   g.out = kdloss::host_view(out.data(), {2, C, 100, 168});
///   const std::size_t keep_bytes = kdloss::ops::glore_reserve_bytes(g);
///   void* keep = std::aligned_alloc(256, keep_bytes);
///   g.reserve = {keep, keep_bytes};
///   kdloss::ops::glore(g, kdloss::Mode::forward);
///   std::vector<float> grad_out(x.size(), 1.0f), grad_x(x.size()), grad_we(C * s);
///   g.grad_out = kdloss::host_view<const float>(grad_out.data(), {2, C, 100, 168});
///   g.grad_x = kdloss::host_view(grad_x.data(), {2, C, 100, 168});
///   g.grad_extend_weight = kdloss::host_view(grad_we.data(), {C, s});
///   kdloss::ops::glore(g, kdloss::Mode::backward);   // reads the reserve
///   std::free(keep);
template <class T>
void glore(const GloreArgs<T>& args, Mode mode, const Exec& exec = {}) {
  const char* fn = "kdloss::ops::glore";
  detail::require_blas(fn, args.x.device, exec);
  glore_check(args, mode);
  void* state = args.reserve.data;
  const detail::GlorePlan<T> need = detail::glore_full_plan(args, mode, state, nullptr);
  kdloss::detail::HostScratch host;
  void* ws = kdloss::detail::resolve_workspace(fn, args.x.device, exec.workspace, need.workspace_bytes, host);
  detail::GlorePlan<T> plan = detail::glore_plan(args, state, ws);
  plan.scratch_bytes = need.scratch_bytes;
  const Exec inner{{plan.scratch_bytes ? plan.scratch : nullptr, plan.scratch_bytes}, exec.stream, exec.blas};
  const bool have_state = state != nullptr || mode == Mode::forward_backward;
  detail::glore_for_each_op(args, plan, mode, have_state, [&](const auto& op) { op.run(inner); });
}

/// Thin wrapper: the forward (bn_batch_mean / bn_batch_var are set on `args` when wanted).
///
///   kdloss::ops::glore_forward(g);   // g: GloreArgs<float> with x, the parameters and out
template <class T>
void glore_forward(const GloreArgs<T>& args, const Exec& exec = {}) {
  glore(args, Mode::forward, exec);
}

/// Thin wrapper: the gradients from grad_out (the reserve of the forward, or recomputation).
///
///   kdloss::ops::glore_backward(g);  // g: ... plus grad_out and the wanted gradients
template <class T>
void glore_backward(const GloreArgs<T>& args, const Exec& exec = {}) {
  glore(args, Mode::backward, exec);
}

/// Thin wrapper: value and gradients in one call (no reserve needed: the state stays in the workspace).
///
///   kdloss::ops::glore_forward_backward(g);
template <class T>
void glore_forward_backward(const GloreArgs<T>& args, const Exec& exec = {}) {
  glore(args, Mode::forward_backward, exec);
}

}  // namespace ops
} }  // namespace kdloss
