// Naive double-precision reference of DRKD's L_PR over one level (drkd::glore_relation_loss), composed from
// the op references kdloss_ref::ops::Glore (reference/ops/glore.hpp) and kdloss_ref::ops::Linear
// (reference/ops/matmul.hpp): L = weight * ||adapt(GloRe_S(S)) - GloRe_T(T)||_F over row-major NCHW values.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "reference/ops/glore.hpp"
#include "reference/ops/matmul.hpp"

namespace kdloss_ref::drkd {

struct GloreRelation {
  std::int64_t batch, cs, ct, ms, mt, positions;
  double weight = 1e-3, eps = 1e-4;
  using Params = kdloss_ref::ops::Glore::Params;

  kdloss_ref::ops::Glore unit_s() const { return {batch, cs, ms, positions, eps}; }
  kdloss_ref::ops::Glore unit_t() const { return {batch, ct, mt, positions, eps}; }
  kdloss_ref::ops::Linear adapter() const { return {batch, cs, ct, positions}; }

  struct Forward {
    kdloss_ref::ops::Glore::State s, t;
    std::vector<double> adapted;
    double norm = 0, value = 0;
  };
  Forward forward(const std::vector<double>& S, const std::vector<double>& T, const Params& ps, const Params& pt,
                  const std::vector<double>& aw, const std::vector<double>& ab) const {
    Forward f;
    f.s = unit_s().forward(S, ps);
    f.t = unit_t().forward(T, pt);
    f.adapted = adapter().forward(f.s.out, aw, ab);
    double sq = 0;
    for (std::size_t i = 0; i < f.adapted.size(); ++i) sq += (f.adapted[i] - f.t.out[i]) * (f.adapted[i] - f.t.out[i]);
    f.norm = std::sqrt(sq);
    f.value = weight * f.norm;
    return f;
  }

  /// dL/dS and the gradients of both units' parameters and of the adapter (L = the value itself).
  struct Grads {
    std::vector<double> s, aw, ab;
    Params ps, pt;
  };
  Grads backward(const std::vector<double>& S, const std::vector<double>& T, const Params& ps, const Params& pt,
                 const std::vector<double>& aw, const std::vector<double>& ab) const {
    const Forward f = forward(S, T, ps, pt, aw, ab);
    std::vector<double> da(f.adapted.size()), dgt(f.adapted.size());
    for (std::size_t i = 0; i < da.size(); ++i) {
      // torch's norm backward: (x / norm) masked to 0 where norm == 0
      da[i] = f.norm == 0 ? 0.0 : weight * (f.adapted[i] - f.t.out[i]) / f.norm;
      dgt[i] = -da[i];
    }
    Grads g;
    g.aw = adapter().grad_w(f.s.out, da);
    g.ab = adapter().grad_bias(da);
    const auto dgs = adapter().grad_x(aw, da);
    const auto gs = unit_s().backward(S, ps, dgs);
    const auto gt = unit_t().backward(T, pt, dgt);
    g.s = gs.x;
    g.ps = gs.p;
    g.pt = gt.p;
    return g;
  }
};

}  // namespace kdloss_ref::drkd
