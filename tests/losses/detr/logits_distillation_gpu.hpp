// Host-callable GPU run of detr::logits_distillation_loss (logits_distillation_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// detr::logits_distillation_loss (split none) forward_backward on the GPU (default stream, a cuBLAS handle,
/// a workspace sized by the query) over student / teacher logits [K, B, Q, C] and boxes [K, B, Q, 4] and
/// sizes [B, 2]. dtype 0 float, 1 double. Returns out_cls, out_l1, out_giou, out, then grad_student_logits
/// and grad_student_boxes.
std::vector<double> logits_distillation_on_gpu(int dtype, std::int64_t K, std::int64_t B, std::int64_t Q,
                                               std::int64_t C, const std::vector<double>& sl,
                                               const std::vector<double>& sb, const std::vector<double>& tl,
                                               const std::vector<double>& tb, const std::vector<double>& sizes);

}  // namespace kdloss_test
