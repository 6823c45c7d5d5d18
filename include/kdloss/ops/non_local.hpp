// kdloss/ops/non_local.hpp: the non-local block of mmcv's NonLocal2d, mmrazor's NonLocal2dMaxpoolNstride
// and the official FBKD NonLocalBlockND, forward and backward with every parameter gradient:
//
//   z = x + BN(W y),   y_i = sum_j f(θ_i, φ_j) g_j,   θ = θ(x), φ = pool(φ(x)), g = pool(g(x))
//
// composed ONLY from existing ops: ops::linear (the 1x1 convolutions g, θ, φ and conv_out), ops::max_pool2d
// (sub-sampling, argmax kept), ops::softmax_relation (embedded_gaussian, gaussian), ops::dot_relation
// (dot_product), ops::concat_relation (concatenation), ops::batch_norm (training or evaluation mode) and an
// elementwise residual add. The N x N' relation matrix is never stored. See docs/ops/non_local.md.
//
// Entry point (core/entry.hpp): NonLocalArgs, non_local_check, non_local_workspace_bytes,
// non_local_reserve_bytes, non_local(args, mode, exec), the wrappers non_local_forward / non_local_backward /
// non_local_forward_backward, and the presets non_local_mmcv_options / non_local_fbkd_options.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>

#include "kdloss/backend/dispatch.hpp"
#include "kdloss/backend/dispatch_pooled_projection.hpp"
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/math.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/expr/pooled_projection.hpp"
#include "kdloss/ops/batch_norm.hpp"
#include "kdloss/ops/concat_relation.hpp"
#include "kdloss/ops/dot_relation.hpp"
#include "kdloss/ops/linear.hpp"
#include "kdloss/ops/max_pool.hpp"
#include "kdloss/ops/softmax_relation.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
namespace ops {

/// The pairwise function f of mmcv's NonLocal2d (`mode`):
/// - embedded_gaussian: softmax_j(θ_i . φ_j * s), s = 1/sqrt(m) with use_scale, else 1;
/// - gaussian: softmax_j(x_i . x'_j) with x' = x or its pooled map (no θ, φ convolutions, no scale);
/// - dot_product: θ_i . φ_j / N';
/// - concatenation: ReLU(w . [θ_i; φ_j]) / N' (w = concat_project, which receives a gradient).
enum class NonLocalMode { embedded_gaussian, gaussian, dot_product, concatenation };

inline const char* to_string(NonLocalMode m) {
  switch (m) {
    case NonLocalMode::embedded_gaussian: return "embedded_gaussian";
    case NonLocalMode::gaussian: return "gaussian";
    case NonLocalMode::dot_product: return "dot_product";
    case NonLocalMode::concatenation: return "concatenation";
  }
  return "?";
}

struct NonLocalOptions {
  NonLocalMode mode = NonLocalMode::embedded_gaussian;  // mmcv NonLocal2d's default
  bool use_scale = true;                                 // embedded_gaussian: scores / sqrt(m)
  /// Total max-pool factors of g and of φ (of x itself in gaussian mode): ONE pool of kernel = stride =
  /// factor, floor mode. mmcv's sub_sample = 2; mmrazor's double pooling MaxPool(s)∘MaxPool(2) = 2 s
  /// (floor(floor(H / 2) / s) = floor(H / (2 s)) and a max of maxima over the nested windows is the max
  /// over the union: docs/ops/non_local.md); official FBKD: the per-level s. 1: no pooling.
  std::int64_t pool_g = 1, pool_phi = 1;
  /// conv_out followed by BN (mmcv with norm_cfg=dict(type='BN'), mmrazor, the official W = conv + BN);
  /// false: z = x + W y, mmcv NonLocal2d's default norm_cfg=None (then every bn_* view must be absent).
  bool norm = true;
  bool training = true;  // BN with batch statistics (true) or the running statistics (false)
  double bn_eps = 1e-5;
  GradAccumulate param_grads{};  // every parameter gradient: grad = beta * grad + dL/dparam
};

/// Arguments of ops::non_local. x [B, C, H, W] (any strides where H and W merge: contiguous or
/// channels-last); g_weight [m, C] or [m, C, 1, 1] (mmcv's g.conv.weight as it is), g_bias [m] (optional);
/// theta_weight/theta_bias and phi_weight/phi_bias likewise (absent in gaussian mode, present otherwise);
/// concat_project_weight [2m] or [1, 2m, 1, 1] (concatenation only); conv_out_weight [C, m] or [C, m, 1, 1],
/// conv_out_bias [C] (optional: mmcv's ConvModule before a BN has none, the official W.0 has one);
/// bn_weight, bn_bias [C] (optional: γ = 1, β = 0); bn_running_mean/var [C] (evaluation mode).
/// Outputs: z like x (forward); bn_batch_mean, bn_batch_var [C] (training forward, optional; the variance
/// is the unbiased one PyTorch folds into running_var, ops::batch_norm_update_running_stats); backward
/// reads grad_z (like x) and writes grad_x and the parameter gradients present (shapes of their parameters).
/// reserve: what forward keeps for backward (non_local_reserve_bytes); backward recomputes it into the
/// workspace when absent.
///
///   // official FBKD level 2 (C = 256, m = 128, s = 2), dot product, one image of 32 x 48
///   kdloss::ops::NonLocalArgs<float> nl;
///   nl.x = kdloss::host_view<const float>(feat, {1, 256, 32, 48});
///   nl.g_weight = kdloss::host_view<const float>(w, {128, 256});   // g.conv.weight ([128, 256, 1, 1] also works)
///   nl.theta_weight = kdloss::host_view<const float>(p, {128, 256});
///   nl.phi_weight = kdloss::host_view<const float>(q, {128, 256});
///   nl.conv_out_weight = kdloss::host_view<const float>(k, {256, 128});
///   nl.conv_out_bias = kdloss::host_view<const float>(b, {256});
///   nl.bn_weight = kdloss::host_view<const float>(a, {256});           // W.1.weight, initialised to 0
///   nl.bn_bias = kdloss::host_view<const float>(t, {256});
///   nl.z = kdloss::host_view(out, {1, 256, 32, 48});
///   nl.options = kdloss::ops::non_local_fbkd_options(2);
template <class T>
struct NonLocalArgs {
  View<const T> x{};
  View<const T> g_weight{}, g_bias{};
  View<const T> theta_weight{}, theta_bias{};
  View<const T> phi_weight{}, phi_bias{};
  View<const T> concat_project_weight{};
  View<const T> conv_out_weight{}, conv_out_bias{};
  View<const T> bn_weight{}, bn_bias{};
  View<const T> bn_running_mean{}, bn_running_var{};
  View<T> z{};
  View<T> bn_batch_mean{}, bn_batch_var{};
  View<const T> grad_z{};
  View<T> grad_x{};
  View<T> grad_g_weight{}, grad_g_bias{};
  View<T> grad_theta_weight{}, grad_theta_bias{};
  View<T> grad_phi_weight{}, grad_phi_bias{};
  View<T> grad_concat_project_weight{};
  View<T> grad_conv_out_weight{}, grad_conv_out_bias{};
  View<T> grad_bn_weight{}, grad_bn_bias{};
  Reserve reserve{};
  NonLocalOptions options{};
};

/// mmcv NonLocal2d(in_channels, reduction, mode, sub_sample) and mmrazor's NonLocal2dMaxpoolNstride
/// (maxpool_stride > 1; mmcv itself: 1): m = max(C / reduction, 1) (the caller's weights carry it), the
/// pool factors 2 * maxpool_stride with sub_sample (1 without), BN in training mode. mmrazor's gaussian
/// mode pools g by 2 s and φ by s and raises on every input; this preset gives the consistent form, both
/// pooled by 2 s.
///
///   auto o = kdloss::ops::non_local_mmcv_options(kdloss::ops::NonLocalMode::dot_product, true, 8);  // pools by 16
inline NonLocalOptions non_local_mmcv_options(NonLocalMode mode, bool sub_sample = true,
                                              std::int64_t maxpool_stride = 1, bool use_scale = true) {
  NonLocalOptions o;
  o.mode = mode;
  o.use_scale = use_scale;
  o.pool_g = o.pool_phi = sub_sample ? 2 * maxpool_stride : 1;
  return o;
}

/// The official FBKD NonLocalBlockND of pyramid level `level` (0 = the finest distilled level): dot
/// product, sub-sample factor 8, 4, 2, 2, 2 (the caller's weights carry m = 64, 64, 128, 128, 128),
/// conv_out with bias, BN in training mode (initialised to γ = β = 0 by the caller).
///
///   auto o = kdloss::ops::non_local_fbkd_options(0);   // pool 8
inline NonLocalOptions non_local_fbkd_options(int level) {
  NonLocalOptions o;
  o.mode = NonLocalMode::dot_product;
  o.pool_g = o.pool_phi = level <= 0 ? 8 : level == 1 ? 4 : 2;
  return o;
}
/// Inter channels m of the official FBKD block at `level` (64, 64, 128, 128, 128).
inline std::int64_t non_local_fbkd_inter_channels(int level) { return level <= 1 ? 64 : 128; }

namespace detail {

inline constexpr EntryNames kNonLocalNames{"kdloss::ops::non_local", "kdloss::ops::non_local_backward",
                                           "kdloss::ops::non_local_forward_backward"};

/// A 1x1 convolution weight as the [out, in] matrix ops::linear reads ([out, in, 1, 1] viewed as [out, in]).
template <class U>
View<U> conv_matrix(const View<U>& w) {
  if (w.rank() == 4 && w.shape[2] == 1 && w.shape[3] == 1)
    return View<U>(w.data, Dims{w.shape[0], w.shape[1]}, Dims{w.strides[0], w.strides[1]}, w.device);
  return w;
}

/// concat_project's weight as the [2m] vector ([1, 2m, 1, 1] viewed as [2m]), so the weight and its
/// gradient may come in either shape.
template <class U>
View<U> flat_projection(const View<U>& w) {
  if (w.rank() == 4 && w.shape[0] == 1 && w.shape[2] == 1 && w.shape[3] == 1)
    return View<U>(w.data, Dims{w.shape[1]}, Dims{w.strides[1]}, w.device);
  return w;
}

struct NonLocalDims {
  std::int64_t B = 0, C = 0, H = 0, W = 0, m = 0, e = 0, Hp = 0, Wp = 0;
  bool gaussian = false, softmax = false, concat = false;
  std::int64_t N() const { return H * W; }
  std::int64_t Np() const { return Hp * Wp; }
};

template <class T>
NonLocalDims non_local_dims(const NonLocalArgs<T>& a) {
  NonLocalDims d;
  d.B = a.x.shape[0];
  d.C = a.x.shape[1];
  d.H = a.x.shape[2];
  d.W = a.x.shape[3];
  d.m = a.g_weight.shape[0];
  d.gaussian = a.options.mode == NonLocalMode::gaussian;
  d.softmax = d.gaussian || a.options.mode == NonLocalMode::embedded_gaussian;
  d.concat = a.options.mode == NonLocalMode::concatenation;
  d.e = d.gaussian ? d.C : d.m;
  d.Hp = d.H / a.options.pool_phi;
  d.Wp = d.W / a.options.pool_phi;
  return d;
}

/// Runs `f`, rethrowing a kdloss::Error of an inner op prefixed with the block's name and the step.
template <class F>
auto named_step(const char* fn, const char* step, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw Error(std::string(fn) + ": in the block's " + step + ": " + e.what());
  }
}

/// A stand-in address for size queries: non-null, distinct per k, never dereferenced.
template <class T>
T* size_only(std::size_t k) {
  return reinterpret_cast<T*>(static_cast<std::uintptr_t>(kdloss::detail::kWorkspaceAlignment * (k + 1)));
}

template <class T>
View<T> map_view(T* p, std::int64_t b, std::int64_t c, std::int64_t h, std::int64_t w, Device dev) {
  return View<T>(p, Dims{b, c, h, w}, contiguous_strides(Dims{b, c, h, w}), dev);
}

/// The reserve's byte sizes, in layout order (each piece 256-byte aligned; see non_local_reserve_bytes).
struct NonLocalReserveSizes {
  std::size_t theta = 0, phi = 0, g = 0, argmax_phi = 0, argmax_g = 0, y = 0, lse = 0, bn = 0;
};

template <class T>
NonLocalReserveSizes non_local_reserve_sizes(const char* fn, const NonLocalArgs<T>& a, const NonLocalDims& d) {
  NonLocalReserveSizes s;
  const Device dev = a.x.device;
  const std::size_t el = sizeof(T);
  const auto count = [](std::int64_t n) { return static_cast<std::size_t>(n); };
  const std::int64_t B = d.B, N = d.N(), Np = d.Np();
  if (!d.gaussian) s.theta = count(B * d.m * N) * el;
  if (!d.gaussian || a.options.pool_phi > 1) s.phi = count(B * d.e * Np) * el;
  s.g = count(B * d.m * Np) * el;
  if (a.options.pool_phi > 1)
    s.argmax_phi = named_step(fn, "phi max pooling (options.pool_phi)", [&] {
      MaxPool2dArgs<T> p;
      p.x = map_view<const T>(size_only<const T>(0), B, d.e, d.H, d.W, dev);
      p.options.stride = a.options.pool_phi;
      return max_pool2d_reserve_bytes(p);
    });
  if (a.options.pool_g > 1)
    s.argmax_g = named_step(fn, "g max pooling (options.pool_g)", [&] {
      MaxPool2dArgs<T> p;
      p.x = map_view<const T>(size_only<const T>(0), B, d.m, d.H, d.W, dev);
      p.options.stride = a.options.pool_g;
      return max_pool2d_reserve_bytes(p);
    });
  s.y = count(B * d.m * N) * el;
  if (d.softmax && Np > 0) {
    SoftmaxRelationArgs<T> r;
    r.theta = View<const T>(size_only<const T>(0), Dims{B, N, d.e}, Dims{N * d.e, d.e, 1}, dev);
    r.phi = View<const T>(size_only<const T>(1), Dims{B, Np, d.e}, Dims{Np * d.e, d.e, 1}, dev);
    r.g = View<const T>(size_only<const T>(2), Dims{B, Np, d.m}, Dims{Np * d.m, d.m, 1}, dev);
    s.lse = softmax_relation_reserve_bytes(r);
  }
  if (a.options.norm && a.options.training) {
    BatchNormArgs<T> bn;
    bn.x = map_view<const T>(size_only<const T>(0), B, d.C, d.H, d.W, dev);
    bn.options.training = true;
    s.bn = batch_norm_reserve_bytes(bn);
  }
  return s;
}

/// Where every intermediate lives: the reserve-resident state (θ(x), the pooled φ and g maps, the argmaxes,
/// y, the log-sum-exp, BN's statistics) and the workspace buffers (`wide`: the unpooled g / φ maps, then
/// W y, then the backward's unpooled gradients; grad y; the pooled maps' gradients; grad (W y) when
/// grad_x is absent; the inner ops' scratch). W y is not kept: backward recomputes it from y (one 1x1
/// convolution) rather than hold B C H W values from forward to backward.
template <class T>
struct NonLocalPlan {
  NonLocalDims d;
  bool recompute = false;  // backward without a reserve: the state is rebuilt in the workspace first
  T *theta = nullptr, *phi = nullptr, *g = nullptr, *y = nullptr;
  Reserve argmax_phi{}, argmax_g{}, lse{}, bn{};
  T *wide = nullptr;  // [B, max(C, m), H, W]: g(x) / φ(x) before pooling, W y, then the unpooled gradients
  T *gy = nullptr;    // [B, m, H, W]: grad y
  T *gwy = nullptr;   // [B, C, H, W]: grad (W y) when grad_x is absent (else it lives in grad_x for a while)
  T *gphi = nullptr, *gg = nullptr;  // [B, e, H', W'], [B, m, H', W']: gradients of the pooled maps
  void* scratch = nullptr;
  std::size_t scratch_bytes = 0;
};

/// Carves the state from `state` and the buffers of `mode` from `ws` (null bases count only).
template <class T>
void carve_non_local(NonLocalPlan<T>& p, const NonLocalReserveSizes& s, const NonLocalArgs<T>& a, Mode mode,
                     kdloss::detail::Carver& state, kdloss::detail::Carver& ws) {
  const NonLocalDims& d = p.d;
  const auto take = [](kdloss::detail::Carver& c, std::size_t bytes) -> unsigned char* {
    return bytes ? c.take<unsigned char>(bytes) : nullptr;
  };
  const auto piece = [&](kdloss::detail::Carver& c, std::size_t bytes) { return Reserve{take(c, bytes), bytes}; };
  kdloss::detail::Carver& st = a.reserve.data == nullptr ? ws : state;
  p.theta = reinterpret_cast<T*>(take(st, s.theta));
  p.phi = reinterpret_cast<T*>(take(st, s.phi));
  p.g = reinterpret_cast<T*>(take(st, s.g));
  p.argmax_phi = piece(st, s.argmax_phi);
  p.argmax_g = piece(st, s.argmax_g);
  p.y = reinterpret_cast<T*>(take(st, s.y));
  p.lse = piece(st, s.lse);
  p.bn = piece(st, s.bn);
  const std::size_t el = sizeof(T);
  const auto count = [](std::int64_t n) { return static_cast<std::size_t>(n); };
  const bool fwd = writes_value(mode) || p.recompute;
  const std::int64_t B = d.B, N = d.N(), Np = d.Np();
  const bool unpooled = a.options.pool_g > 1 || (!d.gaussian && a.options.pool_phi > 1);
  if ((fwd && unpooled) || (writes_value(mode) && a.options.norm) || writes_gradients(mode))
    p.wide = reinterpret_cast<T*>(take(ws, count(B * std::max(d.C, d.m) * N) * el));
  if (writes_gradients(mode) && a.options.norm && absent(a.grad_x))
    p.gwy = reinterpret_cast<T*>(take(ws, count(B * d.C * N) * el));
  if (writes_gradients(mode)) {
    p.gy = reinterpret_cast<T*>(take(ws, count(B * d.m * N) * el));
    p.gphi = reinterpret_cast<T*>(take(ws, count(B * d.e * Np) * el));
    p.gg = reinterpret_cast<T*>(take(ws, count(B * d.m * Np) * el));
  }
}

/// z = a + b elementwise (the residual), or z = a (b absent).
struct ResidualAdd {
  template <class A, class B, class O>
  KDLOSS_HOST_DEVICE void operator()(const A& a, const B& b, O& out) const {
    out = a + b;
  }
};
struct CopyMap {
  template <class A, class O>
  KDLOSS_HOST_DEVICE void operator()(const A& a, O& out) const {
    out = a;
  }
};

/// Backward through a max-pooled 1x1 projection, pool(W x + b) (g and φ with a pool factor s > 1): the
/// pooling's backward into the unpooled map, then the projection's backward (grad_x += W^T grad, W's and
/// b's gradients). The GPU runs these two ops as they are. The host runs them fused
/// (pooled_projection_back): the unpooled gradient is zero except at each window's argmax, one position in
/// s^2 per channel, so it gathers x at the argmaxes instead of running two dense products over B C H W
/// values that are mostly zero (at FBKD's P2, s = 8: 64 times less work than the dense products).
template <class T>
struct PooledProjectionBack {
  MaxPool2dArgs<T> pool;  // x: the unpooled map's shape; grad_y: the pooled map's gradient; grad_x: the unpooled gradient
  LinearArgs<T> lin;      // x, weight; grad_y: that unpooled gradient; grad_x, grad_weight, grad_bias
  const char* lin_label = "";  // the projection's step name (the pooling's is the step's label)
};

/// The host's fused form of a PooledProjectionBack (expr/pooled_projection.hpp).
template <class T>
expr::PooledProjectionBackPass<T> fused_pass(const PooledProjectionBack<T>& st) {
  expr::PooledProjectionBackPass<T> P;
  P.x = st.lin.x;
  P.grad_y = st.pool.grad_y;
  P.weight = st.lin.weight;
  P.argmax = st.pool.reserve.data;
  P.narrow_argmax = max_pool_index_bytes(st.pool.options.stride) == 1;
  P.stride = st.pool.options.stride;
  P.grad_x = st.lin.grad_x;  // its beta is 1 (non_local_steps): the pass accumulates
  P.grad_weight = st.lin.grad_weight;
  P.grad_bias = st.lin.grad_bias;
  P.param_beta = st.lin.options.param_grads.beta;
  return P;
}

/// An elementwise step of the block: out = a + b, or out = a when b is absent.
template <class T>
struct AddStep {
  View<const T> a, b;
  View<T> out;
};

/// Calls f(step, label, step_mode) for every inner op `mode` runs, in order (f(AddStep, label) for the
/// elementwise steps): the one list that sizes the workspace, checks the inner ops and runs them.
template <class T, class F>
void non_local_steps(const NonLocalArgs<T>& a, const NonLocalPlan<T>& p, Mode mode, F&& f) {
  const NonLocalDims& d = p.d;
  const Device dev = a.x.device;
  const NonLocalOptions& o = a.options;
  const std::int64_t B = d.B, H = d.H, W = d.W;
  const auto map = [&](T* ptr, std::int64_t c, std::int64_t h, std::int64_t w) { return map_view<T>(ptr, B, c, h, w, dev); };
  const auto cmap = [&](T* ptr, std::int64_t c, std::int64_t h, std::int64_t w) {
    return View<const T>(map_view<T>(ptr, B, c, h, w, dev));
  };
  const View<T> theta_map = d.gaussian ? View<T>{} : map(p.theta, d.m, H, W);
  const View<const T> theta_in = d.gaussian ? a.x : View<const T>(theta_map);
  const View<const T> phi_in = (d.gaussian && o.pool_phi == 1) ? a.x : cmap(p.phi, d.e, d.Hp, d.Wp);
  const View<const T> g_in = cmap(p.g, d.m, d.Hp, d.Wp);
  const View<T> y_map = map(p.y, d.m, H, W), wy_map = map(p.wide, d.C, H, W);
  const LinearOptions lin_fwd{o.param_grads, {}};
  const auto projection = [&](const View<const T>& w, const View<const T>& b, const View<T>& out) {
    LinearArgs<T> l;
    l.x = a.x;
    l.weight = conv_matrix(w);
    l.bias = b;
    l.y = out;
    l.options = lin_fwd;
    return l;
  };
  const auto pool = [&](const View<const T>& in, const View<T>& out, std::int64_t s, const Reserve& keep) {
    MaxPool2dArgs<T> m;
    m.x = in;
    m.y = out;
    m.reserve = keep;
    m.options.stride = s;
    return m;
  };
  BatchNormArgs<T> bn;
  bn.x = wy_map;
  bn.weight = a.bn_weight;
  bn.bias = a.bn_bias;
  bn.running_mean = a.bn_running_mean;
  bn.running_var = a.bn_running_var;
  bn.reserve = p.bn;
  bn.options.training = o.training;
  bn.options.eps = o.bn_eps;
  bn.options.param_grads = o.param_grads;
  const auto conv_out_forward = [&](const View<T>& out) {
    LinearArgs<T> l;
    l.x = y_map;
    l.weight = conv_matrix(a.conv_out_weight);
    l.bias = a.conv_out_bias;
    l.y = out;
    return l;
  };
  const double scale = o.mode == NonLocalMode::embedded_gaussian && o.use_scale
                           ? 1.0 / std::sqrt(static_cast<double>(d.m)) : 1.0;

  // The relation step: forward writes y; backward reads grad y (and y, the log-sum-exp) and writes the
  // gradients given (and concat_project's).
  const View<T> gy_map = map(p.gy, d.m, H, W);
  const auto relation_step = [&](Mode sm, const View<T>& gth, const View<T>& gph, const View<T>& ggv) {
    const auto fill = [&](auto& r) {
      r.theta = relation_operand(theta_in);
      r.phi = relation_operand(phi_in);
      r.g = relation_operand(g_in);
      if (sm == Mode::forward) {
        r.y = relation_operand(y_map);
        return;
      }
      r.grad_y = relation_operand(View<const T>(gy_map));
      if (present(gth)) r.grad_theta = relation_operand(gth);
      if (present(gph)) r.grad_phi = relation_operand(gph);
      if (present(ggv)) r.grad_g = relation_operand(ggv);
    };
    if (d.softmax) {
      SoftmaxRelationArgs<T> r;
      fill(r);
      r.y = relation_operand(y_map);
      r.reserve = p.lse;
      r.options.scale = scale;
      f(r, "softmax relation", sm);
    } else if (d.concat) {
      ConcatRelationArgs<T> r;
      fill(r);
      r.weight = flat_projection(a.concat_project_weight);
      if (sm == Mode::backward) r.grad_weight = flat_projection(a.grad_concat_project_weight);
      r.options.param_grads = o.param_grads;
      f(r, "concatenation relation (concat_project_weight)", sm);
    } else {
      DotRelationArgs<T> r;
      fill(r);
      f(r, "dot-product relation", sm);
    }
  };

  if (writes_value(mode) || p.recompute) {
    const View<T> g_full = o.pool_g > 1 ? map(p.wide, d.m, H, W) : map(p.g, d.m, H, W);
    f(projection(a.g_weight, a.g_bias, g_full), "g projection (g_weight, g_bias)", Mode::forward);
    if (o.pool_g > 1)
      f(pool(g_full, map(p.g, d.m, d.Hp, d.Wp), o.pool_g, p.argmax_g), "g max pooling (options.pool_g)", Mode::forward);
    if (!d.gaussian) {
      f(projection(a.theta_weight, a.theta_bias, theta_map), "theta projection (theta_weight, theta_bias)",
        Mode::forward);
      const View<T> phi_full = o.pool_phi > 1 ? map(p.wide, d.m, H, W) : map(p.phi, d.m, H, W);
      f(projection(a.phi_weight, a.phi_bias, phi_full), "phi projection (phi_weight, phi_bias)", Mode::forward);
      if (o.pool_phi > 1)
        f(pool(phi_full, map(p.phi, d.m, d.Hp, d.Wp), o.pool_phi, p.argmax_phi), "phi max pooling (options.pool_phi)",
          Mode::forward);
    } else if (o.pool_phi > 1) {
      f(pool(a.x, map(p.phi, d.C, d.Hp, d.Wp), o.pool_phi, p.argmax_phi), "phi max pooling of x (options.pool_phi)",
        Mode::forward);
    }
    relation_step(Mode::forward, {}, {}, {});
    // A recompute stops at y: backward recomputes W y itself, and BN's statistics from it.
    if (writes_value(mode)) {
      f(conv_out_forward(o.norm ? wy_map : a.z), "conv_out projection (conv_out_weight, conv_out_bias)", Mode::forward);
      BatchNormArgs<T> n = bn;
      n.y = a.z;
      n.batch_mean = a.bn_batch_mean;
      n.batch_var = a.bn_batch_var;
      if (o.norm) f(n, "batch norm (bn_weight, bn_bias)", Mode::forward);
      f(AddStep<T>{a.x, a.z, a.z}, "residual", Mode::forward);
    }
  }
  if (!writes_gradients(mode)) return;

  const bool gx = present(a.grad_x);
  const bool need_theta = gx || (!d.gaussian && (present(a.grad_theta_weight) || present(a.grad_theta_bias)));
  const bool need_phi = gx || (!d.gaussian && (present(a.grad_phi_weight) || present(a.grad_phi_bias)));
  const bool need_g = gx || present(a.grad_g_weight) || present(a.grad_g_bias);
  const bool need_w = d.concat && present(a.grad_concat_project_weight);
  const bool need_rel = need_theta || need_phi || need_g || need_w;
  const bool need_wy = need_rel || present(a.grad_conv_out_weight) || present(a.grad_conv_out_bias);
  // grad (W y) lives in grad_x (when present) until the residual gradient overwrites it.
  const View<T> gwy = gx ? a.grad_x : map(p.gwy, d.C, H, W);
  if (o.norm && (need_wy || present(a.grad_bn_weight) || present(a.grad_bn_bias))) {
    f(conv_out_forward(wy_map), "conv_out projection (recomputed W y)", Mode::forward);
    BatchNormArgs<T> n = bn;
    if (p.recompute) n.reserve = {};  // statistics recomputed from W y
    n.grad_y = a.grad_z;
    if (need_wy) n.grad_x = gwy;
    n.grad_weight = a.grad_bn_weight;
    n.grad_bias = a.grad_bn_bias;
    f(n, "batch norm (bn_weight, bn_bias)", Mode::backward);
  }
  if (need_wy) {
    LinearArgs<T> out;
    out.x = y_map;
    out.weight = conv_matrix(a.conv_out_weight);
    out.grad_y = o.norm ? View<const T>(gwy) : a.grad_z;
    if (need_rel) out.grad_x = gy_map;
    out.grad_weight = conv_matrix(a.grad_conv_out_weight);
    out.grad_bias = a.grad_conv_out_bias;
    out.options.param_grads = o.param_grads;
    f(out, "conv_out projection (conv_out_weight, conv_out_bias)", Mode::backward);
  }
  if (gx) f(AddStep<T>{a.grad_z, {}, a.grad_x}, "residual gradient", Mode::backward);
  if (!need_rel) return;
  const View<T> gtheta_map = map(p.wide, d.e, H, W);
  const View<T> gphi_map = map(p.gphi, d.e, d.Hp, d.Wp), gg_map = map(p.gg, d.m, d.Hp, d.Wp);
  relation_step(Mode::backward, need_theta ? gtheta_map : View<T>{}, need_phi ? gphi_map : View<T>{},
                need_g ? gg_map : View<T>{});
  // Back through a projection of x: grad_x += W^T grad (grad_x already holds grad_z), and W's gradients.
  const auto projection_back = [&](const View<const T>& w, const View<const T>& grad, const View<T>& gw,
                                   const View<T>& gb, const char* label) {
    LinearArgs<T> l;
    l.x = a.x;
    l.weight = conv_matrix(w);
    l.grad_y = grad;
    l.grad_x = a.grad_x;
    l.grad_weight = conv_matrix(gw);
    l.grad_bias = gb;
    l.options = {o.param_grads, {1.0}};
    if (present(l.grad_x) || present(l.grad_weight) || present(l.grad_bias)) f(l, label, Mode::backward);
  };
  // Back through a max pooling into `into` (overwrites, or adds with beta 1), from the kept argmax: the
  // pooled map's values are not read, only its shape (y's state map [B, m, H, W] stands in for the
  // unpooled g / φ maps, which forward does not keep).
  const auto pool_back = [&](const View<const T>& in, const View<const T>& grad, const View<T>& into, std::int64_t s,
                             const Reserve& keep, double beta, const char* label) {
    MaxPool2dArgs<T> m;
    m.x = in;
    m.grad_y = grad;
    m.grad_x = into;
    m.reserve = keep;
    m.options.stride = s;
    m.options.input_grad.beta = beta;
    f(m, label, Mode::backward);
  };
  // Back through a projection of x that a pooling follows: one fused step (PooledProjectionBack) with
  // the pooling's backward into `wide` and the projection's backward from it; without pooling, the
  // projection's backward from the map itself.
  const auto pooled_projection_step = [&](const View<const T>& w, const View<T>& grad, const View<T>& gw,
                                          const View<T>& gb, std::int64_t s, const Reserve& keep,
                                          const char* pool_label, const char* label) {
    if (s == 1) {
      projection_back(w, View<const T>(map(grad.data, d.m, H, W)), gw, gb, label);
      return;
    }
    const View<T> full = map(p.wide, d.m, H, W);
    PooledProjectionBack<T> st;
    st.pool.x = y_map;  // shape only: the unpooled map is not kept
    st.pool.grad_y = grad;
    st.pool.grad_x = full;
    st.pool.reserve = keep;
    st.pool.options.stride = s;
    st.lin.x = a.x;
    st.lin.weight = conv_matrix(w);
    st.lin.grad_y = full;
    st.lin.grad_x = a.grad_x;
    st.lin.grad_weight = conv_matrix(gw);
    st.lin.grad_bias = gb;
    st.lin.options = {o.param_grads, {1.0}};
    st.lin_label = label;
    if (present(st.lin.grad_x) || present(st.lin.grad_weight) || present(st.lin.grad_bias)) f(st, pool_label, Mode::backward);
  };
  if (d.gaussian) {
    if (gx) {
      f(AddStep<T>{a.grad_x, gtheta_map, a.grad_x}, "theta = x gradient", Mode::backward);
      if (o.pool_phi > 1)
        pool_back(a.x, gphi_map, a.grad_x, o.pool_phi, p.argmax_phi, 1.0, "phi max pooling of x (options.pool_phi)");
      else
        f(AddStep<T>{a.grad_x, gphi_map, a.grad_x}, "phi = x gradient", Mode::backward);
    }
  } else {
    if (need_theta)
      projection_back(a.theta_weight, gtheta_map, a.grad_theta_weight, a.grad_theta_bias,
                      "theta projection (theta_weight, theta_bias)");
    if (need_phi)
      pooled_projection_step(a.phi_weight, gphi_map, a.grad_phi_weight, a.grad_phi_bias, o.pool_phi, p.argmax_phi,
                             "phi max pooling (options.pool_phi)", "phi projection (phi_weight, phi_bias)");
  }
  if (need_g)
    pooled_projection_step(a.g_weight, gg_map, a.grad_g_weight, a.grad_g_bias, o.pool_g, p.argmax_g,
                           "g max pooling (options.pool_g)", "g projection (g_weight, g_bias)");
}

/// The block's own checks (the inner ops check the rest, named by step, before anything is written).
template <class T>
NonLocalDims check_non_local_args(const char* fn, const NonLocalArgs<T>& a, Mode mode) {
  const kdloss::detail::Checker ck{fn};
  using kdloss::detail::require;
  const NonLocalOptions& o = a.options;
  require(present(a.x), fn, ": argument 'x' is absent");
  ck.rank(a.x, "x", 4);
  ck.not_null(a.x, "x");
  require(present(a.g_weight), fn, ": argument 'g_weight' is absent; every mode has the g projection");
  require(a.g_weight.rank() == 2 || a.g_weight.rank() == 4, fn, ": argument 'g_weight' must be [m, C] or [m, C, 1, 1] "
          "but has shape ", a.g_weight.shape.str());
  require(o.pool_g >= 1 && o.pool_phi >= 1, fn, ": arguments 'options.pool_g' (", o.pool_g, ") and 'options.pool_phi' (",
          o.pool_phi, ") must be at least 1");
  const NonLocalDims d = non_local_dims(a);
  require(d.m >= 1, fn, ": argument 'g_weight' ", a.g_weight.shape.str(), " has no inter channels (m = 0)");
  const Dims wshape = conv_matrix(a.g_weight).shape;
  require(wshape == Dims{d.m, d.C}, fn, ": argument 'g_weight' has shape ", a.g_weight.shape.str(), " but 'x' ",
          a.x.shape.str(), " needs [m, ", d.C, "] or [m, ", d.C, ", 1, 1]");
  const auto conv = [&](const View<const T>& w, const char* name, const Dims& shape) {
    require(conv_matrix(w).shape == shape, fn, ": argument '", name, "' has shape ", w.shape.str(), " but needs ",
            shape.str(), " (or with trailing 1, 1): m = ", d.m, " from 'g_weight', C = ", d.C, " from 'x' ",
            a.x.shape.str());
  };
  if (d.gaussian) {
    for (const auto& [v, name] : {std::pair{&a.theta_weight, "theta_weight"}, std::pair{&a.theta_bias, "theta_bias"},
                                  std::pair{&a.phi_weight, "phi_weight"}, std::pair{&a.phi_bias, "phi_bias"}})
      require(absent(*v), fn, ": argument '", name, "' is given but gaussian mode has no theta/phi projections "
              "(theta = x, phi = x or its pooled map)");
  } else {
    require(present(a.theta_weight) && present(a.phi_weight), fn, ": mode ", to_string(o.mode),
            " needs 'theta_weight' and 'phi_weight'");
    conv(a.theta_weight, "theta_weight", Dims{d.m, d.C});
    conv(a.phi_weight, "phi_weight", Dims{d.m, d.C});
  }
  require(d.concat == present(a.concat_project_weight), fn, ": argument 'concat_project_weight' ",
          d.concat ? "is absent but mode concatenation needs it" : "is given but only mode concatenation uses it");
  require(present(a.conv_out_weight), fn, ": argument 'conv_out_weight' is absent");
  if (!o.norm)
    for (const auto& [v, name] : {std::pair{present(a.bn_weight), "bn_weight"}, std::pair{present(a.bn_bias), "bn_bias"},
                                  std::pair{present(a.bn_running_mean), "bn_running_mean"},
                                  std::pair{present(a.bn_running_var), "bn_running_var"},
                                  std::pair{present(a.bn_batch_mean), "bn_batch_mean"},
                                  std::pair{present(a.bn_batch_var), "bn_batch_var"},
                                  std::pair{present(a.grad_bn_weight), "grad_bn_weight"},
                                  std::pair{present(a.grad_bn_bias), "grad_bn_bias"}})
      require(!v, fn, ": argument '", name, "' is given but options.norm is false (z = x + W y, no BN)");
  conv(a.conv_out_weight, "conv_out_weight", Dims{d.C, d.m});
  // φ and g must land on one key grid (mmrazor's gaussian mode pools them by 2 s and s and fails here).
  require(d.H / o.pool_g == d.Hp && d.W / o.pool_g == d.Wp, fn, ": 'options.pool_g' = ", o.pool_g,
          " and 'options.pool_phi' = ", o.pool_phi, " pool 'x' ", a.x.shape.str(), " to different key grids [",
          d.H / o.pool_g, ", ", d.W / o.pool_g, "] and [", d.Hp, ", ", d.Wp, "]; g and phi need the same N'");
  require(o.mode == NonLocalMode::embedded_gaussian || o.mode == NonLocalMode::gaussian ||
              o.mode == NonLocalMode::dot_product || o.mode == NonLocalMode::concatenation,
          fn, ": argument 'options.mode' is not a NonLocalMode");
  if (writes_value(mode)) {
    require(present(a.z), fn, ": mode ", to_string(mode), " writes 'z' but it is absent");
    ck.not_null(a.z, "z");
    ck.shape(a.z, "z", a.x.shape);
    ck.device(a.z, "z", a.x.device);
    ck.unique(a.z, "z");
    ck.disjoint(a.z, "z", a.x, "x");
  }
  if (writes_gradients(mode)) {
    require(present(a.grad_z), fn, ": mode ", to_string(mode), " reads 'grad_z' but it is absent");
    ck.shape(a.grad_z, "grad_z", a.x.shape);
    ck.device(a.grad_z, "grad_z", a.x.device);
    if (present(a.grad_x)) {
      ck.not_null(a.grad_x, "grad_x");
      ck.shape(a.grad_x, "grad_x", a.x.shape);
      ck.device(a.grad_x, "grad_x", a.x.device);
      ck.unique(a.grad_x, "grad_x");
      ck.disjoint(a.grad_x, "grad_x", a.x, "x");
      ck.disjoint(a.grad_x, "grad_x", a.grad_z, "grad_z");
      if (present(a.z)) ck.disjoint(a.grad_x, "grad_x", a.z, "z");
    }
  }
  if (a.reserve.data != nullptr) {
    const std::size_t need = non_local_state_bytes(non_local_reserve_sizes(fn, a, d));
    require(a.reserve.bytes >= need, fn, ": argument 'reserve' has ", a.reserve.bytes, " bytes but this call needs ", need,
            " (non_local_reserve_bytes)");
    require(reinterpret_cast<std::uintptr_t>(a.reserve.data) % kdloss::detail::kWorkspaceAlignment == 0, fn,
            ": argument 'reserve' must be aligned to ", kdloss::detail::kWorkspaceAlignment, " bytes");
  }
  kdloss::detail::require_backend<T>(fn, a.x.device);
  return d;
}

/// Total bytes of the state (each piece 256-byte aligned).
inline std::size_t non_local_state_bytes(const NonLocalReserveSizes& s) {
  std::size_t need = 0;
  for (std::size_t b : {s.theta, s.phi, s.g, s.argmax_phi, s.argmax_g, s.y, s.lse, s.bn})
    need += b ? kdloss::detail::align_up(b) : 0;
  return need;
}

/// The plan of `mode` with the state in the reserve (when given) or the workspace at `ws_base`, and the
/// inner ops' scratch after the block's own buffers. A null ws_base plans on stand-in addresses (size
/// queries and checks: nothing is dereferenced), and *ws_bytes gets the workspace the call needs.
template <class T>
NonLocalPlan<T> non_local_plan(const char* fn, const NonLocalArgs<T>& a, const NonLocalDims& d, Mode mode,
                               void* ws_base, std::size_t* ws_bytes) {
  NonLocalPlan<T> p;
  p.d = d;
  p.recompute = mode == Mode::backward && a.reserve.data == nullptr;
  const NonLocalReserveSizes s = non_local_reserve_sizes(fn, a, d);
  const std::size_t state_bytes = non_local_state_bytes(s);
  unsigned char* stand_in = static_cast<unsigned char*>(size_only<void>(0));
  void* state_base = a.reserve.data ? a.reserve.data : stand_in;
  void* base = ws_base ? ws_base : stand_in + kdloss::detail::align_up(state_bytes + 1);
  kdloss::detail::Carver state(state_base), ws(base);
  carve_non_local(p, s, a, mode, state, ws);
  const std::size_t own = ws.bytes();
  std::size_t scratch = 0;
  non_local_steps(a, p, mode, [&](const auto& step, const char* label, Mode) {
    using S = std::decay_t<decltype(step)>;
    std::size_t b = 0;
    if constexpr (std::is_same_v<S, LinearArgs<T>>) b = named_step(fn, label, [&] { return linear_workspace_bytes(step); });
    if constexpr (std::is_same_v<S, PooledProjectionBack<T>>)
      b = std::max(kdloss::detail::pooled_projection_back_bytes(fused_pass(step)),
                   named_step(fn, step.lin_label, [&] { return linear_workspace_bytes(step.lin); }));
    if constexpr (std::is_same_v<S, BatchNormArgs<T>>)
      b = named_step(fn, label, [&] { return batch_norm_workspace_bytes(step); });
    if constexpr (std::is_same_v<S, SoftmaxRelationArgs<T>>)
      b = named_step(fn, label, [&] { return softmax_relation_workspace_bytes(step); });
    if constexpr (std::is_same_v<S, DotRelationArgs<T>>)
      b = named_step(fn, label, [&] { return dot_relation_workspace_bytes(step); });
    if constexpr (std::is_same_v<S, ConcatRelationArgs<T>>)
      b = named_step(fn, label, [&] { return concat_relation_workspace_bytes(step); });
    scratch = std::max(scratch, b);  // max pooling and the elementwise steps need none
  });
  p.scratch_bytes = scratch;
  p.scratch = scratch ? ws.take<unsigned char>(scratch) : nullptr;
  if (ws_bytes) *ws_bytes = own + (scratch ? kdloss::detail::align_up(scratch) : 0);
  return p;
}

/// Checks every inner op of `mode` on the plan (its errors named by the block and the step).
template <class T>
void check_non_local_steps(const char* fn, const NonLocalArgs<T>& a, const NonLocalPlan<T>& p, Mode mode) {
  non_local_steps(a, p, mode, [&](const auto& step, const char* label, Mode m) {
    using S = std::decay_t<decltype(step)>;
    if constexpr (std::is_same_v<S, PooledProjectionBack<T>>) {
      named_step(fn, label, [&] { max_pool2d_check(step.pool, m); });
      named_step(fn, step.lin_label, [&] { linear_check(step.lin, m); });
    } else if constexpr (!std::is_same_v<S, AddStep<T>>) {
      named_step(fn, label, [&] {
        if constexpr (std::is_same_v<S, LinearArgs<T>>) linear_check(step, m);
        if constexpr (std::is_same_v<S, MaxPool2dArgs<T>>) max_pool2d_check(step, m);
        if constexpr (std::is_same_v<S, BatchNormArgs<T>>) batch_norm_check(step, m);
        if constexpr (std::is_same_v<S, SoftmaxRelationArgs<T>>) softmax_relation_check(step, m);
        if constexpr (std::is_same_v<S, DotRelationArgs<T>>) dot_relation_check(step, m);
        if constexpr (std::is_same_v<S, ConcatRelationArgs<T>>) concat_relation_check(step, m);
      });
    }
  });
}

}  // namespace detail

