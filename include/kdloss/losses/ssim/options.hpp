// kdloss/losses/ssim/options.hpp: the options of the SSIM family (docs/losses/ssim.md).
#pragma once
#include <vector>

#include "kdloss/config.hpp"
#include "kdloss/ops/gaussian.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace ssim {

/// Options of ssim_loss / ssim_map / ssim_pyramid_loss: kornia's ssim and ssim_loss, and the
/// structural-distillation loss of de Rijk et al. (thesis equations 1-4). The defaults are
/// kornia's (and the thesis' appendix A call `ssim_loss(student, teacher, window_size=11)`).
///
///   kdloss::ssim::SsimOptions opt;                     // kornia: reflect 'same', max_val 1, eps 1e-12, clamp
///   opt.padding = kdloss::ops::Padding::valid;      // kornia padding='valid'
///   opt.alpha = 0; opt.beta = 1; opt.gamma = 1;     // thesis table 2: contrast and structure only
///   opt.normalize = true;                           // nu: per-(b, c) min-max to [0, 1]
struct SsimOptions {
  int window_size = 11;  ///< odd, 3 to 15
  double sigma = 1.5;    ///< Gaussian sigma, > 0
  double max_val = 1.0;  ///< dynamic range L: C1 = (k1 L)^2, C2 = (k2 L)^2, C3 = C2 / 2
  double k1 = 0.01, k2 = 0.03;
  /// Exponents of luminance, contrast and structure (>= 0). Not all 1 (or three_component):
  /// S = l^alpha c^beta s^gamma; all 1: the two-factor form kornia computes.
  double alpha = 1.0, beta = 1.0, gamma = 1.0;
  double eps = 1e-12;  ///< added to the two-factor denominator (kornia); unused by the three-component form
  ops::Padding padding = ops::Padding::reflect;  ///< reflect / zeros ('same' size) or valid
  bool clamp = true;      ///< loss = clamp((1 - S)/2, 0, 1) (kornia); false: (1 - S)/2 (thesis eq. 4)
  bool normalize = false; ///< nu: map each (b, c) plane of student and teacher to [0, 1] by its min and max
  bool three_component = false;  ///< evaluate l^alpha c^beta s^gamma even when all exponents are 1
};

/// How per-channel values [B, C] are reduced (pytorch-msssim's size_average).
enum class ChannelReduction {
  mean,       ///< one value: mean over B and C (size_average=True)
  per_image,  ///< [B]: mean over C (size_average=False)
  none        ///< [B, C]: the per-channel values
};

/// Options of ssim_index / ms_ssim: pytorch-msssim's ssim and ms_ssim (valid filtering, an axis
/// shorter than the window is not smoothed, no eps, no clamp).
struct MsSsimOptions {
  int window_size = 11;      ///< odd, 3 to 15
  double sigma = 1.5;
  double data_range = 255.0; ///< pytorch-msssim's default; features usually want 1 (or normalize)
  double k1 = 0.01, k2 = 0.03;
  bool nonnegative_ssim = false;  ///< ssim_index: relu of the per-channel SSIM
  /// ms_ssim: one weight per level (pytorch-msssim's five by default); at least one.
  std::vector<double> weights{0.0448, 0.2856, 0.3001, 0.2363, 0.1333};
  bool normalize = false;  ///< nu applied to the level-0 inputs (as SsimOptions::normalize)
};

/// The thesis' table 7 mixture: l1_weight * mean|s - t| + (1 - l1_weight) * (1 - MS-SSIM(s, t)),
/// with MS-SSIM averaged over B and C. data_range defaults to 1 here (features, not 8-bit images).
struct MsSsimL1Options {
  MsSsimOptions ms_ssim{};
  double l1_weight = 0.15;
  MsSsimL1Options() { ms_ssim.data_range = 1.0; }
};

} } }  // namespace kdloss::ssim

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE {
// The family's names, also in kdloss:: (user code and the PyTorch bridge spell them so).
using ssim::ChannelReduction;
using ssim::MsSsimL1Options;
using ssim::MsSsimOptions;
using ssim::SsimOptions;
} }  // namespace kdloss
