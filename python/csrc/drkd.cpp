// kdloss_torch family "drkd": the DRKD losses (kdloss/losses/drkd/*.hpp) through the generic binding
// (binding.hpp). Today the seed pixel relation loss; kdloss_torch/drkd.py wraps it as an autograd function.
#include "kdloss/losses/drkd/drkd.hpp"

#include "binding.hpp"
#include "common.hpp"

KDLOSS_TORCH_FAMILY(drkd, m) {
  namespace kt = kdloss_torch;
  // reduction is not a field: the binding layer has no Python type for kdloss::Reduction yet (mean here).
  kt::Options<kdloss::drkd::PixelRelationOptions>(m, "PixelRelationOptions", "options of drkd.pixel_relation_loss")
      .field("scale", &kdloss::drkd::PixelRelationOptions::scale, "multiplies F F^T before the softmax; 0: 1/sqrt(C)");
  kt::bind<kdloss::drkd::PixelRelationLossArgs>(m, "drkd_pixel_relation_loss", "kdloss_torch.drkd.pixel_relation_loss",
                                                [](auto& a, auto& f) {
                                                  f.in("student", a.student);
                                                  f.in("teacher", a.teacher);
                                                  f.upstream(a.grad_out);
                                                  f.out("out", a.out, kt::Dims{});
                                                  f.grad("grad_student", a.grad_student, "student");
                                                },
                                                KDLOSS_TORCH_ENTRY(kdloss::drkd::pixel_relation_loss));
}
