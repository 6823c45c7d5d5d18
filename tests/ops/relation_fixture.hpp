// Shared by test_dot_relation.cpp and test_concat_relation.cpp: relation shapes, operand layouts and
// the buffers of one call.
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

#include "ops/relation_gpu.hpp"
#include "reference/ops/pairwise_relation.hpp"
#include "support/test_support.hpp"

namespace kdloss_test {

/// How a [B, P, C] operand lies in memory: 0 contiguous; 1 channels-first ([B, C, P] storage, the
/// [B, C, H, W] map read without a copy); 2 positions outermost with padded rows ([P, B, C + 3]).
inline constexpr int kRelationLayouts = 3;
inline std::vector<int> relation_order(int layout) {
  if (layout == 1) return {0, 2, 1};
  if (layout == 2) return {1, 0, 2};
  return {0, 1, 2};
}

/// A [B, P, C] operand with reference values in double, stored as T in `layout`.
template <class T>
struct Operand {
  Strided<T> s;
  Operand(const std::vector<double>& v, std::int64_t B, std::int64_t P, std::int64_t C, int layout) {
    std::vector<T> t(v.begin(), v.end());
    s = relayout(t, kdloss::Dims{B, P, C}, relation_order(layout), layout == 2 ? 3 : 0);
  }
  kdloss::View<const T> in() const { return kdloss::View<const T>(s.view); }
  kdloss::View<T> out() { return s.view; }
  std::vector<double> values() const {
    const auto v = to_vector(s.view);
    return std::vector<double>(v.begin(), v.end());
  }
};

/// Random inputs of one relation problem.
struct RelationCase {
  kdloss_ref::ops::PairwiseRelation shape;
  std::vector<double> theta, phi, g, w, gy;
  RelationCase(std::int64_t B, std::int64_t N, std::int64_t Nk, std::int64_t m, std::int64_t c, std::uint32_t seed)
      : shape{B, N, Nk, m, c},
        theta(random_vector<double>(B * N * m, seed)),
        phi(random_vector<double>(B * Nk * m, seed + 1)),
        g(random_vector<double>(B * Nk * c, seed + 2)),
        w(random_vector<double>(2 * m, seed + 3)),
        gy(random_vector<double>(B * N * c, seed + 4)) {}
  std::int64_t theta_size() const { return shape.batch * shape.queries * shape.embed; }
  std::int64_t phi_size() const { return shape.batch * shape.keys * shape.embed; }
  std::int64_t g_size() const { return shape.batch * shape.keys * shape.values; }
  std::int64_t y_size() const { return shape.batch * shape.queries * shape.values; }
};

/// y and the gradients of one call, in double.
struct RelationRun {
  std::vector<double> y, theta, phi, g, w;
};

inline std::vector<double> nan_vector(std::int64_t n) {
  return std::vector<double>(static_cast<std::size_t>(n), std::numeric_limits<double>::quiet_NaN());
}

/// old + beta * ...: the expected value of a gradient written with GradAccumulate{beta} over `old`.
inline std::vector<double> accumulate(std::vector<double> grad, const std::vector<double>& old, double beta) {
  if (beta != 0)
    for (std::size_t i = 0; i < grad.size(); ++i) grad[i] += beta * old[i];
  return grad;
}

/// Runs f(rc, layout, beta, seed) over relation shapes {B, N, N', m, c} (N != N', N = 1, N' = 1, m != c,
/// m = c = 1), every layout and beta 0 / 1, each with its own seed.
template <class F>
void for_relation_cases(F&& f) {
  const std::int64_t shapes[][5] = {{2, 12, 5, 4, 3}, {1, 1, 7, 3, 5}, {3, 9, 1, 2, 4}, {2, 40, 11, 16, 7},
                                    {1, 5, 5, 1, 1}};
  std::uint32_t seed = 1;
  for (const auto& s : shapes)
    for (int layout = 0; layout < kRelationLayouts; ++layout)
      for (double beta : {0.0, 1.0}) {
        CAPTURE(s[0]);
        CAPTURE(s[1]);
        CAPTURE(s[2]);
        CAPTURE(layout);
        CAPTURE(beta);
        seed += 10;
        f(RelationCase(s[0], s[1], s[2], s[3], s[4], seed), layout, beta, seed);
      }
}

/// Central differences of L = sum(rc.gy * forward(inputs)) in the input `field` of rc.
template <class Forward>
std::vector<double> numeric_relation_gradient(const RelationCase& rc, std::vector<double> RelationCase::*field,
                                              Forward&& forward) {
  return numeric_gradient(rc.*field, [&](const std::vector<double>& v) {
    RelationCase c = rc;
    c.*field = v;
    const std::vector<double> y = forward(c);
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i) s += rc.gy[i] * y[i];
    return s;
  });
}

/// relation_on_gpu over the inputs of `rc`.
inline std::vector<double> relation_on_gpu(bool concat, int dtype, int layout, const RelationCase& rc) {
  const auto& d = rc.shape;
  return relation_on_gpu(concat, dtype, layout, d.batch, d.queries, d.keys, d.embed, d.values, rc.theta, rc.phi, rc.g,
                         rc.w, rc.gy);
}

}  // namespace kdloss_test