/// Bytes of the reserve forward fills and backward reads, per call (each piece 256-byte aligned), in
/// this order: θ(x) [B, m, H, W] (not in gaussian mode: θ = x); the pooled φ map [B, e, H', W'] (e = m,
/// or C in gaussian mode; absent in gaussian mode without pooling: φ = x); the pooled g map [B, m, H', W'];
/// the argmaxes of the φ and g poolings (1 byte per pooled element for factors up to 16); y [B, m, H, W];
/// the softmax modes' log-sum-exp (B H W acc_t<T>); BN's per-channel mean and 1/std (training). W y is not
/// kept (backward recomputes it from y). Per image, about (2 m H W + (e + m) H' W') sizeof(T) bytes: never
/// the N x N' matrix.
///
///   std::size_t keep = kdloss::ops::non_local_reserve_bytes(nl);   // nl: NonLocalArgs's example
template <class T>
std::size_t non_local_reserve_bytes(const NonLocalArgs<T>& args) {
  const char* fn = "kdloss::ops::non_local_reserve_bytes";
  NonLocalArgs<T> a = args;
  a.reserve = {};
  const detail::NonLocalDims d = detail::check_non_local_args(fn, a, Mode::forward);
  return detail::non_local_state_bytes(detail::non_local_reserve_sizes(fn, a, d));
}

