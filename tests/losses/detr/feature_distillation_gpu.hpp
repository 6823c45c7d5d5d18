// Host-callable GPU run of detr::target_aware_feature_loss (feature_distillation_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// The inputs of one target_aware_feature_loss call, row-major doubles (the test's case).
struct FeatureGpuInputs {
  std::int64_t K = 1, B = 1, Q = 1, C = 1, D = 1, topk = 1;
  std::vector<std::int64_t> H, W, gt_offsets;
  std::vector<double> scores, boxes, queries, gt;
  std::vector<std::vector<double>> ft, fs;
};

/// detr::target_aware_feature_loss on the GPU (default stream, a workspace sized by the query). backward_upstream
/// 0: forward_backward; otherwise backward with that grad_out. dtype 0 float, 1 double. Returns the value
/// (forward_backward; nothing for backward), then every level's grad_student_features.
std::vector<double> target_aware_feature_on_gpu(int dtype, const FeatureGpuInputs& in, double backward_upstream);

}  // namespace kdloss_test
