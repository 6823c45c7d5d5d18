// Host-callable GPU runs of ops/pooling.hpp and the FBKD losses (implemented in fbkd_cuda.cu).
// Inputs are given in double and converted to the element type on the device; results come back
// in double. dtype: 0 float, 1 double, 2 half, 3 bfloat16.
#pragma once
#include <string>
#include <vector>

#include "kdloss/core/view.hpp"

namespace kdloss_test {

/// op: 0 mean_over_channels, 1 mean_over_positions, 2 and 3 their backward with upstream g.
/// Forward outputs are [B,H,W] / [B,C]; backward outputs the [B,C,H,W] gradient.
std::vector<double> pooling_on_gpu(int op, int dtype, const std::vector<double>& x, const std::vector<double>& g,
                                   const kdloss::Dims& shape, bool absolute);

/// attention_masks: M_s [B,H*W] followed by M_c [B,C]. The options as their fields (option types are per
/// kind of translation unit: kdloss/config.hpp): form is a MaskForm value.
std::vector<double> masks_on_gpu(int dtype, const std::vector<double>& s, const std::vector<double>& t,
                                 const kdloss::Dims& shape, int form, double spatial_temperature,
                                 double channel_temperature);

struct GpuLoss {
  double value = 0;
  std::vector<double> grad;
};
/// masked_feature_loss: fused (forward_backward) or forward then backward with upstream `up`.
/// mc empty: no channel mask.
GpuLoss masked_feature_on_gpu(int dtype, const std::vector<double>& a, const std::vector<double>& t,
                              const std::vector<double>& ms, const std::vector<double>& mc, const kdloss::Dims& shape,
                              bool fused, double up);

struct GpuLevel {
  kdloss::Dims shape;
  std::vector<double> s, t, a, c_hat, s_hat;  // a, c_hat, s_hat may be empty (not given)
  bool grad_a = false, grad_s = false, grad_c = false, grad_sp = false;
};
struct GpuLevelGrads {
  std::vector<double> a, s, c, sp;  // empty where not requested
};
struct GpuTotal {
  double value = 0;
  std::vector<GpuLevelGrads> grads;
};
/// total_loss with fbkd_test::presets()[preset] (built on the .cu side: option types are per kind of
/// translation unit, kdloss/config.hpp): mode 0 forward, 1 backward with upstream `up`, 2 forward_backward.
GpuTotal total_on_gpu(int dtype, const std::vector<GpuLevel>& levels, std::size_t preset, int mode, double up);

/// Runs total_loss (code_two_stage) on the GPU with a workspace of `bytes` (null when 0); returns
/// the error text or "" and the output's value after the call (it starts as 42).
std::string total_gpu_workspace_error(std::size_t bytes, float* out_after);

}  // namespace kdloss_test
