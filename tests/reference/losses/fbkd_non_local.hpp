// Double-precision reference of kdloss::fbkd::non_local_loss (FBKD's L_NLD of one level), composed from
// the references of its parts: two non-local blocks (reference/ops/non_local.hpp), the adaptation 1x1 conv
// (reference/ops/matmul.hpp's Linear) and the Frobenius norm of the difference.
//   L = w ||adapt(NL_S(S)) - NL_T(T)||_F
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "reference/ops/matmul.hpp"
#include "reference/ops/non_local.hpp"

namespace kdloss_ref::fbkd {

struct NonLocalLoss {
  kdloss_ref::ops::NonLocal block;  // both blocks' sizes and settings
  double weight = 1.0;

  kdloss_ref::ops::Linear adapt() const { return {block.B, block.C, block.C, block.N()}; }

  struct Parts {
    std::vector<double> zs, a, zt, diff;
    double norm = 0;
  };
  Parts parts(const std::vector<double>& s, const std::vector<double>& t, const kdloss_ref::ops::NonLocalParams& ps,
              const kdloss_ref::ops::NonLocalParams& pt, const std::vector<double>& aw,
              const std::vector<double>& ab) const {
    Parts r;
    r.zs = block.forward(s, ps);
    r.a = adapt().forward(r.zs, aw, ab);
    r.zt = block.forward(t, pt);
    r.diff.resize(r.a.size());
    double sq = 0;
    for (std::size_t i = 0; i < r.a.size(); ++i) {
      r.diff[i] = r.a[i] - r.zt[i];
      sq += r.diff[i] * r.diff[i];
    }
    r.norm = std::sqrt(sq);
    return r;
  }
  double value(const std::vector<double>& s, const std::vector<double>& t, const kdloss_ref::ops::NonLocalParams& ps,
               const kdloss_ref::ops::NonLocalParams& pt, const std::vector<double>& aw,
               const std::vector<double>& ab) const {
    return weight * parts(s, t, ps, pt, aw, ab).norm;
  }

  struct Grads {
    std::vector<double> s, aw, ab;
    kdloss_ref::ops::NonLocalParams ps, pt;  // the blocks' parameter gradients, named like the parameters
  };
  /// Every gradient of upstream * L (0 at a zero norm, PyTorch's rule).
  Grads backward(const std::vector<double>& s, const std::vector<double>& t, const kdloss_ref::ops::NonLocalParams& ps,
                 const kdloss_ref::ops::NonLocalParams& pt, const std::vector<double>& aw,
                 const std::vector<double>& ab, double upstream = 1.0) const {
    const Parts p = parts(s, t, ps, pt, aw, ab);
    const double k = p.norm == 0 ? 0.0 : upstream * weight / p.norm;
    std::vector<double> ga(p.diff.size()), gzt(p.diff.size());
    for (std::size_t i = 0; i < ga.size(); ++i) {
      ga[i] = k * p.diff[i];
      gzt[i] = -ga[i];
    }
    Grads g;
    g.aw = adapt().grad_w(p.zs, ga);
    g.ab = adapt().grad_bias(ga);
    const auto bs = block.backward(s, ps, adapt().grad_x(aw, ga));
    g.s = bs.x;
    g.ps = bs.p;
    g.pt = block.backward(t, pt, gzt).p;
    return g;
  }
};

}  // namespace kdloss_ref::fbkd