/// Throws kdloss::Error naming the argument (and, for an inner op's error, the block's step) when `mode`
/// cannot run; writes nothing. A map smaller than a pool factor fails in the max pooling step, as
/// PyTorch's MaxPool2d does ("Output size is too small").
///
///   kdloss::ops::non_local_check(nl, kdloss::Mode::forward);   // nl: NonLocalArgs's example
template <class T>
void non_local_check(const NonLocalArgs<T>& args, Mode mode) {
  const char* fn = detail::kNonLocalNames(mode);
  const detail::NonLocalDims d = detail::check_non_local_args(fn, args, mode);
  const auto p = detail::non_local_plan(fn, args, d, mode, nullptr, nullptr);
  detail::check_non_local_steps(fn, args, p, mode);
}

/// Workspace bytes of non_local(args, mode) for every Mode: one B max(C, m) H W map (the unpooled g / φ
/// maps, then W y, then the backward's unpooled gradients), grad y (B m H W) and the pooled maps' gradients
/// (B (e + m) H' W') in backward, grad (W y) (B C H W) when grad_x is absent, the state itself when there is
/// no reserve, and the largest inner op's scratch.
///
///   std::size_t ws = kdloss::ops::non_local_workspace_bytes(nl);   // nl: NonLocalArgs's example
template <class T>
std::size_t non_local_workspace_bytes(const NonLocalArgs<T>& args) {
  const char* fn = "kdloss::ops::non_local_workspace_bytes";
  const detail::NonLocalDims d = detail::check_non_local_args(fn, args, Mode::forward);
  std::size_t most = 0;
  for (Mode mode : {Mode::forward, Mode::backward, Mode::forward_backward}) {
    std::size_t b = 0;
    detail::non_local_plan(fn, args, d, mode, nullptr, &b);
    most = std::max(most, b);
  }
  return most;
}

