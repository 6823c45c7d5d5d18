// Host-callable GPU runs of drkd::instance_relation_loss and instance_relation_paper_loss (instance_relation_cuda.cu).
#pragma once
#include <cstdint>
#include <vector>

#include "reference/losses/drkd_instance_paper.hpp"
#include "reference/losses/drkd_instance_relation.hpp"

namespace kdloss_test {

/// On the GPU (a fresh stream and cuBLAS handle, a workspace sized by the query), forward_backward with the
/// options of `r` over row-major features student [n, r.Ds] and teacher [n, r.Dt]; teacher_scores and
/// student_scores may be empty (absent). dtype 0 float, 1 double. Returns the value, then grad_student.
std::vector<double> instance_relation_paper_on_gpu(int dtype, const kdloss_ref::losses::InstancePaper& r,
                                                   const std::vector<double>& student,
                                                   const std::vector<double>& teacher,
                                                   const std::vector<double>& teacher_scores,
                                                   const std::vector<double>& student_scores);

/// drkd::instance_relation_loss (code form) on the GPU, forward_backward with every gradient, on the problem
/// `r` with inputs `in` (tests/losses/drkd/instance_relation_args.hpp binds them). dtype 0 float, 1 double.
/// Returns the value, then the gradients of every present input but the teacher's features, in
/// InstanceRelationInputs order.
std::vector<double> instance_relation_on_gpu(int dtype, const kdloss_ref::losses::InstanceRelation& r,
                                             const kdloss_ref::losses::InstanceRelationInputs& in);

/// A pyramid level for the maps entry and the total: maps [B, C, H, W] (row-major), boxes [n, 4] in image
/// pixels, the ragged split in `offsets`.
struct MapsLevel {
  std::int64_t B = 0, Cs = 0, Ct = 0, H = 0, W = 0;
  std::vector<double> student, teacher;
};

/// drkd::instance_relation_maps_loss, code form, on the GPU (forward_backward; the relation's parameters of
/// `r`/`in` as instance_relation_args.hpp binds them, without the features): pooling P = r.P, `scale`,
/// `sampling`, `image0`. dtype 0 float, 1 double. Returns the value, grad_student_map, then the gradients of
/// every present relation input in InstanceRelationInputs order.
std::vector<double> instance_relation_maps_on_gpu(int dtype, const kdloss_ref::losses::InstanceRelation& r,
                                                  const kdloss_ref::losses::InstanceRelationInputs& in,
                                                  const MapsLevel& level, const std::vector<double>& boxes,
                                                  double scale, std::int64_t sampling, bool image0);

/// drkd::total_loss with the paper preset on the GPU over `levels` (forward_backward). dtype 0 float, 1
/// double. Returns the value, then each level's grad_student.
std::vector<double> total_paper_on_gpu(int dtype, const std::vector<MapsLevel>& levels, const std::vector<double>& boxes,
                                       const std::vector<std::int64_t>& offsets, const std::vector<double>& teacher_scores);

}  // namespace kdloss_test
