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
#include <cstddef>
#include <type_traits>

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

/// A learnable parameter of a block and its gradient output (in the order the binding lists them).
template <class A, class In, class G>
struct Param {
  const char* name;
  const char* grad_name;
  In A::*in;
  G A::*grad;
  bool optional;
};
template <class A>
using ParamOf = Param<A, decltype(A::x), decltype(A::grad_x)>;

/// The fields both blocks share, in this order: x, the parameters, the BN running statistics (evaluation
/// mode), the upstream gradient, the value `out_name` shaped like x, the BN batch mean and variance
/// (optional outputs), grad_x, and a gradient per parameter.
template <class A, class F, std::size_t N, class Out, class Up>
void describe_block(A& a, F& f, const ParamOf<A> (&params)[N], const char* out_name, Out& out, Up& upstream) {
  f.in("x", a.x);
  for (const auto& p : params) f.in(p.name, a.*p.in, p.optional);
  f.in("bn_running_mean", a.bn_running_mean, true);
  f.in("bn_running_var", a.bn_running_var, true);
  f.upstream(upstream);
  f.out_like(out_name, out, "x");
  const kdloss::Dims c{a.x.rank() == 4 ? a.x.shape[1] : 0};
  f.out("bn_batch_mean", a.bn_batch_mean, c, true);
  f.out("bn_batch_var", a.bn_batch_var, c, true);
  f.grad("grad_x", a.grad_x, "x");
  for (const auto& p : params) f.grad(p.grad_name, a.*p.grad, p.name);
}

constexpr auto describe_non_local = [](auto& a, auto& f) {
  using A = std::decay_t<decltype(a)>;
  const ParamOf<A> params[] = {
      {"g_weight", "grad_g_weight", &A::g_weight, &A::grad_g_weight, false},
      {"g_bias", "grad_g_bias", &A::g_bias, &A::grad_g_bias, true},
      {"theta_weight", "grad_theta_weight", &A::theta_weight, &A::grad_theta_weight, true},
      {"theta_bias", "grad_theta_bias", &A::theta_bias, &A::grad_theta_bias, true},
      {"phi_weight", "grad_phi_weight", &A::phi_weight, &A::grad_phi_weight, true},
      {"phi_bias", "grad_phi_bias", &A::phi_bias, &A::grad_phi_bias, true},
      {"concat_project_weight", "grad_concat_project_weight", &A::concat_project_weight,
       &A::grad_concat_project_weight, true},
      {"conv_out_weight", "grad_conv_out_weight", &A::conv_out_weight, &A::grad_conv_out_weight, false},
      {"conv_out_bias", "grad_conv_out_bias", &A::conv_out_bias, &A::grad_conv_out_bias, true},
      {"bn_weight", "grad_bn_weight", &A::bn_weight, &A::grad_bn_weight, true},
      {"bn_bias", "grad_bn_bias", &A::bn_bias, &A::grad_bn_bias, true}};
  describe_block(a, f, params, "z", a.z, a.grad_z);
  f.reserve(a.reserve, [&] { return kdloss::ops::non_local_reserve_bytes(a); }, true);
};

constexpr auto describe_glore = [](auto& a, auto& f) {
  using A = std::decay_t<decltype(a)>;
  const ParamOf<A> params[] = {
      {"state_weight", "grad_state_weight", &A::state_weight, &A::grad_state_weight, false},
      {"state_bias", "grad_state_bias", &A::state_bias, &A::grad_state_bias, false},
      {"proj_weight", "grad_proj_weight", &A::proj_weight, &A::grad_proj_weight, false},
      {"proj_bias", "grad_proj_bias", &A::proj_bias, &A::grad_proj_bias, false},
      {"gcn_conv1_weight", "grad_gcn_conv1_weight", &A::gcn_conv1_weight, &A::grad_gcn_conv1_weight, false},
      {"gcn_conv1_bias", "grad_gcn_conv1_bias", &A::gcn_conv1_bias, &A::grad_gcn_conv1_bias, false},
      {"gcn_conv2_weight", "grad_gcn_conv2_weight", &A::gcn_conv2_weight, &A::grad_gcn_conv2_weight, false},
      {"extend_weight", "grad_extend_weight", &A::extend_weight, &A::grad_extend_weight, false},
      {"bn_weight", "grad_bn_weight", &A::bn_weight, &A::grad_bn_weight, false},
      {"bn_bias", "grad_bn_bias", &A::bn_bias, &A::grad_bn_bias, false}};
  describe_block(a, f, params, "out", a.out, a.grad_out);
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
