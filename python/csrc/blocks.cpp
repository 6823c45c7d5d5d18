// kdloss_torch family "blocks": the learnable blocks with every parameter gradient, ops::non_local (mmcv's
// NonLocal2d, mmrazor's NonLocal2dMaxpoolNstride, the official FBKD NonLocalBlockND) and ops::glore (the DRKD
// GloRe unit), through the generic binding (binding.hpp). kdloss_torch/blocks.py wraps them as nn.Modules
// whose state_dict keys are the reference code's.
//
// Each binding: the input x and the parameters (None where the block has none: gaussian mode's θ/φ, mmcv's
// conv_out bias before a BN), the BN running statistics (evaluation mode), the value z / out, the BN batch
// mean and unbiased variance (optional outputs, asked for by name in `want`, for the running statistics),
// a gradient per input, and the reserve (optional too: "reserve" in `want`; without it backward
// recomputes the state).
#include "binding.hpp"
#include "common.hpp"
#include "kdloss/ops/glore.hpp"
#include "kdloss/ops/non_local.hpp"

namespace kdloss_torch {

template <>
struct EnumNames<kdloss::ops::NonLocalMode> {
  static constexpr std::pair<const char*, kdloss::ops::NonLocalMode> values[] = {
      {"embedded_gaussian", kdloss::ops::NonLocalMode::embedded_gaussian},
      {"gaussian", kdloss::ops::NonLocalMode::gaussian},
      {"dot_product", kdloss::ops::NonLocalMode::dot_product},
      {"concatenation", kdloss::ops::NonLocalMode::concatenation}};
  static constexpr const char* expected = nullptr;
};

namespace {

constexpr auto describe_non_local = [](auto& a, auto& f) {
  f.in("x", a.x);
  f.in("g_weight", a.g_weight);
  f.in("g_bias", a.g_bias, true);
  f.in("theta_weight", a.theta_weight, true);
  f.in("theta_bias", a.theta_bias, true);
  f.in("phi_weight", a.phi_weight, true);
  f.in("phi_bias", a.phi_bias, true);
  f.in("concat_project_weight", a.concat_project_weight, true);
  f.in("conv_out_weight", a.conv_out_weight);
  f.in("conv_out_bias", a.conv_out_bias, true);
  f.in("bn_weight", a.bn_weight, true);
  f.in("bn_bias", a.bn_bias, true);
  f.in("bn_running_mean", a.bn_running_mean, true);
  f.in("bn_running_var", a.bn_running_var, true);
  f.upstream(a.grad_z);
  f.out_like("z", a.z, "x");
  const kdloss::Dims c{a.x.rank() == 4 ? a.x.shape[1] : 0};
  f.out("bn_batch_mean", a.bn_batch_mean, c, true);
  f.out("bn_batch_var", a.bn_batch_var, c, true);
  f.grad("grad_x", a.grad_x, "x");
  f.grad("grad_g_weight", a.grad_g_weight, "g_weight");
  f.grad("grad_g_bias", a.grad_g_bias, "g_bias");
  f.grad("grad_theta_weight", a.grad_theta_weight, "theta_weight");
  f.grad("grad_theta_bias", a.grad_theta_bias, "theta_bias");
  f.grad("grad_phi_weight", a.grad_phi_weight, "phi_weight");
  f.grad("grad_phi_bias", a.grad_phi_bias, "phi_bias");
  f.grad("grad_concat_project_weight", a.grad_concat_project_weight, "concat_project_weight");
  f.grad("grad_conv_out_weight", a.grad_conv_out_weight, "conv_out_weight");
  f.grad("grad_conv_out_bias", a.grad_conv_out_bias, "conv_out_bias");
  f.grad("grad_bn_weight", a.grad_bn_weight, "bn_weight");
  f.grad("grad_bn_bias", a.grad_bn_bias, "bn_bias");
  f.reserve(a.reserve, [&] { return kdloss::ops::non_local_reserve_bytes(a); }, true);
};

constexpr auto describe_glore = [](auto& a, auto& f) {
  f.in("x", a.x);
  f.in("state_weight", a.state_weight);
  f.in("state_bias", a.state_bias);
  f.in("proj_weight", a.proj_weight);
  f.in("proj_bias", a.proj_bias);
  f.in("gcn_conv1_weight", a.gcn_conv1_weight);
  f.in("gcn_conv1_bias", a.gcn_conv1_bias);
  f.in("gcn_conv2_weight", a.gcn_conv2_weight);
  f.in("extend_weight", a.extend_weight);
  f.in("bn_weight", a.bn_weight);
  f.in("bn_bias", a.bn_bias);
  f.in("bn_running_mean", a.bn_running_mean, true);
  f.in("bn_running_var", a.bn_running_var, true);
  f.upstream(a.grad_out);
  f.out_like("out", a.out, "x");
  const kdloss::Dims c{a.x.rank() == 4 ? a.x.shape[1] : 0};
  f.out("bn_batch_mean", a.bn_batch_mean, c, true);
  f.out("bn_batch_var", a.bn_batch_var, c, true);
  f.grad("grad_x", a.grad_x, "x");
  f.grad("grad_state_weight", a.grad_state_weight, "state_weight");
  f.grad("grad_state_bias", a.grad_state_bias, "state_bias");
  f.grad("grad_proj_weight", a.grad_proj_weight, "proj_weight");
  f.grad("grad_proj_bias", a.grad_proj_bias, "proj_bias");
  f.grad("grad_gcn_conv1_weight", a.grad_gcn_conv1_weight, "gcn_conv1_weight");
  f.grad("grad_gcn_conv1_bias", a.grad_gcn_conv1_bias, "gcn_conv1_bias");
  f.grad("grad_gcn_conv2_weight", a.grad_gcn_conv2_weight, "gcn_conv2_weight");
  f.grad("grad_extend_weight", a.grad_extend_weight, "extend_weight");
  f.grad("grad_bn_weight", a.grad_bn_weight, "bn_weight");
  f.grad("grad_bn_bias", a.grad_bn_bias, "bn_bias");
  f.reserve(a.reserve, [&] { return kdloss::ops::glore_reserve_bytes(a); }, true);
};

}  // namespace
}  // namespace kdloss_torch

