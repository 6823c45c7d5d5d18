// kdloss/losses/ssim/ms_ssim.hpp: pytorch-msssim's ssim and ms_ssim (valid filtering, an axis
// shorter than the window left unsmoothed, data_range, K, nonnegative_ssim, the five-level weights
// and the 2x2 average-pool pyramid with padding (H % 2, W % 2), zeros counted), and the thesis'
// table-7 mixture l1_weight * l1 + (1 - l1_weight) * (1 - MS-SSIM). Reference section 3.2.
//
// Per-channel values are plane means of the engine's map; the backward turns d out / d value into
// one weight per plane and runs the engine's backward with it (recomputing the statistics).
// MS-SSIM's backward walks the pyramid from the coarsest level down, each level adding a quarter
// of the coarser level's gradient (the average pool's adjoint) as it writes its own.
//
// Conventions where pytorch-msssim would produce inf or NaN gradients: relu'd values (negative
// cs or ssim, and MS-SSIM levels) have gradient 0 where the value is <= 0, and the product's
// d/dv_i = w_i v_i^(w_i - 1) prod_{j != i} v_j^w_j is taken as 0 where v_i = 0. A NaN level passes
// the relu (torch.relu(nan) is nan): the product, and the gradient over the whole plane, are NaN.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "kdloss/config.hpp"
#include "kdloss/losses/ssim/engine.hpp"
#include "kdloss/losses/ssim/kornia.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace ssim {

