// Naive double-precision references of the feature losses, written straight from the formulas.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

namespace kdloss_ref {

enum class Red { none, mean, sum };

inline double mse_elem(double d) { return d * d; }
inline double l1_elem(double d) { return std::fabs(d); }
inline double smooth_l1_elem(double d, double beta) {
  const double a = std::fabs(d);
  return a < beta ? 0.5 * d * d / beta : a - 0.5 * beta;
}

/// Loss value(s): one element for mean/sum, the per-element map for none.
template <class Elem>
std::vector<double> pointwise(const std::vector<double>& s, const std::vector<double>& t, Red r, Elem elem) {
  std::vector<double> per(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) per[i] = elem(s[i] - t[i]);
  if (r == Red::none) return per;
  double total = 0;
  for (double v : per) total += v;
  if (r == Red::mean) total /= static_cast<double>(s.size());
  return {total};
}

/// ||s - t||_F over all elements.
inline double frobenius(const std::vector<double>& s, const std::vector<double>& t) {
  double acc = 0;
  for (std::size_t i = 0; i < s.size(); ++i) acc += (s[i] - t[i]) * (s[i] - t[i]);
  return std::sqrt(acc);
}

}  // namespace kdloss_ref

// ---- Frobenius distance gradient and temperature KL (distance.hpp, kl_div.hpp) ----
#include <algorithm>

namespace kdloss_ref {

/// d||s - t||_F / ds = (s - t) / ||s - t||, and 0 where the norm is 0 (torch.dist's backward).
inline std::vector<double> frobenius_grad(const std::vector<double>& s, const std::vector<double>& t) {
  const double norm = frobenius(s, t);
  std::vector<double> g(s.size(), 0.0);
  if (norm > 0)
    for (std::size_t i = 0; i < s.size(); ++i) g[i] = (s[i] - t[i]) / norm;
  return g;
}

enum class KlRed { none, mean, sum, batchmean };

/// A row-major tensor of `shape` seen as rows along `axis`: calls f(offsets of the row's elements).
template <class F>
void for_each_row(const std::vector<std::int64_t>& shape, int axis, F f) {
  std::int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= shape[d];
  for (std::size_t d = axis + 1; d < shape.size(); ++d) inner *= shape[d];
  const std::int64_t n = shape[axis];
  std::vector<std::size_t> idx(static_cast<std::size_t>(n));
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t i = 0; i < inner; ++i) {
      for (std::int64_t j = 0; j < n; ++j) idx[j] = static_cast<std::size_t>((o * n + j) * inner + i);
      f(idx);
    }
}

/// log softmax(x / T) over the positions `idx` (max-shifted: the formula, computed stably).
inline std::vector<double> log_softmax_row(const std::vector<double>& x, const std::vector<std::size_t>& idx,
                                           double T) {
  double m = -INFINITY, z = 0;
  for (std::size_t k : idx) m = std::max(m, x[k] / T);
  for (std::size_t k : idx) z += std::exp(x[k] / T - m);
  std::vector<double> out;
  for (std::size_t k : idx) out.push_back(x[k] / T - m - std::log(z));
  return out;
}

/// F.kl_div(F.log_softmax(s / T, axis), F.softmax(t / T, axis), reduction) * T * T on row-major
/// logits: per element T^2 * p_t * (log p_t - log p_s), 0 where p_t = 0 (xlogy).
inline std::vector<double> kl_div(const std::vector<double>& s, const std::vector<double>& t,
                                  const std::vector<std::int64_t>& shape, int axis, double T, KlRed r) {
  std::vector<double> per(s.size(), 0.0);
  for_each_row(shape, axis, [&](const std::vector<std::size_t>& idx) {
    const auto ls = log_softmax_row(s, idx, T), lt = log_softmax_row(t, idx, T);
    for (std::size_t j = 0; j < idx.size(); ++j) {
      const double pt = std::exp(lt[j]);
      per[idx[j]] = pt > 0 ? T * T * pt * (lt[j] - ls[j]) : 0.0;
    }
  });
  if (r == KlRed::none) return per;
  double total = 0;
  for (double v : per) total += v;
  if (r == KlRed::mean) total = s.empty() ? 0.0 : total / static_cast<double>(s.size());
  if (r == KlRed::batchmean) total = shape[0] > 0 ? total / static_cast<double>(shape[0]) : 0.0;
  return {total};
}

/// Analytic gradient of sum_k u_k * kl_div(...)_k wrt s (u: one element for a reduced loss, the map
/// for none): per row T * (p_s_j * sum_k w_k p_t_k - w_j p_t_j) with w the upstream times the
/// reduction's factor.
inline std::vector<double> kl_div_grad(const std::vector<double>& s, const std::vector<double>& t,
                                       const std::vector<std::int64_t>& shape, int axis, double T, KlRed r,
                                       const std::vector<double>& upstream) {
  double factor = 1.0;
  if (r == KlRed::mean) factor = s.empty() ? 0.0 : 1.0 / static_cast<double>(s.size());
  if (r == KlRed::batchmean) factor = shape[0] > 0 ? 1.0 / static_cast<double>(shape[0]) : 0.0;
  std::vector<double> g(s.size(), 0.0);
  for_each_row(shape, axis, [&](const std::vector<std::size_t>& idx) {
    const auto ls = log_softmax_row(s, idx, T), lt = log_softmax_row(t, idx, T);
    double weight = 0;
    for (std::size_t j = 0; j < idx.size(); ++j)
      weight += (r == KlRed::none ? upstream[idx[j]] : upstream[0] * factor) * std::exp(lt[j]);
    for (std::size_t j = 0; j < idx.size(); ++j) {
      const double w = r == KlRed::none ? upstream[idx[j]] : upstream[0] * factor;
      g[idx[j]] = T * (std::exp(ls[j]) * weight - w * std::exp(lt[j]));
    }
  });
  return g;
}

}  // namespace kdloss_ref

