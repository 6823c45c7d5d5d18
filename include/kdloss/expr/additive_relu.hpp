// kdloss/expr/additive_relu.hpp: the plain-data description of a sum over pairs weighted by the ReLU of
// an additive score, which the backends evaluate (backend/cpu/additive_relu.hpp, backend/cuda/additive_relu.cuh):
//
//   a_i = u . p_i,  b_j = v . q_j          (p: [B, N, m] rows, q: [B, N', m] rows, w = [u; v] of length 2m)
//   y_i = scale * sum_j relu(a_i + b_j) x_j                    (x: [B, N', c], y: [B, N, c])
//
// and its backward from dy ([B, N, c]), with d_ij = [a_i + b_j > 0] * scale * (dy_i . x_j):
//   dp_i = (sum_j d_ij) u,  dq_j = (sum_i d_ij) v,  dx_j = scale * sum_i relu(a_i + b_j) dy_i,
//   du = sum_{b,i} (sum_j d_ij) p_i,  dv = sum_{b,j} (sum_i d_ij) q_j.
//
// relu(s) is 0 for s <= 0 (its derivative too, at s = 0 included) and NaN for s = NaN, whose derivative
// passes the upstream gradient (torch's threshold_backward tests s <= 0). Because the score is a sum of a
// query term and a key term, the active set {j : a_i + b_j > 0} = {j : b_j > -a_i} (exact: a rounded sum
// of two finite numbers is > 0 exactly when the real sum is) is a suffix of the keys sorted by b, which
// lets a backend replace the N x N' pairs by sorts, suffix sums and binary searches.
#pragma once
#include <cstdint>

#include "kdloss/config.hpp"
#include "kdloss/expr/matmul.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

template <class T>
struct AdditiveReluPass {
  std::int64_t batch = 0, n = 0, n2 = 0, m = 0, c = 0;  // images, queries N, keys N', score and value channels
  MatOperand<const T> p, q, x;                          // [B, N, m], [B, N', m], [B, N', c]
  const T* w = nullptr;                                 // [2m]: u = w[0, m), v = w[m, 2m)
  std::int64_t w_stride = 1;
  double scale = 1.0;
  MatOperand<T> y;              // forward output; data null: no forward
  MatOperand<const T> dy;       // backward input; data null: no backward
  MatOperand<T> dp, dq, dx;     // backward outputs, each null when not asked: out = beta_in * out + grad
  T* dw = nullptr;              // [2m] parameter gradient (null when not asked): dw = beta_param * dw + grad
  std::int64_t dw_stride = 1;
  double beta_in = 0.0, beta_param = 0.0;

  bool forward() const { return y.data != nullptr; }
  bool backward() const { return dy.data != nullptr; }
};

} } }  // namespace kdloss::expr
