// Naive double-precision references of the SSIM family, written straight from the formulas:
// explicit padding (numpy 'reflect', repeated for pads longer than the map; zeros; valid), direct
// 2-D window sums with the outer-product Gaussian kernel, then the per-pixel formulas of kornia,
// pytorch-msssim and the thesis (equations 3a-3c and 4), nu, MS-SSIM's average-pool pyramid.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "reference/ops/filter.hpp"

namespace kdloss_ref::ssim {

using ::kdloss_ref::ops::gauss;
using ::kdloss_ref::ops::Pad;
using ::kdloss_ref::ops::reflect;

struct Shape {
  std::int64_t B, C, H, W;
  std::int64_t numel() const { return B * C * H * W; }
};

/// The five statistics of one plane (x, y given as H x W row-major) on the output grid.
struct Stats {
  std::int64_t Ho = 0, Wo = 0;
  std::vector<double> mx, my, pxx, pyy, pxy;
};

/// Window along each axis: the Gaussian, or {1} when `skip_short` and the axis is shorter than it.
inline Stats plane_stats(const double* x, const double* y, std::int64_t H, std::int64_t W, int F, double sigma, Pad pad,
                         bool skip_short) {
  const auto g = gauss(F, sigma);
  const bool rows_on = !(skip_short && H < F), cols_on = !(skip_short && W < F);
  const std::vector<double> wr = rows_on ? g : std::vector<double>{1.0}, wc = cols_on ? g : std::vector<double>{1.0};
  const int fr = static_cast<int>(wr.size()), fc = static_cast<int>(wc.size());
  const int pr = pad == Pad::valid ? 0 : fr / 2, pc = pad == Pad::valid ? 0 : fc / 2;
  Stats s;
  s.Ho = pad == Pad::valid ? H - fr + 1 : H;
  s.Wo = pad == Pad::valid ? W - fc + 1 : W;
  // Explicitly padded copies of x and y.
  const std::int64_t PH = H + 2 * pr, PW = W + 2 * pc;
  std::vector<double> px(PH * PW), py(PH * PW);
  for (std::int64_t i = 0; i < PH; ++i)
    for (std::int64_t j = 0; j < PW; ++j) {
      std::int64_t r = i - pr, c = j - pc;
      bool zero = false;
      if (pad == Pad::reflect) {
        r = reflect(r, H);
        c = reflect(c, W);
      } else if (r < 0 || r >= H || c < 0 || c >= W) {
        zero = true;
      }
      px[i * PW + j] = zero ? 0.0 : x[r * W + c];
      py[i * PW + j] = zero ? 0.0 : y[r * W + c];
    }
  const std::int64_t n = s.Ho * s.Wo;
  s.mx.assign(n, 0), s.my.assign(n, 0), s.pxx.assign(n, 0), s.pyy.assign(n, 0), s.pxy.assign(n, 0);
  for (std::int64_t o = 0; o < s.Ho; ++o)
    for (std::int64_t q = 0; q < s.Wo; ++q) {
      const std::int64_t k = o * s.Wo + q;
      for (int a = 0; a < fr; ++a)
        for (int b = 0; b < fc; ++b) {
          const double w = wr[a] * wc[b];
          const double xv = px[(o + a) * PW + q + b], yv = py[(o + a) * PW + q + b];
          s.mx[k] += w * xv;
          s.my[k] += w * yv;
          s.pxx[k] += w * xv * xv;
          s.pyy[k] += w * yv * yv;
          s.pxy[k] += w * xv * yv;
        }
    }
  return s;
}

inline double spow(double v, double p) {
  if (p == 0) return 1;
  return v < 0 ? -std::pow(-v, p) : std::pow(v, p);
}

enum class Kind { index, half_loss, clamped_loss, cs };

struct Opts {
  int F = 11;
  double sigma = 1.5;
  Pad pad = Pad::reflect;
  double L = 1.0, k1 = 0.01, k2 = 0.03, eps = 1e-12;
  double alpha = 1, beta = 1, gamma = 1;
  bool three = false;      // l^a c^b s^g even at unit exponents
  Kind kind = Kind::clamped_loss;
  bool skip_short = false; // pytorch-msssim: no smoothing along an axis shorter than the window
  bool normalize = false;  // nu: per-plane min-max
};

/// Per-pixel value from the statistics.
inline double pixel(const Opts& o, double mx, double my, double pxx, double pyy, double pxy) {
  const double C1 = (o.k1 * o.L) * (o.k1 * o.L), C2 = (o.k2 * o.L) * (o.k2 * o.L), C3 = C2 / 2;
  const double vx = std::max(pxx - mx * mx, 0.0), vy = std::max(pyy - my * my, 0.0), cov = pxy - mx * my;
  double S;
  if (o.kind == Kind::cs) return (2 * cov + C2) / (vx + vy + C2);
  const bool three = o.three || o.alpha != 1 || o.beta != 1 || o.gamma != 1;
  if (three) {
    const double l = (2 * mx * my + C1) / (mx * mx + my * my + C1);
    const double c = (2 * std::sqrt(vx) * std::sqrt(vy) + C2) / (vx + vy + C2);
    const double st = (cov + C3) / (std::sqrt(vx) * std::sqrt(vy) + C3);
    S = spow(l, o.alpha) * spow(c, o.beta) * spow(st, o.gamma);
  } else {
    S = (2 * mx * my + C1) * (2 * cov + C2) / ((mx * mx + my * my + C1) * (vx + vy + C2) + o.eps);
  }
  if (o.kind == Kind::index) return S;
  const double v = (1 - S) / 2;
  if (o.kind == Kind::half_loss) return v;
  return std::min(std::max(v, 0.0), 1.0);
}

/// nu applied to every plane of v: (v - min) / (max - min), 0 for a constant plane.
inline std::vector<double> nu(const std::vector<double>& v, const Shape& s) {
  std::vector<double> out(v.size());
  const std::int64_t hw = s.H * s.W;
  for (std::int64_t p = 0; p < s.B * s.C; ++p) {
    const auto first = v.begin() + p * hw;
    const double lo = *std::min_element(first, first + hw), hi = *std::max_element(first, first + hw);
    for (std::int64_t i = 0; i < hw; ++i) out[p * hw + i] = hi > lo ? (v[p * hw + i] - lo) / (hi - lo) : 0.0;
  }
  return out;
}

/// The per-pixel map [B, C, Ho, Wo] (Ho, Wo returned).
inline std::vector<double> value_map(std::vector<double> x, std::vector<double> y, const Shape& s, const Opts& o,
                                     std::int64_t* Ho = nullptr, std::int64_t* Wo = nullptr) {
  if (o.normalize) {
    x = nu(x, s);
    y = nu(y, s);
  }
  std::vector<double> out;
  for (std::int64_t p = 0; p < s.B * s.C; ++p) {
    const Stats st = plane_stats(x.data() + p * s.H * s.W, y.data() + p * s.H * s.W, s.H, s.W, o.F, o.sigma, o.pad,
                                 o.skip_short);
    for (std::size_t k = 0; k < st.mx.size(); ++k) out.push_back(pixel(o, st.mx[k], st.my[k], st.pxx[k], st.pyy[k], st.pxy[k]));
    if (Ho) *Ho = st.Ho;
    if (Wo) *Wo = st.Wo;
  }
  return out;
}

inline double mean(const std::vector<double>& v) {
  double t = 0;
  for (double e : v) t += e;
  return v.empty() ? 0.0 : t / static_cast<double>(v.size());
}
inline double sum(const std::vector<double>& v) {
  double t = 0;
  for (double e : v) t += e;
  return t;
}

/// Per-plane mean of the value map: [B*C].
inline std::vector<double> plane_means(const std::vector<double>& x, const std::vector<double>& y, const Shape& s,
                                       const Opts& o) {
  std::int64_t Ho = 0, Wo = 0;
  const auto m = value_map(x, y, s, o, &Ho, &Wo);
  std::vector<double> out(s.B * s.C, 0.0);
  for (std::int64_t p = 0; p < s.B * s.C; ++p)
    for (std::int64_t k = 0; k < Ho * Wo; ++k) out[p] += m[p * Ho * Wo + k] / static_cast<double>(Ho * Wo);
  return out;
}

/// F.avg_pool2d(v, 2, padding=[H % 2, W % 2]) with count_include_pad.
inline std::vector<double> avg_pool(const std::vector<double>& v, Shape& s) {
  const std::int64_t ph = s.H % 2, pw = s.W % 2;
  const std::int64_t Ho = (s.H + 2 * ph - 2) / 2 + 1, Wo = (s.W + 2 * pw - 2) / 2 + 1;
  std::vector<double> out(s.B * s.C * Ho * Wo, 0.0);
  for (std::int64_t p = 0; p < s.B * s.C; ++p)
    for (std::int64_t i = 0; i < Ho; ++i)
      for (std::int64_t j = 0; j < Wo; ++j) {
        double acc = 0;
        for (int a = 0; a < 2; ++a)
          for (int b = 0; b < 2; ++b) {
            const std::int64_t r = 2 * i - ph + a, c = 2 * j - pw + b;
            if (r >= 0 && r < s.H && c >= 0 && c < s.W) acc += v[(p * s.H + r) * s.W + c];
          }
        out[(p * Ho + i) * Wo + j] = acc / 4;
      }
  s.H = Ho;
  s.W = Wo;
  return out;
}

/// pytorch-msssim ssim per channel [B*C] (valid filtering, short axes unsmoothed, no eps).
inline std::vector<double> msssim_ssim_per_channel(const std::vector<double>& x, const std::vector<double>& y,
                                                   const Shape& s, int F, double sigma, double data_range,
                                                   bool nonnegative, bool normalize = false) {
  Opts o;
  o.F = F, o.sigma = sigma, o.pad = Pad::valid, o.L = data_range, o.eps = 0, o.kind = Kind::index;
  o.skip_short = true, o.normalize = normalize;
  auto v = plane_means(x, y, s, o);
  if (nonnegative)
    for (auto& e : v) e = std::max(e, 0.0);
  return v;
}

/// pytorch-msssim ms_ssim per channel [B*C].
inline std::vector<double> ms_ssim_per_channel(std::vector<double> x, std::vector<double> y, Shape s, int F,
                                               double sigma, double data_range, const std::vector<double>& weights,
                                               bool normalize = false) {
  if (normalize) {
    x = nu(x, s);
    y = nu(y, s);
  }
  Opts o;
  o.F = F, o.sigma = sigma, o.pad = Pad::valid, o.L = data_range, o.eps = 0, o.skip_short = true;
  std::vector<double> ms(s.B * s.C, 1.0);
  const std::size_t L = weights.size();
  for (std::size_t i = 0; i < L; ++i) {
    o.kind = i + 1 < L ? Kind::cs : Kind::index;
    const auto v = plane_means(x, y, s, o);
    for (std::size_t p = 0; p < ms.size(); ++p) ms[p] *= std::pow(std::max(v[p], 0.0), weights[i]);
    if (i + 1 < L) {
      Shape t = s;
      x = avg_pool(x, s);
      y = avg_pool(y, t);
    }
  }
  return ms;
}

}  // namespace kdloss_ref::ssim
