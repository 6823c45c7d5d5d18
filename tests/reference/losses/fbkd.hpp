// Naive double-precision references of FBKD (seed 001; reference/losses.md sections 1.3, 1.4, 1.6),
// written straight from the formulas with plain loops over row-major [B,C,H,W] vectors.
// Independent of the library: no kdloss header is included.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "reference/ops/pooling.hpp"

namespace kdloss_ref::fbkd {

using Vec = std::vector<double>;

using ::kdloss_ref::ops::Shape;
using ::kdloss_ref::ops::mean_over_channels;
using ::kdloss_ref::ops::mean_over_positions;
using ::kdloss_ref::ops::softmax_rows;

/// Mask of [rows, n] maps of the student and the teacher, with n * softmax (n = HW or C).
/// paper: n softmax((g_s + g_t) / t); code: n (softmax(g_t / t) + softmax(g_s / t)) / 2.
inline Vec mask(const Vec& g_s, const Vec& g_t, std::int64_t rows, std::int64_t n, bool paper, double t) {
  if (paper) {
    Vec sum(g_s.size());
    for (std::size_t i = 0; i < sum.size(); ++i) sum[i] = g_s[i] + g_t[i];
    return softmax_rows(sum, rows, n, t, static_cast<double>(n));
  }
  const Vec a = softmax_rows(g_t, rows, n, t, static_cast<double>(n));
  const Vec b = softmax_rows(g_s, rows, n, t, static_cast<double>(n));
  Vec m(a.size());
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = (a[i] + b[i]) / 2;
  return m;
}

/// torch.dist: sqrt of the sum of squared differences.
inline double dist(const Vec& a, const Vec& b) {
  double acc = 0;
  for (std::size_t i = 0; i < a.size(); ++i) acc += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(acc);
}

/// L_AM = sqrt(sum (T - A)^2 * M_s[b,h,w] * M_c[b,c]); mc empty: no channel mask.
inline double masked_feature(const Vec& a, const Vec& t, const Vec& ms, const Vec& mc, const Shape& s) {
  double acc = 0;
  for (std::int64_t b = 0; b < s.b; ++b)
    for (std::int64_t c = 0; c < s.c; ++c)
      for (std::int64_t h = 0; h < s.h; ++h)
        for (std::int64_t w = 0; w < s.w; ++w) {
          const std::int64_t i = s.at(b, c, h, w);
          const double d = t[i] - a[i];
          double m = ms[b * s.hw() + h * s.w + w];
          if (!mc.empty()) m *= mc[b * s.c + c];
          acc += d * d * m;
        }
  return std::sqrt(acc);
}

/// Paper L_AT: ||G_s(S) - G_s(T)|| + ||G_c(S) - G_c(T)|| with abs-mean maps.
inline double transfer_paper(const Vec& st, const Vec& t, const Shape& s) {
  return dist(mean_over_channels(st, s, true), mean_over_channels(t, s, true)) +
         dist(mean_over_positions(st, s, true), mean_over_positions(t, s, true));
}
/// Code L_AT: ||mean_hw(T) - C_hat|| + ||mean_c(T) - S_hat|| with plain means.
inline double transfer_code(const Vec& c_hat, const Vec& s_hat, const Vec& t, const Shape& s) {
  return dist(mean_over_positions(t, s, false), c_hat) + dist(mean_over_channels(t, s, false), s_hat);
}

struct Config {
  bool paper_mask = false, paper_transfer = false;
  double t_s = 0.5, t_c = 0.5, w_am = 7e-5, w_at = 4e-3;
  bool channel_mask = false;
};

struct Level {
  Shape shape;
  Vec s, t;
  Vec a;             // adapted student; empty: s
  Vec c_hat, s_hat;  // code L_AT inputs [B,C] and [B,H*W]
  const Vec& adapted() const { return a.empty() ? s : a; }
};

struct Masks {
  Vec ms, mc;
};
inline Masks masks_of(const Level& l, const Config& c) {
  const Shape& s = l.shape;
  Masks m;
  m.ms = mask(mean_over_channels(l.s, s, true), mean_over_channels(l.t, s, true), s.b, s.hw(), c.paper_mask, c.t_s);
  m.mc = mask(mean_over_positions(l.s, s, true), mean_over_positions(l.t, s, true), s.b, s.c, c.paper_mask, c.t_c);
  return m;
}

/// sum over levels of w_am L_AM + w_at L_AT. `fixed`: masks held constant (for gradient checks,
/// as the reference code detaches them); otherwise computed from each level's S and T.
inline double total(const std::vector<Level>& levels, const Config& c, const std::vector<Masks>* fixed = nullptr) {
  double acc = 0;
  for (std::size_t i = 0; i < levels.size(); ++i) {
    const Level& l = levels[i];
    const Masks m = fixed ? (*fixed)[i] : masks_of(l, c);
    const double am = masked_feature(l.adapted(), l.t, m.ms, c.channel_mask ? m.mc : Vec{}, l.shape);
    const double at =
        c.paper_transfer ? transfer_paper(l.s, l.t, l.shape) : transfer_code(l.c_hat, l.s_hat, l.t, l.shape);
    acc += c.w_am * am + c.w_at * at;
  }
  return acc;
}

// ---------------------------------------------------------------------------------------------
// Gradients as PyTorch autograd computes them for the reference code (python/tests/reference_impl.py,
// fbkd_total), following its backward formulas step by step so that NaN and inf land exactly where
// autograd puts them: norm_backward is grad * (self / norm) with norm == 0 masked to 0, pow's backward
// grad * 0.5 * sum^-0.5, abs's backward grad * sgn(x) with sgn(0) = sgn(NaN) = 0, and the masks are
// detached. The one deliberate difference: at L_AM = 0 (where sum ** 0.5 has an infinite derivative
// and autograd gives NaN) the gradient is 0, PyTorch's norm convention, which kdloss documents.

/// PyTorch's sgn: -1, 0, 1, and 0 at NaN.
inline double sgn(double x) { return static_cast<double>((x > 0) - (x < 0)); }

/// Gradients of one level; an entry is empty where the input is not given (A) or not read.
struct Grads {
  Vec a, s, c_hat, s_hat;
};

/// grad * (self / norm), masked to 0 where norm == 0: autograd's backward of torch.dist / norm.
inline Vec norm_backward(const Vec& self, double norm, double grad) {
  Vec g(self.size());
  for (std::size_t i = 0; i < g.size(); ++i) g[i] = norm == 0 ? 0.0 : grad * (self[i] / norm);
  return g;
}
inline Vec minus(const Vec& a, const Vec& b) {
  Vec d(a.size());
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = a[i] - b[i];
  return d;
}
inline double norm2(const Vec& d) {
  double acc = 0;
  for (double v : d) acc += v * v;
  return std::sqrt(acc);
}

/// L_AM = sum((t - a)^2 * ms [* mc]) ** 0.5 (mc empty: no channel mask), and grad * dL_AM/da added
/// to *grad_a as autograd computes it (0 at L_AM = 0, see above).
inline double masked_feature_autograd(const Vec& a, const Vec& t, const Vec& ms, const Vec& mc, const Shape& sh,
                                      double grad, Vec* grad_a) {
  double sum = 0;
  for (std::int64_t b = 0; b < sh.b; ++b)
    for (std::int64_t ch = 0; ch < sh.c; ++ch)
      for (std::int64_t h = 0; h < sh.h; ++h)
        for (std::int64_t w = 0; w < sh.w; ++w) {
          const std::int64_t k = sh.at(b, ch, h, w);
          double v = (t[k] - a[k]) * (t[k] - a[k]) * ms[b * sh.hw() + h * sh.w + w];
          if (!mc.empty()) v *= mc[b * sh.c + ch];
          sum += v;
        }
  const double d_sum = sum == 0 ? 0.0 : grad * (0.5 * std::pow(sum, -0.5));
  for (std::int64_t b = 0; b < sh.b; ++b)
    for (std::int64_t ch = 0; ch < sh.c; ++ch)
      for (std::int64_t h = 0; h < sh.h; ++h)
        for (std::int64_t w = 0; w < sh.w; ++w) {
          const std::int64_t k = sh.at(b, ch, h, w);
          double d = d_sum;
          if (!mc.empty()) d *= mc[b * sh.c + ch];
          d *= ms[b * sh.hw() + h * sh.w + w];
          (*grad_a)[k] += -(d * (2 * (t[k] - a[k])));
        }
  return std::sqrt(sum);
}

/// The value of fbkd_total (a term with weight 0 is skipped, as the reference code skips it) and,
/// in `grads`, d value / d (A, S, C_hat, S_hat) times `upstream`. Without an adapter (a empty) the
/// L_AM gradient goes to S. grads->s is all zeros in the code form with an adapter (S only feeds the
/// detached masks), grads->c_hat / s_hat all zeros in the paper form.
inline double autograd_total(const std::vector<Level>& levels, const Config& c, double upstream,
                             std::vector<Grads>* grads) {
  double total = 0;
  grads->assign(levels.size(), {});
  for (std::size_t i = 0; i < levels.size(); ++i) {
    const Level& l = levels[i];
    const Shape& sh = l.shape;
    const Masks m = masks_of(l, c);
    Grads& g = (*grads)[i];
    g.s.assign(l.s.size(), 0.0);
    if (!l.a.empty()) g.a.assign(l.a.size(), 0.0);
    g.c_hat.assign(l.c_hat.size(), 0.0);
    g.s_hat.assign(l.s_hat.size(), 0.0);
    Vec& ga = l.a.empty() ? g.s : g.a;
    if (c.w_am != 0)
      total += c.w_am * masked_feature_autograd(l.adapted(), l.t, m.ms, c.channel_mask ? m.mc : Vec{}, sh,
                                                upstream * c.w_am, &ga);
    if (c.w_at == 0) continue;
    const double d_at = upstream * c.w_at;
    if (c.paper_transfer) {
      const Vec ds = minus(mean_over_channels(l.s, sh, true), mean_over_channels(l.t, sh, true));
      const Vec dc = minus(mean_over_positions(l.s, sh, true), mean_over_positions(l.t, sh, true));
      const double ns = norm2(ds), nc = norm2(dc);
      total += c.w_at * (ns + nc);
      const Vec gs = norm_backward(ds, ns, d_at), gc = norm_backward(dc, nc, d_at);
      for (std::int64_t b = 0; b < sh.b; ++b)
        for (std::int64_t ch = 0; ch < sh.c; ++ch)
          for (std::int64_t h = 0; h < sh.h; ++h)
            for (std::int64_t w = 0; w < sh.w; ++w) {
              const std::int64_t k = sh.at(b, ch, h, w);
              const double sg = sgn(l.s[k]);
              g.s[k] += sg * (gs[b * sh.hw() + h * sh.w + w] / static_cast<double>(sh.c)) +
                        sg * (gc[b * sh.c + ch] / static_cast<double>(sh.hw()));
            }
    } else {
      // torch.dist(mean(T), C_hat): the gradient of the second argument is -norm_backward(self - other).
      const Vec dc = minus(mean_over_positions(l.t, sh, false), l.c_hat);
      const Vec ds = minus(mean_over_channels(l.t, sh, false), l.s_hat);
      const double nc = norm2(dc), ns = norm2(ds);
      total += c.w_at * (nc + ns);
      const Vec gc = norm_backward(dc, nc, d_at), gs = norm_backward(ds, ns, d_at);
      for (std::size_t k = 0; k < gc.size(); ++k) g.c_hat[k] = -gc[k];
      for (std::size_t k = 0; k < gs.size(); ++k) g.s_hat[k] = -gs[k];
    }
  }
  return total;
}

}  // namespace kdloss_ref::fbkd
