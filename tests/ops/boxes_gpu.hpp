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

/// detr::matched_class_loss (focal or soft BCE, mmdet_num_pos) forward_backward on the GPU over logits
/// [B, Q, C], soft targets [T, C] and an assignment; dtype 0 float, 1 double. Returns {loss, grad [B, Q, C]}.
std::vector<double> matched_class_loss_on_gpu(int dtype, const std::vector<double>& logits, std::int64_t B,
                                              std::int64_t Q, std::int64_t C, const std::vector<double>& probs,
                                              const std::vector<std::int64_t>& pred_rows,
                                              const std::vector<std::int64_t>& target_rows, bool focal);

/// detr::matching_cost with the given preset (0 detr, 1 deformable_detr, 2 mmdet_hungarian, 3 detrdistill;
/// a cuBLAS handle for 3) on the GPU; targets packed with host offsets; returns out [B, Q, tmax].
std::vector<double> matching_cost_on_gpu(int dtype, int preset, const std::vector<double>& logits,
                                         const std::vector<double>& boxes, std::int64_t B, std::int64_t Q,
                                         std::int64_t C, const std::vector<double>& probs,
                                         const std::vector<std::int64_t>& labels, const std::vector<double>& tboxes,
                                         const std::vector<std::int64_t>& offsets, const std::vector<double>& sizes,
                                         std::int64_t tmax);

}  // namespace kdloss_test