/// Checks, then runs the block in `mode`:
/// - forward: g, θ, φ projections (1x1 convolutions), the poolings, the relation y, W y (conv_out), BN
///   (training: batch statistics, written to bn_batch_mean / bn_batch_var when present; evaluation: the
///   running ones), z = x + BN(W y); the state goes to args.reserve when present;
/// - backward (reads grad_z): grad_x = grad_z + the paths through θ, φ and g; every present parameter
///   gradient (options.param_grads.beta); reads the reserve a forward of the same arguments filled, or,
///   when the reserve is absent, recomputes the state into the workspace first (one more forward);
/// - forward_backward: both (state in the reserve when present, else in the workspace).
/// Deterministic: the bits do not depend on the thread count.
///
///   const std::size_t keep_bytes = kdloss::ops::non_local_reserve_bytes(nl);   // nl: NonLocalArgs's example
///   void* keep = std::aligned_alloc(256, (keep_bytes + 255) / 256 * 256);
///   nl.reserve = {keep, keep_bytes};
///   kdloss::ops::non_local(nl, kdloss::Mode::forward);
///   nl.grad_z = kdloss::host_view<const float>(grad_out, {1, 256, 32, 48});
///   nl.grad_x = kdloss::host_view(grad_x, {1, 256, 32, 48});
///   nl.grad_theta_weight = kdloss::host_view(grad_w, {128, 256});
///   kdloss::ops::non_local(nl, kdloss::Mode::backward);              // reads the reserve
///   std::free(keep);
template <class T>
void non_local(const NonLocalArgs<T>& args, Mode mode, const Exec& exec = {}) {
  const char* fn = detail::kNonLocalNames(mode);
  const detail::NonLocalDims d = detail::check_non_local_args(fn, args, mode);
  std::size_t need = 0;
  detail::non_local_plan(fn, args, d, mode, nullptr, &need);
  kdloss::detail::HostScratch host;
  void* ws = kdloss::detail::resolve_workspace(fn, args.x.device, exec.workspace, need, host);
  const auto p = detail::non_local_plan(fn, args, d, mode, ws, nullptr);
  detail::check_non_local_steps(fn, args, p, mode);  // every inner op's check before the first write
  if (d.B == 0) return;
  const Exec inner{{p.scratch, p.scratch_bytes}, exec.stream, exec.blas};
  using Acc = acc_t<T>;
  detail::non_local_steps(args, p, mode, [&](const auto& step, const char*, Mode m) {
    using S = std::decay_t<decltype(step)>;
    if constexpr (std::is_same_v<S, detail::AddStep<T>>) {
      if (present(step.b))
        kdloss::detail::transform<Acc>(args.x.device, exec.stream, step.out.shape, detail::ResidualAdd{},
                                       std::tuple{step.a, step.b}, std::tuple{step.out});
      else
        kdloss::detail::transform<Acc>(args.x.device, exec.stream, step.out.shape, detail::CopyMap{}, std::tuple{step.a},
                                       std::tuple{step.out});
    } else if constexpr (std::is_same_v<S, detail::PooledProjectionBack<T>>) {
      if (args.x.device.is_host()) {
        kdloss::detail::pooled_projection_back(args.x.device, detail::fused_pass(step), p.scratch, p.scratch_bytes);
      } else {
        max_pool2d(step.pool, m, inner);
        linear(step.lin, m, inner);
      }
    } else if constexpr (std::is_same_v<S, LinearArgs<T>>) {
      linear(step, m, inner);
    } else if constexpr (std::is_same_v<S, MaxPool2dArgs<T>>) {
      max_pool2d(step, m, inner);
    } else if constexpr (std::is_same_v<S, BatchNormArgs<T>>) {
      batch_norm(step, m, inner);
    } else if constexpr (std::is_same_v<S, SoftmaxRelationArgs<T>>) {
      softmax_relation(step, m, inner);
    } else if constexpr (std::is_same_v<S, DotRelationArgs<T>>) {
      dot_relation(step, m, inner);
    } else {
      concat_relation(step, m, inner);
    }
  });
}

/// Thin wrapper: the forward, z = x + BN(W y) (args.z set; the reserve kept when given).
///
///   kdloss::ops::non_local_forward(nl);   // nl: NonLocalArgs's example
template <class T>
void non_local_forward(const NonLocalArgs<T>& args, const Exec& exec = {}) {
  non_local(args, Mode::forward, exec);
}
/// Thin wrapper: the gradients from args.grad_z (reads the reserve of the forward, or recomputes).
///
///   kdloss::ops::non_local_backward(nl);   // nl: with grad_z and the gradients wanted set
template <class T>
void non_local_backward(const NonLocalArgs<T>& args, const Exec& exec = {}) {
  non_local(args, Mode::backward, exec);
}
/// Thin wrapper: z and the gradients in one call.
///
///   kdloss::ops::non_local_forward_backward(nl);   // nl: with z, grad_z and the gradients set
template <class T>
void non_local_forward_backward(const NonLocalArgs<T>& args, const Exec& exec = {}) {
  non_local(args, Mode::forward_backward, exec);
}

}  // namespace ops
} }  // namespace kdloss