// ---- PyTorch's evaluation order, for non-finite inputs (docs/conventions.md, "Non-finite inputs") ----
// Each function below computes what PyTorch computes, step by step, so NaN and inf travel as they do
// there (checked against torch 2.x once: F.mse_loss, F.l1_loss, F.smooth_l1_loss, torch.dist and
// F.kl_div(F.log_softmax(s / T), F.softmax(t / T)) * T * T, values and autograd gradients).
#include <limits>

namespace kdloss_ref::torch_order {

inline double sign(double x) { return static_cast<double>((x > 0) - (x < 0)); }  // torch.sign(NaN) = 0

/// d(loss)/d(s_i) for an upstream w_i already multiplied by the reduction's factor (1/numel for mean).
inline double mse_grad(double d, double w) { return 2.0 * d * w; }
inline double l1_grad(double d, double w) { return sign(d) * w; }  // abs backward: grad * sgn(x)
inline double smooth_l1_grad(double d, double w, double beta) {  // smooth_l1_loss_backward; beta = 0 is l1
  if (beta == 0) return l1_grad(d, w);
  return d < -beta ? -w : d > beta ? w : d * w / beta;
}

/// torch.dist backward: grad * (x / norm).masked_fill_(norm == 0, 0).
inline std::vector<double> frobenius_grad(const std::vector<double>& s, const std::vector<double>& t, double up) {
  const double norm = frobenius(s, t);
  std::vector<double> g(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) g[i] = (norm == 0 ? 0.0 : (s[i] - t[i]) / norm) * up;
  return g;
}

/// max that propagates NaN (torch.max / the softmax kernels' row max).
inline double nan_max(double a, double b) { return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b); }
/// log_softmax(x / T) and softmax(x / T) over `idx`, in PyTorch's order: x - max, exp, sum, log.
inline void softmaxes(const std::vector<double>& x, const std::vector<std::size_t>& idx, double T,
                      std::vector<double>& log_p, std::vector<double>& p) {
  double m = -INFINITY, z = 0;
  for (std::size_t k : idx) m = nan_max(m, x[k] / T);
  for (std::size_t k : idx) z += std::exp(x[k] / T - m);
  log_p.clear();
  p.clear();
  for (std::size_t k : idx) {
    log_p.push_back(x[k] / T - m - std::log(z));
    p.push_back(std::exp(x[k] / T - m) / z);
  }
}
/// xlogy(x, y): NaN if y is NaN, 0 if x == 0, x log y otherwise.
inline double xlogy(double x, double y) { return std::isnan(y) ? NAN : x == 0 ? 0.0 : x * std::log(y); }

/// F.kl_div(F.log_softmax(s / T, axis), F.softmax(t / T, axis), reduction) * T * T, and its gradient
/// wrt s for the upstream `up` (one element, or the map for none): kl_div's backward -target * grad,
/// then log_softmax's backward g - exp(out) * sum(g), then 1/T.
inline void kl_div(const std::vector<double>& s, const std::vector<double>& t, const std::vector<std::int64_t>& shape,
                   int axis, double T, KlRed r, const std::vector<double>& up, std::vector<double>& value,
                   std::vector<double>& grad) {
  double factor = 1.0;
  if (r == KlRed::mean) factor = s.empty() ? 0.0 : 1.0 / static_cast<double>(s.size());
  if (r == KlRed::batchmean) factor = shape[0] > 0 ? 1.0 / static_cast<double>(shape[0]) : 0.0;
  std::vector<double> per(s.size(), 0.0);
  grad.assign(s.size(), 0.0);
  for_each_row(shape, axis, [&](const std::vector<std::size_t>& idx) {
    std::vector<double> ls, ps, lt, pt;
    softmaxes(s, idx, T, ls, ps);
    softmaxes(t, idx, T, lt, pt);
    std::vector<double> g_in(idx.size());
    double g_sum = 0;
    for (std::size_t j = 0; j < idx.size(); ++j) {
      per[idx[j]] = (xlogy(pt[j], pt[j]) - pt[j] * ls[j]) * T * T;
      const double w = (r == KlRed::none ? up[idx[j]] : up[0] * factor) * T * T;
      g_in[j] = -pt[j] * w;
      g_sum += g_in[j];
    }
    for (std::size_t j = 0; j < idx.size(); ++j) grad[idx[j]] = (g_in[j] - std::exp(ls[j]) * g_sum) / T;
  });
  if (r == KlRed::none) {
    value = per;
    return;
  }
  double total = 0;
  for (double v : per) total += v;
  value = {total * factor};
}

}  // namespace kdloss_ref::torch_order
