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
