// Host-callable GPU runs of drkd::instance_relation_loss and instance_relation_paper_loss (instance_relation_cuda.cu).
#pragma once
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

}  // namespace kdloss_test
