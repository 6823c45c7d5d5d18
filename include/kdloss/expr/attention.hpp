// kdloss/expr/attention.hpp: the plain-data description of a softmax attention pass that the backends
// evaluate in tiles with an online softmax, never storing the n_q x n_k matrix (backend/cpu/attention.hpp,
// backend/cuda/attention.cuh). For every batch b (independent problems):
//
//   S[i, j]  = scale * sum_f q[b, i, f] k[b, j, f]            i < n_q, j < n_k, f < d
//   P[i, j]  = exp(S[i, j] - lse[b, i]),  lse[b, i] = log sum_j exp(S[i, j])
//   o[b, i, f] = sum_j P[i, j] v[b, j, f]                    f < dv
//
// Backward (the flash-attention scheme; `lse` comes from forward, `o` is forward's output):
//
//   D[i]       = sum_f grad_o[b, i, f] o[b, i, f]
//   dP[i, j]   = sum_f grad_o[b, i, f] v[b, j, f]
//   dS[i, j]   = P[i, j] (dP[i, j] - D[i])
//   grad_q[b, i, f] = scale * sum_j dS[i, j] k[b, j, f]
//   grad_k[b, j, f] = scale * sum_i dS[i, j] q[b, i, f]
//   grad_v[b, j, f] = sum_i P[i, j] grad_o[b, i, f]
//
// Operands are strided (expr::MatOperand: element (b, r, c) at data[b*batch + r*row + c*col]), so a
// channels-first feature map [B, C, H, W] is read as [B, H*W, C] without a copy. Accumulation runs in
// Acc (float for float/half/bfloat16, double for double: math::acc_t<T>). A gradient operand with null
// data is not wanted and is not written. n_q, n_k, d, dv >= 1 (the op validates; backends assume it).
#pragma once
#include <cstdint>

#include "kdloss/config.hpp"
#include "kdloss/expr/matmul.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

template <class T, class Acc>
struct AttentionForward {
  std::int64_t batch = 1, n_q = 0, n_k = 0, d = 0, dv = 0;
  MatOperand<const T> q, k, v;  // (b, i, f), (b, j, f), (b, j, f)
  MatOperand<T> o;              // (b, i, f)
  Acc* lse = nullptr;           // [batch * n_q], contiguous (index b * n_q + i); null: not kept
  double scale = 1.0;
};

template <class T, class Acc>
struct AttentionBackward {
  std::int64_t batch = 1, n_q = 0, n_k = 0, d = 0, dv = 0;
  MatOperand<const T> q, k, v, o, grad_o;
  const Acc* lse = nullptr;               // [batch * n_q] from AttentionForward
  MatOperand<T> grad_q, grad_k, grad_v;   // data == nullptr: not wanted
  double scale = 1.0;
};

} } }  // namespace kdloss::expr
