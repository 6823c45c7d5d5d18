// kdloss/losses/ssim/ssim.hpp: the SSIM family (namespace kdloss::ssim, public names also in
// kdloss::) in one include: kornia's ssim / ssim_loss and the thesis' structural-distillation loss
// with its pyramid sum (kornia.hpp), pytorch-msssim's ssim and ms_ssim and the l1 + MS-SSIM
// mixture (ms_ssim.hpp). Formulas, options, gradients and the entry-point shape:
// docs/losses/ssim.md.
#pragma once

#include "kdloss/losses/ssim/kornia.hpp"
#include "kdloss/losses/ssim/ms_ssim.hpp"