KDLOSS_TORCH_FAMILY(blocks, m) {
  namespace kt = kdloss_torch;
  namespace ops = kdloss::ops;
  kt::Options<ops::NonLocalOptions>(m, "NonLocalOptions", "kdloss::ops::NonLocalOptions")
      .field("mode", &ops::NonLocalOptions::mode, "embedded_gaussian, gaussian, dot_product or concatenation")
      .field("use_scale", &ops::NonLocalOptions::use_scale, "embedded_gaussian: scores / sqrt(m)")
      .field("pool_g", &ops::NonLocalOptions::pool_g, "total max-pool factor of g (1: none)")
      .field("pool_phi", &ops::NonLocalOptions::pool_phi, "total max-pool factor of phi (of x in gaussian mode)")
      .field("norm", &ops::NonLocalOptions::norm, "conv_out followed by BN (false: z = x + W y)")
      .field("training", &ops::NonLocalOptions::training, "BN with batch (true) or running (false) statistics")
      .field("bn_eps", &ops::NonLocalOptions::bn_eps);
  kt::bind<ops::NonLocalArgs>(m, "blocks_non_local", "kdloss_torch.blocks.non_local", kt::describe_non_local,
                              KDLOSS_TORCH_ENTRY(ops::non_local));
  kt::Options<ops::GloreOptions>(m, "GloreOptions", "kdloss::ops::GloreOptions")
      .field("bn_eps", &ops::GloreOptions::bn_eps, "the blocker's eps (1e-4 in the DRKD code)")
      .field("training", &ops::GloreOptions::training, "the blocker with batch (true) or running (false) statistics");
  kt::bind<ops::GloreArgs>(m, "blocks_glore", "kdloss_torch.blocks.glore", kt::describe_glore,
                           KDLOSS_TORCH_ENTRY(ops::glore));
}
