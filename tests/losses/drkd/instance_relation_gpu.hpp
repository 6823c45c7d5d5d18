// Host-callable GPU runs of drkd::instance_relation_paper_loss (instance_relation_cuda.cu).
#pragma once
#include <vector>

#include "reference/losses/drkd_instance_paper.hpp"

namespace kdloss_test {

/// On the GPU (a fresh stream and cuBLAS handle, a workspace sized by the query), forward_backward with the
/// options of `r` over row-major features student [n, r.Ds] and teacher [n, r.Dt]; teacher_scores and
/// student_scores may be empty (absent). dtype 0 float, 1 double. Returns the value, then grad_student.
std::vector<double> instance_relation_paper_on_gpu(int dtype, const kdloss_ref::losses::InstancePaper& r,
                                                   const std::vector<double>& student,
                                                   const std::vector<double>& teacher,
                                                   const std::vector<double>& teacher_scores,
                                                   const std::vector<double>& student_scores);

}  // namespace kdloss_test
