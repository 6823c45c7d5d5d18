// Host-callable GPU runs of ops/boxes.hpp (boxes_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

namespace kdloss_test {

/// ops::giou_loss (reduction sum, xyxy) forward_backward on the GPU over [N, 4] boxes; dtype 0 float,
/// 1 double, 2 half; form as ops::OverlapForm. Returns {loss, grad_pred [N, 4], grad_target [N, 4]}.
std::vector<double> giou_loss_on_gpu(int dtype, const std::vector<double>& pred, const std::vector<double>& target,
                                     int form, double eps);

/// ops::generalized_box_iou [N, M] of xyxy boxes on the GPU (boxes2 read through a coordinate-major
/// strided view); dtype as above.
std::vector<double> generalized_box_iou_on_gpu(int dtype, const std::vector<double>& boxes1,
                                               const std::vector<double>& boxes2, std::int64_t n, std::int64_t m,
                                               int form, double eps);

}  // namespace kdloss_test
