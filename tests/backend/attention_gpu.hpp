// Host-callable GPU runs of backend::cuda::attention_forward / attention_backward on plain
// expr::Attention* descriptions (implemented in attention_cuda.cu, compiled by nvcc).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// One strided operand: its storage, copied to the device as is, and element (b, r, c) at
/// storage[offset + b * batch + r * row + c * col].
struct AttnOperand {
  std::vector<double> storage;
  std::int64_t offset = 0, batch = 0, row = 0, col = 0;
};

/// The problem of expr::AttentionForward / AttentionBackward. o and the grad_* operands are output
/// layouts (their storage is the initial device contents); a grad_* with empty storage is not wanted.
struct AttnProblem {
  std::int64_t batch = 1, n_q = 0, n_k = 0, d = 0, dv = 0;
  double scale = 1.0;
  AttnOperand q, k, v, o, grad_o, grad_q, grad_k, grad_v;
  bool keep_lse = true;  // false: the forward gets no lse buffer (and the backward cannot run)
};

/// Whole output storages after the calls (lse: [batch * n_q], empty without keep_lse; a gradient not
/// wanted comes back empty).
struct AttnGpuResult {
  std::vector<double> o, lse, grad_q, grad_k, grad_v;
};

/// Element types: 0 float, 1 double, 2 half, 3 bfloat16. Paths: 0 automatic, 1 simple, 2 blocked,
/// 3 tensor_core (the half / bfloat16 forward; blocked otherwise).
inline constexpr int kAttnDtypes = 4;

/// attention_forward on device copies of the operands (one fresh stream), then, when `backward`,
/// attention_backward from the forward's own o and lse, with scratch of the queried size.
AttnGpuResult attention_on_gpu(int dtype, int path, const AttnProblem& p, bool backward);

/// Values as the GPU element type holds them (half / bfloat16 round to nearest even), back in double.
std::vector<double> round_to_dtype(int dtype, const std::vector<double>& v);

}  // namespace kdloss_test
