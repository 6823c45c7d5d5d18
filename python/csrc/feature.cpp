// kdloss_torch family "feature": MSE, L1, smooth-L1, Frobenius distance and temperature KL
// (kdloss/losses/feature/*.hpp), each through the generic binding (binding.hpp); kdloss_torch/feature.py
// wraps them with the generic autograd Function (kdloss_torch/_function.py).
#include "kdloss/losses/feature/feature.hpp"

#include "binding.hpp"
#include "common.hpp"

namespace kdloss_torch {
namespace {

/// student, teacher -> out (0-dim, or the map for reduction none), grad_student: the shape of every
/// feature loss (Args with student, teacher, out, grad_out, grad_student and options).
constexpr auto student_teacher = [](auto& a, auto& f) {
  f.in("student", a.student);
  f.in("teacher", a.teacher);
  f.upstream(a.grad_out);
  if constexpr (std::is_same_v<decltype(a.options), kdloss::DistanceOptions>)
    f.out("out", a.out, Dims{});
  else
    f.out_reduced("out", a.out, a.options.reduction == kdloss::Reduction::none, "student");
  f.grad("grad_student", a.grad_student, "student");
};

}  // namespace
}  // namespace kdloss_torch

KDLOSS_TORCH_FAMILY(feature, m) {
  namespace kt = kdloss_torch;
  using kdloss::Reduction;
  kt::Options<kdloss::MseLossOptions>(m, "MseLossOptions", "kdloss::MseLossOptions")
      .field("reduction", &kdloss::MseLossOptions::reduction);
  kt::bind<kdloss::MseLossArgs>(m, "feature_mse_loss", "kdloss_torch.mse_loss", kt::student_teacher,
                                KDLOSS_TORCH_ENTRY(kdloss::mse_loss));
  kt::Options<kdloss::L1LossOptions>(m, "L1LossOptions", "kdloss::L1LossOptions")
      .field("reduction", &kdloss::L1LossOptions::reduction);
  kt::bind<kdloss::L1LossArgs>(m, "feature_l1_loss", "kdloss_torch.l1_loss", kt::student_teacher,
                               KDLOSS_TORCH_ENTRY(kdloss::l1_loss));
  kt::Options<kdloss::SmoothL1LossOptions>(m, "SmoothL1LossOptions", "kdloss::SmoothL1LossOptions")
      .field("beta", &kdloss::SmoothL1LossOptions::beta)
      .field("reduction", &kdloss::SmoothL1LossOptions::reduction);
  kt::bind<kdloss::SmoothL1LossArgs>(m, "feature_smooth_l1_loss", "kdloss_torch.smooth_l1_loss", kt::student_teacher,
                                     KDLOSS_TORCH_ENTRY(kdloss::smooth_l1_loss));
  kt::Options<kdloss::DistanceOptions>(m, "DistanceOptions", "options of distance_loss (none today)");
  kt::bind<kdloss::DistanceLossArgs>(m, "feature_distance_loss", "kdloss_torch.distance_loss", kt::student_teacher,
                                     KDLOSS_TORCH_ENTRY(kdloss::distance_loss));
  kt::Options<kdloss::KlDivOptions>(m, "KlDivOptions", "kdloss::KlDivOptions")
      .field("temperature", &kdloss::KlDivOptions::temperature)
      .field("class_axis", &kdloss::KlDivOptions::class_axis)
      .field("reduction", &kdloss::KlDivOptions::reduction);
  kt::bind<kdloss::KlDivLossArgs>(m, "feature_kl_div_loss", "kdloss_torch.kl_div_loss",
                                  [](auto& a, auto& f) {
                                    f.in("student_logits", a.student_logits);
                                    f.in("teacher_logits", a.teacher_logits);
                                    f.upstream(a.grad_out);
                                    f.out_reduced("out", a.out, a.options.reduction == Reduction::none,
                                                  "student_logits");
                                    f.grad("grad_student", a.grad_student, "student_logits");
                                  },
                                  KDLOSS_TORCH_ENTRY(kdloss::kl_div_loss));
}
