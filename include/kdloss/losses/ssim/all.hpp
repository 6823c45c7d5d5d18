// kdloss/losses/ssim/all.hpp: the SSIM family in one include: kornia's ssim / ssim_loss and the
// thesis' structural-distillation loss with its pyramid sum (ssim.hpp), pytorch-msssim's ssim and
// ms_ssim and the l1 + MS-SSIM mixture (ms_ssim.hpp). Formulas, options and gradients:
// docs/losses/ssim.md.
#pragma once

#include "kdloss/losses/ssim/ms_ssim.hpp"
#include "kdloss/losses/ssim/ssim.hpp"
