// Host-callable GPU runs of the SSIM family and the Gaussian filter op (implemented in ssim_cuda.cu).
#pragma once
#include <string>
#include <vector>

#include "kdloss/core/types.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/losses/ssim/options.hpp"
#include "kdloss/ops/gaussian.hpp"

namespace kdloss_test {

enum class GpuSsimKind { loss, map, index, ms_ssim, mixture };

/// Holds kdloss option structs, which are per kind of translation unit (kdloss/config.hpp): the .cpp and
/// the .cu file each see their own, of one layout. No function signature names them, so the two link; it is
/// the one place the tests lean on that identical layout instead of passing the fields.
struct GpuSsimCall {
  GpuSsimKind kind = GpuSsimKind::loss;
  int dtype = 0;                 // 0 float, 1 double, 2 half, 3 bfloat16 (inputs given in double)
  kdloss::Dims shape;
  kdloss::SsimOptions ssim;      // loss, map
  kdloss::MsSsimOptions ms;      // index, ms_ssim, mixture (mixture: l1_weight below)
  double l1_weight = 0.15;
  kdloss::Reduction reduction = kdloss::Reduction::mean;            // loss
  kdloss::ChannelReduction channel = kdloss::ChannelReduction::mean;  // index, ms_ssim
  bool fused = false;            // forward_backward; otherwise forward, then backward with a unit upstream
  bool teacher_grad = false;
  bool channel_last = false;     // inputs stored NHWC (logical NCHW)
};

struct GpuSsimResult {
  std::vector<double> value, grad_s, grad_t;
};

GpuSsimResult ssim_on_gpu(const GpuSsimCall& call, const std::vector<double>& s, const std::vector<double>& t);

/// gaussian_filter (or its backward when `adjoint`) of x on the GPU; shape is the unfiltered shape.
std::vector<double> filter_on_gpu(int dtype, const std::vector<double>& x, const kdloss::Dims& shape, int window,
                                  double sigma, int padding, bool adjoint);  // padding: an ops::Padding value

/// Runs ssim_loss on the GPU with a workspace of `bytes` (null when 0); returns the error text or "".
std::string ssim_gpu_workspace_error(std::size_t bytes, float* out_after);

}  // namespace kdloss_test
