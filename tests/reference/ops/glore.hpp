// Naive double-precision reference of ops::glore (the DRKD code's GloRe_Unit_2D, normalize=False),
// composed from the references of its ops (reference/ops/matmul.hpp, reference/ops/batch_norm.hpp) over
// row-major [B, channels, N] values.
#pragma once
#include <cstdint>
#include <vector>

#include "reference/ops/batch_norm.hpp"
#include "reference/ops/matmul.hpp"

namespace kdloss_ref::ops {

struct Glore {
  std::int64_t batch, channels, mid, positions;
  double eps = 1e-4;
  /// The blocker's mode: training (batch statistics) or evaluation (running_mean / running_var [C]).
  bool training = true;
  std::vector<double> running_mean{}, running_var{};

  /// The ten parameters, row-major, in the order of GloreArgs.
  struct Params {
    std::vector<double> state_w, state_b, proj_w, proj_b, conv1_w, conv1_b, conv2_w, extend_w, bn_w, bn_b;
  };
  /// Every intermediate of the forward.
  struct State {
    std::vector<double> s, p, v, t, r, z, y, e, out;
  };

  std::int64_t s2() const { return 2 * mid; }
  /// [B, rows, cols] -> [B, cols, rows].
  std::vector<double> transpose(const std::vector<double>& a, std::int64_t rows, std::int64_t cols) const {
    std::vector<double> t(a.size());
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t i = 0; i < rows; ++i)
        for (std::int64_t j = 0; j < cols; ++j) t[(b * cols + j) * rows + i] = a[(b * rows + i) * cols + j];
    return t;
  }
  /// c[b] = a[b] (m x k) times b[b] (k x n).
  std::vector<double> mm(const std::vector<double>& a, const std::vector<double>& b, std::int64_t m, std::int64_t n,
                         std::int64_t k) const {
    return matmul(a, true, b, true, std::vector<double>(batch * m * n), batch, m, n, k, 1.0, 0.0);
  }
  Linear state() const { return {batch, channels, s2(), positions}; }
  Linear proj() const { return {batch, channels, mid, positions}; }
  Linear conv1() const { return {batch, mid, mid, s2()}; }  // over V^T: nodes are the channels
  Linear conv2() const { return {batch, s2(), s2(), mid}; }
  Linear extend() const { return {batch, s2(), channels, positions}; }
  BatchNorm blocker() const { return {batch, channels, positions, training, eps}; }

  State forward(const std::vector<double>& x, const Params& w) const {
    const std::int64_t s = s2(), m = mid, n = positions;
    State st;
    st.s = state().forward(x, w.state_w, w.state_b);
    st.p = proj().forward(x, w.proj_w, w.proj_b);
    st.v = mm(st.s, transpose(st.p, m, n), s, m, n);                              // V = S P^T
    st.t = transpose(conv1().forward(transpose(st.v, s, m), w.conv1_w, w.conv1_b), m, s);  // V A^T + 1 a^T
    st.r.resize(st.v.size());
    for (std::size_t i = 0; i < st.v.size(); ++i) {
      const double h = st.v[i] + st.t[i];
      st.r[i] = h < 0 ? 0.0 : h;  // torch.relu: NaN passes
    }
    st.z = conv2().forward(st.r, w.conv2_w, {});
    st.y = mm(st.z, st.p, s, n, m);  // Y = Z P
    st.e = extend().forward(st.y, w.extend_w, {});
    st.out = blocker().forward(st.e, w.bn_w, w.bn_b, running_mean, running_var);
    for (std::size_t i = 0; i < x.size(); ++i) st.out[i] += x[i];
    return st;
  }

  /// dL/dx and dL/dparams for L = sum(g * out).
  struct Grads {
    std::vector<double> x;
    Params p;
  };
  Grads backward(const std::vector<double>& x, const Params& w, const std::vector<double>& g) const {
    const std::int64_t s = s2(), m = mid, n = positions;
    const State st = forward(x, w);
    Grads gr;
    const auto bn = blocker().backward(st.e, w.bn_w, g, running_mean, running_var);
    gr.p.bn_w = bn.w;
    gr.p.bn_b = bn.b;
    const auto gy = extend().grad_x(w.extend_w, bn.x);
    gr.p.extend_w = extend().grad_w(st.y, bn.x);
    const auto gz = mm(gy, transpose(st.p, m, n), s, m, n);  // dZ = dY P^T
    auto gp = mm(transpose(st.z, s, m), gy, m, n, s);        // dP = Z^T dY
    const auto grr = conv2().grad_x(w.conv2_w, gz);
    gr.p.conv2_w = conv2().grad_w(st.r, gz);
    std::vector<double> gh(grr.size());
    for (std::size_t i = 0; i < gh.size(); ++i) gh[i] = st.r[i] <= 0 ? 0.0 : grr[i];
    const auto ght = transpose(gh, s, m), vt = transpose(st.v, s, m);
    const auto gvt = conv1().grad_x(w.conv1_w, ght);
    gr.p.conv1_w = conv1().grad_w(vt, ght);
    gr.p.conv1_b = conv1().grad_bias(ght);
    auto gv = transpose(gvt, m, s);
    for (std::size_t i = 0; i < gv.size(); ++i) gv[i] += gh[i];
    const auto gs = mm(gv, st.p, s, n, m);                    // dS = dV P
    const auto gp2 = mm(transpose(gv, s, m), st.s, m, n, s);  // dP += dV^T S
    for (std::size_t i = 0; i < gp.size(); ++i) gp[i] += gp2[i];
    gr.x = g;
    const auto gxs = state().grad_x(w.state_w, gs), gxp = proj().grad_x(w.proj_w, gp);
    for (std::size_t i = 0; i < gr.x.size(); ++i) gr.x[i] += gxs[i] + gxp[i];
    gr.p.state_w = state().grad_w(x, gs);
    gr.p.state_b = state().grad_bias(gs);
    gr.p.proj_w = proj().grad_w(x, gp);
    gr.p.proj_b = proj().grad_bias(gp);
    return gr;
  }
};

}  // namespace kdloss_ref::ops
