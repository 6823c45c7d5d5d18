// kdloss/losses/feature/feature.hpp: the feature family in one include: MSE, L1 and smooth-L1
// (pointwise.hpp), the Frobenius distance of torch.dist (distance.hpp) and Hinton's temperature
// KL divergence between logits (kl_div.hpp). Formulas, gradients and options: docs/losses/feature.md.
#pragma once

#include "kdloss/losses/feature/distance.hpp"
#include "kdloss/losses/feature/kl_div.hpp"
#include "kdloss/losses/feature/pointwise.hpp"
