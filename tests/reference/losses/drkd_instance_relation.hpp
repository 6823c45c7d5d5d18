// Naive double reference of drkd::instance_relation_loss (the official code's ObjectRelation_1 path,
// losses.md 2.3), straight from the formulas, per image, with plain loops.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace kdloss_ref::losses {

/// Every input of one call, as flat row-major vectors, in a fixed order (for central differences).
struct InstanceRelationInputs {
  enum Index {
    student, teacher,
    s_theta_w, s_theta_b, s_phi_w, s_phi_b, s_g_w, s_g_b, s_W_w, s_W_b,
    t_theta_w, t_theta_b, t_phi_w, t_phi_b, t_g_w, t_g_b, t_W_w, t_W_b,
    s_filter_w, s_filter_b, t_filter_w, t_filter_b,
    rel_adapt_w, rel_adapt_b, fg_adapt_w, fg_adapt_b,
    count
  };
  std::vector<std::vector<double>> v = std::vector<std::vector<double>>(count);
};

struct InstanceRelation {
  std::vector<std::int64_t> offsets;
  std::int64_t Cs = 0, Ct = 0, P = 1, Q = 1, Is = 0, It = 0;
  double relation_weight = 4e-3, feature_weight = 2.4e-3;
  bool filter = true, fg = true;

  std::int64_t n() const { return offsets.back(); }

  static void softmax_rows(std::vector<double>& a, std::int64_t m) {
    for (std::int64_t i = 0; i < m; ++i) {
      double mx = -INFINITY, z = 0;
      for (std::int64_t j = 0; j < m; ++j) mx = std::max(mx, a[i * m + j]);
      for (std::int64_t j = 0; j < m; ++j) z += std::exp(a[i * m + j] - mx);
      for (std::int64_t j = 0; j < m; ++j) a[i * m + j] = std::exp(a[i * m + j] - mx) / z;
    }
  }
  /// z = W(A g(x)) + x for one side; x [n, D].
  std::vector<double> relation(const std::vector<double>& x, std::int64_t D, std::int64_t I, const std::vector<double>& tw,
                               const std::vector<double>& tb, const std::vector<double>& pw,
                               const std::vector<double>& pb, const std::vector<double>& gw,
                               const std::vector<double>& gb, const std::vector<double>& Ww,
                               const std::vector<double>& Wb, const std::vector<double>& fw,
                               const std::vector<double>& fb) const {
    const std::int64_t N = n();
    const auto lin = [&](const std::vector<double>& w, const std::vector<double>& b, std::int64_t out) {
      std::vector<double> y(N * out);
      for (std::int64_t i = 0; i < N; ++i)
        for (std::int64_t o = 0; o < out; ++o) {
          double s = b.empty() ? 0.0 : b[o];
          for (std::int64_t k = 0; k < D; ++k) s += x[i * D + k] * w[o * D + k];
          y[i * out + o] = s;
        }
      return y;
    };
    const auto th = lin(tw, tb, I), ph = lin(pw, pb, I), g = lin(gw, gb, I);
    std::vector<double> z = x;
    for (std::size_t b = 0; b + 1 < offsets.size(); ++b) {
      const std::int64_t s0 = offsets[b], m = offsets[b + 1] - offsets[b];
      if (m == 0) continue;
      std::vector<double> f(m * m), mask(m * m, 1.0);
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < m; ++j) {
          double s = 0;
          for (std::int64_t k = 0; k < I; ++k) s += th[(s0 + i) * I + k] * ph[(s0 + j) * I + k];
          f[i * m + j] = s;
          if (filter) {
            double l = fb[s0 + j];
            for (std::int64_t k = 0; k < D; ++k) l += x[(s0 + i) * D + k] * fw[(s0 + j) * D + k];
            mask[i * m + j] = l;
          }
        }
      if (filter) softmax_rows(mask, m);
      for (std::int64_t k = 0; k < m * m; ++k) f[k] *= mask[k];
      softmax_rows(f, m);
      for (std::int64_t i = 0; i < m; ++i) {
        std::vector<double> y(I, 0.0);
        for (std::int64_t j = 0; j < m; ++j)
          for (std::int64_t k = 0; k < I; ++k) y[k] += f[i * m + j] * g[(s0 + j) * I + k];
        for (std::int64_t d = 0; d < D; ++d) {
          double s = Wb.empty() ? 0.0 : Wb[d];
          for (std::int64_t k = 0; k < I; ++k) s += y[k] * Ww[d * I + k];
          z[(s0 + i) * D + d] += s;
        }
      }
    }
    return z;
  }
  /// Conv1x1 over [n, Cin, P, Q] -> [n, Ct, P, Q].
  std::vector<double> adapt(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& b) const {
    const std::int64_t N = n(), PQ = P * Q;
    std::vector<double> y(N * Ct * PQ);
    for (std::int64_t i = 0; i < N; ++i)
      for (std::int64_t o = 0; o < Ct; ++o)
        for (std::int64_t q = 0; q < PQ; ++q) {
          double s = b.empty() ? 0.0 : b[o];
          for (std::int64_t c = 0; c < Cs; ++c) s += w[o * Cs + c] * x[(i * Cs + c) * PQ + q];
          y[(i * Ct + o) * PQ + q] = s;
        }
    return y;
  }
  /// sum over images of ||a_b - b_b||_F, rows of width w.
  double per_image_distance(const std::vector<double>& a, const std::vector<double>& b, std::int64_t w) const {
    double total = 0;
    for (std::size_t k = 0; k + 1 < offsets.size(); ++k) {
      double s = 0;
      for (std::int64_t e = offsets[k] * w; e < offsets[k + 1] * w; ++e) s += (a[e] - b[e]) * (a[e] - b[e]);
      total += std::sqrt(s);
    }
    return total;
  }
  double loss(const InstanceRelationInputs& in) const {
    using I_ = InstanceRelationInputs;
    const auto& v = in.v;
    const std::int64_t Ds = Cs * P * Q, Dt = Ct * P * Q;
    const auto zs = relation(v[I_::student], Ds, Is, v[I_::s_theta_w], v[I_::s_theta_b], v[I_::s_phi_w],
                             v[I_::s_phi_b], v[I_::s_g_w], v[I_::s_g_b], v[I_::s_W_w], v[I_::s_W_b],
                             v[I_::s_filter_w], v[I_::s_filter_b]);
    const auto zt = relation(v[I_::teacher], Dt, It, v[I_::t_theta_w], v[I_::t_theta_b], v[I_::t_phi_w],
                             v[I_::t_phi_b], v[I_::t_g_w], v[I_::t_g_b], v[I_::t_W_w], v[I_::t_W_b],
                             v[I_::t_filter_w], v[I_::t_filter_b]);
    double L = relation_weight * per_image_distance(adapt(zs, v[I_::rel_adapt_w], v[I_::rel_adapt_b]), zt, Dt);
    if (fg) L += feature_weight * per_image_distance(adapt(v[I_::student], v[I_::fg_adapt_w], v[I_::fg_adapt_b]),
                                                     v[I_::teacher], Dt);
    return L;
  }
};

}  // namespace kdloss_ref::losses
