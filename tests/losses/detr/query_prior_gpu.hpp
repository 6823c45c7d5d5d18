// Host-callable GPU run of detr::query_prior_loss (query_prior_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// detr::query_prior_loss forward_backward on the GPU (default stream, a workspace sized by the query) over
/// logits [K, B, Q, C] and boxes [K, B, Q, 4], ground truth labels [T] and boxes [T, 4], sizes [B, 2] and
/// the pairs (pred, target) of every layer split by `layers` (K + 1 offsets, host). dtype 0 float, 1 double.
/// Returns out_cls, out_l1, out_giou, then grad_logits and grad_boxes.
std::vector<double> query_prior_on_gpu(int dtype, std::int64_t K, std::int64_t B, std::int64_t Q, std::int64_t C,
                                       const std::vector<double>& logits, const std::vector<double>& boxes,
                                       const std::vector<std::int64_t>& labels, const std::vector<double>& gt,
                                       const std::vector<double>& sizes, const std::vector<std::int64_t>& pred,
                                       const std::vector<std::int64_t>& target, const std::vector<std::int64_t>& layers);

}  // namespace kdloss_test
