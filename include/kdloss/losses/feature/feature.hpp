// kdloss/losses/feature/feature.hpp: the feature family in one include: MSE, L1 and smooth-L1
// (pointwise.hpp), the Frobenius distance of torch.dist (distance.hpp) and Hinton's temperature
// KL divergence between logits (kl_div.hpp). Formulas, gradients and options: docs/losses/feature.md.
// Namespace kdloss::feature; the public names (mse_loss, MseLossOptions, MseLossArgs, ...) are also
// in kdloss::, so kdloss::mse_loss(s, t, out) reads as before.
#pragma once

#include "kdloss/losses/feature/distance.hpp"
#include "kdloss/losses/feature/kl_div.hpp"
#include "kdloss/losses/feature/pointwise.hpp"
