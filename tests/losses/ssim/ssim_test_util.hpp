// Helpers shared by the SSIM tests: option translation to the reference, numeric gradients on a
// subset of positions, error checks.
#pragma once
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "kdloss/core/error.hpp"
#include "kdloss/losses/ssim/options.hpp"
#include "reference/losses/ssim.hpp"
#include "support/test_support.hpp"

namespace kdloss_test::ssim {

namespace ref = kdloss_ref::ssim;

inline ref::Pad ref_pad(kdloss::ops::Padding p) {
  return p == kdloss::ops::Padding::reflect ? ref::Pad::reflect
         : p == kdloss::ops::Padding::zeros ? ref::Pad::zeros
                                            : ref::Pad::valid;
}
inline ref::Opts ref_opts(const kdloss::SsimOptions& o, ref::Kind kind) {
  ref::Opts r;
  r.F = o.window_size, r.sigma = o.sigma, r.pad = ref_pad(o.padding), r.L = o.max_val, r.k1 = o.k1, r.k2 = o.k2;
  r.eps = o.eps, r.alpha = o.alpha, r.beta = o.beta, r.gamma = o.gamma, r.three = o.three_component;
  r.kind = kind, r.normalize = o.normalize;
  return r;
}
inline ref::Shape ref_shape(const kdloss::Dims& d) { return ref::Shape{d[0], d[1], d[2], d[3]}; }

/// Positions to differentiate at: the four corners of every plane's first and last rows, a band
/// along the edges (where the reflect fold acts) and a spread of interior points.
inline std::vector<std::size_t> probe_positions(const kdloss::Dims& d, std::size_t interior = 12) {
  std::vector<std::size_t> idx;
  const std::int64_t H = d[2], W = d[3], planes = d[0] * d[1];
  for (std::int64_t p = 0; p < planes; ++p) {
    const std::int64_t base = p * H * W;
    for (std::int64_t r : {std::int64_t(0), std::int64_t(1), H / 2, H - 2, H - 1})
      for (std::int64_t c : {std::int64_t(0), std::int64_t(2), W - 1}) {
        if (r >= 0 && r < H && c >= 0 && c < W) idx.push_back(static_cast<std::size_t>(base + r * W + c));
      }
  }
  const std::size_t n = static_cast<std::size_t>(d.product());
  for (std::size_t k = 0; k < interior; ++k) idx.push_back((k * 7919 + 13) % n);
  return idx;
}

/// Central differences of f at the given positions of x.
inline std::vector<double> numeric_at(std::vector<double> x, const std::vector<std::size_t>& at,
                                      const std::function<double(const std::vector<double>&)>& f, double h = 1e-6) {
  std::vector<double> g;
  for (std::size_t i : at) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = f(x);
    x[i] = keep - h;
    const double down = f(x);
    x[i] = keep;
    g.push_back((up - down) / (2 * h));
  }
  return g;
}
inline std::vector<double> pick(const std::vector<double>& v, const std::vector<std::size_t>& at) {
  std::vector<double> r;
  for (std::size_t i : at) r.push_back(v[i]);
  return r;
}

/// Sum of up[i] * v[i] (the objective whose gradient a backward with upstream `up` computes).
inline double weighted(const std::vector<double>& v, const std::vector<double>& up) {
  double t = 0;
  for (std::size_t i = 0; i < v.size(); ++i) t += v[i] * up[up.size() == 1 ? 0 : i];
  return t;
}

template <class Call>
void throws_with(Call&& call, const std::string& needle) {
  try {
    call();
    FAIL("expected kdloss::Error containing: " << needle);
  } catch (const kdloss::Error& e) {
    CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, e.what());
  }
}

}  // namespace kdloss_test::ssim
