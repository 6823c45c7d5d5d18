// Double-precision reference of ops::non_local (mmcv NonLocal2d / official FBKD NonLocalBlockND), composed
// from the existing references of its parts: Linear (matmul.hpp), max_pool2d (max_pool.hpp), the
// relations (relation.hpp, pairwise_relation.hpp, which build the N x N' matrix) and BatchNorm
// (batch_norm.hpp). Row-major maps [B, C, H*W]; parameters as [out, in] matrices.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "reference/ops/batch_norm.hpp"
#include "reference/ops/matmul.hpp"
#include "reference/ops/max_pool.hpp"
#include "reference/ops/pairwise_relation.hpp"
#include "reference/ops/relation.hpp"

namespace kdloss_ref::ops {

struct NonLocalParams {
  std::vector<double> g_w, g_b, theta_w, theta_b, phi_w, phi_b, concat_w, out_w, out_b, bn_w, bn_b, running_mean,
      running_var;
};

struct NonLocal {
  enum Mode { embedded_gaussian, gaussian, dot_product, concatenation };
  std::int64_t B, C, H, W, m;
  Mode mode = embedded_gaussian;
  bool use_scale = true;
  std::int64_t pool_g = 1, pool_phi = 1;
  bool training = true;
  double eps = 1e-5;
  bool norm = true;  // false: z = x + W y (mmcv's norm_cfg=None)

  std::int64_t N() const { return H * W; }
  std::int64_t Np() const { return (H / pool_phi) * (W / pool_phi); }
  std::int64_t e() const { return mode == gaussian ? C : m; }
  bool softmax() const { return mode == gaussian || mode == embedded_gaussian; }

  /// [B, c, P] <-> [B, P, c].
  static std::vector<double> transpose(const std::vector<double>& v, std::int64_t b, std::int64_t c, std::int64_t p) {
    std::vector<double> t(v.size());
    for (std::int64_t i = 0; i < b; ++i)
      for (std::int64_t k = 0; k < c; ++k)
        for (std::int64_t q = 0; q < p; ++q) t[(i * p + q) * c + k] = v[(i * c + k) * p + q];
    return t;
  }
  Linear proj(std::int64_t in, std::int64_t out) const { return Linear{B, in, out, N()}; }
  std::vector<double> pooled(const std::vector<double>& v, std::int64_t c, std::int64_t s) const {
    return s == 1 ? v : max_pool2d(v, B, c, H, W, s).y;
  }
  std::vector<double> unpool(const std::vector<double>& v, const std::vector<double>& gy, std::int64_t c,
                             std::int64_t s) const {
    return s == 1 ? gy : max_pool2d_backward(v, gy, B, c, H, W, s);
  }

  /// Every intermediate of the forward ([B, channels, positions] maps).
  struct State {
    std::vector<double> g_full, g, theta, phi_full, phi, y, wy, z;
  };
  State run(const std::vector<double>& x, const NonLocalParams& p) const {
    State s;
    s.g_full = proj(C, m).forward(x, p.g_w, p.g_b);
    s.g = pooled(s.g_full, m, pool_g);
    if (mode == gaussian) {
      s.theta = x;
      s.phi_full = x;
    } else {
      s.theta = proj(C, m).forward(x, p.theta_w, p.theta_b);
      s.phi_full = proj(C, m).forward(x, p.phi_w, p.phi_b);
    }
    s.phi = pooled(s.phi_full, e(), pool_phi);
    const auto th = transpose(s.theta, B, e(), N()), ph = transpose(s.phi, B, e(), Np()), g = transpose(s.g, B, m, Np());
    std::vector<double> y;
    if (softmax())
      y = SoftmaxRelation{B, N(), Np(), e(), m, mode == embedded_gaussian && use_scale ? 1.0 / std::sqrt(double(m)) : 1.0}
              .forward(th, ph, g);
    else
      y = PairwiseRelation{B, N(), Np(), m, m}.forward(mode == concatenation, th, ph, g, p.concat_w);
    s.y = transpose(y, B, N(), m);
    s.wy = proj(m, C).forward(s.y, p.out_w, p.out_b);
    const auto bn =
        norm ? BatchNorm{B, C, N(), training, eps}.forward(s.wy, p.bn_w, p.bn_b, p.running_mean, p.running_var) : s.wy;
    s.z = x;
    for (std::size_t i = 0; i < x.size(); ++i) s.z[i] += bn[i];
    return s;
  }
  std::vector<double> forward(const std::vector<double>& x, const NonLocalParams& p) const { return run(x, p).z; }

  struct Grads {
    std::vector<double> x;
    NonLocalParams p;  // the gradients, named like the parameters
  };
  /// Every gradient of L = sum(gz * z).
  Grads backward(const std::vector<double>& x, const NonLocalParams& p, const std::vector<double>& gz) const {
    const State s = run(x, p);
    Grads r;
    auto bn = BatchNorm::Grads{gz, {}, {}};
    if (norm) bn = BatchNorm{B, C, N(), training, eps}.backward(s.wy, p.bn_w, gz, p.running_mean, p.running_var);
    r.p.bn_w = bn.w;
    r.p.bn_b = bn.b;
    const Linear out = proj(m, C);
    r.p.out_w = out.grad_w(s.y, bn.x);
    r.p.out_b = out.grad_bias(bn.x);
    const auto gy = transpose(out.grad_x(p.out_w, bn.x), B, m, N());
    const auto th = transpose(s.theta, B, e(), N()), ph = transpose(s.phi, B, e(), Np()), g = transpose(s.g, B, m, Np());
    std::vector<double> gth, gph, gg;
    if (softmax()) {
      const auto rg = SoftmaxRelation{B, N(), Np(), e(), m,
                                      mode == embedded_gaussian && use_scale ? 1.0 / std::sqrt(double(m)) : 1.0}
                          .backward(th, ph, g, gy);
      gth = rg.theta, gph = rg.phi, gg = rg.g;
    } else {
      const auto rg = PairwiseRelation{B, N(), Np(), m, m}.backward(mode == concatenation, th, ph, g, p.concat_w, gy);
      gth = rg.theta, gph = rg.phi, gg = rg.g;
      r.p.concat_w = rg.w;
    }
    gth = transpose(gth, B, N(), e());
    gph = unpool(s.phi_full, transpose(gph, B, Np(), e()), e(), pool_phi);
    gg = unpool(s.g_full, transpose(gg, B, Np(), m), m, pool_g);
    r.x = gz;
    const auto add = [&](const std::vector<double>& v) {
      for (std::size_t i = 0; i < v.size(); ++i) r.x[i] += v[i];
    };
    const Linear in = proj(C, m);
    if (mode == gaussian) {
      add(gth);
      add(gph);
    } else {
      add(in.grad_x(p.theta_w, gth));
      add(in.grad_x(p.phi_w, gph));
      r.p.theta_w = in.grad_w(x, gth);
      r.p.theta_b = in.grad_bias(gth);
      r.p.phi_w = in.grad_w(x, gph);
      r.p.phi_b = in.grad_bias(gph);
    }
    add(in.grad_x(p.g_w, gg));
    r.p.g_w = in.grad_w(x, gg);
    r.p.g_b = in.grad_bias(gg);
    return r;
  }
};

}  // namespace kdloss_ref::ops