/// Arguments of ssim_index and ms_ssim: [B, C, H, W] student (x) and teacher (y) views with any
/// strides on one device; `out` holds one element (ChannelReduction::mean), [B] (per_image) or
/// [B, C] (none); grad_out has out's shape; grad_student / grad_teacher (either may be absent).
template <class T>
struct SsimIndexArgs {
  View<const T> student{}, teacher{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_student{}, grad_teacher{};
  MsSsimOptions options{};
  ChannelReduction reduction = ChannelReduction::mean;
};
/// Arguments of ms_ssim (as ssim_index's; options.weights sets the levels).
template <class T>
struct MsSsimArgs : SsimIndexArgs<T> {};
/// Arguments of ms_ssim_l1_loss: one element out (and grad_out).
template <class T>
struct MsSsimL1LossArgs {
  View<const T> student{}, teacher{};
  View<T> out{};
  View<const T> grad_out{};
  View<T> grad_student{}, grad_teacher{};
  MsSsimL1Options options{};
};

namespace detail {

inline constexpr int kMaxLevels = 8;

inline void check_msssim_options(const Checker& ck, const MsSsimOptions& o, bool multi) {
  check_common(ck, o.window_size, o.sigma, o.k1, o.k2);
  require(o.data_range > 0 && std::isfinite(o.data_range), ck.fn,
          ": option 'data_range' must be finite and > 0 but is ", o.data_range);
  if (!multi) return;
  require(!o.weights.empty() && o.weights.size() <= static_cast<std::size_t>(kMaxLevels), ck.fn,
          ": option 'weights' must hold 1 to ", kMaxLevels, " level weights but holds ", o.weights.size());
  for (double w : o.weights)
    require(w >= 0 && std::isfinite(w), ck.fn, ": option 'weights' must be finite and >= 0 but holds ", w);
}

/// Level geometry of the MS-SSIM pyramid (level 0 = the inputs).
struct Pyramid {
  int levels = 1;
  std::int64_t H[kMaxLevels] = {}, W[kMaxLevels] = {};
  AxisPlan rows[kMaxLevels], cols[kMaxLevels];
};
inline Pyramid make_pyramid(const Dims& shape, const MsSsimOptions& o, int levels) {
  Pyramid py;
  py.levels = levels;
  const auto w = ops::gaussian_window(o.window_size, o.sigma);
  std::int64_t h = shape[2], wd = shape[3];
  for (int i = 0; i < levels; ++i) {
    py.H[i] = h, py.W[i] = wd;
    py.rows[i] = msssim_axis(h, w);
    py.cols[i] = msssim_axis(wd, w);
    h = (h + 1) / 2;  // avg_pool2d(2, padding=h % 2): floor((h + 2(h % 2) - 2) / 2) + 1
    wd = (wd + 1) / 2;
  }
  return py;
}

/// Workspace of an ssim_index / ms_ssim / mixture call.
template <class Acc>
struct MsScratch {
  WindowScratch pass;
  double* sums = nullptr;     // [levels][planes] per-plane level values
  double* weights = nullptr;  // [levels][planes] backward weights
  double* vals = nullptr;     // [planes] per-plane results (+ [planes] l1 sums for the mixture)
  MinMaxNorm* norm = nullptr;
  Acc* px[kMaxLevels] = {};   // pooled inputs of levels >= 1
  Acc* py[kMaxLevels] = {};
  Acc* gx[kMaxLevels] = {};   // gradients of levels >= 1
  Acc* gy[kMaxLevels] = {};
};
template <class Acc>
MsScratch<Acc> carve_ms(Carver& carver, Device device, const Pyramid& py, std::int64_t planes, bool normalize) {
  MsScratch<Acc> s;
  const std::size_t P = static_cast<std::size_t>(planes > 0 ? planes : 1);
  s.pass = kdloss::detail::carve_window_stats<Acc>(carver, device, py.rows, py.cols, py.levels, planes);
  s.sums = carver.take<double>(P * py.levels);
  s.weights = carver.take<double>(P * py.levels);
  s.vals = carver.take<double>(2 * P);
  if (normalize) s.norm = carver.take<MinMaxNorm>(P);
  for (int i = 1; i < py.levels; ++i) {
    const auto n = static_cast<std::size_t>(planes * py.H[i] * py.W[i]);
    s.px[i] = carver.take<Acc>(n);
    s.py[i] = carver.take<Acc>(n);
    s.gx[i] = carver.take<Acc>(n);
    s.gy[i] = carver.take<Acc>(n);
  }
  return s;
}

template <class T, class V>
void check_reduced_output(const Checker& ck, const View<const T>& s, const View<V>& out, ChannelReduction r,
                          const char* arg) {
  ck.device(out, arg, s.device);
  if (r == ChannelReduction::mean) ck.scalar_output(out, arg);
  else {
    const Dims want = r == ChannelReduction::per_image ? Dims{s.shape[0]} : Dims{s.shape[0], s.shape[1]};
    require(out.shape == want || (r == ChannelReduction::none && out.shape == Dims{s.shape[0], s.shape[1], 1, 1}) ||
                (r == ChannelReduction::per_image && out.shape == Dims{s.shape[0], 1}),
            ck.fn, ": argument '", arg, "' has shape ", out.shape.str(), " but expected ", want.str());
    ck.not_null(out, arg);
  }
}

/// The upstream gradient of one plane's value: d(reduced out)/d(plane value) * grad_out.
template <class T>
struct Upstream {
  const T* g = nullptr;  // null: 1 (forward_backward)
  std::int64_t s0 = 0, s1 = 0;
  ChannelReduction r = ChannelReduction::mean;
  std::int64_t B = 0, C = 0;
  double factor = 1;
  KDLOSS_HOST_DEVICE double at(std::int64_t p) const {
    const std::int64_t b = p / C, c = p % C;
    double up = 1;
    if (g) {
      if (r == ChannelReduction::mean) up = convert<double>(g[0]);
      else if (r == ChannelReduction::per_image) up = convert<double>(g[b * s0]);
      else up = convert<double>(g[b * s0 + c * s1]);
    }
    const double red = r == ChannelReduction::mean ? 1.0 / static_cast<double>(B * C)
                       : r == ChannelReduction::per_image ? 1.0 / static_cast<double>(C)
                                                          : 1.0;
    return up * red * factor;
  }
};
template <class T>
Upstream<T> make_upstream(const View<const T>& g, ChannelReduction r, std::int64_t B, std::int64_t C, double factor) {
  Upstream<T> u;
  u.g = g.data;
  u.r = r, u.B = B, u.C = C, u.factor = factor;
  if (g.data && r != ChannelReduction::mean) {
    u.s0 = g.strides[0];
    u.s1 = g.rank() > 1 ? g.strides[1] : 0;
  }
  return u;
}

/// ssim_index backward weights: w[p] = up(p) * relu'(v_p) / area.
template <class T>
struct SsimIndexWeights {
  Upstream<T> up;
  const double* sums;  // per-plane SSIM (for the relu mask), or null
  double inv_area;
  double* w;
  KDLOSS_HOST_DEVICE void operator()(std::int64_t p) const {
    const double mask = (sums && sums[p] <= 0) ? 0.0 : 1.0;
    w[p] = up.at(p) * mask * inv_area;
  }
};
/// Writes per-plane values v (relu'd when asked) reduced as `r` into out.
template <class T>
struct ReduceOut {
  const double* v;
  bool relu;
  ChannelReduction r;
  std::int64_t C;
  T* out;
  std::int64_t s0, s1;
  KDLOSS_HOST_DEVICE double val(std::int64_t p) const {
    const double e = v[p];
    return relu && e < 0 ? 0.0 : e;
  }
  KDLOSS_HOST_DEVICE void operator()(std::int64_t i) const {
    if (r == ChannelReduction::per_image) {
      double t = 0;
      for (std::int64_t c = 0; c < C; ++c) t += val(i * C + c);
      out[i * s0] = convert<T>(C > 0 ? t / static_cast<double>(C) : 0.0);
    } else {
      out[(i / C) * s0 + (i % C) * s1] = convert<T>(val(i));
    }
  }
};
/// vals[p] = relu(v[p]) (the mean reduction then sums vals).
struct Relu {
  const double* v;
  double* out;
  bool relu;
  KDLOSS_HOST_DEVICE void operator()(std::int64_t p) const { out[p] = relu && v[p] < 0 ? 0.0 : v[p]; }
};
/// v[p] *= factor.
struct ScaleVals {
  double* v;
  double factor;
  KDLOSS_HOST_DEVICE void operator()(std::int64_t p) const { v[p] *= factor; }
};
/// ms[p] = prod_i relu(v_i[p])^w_i.
struct MsProduct {
  const double* sums;
  std::int64_t planes;
  int levels;
  double w[kMaxLevels];
  double* out;
  KDLOSS_HOST_DEVICE void operator()(std::int64_t p) const {
    double ms = 1;
    for (int i = 0; i < levels; ++i) {
      const double v = sums[i * planes + p];
      ms *= w[i] == 0 ? 1.0 : (kept(v) ? pow_(v, w[i]) : 0.0);
    }
    out[p] = ms;
  }
  KDLOSS_HOST_DEVICE static double pow_(double v, double e) {
    using std::pow;
    return pow(v, e);
  }
  /// relu keeps v: v > 0, or NaN (torch.relu(nan) is nan, so a NaN level makes the product NaN).
  KDLOSS_HOST_DEVICE static bool kept(double v) { return v > 0 || v != v; }
};
/// MS-SSIM backward weights: weights[i][p] = up(p) * d ms / d v_i / area_i.
template <class T>
struct MsWeights {
  Upstream<T> up;
  const double* sums;
  std::int64_t planes;
  int levels;
  double w[kMaxLevels];
  double inv_area[kMaxLevels];
  double* out;
  KDLOSS_HOST_DEVICE void operator()(std::int64_t p) const {
    const double u = up.at(p);
    for (int i = 0; i < levels; ++i) {
      const double vi = sums[i * planes + p];
      double d = 0;
      if (MsProduct::kept(vi) && w[i] != 0) {
        d = w[i] * MsProduct::pow_(vi, w[i] - 1);
        for (int j = 0; j < levels; ++j) {
          if (j == i || w[j] == 0) continue;
          const double vj = sums[j * planes + p];
          d *= MsProduct::kept(vj) ? MsProduct::pow_(vj, w[j]) : 0.0;
        }
      }
      out[i * planes + p] = u * d * inv_area[i];
    }
  }
};

/// Runs one engine pass of pyramid level i (level 0 reads the user's views, later levels the
/// pooled buffers).
template <class T>
void ms_level_pass(Device device, Stream stream, const View<const T>& s, const View<const T>& t, const Pyramid& py,
                   int i, const MsScratch<acc_t<T>>& ws, const Head& head, Form form, double* sums,
                   const double* weights, const View<T>& gs, const View<T>& gt, double l1_coef, const T* l1_up) {
  using Acc = acc_t<T>;
  const bool backward = weights != nullptr;
  auto fill = [&](auto& P) {
    P.batch = s.shape[0];
    P.channels = s.shape[1];
    P.rows = py.rows[i];
    P.cols = py.cols[i];
    P.head = head;
    P.form = form;
    if (sums) {
      P.plane_sums = sums;
      P.sum_scale = 1.0 / static_cast<double>(py.rows[i].n_out * py.cols[i].n_out);
    }
    if (backward) {
      P.up_plane = weights;
      if (i + 1 < py.levels) {
        P.coarse_x = ws.gx[i + 1];
        P.coarse_y = present(gt) ? ws.gy[i + 1] : nullptr;
        P.coarse_h = py.H[i + 1];
        P.coarse_w = py.W[i + 1];
        P.pool_ph = static_cast<int>(py.H[i] % 2);
        P.pool_pw = static_cast<int>(py.W[i] % 2);
      }
    }
  };
  if (i == 0) {
    Pass<T, T> P;
    fill(P);
    P.x = s.data, P.y = t.data;
    strides4(s, P.xs);
    strides4(t, P.ys);
    P.norm = ws.norm;
    if (backward) {
      if (present(gs)) P.gx = gs.data, strides4(gs, P.gx_s);
      if (present(gt)) P.gy = gt.data, strides4(gt, P.gy_s);
      P.l1_coef = l1_coef;
      P.l1_up = l1_up;
    }
    run_pass(device, stream, P, ws.pass);
  } else {
    Pass<Acc, Acc> P;
    fill(P);
    const std::int64_t hw = py.H[i] * py.W[i];
    const std::int64_t cs[4] = {s.shape[1] * hw, hw, py.W[i], 1};
    P.x = ws.px[i], P.y = ws.py[i];
    for (int d = 0; d < 4; ++d) P.xs[d] = P.ys[d] = cs[d];
    if (backward) {
      if (present(gs)) P.gx = ws.gx[i];
      if (present(gt)) P.gy = ws.gy[i];
      for (int d = 0; d < 4; ++d) P.gx_s[d] = P.gy_s[d] = cs[d];
    }
    run_pass(device, stream, P, ws.pass);
  }
}

/// Forward of every pyramid level: per-plane level values in ws.sums (cs for levels < L-1, SSIM
/// for the last), pooling the inputs on the way down.
template <class T>
void ms_forward_levels(Device device, Stream stream, const View<const T>& s, const View<const T>& t,
                       const Pyramid& py, const MsScratch<acc_t<T>>& ws, const Head& head) {
  const std::int64_t planes = s.shape[0] * s.shape[1];
  for (int i = 0; i < py.levels; ++i) {
    const Form form = i + 1 < py.levels ? Form::cs : Form::two_factor;
    ms_level_pass(device, stream, s, t, py, i, ws, head, form, ws.sums + i * planes, nullptr, View<T>{}, View<T>{}, 0.0,
                  static_cast<const T*>(nullptr));
    if (i + 1 == py.levels) break;
    const std::int64_t B = s.shape[0], C = s.shape[1];
    if (i == 0) {
      std::int64_t xs[4], ys[4];
      strides4(s, xs);
      strides4(t, ys);
      ops::detail::avg_pool2x2(device, stream, B, C, py.H[0], py.W[0], s.data, xs, ws.norm, 0, ws.px[1], py.H[1],
                               py.W[1]);
      ops::detail::avg_pool2x2(device, stream, B, C, py.H[0], py.W[0], t.data, ys, ws.norm, 1, ws.py[1], py.H[1],
                               py.W[1]);
    } else {
      const std::int64_t hw = py.H[i] * py.W[i];
      const std::int64_t cs[4] = {C * hw, hw, py.W[i], 1};
      ops::detail::avg_pool2x2(device, stream, B, C, py.H[i], py.W[i], ws.px[i], cs, nullptr, 0, ws.px[i + 1],
                               py.H[i + 1], py.W[i + 1]);
      ops::detail::avg_pool2x2(device, stream, B, C, py.H[i], py.W[i], ws.py[i], cs, nullptr, 1, ws.py[i + 1],
                               py.H[i + 1], py.W[i + 1]);
    }
  }
}

/// Backward of every level, coarsest first, with weights [levels][planes].
template <class T>
void ms_backward_levels(Device device, Stream stream, const View<const T>& s, const View<const T>& t,
                        const Pyramid& py, const MsScratch<acc_t<T>>& ws, const Head& head, const View<T>& gs,
                        const View<T>& gt, double l1_coef, const T* l1_up) {
  const std::int64_t planes = s.shape[0] * s.shape[1];
  for (int i = py.levels - 1; i >= 0; --i) {
    const Form form = i + 1 < py.levels ? Form::cs : Form::two_factor;
    ms_level_pass(device, stream, s, t, py, i, ws, head, form, nullptr, ws.weights + i * planes, gs, gt,
                  i == 0 ? l1_coef : 0.0, i == 0 ? l1_up : nullptr);
  }
  if (ws.norm) {
    if (present(gs)) ops::detail::minmax_norm_backward(stream, s, gs, ws.norm, 0);
    if (present(gt)) ops::detail::minmax_norm_backward(stream, t, gt, ws.norm, 1);
  }
}

enum class MsKind { ssim_index, ms_ssim, mixture };

template <class T>
void ms_check(const char* fn, Mode mode, MsKind kind, View<const T> s, View<const T> t, View<T> out,
             View<const T> grad_out, View<T> gs, View<T> gt, const MsSsimOptions& o, double l1_weight,
             ChannelReduction r) {
  const Checker ck{fn};
  check_pair(ck, s, t);
  check_msssim_options(ck, o, kind != MsKind::ssim_index);
  if (kind == MsKind::mixture)
    require(l1_weight >= 0 && l1_weight <= 1, fn, ": option 'l1_weight' must be in [0, 1] but is ", l1_weight);
  if (mode != Mode::backward) {
    check_reduced_output(ck, s, out, r, "out");
    ck.unique(out, "out");
    ck.disjoint(out, "out", s, "student");
    ck.disjoint(out, "out", t, "teacher");
  } else {
    check_reduced_output(ck, s, grad_out, r, "grad_out");
  }
  const bool want_s = present(gs), want_t = present(gt);
  if (mode != Mode::forward) {
    require(want_s || want_t, fn, ": no gradient requested: 'grad_student' and 'grad_teacher' are both absent");
    if (want_s) check_grad(ck, s, gs, "grad_student", s, t);
    if (want_t) check_grad(ck, s, gt, "grad_teacher", s, t);
    if (want_s && want_t) ck.disjoint(gs, "grad_student", View<const T>(gt), "grad_teacher");
    const View<const T> other = mode == Mode::backward ? grad_out : View<const T>(out);
    const char* other_name = mode == Mode::backward ? "grad_out" : "out";
    if (want_s) ck.disjoint(gs, "grad_student", other, other_name);
    if (want_t) ck.disjoint(gt, "grad_teacher", other, other_name);
  }
}

template <class T>
void ms_call(const char* fn, Mode mode, MsKind kind, View<const T> s, View<const T> t, View<T> out,
             View<const T> grad_out, View<T> gs, View<T> gt, const MsSsimOptions& o, double l1_weight,
             ChannelReduction r, const Exec& exec) {
  ms_check(fn, mode, kind, s, t, out, grad_out, gs, gt, o, l1_weight, r);
  const bool want_s = present(gs), want_t = present(gt);
  const int levels = kind == MsKind::ssim_index ? 1 : static_cast<int>(o.weights.size());
  const Pyramid py = make_pyramid(s.shape, o, levels);
  const std::int64_t B = s.shape[0], C = s.shape[1], planes = B * C;
  Carver sizer;
  carve_ms<acc_t<T>>(sizer, s.device, py, planes, o.normalize);
  kdloss::detail::HostScratch scratch;
  Carver carver(kdloss::detail::resolve_workspace(fn, s.device, exec.workspace, sizer.bytes(), scratch));
  const auto ws = carve_ms<acc_t<T>>(carver, s.device, py, planes, o.normalize);
  const Device dev = s.device;
  const Stream st = exec.stream;
  const Head head = msssim_head(o);
  const double inv_planes = planes > 0 ? 1.0 / static_cast<double>(planes) : 0.0;  // empty batch: 0
  if (o.normalize) ops::detail::minmax_norm(st, s, t, ws.norm);

  MsWeights<T> msw{};
  msw.sums = ws.sums, msw.planes = planes, msw.levels = levels, msw.out = ws.weights;
  for (int i = 0; i < levels; ++i) {
    msw.w[i] = kind == MsKind::ssim_index ? 1.0 : o.weights[static_cast<std::size_t>(i)];
    msw.inv_area[i] = 1.0 / static_cast<double>(py.rows[i].n_out * py.cols[i].n_out);
  }
  const double l1_n = static_cast<double>(s.numel());
  const double l1_coef = kind == MsKind::mixture && l1_n > 0 ? l1_weight / l1_n : 0.0;
  const double ms_sign = kind == MsKind::mixture ? -(1.0 - l1_weight) : 1.0;

  if (kind == MsKind::ssim_index) {
    // One level: the per-plane SSIM. Without the relu its weights need no forward values, so a
    // forward_backward call runs a single pass.
    const bool single = mode != Mode::forward && !o.nonnegative_ssim;
    if (mode != Mode::backward && !single)
      ms_level_pass(dev, st, s, t, py, 0, ws, head, Form::two_factor, ws.sums, nullptr, View<T>{}, View<T>{}, 0.0,
                    static_cast<const T*>(nullptr));
    if (mode == Mode::backward && o.nonnegative_ssim)
      ms_level_pass(dev, st, s, t, py, 0, ws, head, Form::two_factor, ws.sums, nullptr, View<T>{}, View<T>{}, 0.0,
                    static_cast<const T*>(nullptr));
    if (mode != Mode::forward) {
      SsimIndexWeights<T> f{make_upstream(mode == Mode::backward ? grad_out : View<const T>{}, r, B, C, 1.0),
                            o.nonnegative_ssim ? ws.sums : nullptr, msw.inv_area[0], ws.weights};
      ops::detail::for_each_index(dev, st, planes, f);
      Pass<T, T> P;  // one pass: gradient (and, forward_backward without relu, the sums)
      P.batch = B, P.channels = C, P.rows = py.rows[0], P.cols = py.cols[0], P.head = head;
      P.x = s.data, P.y = t.data;
      strides4(s, P.xs);
      strides4(t, P.ys);
      P.norm = ws.norm;
      P.up_plane = ws.weights;
      if (want_s) P.gx = gs.data, strides4(gs, P.gx_s);
      if (want_t) P.gy = gt.data, strides4(gt, P.gy_s);
      if (single && mode == Mode::forward_backward) P.plane_sums = ws.sums, P.sum_scale = msw.inv_area[0];
      run_pass(dev, st, P, ws.pass);
      if (ws.norm) {
        if (want_s) ops::detail::minmax_norm_backward(st, s, gs, ws.norm, 0);
        if (want_t) ops::detail::minmax_norm_backward(st, t, gt, ws.norm, 1);
      }
    }
    if (mode != Mode::backward) {
      if (r == ChannelReduction::mean) {
        ops::detail::for_each_index(dev, st, planes, Relu{ws.sums, ws.vals, o.nonnegative_ssim});
        ops::detail::store_sum(dev, st, ws.vals, planes, kdloss::detail::Scale{inv_planes}, out.data);
      } else {
        ReduceOut<T> f{ws.sums, o.nonnegative_ssim, r, C, out.data, out.strides[0], out.rank() > 1 ? out.strides[1] : 0};
        ops::detail::for_each_index(dev, st, r == ChannelReduction::per_image ? B : planes, f);
      }
    }
    return;
  }

  ms_forward_levels(dev, st, s, t, py, ws, head);
  if (mode != Mode::backward) {
    MsProduct prod{ws.sums, planes, levels, {}, ws.vals};
    for (int i = 0; i < levels; ++i) prod.w[i] = msw.w[i];
    ops::detail::for_each_index(dev, st, planes, prod);
    if (kind == MsKind::mixture) {
      // out = (1 - w) * (1 - mean ms) + w * mean |x - y|
      ops::detail::abs_diff_sums(st, s, t, ws.norm, ws.vals + planes, l1_coef);
      ops::detail::for_each_index(dev, st, planes, ScaleVals{ws.vals, -(1.0 - l1_weight) * inv_planes});
      ops::detail::store_sum(dev, st, ws.vals, 2 * planes, ops::Affine{1.0, 1.0 - l1_weight}, out.data);
    } else if (r == ChannelReduction::mean) {
      ops::detail::store_sum(dev, st, ws.vals, planes, kdloss::detail::Scale{inv_planes}, out.data);
    } else {
      ReduceOut<T> f{ws.vals, false, r, C, out.data, out.strides[0], out.rank() > 1 ? out.strides[1] : 0};
      ops::detail::for_each_index(dev, st, r == ChannelReduction::per_image ? B : planes, f);
    }
  }
  if (mode == Mode::forward) return;
  msw.up = make_upstream(mode == Mode::backward ? grad_out : View<const T>{}, kind == MsKind::mixture ? ChannelReduction::mean : r,
                         B, C, ms_sign);
  ops::detail::for_each_index(dev, st, planes, msw);
  ms_backward_levels(dev, st, s, t, py, ws, head, gs, gt, l1_coef, mode == Mode::backward ? grad_out.data : nullptr);
}

template <class T>
std::size_t ms_bytes(const char* fn, const View<const T>& s, const MsSsimOptions& o, bool multi) {
  const Checker ck{fn};
  ck.rank(s, "student", 4);
  check_msssim_options(ck, o, multi);
  const Pyramid py = make_pyramid(s.shape, o, multi ? static_cast<int>(o.weights.size()) : 1);
  Carver sizer;
  carve_ms<acc_t<T>>(sizer, s.device, py, s.shape[0] * s.shape[1], o.normalize);
  return sizer.bytes();
}

inline constexpr EntryNames kSsimIndex{"kdloss::ssim_index", "kdloss::ssim_index_backward",
                                       "kdloss::ssim_index_forward_backward"};
inline constexpr EntryNames kMsSsim{"kdloss::ms_ssim", "kdloss::ms_ssim_backward", "kdloss::ms_ssim_forward_backward"};
inline constexpr EntryNames kMsSsimL1{"kdloss::ms_ssim_l1_loss", "kdloss::ms_ssim_l1_loss_backward",
                                      "kdloss::ms_ssim_l1_loss_forward_backward"};

template <class T>
void index_call(const char* fn, Mode mode, MsKind kind, const SsimIndexArgs<T>& a, const Exec* exec) {
  if (!exec)
    ms_check(fn, mode, kind, a.student, a.teacher, a.out, a.grad_out, a.grad_student, a.grad_teacher, a.options, 0.0,
             a.reduction);
  else
    ms_call(fn, mode, kind, a.student, a.teacher, a.out, a.grad_out, a.grad_student, a.grad_teacher, a.options, 0.0,
            a.reduction, *exec);
}
template <class T>
void mixture_call(const char* fn, Mode mode, const MsSsimL1LossArgs<T>& a, const Exec* exec) {
  if (!exec)
    ms_check(fn, mode, MsKind::mixture, a.student, a.teacher, a.out, a.grad_out, a.grad_student, a.grad_teacher,
             a.options.ms_ssim, a.options.l1_weight, ChannelReduction::mean);
  else
    ms_call(fn, mode, MsKind::mixture, a.student, a.teacher, a.out, a.grad_out, a.grad_student, a.grad_teacher,
            a.options.ms_ssim, a.options.l1_weight, ChannelReduction::mean, *exec);
}

/// Arguments from the wrappers' views.
template <class A, class S, class Tt, class Opt>
A ms_args(const View<S>& s, const View<Tt>& t, const Opt& o) {
  A a;
  a.student = s;
  a.teacher = t;
  a.options = o;
  return a;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Entry points (core/entry.hpp): <entry>_check(args, mode), <entry>_workspace_bytes(args),
// <entry>(args, mode, exec). Backward writes grad_out * d out / d student (and / d teacher when
// grad_teacher is present); forward_backward the value and the gradient of the value itself.

/// Throws kdloss::Error unless `args` is a valid ssim_index call in `mode`; writes nothing.
///
///   kdloss::ssim::SsimIndexArgs<float> a;
///   a.student = x; a.teacher = y; a.out = kdloss::host_scalar(&v);
///   kdloss::ssim::ssim_index_check(a, kdloss::Mode::forward);
template <class T>
void ssim_index_check(const SsimIndexArgs<T>& args, Mode mode) {
  detail::index_call("kdloss::ssim_index_check", mode, detail::MsKind::ssim_index, args, nullptr);
}
/// Workspace bytes of ssim_index(args, mode) for every mode.
///
///   std::size_t bytes = kdloss::ssim::ssim_index_workspace_bytes(a);
template <class T>
std::size_t ssim_index_workspace_bytes(const SsimIndexArgs<T>& args) {
  return detail::ms_bytes("kdloss::ssim_index_workspace_bytes", args.student, args.options, false);
}
/// pytorch_msssim.ssim(X, Y, data_range, size_average, win_size, win_sigma, K, nonnegative_ssim):
/// the mean over the valid positions of S = l * cs per channel, reduced over channels and images.
///
///   kdloss::ssim::ssim_index(a, kdloss::Mode::forward);
template <class T>
void ssim_index(const SsimIndexArgs<T>& args, Mode mode, const Exec& exec = {}) {
  detail::index_call(detail::kSsimIndex(mode), mode, detail::MsKind::ssim_index, args, &exec);
}

/// Throws kdloss::Error unless `args` is a valid ms_ssim call in `mode`; writes nothing.
///
///   kdloss::ssim::MsSsimArgs<float> m;
///   m.student = x; m.teacher = y; m.out = kdloss::host_scalar(&v); m.options.data_range = 1.0;
///   kdloss::ssim::ms_ssim_check(m, kdloss::Mode::forward);
template <class T>
void ms_ssim_check(const MsSsimArgs<T>& args, Mode mode) {
  detail::index_call("kdloss::ms_ssim_check", mode, detail::MsKind::ms_ssim, args, nullptr);
}
/// Workspace of ms_ssim(args, mode): the pooled pyramid and its gradients (student and teacher),
/// per-plane level values, and the engine's rows (host) or partials (GPU).
///
///   std::size_t bytes = kdloss::ssim::ms_ssim_workspace_bytes(m);
template <class T>
std::size_t ms_ssim_workspace_bytes(const MsSsimArgs<T>& args) {
  return detail::ms_bytes("kdloss::ms_ssim_workspace_bytes", args.student, args.options, true);
}
/// pytorch_msssim.ms_ssim: prod over levels of relu(cs_i)^w_i (relu(ssim) at the last level), per
/// channel, reduced. Unlike pytorch-msssim no minimum size is asserted: deep levels shorter than
/// the window are simply not smoothed along that axis (pass a smaller window for FPN features).
///
///   kdloss::ssim::ms_ssim(m, kdloss::Mode::forward);
template <class T>
void ms_ssim(const MsSsimArgs<T>& args, Mode mode, const Exec& exec = {}) {
  detail::index_call(detail::kMsSsim(mode), mode, detail::MsKind::ms_ssim, args, &exec);
}

/// Throws kdloss::Error unless `args` is a valid ms_ssim_l1_loss call in `mode`; writes nothing.
///
///   kdloss::ssim::MsSsimL1LossArgs<float> l;
///   l.student = s; l.teacher = t; l.out = kdloss::host_scalar(&loss);
///   kdloss::ssim::ms_ssim_l1_loss_check(l, kdloss::Mode::forward);
template <class T>
void ms_ssim_l1_loss_check(const MsSsimL1LossArgs<T>& args, Mode mode) {
  detail::mixture_call("kdloss::ms_ssim_l1_loss_check", mode, args, nullptr);
}
///   std::size_t bytes = kdloss::ssim::ms_ssim_l1_loss_workspace_bytes(l);
template <class T>
std::size_t ms_ssim_l1_loss_workspace_bytes(const MsSsimL1LossArgs<T>& args) {
  return detail::ms_bytes("kdloss::ms_ssim_l1_loss_workspace_bytes", args.student, args.options.ms_ssim, true);
}
/// Thesis table 7: l1_weight * mean|s - t| + (1 - l1_weight) * (1 - MS-SSIM(s, t)), MS-SSIM
/// averaged over B and C (nu applied to both terms when options.ms_ssim.normalize). One element out.
///
///   kdloss::ssim::ms_ssim_l1_loss(l, kdloss::Mode::forward);
template <class T>
void ms_ssim_l1_loss(const MsSsimL1LossArgs<T>& args, Mode mode, const Exec& exec = {}) {
  detail::mixture_call(detail::kMsSsimL1(mode), mode, args, &exec);
}

// ---------------------------------------------------------------------------------------------
// Thin wrappers that read like PyTorch. x (student) and y (teacher) are [B, C, H, W] views.

/// pytorch_msssim.ssim, reduced as `reduction` says.
///
///   float v;
///   kdloss::MsSsimOptions opt;                 // data_range 255, window 11, sigma 1.5
///   kdloss::ssim_index(x, y, kdloss::host_scalar(&v), opt);               // size_average=True
///   std::vector<float> per_image(2);
///   kdloss::ssim_index(x, y, kdloss::host_view(per_image.data(), {2}), opt, kdloss::ChannelReduction::per_image);
template <class S, class Tt, class O>
void ssim_index(const View<S>& x, const View<Tt>& y, const View<O>& out, const MsSsimOptions& options = {},
                ChannelReduction reduction = ChannelReduction::mean, const Exec& exec = {}) {
  auto a = detail::ms_args<SsimIndexArgs<O>>(x, y, options);
  a.out = out;
  a.reduction = reduction;
  ssim_index(a, Mode::forward, exec);
}
///   kdloss::ssim_index_backward(x, y, kdloss::host_scalar<const float>(&one), gx_view, opt);
template <class S, class Tt, class G, class O>
void ssim_index_backward(const View<S>& x, const View<Tt>& y, const View<G>& grad_out, const View<O>& grad_x,
                         const MsSsimOptions& options = {}, ChannelReduction reduction = ChannelReduction::mean,
                         const Exec& exec = {}) {
  ssim_index_backward(x, y, grad_out, grad_x, View<O>{}, options, reduction, exec);
}
///   kdloss::ssim_index_backward(x, y, one_view, gx_view, gy_view, opt);
template <class S, class Tt, class G, class O>
void ssim_index_backward(const View<S>& x, const View<Tt>& y, const View<G>& grad_out, const View<O>& grad_x,
                         const View<O>& grad_y, const MsSsimOptions& options = {},
                         ChannelReduction reduction = ChannelReduction::mean, const Exec& exec = {}) {
  auto a = detail::ms_args<SsimIndexArgs<O>>(x, y, options);
  a.grad_out = grad_out;
  a.grad_student = grad_x;
  a.grad_teacher = grad_y;
  a.reduction = reduction;
  ssim_index(a, Mode::backward, exec);
}
///   kdloss::ssim_index_forward_backward(x, y, kdloss::host_scalar(&v), gx_view, opt);
template <class S, class Tt, class O>
void ssim_index_forward_backward(const View<S>& x, const View<Tt>& y, const View<O>& out, const View<O>& grad_x,
                                 const MsSsimOptions& options = {}, ChannelReduction reduction = ChannelReduction::mean,
                                 const Exec& exec = {}) {
  auto a = detail::ms_args<SsimIndexArgs<O>>(x, y, options);
  a.out = out;
  a.grad_student = grad_x;
  a.reduction = reduction;
  ssim_index(a, Mode::forward_backward, exec);
}
///   std::size_t bytes = kdloss::ssim_index_workspace_bytes(x_dev, opt);
template <class S>
std::size_t ssim_index_workspace_bytes(const View<S>& x, const MsSsimOptions& options = {}) {
  using T = std::remove_cv_t<S>;
  return ssim_index_workspace_bytes(detail::ms_args<SsimIndexArgs<T>>(x, View<const T>{}, options));
}

/// pytorch_msssim.ms_ssim (see ms_ssim(args, mode)).
///
///   float v;
///   kdloss::MsSsimOptions opt;
///   opt.window_size = 7; opt.data_range = 1.0;
///   kdloss::ms_ssim(x, y, kdloss::host_scalar(&v), opt);       // the loss is usually 1 - v
template <class S, class Tt, class O>
void ms_ssim(const View<S>& x, const View<Tt>& y, const View<O>& out, const MsSsimOptions& options = {},
             ChannelReduction reduction = ChannelReduction::mean, const Exec& exec = {}) {
  auto a = detail::ms_args<MsSsimArgs<O>>(x, y, options);
  a.out = out;
  a.reduction = reduction;
  ms_ssim(a, Mode::forward, exec);
}
///   kdloss::ms_ssim_backward(x, y, kdloss::host_scalar<const float>(&one), gx_view, opt);
template <class S, class Tt, class G, class O>
void ms_ssim_backward(const View<S>& x, const View<Tt>& y, const View<G>& grad_out, const View<O>& grad_x,
                      const MsSsimOptions& options = {}, ChannelReduction reduction = ChannelReduction::mean,
                      const Exec& exec = {}) {
  ms_ssim_backward(x, y, grad_out, grad_x, View<O>{}, options, reduction, exec);
}
///   kdloss::ms_ssim_backward(x, y, one_view, gx_view, gy_view, opt);
template <class S, class Tt, class G, class O>
void ms_ssim_backward(const View<S>& x, const View<Tt>& y, const View<G>& grad_out, const View<O>& grad_x,
                      const View<O>& grad_y, const MsSsimOptions& options = {},
                      ChannelReduction reduction = ChannelReduction::mean, const Exec& exec = {}) {
  auto a = detail::ms_args<MsSsimArgs<O>>(x, y, options);
  a.grad_out = grad_out;
  a.grad_student = grad_x;
  a.grad_teacher = grad_y;
  a.reduction = reduction;
  ms_ssim(a, Mode::backward, exec);
}
///   kdloss::ms_ssim_forward_backward(x, y, kdloss::host_scalar(&v), gx_view, opt);
template <class S, class Tt, class O>
void ms_ssim_forward_backward(const View<S>& x, const View<Tt>& y, const View<O>& out, const View<O>& grad_x,
                              const MsSsimOptions& options = {}, ChannelReduction reduction = ChannelReduction::mean,
                              const Exec& exec = {}) {
  auto a = detail::ms_args<MsSsimArgs<O>>(x, y, options);
  a.out = out;
  a.grad_student = grad_x;
  a.reduction = reduction;
  ms_ssim(a, Mode::forward_backward, exec);
}
///   std::size_t bytes = kdloss::ms_ssim_workspace_bytes(x_dev, opt);
template <class S>
std::size_t ms_ssim_workspace_bytes(const View<S>& x, const MsSsimOptions& options = {}) {
  using T = std::remove_cv_t<S>;
  return ms_ssim_workspace_bytes(detail::ms_args<MsSsimArgs<T>>(x, View<const T>{}, options));
}

/// Thesis table 7 (see ms_ssim_l1_loss(args, mode)).
///
///   float loss;
///   kdloss::ms_ssim_l1_loss(s, t, kdloss::host_scalar(&loss));       // 0.15 l1 + 0.85 (1 - MS-SSIM)
template <class S, class Tt, class O>
void ms_ssim_l1_loss(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                     const MsSsimL1Options& options = {}, const Exec& exec = {}) {
  auto a = detail::ms_args<MsSsimL1LossArgs<O>>(student, teacher, options);
  a.out = out;
  ms_ssim_l1_loss(a, Mode::forward, exec);
}
///   kdloss::ms_ssim_l1_loss_backward(s, t, kdloss::host_scalar<const float>(&one), gs_view);
template <class S, class Tt, class G, class O>
void ms_ssim_l1_loss_backward(const View<S>& student, const View<Tt>& teacher, const View<G>& grad_out,
                              const View<O>& grad_student, const MsSsimL1Options& options = {},
                              const Exec& exec = {}) {
  auto a = detail::ms_args<MsSsimL1LossArgs<O>>(student, teacher, options);
  a.grad_out = grad_out;
  a.grad_student = grad_student;
  ms_ssim_l1_loss(a, Mode::backward, exec);
}
///   kdloss::ms_ssim_l1_loss_forward_backward(s, t, kdloss::host_scalar(&loss), gs_view);
template <class S, class Tt, class O>
void ms_ssim_l1_loss_forward_backward(const View<S>& student, const View<Tt>& teacher, const View<O>& out,
                                      const View<O>& grad_student, const MsSsimL1Options& options = {},
                                      const Exec& exec = {}) {
  auto a = detail::ms_args<MsSsimL1LossArgs<O>>(student, teacher, options);
  a.out = out;
  a.grad_student = grad_student;
  ms_ssim_l1_loss(a, Mode::forward_backward, exec);
}
///   std::size_t bytes = kdloss::ms_ssim_l1_loss_workspace_bytes(s_dev);
template <class S>
std::size_t ms_ssim_l1_loss_workspace_bytes(const View<S>& student, const MsSsimL1Options& options = {}) {
  using T = std::remove_cv_t<S>;
  return ms_ssim_l1_loss_workspace_bytes(detail::ms_args<MsSsimL1LossArgs<T>>(student, View<const T>{}, options));
}

} } }  // namespace kdloss::ssim

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
// The family's public names, also in kdloss:: (user code and the PyTorch bridge call them so).
using ssim::ms_ssim;
using ssim::ms_ssim_backward;
using ssim::ms_ssim_forward_backward;
using ssim::ms_ssim_l1_loss;
using ssim::ms_ssim_l1_loss_backward;
using ssim::ms_ssim_l1_loss_forward_backward;
using ssim::ms_ssim_l1_loss_workspace_bytes;
using ssim::ms_ssim_workspace_bytes;
using ssim::ssim_index;
using ssim::ssim_index_backward;
using ssim::ssim_index_forward_backward;
using ssim::ssim_index_workspace_bytes;
} }  // namespace kdloss
